package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
)

// Source is where the publisher reads committed events (chronicle.EventStore has it).
// A source that is also a chronicle.EncodedEventReader (raftstore) hands over the JSON it
// keeps with its newest events, shared with the SSE hub; others' events are encoded here.
type Source = chronicle.EventReader

// Publisher bounds.
const (
	pageSize   = chronicle.MaxEventsPage // events read from the log at a time
	maxPending = 256                     // publishes not yet known stored
	// ackEvery: one publish in this many (and the last of each page, and the first after
	// a resume) asks for an ack; the rest are plain NATS publishes. See publishAll.
	ackEvery     = 32
	pollInterval = time.Second      // backstop when no wake signal comes
	ackTimeout   = 10 * time.Second // one publish's ack
	minBackoff   = 50 * time.Millisecond
	maxBackoff   = 5 * time.Second
	logInterval  = 10 * time.Second // the same complaint at most this often
	// conflictsBeforeBackoff is how many expected-last-sequence conflicts in a row (a
	// publisher racing this one) are resolved by re-reading the stream at once.
	conflictsBeforeBackoff = 3
)

// RunPublisher publishes every committed event, in position order, until ctx ends (it
// then returns nil) or the bus is closed (ErrClosed).
//
// Stream sequence == log position. Each message carries
// Nats-Expected-Last-Sequence = position-1, so the server stores position p only
// directly after p-1: no gap and no duplicate, even if two publishers race on the same
// stream (the loser's publishes are refused, it re-reads the stream's last sequence and
// carries on from there). On start and after every failure the publisher resumes from
// the stream's last sequence; the payload is the event exactly as chronicle.Event
// marshals to JSON (Event.AppendJSON).
//
// It reads the log (src.Events after the last published position, ascending, pages of
// chronicle.MaxEventsPage) whenever wake signals and every second as a backstop; publishes
// are pipelined with at most maxPending not yet acknowledged, and only some ask for an
// ack (publishAll says why that is enough). When NATS is unreachable or a
// publish fails it logs (at most every 10s per kind of failure) and retries with capped
// exponential backoff (50ms..5s); it never skips an event.
//
// Before resuming from stream sequence N it checks the stream's message N against
// log position N (the position and hash in its payload). When the stream is ahead of the log
// (e.g. a wiped data dir while an external stream survived, or a lagging replica) or
// holds a different history, it publishes nothing: it logs an error and re-checks on
// every wake and tick. Publishing would either duplicate positions with different
// events or interleave two histories; recovering is an operator's decision (restore
// the log, or delete the stream so it is rebuilt from position 1).
func (b *Bus) RunPublisher(ctx context.Context, src Source, wake <-chan struct{}) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	js, err := jetstream.New(b.nc,
		jetstream.WithDefaultTimeout(requestTimeout),
		jetstream.WithPublishAsyncMaxPending(2*maxPending),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return fmt.Errorf("eventbus: jetstream: %w", err)
	}
	p := &publisher{b: b, js: js, src: src, log: b.log, lastLog: map[string]time.Time{}}
	p.run(ctx, wake)
	select {
	case <-b.done:
		return ErrClosed
	default:
		return nil
	}
}

type publisher struct {
	b   *Bus
	js  jetstream.JetStream
	src Source
	log *slog.Logger

	next uint64 // last position known in the stream; publishing continues after it
	// ackFirst: the next publish asks for an ack (set on every resume; see publishAll).
	ackFirst bool

	lastLog    map[string]time.Time
	suppressed map[string]int
}

type pendingAck struct {
	pos uint64
	f   jetstream.PubAckFuture
}

func (p *publisher) run(ctx context.Context, wake <-chan struct{}) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	idle := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		case <-tick.C:
		}
		return true
	}
	backoff := minBackoff
	sleep := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, maxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	synced, conflicts := false, 0
	for ctx.Err() == nil {
		if !synced {
			ok, err := p.sync(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				p.warn("cannot read the stream; retrying", err, "backoff", backoff)
				if !sleep() {
					return
				}
				continue
			case !ok: // the stream is ahead of or diverges from the log: wait for the log
				if !idle() {
					return
				}
				continue
			}
			synced = true
		}
		err := p.publishAll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			synced = false
			if isConflict(err) {
				conflicts++
				p.log.Debug("stream moved under the publisher (another publisher?); re-reading it", "err", err)
				if conflicts <= conflictsBeforeBackoff {
					continue
				}
			} else {
				conflicts = 0
				p.warn("publish failed; resuming from the stream's last sequence", err,
					"published", p.next, "backoff", backoff, "connected", p.b.Connected())
			}
			if !sleep() {
				return
			}
			continue
		}
		backoff, conflicts = minBackoff, 0
		if !idle() {
			return
		}
	}
}

// sync reads the stream's last sequence (creating the stream when missing) and checks
// that the stream's last message is the log's event at that position. It reports false
// when it is not, or when the log does not reach that far.
func (p *publisher) sync(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*requestTimeout)
	defer cancel()
	s, err := p.b.ensureStream(ctx, p.js)
	if err != nil {
		return false, err
	}
	last := s.CachedInfo().State.LastSeq // as of the ensureStream request
	if last == 0 {
		p.resumeAt(0)
		p.b.setProblem("")
		return true, nil
	}
	evs, err := p.src.Events(ctx, chronicle.EventQuery{After: last - 1, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("read the log at position %d: %w", last, err)
	}
	if len(evs) == 0 || evs[0].Position != last {
		p.stuck(fmt.Sprintf("stream %s is ahead of the log (stream last sequence %d); publishing nothing until the log reaches it "+
			"(a wiped or restored data dir while the stream survived?). Restore the log, or %s", p.b.cfg.Stream, last, p.repair()),
			"stream_last_seq", last)
		return false, nil
	}
	msg, err := s.GetMsg(ctx, last)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Aged out by the stream's limits: the sequence alone has to do.
		p.log.Info("stream's last message is gone (limits); resuming from its sequence", "stream_last_seq", last)
	case err != nil:
		return false, fmt.Errorf("read stream message %d: %w", last, err)
	default:
		var got struct {
			Position uint64 `json:"position"`
			Hash     string `json:"hash"`
		}
		_ = json.Unmarshal(msg.Data, &got)
		if got.Position != last || got.Hash != evs[0].Hash {
			p.stuck(fmt.Sprintf("stream %s holds a different history than the log at sequence %d; publishing nothing. "+
				"Restore the log, or %s", p.b.cfg.Stream, last, p.repair()),
				"stream_last_seq", last, "stream_position", got.Position, "stream_hash", got.Hash, "log_hash", evs[0].Hash)
			return false, nil
		}
	}
	p.resumeAt(last)
	p.b.setProblem("")
	return true, nil
}

// repair says how to have the stream rebuilt from the log: on a missing stream the
// publisher creates it and publishes every position from 1.
func (p *publisher) repair() string {
	if p.b.ns != nil {
		return "rebuild the stream from the log: stop the node, remove the embedded NATS data dir (" +
			p.b.cfg.DataDir + ") and start it again; the stream is recreated and republished from position 1"
	}
	return "rebuild the stream from the log: delete stream " + p.b.cfg.Stream +
		" on the NATS server; the publisher recreates it and republishes from position 1"
}

// stuck records why nothing is published (Bus.Problem, shown in the node's status) and
// logs it at error level, at most every logInterval.
func (p *publisher) stuck(problem string, args ...any) {
	p.b.setProblem(problem)
	p.errorf(problem, args...)
}

func (p *publisher) resumeAt(pos uint64) {
	if pos != p.next {
		p.log.Debug("publisher resumes", "after", pos)
	}
	p.next = pos
	p.b.published.Store(pos)
	p.ackFirst = true
}

// publishAll publishes everything in the log after p.next and waits until it is stored.
//
// Only some publishes ask for an ack: the first after a resume, every ackEvery-th, and
// the last of each page (so a round ends knowing all it sent is stored). The others are
// plain NATS publishes with the same headers, which the server checks the same way but
// answers with nothing. That is enough on a stream on one server, because each
// message carries Nats-Expected-Last-Sequence = position-1: the server stores position p
// only while the stream ends at p-1, so an ack for p proves p-1 was stored before it,
// and so on down to the last ack. A message the server refused (or lost) makes every
// later one refused too, and the next acked one reports it as a wrong last sequence,
// after which the publisher re-reads the stream and republishes from its end. The first
// publish after that resume is acked, so that a refusal with another cause (limits,
// storage) is reported as itself the second time round. A round of one transfer's two
// events (concurrency 1) asks for one ack, not two. Skipped acks were about a third of
// the embedded server's and the client's work per event (PubAck encode, delivery,
// decode, future).
//
// On a replicated external stream the leader checks the expected sequence when it
// proposes; a message dropped when applied (a limit) shifts the later ones, and await
// sees an ack at the wrong sequence and stops on a different history, as it did with
// every publish acked.
func (p *publisher) publishAll(ctx context.Context) error {
	pending := make([]pendingAck, 0, maxPending/ackEvery+1)
	sent, unacked := p.next, 0
	err := func() error {
		for {
			evs, err := chronicle.ReadEncodedEvents(ctx, p.src, chronicle.EventQuery{After: sent, Limit: pageSize})
			if err != nil {
				return fmt.Errorf("read the log after position %d: %w", sent, err)
			}
			if len(evs) == 0 {
				break
			}
			for i := range evs {
				e := &evs[i].Event
				if e.Position != sent+1 {
					return fmt.Errorf("log read after position %d returned position %d", sent, e.Position)
				}
				unacked++
				ack := p.ackFirst || unacked == ackEvery || i == len(evs)-1
				p.ackFirst = false
				if !ack {
					if err := p.publishUnacked(e, evs[i].JSON); err != nil {
						return err
					}
					sent = e.Position
					continue
				}
				f, err := p.publish(e, evs[i].JSON)
				if err != nil {
					return err
				}
				pending = append(pending, pendingAck{pos: e.Position, f: f})
				sent, unacked = e.Position, 0
				if len(pending)*ackEvery >= maxPending {
					if err := p.await(ctx, pending[0]); err != nil {
						return err
					}
					pending = pending[1:]
				}
			}
		}
		for len(pending) > 0 {
			if err := p.await(ctx, pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		return nil
	}()
	if err != nil && len(pending) > 0 {
		// Let the abandoned publishes resolve (refused, as their predecessor is missing,
		// or stored) before the stream is re-read, so they cannot clog the next round.
		t := time.NewTimer(ackTimeout)
		defer t.Stop()
		select {
		case <-p.js.PublishAsyncComplete():
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return err
}

// message is e as published: its JSON (shared with other readers of the event: NATS
// only reads it) on its type's subject, with the previous position as the stream's
// expected last sequence and the stream's name.
func (p *publisher) message(e *chronicle.Event, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: Subject(p.b.cfg.SubjectPrefix, e.EventType), Data: data, Header: nats.Header{
		jetstream.ExpectedLastSeqHeader: []string{strconv.FormatUint(e.Position-1, 10)},
		jetstream.ExpectedStreamHeader:  []string{p.b.cfg.Stream},
	}}
	if e.Position == 1 {
		// External servers before 2.9 ignore an expected last sequence of 0; the
		// deduplication window then keeps a racing or retried first publish out.
		m.Header[jetstream.MsgIDHeader] = []string{"1"}
	}
	return m
}

// publish sends e and asks for the server's ack.
func (p *publisher) publish(e *chronicle.Event, data []byte) (jetstream.PubAckFuture, error) {
	f, err := p.js.PublishMsgAsync(p.message(e, data))
	if err != nil {
		return nil, fmt.Errorf("publish position %d: %w", e.Position, err)
	}
	return f, nil
}

// publishUnacked sends e as publish does but asks for no ack: a later acked publish
// vouches for it (publishAll).
func (p *publisher) publishUnacked(e *chronicle.Event, data []byte) error {
	if err := p.b.nc.PublishMsg(p.message(e, data)); err != nil {
		return fmt.Errorf("publish position %d: %w", e.Position, err)
	}
	return nil
}

func (p *publisher) await(ctx context.Context, pa pendingAck) error {
	select {
	case ack := <-pa.f.Ok():
		if ack.Sequence != pa.pos {
			// The stream and the log disagree (on a replicated stream, a message dropped
			// when applied shifts the later ones). Re-sync checks which.
			return fmt.Errorf("position %d acked at stream sequence %d (duplicate %t)", pa.pos, ack.Sequence, ack.Duplicate)
		}
		p.next = pa.pos
		p.b.notePublished(pa.pos)
		return nil
	case err := <-pa.f.Err():
		return fmt.Errorf("publish position %d: %w", pa.pos, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isConflict reports a refused expected-last-sequence: someone else appended first.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// warn logs at warn level, at most every logInterval per message.
func (p *publisher) warn(msg string, err error, args ...any) {
	p.limited(slog.LevelWarn, msg, append([]any{"err", err}, args...)...)
}

// errorf logs at error level, at most every logInterval per message.
func (p *publisher) errorf(msg string, args ...any) {
	p.limited(slog.LevelError, msg, args...)
}

func (p *publisher) limited(level slog.Level, msg string, args ...any) {
	now := time.Now()
	if last, ok := p.lastLog[msg]; ok && now.Sub(last) < logInterval {
		if p.suppressed == nil {
			p.suppressed = map[string]int{}
		}
		p.suppressed[msg]++
		return
	}
	p.lastLog[msg] = now
	if n := p.suppressed[msg]; n > 0 {
		args = append(args, "suppressed", n)
		delete(p.suppressed, msg)
	}
	p.log.Log(context.Background(), level, msg, args...)
}
