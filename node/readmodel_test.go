package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// TestStateReadModelMatchesLogAndPostgres: the embedded read model is the state DB. On
// every node of a cluster it serves what a replay of the log gives (accounts, statement
// lines with balance_after, paging), and exactly what the PostgreSQL view projected
// from the same log serves; it stays so on a follower after a restart, and on a follower
// that was wiped and brought back by a snapshot install (the log behind the snapshot is
// gone, so nothing else could bring it back).
func TestStateReadModelMatchesLogAndPostgres(t *testing.T) {
	pgURL := pgtest.Schema(t)
	c := nodetest.StartCluster(t, 3, func(cfg *node.Config) { cfg.SnapshotThreshold, cfg.TrailingLogs = 64, 32 })
	ctx := cfCtx(t, 3*time.Minute)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	L := c.Leader(t)
	for i, n := range c.Nodes {
		if n.Projector() != nil {
			t.Fatalf("%s runs a projector with the embedded read model", c.Config(i).NodeID)
		}
	}

	type acct struct{ id, cur string }
	var accts []acct
	var creates []string
	for i := range 24 {
		a := acct{fmt.Sprintf("rm-%d", i), "USD"}
		initial := fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100))
		if i%4 == 3 {
			a.cur, initial = "JPY", fmt.Sprint(rng.IntN(50000))
		}
		accts = append(accts, a)
		creates = append(creates, fmt.Sprintf(`{"type":"create-account","account_id":%q,"owner_name":"Owner %d","currency":%q,"initial_balance":%q}`, a.id, i, a.cur, initial))
	}
	// Accounts opened empty, which can be closed; and statuses from the start, so that
	// both read models must show frozen and closed accounts.
	for i := range 4 {
		a := acct{fmt.Sprintf("rm-z-%d", i), "USD"}
		accts = append(accts, a)
		creates = append(creates, fmt.Sprintf(`{"type":"create-account","account_id":%q,"owner_name":"Empty %d","currency":"USD"}`, a.id, i))
	}
	rmBatch(t, ctx, c.Nodes[L], creates)
	rmBatch(t, ctx, c.Nodes[L], []string{`{"type":"freeze-account","account_id":"rm-1","reason":"review"}`,
		`{"type":"close-account","account_id":"rm-z-0","reason":"never used"}`,
		`{"type":"freeze-account","account_id":"rm-z-1","reason":"kyc"}`})
	amount := func(cur string) string {
		if cur == "JPY" {
			return fmt.Sprint(1 + rng.IntN(9000))
		}
		return fmt.Sprintf("%d.%02d", rng.IntN(90), 1+rng.IntN(99))
	}
	workload := func(batches int) {
		for b := range batches {
			var cmds []string
			for range 1 + rng.IntN(60) {
				i, j := rng.IntN(len(accts)), rng.IntN(len(accts)-1)
				if j >= i {
					j++ // a transfer to the same account is a malformed batch, not a refusal
				}
				a, o := accts[i], accts[j]
				switch p := rng.IntN(12); {
				case p == 10:
					// Lifecycle commands, many refused (frozen twice, not frozen, closed).
					typ := []string{"freeze-account", "unfreeze-account"}[rng.IntN(2)]
					cmds = append(cmds, fmt.Sprintf(`{"type":%q,"account_id":%q,"reason":"r %d"}`, typ, a.id, b))
				case p == 11:
					// Refused unless the balance is zero.
					cmds = append(cmds, fmt.Sprintf(`{"type":"close-account","account_id":%q,"reason":"c %d"}`, a.id, b))
				case p < 3:
					cmds = append(cmds, fmt.Sprintf(`{"type":"deposit","account_id":%q,"amount":%q,"description":"dep %d"}`, a.id, amount(a.cur), b))
				case p < 5:
					// Some are refused for funds: those write nothing.
					cmds = append(cmds, fmt.Sprintf(`{"type":"withdraw","account_id":%q,"amount":%q}`, a.id, amount(a.cur)))
				default:
					// Cross-currency pairs are refused too.
					cmds = append(cmds, fmt.Sprintf(`{"type":"transfer","from_account_id":%q,"to_account_id":%q,"amount":%q,"description":"t %d"}`, a.id, o.id, amount(a.cur), b))
				}
			}
			rmBatch(t, ctx, c.Nodes[b%len(c.Nodes)], cmds)
		}
	}
	workload(60)

	check := func(what string, nodes ...*nodetest.Node) []chronicle.Event {
		t.Helper()
		h, err := cfClusterHead(ctx, c.Nodes[L].Client)
		if err != nil {
			t.Fatal(err)
		}
		var log []chronicle.Event
		for _, n := range nodes {
			evs := cfLocalEventsUntil(t, ctx, n, h)
			if log == nil {
				log = evs
			}
			if err := n.Store().WaitApplied(ctx, h); err != nil {
				t.Fatal(err)
			}
			storetest.CheckReadModel(t, what+" on "+n.Config.NodeID, n.Store(), log, rng)
			if st := n.ViewStatus(); st.Position != h || st.LagEvents != 0 {
				t.Fatalf("%s: %s view status %+v at head %d", what, n.Config.NodeID, st, h)
			}
		}
		return log
	}
	log := check("after the workload", c.Nodes...)
	t.Logf("%d events in the log", len(log))
	statuses := map[string]int{}
	for _, a := range storetest.DumpReadModel(t, c.Nodes[L].Store(), rng).Accounts {
		statuses[string(a.Status)]++
	}
	frozen := 0
	for _, e := range log {
		if e.EventType == chronicle.EventAccountFrozen {
			frozen++
		}
	}
	if statuses["closed"] == 0 || statuses["active"] == 0 || frozen == 0 {
		t.Fatalf("account statuses %v, %d AccountFrozen events: the workload must close and freeze accounts", statuses, frozen)
	}
	t.Logf("account statuses %v", statuses)

	// The PostgreSQL view projected from the same log serves the same answers.
	pv, err := projector.OpenPostgresView(ctx, pgURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pv.Close()
	if err := projector.Rebuild(ctx, c.Nodes[L].Store(), pv, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("rebuild the postgres view: %v", err)
	}
	storetest.SameReadModel(t, "postgres view against the state DB",
		storetest.DumpReadModel(t, c.Nodes[L].Store(), rng), storetest.DumpReadModel(t, pv, rng))
	storetest.CheckReadModel(t, "postgres view", pv, log, rng)

	// A follower restarts: Raft replays its log over the state DB it has.
	f1, f2 := (L+1)%3, (L+2)%3
	c.Restart(t, f1)
	workload(10)
	check("after a follower restart", c.Nodes[f1], c.Nodes[L])

	// Snapshots truncate the log; a wiped follower can only come back by installing one.
	for i, n := range c.Nodes {
		if err := n.Store().Snapshot(); err != nil {
			t.Fatalf("snapshot on %s: %v", c.Config(i).NodeID, err)
		}
	}
	c.Wipe(t, f2)
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := c.Nodes[f2].WaitReady(wctx); err != nil {
		t.Fatalf("wiped node not ready: %v", err)
	}
	check("after a snapshot install on a wiped follower", c.Nodes[f2])
	workload(5)
	check("after more commands", c.Nodes...)
}

// rmBatch posts commands to /commands/batch; a command may be refused (it then writes
// nothing, which is part of what the read model must reflect).
func rmBatch(t *testing.T, ctx context.Context, n *nodetest.Node, cmds []string) {
	t.Helper()
	body := `{"commands":[` + strings.Join(cmds, ",") + `]}`
	var out struct {
		Results []struct {
			Success bool `json:"success"`
		} `json:"results"`
	}
	if _, err := n.Client.Do(ctx, http.MethodPost, "/commands/batch", []byte(body), nil, &out); err != nil {
		t.Fatalf("batch via %s: %v", n.Config.NodeID, err)
	}
	if len(out.Results) != len(cmds) {
		t.Fatalf("batch of %d answered %d results", len(cmds), len(out.Results))
	}
}

// A data directory from a build that kept an embedded Pebble view beside the state DB:
// the view is derived data nothing reads any more, so the node deletes it at start.
func TestOldPebbleViewDeleted(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "views", "pebble")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "000001.sst"), []byte("old view"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, nodetest.WithDataDir(dir))
	if _, err := os.Stat(filepath.Join(dir, "views")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old view directory still there: %v", err)
	}
	if n.Projector() != nil {
		t.Fatal("a projector runs with the embedded read model")
	}
}
