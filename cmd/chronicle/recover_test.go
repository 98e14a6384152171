package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// TestClusterRecoverAfterQuorumLoss: a three-node cluster takes acknowledged writes,
// then loses two nodes for good; the survivor has no leader and refuses writes. Stopped,
// it is given `chronicle cluster recover` naming itself alone, and on restart it leads a
// one-node cluster holding every acknowledged write (same head position and hash, same
// balances), takes new writes, and passes `chronicle verify`. The recovery file is
// renamed aside, so a later restart does not apply it again.
func TestClusterRecoverAfterQuorumLoss(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := c.Leader(t)
	lc := c.Nodes[l].Client
	for _, id := range []string{"a", "b"} {
		if _, err := lc.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: "Owner " + id, Currency: "USD", InitialBalance: "100"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for i := 0; i < 40; i++ {
		res, err := lc.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1.25"}, fmt.Sprintf("t-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	want := headOf(t, ctx, lc)
	if want.Position != last {
		t.Fatalf("head %d, last acknowledged %d", want.Position, last)
	}

	// The survivor is a follower that has applied every acknowledged write (an operator
	// picks the most advanced survivor, see README).
	s := (l + 1) % 3
	gone := 3 - l - s
	survivor := c.Nodes[s]
	if err := survivor.Store().WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	dataDir := c.Config(s).DataDir
	c.Stop(t, l)
	c.Stop(t, gone)
	deadline := time.Now().Add(30 * time.Second)
	for survivor.Store().LeaderID() != "" {
		if time.Now().After(deadline) {
			t.Fatal("the survivor still knows a leader 30s after losing both peers")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := survivor.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, "lost-quorum")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
		t.Fatalf("a write to the survivor without quorum: %v, want 503", err)
	}

	peers := c.Config(s).NodeID + "=" + c.Config(s).RaftAddr
	// Refused while the node runs, and on a directory that is not a data directory.
	if code, _, errOut := runCluster(ctx, "recover", "--data-dir", dataDir, "--peers", peers); code != 1 || !strings.Contains(errOut, "in use") {
		t.Fatalf("recover of a running node: exit %d, want 1 (in use): %s", code, errOut)
	}
	c.Stop(t, s)
	if code, _, errOut := runCluster(ctx, "recover", "--data-dir", t.TempDir(), "--peers", peers); code != 1 || !strings.Contains(errOut, "not a chronicle data directory") {
		t.Fatalf("recover of an empty directory: exit %d, want 1: %s", code, errOut)
	}
	for _, args := range [][]string{
		{"recover", "--data-dir", dataDir},
		{"recover", "--peers", peers},
		{"recover", "--data-dir", dataDir, "--peers", "n2"},
	} {
		if code, _, errOut := runCluster(ctx, args...); code != 2 {
			t.Errorf("cluster %v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
	code, out, errOut := runCluster(ctx, "recover", "--data-dir", dataDir, "--peers", peers)
	if code != 0 || !strings.Contains(out, raftstore.PeersFile) {
		t.Fatalf("recover: exit %d:\n%s%s", code, out, errOut)
	}

	n := c.Restart(t, s)
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	if err := n.WaitReady(rctx); err != nil {
		t.Fatalf("recovered node not ready: %v", err)
	}
	if !n.IsLeader() {
		t.Fatal("the recovered node does not lead")
	}
	if servers, err := n.Store().Servers(); err != nil || len(servers) != 1 || servers[0].ID != c.Config(s).NodeID || servers[0].Suffrage != "Voter" {
		t.Fatalf("configuration after recovery: %+v, %v; want %s alone", servers, err, c.Config(s).NodeID)
	}
	if got := headOf(t, ctx, n.Client); got.Position != want.Position || got.Hash != want.Hash {
		t.Fatalf("head after recovery %d %s, want %d %s", got.Position, got.Hash, want.Position, want.Hash)
	}
	for id, bal := range map[string]string{"a": "50.00", "b": "150.00"} {
		if a, err := n.Client.Account(ctx, id, 0); err != nil || a.Balance != bal {
			t.Fatalf("account %s after recovery: %+v, %v; want %s", id, a, err, bal)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, raftstore.PeersFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after recovery: %v", raftstore.PeersFile, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dataDir, raftstore.PeersFile+".applied-*")); len(m) != 1 {
		t.Fatalf("renamed recovery files: %v, want one", m)
	}
	res, err := n.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, "after-recovery")
	if err != nil || res.Position != want.Position+1 {
		t.Fatalf("deposit after recovery: %+v, %v; want position %d", res, err, want.Position+1)
	}
	var vout, verr strings.Builder
	if code := run(ctx, []string{"verify", "--url", n.URL()}, &vout, &verr); code != 0 {
		t.Fatalf("verify after recovery: exit %d\n%s%s", code, vout.String(), verr.String())
	}

	// Restarted again, it leads with the same data and applies nothing twice.
	n = c.Restart(t, s)
	rctx2, rcancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel2()
	if err := n.WaitReady(rctx2); err != nil {
		t.Fatal(err)
	}
	if got := headOf(t, ctx, n.Client); got.Position != want.Position+1 {
		t.Fatalf("head after a second restart: %d, want %d", got.Position, want.Position+1)
	}
	if a, err := n.Client.Account(ctx, "a", 0); err != nil || a.Balance != "51.00" {
		t.Fatalf("account a after a second restart: %+v, %v; want 51.00", a, err)
	}
}

// headOf is the newest event of the log as node c serves it.
func headOf(t *testing.T, ctx context.Context, c *client.Client) chronicle.Event {
	t.Helper()
	evs, err := c.Events(ctx, client.EventsQuery{Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("head: %v, %v", evs, err)
	}
	return evs[0]
}
