package node_test

// Resource bounds: the event stream caps and shared encoding, the body read deadline, the
// in-flight command cap, the amount limit, and forwarding past an unresponsive leader.
// Every wait polls a condition with a generous deadline.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// fromIP is an HTTP client whose connections come from the loopback address ip, so
// that one test can be several clients of the per-client caps.
func fromIP(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// getStream opens /events/stream; the caller closes the response.
func getStream(t *testing.T, ctx context.Context, hc *http.Client, base string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// wantRefusal checks resp is status with the JSON error code and a Retry-After.
func wantRefusal(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	defer resp.Body.Close()
	var body struct{ Code, Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != status || body.Code != code || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d %q (%s) Retry-After %q, want %d %s with Retry-After", resp.StatusCode, body.Code, body.Error, resp.Header.Get("Retry-After"), status, code)
	}
}

// poll waits for f to return nil, failing the test after within.
func poll(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamCaps: the stream beyond the per-client cap and the one beyond the global cap
// are refused with 503 too_many_streams and Retry-After; a closed stream frees its slot.
func TestStreamCaps(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.MaxStreams, c.MaxStreamsPerClient = 3, 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b, c := fromIP("127.0.0.1"), fromIP("127.0.0.2"), fromIP("127.0.0.3")
	first := getStream(t, ctx, a, n.URL())
	defer first.Body.Close()
	second := getStream(t, ctx, a, n.URL())
	defer second.Body.Close()
	for _, r := range []*http.Response{first, second} {
		if r.StatusCode != http.StatusOK {
			t.Fatalf("stream within the caps: %d", r.StatusCode)
		}
	}
	wantRefusal(t, getStream(t, ctx, a, n.URL()), http.StatusServiceUnavailable, chronicle.CodeTooManyStreams)
	third := getStream(t, ctx, b, n.URL())
	defer third.Body.Close()
	if third.StatusCode != http.StatusOK {
		t.Fatalf("another client's stream within the global cap: %d", third.StatusCode)
	}
	wantRefusal(t, getStream(t, ctx, c, n.URL()), http.StatusServiceUnavailable, chronicle.CodeTooManyStreams)

	first.Body.Close()
	poll(t, 30*time.Second, "a closed stream frees its slot", func() error {
		r := getStream(t, ctx, a, n.URL())
		if r.StatusCode == http.StatusOK {
			t.Cleanup(func() { r.Body.Close() })
			return nil
		}
		r.Body.Close()
		return fmt.Errorf("status %d", r.StatusCode)
	})
}

// TestStreamsShareEncoding: many streams cost one JSON encoding per event, not one per
// event per stream.
func TestStreamsShareEncoding(t *testing.T) {
	const streams = 20
	n := nodetest.Start(t, func(c *node.Config) { c.MaxStreamsPerClient = streams })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := n.API().StreamStats().Encoded
	chans := make([]<-chan sseEvent, streams)
	for i := range chans {
		chans[i] = openStream(t, ctx, n.URL()+"/events/stream", "")
	}
	mustCreate(t, n.Client, "enc", "USD", "1")
	var last client.CommandResult
	for i := 0; i < 10; i++ {
		res, err := n.Client.Deposit(ctx, client.Money{AccountID: "enc", Amount: "1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		last = res
	}
	events := 0
	for i, ch := range chans {
		got := 0
		for {
			ev := next(t, ctx, ch)
			got++
			if ev.id >= last.Position {
				break
			}
		}
		if i == 0 {
			events = got
		} else if got != events {
			t.Fatalf("stream %d saw %d events, stream 0 %d", i, got, events)
		}
	}
	encoded := n.API().StreamStats().Encoded - before
	t.Logf("%d streams, %d events, %d encodings", streams, events, encoded)
	if encoded > uint64(events) {
		t.Fatalf("%d events were encoded %d times for %d streams; want once each", events, encoded, streams)
	}
}

// slowBody sends a command's headers and the first byte of its body, then nothing.
func slowBody(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /commands/deposit HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", addr)
	return conn
}

// TestSlowBodyDisconnected: a client that sends its headers and one byte of its body and
// then nothing is cut off once the body read deadline passes.
func TestSlowBodyDisconnected(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.ReadTimeout = time.Second })
	conn := slowBody(t, strings.TrimPrefix(n.URL(), "http://"))
	// Generous: the deadline is 1s; without one the server would wait forever.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open 30s after the body stalled (read %q)", resp)
	}
	t.Logf("server answered %q and closed the connection", firstLine(resp))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// TestInflightCap: with every command slot taken, a command is refused with 429
// too_many_requests and Retry-After; once the slot frees, commands run again.
func TestInflightCap(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.MaxInflightCommands = 1; c.ReadTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustCreate(t, n.Client, "inf", "USD", "0")
	deposit := func() *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.URL()+"/commands/deposit", strings.NewReader(`{"account_id":"inf","amount":"1"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var refused *http.Response
	var holder net.Conn
	poll(t, 30*time.Second, "a command beyond the cap is refused", func() error {
		// A request whose body trickles holds the slot; if the deposit overtook it, try
		// again (the server may have handled the two in either order).
		h := slowBody(t, strings.TrimPrefix(n.URL(), "http://"))
		r := deposit()
		if r.StatusCode == http.StatusTooManyRequests {
			refused, holder = r, h
			return nil
		}
		r.Body.Close()
		h.Close() // frees the slot if it did take it after all
		return fmt.Errorf("status %d", r.StatusCode)
	})
	wantRefusal(t, refused, http.StatusTooManyRequests, chronicle.CodeTooManyRequests)
	holder.Close()
	poll(t, 30*time.Second, "commands run again once the slot frees", func() error {
		r := deposit()
		defer r.Body.Close()
		if r.StatusCode != http.StatusCreated {
			return fmt.Errorf("status %d", r.StatusCode)
		}
		return nil
	})
}

// TestMaxAmount: amounts above --max-amount are refused with 422 invalid_amount naming
// the limit, in single commands and batches; the limit itself is accepted.
func TestMaxAmount(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.MaxAmount = "1000" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustCreate(t, n.Client, "max", "USD", "1000")
	refused := func(what string, err error) {
		t.Helper()
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Code != chronicle.CodeInvalidAmount || !strings.Contains(ae.Message, "1000") {
			t.Fatalf("%s: got %v, want 422 invalid_amount naming the limit", what, err)
		}
	}
	_, err := n.Client.Deposit(ctx, client.Money{AccountID: "max", Amount: "1000.01"}, "")
	refused("deposit above the limit", err)
	_, err = n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "max2", OwnerName: "M", Currency: "USD", InitialBalance: "1001"}, "")
	refused("initial balance above the limit", err)
	_, err = n.Client.Do(ctx, http.MethodPost, "/commands/batch", []byte(`{"commands":[{"type":"deposit","account_id":"max","amount":"92000000000000000.00"}]}`), nil, nil)
	refused("batch item above the limit", err)
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "max", Amount: "1000.00"}, ""); err != nil {
		t.Fatalf("deposit at the limit: %v", err)
	}
	if _, err := n.Client.Transfer(ctx, client.Transfer{FromAccountID: "max", ToAccountID: "max2x", Amount: "5000"}, ""); err == nil {
		t.Fatal("transfer above the limit was accepted")
	} else {
		refused("transfer above the limit", err)
	}
}

// TestDefaultMaxAmount: the default limit refuses the deposits that used to drive
// @world:USD to the int64 edge.
func TestDefaultMaxAmount(t *testing.T) {
	n := nodetest.Start(t)
	mustCreate(t, n.Client, "big", "USD", "0")
	_, err := n.Client.Deposit(context.Background(), client.Money{AccountID: "big", Amount: "92000000000000000.00"}, "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != chronicle.CodeInvalidAmount {
		t.Fatalf("huge deposit: got %v, want invalid_amount", err)
	}
	if _, err := n.Client.Deposit(context.Background(), client.Money{AccountID: "big", Amount: "1000000000"}, ""); err != nil {
		t.Fatalf("deposit at the default limit: %v", err)
	}
}

// gate pauses a node's HTTP handling: requests arriving while it is shut wait until it
// opens or their client gives up, like a SIGSTOPped process's accepted connections.
type gate struct {
	mu      sync.Mutex
	shut    chan struct{} // nil: open
	blocked atomic.Int32
}

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if shut != nil {
			g.blocked.Add(1)
			select {
			case <-shut:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut == nil {
		g.shut = make(chan struct{})
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
}

// TestForwardPastPausedLeader: a follower forwards a keyed command to a leader that has
// stopped answering; when the leader is replaced, the follower's next try goes to the new
// leader and the command succeeds, exactly once, within the request timeout rather than
// after it.
func TestForwardPastPausedLeader(t *testing.T) {
	var mu sync.Mutex
	gates := map[string]*gate{}
	c := nodetest.StartCluster(t, 3, func(cfg *node.Config) {
		g := &gate{}
		mu.Lock()
		gates[cfg.NodeID] = g
		mu.Unlock()
		cfg.WrapHandler = g.wrap
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := c.Leader(t)
	f := (l + 1) % 3
	mustCreate(t, c.Nodes[l].Client, "fw", "USD", "0")
	g := gates[c.Config(l).NodeID]
	t.Cleanup(func() { c.Heal(); g.resume() })
	g.pause()

	type outcome struct {
		status int
		err    error
		took   time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		start := time.Now()
		hdr := http.Header{"Idempotency-Key": {"fw-1"}}
		status, err := c.Nodes[f].Client.Do(ctx, http.MethodPost, "/commands/deposit", []byte(`{"account_id":"fw","amount":"7"}`), hdr, nil)
		done <- outcome{status, err, time.Since(start)}
	}()
	poll(t, 30*time.Second, "the follower forwards to the paused leader", func() error {
		if g.blocked.Load() == 0 {
			return errors.New("no request held")
		}
		return nil
	})
	c.Isolate(l) // the others elect a new leader
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("the forwarded command never finished")
	}
	if o.err != nil {
		t.Fatalf("forwarded keyed command after %s: %v", o.took, o.err)
	}
	t.Logf("forwarded command succeeded in %s (status %d)", o.took, o.status)
	nl := (l + 1) % 3
	if !c.Nodes[nl].IsLeader() {
		nl = (l + 2) % 3
	}
	poll(t, 30*time.Second, "the deposit is applied once", func() error {
		a, err := c.Nodes[nl].Client.Account(ctx, "fw", 0)
		if err != nil {
			return err
		}
		if a.Balance != "7.00" {
			return fmt.Errorf("balance %s, want 7.00", a.Balance)
		}
		return nil
	})
}

// BenchmarkDepositStreams reports a deposit's latency with 1 and with 1,000 event
// streams open (go test -run - -bench DepositStreams ./node/).
func BenchmarkDepositStreams(b *testing.B) {
	for _, streams := range []int{1, 1000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			n := nodetest.Start(b, func(c *node.Config) { c.MaxStreams, c.MaxStreamsPerClient = streams, streams })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: streams}}
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			for i := 0; i < streams; i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/events/stream", nil)
				resp, err := hc.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("stream %d: %v", i, err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer resp.Body.Close()
					_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
				}()
			}
			if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "b", OwnerName: "B", Currency: "USD"}, ""); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "b", Amount: "1"}, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
