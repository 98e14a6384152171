package node_test

// Fault tests of the Raft cluster: a partitioned leader, linearizable reads, membership
// changes under load, catch-up by snapshot, failover under load, and commit time across
// leader changes. Every wait polls a condition with a deadline.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestPartitionedLeaderRefusesWrites: a leader cut off from its followers stops taking
// writes once its lease runs out, the majority elects a new leader and goes on, and after
// the partition heals the old leader follows and every node holds the same log. A command
// whose outcome the partition made unknown ends up exactly once when retried with its key.
func TestPartitionedLeaderRefusesWrites(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 110*time.Second)
	old := c.Leader(t)
	oldID := c.Config(old).NodeID
	mustCreate(t, c.Nodes[old].Client, "pa", "USD", "1000")
	mustCreate(t, c.Nodes[old].Client, "pb", "USD", "0")
	for i := 0; i < 5; i++ {
		if _, err := c.Nodes[i%3].Client.Transfer(ctx, client.Transfer{FromAccountID: "pa", ToAccountID: "pb", Amount: "1"}, ""); err != nil {
			t.Fatalf("transfer %d before the partition: %v", i, err)
		}
	}
	before, _ := c.Nodes[old].Store().Head(ctx)
	others := cfOthers(old, 3)

	c.Isolate(old)
	isolatedAt := time.Now()

	// Right after the cut the old leader still believes it leads: a command it takes now
	// cannot commit, and its outcome is unknown to the client.
	unknown := client.Transfer{FromAccountID: "pa", ToAccountID: "pb", Amount: "7"}
	const unknownKey = "partition-unknown-1"
	uctx, ucancel := context.WithTimeout(ctx, 20*time.Second)
	start := time.Now()
	ures, uerr := c.Nodes[old].Client.Transfer(uctx, unknown, unknownKey)
	ucancel()
	t.Logf("command sent to the isolated leader at once: %s after %v", cfOutcome(uerr), time.Since(start).Round(time.Millisecond))
	if uerr == nil {
		t.Fatalf("the isolated leader acknowledged a command it cannot replicate: %+v", ures)
	}

	cfEventually(t, 10*time.Second, "the isolated leader steps down", func() error {
		if c.Nodes[old].IsLeader() {
			return errors.New("still leader")
		}
		return nil
	})
	steppedDown := time.Since(isolatedAt)

	// After it stepped down every command it gets must fail with a 503, never a 2xx.
	type outcome struct {
		name string
		err  error
		took time.Duration
	}
	outs := make(chan outcome, 3)
	send := func(name string, op func(context.Context) error) {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			defer cancel()
			start := time.Now()
			err := op(ctx)
			outs <- outcome{name, err, time.Since(start)}
		}()
	}
	isolated := c.Nodes[old].Client
	send("transfer", func(ctx context.Context) error {
		_, err := isolated.Transfer(ctx, client.Transfer{FromAccountID: "pa", ToAccountID: "pb", Amount: "3"}, "iso-after-transfer")
		return err
	})
	send("deposit", func(ctx context.Context) error {
		_, err := isolated.Deposit(ctx, client.Money{AccountID: "pa", Amount: "3"}, "iso-after-deposit")
		return err
	})
	send("batch", func(ctx context.Context) error {
		body := `{"commands":[{"type":"deposit","account_id":"pb","amount":"3","idempotency_key":"iso-after-batch"}]}`
		_, err := isolated.Do(ctx, http.MethodPost, "/commands/batch", []byte(body), nil, nil)
		return err
	})

	// Meanwhile the majority elects a leader and takes writes, directly and forwarded.
	newL, elected := cfLeaderAmong(t, c, others, 15*time.Second, isolatedAt)
	t.Logf("partition: old leader %s stepped down %v after the cut; %s elected %v after the cut",
		oldID, steppedDown.Round(time.Millisecond), c.Config(newL).NodeID, elected.Round(time.Millisecond))
	for _, i := range []int{newL, cfOthers2(newL, old)} {
		cfRetry(t, 10*time.Second, fmt.Sprintf("transfer via %s in the majority", c.Config(i).NodeID), func(ctx context.Context) error {
			_, err := c.Nodes[i].Client.Transfer(ctx, client.Transfer{FromAccountID: "pa", ToAccountID: "pb", Amount: "1"}, fmt.Sprintf("majority-%d", i))
			return err
		})
	}

	for range 3 {
		var o outcome
		select {
		case o = <-outs:
		case <-ctx.Done():
			t.Fatal("commands sent to the isolated node did not come back")
		}
		t.Logf("%s sent to the stepped-down isolated node: %s after %v", o.name, cfOutcome(o.err), o.took.Round(time.Millisecond))
		var e *client.APIError
		if !errors.As(o.err, &e) || e.Status != http.StatusServiceUnavailable ||
			!slices.Contains([]string{chronicle.CodeNotLeader, chronicle.CodeNoLeader, chronicle.CodeUnavailable}, e.Code) {
			t.Errorf("%s on the isolated node: %s; want a 503 not_leader/no_leader/unavailable", o.name, cfOutcome(o.err))
		}
	}
	if h, _ := c.Nodes[old].Store().Head(ctx); h.Position != before.Position {
		t.Errorf("the isolated node applied positions %d..%d while cut off", before.Position+1, h.Position)
	}

	c.Heal()
	healedAt := time.Now()
	cfEventually(t, 30*time.Second, "the old leader follows the new one", func() error {
		st := c.Nodes[old].Store().Status()
		if st.State != "Follower" || st.Leader == "" || st.Leader == oldID {
			return fmt.Errorf("old leader is %s, following %q", st.State, st.Leader)
		}
		return nil
	})
	t.Logf("after healing, %s follows %s after %v", oldID, c.Nodes[old].Store().Status().Leader, time.Since(healedAt).Round(time.Millisecond))

	// The command of unknown outcome, retried with its key through the old leader: it
	// must end up applied exactly once.
	var retry client.CommandResult
	cfRetry(t, 20*time.Second, "retry of the unknown command", func(ctx context.Context) error {
		var err error
		retry, err = c.Nodes[old].Client.Transfer(ctx, unknown, unknownKey)
		return err
	})
	t.Logf("retry of the unknown command: status %d, replay %v, position %d", retry.Status, retry.Replayed, retry.Position)

	events, _ := cfVerify(t, ctx, c.Nodes)
	t.Logf("all three nodes converged on %d events %v after healing", len(events), time.Since(healedAt).Round(time.Millisecond))
	byKey := cfByKey(events)
	if got := byKey[unknownKey]; len(got) != 2 || got[0].Position != retry.Position-1 || got[1].Position != retry.Position {
		t.Errorf("the unknown command (key %s) is in the log as %d events, want one transfer at position %d", unknownKey, len(got), retry.Position)
	}
	for _, k := range []string{"iso-after-transfer", "iso-after-deposit", "iso-after-batch"} {
		if n := len(byKey[k]); n != 0 {
			t.Errorf("command %s refused by the isolated node is in the log (%d events)", k, n)
		}
	}
	for id, want := range map[string]string{"pa": "986.00", "pb": "14.00"} {
		a, err := c.Nodes[old].Client.Account(ctx, id, 0)
		if err != nil || a.Balance != want {
			t.Errorf("account %s: %+v, %v; want balance %s", id, a, err, want)
		}
	}
}

// TestLinearizableRead: consistency=linearizable succeeds on the leader (and through a
// follower), and an isolated leader refuses it instead of serving stale data.
func TestLinearizableRead(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 90*time.Second)
	L := c.Leader(t)
	mustCreate(t, c.Nodes[L].Client, "lin", "USD", "10")
	read := func(ctx context.Context, i int, level string) (client.Account, error) {
		var a client.Account
		_, err := c.Nodes[i].Client.Do(ctx, http.MethodGet, "/accounts/lin?consistency="+level, nil, nil, &a)
		return a, err
	}
	for i := range c.Nodes {
		if a, err := read(ctx, i, "linearizable"); err != nil || a.Balance != "10.00" {
			t.Fatalf("linearizable read on %s: %+v, %v", c.Config(i).NodeID, a, err)
		}
	}

	c.Isolate(L)
	isolatedAt := time.Now()
	others := cfOthers(L, 3)
	// While it still believes it leads, a linearizable read must confirm leadership with
	// a quorum, which it cannot. (A heartbeat already in flight when the cut came may
	// still confirm it for a few milliseconds; no other leader can exist yet then, so the
	// value it serves is current.) Once it steps down, reads go to the "leader" path.
	refused := false
	for c.Nodes[L].IsLeader() && !refused && time.Since(isolatedAt) < 5*time.Second {
		sent := time.Since(isolatedAt)
		a, err := read(ctx, L, "linearizable")
		t.Logf("linearizable read on the isolated leader sent %v after the cut: %s after %v",
			sent.Round(time.Millisecond), cfOutcome(err), (time.Since(isolatedAt) - sent).Round(time.Millisecond))
		if err == nil {
			for _, i := range others {
				if c.Nodes[i].IsLeader() {
					t.Fatalf("the isolated node served a linearizable read (%+v) while %s led", a, c.Config(i).NodeID)
				}
			}
			if a.Balance != "10.00" {
				t.Fatalf("linearizable read on the isolated leader: %+v", a)
			}
			continue
		}
		refused = true
		var e *client.APIError
		if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
			t.Errorf("linearizable read on the isolated leader: %s; want a 503", cfOutcome(err))
		}
	}
	if !refused {
		t.Errorf("no linearizable read was refused while the isolated node led")
	}
	newL, elected := cfLeaderAmong(t, c, others, 15*time.Second, isolatedAt)
	t.Logf("%s elected %v after the cut", c.Config(newL).NodeID, elected.Round(time.Millisecond))
	var dep client.CommandResult
	cfRetry(t, 10*time.Second, "deposit in the majority", func(ctx context.Context) error {
		var err error
		dep, err = c.Nodes[newL].Client.Deposit(ctx, client.Money{AccountID: "lin", Amount: "5"}, "lin-deposit")
		return err
	})

	// The cut-off node still holds 10.00; only a local read may return it.
	if a, err := read(ctx, L, "local"); err != nil || a.Balance != "10.00" {
		t.Errorf("local read on the isolated node: %+v, %v; want its stale 10.00", a, err)
	}
	var wg sync.WaitGroup
	for _, level := range []string{"linearizable", "leader"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			a, err := read(ctx, L, level)
			t.Logf("%s read on the stepped-down isolated node: %s after %v", level, cfOutcome(err), time.Since(start).Round(time.Millisecond))
			if err == nil {
				t.Errorf("%s read on the isolated node served %+v", level, a)
			}
		}()
	}
	for _, i := range others {
		if a, err := read(ctx, i, "linearizable"); err != nil || a.Balance != "15.00" {
			t.Errorf("linearizable read on %s in the majority: %+v, %v", c.Config(i).NodeID, a, err)
		}
	}
	wg.Wait()

	c.Heal()
	healedAt := time.Now()
	defer func() {
		t.Logf("healed node served the linearizable read %v after healing", time.Since(healedAt).Round(time.Millisecond))
	}()
	cfEventually(t, 30*time.Second, "linearizable read through the healed node", func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		a, err := read(rctx, L, "linearizable")
		if err != nil {
			return err
		}
		if a.Balance != "15.00" {
			t.Fatalf("linearizable read through the healed node returned %s, want 15.00 (deposit at %d)", a.Balance, dep.Position)
		}
		return nil
	})
}

// TestJoinFourthAndRemove: under a light load a fourth node joins, catches up and serves
// the same log; then n1 is removed through the API and the cluster keeps taking writes.
func TestJoinFourthAndRemove(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 90*time.Second)
	accounts := cfFund(t, ctx, c.Nodes[c.Leader(t)].Client, "j", 6, "100000")
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	load := cfNewLoad(t, accounts, "join", 5*time.Millisecond)
	for i, u := range urls {
		load.Add(i, u, 1)
	}
	cfEventually(t, 10*time.Second, "load running", func() error { return load.atLeast(30, time.Time{}) })

	cfg := node.Config{NodeID: "n4", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t), RaftAddr: nodetest.FreeAddr(t),
		Join: urls, Logger: nodetest.Logger()}
	start := time.Now()
	n4 := nodetest.Launch(t, cfg)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := n4.WaitReady(wctx); err != nil {
		t.Fatalf("n4 not ready: %v", err)
	}
	wcancel()
	t.Logf("n4 joined and caught up in %v", time.Since(start).Round(time.Millisecond))
	cfEventually(t, 15*time.Second, "GET /cluster lists four reachable voters", func() error {
		return cfMembers(ctx, n4.Client, []string{"n1", "n2", "n3", "n4"}, true)
	})
	load.Add(3, n4.URL(), 1)

	// n4 serves the same log as the others (a prefix, as the load goes on).
	h, err := cfClusterHead(ctx, n4.Client)
	if err != nil {
		t.Fatal(err)
	}
	ref := cfLocalEventsUntil(t, ctx, c.Nodes[1], h)
	got := cfLocalEventsUntil(t, ctx, n4, h)
	cfSameLog(t, "n4", ref, got)

	// Remove n1, whatever its role, through n2.
	load.StopVia(0)
	roles := map[string]string{}
	for i, n := range c.Nodes {
		roles[c.Config(i).NodeID] = n.Store().Status().State
	}
	removedAt := time.Now()
	var out struct {
		Success bool   `json:"success"`
		Removed string `json:"removed"`
	}
	cfRetry(t, 15*time.Second, "DELETE /cluster/nodes/n1", func(ctx context.Context) error {
		_, err := c.Nodes[1].Client.Do(ctx, http.MethodDelete, "/cluster/nodes/n1", nil, nil, &out)
		return err
	})
	if !out.Success || out.Removed != "n1" {
		t.Fatalf("remove n1: %+v", out)
	}
	t.Logf("removed n1 (it was %s; roles %v) in %v", roles["n1"], roles, time.Since(removedAt).Round(time.Millisecond))
	survivors := []*nodetest.Node{c.Nodes[1], c.Nodes[2], n4}
	for _, n := range survivors {
		cfEventually(t, 15*time.Second, "GET /cluster on "+n.Config.NodeID+" shows n2 n3 n4", func() error {
			return cfMembers(ctx, n.Client, []string{"n2", "n3", "n4"}, true)
		})
	}
	cfEventually(t, 20*time.Second, "writes after the removal", func() error { return load.atLeast(30, removedAt) })
	cfRetry(t, 10*time.Second, "transfer via n4 after the removal", func(ctx context.Context) error {
		_, err := n4.Client.Transfer(ctx, client.Transfer{FromAccountID: accounts[0], ToAccountID: accounts[1], Amount: "1"}, "after-remove")
		return err
	})
	load.Stop()

	events, _ := cfVerify(t, ctx, survivors)
	load.check(t, events)
	t.Logf("join/remove: %s", load.summary())
}

// TestWipedNodeCatchesUpBySnapshot: with small snapshot settings the log is truncated;
// a follower whose data is wiped rejoins as a new node and is brought up to date by a
// snapshot, then serves the same events and balances.
func TestWipedNodeCatchesUpBySnapshot(t *testing.T) {
	logs := &cfLogs{lines: map[string][]string{}}
	c := nodetest.StartCluster(t, 3, func(cfg *node.Config) {
		cfg.SnapshotThreshold, cfg.TrailingLogs = 64, 32
		cfg.Logger = logs.logger(cfg.NodeID)
	})
	ctx := cfCtx(t, 90*time.Second)
	L := c.Leader(t)
	const nAccounts = 20
	accounts := cfFund(t, ctx, c.Nodes[L].Client, "w", nAccounts, "1000")

	// 4,500 events in 60 batches: at least 60 Raft entries, well past TrailingLogs.
	rng := rand.New(rand.NewPCG(4, 5))
	for b := 0; b < 60; b++ {
		var cmds []string
		for k := 0; k < 50; k++ {
			from, to := rng.IntN(nAccounts), rng.IntN(nAccounts-1)
			if to >= from {
				to++
			}
			if k%2 == 0 {
				cmds = append(cmds, fmt.Sprintf(`{"type":"transfer","from_account_id":%q,"to_account_id":%q,"amount":"0.%02d"}`, accounts[from], accounts[to], 1+rng.IntN(99)))
			} else {
				cmds = append(cmds, fmt.Sprintf(`{"type":"deposit","account_id":%q,"amount":"1.%02d"}`, accounts[from], rng.IntN(100)))
			}
		}
		cfBatch(t, ctx, c.Nodes[b%3].Client, cmds)
	}
	for i, n := range c.Nodes {
		if err := n.Store().Snapshot(); err != nil {
			t.Fatalf("snapshot on %s: %v", c.Config(i).NodeID, err)
		}
	}
	h, err := cfClusterHead(ctx, c.Nodes[L].Client)
	if err != nil {
		t.Fatal(err)
	}

	f := (L + 1) % 3
	fID := c.Config(f).NodeID
	logs.reset(fID)
	wipedAt := time.Now()
	nf := c.Wipe(t, f)
	wctx, wcancel := context.WithTimeout(ctx, 45*time.Second)
	if err := nf.WaitReady(wctx); err != nil {
		t.Fatalf("wiped %s not ready: %v", fID, err)
	}
	wcancel()
	if got := cfLocalEventsUntil(t, ctx, nf, h); len(got) != int(h) {
		t.Fatalf("wiped %s holds %d events, want %d", fID, len(got), h)
	}
	t.Logf("wiped %s rejoined and caught up to position %d in %v", fID, h, time.Since(wipedAt).Round(time.Millisecond))

	// Proof that it came by snapshot: its FSM restored one (the log entries before the
	// snapshot no longer exist anywhere), and its snapshot store holds the one received.
	var restore string
	cfEventually(t, 10*time.Second, fID+" restored state from a snapshot", func() error {
		restore = logs.find(fID, "restoring state from snapshot")
		if restore == "" {
			return errors.New("no restore logged")
		}
		return nil
	})
	t.Logf("%s: %s", fID, restore)
	if strings.Contains(restore, "snapshot_index=0 ") || strings.Contains(restore, "snapshot_index=1 ") {
		t.Errorf("restore from an empty snapshot: %s", restore)
	}
	if ents, err := os.ReadDir(filepath.Join(c.Config(f).DataDir, "snapshots")); err != nil || len(ents) == 0 {
		t.Errorf("wiped node's snapshot store is empty: %v, %v", ents, err)
	}
	for _, line := range logs.all(fID) {
		t.Logf("  %s log: %s", fID, line)
	}

	// It takes part in writes again, and all three agree.
	cfRetry(t, 10*time.Second, "deposit via the wiped node", func(ctx context.Context) error {
		_, err := nf.Client.Deposit(ctx, client.Money{AccountID: accounts[0], Amount: "1"}, "after-wipe")
		return err
	})
	events, _ := cfVerify(t, ctx, c.Nodes)
	if len(events) < 4500 {
		t.Errorf("log holds %d events, want at least 4500", len(events))
	}
}

// TestFailoverKeepsEverything: under concurrent transfers through all three nodes the
// leader is stopped; writes resume on a new leader, the old one comes back, and every
// acknowledged transfer is on every node exactly once, with views and projectors caught up.
func TestFailoverKeepsEverything(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 90*time.Second)
	const nAccounts = 8
	accounts := cfFund(t, ctx, c.Nodes[c.Leader(t)].Client, "f", nAccounts, "1000000")
	load := cfNewLoad(t, accounts, "fo", 0)
	for i, n := range c.Nodes {
		load.Add(i, n.URL(), 2)
	}
	cfEventually(t, 15*time.Second, "load running", func() error { return load.atLeast(200, time.Time{}) })

	L := c.Leader(t)
	oldID := c.Config(L).NodeID
	stopAt := time.Now()
	type election struct {
		idx int
		d   time.Duration
	}
	electedCh := make(chan election, 1)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, i := range cfOthers(L, 3) {
				if c.Nodes[i].IsLeader() {
					electedCh <- election{i, time.Since(stopAt)}
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		electedCh <- election{-1, 0}
	}()
	c.Stop(t, L)
	stopped := time.Now()
	el := <-electedCh
	if el.idx < 0 {
		t.Fatal("no new leader within 20s of stopping the leader")
	}
	cfEventually(t, 20*time.Second, "writes resume on the new leader", func() error { return load.atLeast(100, stopped) })
	firstAfter := load.firstAckAfter(stopped)
	t.Logf("failover: stopping leader %s took %v; %s elected %v after the stop began; first write acknowledged %v after the stop began",
		oldID, stopped.Sub(stopAt).Round(time.Millisecond), c.Config(el.idx).NodeID, el.d.Round(time.Millisecond), firstAfter.Sub(stopAt).Round(time.Millisecond))

	restartAt := time.Now()
	n := c.Restart(t, L)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := n.WaitReady(wctx); err != nil {
		t.Fatalf("restarted %s not ready: %v", oldID, err)
	}
	wcancel()
	t.Logf("%s restarted and caught up in %v", oldID, time.Since(restartAt).Round(time.Millisecond))
	back := time.Now()
	cfEventually(t, 20*time.Second, "writes with the old leader back", func() error { return load.atLeast(100, back) })
	load.Stop()
	gap, gapFrom := load.maxGap()
	t.Logf("failover: largest gap between acknowledgements %v (from %v after the stop began); %s",
		gap.Round(time.Millisecond), gapFrom.Sub(stopAt).Round(time.Millisecond), load.summary())

	events, r := cfVerify(t, ctx, c.Nodes)
	load.check(t, events)
	var total int64
	for _, id := range accounts {
		total += r.State.Accounts[id].Balance
	}
	if want := int64(nAccounts) * 1000000 * 100; total != want {
		t.Errorf("customer balances sum to %d minor units, want %d", total, want)
	}
}

// TestCommitTimeIncreasesAcrossLeaders: created_at strictly increases from one command to
// the next even as the leader (whose clock stamps the batch) changes three times.
func TestCommitTimeIncreasesAcrossLeaders(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 90*time.Second)
	L := c.Leader(t)
	mustCreate(t, c.Nodes[L].Client, "ct-a", "USD", "1000")
	mustCreate(t, c.Nodes[L].Client, "ct-b", "USD", "0")
	var acks []client.CommandResult
	seq := 0
	write := func(via int) time.Duration {
		start := time.Now()
		var res client.CommandResult
		seq++
		cfRetry(t, 20*time.Second, fmt.Sprintf("transfer %d via %s", seq, c.Config(via).NodeID), func(ctx context.Context) error {
			var err error
			res, err = c.Nodes[via].Client.Transfer(ctx, client.Transfer{FromAccountID: "ct-a", ToAccountID: "ct-b", Amount: "1"}, fmt.Sprintf("ct-%d", seq))
			return err
		})
		acks = append(acks, res)
		return time.Since(start)
	}
	leaders := []string{}
	for round := 0; round < 3; round++ {
		L := c.Leader(t)
		leaders = append(leaders, c.Config(L).NodeID)
		for i := 0; i < 6; i++ {
			write(i % 3)
		}
		stopAt := time.Now()
		c.Stop(t, L)
		survivor := (L + 1) % 3
		took := write(survivor)
		next, _ := cfLeaderAmong(t, c, cfOthers(L, 3), 15*time.Second, stopAt)
		t.Logf("round %d: stopped leader %s; first write via %s acknowledged after %v; %s leads", round, c.Config(L).NodeID,
			c.Config(survivor).NodeID, took.Round(time.Millisecond), c.Config(next).NodeID)
		write((L + 2) % 3)
		n := c.Restart(t, L)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := n.WaitReady(wctx); err != nil {
			t.Fatalf("restart %s: %v", c.Config(L).NodeID, err)
		}
		wcancel()
	}
	leaders = append(leaders, c.Config(c.Leader(t)).NodeID)
	for i := 0; i < 3; i++ {
		write(i)
	}
	t.Logf("leaders over the run: %v", leaders)
	if distinct := len(cfSet(leaders)); distinct < 2 {
		t.Errorf("only one leader (%v) over three stops", leaders)
	}
	for i := 1; i < len(acks); i++ {
		if !acks[i].CommittedAt.After(acks[i-1].CommittedAt) {
			t.Errorf("ack %d committed at %v, not after ack %d at %v", i, acks[i].CommittedAt, i-1, acks[i-1].CommittedAt)
		}
	}
	events, _ := cfVerify(t, ctx, c.Nodes)
	for i := 1; i < len(events); i++ {
		prev, e := events[i-1], events[i]
		same := e.Metadata["command_id"] != "" && e.Metadata["command_id"] == prev.Metadata["command_id"]
		switch {
		case same && !e.CreatedAt.Equal(prev.CreatedAt):
			t.Errorf("events %d and %d of one command have created_at %v and %v", prev.Position, e.Position, prev.CreatedAt, e.CreatedAt)
		case !same && !e.CreatedAt.After(prev.CreatedAt):
			t.Errorf("position %d created_at %v is not after position %d at %v", e.Position, e.CreatedAt, prev.Position, prev.CreatedAt)
		}
	}
}

// ---- helpers (prefixed cf: this file's) ----

func cfCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// cfEventually polls f until it returns nil, failing the test after within.
func cfEventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		<-tick.C
	}
}

// cfTransient reports whether a request failed in a way a retry may cure: a 503 or 504
// from a node, or no answer at all.
func cfTransient(err error) bool {
	var e *client.APIError
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout
	}
	return true
}

// cfRetry runs op until it succeeds, retrying transient failures for at most within;
// any other failure ends the test.
func cfRetry(t *testing.T, within time.Duration, what string, op func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), min(10*time.Second, max(time.Until(deadline), time.Second)))
		err := op(ctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				t.Logf("%s: succeeded on attempt %d", what, attempt)
			}
			return
		}
		if !cfTransient(err) {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v (%d attempts): %v", what, within, attempt, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatalf("%s: test ended", what)
		}
	}
}

func cfOutcome(err error) string {
	var e *client.APIError
	switch {
	case err == nil:
		return "2xx"
	case errors.As(err, &e):
		return fmt.Sprintf("%d %s (%s)", e.Status, e.Code, e.Message)
	default:
		return "no answer: " + err.Error()
	}
}

func cfOthers(i, n int) []int {
	var out []int
	for j := 0; j < n; j++ {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// cfOthers2 is the third node of three, given two.
func cfOthers2(a, b int) int { return 3 - a - b }

func cfSet(xs []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// cfLeaderAmong waits for one of the given nodes to lead; it returns the node and the
// time since since.
func cfLeaderAmong(t *testing.T, c *nodetest.Cluster, among []int, within time.Duration, since time.Time) (int, time.Duration) {
	t.Helper()
	leader := -1
	cfEventually(t, within, "a leader among the majority", func() error {
		for _, i := range among {
			if c.Nodes[i].IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	return leader, time.Since(since)
}

// cfFund creates n USD accounts prefix0..prefixN-1 with the given balance in one batch.
func cfFund(t *testing.T, ctx context.Context, c *client.Client, prefix string, n int, balance string) []string {
	t.Helper()
	var ids, cmds []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		ids = append(ids, id)
		cmds = append(cmds, fmt.Sprintf(`{"type":"create-account","account_id":%q,"owner_name":"Owner %s","currency":"USD","initial_balance":%q}`, id, id, balance))
	}
	cfBatch(t, ctx, c, cmds)
	return ids
}

// cfBatch posts commands to /commands/batch and requires every one to succeed.
func cfBatch(t *testing.T, ctx context.Context, c *client.Client, cmds []string) uint64 {
	t.Helper()
	var out struct {
		Results []struct {
			Success bool   `json:"success"`
			Code    string `json:"code"`
			Error   string `json:"error"`
		} `json:"results"`
		Position uint64 `json:"position"`
	}
	body := `{"commands":[` + strings.Join(cmds, ",") + `]}`
	if _, err := c.Do(ctx, http.MethodPost, "/commands/batch", []byte(body), nil, &out); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if len(out.Results) != len(cmds) {
		t.Fatalf("batch of %d answered %d results", len(cmds), len(out.Results))
	}
	for i, r := range out.Results {
		if !r.Success {
			t.Fatalf("batch command %d: %s %s", i, r.Code, r.Error)
		}
	}
	return out.Position
}

// cfClusterHead is the committed head, read linearizably (forwarded to the leader).
func cfClusterHead(ctx context.Context, c *client.Client) (uint64, error) {
	var out struct {
		Events []chronicle.Event `json:"events"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/events?limit=1&consistency=linearizable", nil, nil, &out); err != nil {
		return 0, err
	}
	if len(out.Events) == 0 {
		return 0, nil
	}
	return out.Events[0].Position, nil
}

// cfLocalEvents reads node n's own log, after waiting until it has applied minPos.
func cfLocalEvents(ctx context.Context, n *nodetest.Node, minPos uint64) ([]chronicle.Event, error) {
	var all []chronicle.Event
	var after uint64
	for {
		var page struct {
			Events []chronicle.Event `json:"events"`
		}
		path := fmt.Sprintf("/events?consistency=local&order=asc&limit=%d&after=%d&min_position=%d", chronicle.MaxEventsPage, after, minPos)
		if _, err := n.Client.Do(ctx, http.MethodGet, path, nil, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Events...)
		if len(page.Events) < chronicle.MaxEventsPage {
			return all, nil
		}
		after = page.Events[len(page.Events)-1].Position
	}
}

// cfLocalEventsUntil is node n's log up to position h, polled until n has it.
func cfLocalEventsUntil(t *testing.T, ctx context.Context, n *nodetest.Node, h uint64) []chronicle.Event {
	t.Helper()
	var evs []chronicle.Event
	cfEventually(t, 45*time.Second, n.Config.NodeID+" reaches position "+fmt.Sprint(h), func() error {
		var err error
		evs, err = cfLocalEvents(ctx, n, h)
		return err
	})
	if uint64(len(evs)) > h {
		evs = evs[:h]
	}
	return evs
}

// cfLocalAccounts reads node n's own account view once it includes minPos.
func cfLocalAccounts(ctx context.Context, n *nodetest.Node, minPos uint64) ([]client.Account, error) {
	var all []client.Account
	after := ""
	for {
		var page struct {
			Accounts  []client.Account `json:"accounts"`
			NextAfter string           `json:"next_after"`
		}
		path := fmt.Sprintf("/accounts?consistency=local&limit=%d&min_position=%d", chronicle.MaxPageSize, minPos)
		if after != "" {
			path += "&after=" + after
		}
		if _, err := n.Client.Do(ctx, http.MethodGet, path, nil, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Accounts...)
		if page.NextAfter == "" {
			return all, nil
		}
		after = page.NextAfter
	}
}

// cfSameLog requires got to equal the reference log position by position.
func cfSameLog(t *testing.T, name string, ref, got []chronicle.Event) {
	t.Helper()
	if len(got) != len(ref) {
		t.Fatalf("%s holds %d events, the reference %d", name, len(got), len(ref))
	}
	for k := range ref {
		a, b := ref[k], got[k]
		if b.Position != uint64(k+1) || a.Hash != b.Hash || a.EventID != b.EventID || !a.CreatedAt.Equal(b.CreatedAt) {
			t.Fatalf("%s differs at position %d: %+v vs %+v", name, k+1, b, a)
		}
	}
}

// cfVerify waits until every node has the committed head, then requires identical logs,
// a valid hash chain whose replay gives every node's account view, and projectors at head.
func cfVerify(t *testing.T, ctx context.Context, nodes []*nodetest.Node) ([]chronicle.Event, *chronicle.Replayer) {
	t.Helper()
	var h uint64
	cfEventually(t, 30*time.Second, "read the committed head", func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		h, err = cfClusterHead(rctx, nodes[0].Client)
		return err
	})
	var ref []chronicle.Event
	for i, n := range nodes {
		evs := cfLocalEventsUntil(t, ctx, n, h)
		if i == 0 {
			ref = evs
			if uint64(len(ref)) != h {
				t.Fatalf("%s holds %d events, head is %d", n.Config.NodeID, len(ref), h)
			}
			continue
		}
		cfSameLog(t, n.Config.NodeID, ref, evs)
	}
	r := chronicle.NewReplayer()
	for _, e := range ref {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	for cur, sum := range r.State.Totals() {
		if sum != 0 {
			t.Errorf("%s postings sum to %d, not zero", cur, sum)
		}
	}
	want := map[string]chronicle.Account{}
	for id, a := range r.State.Accounts {
		if !a.External() {
			want[id] = a
		}
	}
	for _, n := range nodes {
		var accts []client.Account
		cfEventually(t, 30*time.Second, n.Config.NodeID+" account view at head", func() error {
			var err error
			accts, err = cfLocalAccounts(ctx, n, h)
			return err
		})
		seen := 0
		for _, a := range accts {
			if chronicle.IsExternal(a.AccountID) {
				continue
			}
			seen++
			w, ok := want[a.AccountID]
			cur, _ := chronicle.LookupCurrency(w.Currency)
			if !ok || a.Balance != chronicle.FormatMinor(w.Balance, cur) || a.Version != w.Version {
				t.Errorf("%s view: account %s balance %s version %d; the log gives %s version %d",
					n.Config.NodeID, a.AccountID, a.Balance, a.Version, chronicle.FormatMinor(w.Balance, cur), w.Version)
			}
		}
		if seen != len(want) {
			t.Errorf("%s view lists %d accounts, the log %d", n.Config.NodeID, seen, len(want))
		}
		cfEventually(t, 10*time.Second, n.Config.NodeID+" projector at head", func() error {
			if st := n.ViewStatus(); st.Position != h {
				return fmt.Errorf("projector at %d, head %d (%+v)", st.Position, h, st)
			}
			return nil
		})
		if wh, err := n.Store().Head(ctx); err != nil || wh.Position != h || h > 0 && wh.Hash != ref[h-1].Hash {
			t.Errorf("%s write-side head %+v, %v; want position %d", n.Config.NodeID, wh, err, h)
		}
	}
	return ref, r
}

// cfByKey groups events by the Idempotency-Key of their command.
func cfByKey(events []chronicle.Event) map[string][]chronicle.Event {
	m := map[string][]chronicle.Event{}
	for _, e := range events {
		if k := e.Metadata["idempotency_key"]; k != "" {
			m[k] = append(m[k], e)
		}
	}
	return m
}

// cfLoad runs transfer workers against nodes and records what was acknowledged.
type cfLoad struct {
	t        *testing.T
	accounts []string
	prefix   string
	pause    time.Duration
	wg       sync.WaitGroup

	mu      sync.Mutex
	stops   map[int][]chan struct{}
	workers int
	acks    []cfAck
	keys    []string
	fails   map[string]int
	oddOK   []string
}

type cfAck struct {
	key, transferID string
	position        uint64
	at              time.Time
	via             int
}

func cfNewLoad(t *testing.T, accounts []string, prefix string, pause time.Duration) *cfLoad {
	l := &cfLoad{t: t, accounts: accounts, prefix: prefix, pause: pause, stops: map[int][]chan struct{}{}, fails: map[string]int{}}
	t.Cleanup(l.Stop)
	return l
}

// Add starts n workers sending transfers to the node at url (labelled via).
func (l *cfLoad) Add(via int, url string, n int) {
	for range n {
		stop := make(chan struct{})
		l.mu.Lock()
		l.stops[via] = append(l.stops[via], stop)
		w := l.workers
		l.workers++
		l.mu.Unlock()
		cl := client.New(url, &http.Client{Timeout: 10 * time.Second})
		l.wg.Add(1)
		go l.run(cl, via, w, stop)
	}
}

func (l *cfLoad) run(cl *client.Client, via, w int, stop chan struct{}) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(via), uint64(w)))
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		from, to := rng.IntN(len(l.accounts)), rng.IntN(len(l.accounts)-1)
		if to >= from {
			to++
		}
		key := fmt.Sprintf("%s-%d-%d", l.prefix, w, seq)
		req := client.Transfer{FromAccountID: l.accounts[from], ToAccountID: l.accounts[to], Amount: fmt.Sprintf("%d.%02d", rng.IntN(5), 1+rng.IntN(99))}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := cl.Transfer(ctx, req, key)
		cancel()
		l.mu.Lock()
		l.keys = append(l.keys, key)
		switch {
		case err == nil && res.Status == http.StatusCreated && res.TransferID != "":
			l.acks = append(l.acks, cfAck{key: key, transferID: res.TransferID, position: res.Position, at: time.Now(), via: via})
		case err == nil:
			l.oddOK = append(l.oddOK, fmt.Sprintf("%s: %+v", key, res))
		default:
			code := client.CodeOf(err)
			if code == "" {
				code = "no_answer"
			}
			l.fails[code]++
		}
		l.mu.Unlock()
		wait := l.pause
		if err != nil {
			wait = max(wait, 20*time.Millisecond)
		}
		if wait > 0 {
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
		}
	}
}

// StopVia stops the workers sending to node via.
func (l *cfLoad) StopVia(via int) {
	l.mu.Lock()
	stops := l.stops[via]
	delete(l.stops, via)
	l.mu.Unlock()
	for _, s := range stops {
		close(s)
	}
}

// Stop stops every worker and waits for them.
func (l *cfLoad) Stop() {
	l.mu.Lock()
	vias := make([]int, 0, len(l.stops))
	for v := range l.stops {
		vias = append(vias, v)
	}
	l.mu.Unlock()
	for _, v := range vias {
		l.StopVia(v)
	}
	l.wg.Wait()
}

// atLeast reports nil once n transfers were acknowledged after since.
func (l *cfLoad) atLeast(n int, since time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := 0
	for _, a := range l.acks {
		if a.at.After(since) {
			got++
		}
	}
	if got < n {
		return fmt.Errorf("%d of %d acknowledged transfers (failures %v)", got, n, l.fails)
	}
	return nil
}

func (l *cfLoad) firstAckAfter(since time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, a := range l.acks {
		if a.at.After(since) && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	return first
}

// maxGap is the longest time between two consecutive acknowledgements, and its start.
func (l *cfLoad) maxGap() (time.Duration, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := make([]time.Time, len(l.acks))
	for i, a := range l.acks {
		ts[i] = a.at
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var gap time.Duration
	var from time.Time
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d > gap {
			gap, from = d, ts[i-1]
		}
	}
	return gap, from
}

func (l *cfLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d transfers sent, %d acknowledged, failures %v", len(l.keys), len(l.acks), l.fails)
}

// check requires every acknowledged transfer exactly once in events, at its acknowledged
// position, no key applied twice, and only failures a client should retry.
func (l *cfLoad) check(t *testing.T, events []chronicle.Event) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	byTID := map[string][]chronicle.Event{}
	cmds := map[string]map[string]bool{}
	for _, e := range events {
		if d := e.Data; d.TransferID != "" {
			byTID[d.TransferID] = append(byTID[d.TransferID], e)
		}
		if k := e.Metadata["idempotency_key"]; k != "" {
			if cmds[k] == nil {
				cmds[k] = map[string]bool{}
			}
			cmds[k][e.Metadata["command_id"]] = true
		}
	}
	for _, a := range l.acks {
		evs := byTID[a.transferID]
		if len(evs) != 2 || evs[0].EventType != chronicle.EventMoneyWithdrawn || evs[1].EventType != chronicle.EventMoneyDeposited ||
			evs[1].Position != a.position || evs[0].Position != a.position-1 || evs[1].Metadata["idempotency_key"] != a.key {
			t.Errorf("acknowledged transfer %s (key %s, position %d) is in the log as %d events: %+v", a.transferID, a.key, a.position, len(evs), evs)
		}
	}
	for _, k := range l.keys {
		if n := len(cmds[k]); n > 1 {
			t.Errorf("key %s applied by %d commands", k, n)
		}
	}
	for code := range l.fails {
		if !slices.Contains([]string{chronicle.CodeNotLeader, chronicle.CodeNoLeader, chronicle.CodeUnavailable, chronicle.CodeTimeout, chronicle.CodeStorageFault, "no_answer"}, code) {
			t.Errorf("transfers failed with %s (%d times): not a failure a client retries", code, l.fails[code])
		}
	}
	for _, s := range l.oddOK {
		t.Errorf("a new key was answered as something other than a new transfer: %s", s)
	}
}

// cfLogs keeps each node's log lines about snapshots.
type cfLogs struct {
	mu    sync.Mutex
	lines map[string][]string
}

func (l *cfLogs) logger(id string) *slog.Logger {
	return slog.New(&cfHandler{logs: l, id: id, next: nodetest.Logger().Handler()})
}

func (l *cfLogs) add(id, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines[id] = append(l.lines[id], line)
}

func (l *cfLogs) reset(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.lines, id)
}

func (l *cfLogs) all(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[id])
}

func (l *cfLogs) find(id, substr string) string {
	for _, line := range l.all(id) {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

type cfHandler struct {
	logs  *cfLogs
	id    string
	attrs []slog.Attr
	next  slog.Handler
}

func (h *cfHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= slog.LevelInfo || h.next.Enabled(ctx, lv)
}

func (h *cfHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo && strings.Contains(strings.ToLower(r.Message), "snapshot") {
		var b strings.Builder
		b.WriteString(r.Message)
		for _, a := range h.attrs {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		b.WriteString(" ")
		h.logs.add(h.id, b.String())
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *cfHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &cfHandler{logs: h.logs, id: h.id, attrs: append(slices.Clip(h.attrs), attrs...), next: h.next.WithAttrs(attrs)}
}

func (h *cfHandler) WithGroup(name string) slog.Handler {
	return &cfHandler{logs: h.logs, id: h.id, attrs: h.attrs, next: h.next.WithGroup(name)}
}

// cfMembers requires GET /cluster on c to list exactly ids as voters (reachable when asked),
// with a leader among them.
func cfMembers(ctx context.Context, c *client.Client, ids []string, reachable bool) error {
	var ov struct {
		Leader string `json:"leader"`
		Nodes  []struct {
			ID        string `json:"id"`
			Suffrage  string `json:"suffrage"`
			Reachable bool   `json:"reachable"`
			APIURL    string `json:"api_url"`
			Error     string `json:"error"`
		} `json:"nodes"`
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Do(rctx, http.MethodGet, "/cluster", nil, nil, &ov); err != nil {
		return err
	}
	var got []string
	for _, n := range ov.Nodes {
		got = append(got, n.ID)
		if n.Suffrage != "Voter" {
			return fmt.Errorf("%s is a %s", n.ID, n.Suffrage)
		}
		if reachable && (!n.Reachable || n.APIURL == "") {
			return fmt.Errorf("%s not reachable: %s", n.ID, n.Error)
		}
	}
	if !slices.Equal(got, ids) {
		return fmt.Errorf("members %v, want %v", got, ids)
	}
	if !slices.Contains(ids, ov.Leader) {
		return fmt.Errorf("leader %q not among %v", ov.Leader, ids)
	}
	return nil
}
