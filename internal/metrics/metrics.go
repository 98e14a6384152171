// Package metrics defines Chronicle's Prometheus metrics: their names, labels and
// buckets, the hot-path recorders the API and the Raft store call, and the collectors
// that read a node's existing state at scrape time. Each node owns one Set (its own
// registry, never the default global one), so nodes sharing a process (tests, benches)
// keep their metrics apart.
//
// Every label has a bounded set of values: command types and error codes come from the
// program's own constants (and a cap turns anything beyond it into "other"), routes are
// the router's patterns, never a raw path, an account id, a token or a transfer id.
package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values used by the recorders.
const (
	// CodeOK is the code label of a command that succeeded.
	CodeOK = "ok"
	// Other is what a label value outside the bounded set becomes.
	Other = "other"
	// TypeBatch is the type label of a /commands/batch request refused as a whole
	// before its items were decoded (its items are unknown), and of the batch's latency.
	TypeBatch = "batch"
)

// knownCommandTypes are created up front (with code "ok"), so that dashboards find the
// series before the first command of a type; other valid types are added as they come.
func knownCommandTypes() []string {
	return []string{"create-account", "deposit", "withdraw", "transfer", "freeze-account", "unfreeze-account",
		"close-account", "capture-transfer", "void-transfer", "expire-transfers", Other}
}

// Bounds on lazily created series: beyond them values fold into Other.
const (
	maxTypes      = 32
	maxCodes      = 64 // per type
	maxRoutes     = 256
	maxLabelBytes = 48
)

// Latency buckets in seconds: 100µs to 10s, for commands (an fsync and a Raft round
// trip) and HTTP requests alike.
func latencyBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// Set is one node's metrics: its registry and the recorders handed to the API and the
// Raft store. A nil *Set (metrics off) hands out nil recorders, whose methods do nothing.
type Set struct {
	reg      *prometheus.Registry
	Commands *Commands
	HTTP     *HTTP
	Raft     *Raft
}

// New builds a node's metrics: Go runtime and process collectors, build info, and the
// command, HTTP and Raft recorders (registered; the Raft ones stay empty on a node
// without Raft).
func New(version string) *Set {
	reg := prometheus.NewRegistry()
	s := &Set{reg: reg, Commands: newCommands(), HTTP: newHTTP(), Raft: newRaft()}
	reg.MustRegister( // a fresh registry and fixed, distinct names: cannot fail
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chronicle_build_info", Help: "Always 1; the version label is the build's.",
			ConstLabels: prometheus.Labels{"version": version}}, func() float64 { return 1 }),
		s.Commands.total, s.Commands.duration, s.Commands.batch,
		s.HTTP.requests, s.HTTP.duration)
	return s
}

// Registry is the node's registry (for tests and extra collectors).
func (s *Set) Registry() *prometheus.Registry {
	if s == nil {
		return nil
	}
	return s.reg
}

// Register adds collectors to the node's registry.
func (s *Set) Register(cs ...prometheus.Collector) error {
	if s == nil {
		return nil
	}
	for _, c := range cs {
		if err := s.reg.Register(c); err != nil {
			return fmt.Errorf("metrics: register: %w", err)
		}
	}
	return nil
}

// Handler serves the registry in the Prometheus text (or OpenMetrics) format. A
// collector that fails costs its own metrics, not the scrape.
func (s *Set) Handler(log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 10 * time.Second}
	if log != nil {
		opts.ErrorLog = slogPrinter{log}
	}
	return promhttp.HandlerFor(s.reg, opts)
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Warn("metrics", "err", fmt.Sprint(v...)) }

// validLabel reports whether v may be a label value of a lazily created series: short,
// lower-case letters, digits, '-' and '_' (the shape of command types, error codes and
// view names). Anything else becomes Other.
func validLabel(v string) bool {
	if v == "" || len(v) > maxLabelBytes {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cowMap is a copy-on-write map read without locks on the hot path: a lookup is an
// atomic load and a map access, no allocation; a miss takes the lock and copies.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

func (c *cowMap[K, V]) get(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// getOrAdd returns k's value, making it with mk (under the lock) when absent. Once the
// map holds limit entries, it stores nothing more and returns full() instead: a bound on
// memory whatever the keys.
func (c *cowMap[K, V]) getOrAdd(k K, limit int, mk func() V, full func() V) V {
	if v, ok := c.get(k); ok {
		return v
	}
	c.mu.Lock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			c.mu.Unlock()
			return v
		}
		if len(*old) >= limit {
			c.mu.Unlock()
			return full()
		}
	}
	next := make(map[K]V, 1)
	if old != nil {
		for kk, vv := range *old {
			next[kk] = vv
		}
	}
	v := mk()
	next[k] = v
	c.m.Store(&next)
	c.mu.Unlock()
	return v
}

// Commands records commands by type and result, their latency and batch sizes.
type Commands struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	batch    prometheus.Histogram
	types    cowMap[string, *typeSeries]
}

// typeSeries is one command type's pre-resolved series.
type typeSeries struct {
	name     string
	total    *prometheus.CounterVec
	duration prometheus.Observer
	codes    cowMap[string, prometheus.Counter]
}

func newCommands() *Commands {
	c := &Commands{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chronicle_commands_total",
			Help: "Commands answered by this node, by command type and result code (ok or the stable error code); batch items count one each."},
			[]string{"type", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chronicle_command_duration_seconds",
			Help:    "Time from a command request's decoding to its result, by command type (type batch: one observation per /commands/batch request).",
			Buckets: latencyBuckets()}, []string{"type"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chronicle_batch_commands",
			Help:    "Commands per /commands/batch request.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}}),
	}
	for _, t := range knownCommandTypes() {
		c.series(t).code(CodeOK)
	}
	c.series(TypeBatch) // its latency series
	return c
}

// series is the pre-resolved series of command type t (Other beyond the bounds).
func (c *Commands) series(t string) *typeSeries {
	if ts, ok := c.types.get(t); ok {
		return ts
	}
	return c.addSeries(t)
}

// addSeries is series' slow path, apart so that its closures cost the hot path nothing.
func (c *Commands) addSeries(t string) *typeSeries {
	if !validLabel(t) {
		t = Other
	}
	return c.types.getOrAdd(t, maxTypes,
		func() *typeSeries {
			return &typeSeries{name: t, total: c.total, duration: c.duration.WithLabelValues(t)}
		},
		func() *typeSeries { return c.series(Other) }) // Other is made by newCommands, before the bound

}

func (ts *typeSeries) code(code string) prometheus.Counter {
	if ctr, ok := ts.codes.get(code); ok {
		return ctr
	}
	return ts.addCode(code)
}

// addCode is code's slow path.
func (ts *typeSeries) addCode(code string) prometheus.Counter {
	if !validLabel(code) {
		code = Other
	}
	return ts.codes.getOrAdd(code, maxCodes,
		func() prometheus.Counter { return ts.total.WithLabelValues(ts.name, code) },
		func() prometheus.Counter { return ts.total.WithLabelValues(ts.name, Other) })

}

// Count records one command of type t answered with code (CodeOK on success).
func (c *Commands) Count(t, code string) {
	if c == nil {
		return
	}
	c.series(t).code(code).Inc()
}

// Observe records the latency of a command request of type t (TypeBatch for a batch).
func (c *Commands) Observe(t string, d time.Duration) {
	if c == nil {
		return
	}
	c.series(t).duration.Observe(d.Seconds())
}

// Batch records the size of one /commands/batch request.
func (c *Commands) Batch(n int) {
	if c == nil {
		return
	}
	c.batch.Observe(float64(n))
}

// HTTP records requests by route pattern and status code, and their latency by route.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	routes   cowMap[routeKey, routeSeries]
}

// routeKey identifies a request's series without building its label: the router's
// matched patterns (up to four levels) and the status code.
type routeKey struct {
	patterns [4]string
	n        int
	status   int
}

type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newHTTP() *HTTP {
	return &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chronicle_http_requests_total",
			Help: "HTTP requests answered, by route pattern (never the raw path) and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chronicle_http_request_duration_seconds",
			Help: "HTTP request latency by route pattern (event streams last as long as the client stays).", Buckets: latencyBuckets()},
			[]string{"route"}),
	}
}

// Observe records one request: patterns are the router's matched route patterns, in
// order (chi's RouteContext.RoutePatterns), status its status code.
func (h *HTTP) Observe(patterns []string, status int, d time.Duration) {
	if h == nil {
		return
	}
	k := routeKey{n: len(patterns), status: status}
	if k.n <= len(k.patterns) {
		copy(k.patterns[:], patterns)
	}
	s, ok := h.routes.get(k)
	if !ok {
		s = h.addRoute(k, patterns, status)
	}
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

// addRoute is Observe's slow path.
func (h *HTTP) addRoute(k routeKey, patterns []string, status int) routeSeries {
	{
		mk := func(route string) routeSeries {
			code := strconv.Itoa(status)
			if status < 100 || status > 599 {
				code = Other
			}
			return routeSeries{requests: h.requests.WithLabelValues(route, code), duration: h.duration.WithLabelValues(route)}
		}
		if k.n > len(k.patterns) {
			k = routeKey{n: -1, status: status}
		}
		return h.routes.getOrAdd(k, maxRoutes, func() routeSeries {
			if k.n < 0 {
				return mk(Other)
			}
			return mk(RouteLabel(patterns))
		}, func() routeSeries { return mk(Other) })
	}
}

// RouteLabel joins a router's matched patterns into one route pattern, the way chi's
// RoutePattern does ("/commands/*" then "/transfer" is "/commands/transfer"); no match
// is "none".
func RouteLabel(patterns []string) string {
	p := strings.Join(patterns, "")
	for strings.Contains(p, "/*/") {
		p = strings.ReplaceAll(p, "/*/", "/")
	}
	if p != "/" {
		p = strings.TrimSuffix(strings.TrimSuffix(p, "//"), "/")
	}
	if p == "" {
		return "none"
	}
	return p
}

// Raft records the Raft write path: commands per entry, an entry's time from proposal
// to applied, and the log store's append-and-fsync time.
type Raft struct {
	entryCommands prometheus.Histogram
	entryDuration prometheus.Histogram
	logStore      prometheus.Histogram
	registered    atomic.Bool
}

func newRaft() *Raft {
	return &Raft{
		entryCommands: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chronicle_raft_entry_commands",
			Help:    "Commands per Raft entry this node proposed as leader (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000}}),
		entryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chronicle_raft_entry_duration_seconds",
			Help:    "Time from proposing a command entry to Raft until it is committed and applied.",
			Buckets: latencyBuckets()}),
		logStore: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chronicle_raft_log_store_duration_seconds",
			Help:    "Time the Raft log store takes to append a group of entries and fsync them (StoreLogs).",
			Buckets: latencyBuckets()}),
	}
}

// register adds the Raft recorders to reg, once (only a node that runs Raft shows them).
func (r *Raft) register(reg *prometheus.Registry) error {
	if r.registered.Swap(true) {
		return nil
	}
	return errors.Join(reg.Register(r.entryCommands), reg.Register(r.entryDuration), reg.Register(r.logStore))
}

// EntryProposed records an entry of n commands proposed.
func (r *Raft) EntryProposed(n int) {
	if r == nil {
		return
	}
	r.entryCommands.Observe(float64(n))
}

// EntryApplied records how long an entry took from proposal to applied.
func (r *Raft) EntryApplied(d time.Duration) {
	if r == nil {
		return
	}
	r.entryDuration.Observe(d.Seconds())
}

// LogStored records how long one StoreLogs (append and fsync) took.
func (r *Raft) LogStored(d time.Duration) {
	if r == nil {
		return
	}
	r.logStore.Observe(d.Seconds())
}
