package httpapi

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// hubFrames is how many recent events the stream hub keeps encoded; a live stream that
// falls further behind than this is closed (stream_lagging) and resumes from the log.
const hubFrames = 8192

// hubBatch bounds how many frames one stream takes from the hub at a time.
const hubBatch = 256

// frame is one event with its JSON, encoded once and shared by every stream (and, from
// a store that keeps it, by the NATS publisher): never modified.
type frame struct {
	pos      uint64
	typ, agg string
	json     []byte
}

// appendSSE appends f as a Server-Sent Event.
func (f *frame) appendSSE(b []byte) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, f.pos, 10)
	b = append(b, "\nevent: "...)
	b = append(b, f.typ...)
	b = append(b, "\ndata: "...)
	b = append(b, f.json...)
	return append(b, "\n\n"...)
}

// hub tails the log once for all /events/stream clients and keeps the last hubFrames
// events pre-encoded, so that N streams cost one log read and one JSON encoding per
// event, not N. Nothing waits on a stream: each stream pulls from the ring at its own
// pace. The tailing goroutine runs only while some stream is open.
type hub struct {
	store   chronicle.EventStore
	changes func() (<-chan struct{}, func())
	size    int
	// encoded counts events encoded as frames (the tail and streams catching up).
	encoded atomic.Uint64

	mu sync.Mutex
	// frames hold the events in (base, last], oldest first. Elements are never modified
	// in place, and trimming copies, so a slice handed out stays valid.
	frames     []frame
	base, last uint64
	started    bool
	notify     chan struct{} // closed (and replaced) whenever frames or err change
	err        error
	subs       int
	stop       context.CancelFunc
	done       chan struct{}
}

func newHub(store chronicle.EventStore, changes func() (<-chan struct{}, func()), size int) *hub {
	return &hub{store: store, changes: changes, size: size, notify: make(chan struct{})}
}

// subscribe registers a stream, starting the tail if it is the first; the returned
// function unregisters it, stopping the tail (and waiting for it) if it was the last.
func (h *hub) subscribe() func() {
	h.mu.Lock()
	h.subs++
	if h.subs == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		prev, done := h.done, make(chan struct{})
		h.stop, h.done = cancel, done
		go func() {
			defer close(done)
			if prev != nil {
				<-prev // one tail at a time
			}
			h.run(ctx)
		}()
	}
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.subs--
			var stop context.CancelFunc
			var done chan struct{}
			if h.subs == 0 {
				stop, done = h.stop, h.done
				h.stop = nil
			}
			h.mu.Unlock()
			if stop != nil {
				stop()
				<-done
			}
		})
	}
}

// run tails the log until ctx ends, starting afresh at the head (the events committed
// while no stream was open are not worth encoding ahead of a stream asking for them).
func (h *hub) run(ctx context.Context) {
	h.mu.Lock()
	h.started, h.frames, h.base, h.last, h.err = false, nil, 0, 0, nil
	h.broadcastLocked()
	h.mu.Unlock()
	sig, stop := h.changes()
	defer stop()
	// The tick retries after a failed read; a signal is never lost, as run fills again
	// after each one.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		h.fill(ctx)
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-tick.C:
		}
	}
}

// fill appends every event committed since the last fill.
func (h *hub) fill(ctx context.Context) {
	h.mu.Lock()
	started, from := h.started, h.last
	h.mu.Unlock()
	if !started {
		head, err := h.store.Head(ctx)
		if err != nil {
			h.fail(ctx, fmt.Errorf("read the log head: %w", err))
			return
		}
		h.mu.Lock()
		h.started, h.base, h.last, from = true, head.Position, head.Position, head.Position
		h.broadcastLocked()
		h.mu.Unlock()
	}
	for {
		events, err := chronicle.ReadEncodedEvents(ctx, h.store, chronicle.EventQuery{After: from, Limit: chronicle.MaxEventsPage})
		if err != nil {
			h.fail(ctx, fmt.Errorf("read the log: %w", err))
			return
		}
		frames := h.makeFrames(events)
		h.mu.Lock()
		if len(frames) > 0 {
			h.frames = append(h.frames, frames...)
			h.last = frames[len(frames)-1].pos
			from = h.last
			if len(h.frames) > 2*h.size { // trim in chunks: amortised O(1) per frame
				drop := len(h.frames) - h.size
				h.base = h.frames[drop-1].pos
				h.frames = append([]frame(nil), h.frames[drop:]...)
			}
		}
		changed := len(frames) > 0 || h.err != nil
		h.err = nil
		if changed {
			h.broadcastLocked()
		}
		h.mu.Unlock()
		if len(events) < chronicle.MaxEventsPage {
			return
		}
	}
}

func (h *hub) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the tail is stopping, not failing
	}
	h.mu.Lock()
	h.err = err
	h.broadcastLocked()
	h.mu.Unlock()
}

func (h *hub) broadcastLocked() {
	close(h.notify)
	h.notify = make(chan struct{})
}

// frames makes a frame of each event, sharing its JSON.
func (h *hub) makeFrames(events []chronicle.EncodedEvent) []frame {
	out := make([]frame, len(events))
	for i := range events {
		e := &events[i]
		out[i] = frame{pos: e.Event.Position, typ: e.Event.EventType, agg: e.Event.AggregateID, json: e.JSON}
	}
	h.encoded.Add(uint64(len(events)))
	return out
}

// since returns up to hubBatch frames after position after, or behind when the ring no
// longer (or does not yet) reach back to after; notify is closed on the next change, so
// a caller that got nothing waits on it without missing one. err is the tail's last
// read failure, if it has not recovered.
func (h *hub) since(after uint64) (frames []frame, behind bool, notify <-chan struct{}, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	notify, err = h.notify, h.err
	if !h.started {
		return nil, false, notify, err
	}
	if after < h.base {
		return nil, true, notify, err
	}
	i := sort.Search(len(h.frames), func(i int) bool { return h.frames[i].pos > after })
	j := min(i+hubBatch, len(h.frames))
	return h.frames[i:j:j], false, notify, err
}
