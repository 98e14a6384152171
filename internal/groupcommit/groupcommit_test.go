package groupcommit

import (
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
