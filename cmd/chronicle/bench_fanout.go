package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/eventbus"
)

// fanoutConfig is what `chronicle bench fanout` was asked to do.
type fanoutConfig struct {
	dir      string // parent of the JetStream store; a temp dir in it is removed afterwards
	duration time.Duration
}

// fanoutResult is the embedded fan-out's ceiling as measured: events the publisher got
// stored in an embedded JetStream stream, and the CPU this process spent on it.
type fanoutResult struct {
	events  uint64
	elapsed time.Duration
	cpu     time.Duration // user + system time of this process over elapsed
}

func (r fanoutResult) perSecond() float64 {
	if s := r.elapsed.Seconds(); s > 0 {
		return float64(r.events) / s
	}
	return 0
}

// cpuPerEvent is the process's CPU time per event published.
func (r fanoutResult) cpuPerEvent() time.Duration {
	if r.events == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.events)
}

func benchFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFanoutFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := runFanoutBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	writeFanoutReport(stdout, res)
	return nil
}

func parseFanoutFlags(args []string, stderr io.Writer) (fanoutConfig, error) {
	var cfg fanoutConfig
	fs := flag.NewFlagSet("chronicle bench fanout", flag.ContinueOnError)
	fs.StringVar(&cfg.dir, "dir", "", "directory to put the JetStream store in (a temp dir inside it, removed afterwards; default /var/tmp, else the system's temp dir)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to publish")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench fanout [flags]\n\n"+
			"Measures the ceiling of a node's event fan-out on this machine: the node's own\n"+
			"publisher sends a log held in memory (positions in order, each payload the JSON of\n"+
			"a real transfer event) to an embedded NATS server's JetStream stream, exactly as a\n"+
			"node publishes, with nothing else running, for --duration. It reports events/s and\n"+
			"the CPU time per event of the publisher and the server together: a node publishes\n"+
			"two events per transfer, so 2 x that CPU is the least a transfer can cost.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if cfg.duration <= 0 {
		return cfg, fmt.Errorf("bench fanout: --duration must be positive, got %s", cfg.duration)
	}
	return cfg, nil
}

// runFanoutBench publishes from a synthetic log for cfg.duration (or until ctx ends) into
// a fresh embedded stream, and checks that the stream ends where the publisher says.
func runFanoutBench(ctx context.Context, cfg fanoutConfig, stderr io.Writer) (fanoutResult, error) {
	dir, err := os.MkdirTemp(benchTempParent(cfg.dir), "chronicle-bench-fanout-")
	if err != nil {
		return fanoutResult{}, fmt.Errorf("bench fanout: %w", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(stderr, "bench fanout: publishing to an embedded JetStream stream in %s for %s\n", dir, cfg.duration)
	bus, err := eventbus.Open(ctx, eventbus.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fanoutResult{}, fmt.Errorf("bench fanout: %w", err)
	}
	defer bus.Close()
	src, err := newSyntheticLog()
	if err != nil {
		return fanoutResult{}, fmt.Errorf("bench fanout: %w", err)
	}
	// The collector paced as a node's is (serve --heap-budget's default).
	stopTuner, err := tuneGC(defaultHeapBudget, slog.New(slog.DiscardHandler))
	if err != nil {
		return fanoutResult{}, fmt.Errorf("bench fanout: %w", err)
	}
	defer stopTuner()

	pubCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	cpu0, start := processCPU(), time.Now()
	go func() { done <- bus.RunPublisher(pubCtx, src, nil) }()
	var pubErr error
	select {
	case <-time.After(cfg.duration):
	case <-ctx.Done():
	case pubErr = <-done: // the publisher never stops by itself: that is a failure
		if pubErr == nil {
			pubErr = errors.New("stopped before the run ended")
		}
		done <- pubErr
	}
	res := fanoutResult{events: bus.Published(), elapsed: time.Since(start), cpu: processCPU() - cpu0}
	stop()
	if err := <-done; err != nil {
		return res, fmt.Errorf("bench fanout: publisher: %w", err)
	}
	// A publisher that stopped on a problem (its resume check refusing the stream, say)
	// would leave a low figure that looks like a ceiling.
	if p := bus.Problem(); p != "" {
		return res, fmt.Errorf("bench fanout: the publisher stopped publishing: %s", p)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.events == 0 {
		return res, errors.New("bench fanout: nothing was published")
	}
	// What the publisher counts as published must be in the stream, once each, in order.
	js, err := jetstream.New(bus.Conn())
	if err != nil {
		return res, fmt.Errorf("bench fanout: %w", err)
	}
	s, err := js.Stream(ctx, bus.Stream())
	if err != nil {
		return res, fmt.Errorf("bench fanout: stream: %w", err)
	}
	if st := s.CachedInfo().State; st.FirstSeq != 1 || st.Msgs != st.LastSeq || st.LastSeq < res.events {
		return res, fmt.Errorf("bench fanout: the stream holds %d messages %d..%d; the publisher counted %d stored",
			st.Msgs, st.FirstSeq, st.LastSeq, res.events)
	}
	return res, nil
}

func writeFanoutReport(w io.Writer, r fanoutResult) {
	fmt.Fprintf(w, "events published: %d in %s\n", r.events, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput:       %.0f events/s\n", r.perSecond())
	fmt.Fprintf(w, "CPU per event:    %.2f µs (publisher and server; %.2f cores busy)\n",
		float64(r.cpuPerEvent().Nanoseconds())/1e3, r.cpu.Seconds()/r.elapsed.Seconds())
}

// syntheticRing is how many distinct payloads the synthetic log cycles through.
const syntheticRing = 4096

// syntheticLog is an endless log held in memory: position p is the event at (p-1)%ring
// of a ring of real transfer events, renumbered p, its JSON too (the publisher checks the
// payload's position when it resumes). The payloads are the size and shape of a node's.
type syntheticLog struct {
	ring []chronicle.EncodedEvent
	rest [][]byte // each ring event's JSON after its position
}

func newSyntheticLog() (*syntheticLog, error) {
	events := make([]chronicle.Event, syntheticRing)
	prev := chronicle.GenesisHash
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range events {
		typ, acct := chronicle.EventMoneyWithdrawn, "bench-payer"
		if i%2 == 1 {
			typ, acct = chronicle.EventMoneyDeposited, "bench-payee"
		}
		e := chronicle.Event{Position: uint64(i + 1), EventID: chronicle.NewID(), AggregateID: acct, AggregateType: "Account",
			EventType: typ, EventVersion: uint64(i/2 + 1), CreatedAt: t0.Add(time.Duration(i) * time.Microsecond), PrevHash: prev,
			Data: chronicle.EventData{AccountID: acct, Currency: "USD", Amount: 100, BalanceAfter: 1_000_000_00 + int64(i), TransferID: chronicle.NewID()}}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		events[i] = e
	}
	l := &syntheticLog{ring: chronicle.EncodeEvents(events)}
	for i, e := range l.ring {
		prefix := strconv.AppendUint([]byte(positionField), e.Event.Position, 10)
		rest, ok := bytes.CutPrefix(e.JSON, prefix)
		if !ok {
			return nil, fmt.Errorf("event %d's JSON does not start with its position: %.40s", i, e.JSON)
		}
		l.rest = append(l.rest, rest)
	}
	return l, nil
}

// positionField is how an event's JSON starts (chronicle.Event.AppendJSON).
const positionField = `{"position":`

func (l *syntheticLog) EncodedEvents(_ context.Context, q chronicle.EventQuery) ([]chronicle.EncodedEvent, error) {
	if q.Descending || q.AggregateID != "" || q.EventType != "" {
		return nil, errors.New("synthetic log: only ascending reads of the whole log")
	}
	n := q.Limit
	if n <= 0 || n > chronicle.MaxEventsPage {
		n = chronicle.MaxEventsPage
	}
	out := make([]chronicle.EncodedEvent, n)
	buf := make([]byte, 0, n*(len(l.rest[0])+24)) // the page's payloads, as a node's encoded page
	for i := range out {
		pos := q.After + uint64(i) + 1
		k := (pos - 1) % syntheticRing
		out[i] = l.ring[k]
		out[i].Event.Position = pos
		start := len(buf)
		buf = append(strconv.AppendUint(append(buf, positionField...), pos, 10), l.rest[k]...)
		out[i].JSON = buf[start:len(buf):len(buf)]
	}
	return out, nil
}

func (l *syntheticLog) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	enc, err := l.EncodedEvents(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]chronicle.Event, len(enc))
	for i := range enc {
		out[i] = enc[i].Event
	}
	return out, nil
}
