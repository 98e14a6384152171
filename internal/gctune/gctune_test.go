package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, roots, budget uint64
		want                int
	}{
		{0, 0, 512 * mib, MaxPercent},
		{1 * mib, 0, 512 * mib, MaxPercent},         // a tiny heap: five times, not the budget
		{512 * mib / 5, 0, 512 * mib, MaxPercent},   // exactly five times fits the budget
		{128 * mib, 0, 512 * mib, 300},              // grows to the budget
		{256 * mib, 0, 512 * mib, MinPercent},       // half the budget: Go's default
		{400 * mib, 0, 512 * mib, MinPercent},       // past half: never more often than Go's default
		{2048 * mib, 0, 512 * mib, MinPercent},      // past the budget
		{200 * mib, 0, 512 * mib, 156},              // (512-200)/200
		{1, 0, ^uint64(0), MaxPercent},              // no overflow on a huge budget
		{^uint64(0) / 2, 0, ^uint64(0), MinPercent}, // nor on a huge live heap
		{^uint64(0) / 8, 0, ^uint64(0) / 2, 300},    // (4-1)/1 with huge numbers
		{^uint64(0) / 100, 0, ^uint64(0) / 100, MinPercent},
		{128 * mib, 32 * mib, 512 * mib, 240},          // (512-128)/(128+32): stacks and globals count
		{100 * mib, ^uint64(0), 512 * mib, MinPercent}, // roots saturate
	} {
		if got := Percent(c.live, c.roots, c.budget); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.budget, got, c.want)
		}
	}
}

// gogc reads the GOGC percentage in force.
func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitPercent collects until the tuner has seen a cycle after now and GOGC is want.
func waitPercent(t *testing.T, tu *Tuner, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for start := tu.Cycles(); ; {
		runtime.GC()
		if tu.Cycles() > start && gogc(t) == want && tu.Percent() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d (tuner says %d after %d cycles), want %d", gogc(t), tu.Percent(), tu.Cycles()-start, want)
		}
		time.Sleep(10 * time.Millisecond) // let the finalizer goroutine run
	}
}

// TestTunerFollowsTheLiveHeap runs the real collector: with a small live heap the tuner
// lets the heap grow five times; holding more than half the budget live brings it back
// to Go's default; dropping it again lets it grow; Stop restores what was set before.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(137)
	defer debug.SetGCPercent(before)

	runtime.GC()
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	budget := base*6 + 64<<20 // the test binary's own heap is small next to this

	tu := Start(budget)
	waitPercent(t, tu, MaxPercent)

	ballast := make([]byte, budget*3/4) // live, so the next cycle sees it
	for i := range ballast {
		ballast[i] = 1
	}
	waitPercent(t, tu, MinPercent)
	runtime.KeepAlive(ballast)
	ballast = nil
	waitPercent(t, tu, MaxPercent)

	tu.Stop()
	if got := gogc(t); got != 137 {
		t.Fatalf("GOGC after Stop = %d, want 137 (as before Start)", got)
	}
	runtime.GC()
	runtime.GC()
	if got := gogc(t); got != 137 {
		t.Fatalf("GOGC after Stop and two cycles = %d: the tuner kept setting it", got)
	}
}

// TestTunerSeesEveryCycle: the tuner must keep running while the program holds many
// small objects. A sentinel small and pointer-free enough for Go's tiny allocator would
// share a 16-byte block with them, and its finalizer would never run again (on a loaded
// node the tuner stopped at GOGC=400 with hundreds of MB live, and the heap grew to 2 GB).
func TestTunerSeesEveryCycle(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	tu := Start(1 << 40)
	defer tu.Stop()

	var keep []*[8]byte // tiny, pointer-free, live: what the tiny allocator packs together
	for range 20 {
		start := tu.Cycles()
		for range 1000 {
			keep = append(keep, new([8]byte))
		}
		deadline := time.Now().Add(10 * time.Second)
		for tu.Cycles() == start {
			if time.Now().After(deadline) {
				t.Fatalf("the tuner saw no collection in 10 s of runtime.GC calls, after %d cycles (it stopped being called)", start)
			}
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
	}
	runtime.KeepAlive(keep)
}
