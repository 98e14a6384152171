package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
)

func TestSubject(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ typ, want string }{
		{chronicle.EventAccountCreated, "p.account.created"},
		{chronicle.EventMoneyDeposited, "p.account.deposited"},
		{chronicle.EventMoneyWithdrawn, "p.account.withdrawn"},
		{"AccountFrozen", "p.account.frozen"},
		{"AccountOwnerChanged", "p.account.owner_changed"},
		{"MoneyTransferred", "p.account.transferred"},
		{"FeeCharged", "p.account.fee_charged"},
		{"AccountKYCVerified", "p.account.kyc_verified"},
		{chronicle.EventTransferPending, "p.account.transfer_pending"},
		{chronicle.EventTransferCaptured, "p.account.transfer_captured"},
		{chronicle.EventTransferVoided, "p.account.transfer_voided"},
		{chronicle.EventTransferExpired, "p.account.transfer_expired"},
		{"Account", "p.account.account"},
		{"frozen", "p.account.frozen"},
		{"Account.Frozen >*", "p.account.frozen"},
		{"", "p.account.unknown"},
		{"***", "p.account.unknown"},
	} {
		if got := Subject("p", c.typ); got != c.want {
			t.Errorf("Subject(p, %q) = %q, want %q", c.typ, got, c.want)
		}
	}
	if got := Subject("a.b", chronicle.EventAccountCreated); got != "a.b.account.created" {
		t.Errorf("multi-token prefix: %q", got)
	}
}

func TestOpenValidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cfg := range []Config{
		{},                                    // no data dir for the embedded server
		{DataDir: t.TempDir(), Stream: "a.b"}, // bad stream name
		{DataDir: t.TempDir(), SubjectPrefix: "events.>"},
		{DataDir: t.TempDir(), SubjectPrefix: "a..b"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1"},
	} {
		if b, err := Open(ctx, cfg); err == nil {
			b.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// 1. The embedded server: every position exactly once, in order, with the right id,
// subject and payload; the publisher keeps up with new writes after catching up.
func TestEmbeddedPublishesEveryPosition(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{DataDir: filepath.Join(t.TempDir(), "nats"), ServerName: "n1", Logger: log})
	if b.Stream() != DefaultStream || b.ClientURL() != "" || !b.Connected() {
		t.Fatalf("stream %q client url %q connected %t", b.Stream(), b.ClientURL(), b.Connected())
	}

	// A backlog first, to measure catch-up throughput.
	backlog := workload(t, s, 4000, 500)
	start := time.Now()
	stop := runPublisher(t, b, s)
	waitPublished(t, b, backlog, 30*time.Second)
	el := time.Since(start)
	t.Logf("published a backlog of %d events in %s: %.0f events/s", backlog, el.Round(time.Millisecond), float64(backlog)/el.Seconds())

	// Then live writes, small batches, woken by the store.
	last := workload(t, s, 300, 7)
	waitPublished(t, b, last, 15*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("publisher returned %v, want nil on cancel", err)
	}
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))

	types := map[string]bool{}
	for _, e := range logEvents(t, s) {
		types[Subject(DefaultSubjectPrefix, e.EventType)] = true
	}
	for _, want := range []string{"events.account.created", "events.account.deposited", "events.account.withdrawn"} {
		if !types[want] {
			t.Errorf("no message on %s", want)
		}
	}

	// Stream configuration as documented.
	cfg := streamConfigOf(t, b)
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Duplicates != DuplicateWindow || cfg.Storage != jetstream.FileStorage ||
		cfg.PersistMode != jetstream.AsyncPersistMode || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "events.>" {
		t.Errorf("stream config %+v", cfg)
	}

	// RunPublisher after Close reports ErrClosed.
	b.Close()
	if err := b.RunPublisher(context.Background(), s, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("RunPublisher after Close: %v", err)
	}
}

func streamConfigOf(t *testing.T, b *Bus) jetstream.StreamConfig {
	t.Helper()
	js, _ := jetstream.New(b.Conn())
	st, err := js.Stream(context.Background(), b.Stream())
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().Config
}

// 2. Close the bus, the publisher and the store mid-way; reopen on the same dirs and
// write more: positions 1..N exactly once.
func TestRestartResumesWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	logDir, natsDir := t.TempDir(), t.TempDir()

	s := openStore(t, logDir, log)
	b := openBus(t, Config{DataDir: natsDir, Logger: log})
	stop := runPublisher(t, b, s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		workload(t, s, 2000, 25)
	}()
	waitPublished(t, b, 300, 20*time.Second)
	// Mid-way: the writer is still writing.
	closeErr := make(chan error, 1)
	go func() { closeErr <- b.Close() }() // Close stops the publisher (ErrClosed)...
	if err := stop(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("publisher: %v", err)
	}
	if err := <-closeErr; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	firstRun := b.Published()
	h1 := head(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("first run published %d of %d", firstRun, h1)

	s = openStore(t, logDir, log)
	b = openBus(t, Config{DataDir: natsDir, Logger: log})
	stop = runPublisher(t, b, s)
	waitFor(t, 10*time.Second, "resume", func() bool { return b.Published() >= firstRun })
	last := workload(t, s, 500, 50)
	waitPublished(t, b, last, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
}

// 3. An external server dies mid-load and comes back on the same port and store: the
// publisher catches up, every position exactly once.
func TestExternalOutage(t *testing.T) {
	t.Parallel()
	log, logs := testLogger(t)
	port, storeDir := freePort(t), t.TempDir()
	ns := startNATS(t, port, storeDir)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{URL: url, Logger: log})
	if b.Server() != nil || b.ClientURL() != url {
		t.Fatalf("external bus: server %v url %q", b.Server(), b.ClientURL())
	}
	stop := runPublisher(t, b, s)

	writer := func(n int) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			workload(t, s, n, 20)
		}()
		return done
	}
	w := writer(1500)
	waitPublished(t, b, 200, 20*time.Second)
	ns.Shutdown() // mid-load
	ns.WaitForShutdown()
	waitFor(t, 10*time.Second, "disconnect", func() bool { return !b.Connected() })
	atOutage := b.Published()
	<-w
	w = writer(300) // the log keeps growing while NATS is down
	<-w
	if t.Failed() {
		t.FailNow()
	}
	if got := b.Published(); got > atOutage {
		t.Fatalf("published %d while NATS was down (was %d)", got, atOutage)
	}
	waitFor(t, 15*time.Second, "a publish failure logged", func() bool {
		return strings.Contains(logs.String(), "publish failed") || strings.Contains(logs.String(), "cannot read the stream")
	})

	ns2 := startNATS(t, port, storeDir)
	waitFor(t, 15*time.Second, "reconnect", b.Connected)
	last := head(t, s)
	waitPublished(t, b, last, 20*time.Second)
	t.Logf("published %d at the outage, caught up to %d after", atOutage, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, connect(t, ns2.ClientURL()), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
}

// An external NATS that is down when the node starts: Open succeeds, and the publisher
// creates the stream and publishes once NATS comes up.
func TestExternalDownAtStart(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	port := freePort(t)
	s := openStore(t, t.TempDir(), log)
	last := workload(t, s, 100, 20)
	b := openBus(t, Config{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Logger: log})
	if b.Connected() {
		t.Fatal("connected to a server that is not there")
	}
	stop := runPublisher(t, b, s)
	ns := startNATS(t, port, t.TempDir())
	waitPublished(t, b, last, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, connect(t, ns.ClientURL()), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
}

// 4. With Listen, an outside client connects to ClientURL and receives events.
func TestListenServesOutsideConsumers(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	port := freePort(t)
	b := openBus(t, Config{DataDir: t.TempDir(), Listen: fmt.Sprintf("127.0.0.1:%d", port), SubjectPrefix: "ledger", Logger: log})
	if want := fmt.Sprintf("nats://127.0.0.1:%d", port); b.ClientURL() != want {
		t.Fatalf("client url %q, want %q", b.ClientURL(), want)
	}

	nc := connect(t, b.ClientURL())
	msgs := make(chan *nats.Msg, 1000)
	sub, err := nc.ChanSubscribe("ledger.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	stop := runPublisher(t, b, s)
	last := workload(t, s, 40, 4)
	for pos := uint64(1); pos <= last; pos++ {
		select {
		case m := <-msgs:
			var e chronicle.Event
			if err := json.Unmarshal(m.Data, &e); err != nil || e.Position != pos || !strings.HasPrefix(m.Subject, "ledger.account.") {
				t.Fatalf("message %d: position %d subject %q (%v)", pos, e.Position, m.Subject, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no message for position %d", pos)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Port 0 picks a free port, and ClientURL reports it.
	b0 := openBus(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: log})
	if u := b0.ClientURL(); !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") || strings.HasSuffix(u, ":-1") {
		t.Fatalf("client url with port 0: %q", u)
	}
	connect(t, b0.ClientURL())
}

// 5. The machine's shared NATS, on a stream and prefix of our own, deleted at the end.
func TestSharedNATS(t *testing.T) {
	t.Parallel()
	const url = "nats://127.0.0.1:4222"
	probe, err := nats.Connect(url, nats.Timeout(time.Second), nats.MaxReconnects(0))
	if err != nil {
		t.Skipf("no NATS answers at %s (%v); skipping the shared-server test", url, err)
	}
	t.Cleanup(probe.Close) // after the stream is deleted (cleanups run last first)
	js, _ := jetstream.New(probe)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Skipf("NATS at %s has no JetStream (%v); skipping the shared-server test", url, err)
	}
	stream, prefix := uniqueName("shared")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})

	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{URL: url, Stream: stream, SubjectPrefix: prefix, Logger: log})
	stop := runPublisher(t, b, s)
	last := workload(t, s, 500, 50)
	waitPublished(t, b, last, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, probe, stream, prefix, logEvents(t, s))
}

// 6. Publishers racing on one stream and one log (two connections, two publishers on
// one of them) still store every position exactly once, in order.
func TestRacingPublishers(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	// A server of its own without users: an embedded server that listens lets only its
	// own node publish.
	ns := startNATS(t, freePort(t), t.TempDir())
	b1 := openBus(t, Config{URL: ns.ClientURL(), Logger: log.With("bus", 1)})
	b2 := openBus(t, Config{URL: ns.ClientURL(), Logger: log.With("bus", 2)})
	stops := []func() error{runPublisher(t, b1, s), runPublisher(t, b1, s), runPublisher(t, b2, s)}
	workload(t, s, 500, 50) // a backlog they all start on
	last := workload(t, s, 2000, 20)
	waitPublished(t, b1, last, 30*time.Second)
	waitPublished(t, b2, last, 30*time.Second)
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	checkStream(t, b1.Conn(), b1.Stream(), DefaultSubjectPrefix, logEvents(t, s))
}

// A stream ahead of the log, or holding another history, is left alone.
func TestStreamAheadOfLogIsNotOverwritten(t *testing.T) {
	t.Parallel()
	log, logs := testLogger(t)
	natsDir := t.TempDir()
	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{DataDir: natsDir, Logger: log})
	stop := runPublisher(t, b, s)
	n := workload(t, s, 100, 20)
	waitPublished(t, b, n, 15*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A new, shorter log (a wiped data dir) against the surviving stream.
	s2 := openStore(t, t.TempDir(), log)
	workload(t, s2, 10, 10)
	stop = runPublisher(t, b, s2)
	waitFor(t, 10*time.Second, "the ahead-of-log error", func() bool {
		return strings.Contains(logs.String(), "is ahead of the log")
	})
	// The new log grows past the stream: its history differs, still nothing published.
	workload(t, s2, int(n)+50, 50)
	waitFor(t, 15*time.Second, "the different-history error", func() bool {
		return strings.Contains(logs.String(), "holds a different history")
	})
	if p := b.Problem(); !strings.Contains(p, "holds a different history") || !strings.Contains(p, "remove the embedded NATS data dir") {
		t.Fatalf("problem %q", p)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))

	// Deleting the stream is the way to rebuild it from the new log.
	js, _ := jetstream.New(b.Conn())
	if err := js.DeleteStream(context.Background(), b.Stream()); err != nil {
		t.Fatal(err)
	}
	stop = runPublisher(t, b, s2)
	waitFor(t, 15*time.Second, "rebuild", func() bool { return b.Published() == head(t, s2) })
	if p := b.Problem(); p != "" {
		t.Fatalf("problem after the rebuild: %q", p)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s2))
}

// BenchmarkPublish measures catch-up publishing from an in-memory log to the embedded
// server: events/s, and the process's CPU per event (publisher, server and its store),
// which bounds how many events/s a node can fan out on its cores. "encoded" hands the
// publisher JSON encoded in advance, as a Raft node's tail cache does; "events" has the
// publisher encode each page.
func BenchmarkPublish(b *testing.B) {
	b.Run("events", func(b *testing.B) {
		benchmarkPublish(b, func(evs []chronicle.Event) Source { return &memSource{events: evs} })
	})
	b.Run("encoded", func(b *testing.B) {
		benchmarkPublish(b, func(evs []chronicle.Event) Source { return newEncodedSource(evs) })
	})
}

func benchmarkPublish(b *testing.B, source func([]chronicle.Event) Source) {
	src := source(syntheticEvents(b.N))
	bus, err := Open(context.Background(), Config{DataDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	done := make(chan error, 1)
	go func() { done <- bus.RunPublisher(ctx, src, nil) }()
	for bus.Published() < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/event")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// Limits bound a stream the bus creates; a max age below the duplicate window shortens
// the window (the server refuses a longer one).
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	b := openBus(t, Config{DataDir: t.TempDir(), MaxAge: 5 * time.Second, MaxBytes: 1 << 20, Logger: log})
	cfg := streamConfigOf(t, b)
	if cfg.MaxAge != 5*time.Second || cfg.MaxBytes != 1<<20 || cfg.Duplicates != 5*time.Second || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("stream config %+v", cfg)
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
