package node_test

import (
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestJetStreamAcrossRestart: an outside subscriber to the node's JetStream stream
// receives every position exactly once, in order, across a node restart.
func TestJetStreamAcrossRestart(t *testing.T) {
	natsAddr := freePort(t)
	n := nodetest.Start(t, func(c *node.Config) { c.NATSListen = natsAddr })
	ctx := ctxT(t)
	mustCreate(t, n.Client, "a", "USD", "100")
	mustCreate(t, n.Client, "b", "USD", "0")

	nc, err := nats.Connect("nats://"+natsAddr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "CHRONICLE_EVENTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []uint64
	subjects := map[string]string{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e chronicle.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Errorf("payload: %v", err)
			return
		}
		id, _ := strconv.ParseUint(m.Headers().Get("Nats-Msg-Id"), 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if id != e.Position {
			t.Errorf("Nats-Msg-Id %d for position %d", id, e.Position)
		}
		got = append(got, e.Position)
		subjects[e.EventType] = m.Subject()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	transfer := func(c *client.Client, k int) {
		for i := 0; i < k; i++ {
			if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	transfer(n.Client, 10)
	n = n.Restart(t)
	transfer(n.Client, 10)
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "b", Amount: "1"}, ""); err != nil {
		t.Fatal(err)
	}
	const total = 2 + 40 + 1
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != total {
		t.Fatalf("received %d events, want %d: %v", len(got), total, got)
	}
	for i, p := range got {
		if p != uint64(i+1) {
			t.Fatalf("message %d is position %d: %v", i, p, got)
		}
	}
	want := map[string]string{"AccountCreated": "events.account.created", "MoneyDeposited": "events.account.deposited", "MoneyWithdrawn": "events.account.withdrawn"}
	for typ, subj := range want {
		if subjects[typ] != subj {
			t.Errorf("%s published on %q, want %q", typ, subjects[typ], subj)
		}
	}
}
