package node_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestClusterForwardsToLeader: a three-node cluster forms; a command sent to a follower
// is forwarded to the leader and every node then serves it.
func TestClusterForwardsToLeader(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := ctxT(t)
	l := c.Leader(t)
	f := (l + 1) % 3
	res, err := c.Nodes[f].Client.CreateAccount(ctx, client.CreateAccount{AccountID: "x", OwnerName: "X", Currency: "USD", InitialBalance: "7"}, "")
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("create via follower: %+v, %v", res, err)
	}
	for i, n := range c.Nodes {
		a, err := n.Client.Account(ctx, "x", 0) // leader consistency: forwarded
		if err != nil || a.Balance != "7.00" {
			t.Fatalf("node %d: %+v, %v", i, a, err)
		}
		var loc client.Account
		if _, err := n.Client.Do(ctx, http.MethodGet, "/accounts/x?consistency=local&min_position=1", nil, nil, &loc); err != nil || loc.Balance != "7.00" {
			t.Fatalf("node %d local read: %+v, %v", i, loc, err)
		}
	}
}

// TestJetStreamAcrossFailover: every node's JetStream stream holds each position of the
// log exactly once, in order, across a leader change and the old leader's restart.
func TestJetStreamAcrossFailover(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := ctxT(t)
	l := c.Leader(t)
	mustCreate(t, c.Nodes[l].Client, "a", "USD", "100")
	mustCreate(t, c.Nodes[l].Client, "b", "USD", "0")
	move := func(via *client.Client, k int) {
		for i := 0; i < k; i++ {
			if _, err := via.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	move(c.Nodes[(l+1)%3].Client, 10)
	c.Stop(t, l)
	survivor := c.Nodes[(l+1)%3]
	move(survivor.Client, 10) // forwarded to whichever node now leads
	c.Restart(t, l)
	c.WaitReady(t)
	res, err := survivor.Client.Deposit(ctx, client.Money{AccountID: "b", Amount: "1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	head := res.Position
	for i, n := range c.Nodes {
		js, err := jetstream.New(n.Bus().Conn())
		if err != nil {
			t.Fatal(err)
		}
		var st *jetstream.StreamInfo
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := js.Stream(ctx, n.Bus().Stream())
			if err == nil {
				st, err = s.Info(ctx)
			}
			if err == nil && st.State.LastSeq >= head || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st == nil || st.State.Msgs != head || st.State.LastSeq != head || st.State.FirstSeq != 1 {
			t.Fatalf("node %d stream state %+v, want positions 1..%d exactly once", i, st, head)
		}
		s, _ := js.Stream(ctx, n.Bus().Stream())
		for _, seq := range []uint64{1, head / 2, head} {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			var e chronicle.Event
			if err := json.Unmarshal(m.Data, &e); err != nil || e.Position != seq {
				t.Fatalf("node %d: stream sequence %d holds position %d (%v)", i, seq, e.Position, err)
			}
		}
	}
}

// TestSharedNATSOnlyLeaderPublishes: with one external NATS for the whole cluster, the
// stream holds every position exactly once, in order, across a leader change.
func TestSharedNATSOnlyLeaderPublishes(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	c := nodetest.StartCluster(t, 3, func(cfg *node.Config) { cfg.NATSURL = ns.ClientURL() })
	ctx := ctxT(t)
	l := c.Leader(t)
	mustCreate(t, c.Nodes[l].Client, "a", "USD", "100")
	mustCreate(t, c.Nodes[l].Client, "b", "USD", "0")
	via := c.Nodes[(l+1)%3].Client
	var head uint64
	move := func(k int) {
		for i := 0; i < k; i++ {
			res, err := via.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, "")
			if err != nil {
				t.Fatal(err)
			}
			head = res.Position
		}
	}
	move(10)
	c.Stop(t, l)
	move(10)
	c.Restart(t, l)
	move(5)
	requireStreamExactly(t, ns.ClientURL(), head)
}

// requireStreamExactly waits until the stream on the NATS server at url holds positions
// 1..head, each exactly once and in order at its own sequence.
func requireStreamExactly(t *testing.T, url string, head uint64) {
	t.Helper()
	ctx := ctxT(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	var st *jetstream.StreamInfo
	for {
		if s, err := js.Stream(ctx, "CHRONICLE_EVENTS"); err == nil {
			st, _ = s.Info(ctx)
		}
		if st != nil && st.State.LastSeq >= head || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st == nil || st.State.Msgs != head || st.State.LastSeq != head {
		t.Fatalf("shared stream state %+v, want positions 1..%d exactly once", st, head)
	}
	s, _ := js.Stream(ctx, "CHRONICLE_EVENTS")
	for seq := uint64(1); seq <= head; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var e chronicle.Event
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Position != seq {
			t.Fatalf("sequence %d holds position %d (%v)", seq, e.Position, err)
		}
	}
}
