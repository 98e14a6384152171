// Package gctune paces Go's garbage collector by the live heap: while the live heap is
// small, it lets the heap grow to a budget (at most five times the live heap) before
// collecting; once the live heap passes half the budget it collects at twice the live
// heap, as Go's default (GOGC=100) does.
//
// Why: a node's allocation is steady per command, so the collector's cost per command
// falls as the heap it may grow to rises. With GOGC=100 and a live heap of about 130 MB,
// the collector took a quarter of a loaded node's CPU in batch mode (marking and assists);
// letting it grow to five times the live heap cut the node's CPU per transfer by 11 %.
// A fixed GOGC of 400 would do the same but make a node holding a million accounts
// (hundreds of MB live) grow to gigabytes; a memory limit (GOMEMLIMIT) would make such a
// node collect without pause once its live heap neared the limit. The budget bounds the
// first, and the floor of GOGC=100 avoids the second.
//
// The pace is reset after every collection, from a finalizer that runs once per cycle.
package gctune

import (
	"math/bits"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Bounds of the GOGC percentage set.
const (
	MinPercent = 100 // Go's default: never collect more often than it would
	MaxPercent = 400 // never let the heap grow past five times the live heap
)

// The runtime metrics read after each collection: the heap it found reachable, and the
// stacks and globals it scanned, which Go's heap goal counts too.
const (
	liveMetric    = "/gc/heap/live:bytes"
	stacksMetric  = "/gc/scan/stack:bytes"
	globalsMetric = "/gc/scan/globals:bytes"
)

// Percent is the GOGC percentage for a live heap of live bytes and roots bytes of stacks
// and globals. Go sets the next collection at live + (live+roots)*GOGC/100; Percent
// makes that the budget, but no more than MaxPercent and no less than MinPercent.
func Percent(live, roots, budget uint64) int {
	if live == 0 {
		return MaxPercent
	}
	if budget <= live {
		return MinPercent
	}
	scan := live + min(roots, ^uint64(0)-live) // saturating
	over := budget - live
	if over/scan >= MaxPercent/100 {
		return MaxPercent
	}
	// over*100/scan in 128 bits: over*100 may not fit in 64, the quotient (below
	// MaxPercent) does, and hi < scan because over < 4*scan.
	hi, lo := bits.Mul64(over, 100)
	q, _ := bits.Div64(hi, lo, scan)
	return max(MinPercent, int(q))
}

// Tuner sets GOGC after each collection until Stop.
type Tuner struct {
	budget  uint64
	stopped atomic.Bool
	percent atomic.Int64 // last set
	cycles  atomic.Uint64

	mu     sync.Mutex // serialises adjust and Stop's restore
	before int        // GOGC when started, restored by Stop
	sample []metrics.Sample
}

// Start begins pacing the collector for a heap budget of budget bytes (which must be
// above zero). Only one Tuner should run in a process: GOGC is process-wide.
func Start(budget uint64) *Tuner {
	t := &Tuner{budget: budget, sample: []metrics.Sample{{Name: liveMetric}, {Name: stacksMetric}, {Name: globalsMetric}}}
	t.before = debug.SetGCPercent(MinPercent)
	t.percent.Store(MinPercent)
	t.adjust()
	t.arm()
	return t
}

// arm registers a finalizer on a new, unreachable object: the collector runs it after the
// next cycle, and it arms the next one.
func (t *Tuner) arm() {
	s := new(sentinel)
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.cycles.Add(1)
		t.adjust()
		t.arm()
	})
}

// sentinel holds a pointer so that it is an object of its own. A zero-size one would share
// one address with every other and never become unreachable; a small pointer-free one
// would go to Go's tiny allocator, which packs it into a 16-byte block with other small
// objects, and its finalizer would wait for all of them to die.
type sentinel struct{ _ *sentinel }

func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	var v [3]uint64
	for i, s := range t.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return // not on this runtime: stay where it is
		}
		v[i] = s.Value.Uint64()
	}
	p := Percent(v[0], v[1]+v[2], t.budget)
	if int64(p) != t.percent.Load() {
		debug.SetGCPercent(p)
		t.percent.Store(int64(p))
	}
}

// Percent is the GOGC percentage last set.
func (t *Tuner) Percent() int { return int(t.percent.Load()) }

// Cycles is how many collections the tuner has seen.
func (t *Tuner) Cycles() uint64 { return t.cycles.Load() }

// Stop stops pacing and restores the GOGC percentage from before Start.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.before)
}
