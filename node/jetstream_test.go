package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
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
		md, err := m.Metadata()
		mu.Lock()
		defer mu.Unlock()
		if err != nil || md.Sequence.Stream != e.Position {
			t.Errorf("stream sequence %+v for position %d (%v)", md, e.Position, err)
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

// TestNATSListenRefusesForgedEvents: through --nats-listen an anonymous client cannot
// publish a forged event (core or JetStream) nor delete the stream, and the node keeps
// publishing the log and stays without a NATS problem.
func TestNATSListenRefusesForgedEvents(t *testing.T) {
	natsAddr := freePort(t)
	n := nodetest.Start(t, func(c *node.Config) { c.NATSListen = natsAddr })
	ctx := ctxT(t)
	mustCreate(t, n.Client, "a", "USD", "100")

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "position 1 in the stream", func() error {
		if p := n.Bus().Published(); p < 1 {
			return fmt.Errorf("published %d", p)
		}
		return nil
	})
	forged := []byte(`{"position":2,"event_type":"MoneyDeposited","hash":"forged"}`)
	if err := nc.Publish("events.account.deposited", forged); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = js.Publish(short, "events.account.deposited", forged, jetstream.WithMsgID("2"), jetstream.WithExpectLastSequence(1))
	cancel()
	if err == nil {
		t.Fatal("anonymous JetStream publish of a forged event acked")
	}
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	err = js.DeleteStream(short, "CHRONICLE_EVENTS")
	cancel()
	if err == nil {
		t.Fatal("anonymous client deleted the stream")
	}
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "5"}, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deposit in the stream", func() error {
		if p := n.Bus().Published(); p < 2 {
			return fmt.Errorf("published %d (problem %q)", p, n.Bus().Problem())
		}
		return nil
	})
	st, err := getReady(ctx, n.URL())
	if err != nil || st.status != http.StatusOK {
		t.Fatalf("/ready %d %v (%v)", st.status, st.body, err)
	}
	if nats := st.body["node"].(map[string]any)["nats"].(map[string]any); nats["problem"] != nil {
		t.Fatalf("nats problem: %v", nats["problem"])
	}
	// The stream holds the log's deposit at position 2, not the forgery.
	s, err := js.Stream(ctx, "CHRONICLE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var e chronicle.Event
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Position != 2 || e.Hash == "forged" || e.EventType != "MoneyDeposited" {
		t.Fatalf("stream message 2: %s (%v)", m.Data, err)
	}
}

// TestReadyShowsDivergedStream: a stream holding another history than the log (here
// created before the node starts) stops publishing, /ready stays ready and its details
// say so and how to repair it; deleting the stream rebuilds it from the log.
func TestReadyShowsDivergedStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	ctx := ctxT(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CHRONICLE_EVENTS", Subjects: []string{"events.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "events.account.created", []byte(`{"position":1,"hash":"other"}`), jetstream.WithMsgID("1")); err != nil {
		t.Fatal(err)
	}

	n := nodetest.Start(t, func(c *node.Config) { c.NATSURL = ns.ClientURL() })
	mustCreate(t, n.Client, "a", "USD", "100")
	natsStatus := func() (map[string]any, error) {
		st, err := getReady(ctx, n.URL())
		if err != nil {
			return nil, err
		}
		if st.status != http.StatusOK {
			return nil, fmt.Errorf("/ready %d %v", st.status, st.body)
		}
		return st.body["node"].(map[string]any)["nats"].(map[string]any), nil
	}
	eventually(t, 15*time.Second, "the divergence in /ready", func() error {
		st, err := natsStatus()
		if err != nil {
			return err
		}
		p, _ := st["problem"].(string)
		if !strings.Contains(p, "different history") || !strings.Contains(p, "delete stream CHRONICLE_EVENTS") {
			return fmt.Errorf("nats status %v", st)
		}
		return nil
	})
	if p := n.Bus().Published(); p != 0 {
		t.Fatalf("published %d onto a diverged stream", p)
	}

	// The repair the message names: delete the stream; the node rebuilds it from the log.
	if err := js.DeleteStream(ctx, "CHRONICLE_EVENTS"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the rebuilt stream", func() error {
		st, err := natsStatus()
		if err != nil {
			return err
		}
		if st["problem"] != nil || st["published"] != float64(1) {
			return fmt.Errorf("nats status %v", st)
		}
		return nil
	})
}
