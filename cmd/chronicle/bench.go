package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
)

// benchConfig is what `chronicle bench` was asked to do, validated.
type benchConfig struct {
	url         string
	concurrency int
	duration    time.Duration
	accounts    int
	cur         chronicle.Currency
	initial     string // decimal text as given, sent to the API
	initialMin  int64  // initial in minor units
	amount      string
	prefix      string
	tls         *clientTLS
	token       *tokenFlags
	// lagInterval > 0 samples /ready that often during the load (transfers bench).
	lagInterval time.Duration
	// batchSize is the transfers per request of the batch bench.
	batchSize int
}

// benchFinalTimeout bounds the conservation check, which also runs after an interrupt.
const benchFinalTimeout = 30 * time.Second

// benchUsage lists the bench's subcommands; without one, `chronicle bench` is the
// transfers bench (as it always was).
const benchUsage = `Usage: chronicle bench [transfers] [flags]   one transfer per request against a node (the default)
       chronicle bench batch [flags]         transfers through POST /commands/batch, N per request
       chronicle bench balance-at [flags]    N events into one account, then timed balance-at reads
       chronicle bench disk [flags]          Pebble's durable-write ceiling on this disk
       chronicle bench http [flags]          the bare HTTP ceiling: a handler with no storage
       chronicle bench fanout [flags]        the event fan-out's ceiling: publisher and embedded JetStream alone
       chronicle bench suite [flags]         all of the above against nodes it starts; one table (make bench)

Run 'chronicle bench <subcommand> -h' for its flags.
`

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "transfers":
			return benchTransfers(ctx, args[1:], stdout, stderr)
		case "batch":
			return benchBatch(ctx, args[1:], stdout, stderr)
		case "balance-at":
			return benchBalanceAt(ctx, args[1:], stdout, stderr)
		case "disk":
			return benchDisk(ctx, args[1:], stdout, stderr)
		case "http":
			return benchHTTP(ctx, args[1:], stdout, stderr)
		case "fanout":
			return benchFanout(ctx, args[1:], stdout, stderr)
		case "suite":
			return benchSuite(ctx, args[1:], stdout, stderr)
		case "help", "-h", "--help":
			fmt.Fprint(stdout, benchUsage)
			return nil
		}
	}
	return benchTransfers(ctx, args, stdout, stderr)
}

// benchTransfers is `chronicle bench [transfers]`.
func benchTransfers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	_, err = runTransferBench(ctx, cfg, stdout, stderr)
	return err
}

// newBenchClient is the HTTP client every bench that loads a node (or the HTTP ceiling)
// uses: one idle connection kept per worker, a 30 s timeout, the bearer token.
func newBenchClient(url string, tlsFlags *clientTLS, token *tokenFlags, concurrency int) (*client.Client, func(), error) {
	if tlsFlags == nil {
		tlsFlags = &clientTLS{}
	}
	tr, err := tlsFlags.transport(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	tr.MaxIdleConns = 0 // no global cap; the per-host one below is what matters
	tr.MaxIdleConnsPerHost = concurrency + 4
	var secret string
	if token != nil {
		if secret, err = token.secret(); err != nil {
			return nil, nil, err
		}
	}
	c := client.New(url, &http.Client{Transport: tr, Timeout: 30 * time.Second}).WithToken(secret)
	return c, tr.CloseIdleConnections, nil
}

// waitNodeReady fails unless the node answers /ready with 200.
func waitNodeReady(ctx context.Context, c *client.Client, url string) error {
	if err := c.Ready(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted: %w", ctx.Err())
		}
		if client.CodeOf(err) != "" {
			return fmt.Errorf("bench: node at %s is not ready: %w", url, err)
		}
		return fmt.Errorf("bench: node at %s is not reachable: %w", url, err)
	}
	return nil
}

// benchSetup is what every load bench does first: a client of the node, waiting until it
// is ready, and the accounts created (by create) with their ids. what names the bench in
// its messages ("bench", "bench batch"); plan says what runs next.
func benchSetup(ctx context.Context, cfg benchConfig, stderr io.Writer, what, plan string,
	create func(context.Context, *client.Client, benchConfig, []string) (int, error)) (c *client.Client, closeIdle func(), ids []string, err error) {
	c, closeIdle, err = newBenchClient(cfg.url, cfg.tls, cfg.token, cfg.concurrency)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := waitNodeReady(ctx, c, cfg.url); err != nil {
		closeIdle()
		return nil, nil, nil, err
	}
	ids = make([]string, cfg.accounts)
	for i := range ids {
		ids[i] = benchAccountID(cfg.prefix, i, cfg.accounts)
	}
	fmt.Fprintf(stderr, "%s: creating %d accounts %s..%s with %s %s each\n",
		what, cfg.accounts, ids[0], ids[len(ids)-1], cfg.initial, cfg.cur.Code)
	setupStart := time.Now()
	existed, err := create(ctx, c, cfg, ids)
	if err != nil {
		closeIdle()
		return nil, nil, nil, err
	}
	fmt.Fprintf(stderr, "%s: accounts ready in %s (%d already existed); %s\n",
		what, time.Since(setupStart).Round(time.Millisecond), existed, plan)
	return c, closeIdle, ids, nil
}

// runTransferBench creates the accounts, runs the load, writes the report to stdout and
// checks conservation; the result is returned for the suite's table.
func runTransferBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) (benchResult, error) {
	c, closeIdle, ids, err := benchSetup(ctx, cfg, stderr, "bench",
		fmt.Sprintf("running %d workers for %s", cfg.concurrency, cfg.duration), createBenchAccounts)
	if err != nil {
		return benchResult{}, err
	}
	defer closeIdle()

	res := runLoad(ctx, c, cfg, ids, stderr, benchWorker)
	writeBenchReport(stdout, cfg, res)
	if err := checkConservation(ctx, c, cfg, ids, res.maxPosition, stdout); err != nil {
		return res, err
	}
	if res.ok == 0 && (res.errors > 0 || res.rejectedTotal() > 0) {
		return res, fmt.Errorf("bench: no transfer succeeded (%d rejected, %d errors; e.g. %s)",
			res.rejectedTotal(), res.errors, res.firstFailure)
	}
	return res, nil
}

// checkConservation checks that the bench accounts still hold, together, what they were
// created with. It runs even after an interrupt (the report is incomplete without it), on
// its own bounded context because ctx may already be cancelled.
func checkConservation(ctx context.Context, c *client.Client, cfg benchConfig, ids []string, minPos uint64, stdout io.Writer) error {
	checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), benchFinalTimeout)
	defer cancel()
	total, err := sumBalances(checkCtx, c, cfg, ids, minPos)
	if err != nil {
		return fmt.Errorf("bench: conservation check: %w", err)
	}
	want := cfg.initialMin * int64(len(ids)) // overflow ruled out by parseBenchFlags
	if total != want {
		return fmt.Errorf("bench: conservation violated: the %d bench accounts hold %s %s, want %s %s (difference %s)",
			len(ids), chronicle.FormatMinor(total, cfg.cur), cfg.cur.Code,
			chronicle.FormatMinor(want, cfg.cur), cfg.cur.Code, chronicle.FormatMinor(total-want, cfg.cur))
	}
	fmt.Fprintf(stdout, "conservation: ok (%d accounts hold %s %s)\n", len(ids), chronicle.FormatMinor(total, cfg.cur), cfg.cur.Code)
	return nil
}

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	var cfg benchConfig
	fs := flag.NewFlagSet("chronicle bench", flag.ContinueOnError)
	currency := addLoadFlags(fs, &cfg, 16, "bench")
	fs.DurationVar(&cfg.lagInterval, "lag-interval", 0, "sample /ready this often during the load and report the projector's and publisher's lag behind the log (0: off)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench [transfers] [flags]\n\n"+
			"Creates --accounts accounts, then sends random transfers between them from\n"+
			"--concurrency workers for --duration, reports throughput and latency, and checks\n"+
			"that the accounts' balances still sum to what they started with.\n"+
			"Other benches: chronicle bench help.\n\n"+
			"Every flag can also be set as CHRONICLE_<FLAG> (e.g. CHRONICLE_URL); a flag wins.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if cfg.lagInterval < 0 {
		return cfg, fmt.Errorf("bench: --lag-interval must not be negative, got %s", cfg.lagInterval)
	}
	return cfg, cfg.validate(*currency)
}

// addLoadFlags defines the flags of a bench that loads a node with transfers between
// bench accounts (transfers, batch); validate checks them once parsed.
func addLoadFlags(fs *flag.FlagSet, cfg *benchConfig, concurrency int, prefix string) (currency *string) {
	currency = new(string)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:4000", "base URL of the node to load")
	cfg.token = addTokenFlags(fs)
	fs.IntVar(&cfg.concurrency, "concurrency", concurrency, "number of concurrent workers, each with one request in flight")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to send transfers")
	fs.IntVar(&cfg.accounts, "accounts", 1000, "number of accounts to transfer between")
	fs.StringVar(currency, "currency", "USD", "ISO 4217 currency of the bench accounts")
	fs.StringVar(&cfg.initial, "initial-balance", "1000000.00", "initial balance of each bench account")
	fs.StringVar(&cfg.amount, "amount", "1.00", "amount of each transfer")
	cfg.tls = addClientTLSFlags(fs, false)
	fs.StringVar(&cfg.prefix, "prefix", prefix+"-"+strconv.FormatInt(time.Now().Unix(), 10), "account id prefix (ids are <prefix>-<n>)")
	return currency
}

// validate checks the flags addLoadFlags defined and resolves the currency and amounts.
func (cfg *benchConfig) validate(currency string) error {
	if cfg.concurrency < 1 {
		return fmt.Errorf("bench: --concurrency must be at least 1, got %d", cfg.concurrency)
	}
	if cfg.duration <= 0 {
		return fmt.Errorf("bench: --duration must be positive, got %s", cfg.duration)
	}
	if cfg.accounts < 2 {
		return fmt.Errorf("bench: --accounts must be at least 2 (a transfer needs two), got %d", cfg.accounts)
	}
	cfg.url = strings.TrimRight(cfg.url, "/")
	if !strings.HasPrefix(cfg.url, "http://") && !strings.HasPrefix(cfg.url, "https://") {
		return fmt.Errorf("bench: --url %q: want an http:// or https:// URL", cfg.url)
	}
	cur, err := chronicle.LookupCurrency(currency)
	if err != nil {
		return fmt.Errorf("bench: --currency: %w", err)
	}
	cfg.cur = cur
	if cfg.initialMin, err = chronicle.ParseMoney(cfg.initial, cur); err != nil {
		return fmt.Errorf("bench: --initial-balance %q: %w", cfg.initial, err)
	}
	if cfg.initialMin < 0 {
		return fmt.Errorf("bench: --initial-balance must not be negative, got %s", cfg.initial)
	}
	if cfg.initialMin > math.MaxInt64/int64(cfg.accounts) {
		return fmt.Errorf("bench: --accounts × --initial-balance (%d × %s) overflows the ledger's balance range", cfg.accounts, cfg.initial)
	}
	amount, err := chronicle.ParseMoney(cfg.amount, cur)
	if err != nil {
		return fmt.Errorf("bench: --amount %q: %w", cfg.amount, err)
	}
	if amount <= 0 {
		return fmt.Errorf("bench: --amount must be positive, got %s", cfg.amount)
	}
	// The longest id is the last one; if it is valid, all are.
	if err := chronicle.ValidateAccountID("account_id", benchAccountID(cfg.prefix, cfg.accounts-1, cfg.accounts)); err != nil {
		return fmt.Errorf("bench: --prefix %q: %w", cfg.prefix, err)
	}
	return nil
}

// benchAccountID is the id of bench account i of n, zero-padded so ids sort in order.
// listBalancesAbove is how many bench accounts make the conservation check page through
// GET /accounts instead of reading each account: a million single reads at the bench's
// concurrency outlast its deadline, a thousand pages do not.
const listBalancesAbove = 2000

// sumBalancesListed sums the balances of ids (sorted, as benchAccountID makes them) from
// the account listing, after one read of the first id that waits for minPos; accounts of
// other ids in between are skipped, and an id the listing lacks is an error.
func sumBalancesListed(ctx context.Context, c *client.Client, cfg benchConfig, ids []string, minPos uint64) (int64, error) {
	first, err := c.Account(ctx, ids[0], minPos)
	if err != nil {
		return 0, fmt.Errorf("read account %s: %w", ids[0], err)
	}
	var total int64
	add := func(a client.Account) error {
		if !strings.EqualFold(a.Currency, cfg.cur.Code) {
			return fmt.Errorf("account %s is in %s, not %s (reused --prefix?)", a.AccountID, a.Currency, cfg.cur.Code)
		}
		b, err := chronicle.ParseMoney(a.Balance, cfg.cur)
		if err != nil {
			return fmt.Errorf("account %s balance %q: %w", a.AccountID, a.Balance, err)
		}
		if (b > 0 && total > math.MaxInt64-b) || (b < 0 && total < math.MinInt64-b) {
			return fmt.Errorf("sum of balances overflows at account %s", a.AccountID)
		}
		total += b
		return nil
	}
	if err := add(first); err != nil {
		return 0, err
	}
	next, after := 1, ids[0]
	for next < len(ids) {
		page, err := c.Accounts(ctx, after, chronicle.MaxPageSize)
		if err != nil {
			return 0, fmt.Errorf("list accounts after %s: %w", after, err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			if next == len(ids) {
				break
			}
			if a.AccountID < ids[next] {
				continue // not a bench account
			}
			if a.AccountID > ids[next] {
				break // the listing went past it: missing
			}
			if err := add(a); err != nil {
				return 0, err
			}
			next++
		}
		if next < len(ids) && page[len(page)-1].AccountID > ids[next] {
			break
		}
		after = page[len(page)-1].AccountID
	}
	if next < len(ids) {
		return 0, fmt.Errorf("account %s is not in the account listing", ids[next])
	}
	return total, nil
}

func benchAccountID(prefix string, i, n int) string {
	width := len(strconv.Itoa(n - 1))
	return fmt.Sprintf("%s-%0*d", prefix, width, i)
}

// createBenchAccounts creates the accounts with at most cfg.concurrency requests in
// flight. An account that already exists (409 account_exists, e.g. a rerun with the
// same --prefix) is accepted; the conservation check will notice if it does not fit.
func createBenchAccounts(ctx context.Context, c *client.Client, cfg benchConfig, ids []string) (existed int, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var nExisted atomic.Int64
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range min(cfg.concurrency, len(ids)) {
		wg.Go(func() {
			for id := range jobs {
				_, err := c.CreateAccount(ctx, client.CreateAccount{
					AccountID:      id,
					OwnerName:      "chronicle bench",
					Currency:       cfg.cur.Code,
					InitialBalance: cfg.initial,
					Description:    "chronicle bench account",
				}, "")
				switch {
				case err == nil:
				case client.CodeOf(err) == chronicle.CodeAccountExists:
					nExisted.Add(1)
				default:
					cancel(fmt.Errorf("bench: create account %s: %w", id, err))
				}
			}
		})
	}
feed:
	for _, id := range ids {
		select {
		case jobs <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("bench: interrupted while creating accounts: %w", err)
		}
		return 0, err
	}
	return int(nExisted.Load()), nil
}

// benchResult is the outcome of the load phase.
type benchResult struct {
	elapsed     time.Duration
	interrupted bool
	ok          int64
	rejected    map[string]int64 // 4xx by error code
	errors      int64            // 5xx and transport failures
	errorCodes  map[string]int64
	// unknown counts requests cut off by an interrupt: they may or may not have committed.
	unknown      int64
	latencies    []time.Duration // successful transfers only, sorted
	maxPosition  uint64
	firstFailure string
	// lag is what /ready said during the load (with --lag-interval).
	lag lagStats
}

func (r benchResult) rejectedTotal() int64 {
	var n int64
	for _, v := range r.rejected {
		n += v
	}
	return n
}

// throughput is successful requests per second.
func (r benchResult) throughput() float64 {
	if s := r.elapsed.Seconds(); s > 0 {
		return float64(r.ok) / s
	}
	return 0
}

// workerResult is one worker's tally, merged after the load.
type workerResult struct {
	latencies    []time.Duration
	rejected     map[string]int64
	errorCodes   map[string]int64
	unknown      int64
	maxPosition  uint64
	firstFailure string
}

// benchWorkerFunc is one worker of a load: it sends requests until loadCtx ends.
type benchWorkerFunc func(ctx, loadCtx context.Context, c *client.Client, cfg benchConfig, ids []string, okCount, failCount *atomic.Int64) workerResult

// runLoad runs cfg.concurrency workers for cfg.duration (or until ctx is done), printing
// progress to stderr once a second.
func runLoad(ctx context.Context, c *client.Client, cfg benchConfig, ids []string, stderr io.Writer, worker benchWorkerFunc) benchResult {
	// Workers stop starting transfers when loadCtx ends. A request in flight at the
	// deadline is allowed to finish (it runs on ctx, not loadCtx), so every transfer the
	// node commits is one the bench counts; only an interrupt (ctx) cuts requests off.
	loadCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()

	var okCount, failCount atomic.Int64
	results := make([]workerResult, cfg.concurrency)
	start := time.Now()

	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			results[w] = worker(ctx, loadCtx, c, cfg, ids, &okCount, &failCount)
		})
	}

	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go func() {
		defer close(progressStopped)
		benchProgress(stderr, start, progressDone, &okCount, &failCount)
	}()
	var lag lagStats
	lagStopped := make(chan struct{})
	go func() {
		defer close(lagStopped)
		if cfg.lagInterval > 0 {
			lag = sampleLag(loadCtx, c, cfg.lagInterval)
		}
	}()

	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	<-progressStopped
	cancel()
	<-lagStopped

	res := mergeWorkers(results, elapsed, ctx.Err() != nil, okCount.Load())
	res.lag = lag
	return res
}

func benchWorker(ctx, loadCtx context.Context, c *client.Client, cfg benchConfig, ids []string, okCount, failCount *atomic.Int64) workerResult {
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	wr := workerResult{
		latencies:  make([]time.Duration, 0, 1024),
		rejected:   map[string]int64{},
		errorCodes: map[string]int64{},
	}
	n := len(ids)
	for loadCtx.Err() == nil {
		from := r.IntN(n)
		to := r.IntN(n - 1)
		if to >= from {
			to++
		}
		t0 := time.Now()
		res, err := c.Transfer(ctx, client.Transfer{
			FromAccountID: ids[from],
			ToAccountID:   ids[to],
			Amount:        cfg.amount,
			Currency:      cfg.cur.Code,
		}, "")
		lat := time.Since(t0)
		if err == nil {
			wr.latencies = append(wr.latencies, lat)
			wr.maxPosition = max(wr.maxPosition, res.Position)
			okCount.Add(1)
			continue
		}
		if ctx.Err() != nil {
			// Interrupted mid-request: the outcome is unknown, so it is neither a
			// success nor an error.
			wr.unknown++
			break
		}
		if wr.firstFailure == "" {
			wr.firstFailure = err.Error()
		}
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 {
			wr.rejected[apiErr.Code]++
		} else {
			code := "transport"
			if errors.As(err, &apiErr) {
				code = apiErr.Code
			}
			wr.errorCodes[code]++
			failCount.Add(1)
			if code == "transport" {
				// Do not spin on a node that is down or refusing connections.
				select {
				case <-loadCtx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	return wr
}

// benchProgress prints a line to stderr every second until done is closed.
func benchProgress(stderr io.Writer, start time.Time, done <-chan struct{}, okCount, failCount *atomic.Int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastOK, lastAt := int64(0), start
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			ok := okCount.Load()
			rate := float64(ok-lastOK) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(stderr, "bench: %5.1fs  transfers %-9d %8.0f/s  errors %d\n",
				now.Sub(start).Seconds(), ok, rate, failCount.Load())
			lastOK, lastAt = ok, now
		}
	}
}

func writeBenchReport(w io.Writer, cfg benchConfig, res benchResult) {
	fmt.Fprintf(w, "node:          %s\n", cfg.url)
	fmt.Fprintf(w, "accounts:      %d (%s-*, %s %s each)\n", cfg.accounts, cfg.prefix, cfg.initial, cfg.cur.Code)
	fmt.Fprintf(w, "amount:        %s %s\n", cfg.amount, cfg.cur.Code)
	fmt.Fprintf(w, "concurrency:   %d\n", cfg.concurrency)
	dur := res.elapsed.Round(time.Millisecond).String()
	if res.interrupted {
		dur += " (interrupted)"
	}
	fmt.Fprintf(w, "duration:      %s\n", dur)
	fmt.Fprintf(w, "transfers ok:  %d\n", res.ok)
	fmt.Fprintf(w, "rejected:      %d%s\n", res.rejectedTotal(), formatCodes(res.rejected))
	fmt.Fprintf(w, "errors:        %d%s\n", res.errors, formatCodes(res.errorCodes))
	if res.unknown > 0 {
		fmt.Fprintf(w, "unknown:       %d (in flight when interrupted; may have committed)\n", res.unknown)
	}
	if res.firstFailure != "" {
		fmt.Fprintf(w, "e.g. failure:  %s\n", res.firstFailure)
	}
	var tput float64
	if s := res.elapsed.Seconds(); s > 0 {
		tput = float64(res.ok) / s
	}
	fmt.Fprintf(w, "throughput:    %.1f transfers/s\n", tput)
	for _, p := range []int{50, 90, 99} {
		fmt.Fprintf(w, "latency p%d:   %s\n", p, formatLatency(percentile(res.latencies, p)))
	}
	var maxLat time.Duration
	if len(res.latencies) > 0 {
		maxLat = res.latencies[len(res.latencies)-1]
	}
	fmt.Fprintf(w, "latency max:   %s\n", formatLatency(maxLat))
	if cfg.lagInterval > 0 {
		writeLagReport(w, res.lag)
	}
}

// percentile is the nearest-rank p-th percentile of sorted (0 when empty).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n), 1-based
	return sorted[max(rank, 1)-1]
}

func formatLatency(d time.Duration) string {
	if d >= time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// formatCodes renders counts by code as " (code n, code n)", sorted by code.
func formatCodes(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// sumBalances reads every bench account, at or after position minPos, and sums the
// balances exactly in minor units.
func sumBalances(ctx context.Context, c *client.Client, cfg benchConfig, ids []string, minPos uint64) (int64, error) {
	if len(ids) > listBalancesAbove && slices.IsSorted(ids) {
		return sumBalancesListed(ctx, c, cfg, ids, minPos)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	balances := make([]int64, len(ids))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.concurrency, len(ids)) {
		wg.Go(func() {
			for i := range jobs {
				a, err := c.Account(ctx, ids[i], minPos)
				if err != nil {
					cancel(fmt.Errorf("read account %s: %w", ids[i], err))
					continue
				}
				if !strings.EqualFold(a.Currency, cfg.cur.Code) {
					cancel(fmt.Errorf("account %s is in %s, not %s (reused --prefix?)", ids[i], a.Currency, cfg.cur.Code))
					continue
				}
				b, err := chronicle.ParseMoney(a.Balance, cfg.cur)
				if err != nil {
					cancel(fmt.Errorf("account %s balance %q: %w", ids[i], a.Balance, err))
					continue
				}
				balances[i] = b
			}
		})
	}
feed:
	for i := range ids {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	var total int64
	for i, b := range balances {
		if (b > 0 && total > math.MaxInt64-b) || (b < 0 && total < math.MinInt64-b) {
			return 0, fmt.Errorf("sum of balances overflows at account %s", ids[i])
		}
		total += b
	}
	return total, nil
}
