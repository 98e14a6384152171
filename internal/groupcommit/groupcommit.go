// Package groupcommit gathers queued requests into groups for one commit each: the group
// commit of both event stores (a Raft entry in raftstore, a transaction in sqlstore).
package groupcommit

import "context"

// Gatherer takes from Queue whatever is waiting, up to Limit units (commands) a group.
type Gatherer[R any] struct {
	Queue <-chan R
	// Size is the number of units a request carries; a request never exceeds Limit.
	Size  func(R) int
	Limit int

	carry    R // a request that would have overflowed the previous group
	hasCarry bool
}

// Next blocks for the next group: the request carried over from the last group, or the
// next one queued, followed by everything already queued that fits. It returns the group
// and its size, or ok false once stop is closed while nothing is waiting to start one.
func (g *Gatherer[R]) Next(stop <-chan struct{}) (group []R, units int, ok bool) {
	if g.hasCarry {
		group, units = append(group, g.carry), g.Size(g.carry)
		var zero R
		g.carry, g.hasCarry = zero, false
	} else {
		select {
		case r := <-g.Queue:
			group, units = append(group, r), g.Size(r)
		case <-stop:
			return nil, 0, false
		}
	}
	for units < g.Limit {
		select {
		case r := <-g.Queue:
			if n := g.Size(r); units+n > g.Limit {
				g.carry, g.hasCarry = r, true
				return group, units, true
			} else {
				group, units = append(group, r), units+n
			}
		default:
			return group, units, true
		}
	}
	return group, units, true
}

// Status says how a Submit ended.
type Status int

const (
	// Answered: the answer is the request's.
	Answered Status = iota
	// Canceled: ctx ended before the request was queued; nothing will come of it.
	Canceled
	// Unknown: ctx ended after the request was queued; it may still commit.
	Unknown
	// Stopped: the store stopped and no worker took the request.
	Stopped
)

// Submit queues req and waits for its answer on done (a channel with room for the one
// answer, so a worker never blocks on it). When stop closes first, waitWorkers must
// return only once every worker that could take a request has returned: then a request
// without an answer was never taken.
func Submit[R, A any](ctx context.Context, queue chan<- R, req R, done <-chan A, stop <-chan struct{}, waitWorkers func()) (A, Status) {
	var zero A
	select {
	case queue <- req:
	case <-ctx.Done():
		return zero, Canceled
	case <-stop:
		return zero, Stopped
	}
	select {
	case a := <-done:
		return a, Answered
	case <-stop:
		waitWorkers()
		select {
		case a := <-done:
			return a, Answered
		default:
			return zero, Stopped
		}
	case <-ctx.Done():
		return zero, Unknown
	}
}
