// Package projector keeps read models (views) current from the event log: it reads
// committed events by position from the view's own checkpoint and applies them, the
// checkpoint moving in the same transaction as the view change. NATS or a local signal
// only wakes it; the log is what it reads, so a lost wake-up costs lag, never data.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/position"
)

// Source is the log a projector reads: the node's event store, or a remote node's API.
type Source interface {
	Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error)
	Head(ctx context.Context) (chronicle.Head, error)
}

// View is a read model a projector can maintain.
type View interface {
	chronicle.ReadModel
	// Apply applies events atomically together with the new checkpoint. Events at or
	// below the checkpoint are skipped (a replay changes nothing); the first one after
	// it must be checkpoint+1 and the rest consecutive, or nothing is written.
	Apply(ctx context.Context, events []chronicle.Event) error
	// LineCount is the number of statement lines the view holds for an account (what
	// verify compares with the account's events in the log).
	LineCount(ctx context.Context, id string) (int, error)
	// Reset empties the view and its checkpoint, for a rebuild.
	Reset(ctx context.Context) error
	// Name identifies the view in logs and status ("pebble", "postgres").
	Name() string
	Close() error
}

// ErrGap is returned by View.Apply when events do not follow the checkpoint.
var ErrGap = errors.New("projector: events do not follow the view's checkpoint")

// pageSize bounds the events read and applied in one transaction.
const pageSize = chronicle.MaxEventsPage

// Projector tails a Source into a View.
type Projector struct {
	src  Source
	view View
	log  *slog.Logger
	// Poll is the backstop: how often the log is read when no wake-up arrives.
	poll time.Duration

	// pos is the view's checkpoint as this projector last saw it; WaitPosition waits on it.
	pos position.Waiter

	mu       sync.Mutex
	posTime  time.Time // commit time of the event at pos
	head     chronicle.Head
	lastErr  error
	applied  uint64 // events applied since start, for throughput
	started  time.Time
	lastLagW time.Time
}

// New returns a projector of src into view.
func New(src Source, view View, logger *slog.Logger) *Projector {
	if logger == nil {
		logger = slog.Default()
	}
	return &Projector{src: src, view: view, log: logger.With("component", "projector", "view", view.Name()), poll: time.Second}
}

// SetPoll changes the backstop polling interval (before Run).
func (p *Projector) SetPoll(d time.Duration) { p.poll = d }

// View returns the projector's view.
func (p *Projector) View() View { return p.view }

// Run applies events until ctx ends. wake may be nil; every signal on it (from NATS or
// the local store) makes the projector read the log at once.
func (p *Projector) Run(ctx context.Context, wake <-chan struct{}) error {
	pos, err := p.view.Position(ctx)
	if err != nil {
		return fmt.Errorf("projector: read checkpoint: %w", err)
	}
	p.setPos(pos, time.Time{})
	p.mu.Lock()
	p.started = time.Now()
	p.mu.Unlock()
	p.log.Info("projector started", "position", pos)
	ticker := time.NewTicker(p.poll)
	defer ticker.Stop()
	backoff := 50 * time.Millisecond
	for {
		n, err := p.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			p.setErr(err)
			p.log.Warn("projector step failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		p.setErr(nil)
		if n == pageSize {
			continue // more is waiting
		}
		if n > 0 {
			p.maybeLogLag()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-ticker.C:
		}
	}
}

// CatchUp applies events until the view reaches the source's head as read at the start.
func (p *Projector) CatchUp(ctx context.Context) error {
	h, err := p.src.Head(ctx)
	if err != nil {
		return fmt.Errorf("projector: read head: %w", err)
	}
	for {
		pos, err := p.view.Position(ctx)
		if err != nil {
			return fmt.Errorf("projector: read checkpoint: %w", err)
		}
		p.setPos(pos, time.Time{})
		if pos >= h.Position {
			return nil
		}
		if _, err := p.step(ctx); err != nil {
			return err
		}
	}
}

// step reads one page after the checkpoint and applies it; it returns how many events
// the page held.
func (p *Projector) step(ctx context.Context) (int, error) {
	pos, err := p.view.Position(ctx)
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	events, err := p.src.Events(ctx, chronicle.EventQuery{After: pos, Limit: pageSize})
	if err != nil {
		return 0, fmt.Errorf("read events after %d: %w", pos, err)
	}
	if h, err := p.src.Head(ctx); err == nil {
		p.mu.Lock()
		p.head = h
		p.mu.Unlock()
	}
	if len(events) == 0 {
		p.setPos(pos, time.Time{})
		return 0, nil
	}
	for i, e := range events {
		if e.Position != pos+1+uint64(i) {
			return 0, fmt.Errorf("%w: log returned position %d after %d", ErrGap, e.Position, pos+uint64(i))
		}
	}
	if err := p.view.Apply(ctx, events); err != nil {
		return 0, fmt.Errorf("apply events %d..%d: %w", events[0].Position, events[len(events)-1].Position, err)
	}
	last := events[len(events)-1]
	p.mu.Lock()
	p.applied += uint64(len(events))
	p.mu.Unlock()
	p.setPos(last.Position, last.CreatedAt)
	return len(events), nil
}

func (p *Projector) setPos(pos uint64, t time.Time) {
	if !t.IsZero() {
		p.mu.Lock()
		p.posTime = t
		p.mu.Unlock()
	}
	// Only this projector moves the view's checkpoint, and only forward.
	p.pos.Advance(pos)
}

func (p *Projector) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// maybeLogLag logs the lag at most every 10 s while there is some.
func (p *Projector) maybeLogLag() {
	st := p.Status()
	if st.LagEvents == 0 {
		return
	}
	p.mu.Lock()
	due := time.Since(p.lastLagW) > 10*time.Second
	if due {
		p.lastLagW = time.Now()
	}
	p.mu.Unlock()
	if due {
		p.log.Info("projector lag", "position", st.Position, "head", st.Head, "lag_events", st.LagEvents, "lag_seconds", st.LagSeconds)
	}
}

// WaitPosition blocks until the view has applied pos, or ctx ends.
func (p *Projector) WaitPosition(ctx context.Context, pos uint64) error {
	if err := p.pos.Wait(ctx, pos); err != nil {
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "view %s has not reached position %d (at %d)", p.view.Name(), pos, p.pos.Current())
	}
	return nil
}

// Status describes the projector's progress.
type Status struct {
	View       string  `json:"view"`
	Position   uint64  `json:"position"`
	Head       uint64  `json:"head"`
	LagEvents  uint64  `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	Applied    uint64  `json:"applied_since_start"`
	Error      string  `json:"error,omitempty"`
}

// Status reports position, lag behind the last head seen, and the last error.
func (p *Projector) Status() Status {
	pos := p.pos.Current()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{View: p.view.Name(), Position: pos, Head: max(p.head.Position, pos), Applied: p.applied}
	st.LagEvents = st.Head - pos
	if st.LagEvents > 0 && !p.posTime.IsZero() && p.head.CommitTime.After(p.posTime) {
		st.LagSeconds = p.head.CommitTime.Sub(p.posTime).Seconds()
	}
	if p.lastErr != nil {
		st.Error = p.lastErr.Error()
	}
	return st
}

// Rebuild empties the view and replays the whole log into it.
func Rebuild(ctx context.Context, src Source, view View, logger *slog.Logger) error {
	if err := view.Reset(ctx); err != nil {
		return fmt.Errorf("projector: reset view %s: %w", view.Name(), err)
	}
	return New(src, view, logger).CatchUp(ctx)
}
