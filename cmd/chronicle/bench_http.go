package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// httpConfig is what `chronicle bench http` was asked to do.
type httpConfig struct {
	load benchConfig // concurrency, duration, accounts, amount, currency for runLoad
	// serve, when set, only serves the bare handler on this address until interrupted
	// (for loading it with another client, e.g. ../shared/bench/httpceil).
	serve string
	// url, when set, loads a bare handler already serving there instead of starting one.
	url string
	// inProcess serves the handler in this process instead of a child process. On two
	// cores the client and the server then share one Go scheduler, and the figure at
	// c=64 drops far below what a separate server process does, while the ledger bench
	// always loads a separate node process: the child is the comparable ceiling.
	inProcess bool
	// bin is the chronicle binary the child runs (default: this one).
	bin string
}

func benchHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseHTTPFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.serve != "" {
		return serveCeiling(ctx, cfg.serve, stdout)
	}
	res, err := runHTTPCeiling(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	writeHTTPReport(stdout, cfg, res)
	if res.ok == 0 {
		return fmt.Errorf("bench http: no request succeeded (%d rejected, %d errors; e.g. %s)", res.rejectedTotal(), res.errors, res.firstFailure)
	}
	return nil
}

func parseHTTPFlags(args []string, stderr io.Writer) (httpConfig, error) {
	var cfg httpConfig
	fs := flag.NewFlagSet("chronicle bench http", flag.ContinueOnError)
	fs.IntVar(&cfg.load.concurrency, "concurrency", 64, "number of concurrent workers, each with one request in flight")
	fs.DurationVar(&cfg.load.duration, "duration", 10*time.Second, "how long to send requests")
	fs.IntVar(&cfg.load.accounts, "accounts", 1000, "number of (made-up) account ids the transfers name")
	fs.StringVar(&cfg.serve, "serve", "", "only serve the bare handler on this host:port until interrupted")
	fs.StringVar(&cfg.url, "url", "", "load a bare handler already serving at this URL (e.g. started with --serve) instead of starting one")
	fs.BoolVar(&cfg.inProcess, "in-process", false, "serve the handler in this process rather than in a child process (client and server then share one Go runtime: not comparable with a node)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench http [flags]\n\n"+
			"The bare HTTP ceiling: starts a net/http server on a loopback port (in a child process,\n"+
			"`chronicle bench http --serve`, as a node is one, unless --in-process) whose POST\n"+
			"/commands/transfer decodes the ledger's transfer body strictly and answers 201 with a\n"+
			"small command result, with no storage at all, and loads it with the same client and\n"+
			"workers as `chronicle bench` for --duration, as ../shared/bench/httpceil does. The\n"+
			"ledger's single-request throughput divided by this is what the ledger costs.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if cfg.load.concurrency < 1 {
		return cfg, fmt.Errorf("bench http: --concurrency must be at least 1, got %d", cfg.load.concurrency)
	}
	if cfg.load.duration <= 0 {
		return cfg, fmt.Errorf("bench http: --duration must be positive, got %s", cfg.load.duration)
	}
	if cfg.load.accounts < 2 {
		return cfg, fmt.Errorf("bench http: --accounts must be at least 2, got %d", cfg.load.accounts)
	}
	if (cfg.serve != "" && cfg.url != "") || (cfg.inProcess && (cfg.serve != "" || cfg.url != "")) {
		return cfg, errors.New("bench http: --serve, --url and --in-process exclude each other")
	}
	cfg.url = strings.TrimRight(cfg.url, "/")
	if cfg.url != "" && !strings.HasPrefix(cfg.url, "http://") {
		return cfg, fmt.Errorf("bench http: --url %q: want an http:// URL", cfg.url)
	}
	cfg.load = ceilingLoad(cfg.load)
	return cfg, nil
}

// ceilingLoad fills in what runLoad needs besides concurrency, duration and accounts: the
// transfer the ledger bench sends (1.00 USD between accounts hc-<n>).
func ceilingLoad(cfg benchConfig) benchConfig {
	cfg.cur, _ = chronicle.LookupCurrency("USD")
	cfg.amount = "1.00"
	cfg.prefix = "hc"
	return cfg
}

// ceilingHandler is the bare handler: POST /commands/transfer decodes the body the ledger
// takes (api.Transfer, strictly, at most 1 MiB as the ledger reads it) and answers 201
// with a command result of the ledger's shape (two event refs); no storage.
func ceilingHandler() http.Handler {
	var pos atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /commands/transfer", func(w http.ResponseWriter, r *http.Request) {
		var t api.Transfer
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := pos.Add(2)
		id := strconv.FormatUint(p, 10)
		res := api.CommandResult{Success: true, TransferID: id, Position: p, CommittedAt: time.Now().UTC(),
			Events: []api.EventRef{
				{EventID: id + "-1", Type: chronicle.EventMoneyWithdrawn, AggregateID: t.FromAccountID, Position: p - 1},
				{EventID: id + "-2", Type: chronicle.EventMoneyDeposited, AggregateID: t.ToAccountID, Position: p},
			}}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ready"}`+"\n")
	})
	return mux
}

// startCeiling serves the bare handler on addr ("127.0.0.1:0" for any free port) until
// stop is called; it returns the base URL.
func startCeiling(addr string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("bench http: %w", err)
	}
	srv := &http.Server{Handler: ceilingHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		_ = srv.Close()
		<-done
	}, nil
}

func serveCeiling(ctx context.Context, addr string, stdout io.Writer) error {
	url, stop, err := startCeiling(addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "%s%s (POST /commands/transfer); Ctrl-C stops it\n", ceilingServingAt, url)
	<-ctx.Done()
	return nil
}

// ceilingServingAt starts the line `bench http --serve` prints once it serves; the URL
// follows.
const ceilingServingAt = "bench http: bare handler serving at "

// startCeilingProcess runs `bin bench http --serve 127.0.0.1:0` and returns its URL.
func startCeilingProcess(ctx context.Context, bin string) (url string, stop func(), err error) {
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return "", nil, fmt.Errorf("bench http: %w", err)
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, "bench", "http", "--serve", "127.0.0.1:0")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = os.Stderr
	setChildAttrs(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return "", nil, fmt.Errorf("bench http: %w", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return "", nil, fmt.Errorf("bench http: start %s: %w", bin, err)
	}
	stop = func() {
		cancel()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	rest, ok := strings.CutPrefix(line, ceilingServingAt)
	if err != nil || !ok {
		stop()
		return "", nil, fmt.Errorf("bench http: the server process did not start (%q, %v)", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	url, _, _ = strings.Cut(rest, " ")
	return url, stop, nil
}

// runHTTPCeiling loads the bare handler (in a child process, in this one with
// cfg.inProcess, or at cfg.url) with the transfers bench's workers and client.
func runHTTPCeiling(ctx context.Context, cfg httpConfig, stderr io.Writer) (benchResult, error) {
	url := cfg.url
	if url == "" {
		start := func() (string, func(), error) { return startCeilingProcess(ctx, cfg.bin) }
		if cfg.inProcess {
			start = func() (string, func(), error) { return startCeiling("127.0.0.1:0") }
		}
		u, stop, err := start()
		if err != nil {
			return benchResult{}, err
		}
		defer stop()
		url = u
	}
	c, closeIdle, err := newBenchClient(url, nil, nil, cfg.load.concurrency)
	if err != nil {
		return benchResult{}, err
	}
	defer closeIdle()
	ids := make([]string, cfg.load.accounts)
	for i := range ids {
		ids[i] = benchAccountID(cfg.load.prefix, i, cfg.load.accounts)
	}
	fmt.Fprintf(stderr, "bench http: bare handler at %s; running %d workers for %s\n", url, cfg.load.concurrency, cfg.load.duration)
	load := cfg.load
	load.url = url
	return runLoad(ctx, c, load, ids, stderr, benchWorker), nil
}

func writeHTTPReport(w io.Writer, cfg httpConfig, res benchResult) {
	where := "in a child process"
	switch {
	case cfg.url != "":
		where = cfg.url
	case cfg.inProcess:
		where = "in this process"
	}
	fmt.Fprintf(w, "server:        bare net/http handler, no storage (%s)\n", where)
	fmt.Fprintf(w, "concurrency:   %d\n", cfg.load.concurrency)
	fmt.Fprintf(w, "duration:      %s\n", res.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "requests ok:   %d\n", res.ok)
	fmt.Fprintf(w, "errors:        %d%s\n", res.errors+res.rejectedTotal(), formatCodes(res.errorCodes))
	fmt.Fprintf(w, "throughput:    %.1f requests/s\n", res.throughput())
	for _, p := range []int{50, 90, 99} {
		fmt.Fprintf(w, "latency p%d:   %s\n", p, formatLatency(percentile(res.latencies, p)))
	}
}
