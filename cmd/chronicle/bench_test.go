package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// reportInt extracts the integer after label in a bench report.
func reportInt(t *testing.T, report, label string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("report has no %q line:\n%s", label, report)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("%s %q: %v", label, m[1], err)
	}
	return n
}

func TestBench(t *testing.T) {
	n := nodetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out, errOut bytes.Buffer
	code := run(ctx, []string{"bench", "--url", n.URL(), "--concurrency", "4", "--duration", "1s", "--accounts", "20"}, &out, &errOut)
	report := out.String()
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, report, errOut.String())
	}
	t.Logf("report:\n%s", report)

	m := regexp.MustCompile(`(?m)^throughput:\s+([0-9.]+) transfers/s$`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("report has no throughput line:\n%s", report)
	}
	if tput, err := strconv.ParseFloat(m[1], 64); err != nil || tput <= 0 {
		t.Errorf("throughput %q, want a number > 0", m[1])
	}
	for _, want := range []string{"concurrency:   4\n", "latency p50:", "latency p90:", "latency p99:", "latency max:", "conservation: ok"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	ok := reportInt(t, report, "transfers ok:")
	if ok == 0 {
		t.Fatalf("no transfer succeeded:\n%s", report)
	}
	if e := reportInt(t, report, "errors:"); e != 0 {
		t.Errorf("errors: %d, want 0", e)
	}
	if r := reportInt(t, report, "rejected:"); r != 0 {
		t.Errorf("rejected: %d, want 0", r)
	}

	// Cross-check against the log: every transfer the bench counted, and no other,
	// withdrew money from one bench account.
	events, err := n.Client.AllEvents(ctx)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	var withdrawn, created int64
	for _, e := range events {
		switch e.EventType {
		case chronicle.EventAccountCreated:
			created++
		case chronicle.EventMoneyWithdrawn:
			if e.Data.TransferID != "" {
				withdrawn++
			}
		}
	}
	if withdrawn != ok {
		t.Errorf("log has %d MoneyWithdrawn events of transfers, the report counts %d transfers ok", withdrawn, ok)
	}
	if created < 20 {
		t.Errorf("log has %d AccountCreated events, want at least 20", created)
	}
}

func TestBenchNodeUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close() // nothing listens there now

	var out, errOut bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"bench", "--url", url, "--duration", "1s"}, &out, &errOut)
	if code == 0 {
		t.Fatalf("exit code 0 against %s, want non-zero\nstdout:\n%s", url, out.String())
	}
	msg := errOut.String()
	if !strings.Contains(msg, "not reachable") || !strings.Contains(msg, url) {
		t.Errorf("stderr does not say the node at %s is not reachable:\n%s", url, msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing took %s", d)
	}
}

func TestBenchFlags(t *testing.T) {
	t.Setenv("CHRONICLE_CONCURRENCY", "3")
	t.Setenv("CHRONICLE_URL", "http://example.invalid:1/")
	cfg, err := parseBenchFlags([]string{"--accounts", "100", "--currency", "jpy", "--initial-balance", "500", "--amount", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.concurrency != 3 || cfg.url != "http://example.invalid:1" || cfg.cur.Code != "JPY" || cfg.initialMin != 500 {
		t.Errorf("config %+v", cfg)
	}
	if !strings.HasPrefix(cfg.prefix, "bench-") {
		t.Errorf("default prefix %q", cfg.prefix)
	}
	if got := benchAccountID("p", 7, 100); got != "p-07" {
		t.Errorf("benchAccountID = %q, want p-07", got)
	}

	for _, args := range [][]string{
		{"--accounts", "1"},
		{"--concurrency", "0"},
		{"--duration", "0s"},
		{"--amount", "0"},
		{"--amount", "1.001"},
		{"--initial-balance", "-1"},
		{"--currency", "XYZ"},
		{"--prefix", "has space"},
		{"--prefix", strings.Repeat("p", 64)},
		{"--accounts", "1000", "--initial-balance", "92233720368547758.07"},
	} {
		if _, err := parseBenchFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for p, want := range map[int]time.Duration{50: 50, 90: 90, 99: 99, 100: 100} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%d = %d, want %d", p, got, want)
		}
	}
	if got := percentile(s[:1], 99); got != 1 {
		t.Errorf("p99 of one = %d", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %d", got)
	}
}

// The conservation check of a large bench pages through GET /accounts: it sums exactly
// the bench's ids, skips other accounts between them (and across page boundaries), and
// refuses when one of the ids is missing.
func TestSumBalancesListed(t *testing.T) {
	n := nodetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cur, err := chronicle.LookupCurrency("USD")
	if err != nil {
		t.Fatal(err)
	}
	cfg := benchConfig{cur: cur}
	// 1,203 bench accounts (more than one page) with others sorting between them.
	var ids []string
	var want int64
	var cmds []api.BatchItem
	for i := range 1203 {
		id := benchAccountID("lst", i, 1203)
		ids = append(ids, id)
		want += int64(i) * 100
		cmds = append(cmds, api.BatchItem{Type: "create-account", AccountID: id, OwnerName: "b", Currency: "USD",
			InitialBalance: chronicle.FormatMinor(int64(i)*100, cur)})
		if i%300 == 0 {
			cmds = append(cmds, api.BatchItem{Type: "create-account", AccountID: id + "-other", OwnerName: "o", Currency: "USD",
				InitialBalance: "7.00"})
		}
	}
	res, err := postBatch(ctx, n.Client, cmds)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.Code != "" {
			t.Fatalf("create: %s %s", r.Code, r.Error)
		}
	}
	pos := res.Position
	got, err := sumBalancesListed(ctx, n.Client, cfg, ids, pos)
	if err != nil || got != want {
		t.Fatalf("sum = %d, %v; want %d", got, err, want)
	}
	missing := append(append([]string{}, ids[:700]...), "lst-0700x")
	missing = append(missing, ids[700:]...)
	if _, err := sumBalancesListed(ctx, n.Client, cfg, missing, pos); err == nil || !strings.Contains(err.Error(), "lst-0700x") {
		t.Errorf("a missing id: %v, want an error naming it", err)
	}
	if _, err := sumBalancesListed(ctx, n.Client, cfg, append(ids, "lst-9999"), pos); err == nil || !strings.Contains(err.Error(), "lst-9999") {
		t.Errorf("an id past the last account: %v, want an error naming it", err)
	}
}
