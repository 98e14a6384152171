// Package position tracks how far something has got through the log (a store's applied
// position, a view's checkpoint) so that callers can wait for a position or be told when
// it moves.
package position

import (
	"context"
	"sync"
)

// Waiter holds a log position. Its zero value is ready to use at position 0.
type Waiter struct {
	mu  sync.Mutex
	pos uint64
	// moved is closed (and replaced) when the position changes: one close wakes every
	// Wait without a goroutine per waiter.
	moved chan struct{}
	// subs get a coalesced signal on each change; a full buffer means one is pending.
	subs map[chan struct{}]struct{}
}

// Advance moves the position to pos if pos is higher; a lower pos is ignored, so a late
// report can never move a waiter backwards.
func (w *Waiter) Advance(pos uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pos > w.pos {
		w.set(pos)
	}
}

// Reset sets the position to pos even when it is lower: for when the state behind it was
// replaced wholesale (a snapshot restore). Subscribers are signalled if it changed.
func (w *Waiter) Reset(pos uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pos != w.pos {
		w.set(pos)
	}
}

// set records pos and wakes everyone; w.mu is held.
func (w *Waiter) set(pos uint64) {
	w.pos = pos
	if w.moved != nil {
		close(w.moved)
		w.moved = nil
	}
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default: // already signalled; the subscriber will see everything new anyway
		}
	}
}

// Current returns the position.
func (w *Waiter) Current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pos
}

// Wait blocks until the position is at least pos, or ctx ends; then it returns ctx.Err()
// unwrapped, so that callers can word the timeout their own way. A position already
// reached wins over an ended ctx.
func (w *Waiter) Wait(ctx context.Context, pos uint64) error {
	for {
		w.mu.Lock()
		if w.pos >= pos {
			w.mu.Unlock()
			return nil
		}
		if w.moved == nil {
			w.moved = make(chan struct{})
		}
		moved := w.moved
		w.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			if w.Current() >= pos {
				return nil
			}
			return ctx.Err()
		}
	}
}

// Changes returns a channel that receives a signal (coalesced: at most one pending) after
// the position changes, and a function that stops the signals. Subscribers read what is
// new themselves; the signal carries nothing.
func (w *Waiter) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.subs == nil {
		w.subs = map[chan struct{}]struct{}{}
	}
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}
