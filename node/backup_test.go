package node_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// snapshotFiles lists a node's Raft snapshot directory.
func snapshotFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestBackupFromFollower: a follower of a three-node cluster serves a backup of what it
// has applied, named after itself, without taking a Raft snapshot; restored, it starts
// as a one-node cluster of its own at the same head.
func TestBackupFromFollower(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := ctxT(t)
	l := c.Leader(t)
	lc := c.Nodes[l].Client
	if _, err := lc.CreateAccount(ctx, client.CreateAccount{AccountID: "f1", OwnerName: "F", Currency: "USD", InitialBalance: "50"}, ""); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 20 {
		res, err := lc.Deposit(ctx, client.Money{AccountID: "f1", Amount: "1"}, fmt.Sprintf("d-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	f := (l + 1) % 3
	follower := c.Nodes[f]
	if err := follower.Store().WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	snapsBefore := snapshotFiles(t, c.Config(f).DataDir)
	resp, err := http.Get(follower.URL() + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("backup from the follower: %d, %v", resp.StatusCode, err)
	}
	if follower.IsLeader() {
		t.Skip("leadership moved to the backed-up node meanwhile; nothing shown about followers")
	}
	bf, err := raftstore.ReadBackupFile(bytes.NewReader(data), int64(len(data)))
	if err == nil {
		err = bf.Verify()
	}
	if err != nil {
		t.Fatal(err)
	}
	if bf.Header.NodeID != c.Config(f).NodeID || bf.Header.Position != last {
		t.Fatalf("header %+v; want node %s at position %d", bf.Header, c.Config(f).NodeID, last)
	}
	if after := snapshotFiles(t, c.Config(f).DataDir); !slices.Equal(after, snapsBefore) {
		t.Fatalf("the backup changed the follower's Raft snapshots: %v -> %v", snapsBefore, after)
	}
	dir := filepath.Join(t.TempDir(), "r")
	if err := raftstore.RestoreBackup(bf, dir, nodetest.Logger()); err != nil {
		t.Fatal(err)
	}
	r := nodetest.Start(t, nodetest.WithDataDir(dir))
	if a, err := r.Client.Account(ctx, "f1", 0); err != nil || a.Balance != "70.00" {
		t.Fatalf("restored account: %+v, %v; want 70.00", a, err)
	}
	if servers, err := r.Store().Servers(); err != nil || len(servers) != 1 {
		t.Fatalf("the restored node's cluster: %+v, %v; want itself alone", servers, err)
	}
	// The restored node's log begins after the backup's state: a node that joins it must
	// be sent that state (as a snapshot), not only the new entries.
	res, err := r.Client.Deposit(ctx, client.Money{AccountID: "f1", Amount: "1"}, "after-restore")
	if err != nil {
		t.Fatal(err)
	}
	j := nodetest.Start(t, func(c *node.Config) {
		c.NodeID, c.HTTPAddr, c.RaftAddr, c.Join = "j2", nodetest.FreeAddr(t), nodetest.FreeAddr(t), []string{r.URL()}
	})
	if err := j.Store().WaitApplied(ctx, res.Position); err != nil {
		t.Fatal(err)
	}
	var a client.Account
	if _, err := j.Client.Do(ctx, http.MethodGet, "/accounts/f1?consistency=local", nil, nil, &a); err != nil || a.Balance != "71.00" {
		t.Fatalf("account f1 on the node that joined the restored one: %+v, %v; want 71.00", a, err)
	}
}

// TestBackupUnsupportedInSQLMode: a SQL-mode process keeps no state of its own; it says
// so with 501 backup_unsupported.
func TestBackupUnsupportedInSQLMode(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, func(c *node.Config) {
		c.Store, c.EventStoreURL, c.Role = node.StoreSQL, pgtest.Schema(t), httpapi.RoleAll
	})
	_, err := n.Client.Do(ctxT(t), http.MethodGet, "/admin/backup", nil, nil, nil)
	if e, ok := err.(*client.APIError); !ok || e.Status != http.StatusNotImplemented || e.Code != httpapi.CodeBackupUnsupported {
		t.Fatalf("backup in SQL mode: %v; want 501 %s", err, httpapi.CodeBackupUnsupported)
	}
}
