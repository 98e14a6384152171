package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// postJoin sends POST /cluster/join to c and returns the API error, if any.
func postJoin(ctx context.Context, c *client.Client, id, raftAddr, apiURL string) error {
	body, _ := json.Marshal(map[string]string{"node_id": id, "raft_addr": raftAddr, "api_url": apiURL})
	_, err := c.Do(ctx, http.MethodPost, "/cluster/join", body, nil, nil)
	return err
}

// suffrages is the configuration as the store holds it: id -> Voter/Nonvoter.
func suffrages(t *testing.T, s *raftstore.Store) map[string]string {
	t.Helper()
	servers, err := s.Servers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, srv := range servers {
		out[srv.ID] = srv.Suffrage
	}
	return out
}

func requireAPIError(t *testing.T, err error, status int, code string, mentions ...string) {
	t.Helper()
	var e *client.APIError
	if !errors.As(err, &e) || e.Status != status || e.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
	for _, m := range mentions {
		if !strings.Contains(e.Message, m) {
			t.Errorf("message %q does not name %q", e.Message, m)
		}
	}
}

// TestJoinOfUnreachableNodeRefused is the attack of issue 10: POST /cluster/join naming
// a Raft address nobody answers on used to add it as a voter, and a one-node cluster then
// lost its quorum for good (no_leader on every write, across restarts). Now the join is
// refused, nothing changes, and the node stays writable, also after a restart. Joins
// that would replace the leader itself are refused too.
func TestJoinOfUnreachableNodeRefused(t *testing.T) {
	cfg := node.Config{NodeID: "n1", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t), RaftAddr: nodetest.FreeAddr(t)}
	n := nodetest.Start(t, func(c *node.Config) { *c = cfg; c.Logger = nodetest.Logger() })
	ctx := ctxT(t)
	mustCreate(t, n.Client, "a", "USD", "10")

	dead := nodetest.FreeAddr(t) // reserved and released: nothing listens there
	err := postJoin(ctx, n.Client, "ghost", dead, "http://"+nodetest.FreeAddr(t))
	requireAPIError(t, err, http.StatusUnprocessableEntity, chronicle.CodeJoinUnreachable, "ghost", dead)

	// Neither the leader's own id at another address nor another id at the leader's
	// address (where the probe would reach the leader itself) may replace it.
	err = postJoin(ctx, n.Client, "n1", dead, "http://"+nodetest.FreeAddr(t))
	requireAPIError(t, err, http.StatusConflict, chronicle.CodeJoinConflict)
	err = postJoin(ctx, n.Client, "impostor", cfg.RaftAddr, "http://"+nodetest.FreeAddr(t))
	requireAPIError(t, err, http.StatusConflict, chronicle.CodeJoinConflict)
	// The API URL is where the leader follows the catch-up: required.
	err = postJoin(ctx, n.Client, "n2", dead, "")
	requireAPIError(t, err, http.StatusBadRequest, chronicle.CodeMissingField)

	if got := suffrages(t, n.Store()); len(got) != 1 || got["n1"] != "Voter" {
		t.Fatalf("configuration after refused joins: %v, want n1 alone", got)
	}
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "5"}, ""); err != nil {
		t.Fatalf("deposit after the refused join: %v", err)
	}
	n = n.Restart(t)
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "5"}, ""); err != nil {
		t.Fatalf("deposit after a restart: %v", err)
	}
	a, err := n.Client.Account(ctx, "a", 0)
	if err != nil || a.Balance != "20.00" {
		t.Fatalf("account a after restart: %+v, %v; want 20.00", a, err)
	}
}

// infoGate holds a node's GET /cluster/info answers (how the leader follows a joining node's
// catch-up) until it is opened, or answers them 503 while it is failing.
type infoGate struct {
	open    chan struct{}
	once    sync.Once
	failing atomic.Bool
	asked   atomic.Int64
}

func newInfoGate() *infoGate { return &infoGate{open: make(chan struct{})} }

func (g *infoGate) release() { g.once.Do(func() { close(g.open) }) }

func (g *infoGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/cluster/info" {
			g.asked.Add(1)
			if g.failing.Load() {
				http.Error(w, `{"error":"held by the test","code":"unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			select {
			case <-g.open:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// writer deposits into account id through c until stopped, counting successes and
// keeping every failure.
type writer struct {
	ok   atomic.Int64
	mu   sync.Mutex
	errs []error
	stop chan struct{}
	done chan struct{}
}

func startWriter(c *client.Client, id string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for k := 0; ; k++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.Deposit(ctx, client.Money{AccountID: id, Amount: "1"}, fmt.Sprintf("w-%d", k))
			cancel()
			if err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, err)
				w.mu.Unlock()
				continue
			}
			w.ok.Add(1)
		}
	}()
	return w
}

func (w *writer) finish() (int64, []error) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok.Load(), w.errs
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJoinPromotesOnlyAfterCatchUp: a node started with --join enters the configuration
// as a non-voter and stays one while the leader cannot see it caught up (its catch-up
// reports are held); the cluster takes writes throughout; once the reports flow it is
// promoted to voter, and serves the same log.
func TestJoinPromotesOnlyAfterCatchUp(t *testing.T) {
	ctx := ctxT(t)
	n1 := nodetest.Start(t, func(c *node.Config) { c.HTTPAddr, c.RaftAddr = nodetest.FreeAddr(t), nodetest.FreeAddr(t) })
	mustCreate(t, n1.Client, "a", "USD", "0")
	for i := 0; i < 50; i++ {
		if _, err := n1.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	w := startWriter(n1.Client, "a")
	defer func() {
		select {
		case <-w.stop:
		default:
			w.finish()
		}
	}()

	g := newInfoGate()
	n2 := nodetest.Launch(t, node.Config{NodeID: "n2", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t), RaftAddr: nodetest.FreeAddr(t),
		Join: []string{n1.URL()}, WrapHandler: g.wrap, Logger: nodetest.Logger()})

	waitFor(t, 30*time.Second, "n2 in the configuration as a non-voter", func() bool {
		s := suffrages(t, n1.Store())["n2"]
		if s == "Voter" {
			t.Fatal("n2 became a voter before the leader saw it caught up")
		}
		return s == "Nonvoter"
	})
	// While held, the leader keeps asking and keeps it a non-voter; writes go on.
	before := w.ok.Load()
	waitFor(t, 30*time.Second, "the leader asking n2 for its progress, and writes going on", func() bool {
		return g.asked.Load() >= 2 && w.ok.Load() >= before+20
	})
	if s := suffrages(t, n1.Store())["n2"]; s != "Nonvoter" {
		t.Fatalf("n2 is %q while its progress is held, want Nonvoter", s)
	}

	g.release()
	waitFor(t, 30*time.Second, "n2 promoted to voter", func() bool { return suffrages(t, n1.Store())["n2"] == "Voter" })
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n2.WaitReady(rctx); err != nil {
		t.Fatalf("n2 not ready: %v", err)
	}
	before = w.ok.Load()
	waitFor(t, 30*time.Second, "writes after the promotion (now committed by both)", func() bool { return w.ok.Load() >= before+20 })
	ok, errs := w.finish()
	if len(errs) > 0 {
		t.Fatalf("%d of %d writes failed during the join, first: %v", len(errs), ok+int64(len(errs)), errs[0])
	}
	a, err := n1.Client.Account(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d.00", 50+ok); a.Balance != want {
		t.Fatalf("balance %s after %d writes, want %s", a.Balance, 50+ok, want)
	}
	h := head(t, n1.Client)
	var local client.Account
	if _, err := n2.Client.Do(ctx, http.MethodGet, fmt.Sprintf("/accounts/a?consistency=local&min_position=%d", h), nil, nil, &local); err != nil || local.Balance != a.Balance {
		t.Fatalf("n2 serves %+v (%v), want balance %s", local, err, a.Balance)
	}
	t.Logf("%d writes during the join, none failed; n2 asked %d times", ok, g.asked.Load())
}

// TestJoinRolledBackWhenNotCaughtUp: a joining node that never shows the leader it has
// caught up is removed again when the catch-up bound runs out; the join answers
// join_catch_up_timeout, the cluster stays as it was and writable, and a later join of
// the same node succeeds.
func TestJoinRolledBackWhenNotCaughtUp(t *testing.T) {
	ctx := ctxT(t)
	n1 := nodetest.Start(t, func(c *node.Config) {
		c.HTTPAddr, c.RaftAddr, c.JoinCatchUpTimeout = nodetest.FreeAddr(t), nodetest.FreeAddr(t), 2*time.Second
	})
	mustCreate(t, n1.Client, "a", "USD", "0")
	g := newInfoGate()
	g.failing.Store(true)
	// Its --join names nobody that answers: it waits to be admitted by hand.
	n2 := nodetest.Launch(t, node.Config{NodeID: "n2", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t), RaftAddr: nodetest.FreeAddr(t),
		Join: []string{"http://" + nodetest.FreeAddr(t)}, WrapHandler: g.wrap, Logger: nodetest.Logger()})

	err := postJoin(ctx, n1.Client, "n2", n2.Config.RaftAddr, n2.URL())
	requireAPIError(t, err, http.StatusGatewayTimeout, chronicle.CodeJoinCatchUp, "n2", "removed again")
	if got := suffrages(t, n1.Store()); len(got) != 1 || got["n1"] != "Voter" {
		t.Fatalf("configuration after the rolled-back join: %v, want n1 alone", got)
	}
	if _, err := n1.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, ""); err != nil {
		t.Fatalf("deposit after the rolled-back join: %v", err)
	}

	g.failing.Store(false)
	g.release()
	if err := postJoin(ctx, n1.Client, "n2", n2.Config.RaftAddr, n2.URL()); err != nil {
		t.Fatalf("second join: %v", err)
	}
	if got := suffrages(t, n1.Store()); got["n2"] != "Voter" {
		t.Fatalf("configuration after the second join: %v, want n2 a voter", got)
	}
	// A repeated join of a voter is a no-op that answers at once.
	if err := postJoin(ctx, n1.Client, "n2", n2.Config.RaftAddr, n2.URL()); err != nil {
		t.Fatalf("repeated join: %v", err)
	}
	if _, err := n1.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, ""); err != nil {
		t.Fatalf("deposit with two voters: %v", err)
	}
}
