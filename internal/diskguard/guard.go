// Package diskguard refuses writes before the disk fills. Pebble treats a failed commit
// as fatal and the embedded JetStream disables itself when a write hits ENOSPC, so a node
// must stop accepting writes while there is still room for what is already in flight
// (Raft entries, a memtable flush, a compaction, JetStream blocks): the reserve.
//
// A Guard measures the filesystems holding the data dir (statfs) every Interval and, at
// most every minRefresh, when a write asks; below the reserve Check returns a 507
// insufficient_storage error. Writes resume once free space is back above the reserve
// plus a margin (hysteresis), so a node hovering at the reserve does not flap.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/bytesize"
)

// Defaults.
const (
	// DefaultInterval is how often the background loop measures free space.
	DefaultInterval = 250 * time.Millisecond
	// DefaultReserveBytes and DefaultReservePercent: the default reserve is the smaller
	// of the two (see DefaultReserve).
	DefaultReserveBytes   = 256 << 20
	DefaultReservePercent = 1.0
	// minRefresh: Check measures again when the cached figure is older than this.
	minRefresh = 50 * time.Millisecond
	// minMargin is the least hysteresis above the reserve before writes resume.
	minMargin = 1 << 20
)

// Reserve is how much free space to keep: a percentage of the filesystem's size, a
// number of bytes, or (Default) the smaller of 1 % and 256 MiB.
type Reserve struct {
	Percent float64 // > 0: a percentage of the filesystem's size
	Bytes   uint64  // used when Percent is 0
	Default bool
}

// DefaultReserve is the smaller of 1 % of the filesystem and 256 MiB: 256 MiB holds a
// memtable flush, a compaction of the upper levels and every write in flight on any disk,
// and 1 % keeps a small volume (a few GiB) usable.
var DefaultReserve = Reserve{Default: true}

// ParseReserve reads a reserve: "1%", "0.5%", "256MiB", "1GiB", "500MB", "1048576" (bytes),
// "0" (guard off) or "" / "default" (DefaultReserve).
func ParseReserve(s string) (Reserve, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "default") {
		return DefaultReserve, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v >= 100 {
			return Reserve{}, fmt.Errorf("disk reserve %q: want a percentage from 0%% to below 100%%", s)
		}
		return Reserve{Percent: v}, nil
	}
	n, err := bytesize.Parse(s)
	if err != nil {
		return Reserve{}, fmt.Errorf("disk reserve %q: want a percentage (1%%) or a size (256MiB, 1GiB, bytes)", s)
	}
	return Reserve{Bytes: n}, nil
}

// Off reports whether the reserve turns the guard off ("0" or "0%").
func (r Reserve) Off() bool { return !r.Default && r.Percent == 0 && r.Bytes == 0 }

// For is the reserve in bytes on a filesystem of total bytes.
func (r Reserve) For(total uint64) uint64 {
	switch {
	case r.Default:
		return min(uint64(float64(total)*DefaultReservePercent/100), DefaultReserveBytes)
	case r.Percent > 0:
		return uint64(float64(total) * r.Percent / 100)
	}
	return r.Bytes
}

func (r Reserve) String() string {
	switch {
	case r.Default:
		return "min(1%, 256MiB)"
	case r.Percent > 0:
		return strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%"
	}
	return Bytes(r.Bytes)
}

// Usage is one filesystem's free space (available to the process) and size, in bytes.
type Usage struct {
	Free, Total uint64
}

// Config configures a Guard.
type Config struct {
	// Dirs are the directories whose filesystems are watched (missing ones are skipped);
	// the one with the least room above its reserve decides.
	Dirs    []string
	Reserve Reserve
	// Interval between background measurements (default DefaultInterval).
	Interval time.Duration
	// Statfs measures a directory (default: statfs(2); tests substitute their own).
	Statfs func(dir string) (Usage, error)
	Logger *slog.Logger
}

// State is the guard's last measurement.
type State struct {
	// Low is set while writes are refused.
	Low bool `json:"low"`
	// Dir is the watched directory with the least room above its reserve.
	Dir     string `json:"dir,omitempty"`
	Free    uint64 `json:"free_bytes"`
	Total   uint64 `json:"total_bytes"`
	Reserve uint64 `json:"reserve_bytes"`
	// Resume is the free space at which writes resume once Low.
	Resume uint64 `json:"resume_bytes"`
	// Err is why the last measurement failed (the previous verdict stands).
	Err     string    `json:"error,omitempty"`
	Checked time.Time `json:"checked"`
}

// Message describes a Low state for a client or /ready.
func (s State) Message() string {
	return fmt.Sprintf("insufficient storage: %s free on the filesystem of %s (%s), below the reserve of %s (--disk-reserve); "+
		"writes are refused and resume once %s is free; reads still work",
		Bytes(s.Free), s.Dir, Bytes(s.Total), Bytes(s.Reserve), Bytes(s.Resume))
}

// Guard watches free space; see the package comment. A nil *Guard never refuses.
type Guard struct {
	cfg   Config
	log   *slog.Logger
	state atomic.Pointer[State]
	mu    sync.Mutex // one measurement at a time
}

// New builds a guard; nil (never refusing) when the reserve is off or the platform
// cannot measure free space. It measures once before returning.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Statfs == nil {
		if !Supported {
			cfg.Logger.Warn("disk space guard off: free space is not measured on this platform")
			return nil
		}
		cfg.Statfs = statfs
	}
	if cfg.Reserve.Off() {
		cfg.Logger.Warn("disk space guard off (--disk-reserve 0): a full disk stops the node")
		return nil
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	g := &Guard{cfg: cfg, log: cfg.Logger.With("component", "diskguard")}
	g.state.Store(&State{})
	g.Refresh()
	return g
}

// State is the last measurement.
func (g *Guard) State() State {
	if g == nil {
		return State{}
	}
	return *g.state.Load()
}

// Check returns a 507 insufficient_storage error while free space is below the reserve.
// It uses the last measurement, measuring again when that is older than minRefresh.
func (g *Guard) Check() error {
	if g == nil {
		return nil
	}
	st := g.state.Load()
	if time.Since(st.Checked) > minRefresh && g.mu.TryLock() {
		g.mu.Unlock()
		s := g.Refresh()
		st = &s
	}
	if !st.Low {
		return nil
	}
	e := chronicle.Errorf(chronicle.KindInsufficientStorage, chronicle.CodeInsufficientStorage, "%s; nothing was written", st.Message())
	e.Safe = true // refused before anything was proposed
	return e
}

// Refresh measures now and returns the new state, logging a change of verdict.
func (g *Guard) Refresh() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := *g.state.Load()
	next := State{Low: prev.Low, Checked: time.Now()}
	var best *State
	var errs []string
	for _, dir := range g.cfg.Dirs {
		u, err := g.cfg.Statfs(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err.Error())
			}
			continue
		}
		reserve := g.cfg.Reserve.For(u.Total)
		c := State{Dir: dir, Free: u.Free, Total: u.Total, Reserve: reserve,
			Resume: reserve + max(reserve/10, min(minMargin, u.Total/100))}
		if best == nil || headroom(c) < headroom(*best) {
			best = &c
		}
	}
	if best == nil {
		// Nothing measured: keep the previous verdict (and figures), say why.
		next = prev
		next.Checked = time.Now()
		next.Err = strings.Join(errs, "; ")
		if next.Err == "" {
			next.Err = "no watched directory exists"
		}
		if prev.Err != next.Err {
			g.log.Warn("cannot measure free space; the previous verdict stands", "err", next.Err, "low", next.Low)
		}
		g.state.Store(&next)
		return next
	}
	next.Dir, next.Free, next.Total, next.Reserve, next.Resume = best.Dir, best.Free, best.Total, best.Reserve, best.Resume
	next.Err = strings.Join(errs, "; ")
	switch {
	case !prev.Low && next.Free < next.Reserve:
		next.Low = true
		g.log.Error("disk below the reserve: refusing writes until space is freed", "dir", next.Dir,
			"free", Bytes(next.Free), "reserve", Bytes(next.Reserve), "resume_at", Bytes(next.Resume))
	case prev.Low && next.Free >= next.Resume:
		next.Low = false
		g.log.Info("disk space back above the reserve: writes resume", "dir", next.Dir,
			"free", Bytes(next.Free), "reserve", Bytes(next.Reserve))
	}
	g.state.Store(&next)
	return next
}

// headroom is free space above the reserve (negative below it).
func headroom(s State) float64 { return float64(s.Free) - float64(s.Reserve) }

// Run measures every Interval until ctx ends, calling onMeasure (if set) with every
// measurement (so a caller can restart what the full disk stopped once it is not Low).
func (g *Guard) Run(ctx context.Context, onMeasure func(State)) {
	if g == nil {
		return
	}
	tick := time.NewTicker(g.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := g.Refresh()
		if onMeasure != nil {
			onMeasure(st)
		}
	}
}

// Bytes formats n in binary units ("3.5 MiB").
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
