package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// syncBuffer collects a test's logs; they are printed when the test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a logger whose output is shown only if the test fails.
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("EVENTBUS_TEST_LOGS") != "" {
			out := buf.String()
			if len(out) > 30000 {
				out = "...\n" + out[len(out)-30000:]
			}
			t.Logf("log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// openStore opens a one-node raftstore store on dir and waits until it leads.
func openStore(t *testing.T, dir string, log *slog.Logger) *raftstore.Store {
	t.Helper()
	s, err := raftstore.Open(raftstore.Config{DataDir: dir, NodeID: "n1", RaftAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: log.With("test", "store")})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatalf("store: %v", err)
	}
	return s
}

func openBus(t *testing.T, cfg Config) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// runPublisher runs b.RunPublisher on s, woken by s.Changes; stop ends it and returns
// its error.
func runPublisher(t *testing.T, b *Bus, s *raftstore.Store) (stop func() error) {
	t.Helper()
	wake, unwatch := s.Changes()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.RunPublisher(ctx, s, wake) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = fmt.Errorf("publisher did not stop")
			}
			unwatch()
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// exec commits cmds and marks the test failed on any refusal (safe off the test
// goroutine: it never calls FailNow).
func exec(t testing.TB, s *raftstore.Store, cmds ...chronicle.Command) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range cmds {
		if cmds[i].ID == "" {
			cmds[i].ID = chronicle.NewID()
		}
	}
	res, err := s.Execute(ctx, cmds)
	if err != nil {
		t.Errorf("execute: %v", err)
		return false
	}
	ok := true
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("command %d (%s): %v", i, cmds[i].Type, r.Err)
			ok = false
		}
	}
	return ok
}

// workload appends about n events in batches: two accounts, then deposits, withdrawals
// and transfers (every event type), and returns the new head position. Safe off the
// test goroutine; the caller checks t.Failed.
func workload(t testing.TB, s *raftstore.Store, n, batch int) uint64 {
	t.Helper()
	if head(t, s) == 0 {
		if !exec(t, s,
			chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "a", OwnerName: "A", Currency: "USD", InitialBalance: "10"},
			chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "b", OwnerName: "B", Currency: "USD"}) {
			return head(t, s)
		}
	}
	target := head(t, s) + uint64(n)
	for head(t, s) < target {
		var cmds []chronicle.Command
		for i := 0; i < batch; i++ {
			switch i % 4 {
			case 0, 1:
				cmds = append(cmds, chronicle.Command{Type: chronicle.CmdDeposit, AccountID: "a", Amount: "2"})
			case 2:
				cmds = append(cmds, chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: "a", Amount: "1"})
			case 3:
				cmds = append(cmds, chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "a", ToAccountID: "b", Amount: "1"})
			}
		}
		if !exec(t, s, cmds...) {
			break
		}
	}
	return head(t, s)
}

func head(t testing.TB, s *raftstore.Store) uint64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Errorf("head: %v", err)
	}
	return h.Position
}

// logEvents reads the whole log.
func logEvents(t *testing.T, s *raftstore.Store) []chronicle.Event {
	t.Helper()
	var out []chronicle.Event
	for {
		evs, err := s.Events(context.Background(), chronicle.EventQuery{After: uint64(len(out)), Limit: chronicle.MaxEventsPage})
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for the condition
	}
}

func waitPublished(t *testing.T, b *Bus, pos uint64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("position %d published (at %d)", pos, b.Published()), func() bool { return b.Published() >= pos })
}

type streamMsg struct {
	seq     uint64
	subject string
	msgID   string
	data    []byte
}

// readStream reads the first n messages of stream with an ordered consumer from
// sequence 1.
func readStream(t *testing.T, nc *nats.Conn, stream string, n int) []streamMsg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	defer it.Stop()
	out := make([]streamMsg, 0, n)
	for len(out) < n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatalf("metadata: %v", err)
		}
		out = append(out, streamMsg{seq: md.Sequence.Stream, subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader), data: m.Data()})
	}
	return out
}

// checkStream verifies that stream holds exactly the log: positions 1..N once each, in
// order, a Nats-Msg-Id on position 1 only (the expected last sequence keeps the stream
// exact, see bus.go), subject by type, payload == the event's JSON.
func checkStream(t *testing.T, nc *nats.Conn, stream, prefix string, events []chronicle.Event) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	st := s.CachedInfo().State
	n := uint64(len(events))
	if st.Msgs != n || st.LastSeq != n || n > 0 && st.FirstSeq != 1 {
		t.Fatalf("stream state msgs=%d first=%d last=%d, want %d messages 1..%d", st.Msgs, st.FirstSeq, st.LastSeq, n, n)
	}
	msgs := readStream(t, nc, stream, len(events))
	for i, m := range msgs {
		e := events[i]
		pos := uint64(i + 1)
		if e.Position != pos {
			t.Fatalf("log event %d has position %d", i, e.Position)
		}
		wantID := ""
		if pos == 1 {
			wantID = "1"
		}
		if m.seq != pos || m.msgID != wantID {
			t.Fatalf("message %d: stream seq %d, msg id %q", pos, m.seq, m.msgID)
		}
		if want := Subject(prefix, e.EventType); m.subject != want {
			t.Fatalf("message %d (%s): subject %q, want %q", pos, e.EventType, m.subject, want)
		}
		var got chronicle.Event
		if err := json.Unmarshal(m.data, &got); err != nil {
			t.Fatalf("message %d: %v", pos, err)
		}
		if got.Position != pos || got.Hash != e.Hash || got.ComputeHash() != e.Hash {
			t.Fatalf("message %d: event position %d hash %s (content %s), log hash %s", pos, got.Position, got.Hash, got.ComputeHash(), e.Hash)
		}
		want, _ := json.Marshal(e)
		if !bytes.Equal(m.data, want) {
			t.Fatalf("message %d: payload\n%s\nwant\n%s", pos, m.data, want)
		}
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNATS starts a standalone JetStream server on port (as an "external" NATS).
func startNATS(t *testing.T, port int, storeDir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{ServerName: "external", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("nats server on port %d not ready", port)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// uniqueName returns a stream name and subject prefix no other test uses.
func uniqueName(tag string) (stream, prefix string) {
	id := strings.ReplaceAll(chronicle.NewID(), "-", "")[:12]
	return "CHRONICLE_TEST_" + strings.ToUpper(tag) + "_" + id, "chronicletest_" + tag + "_" + id
}

// memSource is an in-memory Source (for the benchmark).
type memSource struct{ events []chronicle.Event }

// encodedSource is a memSource that also hands out each event's JSON, encoded once in
// advance, as raftstore does from its tail cache.
type encodedSource struct {
	memSource
	encoded []chronicle.EncodedEvent
}

func newEncodedSource(events []chronicle.Event) *encodedSource {
	return &encodedSource{memSource: memSource{events: events}, encoded: chronicle.EncodeEvents(events)}
}

func (m *encodedSource) EncodedEvents(ctx context.Context, q chronicle.EventQuery) ([]chronicle.EncodedEvent, error) {
	evs, err := m.Events(ctx, q)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return m.encoded[q.After : q.After+uint64(len(evs))], nil
}

func (m *memSource) Events(_ context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	if q.Limit <= 0 || q.Limit > chronicle.MaxEventsPage {
		q.Limit = chronicle.MaxEventsPage
	}
	if q.After >= uint64(len(m.events)) {
		return nil, nil
	}
	end := min(q.After+uint64(q.Limit), uint64(len(m.events)))
	return m.events[q.After:end], nil
}

// syntheticEvents builds a hash-chained log of n deposits.
func syntheticEvents(n int) []chronicle.Event {
	out := make([]chronicle.Event, n)
	prev := chronicle.GenesisHash
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		data := chronicle.EventData{AccountID: "a", Currency: "USD", Amount: 100, BalanceAfter: int64(i+1) * 100}
		e := chronicle.Event{Position: uint64(i + 1), EventID: chronicle.NewID(), AggregateID: "a", AggregateType: "Account",
			EventType: chronicle.EventMoneyDeposited, EventVersion: uint64(i + 1), Data: data,
			CreatedAt: t0.Add(time.Duration(i) * time.Millisecond), PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		out[i] = e
	}
	return out
}
