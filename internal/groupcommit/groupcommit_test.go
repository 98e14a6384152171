package groupcommit

import (
	"context"
	"slices"
	"testing"
)

// A group takes what is queued, never more than Limit units; a request that does not fit
// starts the next group, in order; Next reports stop only when nothing is waiting.
func TestGatherer(t *testing.T) {
	q := make(chan int, 16)
	g := Gatherer[int]{Queue: q, Size: func(n int) int { return n }, Limit: 10}
	stop := make(chan struct{})
	for _, n := range []int{3, 4, 5, 10, 1} {
		q <- n
	}
	var groups [][]int
	for range 3 {
		grp, units, ok := g.Next(stop)
		if !ok {
			t.Fatal("stopped with requests waiting")
		}
		sum := 0
		for _, n := range grp {
			sum += n
		}
		if sum != units || units > 10 {
			t.Fatalf("group %v: units %d", grp, units)
		}
		groups = append(groups, grp)
	}
	want := [][]int{{3, 4}, {5}, {10}}
	for i := range want {
		if !slices.Equal(groups[i], want[i]) {
			t.Fatalf("groups %v, want %v then [1]", groups, want)
		}
	}
	if grp, _, ok := g.Next(stop); !ok || !slices.Equal(grp, []int{1}) {
		t.Fatalf("last group %v, %t; want [1]", grp, ok)
	}
	// A carried request is handed out even after stop closes (it was taken off the queue,
	// so only the gatherer can answer it); with nothing waiting, Next then stops.
	q <- 6
	q <- 6
	if grp, _, ok := g.Next(stop); !ok || !slices.Equal(grp, []int{6}) {
		t.Fatalf("group %v, %t; want [6] and the second 6 carried", grp, ok)
	}
	close(stop)
	if grp, _, ok := g.Next(stop); !ok || !slices.Equal(grp, []int{6}) {
		t.Fatalf("after stop: %v, %t; want the carried [6]", grp, ok)
	}
	if _, _, ok := g.Next(stop); ok {
		t.Fatal("Next did not report stop with nothing waiting")
	}
}

// Submit tells apart an answer, a request never queued, one queued but unanswered when
// ctx ends, and one the stopped workers never took; an answer given while the workers
// stop still counts.
func TestSubmit(t *testing.T) {
	type req = chan int
	// worker takes one request and does what it is told with it.
	worker := func(q chan req, then func(r req)) { go func() { then(<-q) }() }

	q, stop := make(chan req), make(chan struct{})
	worker(q, func(r req) { r <- 7 })
	r := make(req, 1)
	if a, st := Submit(t.Context(), q, r, r, stop, func() {}); st != Answered || a != 7 {
		t.Fatalf("answered: %d, %v", a, st)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r = make(req, 1)
	if _, st := Submit(ctx, make(chan req), r, r, stop, func() {}); st != Canceled {
		t.Fatalf("never queued: %v", st)
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	worker(q, func(req) { cancel() })
	r = make(req, 1)
	if _, st := Submit(ctx, q, r, r, stop, func() {}); st != Unknown {
		t.Fatalf("taken, then ctx ended: %v", st)
	}

	stop = make(chan struct{})
	worker(q, func(req) { close(stop) })
	waited := false
	r = make(req, 1)
	if _, st := Submit(t.Context(), q, r, r, stop, func() { waited = true }); st != Stopped || !waited {
		t.Fatalf("taken, then stopped unanswered: %v (waited for the workers %t)", st, waited)
	}

	stop = make(chan struct{})
	r = make(req, 1)
	worker(q, func(req) { close(stop) })
	if a, st := Submit(t.Context(), q, r, r, stop, func() { r <- 9 }); st != Answered || a != 9 {
		t.Fatalf("answered while stopping: %d, %v", a, st)
	}
}
