package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/bytesize"
	"github.com/chronicle-ledger/chronicle/internal/gctune"
	"github.com/chronicle-ledger/chronicle/internal/holdsweep"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

func version() string {
	v := node.Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			// A version stamped by make dist already names the revision.
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && !strings.Contains(v, s.Value[:12]) {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

// serveOptions holds what serve's flags set.
type serveOptions struct {
	cfg                            node.Config
	cors, join, allowedHosts       listFlag
	logLevel, logFormat, pprofAddr string
	heapBudget                     string
	metrics                        bool
}

// newServeFlags builds serve's flag set; the deployment tests parse the compose files'
// commands with it.
func newServeFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{}
	cfg := &o.cfg
	fs := flag.NewFlagSet("chronicle serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Store, "store", "raft", "event store: raft (Raft + Pebble under --data-dir) or sql (--event-store)")
	fs.StringVar(&cfg.EventStoreURL, "event-store", "", "with --store sql: postgres:// URL of the CockroachDB or PostgreSQL event store")
	fs.StringVar(&cfg.Role, "role", "all", "with --store sql: all, command (commands and ops) or query (reads, events, stream, dashboard)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "directory for all node state (Raft log, ledger state, snapshots)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:4000", "host:port for the HTTP API and dashboard")
	fs.StringVar(&cfg.NodeID, "node-id", "n1", "this node's id in the Raft cluster")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:4001", "host:port for Raft traffic between nodes")
	fs.Var(&o.join, "join", "API URLs of cluster members to join (comma-separated or repeated)")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "found a new cluster once this many nodes (this one included) answer at --join")
	fs.DurationVar(&cfg.JoinCatchUpTimeout, "join-catch-up-timeout", raftstore.DefaultCatchUpTimeout, "on the leader: how long a joining node may take to catch up as a non-voter before it is removed again")
	fs.StringVar(&cfg.AdvertiseURL, "advertise-url", "", "API URL other nodes reach this node at (default http://<http-addr>, https:// with --tls-cert)")
	fs.Var(&o.cors, "cors-origin", "browser origin allowed to call the API (repeatable or comma-separated; * for any)")
	fs.Var(&o.allowedHosts, "allowed-hosts", "Host names (optional :port) the API answers to besides loopback names and the advertise URL's (repeatable or comma-separated); default: only those on a loopback --http-addr, any Host otherwise")
	fs.DurationVar(&cfg.IdempotencyWindow, "idempotency-window", 0, "how long idempotency keys are remembered (default 24h)")
	fs.StringVar(&cfg.DefaultCurrency, "default-currency", "USD", "ISO 4217 currency of a create-account that names none (the original system assumed USD)")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 0, "Raft entries between snapshots (default 8192)")
	fs.DurationVar(&cfg.ScrubInterval, "scrub-interval", raftstore.DefaultScrubInterval, "how often a low-priority pass re-reads the Raft log and the state DB for damage (negative: never)")
	fs.DurationVar(&cfg.HoldSweepInterval, "hold-sweep-interval", holdsweep.DefaultInterval, "how often the leader (SQL mode: the hold-sweep lease holder) expires pending transfers past their deadline (negative: never; expiry is then only lazy)")
	fs.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 0, "Raft entries kept behind a snapshot for slow followers (default 10240)")
	fs.Uint64Var(&cfg.Pebble.MemTableSize, "pebble-memtable-size", pebbleutil.DefaultMemTableSize, "bytes of one memtable of the state DB (Pebble holds up to 4)")
	fs.Int64Var(&cfg.Pebble.CacheSize, "pebble-cache-size", pebbleutil.DefaultCacheSize, "bytes of the state DB's block cache (reads of statements, balance-at and the event log)")
	fs.IntVar(&cfg.Pebble.L0CompactionThreshold, "pebble-l0-compaction-threshold", pebbleutil.DefaultL0CompactionThreshold, "L0 files (read amplification) that start a compaction of the state DB")
	fs.IntVar(&cfg.Pebble.L0StopWritesThreshold, "pebble-l0-stop-writes-threshold", pebbleutil.DefaultL0StopWritesThreshold, "L0 files at which the state DB stalls writes until compactions catch up")
	fs.StringVar(&cfg.Pebble.Compression, "pebble-compression", pebbleutil.DefaultCompression, "state DB block compression: snappy, minlz or none")
	fs.StringVar(&cfg.DiskReserve, "disk-reserve", "", "free space kept on the data dir's filesystems: a percentage (1%) or a size (256MiB, 1GiB); below it writes get 507 insufficient_storage and /ready says not ready, reads go on, writes resume once space is freed; 0 turns it off. Default: the smaller of 1% and 256MiB, which holds a memtable flush, a compaction and the writes in flight on any disk while keeping small volumes usable")
	fs.StringVar(&cfg.ReadModel, "read-model", "pebble", "query-side view: pebble (embedded) or a postgres:// URL")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "open the embedded NATS server to outside consumers on host:port")
	fs.DurationVar(&cfg.NATSMaxAge, "nats-max-age", node.DefaultNATSMaxAge, "drop JetStream messages older than this from a stream this node creates (negative: keep all); the log stays whole")
	fs.Int64Var(&cfg.NATSMaxBytes, "nats-max-bytes", node.DefaultNATSMaxBytes, "drop the oldest JetStream messages beyond this many bytes in a stream this node creates (negative: no limit)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "publish to this external NATS server instead of the embedded one")
	fs.StringVar(&cfg.MaxAmount, "max-amount", string(httpapi.DefaultMaxAmount), "largest amount (also initial balance, overdraft limit) one command may carry, in major units of its currency")
	fs.IntVar(&cfg.MaxStreams, "max-streams", httpapi.DefaultMaxStreams, "open /events/stream connections allowed on this node")
	fs.IntVar(&cfg.MaxStreamsPerClient, "max-streams-per-client", httpapi.DefaultMaxStreamsPerClient, "open /events/stream connections allowed per client IP")
	fs.IntVar(&cfg.MaxInflightCommands, "max-inflight-commands", httpapi.DefaultMaxInflightCommands, "command requests executing at once on this node; beyond it 429")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", httpapi.DefaultBodyReadTimeout, "time a client has to send a request body")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", httpapi.DefaultWriteTimeout, "time to write a response, and each write of an event stream")
	// Authentication (see README "Security").
	fs.StringVar(&cfg.BootstrapTokenFile, "bootstrap-token-file", "", "file holding the first admin API token (one is generated there if the file does not exist); turns authentication on")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow listeners other machines can reach without authentication (protected mode refuses to start otherwise)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "requests per second one API token may make (0: unlimited); beyond it 429 with Retry-After")
	fs.IntVar(&cfg.RateBurst, "rate-burst", 0, "requests one API token may make at once above --rate-limit (default: one second's worth)")
	// Cluster security (TLS): all three or none; chronicle certs makes them.
	fs.StringVar(&cfg.TLSCAFile, "tls-ca", "", "cluster CA certificate (PEM): with --tls-cert and --tls-key, Raft runs over mutual TLS, the API serves HTTPS, and membership changes need a certificate of this CA")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "this node's certificate (PEM), signed by --tls-ca, for Raft, the HTTPS API and calls to peers")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.BoolVar(&o.metrics, "metrics", true, "serve Prometheus metrics at GET /metrics (role reader when tokens are on); false records nothing")
	fs.StringVar(&o.heapBudget, "heap-budget", defaultHeapBudget, "heap the Go garbage collector may let grow to while the live heap is small (at most five times the live heap; from half of it on, twice the live heap as with GOGC=100); fewer collections per command for more memory. 0, or GOGC in the environment, leaves Go's default")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiling (net/http/pprof) on this host:port; off by default")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle serve [flags]\n\nEvery flag can also be set as CHRONICLE_<FLAG> (e.g. CHRONICLE_DATA_DIR); a flag wins.\n\n")
		fs.PrintDefaults()
	}
	return fs, o
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newServeFlags()
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	cfg, pprofAddr := o.cfg, o.pprofAddr
	cfg.CORSOrigins, cfg.Join, cfg.AllowedHosts = o.cors, o.join, o.allowedHosts
	cfg.DisableMetrics = !o.metrics
	logger, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	stopTuner, err := tuneGC(o.heapBudget, logger)
	if err != nil {
		return err
	}
	defer stopTuner()
	if cfg.RateLimit > 0 && cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(cfg.RateLimit))
	}
	// Profiles show memory and code paths: never to other machines without the operator
	// saying so.
	if pprofAddr != "" && !loopbackListen(pprofAddr) && !cfg.Insecure {
		return fmt.Errorf("--pprof-addr %s can be reached from other machines and has no authentication; bind it to loopback or pass --insecure", pprofAddr)
	}
	n, err := node.New(ctx, cfg)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		go servePprof(ctx, pprofAddr, logger)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := n.WaitReady(readyCtx); err == nil {
			fmt.Fprintf(stdout, "chronicle %s serving at %s (node %s, data in %s)\n", version(), n.URL(), cfg.NodeID, cfg.DataDir)
		}
	}()
	return <-done
}

// defaultHeapBudget lets a node with a small live heap (a batch-loaded node holds about
// 130 MB) collect about four times less often than GOGC=100, and keeps a node holding a
// million accounts at Go's default (see internal/gctune).
const defaultHeapBudget = "512MiB"

// tuneGC starts pacing the collector for the heap budget unless GOGC is set or the
// budget is 0; the function returned stops it.
func tuneGC(budget string, log *slog.Logger) (func(), error) {
	n, err := bytesize.Parse(budget)
	if err != nil {
		return nil, fmt.Errorf("--heap-budget %q: %w", budget, err)
	}
	if v := os.Getenv("GOGC"); v != "" || n == 0 { // Go reads an empty GOGC as unset too
		log.Debug("garbage collector left at its default pace", "GOGC", v, "heap_budget", n)
		return func() {}, nil
	}
	return gctune.Start(n).Stop, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// servePprof exposes the runtime profiles on their own listener, never on the API port.
func servePprof(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Warn("pprof server", "err", err)
	}
}

// loopbackListen reports whether a listen address (host:port) is on loopback only.
func loopbackListen(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return strings.EqualFold(h, "localhost") || ip != nil && ip.IsLoopback()
}
