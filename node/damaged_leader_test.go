package node_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestDamagedLeaderStepsAside: the leader's Raft log is damaged under write load and a
// scrub finds it. The damaged node must stop serving (503 storage_fault, not ready) and
// leave Raft, the other two elect a leader and go on taking writes, and nothing that
// was acknowledged is missing from their logs.
func TestDamagedLeaderStepsAside(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster under load; skipped in -short mode")
	}
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 90*time.Second)
	L := c.Leader(t)
	accounts := cfFund(t, ctx, c.Nodes[L].Client, "dl", 6, "1000000")
	others := cfOthers(L, 3)
	load := cfNewLoad(t, accounts, "dl", 0)
	for _, i := range others {
		load.Add(i, c.Nodes[i].URL(), 2)
	}
	cfEventually(t, 15*time.Second, "load running", func() error { return load.atLeast(100, time.Time{}) })

	// Damage the middle of the records of every segment of the leader's log.
	segs, err := filepath.Glob(filepath.Join(c.Config(L).DataDir, "raft", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments in the leader's data dir (%v)", err)
	}
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		mid := int64(len(bytes.TrimRight(b, "\x00")) / 2)
		f, err := os.OpenFile(seg, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{b[mid] ^ 0xff, b[mid+1] ^ 0xff}, mid); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	damagedAt := time.Now()
	st, err := c.Nodes[L].Store().Scrub(ctx)
	if err == nil && st.OK {
		t.Fatalf("the scrub passed a damaged log: %+v", st)
	}
	t.Logf("scrub on the damaged leader: %+v, %v", st, err)

	if err := c.Nodes[L].Ready(ctx); err == nil {
		t.Fatal("the damaged leader still says it is ready")
	}
	_, err = c.Nodes[L].Client.Account(ctx, accounts[0], 0)
	var ce *client.APIError
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.Code != chronicle.CodeStorageFault {
		t.Fatalf("a read on the damaged node: %v, want 503 %s", err, chronicle.CodeStorageFault)
	}
	cfEventually(t, 20*time.Second, "a leader among the other two", func() error {
		for _, i := range others {
			if c.Nodes[i].IsLeader() {
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	cfEventually(t, 20*time.Second, "writes go on without the damaged node", func() error { return load.atLeast(100, damagedAt) })
	load.Stop()
	events, _ := cfVerify(t, ctx, []*nodetest.Node{c.Nodes[others[0]], c.Nodes[others[1]]})
	load.check(t, events)
	t.Logf("%s", load.summary())
}
