package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/eventbus"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func TestBenchSubcommandFlags(t *testing.T) {
	d, err := parseDiskFlags(nil, io.Discard)
	if err != nil || d.concurrency != 64 || d.size != 200 || d.duration != 10*time.Second {
		t.Errorf("disk defaults %+v, %v", d, err)
	}
	h, err := parseHTTPFlags([]string{"--concurrency", "8"}, io.Discard)
	if err != nil || h.load.concurrency != 8 || h.load.amount != "1.00" || h.load.cur.Code != "USD" || h.inProcess {
		t.Errorf("http %+v, %v", h, err)
	}
	b, err := parseBatchFlags([]string{"--size", "250", "--url", "http://127.0.0.1:1/"}, io.Discard)
	if err != nil || b.batchSize != 250 || b.concurrency != 4 || b.url != "http://127.0.0.1:1" || !strings.HasPrefix(b.prefix, "batch-") {
		t.Errorf("batch %+v, %v", b, err)
	}
	ba, err := parseBalanceAtFlags([]string{"--events", "1000000"}, io.Discard)
	if err != nil || ba.events != 1000000 || ba.batch != 4000 || ba.requests != 1000 || ba.amountMinor != 100 || ba.settle != 3*time.Minute {
		t.Errorf("balance-at %+v, %v", ba, err)
	}
	if ba, _ := parseBalanceAtFlags([]string{"--events", "10000"}, io.Discard); ba.batch != 100 {
		t.Errorf("balance-at batch for 10000 events = %d, want 100", ba.batch)
	}
	s, err := parseSuiteFlags([]string{"--concurrency", "1, 16,64", "--balance-at-events", "10_000,1000000"}, io.Discard)
	if err != nil || !equalInts(s.concurrencies, []int{1, 16, 64}) || !equalInts(s.balanceAt, []int{10000, 1000000}) || !s.cluster || s.settle != 3*time.Minute {
		t.Errorf("suite %+v, %v", s, err)
	}
	tr, err := parseBenchFlags([]string{"--lag-interval", "50ms"}, io.Discard)
	if err != nil || tr.lagInterval != 50*time.Millisecond {
		t.Errorf("transfers %+v, %v", tr, err)
	}

	for name, parse := range map[string]func([]string) error{
		"disk":       func(a []string) error { _, err := parseDiskFlags(a, io.Discard); return err },
		"http":       func(a []string) error { _, err := parseHTTPFlags(a, io.Discard); return err },
		"fanout":     func(a []string) error { _, err := parseFanoutFlags(a, io.Discard); return err },
		"batch":      func(a []string) error { _, err := parseBatchFlags(a, io.Discard); return err },
		"balance-at": func(a []string) error { _, err := parseBalanceAtFlags(a, io.Discard); return err },
		"suite":      func(a []string) error { _, err := parseSuiteFlags(a, io.Discard); return err },
		"transfers":  func(a []string) error { _, err := parseBenchFlags(a, io.Discard); return err },
	} {
		bad := map[string][][]string{
			"disk":       {{"--concurrency", "0"}, {"--duration", "0s"}, {"--size", "0"}, {"extra"}},
			"fanout":     {{"--duration", "0s"}, {"extra"}},
			"http":       {{"--concurrency", "0"}, {"--accounts", "1"}, {"--serve", ":1", "--url", "http://x"}, {"--in-process", "--url", "http://x"}, {"--url", "ftp://x"}},
			"batch":      {{"--size", "0"}, {"--size", "8191"}, {"--concurrency", "0"}, {"--amount", "0"}},
			"balance-at": {{"--events", "0"}, {"--batch", "9000"}, {"--requests", "0"}, {"--account", "has space"}, {"--url", "x"}, {"--settle", "-1s"}},
			"suite":      {{"--concurrency", "1,x"}, {"--concurrency", "0"}, {"--balance-at-events", "-5"}, {"--duration", "0s"}, {"--batch-size", "0"}},
			"transfers":  {{"--lag-interval", "-1s"}},
		}[name]
		for _, args := range bad {
			if err := parse(args); err == nil {
				t.Errorf("%s %v: no error", name, args)
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBenchHelpListsSubcommands(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"bench", "help"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, sub := range []string{"[transfers]", "batch", "balance-at", "disk", "http", "fanout", "suite"} {
		if !strings.Contains(out.String(), "chronicle bench "+sub) {
			t.Errorf("help lacks %s:\n%s", sub, out.String())
		}
	}
}

func TestBenchTableAndRatios(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "0"}, {2.5, "2.5"}, {999.4, "999"}, {1000, "1,000"}, {15139.2, "15,139"}, {1234567, "1,234,567"}, {-4200, "-4,200"}, {math.NaN(), "—"}} {
		if got := formatCount(c.v); got != c.want {
			t.Errorf("formatCount(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{0.16, "0.16"}, {0.0421, "0.042"}, {1.049, "1.05"}, {2, "2.00"}} {
		if got := formatRatio(c.v); got != c.want {
			t.Errorf("formatRatio(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{412 * time.Microsecond, "0.412 ms"}, {13100 * time.Microsecond, "13.1 ms"}, {250 * time.Millisecond, "250 ms"}} {
		if got := formatMillis(c.d); got != c.want {
			t.Errorf("formatMillis(%s) = %q, want %q", c.d, got, c.want)
		}
	}

	rows := []benchRow{
		{measure: "HTTP ceiling, c=64", value: 15139, unit: "req/s", p50: 2 * time.Millisecond, p99: 15 * time.Millisecond},
		{measure: "single node, c=64", value: 2454, unit: "transfers/s", p99: 76 * time.Millisecond, ceilingName: "HTTP c=64", ceiling: 15139},
		{measure: "batched", value: 5300, unit: "transfers/s", ceilingName: "disk", ceiling: 42825, note: "1000 per request"},
		{measure: "balance-at", value: math.NaN(), p50: 410 * time.Microsecond, p99: 13 * time.Millisecond},
		{measure: "no ceiling measured", value: 10, unit: "x/s", ceilingName: "disk", ceiling: 0},
	}
	if r, ok := rows[1].ratio(); !ok || math.Abs(r-2454.0/15139) > 1e-12 {
		t.Errorf("ratio %v %v", r, ok)
	}
	for _, i := range []int{0, 3, 4} {
		if _, ok := rows[i].ratio(); ok {
			t.Errorf("row %d has a ratio", i)
		}
	}
	var buf bytes.Buffer
	writeBenchTable(&buf, rows)
	out := buf.String()
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2+len(rows) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 2+len(rows), out)
	}
	if !strings.HasPrefix(lines[0], "| measure") || !regexp.MustCompile(`^\|( -+ \|)+$`).MatchString(lines[1]) {
		t.Errorf("header:\n%s\n%s", lines[0], lines[1])
	}
	for _, want := range []string{
		"| single node, c=64 ", "| 2,454 transfers/s ", "| HTTP c=64 (15,139) ", "| 0.16 ",
		"| disk (42,825) ", "| 0.12 ", "| 1000 per request ", "| 0.410 ms ", "| 13.0 ms ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	width := len([]rune(strings.TrimRight(lines[0], " ")))
	for _, l := range lines {
		if n := len([]rune(l)); n != width {
			t.Errorf("line of %d runes, header %d: %q", n, width, l)
		}
	}
}

func TestLagOf(t *testing.T) {
	var rv readyView
	if _, p, q := lagOf(rv); p || q {
		t.Errorf("no raft status: projector %v publisher %v", p, q)
	}
	rv.Node.Raft = &struct {
		Position uint64 `json:"position"`
	}{Position: 100}
	rv.Node.Projector = &struct {
		Position   uint64  `json:"position"`
		LagSeconds float64 `json:"lag_seconds"`
	}{Position: 90, LagSeconds: 0.5}
	rv.Node.NATS = &struct {
		Published uint64 `json:"published"`
	}{Published: 101} // read after the head: ahead of it, no lag
	s, p, q := lagOf(rv)
	if !p || !q || s.projector != 10 || s.publisher != 0 || s.projectorSeconds != 0.5 {
		t.Errorf("sample %+v projector %v publisher %v", s, p, q)
	}
	st := summariseLag([]lagSample{{projector: 10}, {projector: 0}, {projector: 20, publisher: 4}, {projector: 2}})
	if st.samples != 4 || st.projectorMean != 8 || st.projectorMax != 20 || st.projectorP99 != 20 || st.publisherMax != 4 {
		t.Errorf("summary %+v", st)
	}
}

func TestCeilingHandler(t *testing.T) {
	srv := httptest.NewServer(ceilingHandler())
	defer srv.Close()
	ctx := context.Background()
	c := client.New(srv.URL, nil)
	res, err := c.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1.00", Currency: "USD"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusCreated || !res.Success || res.Position == 0 || len(res.Events) != 2 ||
		res.Events[0].AggregateID != "a" || res.Events[1].Type != chronicle.EventMoneyDeposited {
		t.Errorf("result %+v", res)
	}
	// The ledger's body, strictly: an unknown field is refused as the ledger refuses it.
	if _, err := c.Do(ctx, http.MethodPost, "/commands/transfer", []byte(`{"from_account_id":"a","bogus":1}`), nil, nil); client.CodeOf(err) != "http_400" {
		t.Errorf("unknown field: %v, want 400", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
}

func TestBenchHTTPInProcess(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"bench", "http", "--in-process", "--concurrency", "2", "--duration", "300ms", "--accounts", "10"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if reportInt(t, out.String(), "requests ok:") == 0 || reportInt(t, out.String(), "errors:") != 0 {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestBenchDiskTiny(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), []string{"bench", "disk", "--dir", dir, "--concurrency", "4", "--duration", "200ms"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	rep := out.String()
	recs := reportInt(t, rep, "records:")
	if recs == 0 || !strings.Contains(rep, "reopened:") || !regexp.MustCompile(`(?m)^reopened:\s+(\d+) of (\d+)`).MatchString(rep) {
		t.Errorf("report:\n%s", rep)
	}
	if m := regexp.MustCompile(`(?m)^reopened:\s+(\d+) of (\d+)`).FindStringSubmatch(rep); m == nil || m[1] != m[2] {
		t.Errorf("reopen count: %v", m)
	}
}

// TestBenchFanoutTiny: the fan-out bench publishes through a real embedded JetStream and
// checks the stream holds what the publisher counted (runFanoutBench fails otherwise).
func TestBenchFanoutTiny(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), []string{"bench", "fanout", "--dir", dir, "--duration", "300ms"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	rep := out.String()
	if n := reportInt(t, rep, "events published:"); n == 0 || !strings.Contains(rep, "CPU per event:") {
		t.Errorf("report:\n%s", rep)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind in --dir: %v %v", ents, err)
	}
}

func TestBenchBatchAndBalanceAt(t *testing.T) {
	n := nodetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var out, errOut bytes.Buffer
	code := run(ctx, []string{"bench", "batch", "--url", n.URL(), "--concurrency", "2", "--duration", "1s", "--size", "50", "--accounts", "20"}, &out, &errOut)
	rep := out.String()
	if code != 0 {
		t.Fatalf("batch: exit %d\n%s\n%s", code, rep, errOut.String())
	}
	t.Logf("batch report:\n%s", rep)
	ok := reportInt(t, rep, "transfers ok:")
	reqs := reportInt(t, rep, "requests ok:")
	if ok == 0 || ok != 50*reqs || !strings.Contains(rep, "conservation: ok") || reportInt(t, rep, "errors:") != 0 {
		t.Errorf("batch: %d transfers in %d requests:\n%s", ok, reqs, rep)
	}
	events, err := n.Client.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var withdrawn int64
	for _, e := range events {
		if e.EventType == chronicle.EventMoneyWithdrawn && e.Data.TransferID != "" {
			withdrawn++
		}
	}
	if withdrawn != ok {
		t.Errorf("log has %d transfer withdrawals, the batch bench counts %d", withdrawn, ok)
	}

	out.Reset()
	errOut.Reset()
	code = run(ctx, []string{"bench", "balance-at", "--url", n.URL(), "--events", "300", "--batch", "40", "--requests", "20", "--account", "balat-test"}, &out, &errOut)
	rep = out.String()
	if code != 0 {
		t.Fatalf("balance-at: exit %d\n%s\n%s", code, rep, errOut.String())
	}
	t.Logf("balance-at report:\n%s", rep)
	for _, want := range []string{"balance 300.00", "requests:      20 sequential", "straight after the load:\n  latency p50:",
		"once settled (settled in ", "latency p99:"} {
		if !strings.Contains(rep, want) {
			t.Errorf("balance-at report lacks %q:\n%s", want, rep)
		}
	}
	a, err := n.Client.Account(ctx, "balat-test", 0)
	if err != nil || a.Balance != "300.00" {
		t.Errorf("account %+v, %v", a, err)
	}
	// A second run on the same account refuses: its history is not what it would load.
	if code := run(ctx, []string{"bench", "balance-at", "--url", n.URL(), "--events", "1", "--account", "balat-test"}, io.Discard, io.Discard); code == 0 {
		t.Error("balance-at on an existing account: exit 0")
	}
}

func TestGaugeValue(t *testing.T) {
	text := []byte("# HELP chronicle_pebble_compactions_in_progress x\n" +
		"chronicle_pebble_compactions_in_progress_total 9\n" +
		"chronicle_pebble_compactions_in_progress{db=\"x\"} 7\n" +
		"chronicle_pebble_compactions_in_progress 2\n")
	if v, ok := gaugeSum(text, "chronicle_pebble_compactions_in_progress"); !ok || v != 9 {
		t.Errorf("gaugeSum = %v, %v; want 9 (the labelled and the unlabelled sample, not the longer name's)", v, ok)
	}
	if _, ok := gaugeSum(text, "chronicle_head_position"); ok {
		t.Error("gaugeSum found a sample that is not there")
	}
}

// TestWaitSettledGivesUp: a node whose publisher never catches up. The stand-in is an
// httptest server answering /ready as such a node would: a real node that stays behind
// for as long as the test wants cannot be had.
func TestWaitSettledGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"node":{"raft":{"position":100},"nats":{"published":40}}}`)
	}))
	defer srv.Close()
	c := client.New(srv.URL, srv.Client())
	res, err := waitSettled(context.Background(), c, 100*time.Millisecond, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.settled || res.why != "publisher 60 events behind" || !strings.Contains(res.describe(), "not settled after") {
		t.Errorf("waitSettled = %+v (%s)", res, res.describe())
	}
}

func TestBenchTransfersSamplesLag(t *testing.T) {
	n := nodetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"bench", "transfers", "--url", n.URL(), "--concurrency", "2", "--duration", "500ms", "--accounts", "10", "--lag-interval", "50ms"}, &out, &errOut)
	rep := out.String()
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, rep, errOut.String())
	}
	if !regexp.MustCompile(`(?m)^lag samples:\s+\d+ of /ready$`).MatchString(rep) || !strings.Contains(rep, "projector lag: mean ") {
		t.Errorf("report has no lag lines:\n%s", rep)
	}
}

// TestSyntheticLogSurvivesResume: the fan-out bench's log renumbers its payloads, so a
// publisher that stops and resumes on the same stream (as after a failed publish) finds
// the stream's last message to be the log's event at that position and carries on.
func TestSyntheticLogSurvivesResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus, err := eventbus.Open(ctx, eventbus.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	src, err := newSyntheticLog()
	if err != nil {
		t.Fatal(err)
	}
	publishUntil := func(n uint64) {
		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- bus.RunPublisher(pctx, src, nil) }()
		for bus.Published() < n {
			if p := bus.Problem(); p != "" || ctx.Err() != nil {
				t.Fatalf("published %d of %d: %q %v", bus.Published(), n, p, ctx.Err())
			}
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	publishUntil(2 * syntheticRing) // past the ring once, so renumbered payloads are in the stream
	publishUntil(bus.Published() + 1000)
	evs, err := src.EncodedEvents(ctx, chronicle.EventQuery{After: syntheticRing + 6, Limit: 2})
	if err != nil || len(evs) != 2 || !bytes.HasPrefix(evs[1].JSON, []byte(`{"position":4104,`)) || evs[1].Event.Position != 4104 {
		t.Fatalf("synthetic events %+v, %v", evs, err)
	}
}
