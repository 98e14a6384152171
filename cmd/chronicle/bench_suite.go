package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
)

// suiteConfig is what `chronicle bench suite` (make bench) was asked to do.
type suiteConfig struct {
	dir              string        // parent of the data dirs (a temp dir in it, removed afterwards)
	bin              string        // the chronicle binary the nodes run (default: this one)
	duration         time.Duration // of each timed run
	concurrencies    []int         // single node, one transfer per request
	clusterConc      int           // the 3-node run
	batchSize        int
	batchConc        int
	balanceAt        []int // events in the balance-at account
	balanceRequests  int
	settle           time.Duration
	lagInterval      time.Duration
	cluster          bool
	keep             bool // keep the data dirs and logs
	startupTimeout   time.Duration
	accountsPerBench int
}

func parseSuiteFlags(args []string, stderr io.Writer) (suiteConfig, error) {
	var cfg suiteConfig
	var conc, balanceAt string
	fs := flag.NewFlagSet("chronicle bench suite", flag.ContinueOnError)
	fs.StringVar(&cfg.dir, "dir", "", "where to put the nodes' data dirs and logs (a temp dir inside it; default /var/tmp, else the system's temp dir); also the disk bench's")
	fs.StringVar(&cfg.bin, "bin", "", "chronicle binary the nodes run (default: this one)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "duration of each timed run (disk, HTTP ceiling, each concurrency, batch, cluster)")
	fs.StringVar(&conc, "concurrency", "1,16,64", "single-node concurrencies, one transfer per request (the HTTP ceiling is measured at each)")
	fs.IntVar(&cfg.clusterConc, "cluster-concurrency", 64, "concurrency of the 3-node run (against the leader)")
	fs.IntVar(&cfg.batchSize, "batch-size", 1000, "transfers per POST /commands/batch")
	fs.IntVar(&cfg.batchConc, "batch-concurrency", 4, "batch requests in flight")
	fs.StringVar(&balanceAt, "balance-at-events", "10000,1000000", "sizes of the balance-at account, comma-separated (loading 1000000 takes a minute or more; 10000,100000 for a shorter run)")
	fs.IntVar(&cfg.balanceRequests, "balance-at-requests", 1000, "timed balance-at requests per size")
	fs.DurationVar(&cfg.settle, "balance-at-settle", 3*time.Minute, "before timing balance-at a second time, wait up to this long for the node to settle after the load (0: time once)")
	fs.DurationVar(&cfg.lagInterval, "lag-interval", 100*time.Millisecond, "how often /ready is sampled for the projector's lag during the highest-concurrency run")
	fs.BoolVar(&cfg.cluster, "cluster", true, "run the 3-node cluster measure")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the data dirs and node logs")
	fs.DurationVar(&cfg.startupTimeout, "startup-timeout", 90*time.Second, "how long a node (or the cluster) may take to become ready")
	fs.IntVar(&cfg.accountsPerBench, "accounts", 1000, "accounts per transfers and batch run")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench suite [flags]   (make bench)\n\n"+
			"Measures, in one go on this machine: the disk's durable ceiling (bench disk), the bare\n"+
			"HTTP ceiling (bench http) at each --concurrency, then starts a single node (chronicle\n"+
			"serve in a temp data dir) for transfers at each --concurrency with the projector's lag\n"+
			"sampled at the highest, batched transfers and balance-at at each size, then a 3-node\n"+
			"cluster on loopback for transfers against its leader; prints one table with each\n"+
			"figure as a ratio of its ceiling. The nodes are stopped on exit and on Ctrl-C.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	var err error
	if cfg.concurrencies, err = parseIntList(conc, "--concurrency"); err != nil {
		return cfg, err
	}
	if cfg.balanceAt, err = parseIntList(balanceAt, "--balance-at-events"); err != nil {
		return cfg, err
	}
	switch {
	case cfg.duration <= 0:
		return cfg, fmt.Errorf("bench suite: --duration must be positive, got %s", cfg.duration)
	case cfg.clusterConc < 1 || cfg.batchConc < 1:
		return cfg, errors.New("bench suite: --cluster-concurrency and --batch-concurrency must be at least 1")
	case cfg.batchSize < 1:
		return cfg, fmt.Errorf("bench suite: --batch-size must be at least 1, got %d", cfg.batchSize)
	case cfg.balanceRequests < 1:
		return cfg, fmt.Errorf("bench suite: --balance-at-requests must be at least 1, got %d", cfg.balanceRequests)
	case cfg.accountsPerBench < 2:
		return cfg, fmt.Errorf("bench suite: --accounts must be at least 2, got %d", cfg.accountsPerBench)
	case cfg.lagInterval <= 0:
		return cfg, fmt.Errorf("bench suite: --lag-interval must be positive, got %s", cfg.lagInterval)
	}
	return cfg, nil
}

// parseIntList parses "1,16,64" (positive integers; empty: none).
func parseIntList(s, flagName string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bench suite: %s %q: want positive integers, comma-separated", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func benchSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSuiteFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.bin == "" {
		if cfg.bin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench suite: %w", err)
		}
	}
	root, err := os.MkdirTemp(benchTempParent(cfg.dir), "chronicle-bench-suite-")
	if err != nil {
		return fmt.Errorf("bench suite: %w", err)
	}
	if cfg.keep {
		fmt.Fprintf(stderr, "bench suite: data dirs and logs in %s (kept)\n", root)
	} else {
		defer os.RemoveAll(root)
	}
	s := &suite{cfg: cfg, root: root, log: stderr}
	defer s.stopAll()
	runErr := s.run(ctx)
	s.stopAll()
	fmt.Fprintf(stdout, "\n%s\n", suiteHeading(cfg))
	writeBenchTable(stdout, s.rows)
	if runErr != nil {
		return runErr
	}
	return nil
}

func suiteHeading(cfg suiteConfig) string {
	return fmt.Sprintf("chronicle bench suite: %s per run, %d CPUs, client and nodes on this machine", cfg.duration, runtime.NumCPU())
}

// suite is one run of the suite: its rows so far and the processes it started.
type suite struct {
	cfg   suiteConfig
	root  string
	log   io.Writer
	rows  []benchRow
	procs []*nodeProc
}

func (s *suite) add(r benchRow) { s.rows = append(s.rows, r) }

func (s *suite) run(ctx context.Context) error {
	cfg := s.cfg
	// The ceilings first, on a quiet machine.
	fmt.Fprintf(s.log, "\n== disk ceiling\n")
	disk, err := runDiskBench(ctx, diskConfig{dir: s.root, duration: cfg.duration, concurrency: 64, size: 200}, s.log)
	if err != nil {
		return err
	}
	writeDiskReport(s.log, diskConfig{concurrency: 64, size: 200}, disk)
	if disk.reopened != disk.records {
		return fmt.Errorf("bench disk: after reopening the store %d of %d acknowledged records are there", disk.reopened, disk.records)
	}
	diskCeil := disk.perSecond()
	s.add(benchRow{measure: "disk ceiling: Pebble, 64 writers, 1-record synced batches", value: diskCeil, unit: "records/s",
		p50: percentile(disk.latencies, 50), p99: percentile(disk.latencies, 99),
		note: fmt.Sprintf("%.1f commits per WAL fsync", disk.commitsPerFsync())})

	fmt.Fprintf(s.log, "\n== fan-out ceiling\n")
	fan, err := runFanoutBench(ctx, fanoutConfig{dir: s.root, duration: cfg.duration}, s.log)
	if err != nil {
		return err
	}
	writeFanoutReport(s.log, fan)
	fanCeil := fan.perSecond()
	s.add(benchRow{measure: "fan-out ceiling: publisher and embedded JetStream alone", value: fanCeil, unit: "events/s",
		note: fmt.Sprintf("%.2f µs CPU per event; a transfer publishes 2", float64(fan.cpuPerEvent().Nanoseconds())/1e3)})

	httpCeil := map[int]float64{}
	for _, c := range cfg.concurrencies {
		fmt.Fprintf(s.log, "\n== HTTP ceiling, c=%d\n", c)
		// The ceiling's server is this binary's own `bench http --serve`, whatever --bin
		// the nodes run (an older build has no such command).
		hc := httpConfig{load: ceilingLoad(benchConfig{concurrency: c, duration: cfg.duration, accounts: cfg.accountsPerBench})}
		res, err := runHTTPCeiling(ctx, hc, s.log)
		if err != nil {
			return err
		}
		writeHTTPReport(s.log, hc, res)
		if err := interrupted(ctx); err != nil {
			return err
		}
		httpCeil[c] = res.throughput()
		s.add(benchRow{measure: fmt.Sprintf("HTTP ceiling: bare handler, no storage, c=%d", c), value: res.throughput(), unit: "req/s",
			p50: percentile(res.latencies, 50), p99: percentile(res.latencies, 99)})
	}

	// A single node.
	fmt.Fprintf(s.log, "\n== single node\n")
	single, err := s.startSingle(ctx)
	if err != nil {
		return err
	}
	maxC := 0
	for _, c := range cfg.concurrencies {
		maxC = max(maxC, c)
	}
	var singleAtCluster float64
	for _, c := range cfg.concurrencies {
		fmt.Fprintf(s.log, "\n== single node, one transfer per request, c=%d\n", c)
		tc := s.transferConfig(single.url, c, fmt.Sprintf("s%d", c))
		if c == maxC {
			tc.lagInterval = cfg.lagInterval
		}
		res, err := runTransferBench(ctx, tc, s.log, s.log)
		if err != nil {
			return err
		}
		if c == cfg.clusterConc {
			singleAtCluster = res.throughput()
		}
		s.add(benchRow{measure: fmt.Sprintf("single node, 1 transfer/request, c=%d", c), value: res.throughput(), unit: "transfers/s",
			p50: percentile(res.latencies, 50), p99: percentile(res.latencies, 99),
			ceilingName: fmt.Sprintf("HTTP c=%d", c), ceiling: httpCeil[c], note: failuresNote(res)})
		if c == maxC {
			s.add(lagRow(c, res.lag))
		}
	}

	fmt.Fprintf(s.log, "\n== single node, batches of %d transfers, %d in flight\n", cfg.batchSize, cfg.batchConc)
	bc := s.transferConfig(single.url, cfg.batchConc, "b")
	bc.batchSize = cfg.batchSize
	bres, err := runBatchBench(ctx, bc, s.log, s.log)
	if err != nil {
		return err
	}
	s.add(benchRow{measure: fmt.Sprintf("single node, POST /commands/batch of %d transfers, %d in flight", cfg.batchSize, cfg.batchConc),
		value: bres.throughput(), unit: "transfers/s", p50: percentile(bres.latencies, 50), p99: percentile(bres.latencies, 99),
		ceilingName: "disk", ceiling: diskCeil, note: strings.TrimSuffix(fmt.Sprintf("p50/p99 per request; %s of the fan-out ceiling (2 events per transfer); ",
			formatRatio(2*bres.throughput()/fanCeil))+failuresNote(bres), "; ")})

	for _, n := range cfg.balanceAt {
		fmt.Fprintf(s.log, "\n== single node, balance-at on an account with %d events\n", n)
		bac := balanceAtConfig{url: single.url, events: n, batch: balanceAtBatch(n), concurrency: 2, requests: cfg.balanceRequests, settle: cfg.settle,
			account: fmt.Sprintf("balat-%d-%d", n, time.Now().UnixNano()%1e6)}
		if err := bac.validate(); err != nil {
			return err
		}
		res, err := runBalanceAtBench(ctx, bac, s.log)
		if err != nil {
			return err
		}
		writeBalanceAtReport(s.log, bac, res)
		s.add(benchRow{measure: fmt.Sprintf("%s deposits into one account through batches of %d", formatCount(float64(n)), bac.batch),
			value: res.loadRate(), unit: "events/s", ceilingName: "disk", ceiling: diskCeil})
		s.add(benchRow{measure: fmt.Sprintf("balance-at, one account with %s events, sequential, straight after the load", formatCount(float64(n))),
			value: math.NaN(), p50: percentile(res.latencies, 50), p99: percentile(res.latencies, 99),
			note: fmt.Sprintf("%d requests at random instants; goal p99 ≤ 1 ms", len(res.latencies))})
		if res.settledLatencies != nil {
			s.add(benchRow{measure: fmt.Sprintf("balance-at, one account with %s events, sequential, once the node settled", formatCount(float64(n))),
				value: math.NaN(), p50: percentile(res.settledLatencies, 50), p99: percentile(res.settledLatencies, 99),
				note: res.settle.describe()})
		}
	}
	if err := single.stop(); err != nil {
		fmt.Fprintf(s.log, "bench suite: %v\n", err)
	}

	if !cfg.cluster {
		return nil
	}
	// The single node's loads left gigabytes for the kernel to write back; the cluster's
	// fsyncs would queue behind them (its rate halved a few seconds into the run).
	t0 := time.Now()
	settleDisk()
	fmt.Fprintf(s.log, "bench suite: wrote the page cache out in %s\n", time.Since(t0).Round(time.Millisecond))
	fmt.Fprintf(s.log, "\n== 3-node cluster\n")
	leader, err := s.startCluster(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.log, "\n== 3 nodes, one transfer per request, c=%d against the leader %s\n", cfg.clusterConc, leader)
	cres, err := runTransferBench(ctx, s.transferConfig(leader, cfg.clusterConc, "c"), s.log, s.log)
	if err != nil {
		return err
	}
	note := failuresNote(cres)
	if singleAtCluster > 0 {
		note = fmt.Sprintf("%s of single node c=%d; ", formatRatio(cres.throughput()/singleAtCluster), cfg.clusterConc) + note
	}
	s.add(benchRow{measure: fmt.Sprintf("3 nodes, 1 transfer/request, c=%d to the leader", cfg.clusterConc), value: cres.throughput(), unit: "transfers/s",
		p50: percentile(cres.latencies, 50), p99: percentile(cres.latencies, 99),
		ceilingName: fmt.Sprintf("HTTP c=%d", cfg.clusterConc), ceiling: httpCeilFor(httpCeil, cfg.clusterConc), note: strings.TrimSuffix(note, "; ")})
	return nil
}

// balanceAtBatch is the deposits per batch for an account of n events: about a hundred
// batches (so the account's history has a hundred distinct commit instants for the
// random balance-at instants to fall between), at most 4,000 per batch.
func balanceAtBatch(n int) int {
	return min(max(n/100, 1), 4000)
}

// httpCeilFor is the ceiling measured at concurrency c, or at the nearest one measured.
func httpCeilFor(ceil map[int]float64, c int) float64 {
	if v, ok := ceil[c]; ok {
		return v
	}
	best, bestD := 0.0, math.MaxInt
	for k, v := range ceil {
		if d := max(k-c, c-k); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

func failuresNote(res benchResult) string {
	var parts []string
	if res.interrupted {
		parts = append(parts, "interrupted")
	}
	if res.errors > 0 || res.rejectedTotal() > 0 {
		parts = append(parts, fmt.Sprintf("%d rejected, %d errors", res.rejectedTotal(), res.errors))
	}
	return strings.Join(parts, ", ")
}

func lagRow(c int, st lagStats) benchRow {
	r := benchRow{measure: fmt.Sprintf("projector lag during the c=%d run (mean of %d /ready samples)", c, st.samples), value: st.projectorMean, unit: "events"}
	switch {
	case st.samples == 0:
		r.value, r.note = math.NaN(), "no samples"
	case !st.hasProjector:
		r.value, r.note = math.NaN(), "the node reports no projector"
	default:
		r.note = fmt.Sprintf("p99 %s, max %d events (%.3f s)", formatCount(st.projectorP99), st.projectorMax, st.projectorMaxSeconds)
		if st.hasPublisher {
			r.note += fmt.Sprintf("; publisher: mean %s, max %d events", formatCount(st.publisherMean), st.publisherMax)
		}
	}
	return r
}

func interrupted(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("bench suite: interrupted: %w", ctx.Err())
	}
	return nil
}

// transferConfig is a transfers (or batch) bench against url with its own accounts.
func (s *suite) transferConfig(url string, concurrency int, tag string) benchConfig {
	cfg := benchConfig{url: url, concurrency: concurrency, duration: s.cfg.duration, accounts: s.cfg.accountsPerBench,
		initial: "1000000.00", amount: "1.00", prefix: fmt.Sprintf("bench%s-%d", tag, time.Now().Unix()%1e6),
		tls: &clientTLS{}, token: &tokenFlags{}}
	if err := cfg.validate("USD"); err != nil {
		panic(err) // the values above are valid
	}
	return cfg
}

// nodeProc is a `chronicle serve` the suite started.
type nodeProc struct {
	name    string
	url     string
	logPath string
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// startServe starts `bin serve args...` with its output in logPath. stop sends it
// SIGTERM, and SIGKILL if it has not exited 30 s later; it also dies with this process
// (see setChildAttrs).
func (s *suite) startServe(ctx context.Context, name, url string, args []string) (*nodeProc, error) {
	logPath := filepath.Join(s.root, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench suite: %w", err)
	}
	// Not stopped by ctx itself: after a Ctrl-C the bench in progress still checks
	// conservation against the node; stopAll stops every node once it has.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(pctx, s.cfg.bin, append([]string{"serve"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stdout, cmd.Stderr = logf, logf
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		return nil, fmt.Errorf("bench suite: start %s: %w", name, err)
	}
	p := &nodeProc{name: name, url: url, logPath: logPath, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.done <- err
	}()
	s.procs = append(s.procs, p)
	fmt.Fprintf(s.log, "bench suite: started %s (pid %d) at %s, log %s\n", name, cmd.Process.Pid, url, logPath)
	return p, nil
}

// stop sends SIGTERM and waits for the process; a clean exit is nil.
func (p *nodeProc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	p.cancel()
	err := <-p.done
	var ee *exec.ExitError
	if err != nil && errors.As(err, &ee) {
		return fmt.Errorf("%s exited with %v (log %s)", p.name, err, p.logPath)
	}
	return nil
}

func (s *suite) stopAll() {
	for _, p := range s.procs {
		if err := p.stop(); err != nil {
			fmt.Fprintf(s.log, "bench suite: %v\n", err)
		}
	}
}

// freeLoopbackAddr is a 127.0.0.1 port that was free just now, below the ephemeral range
// (as internal/freeport picks them for tests) so that no outgoing connection takes it.
func freeLoopbackAddr() (string, error) {
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = ln.Close()
			return addr, nil
		}
	}
	return "", errors.New("bench suite: no free loopback port")
}

func freeLoopbackAddrs(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		a, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *suite) startSingle(ctx context.Context) (*nodeProc, error) {
	addrs, err := freeLoopbackAddrs(2)
	if err != nil {
		return nil, err
	}
	url := "http://" + addrs[0]
	p, err := s.startServe(ctx, "single", url, []string{"--node-id", "n1", "--data-dir", filepath.Join(s.root, "single"),
		"--http-addr", addrs[0], "--raft-addr", addrs[1]})
	if err != nil {
		return nil, err
	}
	if _, err := s.waitReady(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// startCluster starts n1..n3 on loopback (no TLS, no auth: loopback only) founding one
// cluster, waits until all are ready, and returns the leader's URL.
func (s *suite) startCluster(ctx context.Context) (string, error) {
	addrs, err := freeLoopbackAddrs(6)
	if err != nil {
		return "", err
	}
	var join []string
	for i := range 3 {
		join = append(join, "http://"+addrs[2*i])
	}
	var nodes []*nodeProc
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		p, err := s.startServe(ctx, "cluster-"+id, join[i], []string{"--node-id", id, "--data-dir", filepath.Join(s.root, "cluster", id),
			"--http-addr", addrs[2*i], "--raft-addr", addrs[2*i+1], "--join", strings.Join(join, ","), "--bootstrap-expect", "3"})
		if err != nil {
			return "", err
		}
		nodes = append(nodes, p)
	}
	leader := ""
	for _, p := range nodes {
		st, err := s.waitReady(ctx, p)
		if err != nil {
			return "", err
		}
		if st == "Leader" {
			leader = p.url
		}
	}
	// Leadership may have settled after a node answered; ask again until one says so.
	deadline := time.Now().Add(s.cfg.startupTimeout)
	for leader == "" && time.Now().Before(deadline) {
		for _, p := range nodes {
			if st, _ := raftState(ctx, p.url); st == "Leader" {
				leader = p.url
			}
		}
		if leader == "" {
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return "", err
			}
		}
	}
	if leader == "" {
		return "", errors.New("bench suite: the cluster elected no leader")
	}
	return leader, nil
}

// waitReady polls /ready until it answers 200, and returns the node's Raft state.
func (s *suite) waitReady(ctx context.Context, p *nodeProc) (string, error) {
	deadline := time.Now().Add(s.cfg.startupTimeout)
	for {
		select {
		case err := <-p.done:
			p.done <- err // for stop
			return "", fmt.Errorf("bench suite: %s exited before it was ready (%v); see %s:\n%s", p.name, err, p.logPath, logTail(p.logPath, 20))
		default:
		}
		if st, err := raftState(ctx, p.url); err == nil {
			return st, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("bench suite: %s not ready after %s; see %s:\n%s", p.name, s.cfg.startupTimeout, p.logPath, logTail(p.logPath, 20))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// raftState asks url/ready; an error unless it answers 200.
func raftState(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var rv struct {
		Node struct {
			Raft struct {
				State string `json:"state"`
			} `json:"raft"`
		} `json:"node"`
	}
	_, err := client.New(url, &http.Client{Timeout: 2 * time.Second}).Do(ctx, http.MethodGet, "/ready", nil, nil, &rv)
	return rv.Node.Raft.State, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("bench suite: interrupted: %w", ctx.Err())
	case <-time.After(d):
		return nil
	}
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "    " + strings.Join(lines[max(0, len(lines)-n):], "\n    ")
}
