package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// Defaults of the resource bounds (Config).
const (
	DefaultMaxStreams          = 256
	DefaultMaxStreamsPerClient = 16
	DefaultMaxInflightCommands = 4096
	DefaultBodyReadTimeout     = 10 * time.Second
	DefaultWriteTimeout        = 30 * time.Second
	// DefaultJoinTimeout covers a join's catch-up wait (raftstore.DefaultCatchUpTimeout)
	// and the configuration changes around it.
	DefaultJoinTimeout       = 90 * time.Second
	DefaultForwardTryTimeout = 2500 * time.Millisecond
	// DefaultMaxAmount is the largest amount one command may carry, in major units of
	// any currency (see README: int64 edges).
	DefaultMaxAmount chronicle.Decimal = "1000000000"
)

// retryAfter is what a refusal for load tells the client to wait, in seconds.
const retryAfter = "1"

// clientIP is the remote address's host: the unit of the per-client stream cap. It does
// not trust X-Forwarded-For, which any client can set.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// streamSlots caps open event streams in total and per client.
type streamSlots struct {
	max, perClient int
	mu             sync.Mutex
	total          int
	byClient       map[string]int
}

func newStreamSlots(max, perClient int) *streamSlots {
	return &streamSlots{max: max, perClient: perClient, byClient: map[string]int{}}
}

// acquire takes a slot for client, or explains why not; release gives it back.
func (s *streamSlots) acquire(client string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.max {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeTooManyStreams, "this node serves at most %d event streams; retry later", s.max)
	}
	if s.byClient[client] >= s.perClient {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeTooManyStreams, "at most %d event streams per client", s.perClient)
	}
	s.total++
	s.byClient[client]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.byClient[client]--; s.byClient[client] <= 0 {
				delete(s.byClient, client)
			}
		})
	}, nil
}

// open reports how many streams are open.
func (s *streamSlots) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// limitInflight lets at most cap(sem) command requests run at once on this node (body
// read, forwarding and execution included); the rest are refused with 429 at once rather
// than queued, so a flood cannot pile up goroutines and memory.
func (a *API) limitInflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.inflight <- struct{}{}:
			defer func() { <-a.inflight }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", retryAfter)
			writeErrorStatus(w, http.StatusTooManyRequests, chronicle.CodeTooManyRequests,
				"this node is executing "+strconv.Itoa(cap(a.inflight))+" commands already; retry later")
		}
	})
}

// deadlines bounds every request but the event stream: its body must arrive within
// BodyReadTimeout (a client trickling bytes is cut off; readBody lifts the deadline once
// the body is in, as an expired read deadline would cancel the request's context), and
// its response must be written within WriteTimeout. The stream sets rolling write
// deadlines of its own.
func (a *API) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events/stream" {
			rc := http.NewResponseController(w)
			now := time.Now()
			if r.Body != nil && r.Body != http.NoBody {
				_ = rc.SetReadDeadline(now.Add(a.cfg.BodyReadTimeout)) // unsupported: a test recorder
			}
			_ = rc.SetWriteDeadline(now.Add(a.cfg.WriteTimeout))
		}
		next.ServeHTTP(w, r)
	})
}
