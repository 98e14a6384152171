package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
)

// balanceAtConfig is what `chronicle bench balance-at` was asked to do.
type balanceAtConfig struct {
	url         string
	tls         *clientTLS
	token       *tokenFlags
	events      int // deposits loaded into the account
	batch       int // deposits per batch request
	concurrency int // batch requests in flight while loading
	requests    int // timed balance-at requests
	// settle bounds the wait for the node to settle before the second timing (0: no
	// second timing).
	settle      time.Duration
	account     string
	amount      string // of each deposit: 1.00 USD
	amountMinor int64
	cur         chronicle.Currency
}

// balanceAtResult is the load's rate and the balance-at requests' latencies.
type balanceAtResult struct {
	events      int
	loadElapsed time.Duration
	first, last time.Time       // commit times of the first and last deposit
	latencies   []time.Duration // balance-at requests straight after the load, sorted
	// settle is the wait for the node to settle; settledLatencies the same requests timed
	// after it (nil when not asked for).
	settle           settleResult
	settledLatencies []time.Duration
	elapsed          time.Duration // of the timed requests
	balance          string        // the account's balance after the load (checked)
}

func (r balanceAtResult) loadRate() float64 {
	if s := r.loadElapsed.Seconds(); s > 0 {
		return float64(r.events) / s
	}
	return 0
}

func benchBalanceAt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBalanceAtFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := runBalanceAtBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	writeBalanceAtReport(stdout, cfg, res)
	return nil
}

func parseBalanceAtFlags(args []string, stderr io.Writer) (balanceAtConfig, error) {
	var cfg balanceAtConfig
	fs := flag.NewFlagSet("chronicle bench balance-at", flag.ContinueOnError)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:4000", "base URL of the node")
	cfg.token = addTokenFlags(fs)
	cfg.tls = addClientTLSFlags(fs, false)
	fs.IntVar(&cfg.events, "events", 10000, "deposits to load into the account before timing")
	fs.IntVar(&cfg.batch, "batch", 0, "deposits per POST /commands/batch while loading (default: --events/100, between 1 and 4000, so the history has about a hundred commit instants)")
	fs.IntVar(&cfg.concurrency, "concurrency", 2, "batch requests in flight while loading")
	fs.IntVar(&cfg.requests, "requests", 1000, "balance-at requests to time, one at a time")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Minute, "after the first timing, wait up to this long for the node to settle (its publisher and projector caught up, no compaction running) and time the requests again (0: time once)")
	fs.StringVar(&cfg.account, "account", "balat-"+strconv.FormatInt(time.Now().UnixNano(), 36), "id of the account to create and load (must not exist)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench balance-at [flags]\n\n"+
			"Creates one account, loads --events deposits of 1.00 USD into it through batches, then\n"+
			"times --requests sequential GET /accounts/{id}/balance-at requests at random instants\n"+
			"between the first and the last deposit: p50, p99, straight after the load and again once\n"+
			"the node has settled (--settle). Also reports the load's rate.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func (cfg *balanceAtConfig) validate() error {
	if cfg.batch == 0 {
		cfg.batch = balanceAtBatch(cfg.events)
	}
	switch {
	case cfg.events < 1:
		return fmt.Errorf("bench balance-at: --events must be at least 1, got %d", cfg.events)
	case cfg.batch < 1 || cfg.batch > chronicle.MaxBatchCommands:
		return fmt.Errorf("bench balance-at: --batch must be between 1 and %d, got %d", chronicle.MaxBatchCommands, cfg.batch)
	case cfg.concurrency < 1:
		return fmt.Errorf("bench balance-at: --concurrency must be at least 1, got %d", cfg.concurrency)
	case cfg.requests < 1:
		return fmt.Errorf("bench balance-at: --requests must be at least 1, got %d", cfg.requests)
	case cfg.settle < 0:
		return fmt.Errorf("bench balance-at: --settle must not be negative, got %s", cfg.settle)
	}
	cfg.url = strings.TrimRight(cfg.url, "/")
	if !strings.HasPrefix(cfg.url, "http://") && !strings.HasPrefix(cfg.url, "https://") {
		return fmt.Errorf("bench balance-at: --url %q: want an http:// or https:// URL", cfg.url)
	}
	if err := chronicle.ValidateAccountID("account_id", cfg.account); err != nil {
		return fmt.Errorf("bench balance-at: --account %q: %w", cfg.account, err)
	}
	cfg.cur, _ = chronicle.LookupCurrency("USD")
	cfg.amount, cfg.amountMinor = "1.00", 100
	return nil
}

func runBalanceAtBench(ctx context.Context, cfg balanceAtConfig, stderr io.Writer) (balanceAtResult, error) {
	res := balanceAtResult{events: cfg.events}
	c, closeIdle, err := newBenchClient(cfg.url, cfg.tls, cfg.token, cfg.concurrency)
	if err != nil {
		return res, err
	}
	defer closeIdle()
	if err := waitNodeReady(ctx, c, cfg.url); err != nil {
		return res, err
	}
	if _, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: cfg.account, OwnerName: "chronicle bench",
		Currency: cfg.cur.Code, Description: "chronicle bench balance-at"}, ""); err != nil {
		return res, fmt.Errorf("bench balance-at: create account %s: %w", cfg.account, err)
	}

	fmt.Fprintf(stderr, "bench balance-at: loading %d deposits into %s, %d per batch, %d batches in flight\n",
		cfg.events, cfg.account, cfg.batch, cfg.concurrency)
	if err := loadDeposits(ctx, c, cfg, &res, stderr); err != nil {
		return res, err
	}
	fmt.Fprintf(stderr, "bench balance-at: loaded in %s (%.0f events/s); timing %d balance-at requests\n",
		res.loadElapsed.Round(time.Millisecond), res.loadRate(), cfg.requests)

	// The whole amount must be there, read at an instant after the last deposit.
	want := chronicle.FormatMinor(int64(cfg.events)*cfg.amountMinor, cfg.cur)
	b, err := c.BalanceAt(ctx, cfg.account, res.last.Add(time.Millisecond))
	if err != nil {
		return res, fmt.Errorf("bench balance-at: %w", err)
	}
	if b.Balance != want {
		return res, fmt.Errorf("bench balance-at: balance after %d deposits of %s is %s, want %s", cfg.events, cfg.amount, b.Balance, want)
	}
	res.balance = b.Balance

	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	if res.latencies, res.elapsed, err = timeBalanceAt(ctx, c, cfg, res, r); err != nil {
		return res, err
	}
	if cfg.settle <= 0 {
		return res, nil
	}
	// Again once the node has caught up with what the load left it (the publisher and
	// the compactions behind it): the same reads, without that work on the same cores.
	fmt.Fprintf(stderr, "bench balance-at: waiting up to %s for the node to settle\n", cfg.settle)
	if res.settle, err = waitSettled(ctx, c, cfg.settle, 250*time.Millisecond); err != nil {
		return res, fmt.Errorf("bench balance-at: %w", err)
	}
	if res.settledLatencies, _, err = timeBalanceAt(ctx, c, cfg, res, r); err != nil {
		return res, err
	}
	return res, nil
}

// timeBalanceAt times cfg.requests sequential balance-at requests at random instants
// between the first and the last deposit; the latencies come back sorted.
func timeBalanceAt(ctx context.Context, c *client.Client, cfg balanceAtConfig, res balanceAtResult, r *rand.Rand) ([]time.Duration, time.Duration, error) {
	span := res.last.Sub(res.first)
	lat := make([]time.Duration, 0, cfg.requests)
	start := time.Now()
	for range cfg.requests {
		at := res.first
		if span > 0 {
			at = at.Add(time.Duration(r.Int64N(int64(span) + 1)))
		}
		t0 := time.Now()
		if _, err := c.BalanceAt(ctx, cfg.account, at); err != nil {
			return nil, 0, fmt.Errorf("bench balance-at: at %s: %w", at.Format(time.RFC3339Nano), err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	return lat, elapsed, nil
}

// loadDeposits sends cfg.events deposits in batches of cfg.batch, cfg.concurrency at a
// time, and records the first and last commit times.
func loadDeposits(ctx context.Context, c *client.Client, cfg balanceAtConfig, res *balanceAtResult, stderr io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var mu sync.Mutex
	done := 0
	nextReport := time.Now().Add(time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Go(func() {
			for n := range jobs {
				items := make([]api.BatchItem, n)
				for i := range items {
					items[i] = api.BatchItem{Type: "deposit", AccountID: cfg.account, Amount: cfg.amount, Currency: cfg.cur.Code}
				}
				out, err := postBatch(ctx, c, items)
				if err != nil {
					cancel(fmt.Errorf("bench balance-at: deposits: %w", err))
					continue
				}
				mu.Lock()
				for _, r := range out.Results {
					if r.Code != "" {
						cancel(fmt.Errorf("bench balance-at: deposit refused: %s: %s", r.Code, r.Error))
						break
					}
					if res.first.IsZero() || r.CommittedAt.Before(res.first) {
						res.first = r.CommittedAt
					}
					if r.CommittedAt.After(res.last) {
						res.last = r.CommittedAt
					}
				}
				done += n
				if now := time.Now(); now.After(nextReport) {
					fmt.Fprintf(stderr, "bench balance-at: %5.1fs  %d of %d deposits  %.0f/s\n",
						now.Sub(start).Seconds(), done, cfg.events, float64(done)/now.Sub(start).Seconds())
					nextReport = now.Add(time.Second)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for left := cfg.events; left > 0; {
		n := min(left, cfg.batch)
		select {
		case jobs <- n:
			left -= n
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	res.loadElapsed = time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

func writeBalanceAtReport(w io.Writer, cfg balanceAtConfig, res balanceAtResult) {
	fmt.Fprintf(w, "node:          %s\n", cfg.url)
	fmt.Fprintf(w, "account:       %s (%d deposits of %s %s, balance %s)\n", cfg.account, res.events, cfg.amount, cfg.cur.Code, res.balance)
	fmt.Fprintf(w, "load:          %s, %.0f events/s (%d per batch, %d in flight)\n", res.loadElapsed.Round(time.Millisecond), res.loadRate(), cfg.batch, cfg.concurrency)
	fmt.Fprintf(w, "requests:      %d sequential balance-at at random instants in %s\n", len(res.latencies), res.last.Sub(res.first).Round(time.Millisecond))
	writeLatencies(w, "straight after the load", res.latencies)
	if res.settledLatencies != nil {
		writeLatencies(w, "once settled ("+res.settle.describe()+")", res.settledLatencies)
	}
}

func writeLatencies(w io.Writer, when string, lat []time.Duration) {
	fmt.Fprintf(w, "%s:\n", when)
	for _, p := range []int{50, 90, 99} {
		fmt.Fprintf(w, "  latency p%d:  %s\n", p, formatLatency(percentile(lat, p)))
	}
	var maxLat time.Duration
	if len(lat) > 0 {
		maxLat = lat[len(lat)-1]
	}
	fmt.Fprintf(w, "  latency max: %s\n", formatLatency(maxLat))
}
