package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
)

// lifecycleLoad runs beside the crash test's transfers: one client freezes and unfreezes
// a few accounts of its own (with idempotency keys) until the node is killed, and one
// account is closed for good. After each restart the statuses the node serves must be
// the replay's, and each must be what the last acknowledged command left (or, when the
// last command's outcome is unknown, what it would have left).
type lifecycleLoad struct {
	ids    []string // frozen and unfrozen under load
	closed string   // closed before the load
	mu     sync.Mutex
	// allowed is, per account, the statuses the log may show: one after an
	// acknowledgement, two while the last command is in doubt.
	allowed map[string][]chronicle.AccountStatus
	acked   int
	problem error
	done    chan struct{}
}

func newLifecycleLoad(t *testing.T, ctx context.Context, c *client.Client) *lifecycleLoad {
	t.Helper()
	l := &lifecycleLoad{closed: "lc-closed", allowed: map[string][]chronicle.AccountStatus{}}
	for i := range 3 {
		l.ids = append(l.ids, fmt.Sprintf("lc-%02d", i))
	}
	for _, id := range append([]string{l.closed}, l.ids...) {
		if _, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: "Lifecycle " + id, Currency: "USD"}, "create-"+id); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		l.allowed[id] = []chronicle.AccountStatus{chronicle.StatusActive}
	}
	if _, err := c.CloseAccount(ctx, client.AccountLifecycle{AccountID: l.closed, Reason: "closed before the crashes"}, "close-"+l.closed); err != nil {
		t.Fatalf("close %s: %v", l.closed, err)
	}
	l.allowed[l.closed] = []chronicle.AccountStatus{chronicle.StatusClosed}
	return l
}

// start runs the lifecycle client against url until a request's outcome is unknown (the
// node was killed) or ctx ends. Each account's next command follows from its status as
// the node last served it (read, after a restart, by check).
func (l *lifecycleLoad) start(ctx context.Context, url string, cycle int) {
	l.done = make(chan struct{})
	c := client.New(url, &http.Client{Timeout: 10 * time.Second})
	go func() {
		defer close(l.done)
		for n := 0; ctx.Err() == nil; n++ {
			id := l.ids[n%len(l.ids)]
			l.mu.Lock()
			cur := l.allowed[id][0]
			l.mu.Unlock()
			next, typ := chronicle.StatusFrozen, "freeze-account"
			req := client.AccountLifecycle{AccountID: id, Reason: fmt.Sprintf("crash cycle %d step %d", cycle, n)}
			call := c.FreezeAccount
			if cur == chronicle.StatusFrozen {
				next, typ, call = chronicle.StatusActive, "unfreeze-account", c.UnfreezeAccount
			}
			res, err := call(ctx, req, fmt.Sprintf("lc-c%d-%d", cycle, n))
			var apiErr *client.APIError
			l.mu.Lock()
			switch {
			case err == nil && res.Status == http.StatusCreated:
				l.allowed[id] = []chronicle.AccountStatus{next}
				l.acked++
			case err == nil || errors.As(err, &apiErr) && apiErr.Status < 500:
				// A single writer per account: its command cannot be refused.
				l.problem = fmt.Errorf("%s %s: %+v, %v", typ, id, res, err)
			default:
				l.allowed[id] = []chronicle.AccountStatus{cur, next}
			}
			stop := err != nil
			l.mu.Unlock()
			if stop {
				return
			}
		}
	}()
}

// wait waits for the client to stop (its node is dead) and reports what it did.
func (l *lifecycleLoad) wait(t *testing.T, cycle int) {
	t.Helper()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.problem != nil {
		t.Fatalf("cycle %d: lifecycle load: %v", cycle, l.problem)
	}
	t.Logf("cycle %d: %d lifecycle commands acknowledged so far", cycle, l.acked)
}

// check compares the statuses served and replayed with what the client saw, settles
// in-doubt statuses to what the log holds, checks that the closed account still refuses
// a deposit, and returns how many of the log's events are the lifecycle accounts'.
func (l *lifecycleLoad) check(t *testing.T, ctx context.Context, c *client.Client, r *chronicle.Replayer, events []chronicle.Event, when string) int {
	t.Helper()
	if l == nil { // a ledger checked without a lifecycle load (the cluster kill tests)
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	mine := 0
	for _, e := range events {
		if _, ok := l.allowed[e.AggregateID]; ok {
			mine++
		}
	}
	for id, allowed := range l.allowed {
		a, err := c.Account(ctx, id, 0)
		if err != nil {
			t.Fatalf("%s: account %s: %v", when, id, err)
		}
		got := chronicle.AccountStatus(a.Status)
		if ra := r.State.Accounts[id]; ra.Status != got || ra.Version != a.Version || ra.Balance != 0 {
			t.Errorf("%s: account %s: API status %s version %d, replay %+v", when, id, got, a.Version, ra)
		}
		ok := false
		for _, s := range allowed {
			ok = ok || s == got
		}
		if !ok {
			t.Errorf("%s: account %s is %s; the acknowledged commands allow %v", when, id, got, allowed)
		}
		l.allowed[id] = []chronicle.AccountStatus{got}
	}
	if _, err := c.Deposit(ctx, client.Money{AccountID: l.closed, Amount: "1.00"}, ""); client.CodeOf(err) != chronicle.CodeAccountClosed {
		t.Errorf("%s: deposit to closed account %s: %v, want %s", when, l.closed, err, chronicle.CodeAccountClosed)
	}
	return mine
}
