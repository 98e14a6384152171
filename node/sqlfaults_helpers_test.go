package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// tcpProxy forwards TCP connections to a database and can take it away: refuse resets
// every connection, open or new, as a database that went down or a network that broke
// does; blackhole accepts new connections and stops forwarding on every connection, as a
// network that silently drops packets does.
type tcpProxy struct {
	ln     net.Listener
	target string

	refuse    atomic.Bool
	blackhole atomic.Bool
	// downAtCommit makes the next successful COMMIT answer the moment the database goes
	// away: the transaction is committed, its client never hears so (an unknown outcome).
	downAtCommit atomic.Bool
	// commitDropped is closed once it has happened.
	commitDropped chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// startTCPProxy listens on an OS-chosen port of 127.0.0.1 and forwards to target
// ("host:port"); it stops when the test ends.
func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}, commitDropped: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

// proxyTo starts a proxy to the database of URL u and returns it with u pointed at it.
func proxyTo(t *testing.T, u string) (*tcpProxy, string) {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p := startTCPProxy(t, parsed.Host)
	parsed.Host = p.ln.Addr().String()
	return p, parsed.String()
}

// Down resets every proxied connection and every new one until Up.
func (p *tcpProxy) Down() {
	p.refuse.Store(true)
	p.cutAll()
}

// Up forwards again.
func (p *tcpProxy) Up() {
	p.refuse.Store(false)
	p.blackhole.Store(false)
	p.cutAll() // a blackholed connection never recovers; its peer must reconnect
}

// DownAtNextCommit arms downAtCommit; CommitDropped is closed when it fired.
func (p *tcpProxy) DownAtNextCommit() { p.downAtCommit.Store(true) }

// CommitDropped is closed once a COMMIT answer was swallowed by DownAtNextCommit.
func (p *tcpProxy) CommitDropped() <-chan struct{} { return p.commitDropped }

// Blackhole stops forwarding without closing anything until Up.
func (p *tcpProxy) Blackhole() { p.blackhole.Store(true) }

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse.Load() {
		reset(c)
		return false
	}
	p.conns[c] = true
	return true
}

func (p *tcpProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
	clear(p.conns)
}

// reset closes c with an RST rather than a FIN where it can.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(s) {
			reset(c)
			if s != nil {
				_ = s.Close()
			}
			continue
		}
		p.wg.Add(2)
		go p.pipe(s, c)
		go p.fromServer(c, s)
	}
}

// pipe copies from src to dst until either breaks, dropping what arrives while the
// proxy is a blackhole.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer reset(dst)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.blackhole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fromServer forwards the server's messages (type byte, int32 length, body) to the
// client, as pipe does, and takes the database away instead of forwarding a COMMIT's
// CommandComplete when downAtCommit is armed.
func (p *tcpProxy) fromServer(dst, src net.Conn) {
	defer p.wg.Done()
	defer reset(dst)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 {
			return
		}
		msg := make([]byte, 5+n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(src, msg[5:]); err != nil {
			return
		}
		if hdr[0] == 'C' && bytes.HasPrefix(msg[5:], []byte("COMMIT\x00")) && p.downAtCommit.CompareAndSwap(true, false) {
			p.Down()
			close(p.commitDropped)
			return
		}
		if p.blackhole.Load() {
			continue
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
	}
}

// logCapture keeps every log line of Info and above a node writes, attributes included,
// and passes everything on to the test logger.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(&captureHandler{logs: l, next: nodetest.Logger().Handler()})
}

func (l *logCapture) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// find returns the first line containing every one of substrs, or "".
func (l *logCapture) find(substrs ...string) string {
	for _, line := range l.all() {
		ok := true
		for _, s := range substrs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return line
		}
	}
	return ""
}

type captureHandler struct {
	logs   *logCapture
	attrs  []slog.Attr
	prefix string
	next   slog.Handler
}

func (h *captureHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= slog.LevelInfo || h.next.Enabled(ctx, lv)
}

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
		for _, a := range h.attrs {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s%s=%v", h.prefix, a.Key, a.Value)
			return true
		})
		h.logs.mu.Lock()
		h.logs.lines = append(h.logs.lines, b.String())
		h.logs.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *captureHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &captureHandler{logs: h.logs, attrs: append(slices.Clip(h.attrs), attrs...), prefix: h.prefix, next: h.next.WithAttrs(attrs)}
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	return &captureHandler{logs: h.logs, attrs: h.attrs, prefix: h.prefix + name + ".", next: h.next.WithGroup(name)}
}

// readyState is what GET /ready answered.
type readyState struct {
	status int
	body   map[string]any
}

func getReady(ctx context.Context, base string) (readyState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ready", nil)
	if err != nil {
		return readyState{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return readyState{}, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return readyState{}, fmt.Errorf("decode /ready: %w", err)
	}
	return readyState{status: resp.StatusCode, body: body}, nil
}

// eventually polls f until it returns nil, failing the test with f's last error after
// within (generous: it bounds a hang, it measures nothing).
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitReadyStatus polls /ready until it answers want.
func waitReadyStatus(t *testing.T, base string, want int, within time.Duration) readyState {
	t.Helper()
	var last readyState
	eventually(t, within, fmt.Sprintf("/ready answers %d", want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := getReady(ctx, base)
		if err != nil {
			return err
		}
		last = st
		if st.status != want {
			return fmt.Errorf("/ready %d %v", st.status, st.body)
		}
		return nil
	})
	return last
}
