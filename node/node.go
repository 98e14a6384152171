// Package node builds a Chronicle node from its configuration: it opens the event store,
// mounts the HTTP API and runs them until told to stop. It is the one package that knows
// every adapter.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/eventbus"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/dirlock"
	"github.com/chronicle-ledger/chronicle/internal/diskguard"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
	"github.com/chronicle-ledger/chronicle/internal/pki"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// Version is the build's version. It is a variable only so that a release build can
// stamp it (go build -ldflags "-X github.com/chronicle-ledger/chronicle/node.Version=...",
// as make dist and deploy/Dockerfile do); nothing assigns it at run time.
var Version = "0.2.0"

// Event store kinds (Config.Store).
const (
	StoreRaft = "raft"
	StoreSQL  = "sql"
)

// Config is a node's configuration; cmd/chronicle fills it from flags and environment.
type Config struct {
	// Store selects the event store: StoreRaft (default: Raft + Pebble under DataDir) or
	// StoreSQL (EventStoreURL, CockroachDB or PostgreSQL).
	Store string
	// EventStoreURL is the SQL event store's connection string (Store == StoreSQL).
	EventStoreURL string
	// Role is what this process serves in the SQL topology: httpapi.RoleAll (default),
	// RoleCommand or RoleQuery. A Raft node always serves everything.
	Role     string
	DataDir  string
	HTTPAddr string
	NodeID   string
	RaftAddr string
	// CORSOrigins lists the browser origins allowed to call the API.
	CORSOrigins []string
	// AllowedHosts lists the Host names (optionally host:port) the API answers to
	// besides the loopback names and the advertise URL's host. Empty: a loopback
	// listener answers to those alone, any other listener to every Host (see apiHosts).
	AllowedHosts []string
	// IdempotencyWindow is how long idempotency keys are remembered (commit time).
	IdempotencyWindow time.Duration
	// DefaultCurrency is what create-account takes when the request names no currency
	// (default USD); it is resolved into the command when accepted.
	DefaultCurrency string
	// SnapshotThreshold overrides the entries between Raft snapshots (0: default).
	SnapshotThreshold uint64
	// ScrubInterval is how often the background scrub re-reads the Raft log and the
	// state DB (0: raftstore.DefaultScrubInterval; negative: never).
	ScrubInterval time.Duration
	// HoldSweepInterval is how often the leader (SQL mode: the hold-sweep lease holder)
	// looks for pending transfers past their deadline (0: holdsweep.DefaultInterval;
	// negative: never, expiry is then only lazy).
	HoldSweepInterval time.Duration
	// TrailingLogs overrides the entries kept behind a snapshot (0: default).
	TrailingLogs uint64
	// Pebble tunes the state DB of the Raft store (zero fields: defaults).
	Pebble pebbleutil.Tuning
	// ReadModel selects the query-side view: "" or "pebble" (embedded) or a postgres://
	// URL. Embedded, a Raft node serves reads from its state DB; a SQL-store query
	// process projects into a Pebble view under DataDir.
	ReadModel string
	// NATSListen opens the embedded NATS server to outside consumers ("host:port");
	// empty keeps it in-process only.
	NATSListen string
	// NATSURL uses an external NATS server instead of the embedded one.
	NATSURL string
	// NATSStream and NATSSubjectPrefix name the JetStream stream and its subjects
	// (defaults: CHRONICLE_EVENTS and events, the original system's subjects).
	NATSStream        string
	NATSSubjectPrefix string
	// NATSMaxAge and NATSMaxBytes bound a JetStream stream this node creates (defaults
	// DefaultNATSMaxAge, DefaultNATSMaxBytes; negative: unlimited). The log is the truth:
	// a consumer that falls further behind resumes from GET /events.
	NATSMaxAge   time.Duration
	NATSMaxBytes int64
	// Join lists API URLs of cluster members to join (or, with BootstrapExpect, to
	// found a cluster with).
	Join []string
	// BootstrapExpect is the number of founding members to wait for before forming a
	// new cluster together (0 or 1: a node without Join founds a one-node cluster).
	BootstrapExpect int
	// AdvertiseURL is the API URL other nodes use for this node (default: the listener).
	AdvertiseURL string
	// JoinCatchUpTimeout bounds how long a joining node may take, as a non-voter, to
	// catch up with the log before the leader promotes it to voter; a node that does not
	// is removed again and its join fails (0: raftstore.DefaultCatchUpTimeout).
	JoinCatchUpTimeout time.Duration
	// MaxAmount bounds every amount of a command, in major units of its currency
	// (default httpapi.DefaultMaxAmount); checked when a command is accepted.
	MaxAmount string
	// MaxStreams and MaxStreamsPerClient cap open event streams in total and per remote
	// IP; MaxInflightCommands caps command requests executing at once (0: defaults).
	MaxStreams          int
	MaxStreamsPerClient int
	MaxInflightCommands int
	// ReadTimeout bounds reading a request body; WriteTimeout writing a response (and
	// each write of an event stream). 0: the httpapi defaults.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// BootstrapTokenFile holds the first admin token (made there when the file does not
	// exist). The node then requires tokens, and a cluster it founds starts with that
	// token; on a cluster that ever had a token it only turns authentication on.
	BootstrapTokenFile string
	// Insecure lets a node with listeners other machines can reach run without
	// authentication (protected mode refuses otherwise).
	Insecure bool
	// RateLimit and RateBurst bound requests per second per token (0: unlimited).
	RateLimit float64
	RateBurst int
	// Cluster security: mutual TLS against a cluster CA. All three or none. With them,
	// Raft runs over TLS 1.3 requiring a CA-signed peer certificate, the API serves
	// HTTPS with the same certificate (client certificates asked for, not required),
	// calls to peers' APIs present it, and membership changes need it.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// DiskReserve is the free space kept on the data dir's filesystems: a percentage
	// ("1%") or a size ("256MiB"); "" is diskguard.DefaultReserve, the smaller of 1 % and
	// 256 MiB; "0" turns the guard off. Below it writes get 507 insufficient_storage and
	// the node reports not ready; reads go on (Raft store only).
	DiskReserve string
	// DisableMetrics turns off GET /metrics and everything recorded for it (serve
	// --metrics=false); by default a node keeps Prometheus metrics in its own registry.
	DisableMetrics bool
	// RaftFaults injects network partitions into Raft traffic (tests only).
	RaftFaults *raftstore.Faults
	// WrapHandler wraps the HTTP handler, to inject faults (tests only).
	WrapHandler func(http.Handler) http.Handler
	Logger      *slog.Logger
}

// Defaults of the JetStream stream's limits.
const (
	DefaultNATSMaxAge   = 7 * 24 * time.Hour
	DefaultNATSMaxBytes = 1 << 30
)

// busConfig is the event bus's configuration for this node.
func (c Config) busConfig() eventbus.Config {
	limit := func(v, def int64) int64 {
		switch {
		case v < 0:
			return 0
		case v == 0:
			return def
		}
		return v
	}
	return eventbus.Config{DataDir: filepath.Join(c.DataDir, "nats"), Listen: c.NATSListen, URL: c.NATSURL, Stream: c.NATSStream,
		SubjectPrefix: c.NATSSubjectPrefix, ServerName: c.NodeID, Logger: c.Logger,
		MaxAge: time.Duration(limit(int64(c.NATSMaxAge), int64(DefaultNATSMaxAge))), MaxBytes: limit(c.NATSMaxBytes, DefaultNATSMaxBytes)}
}

// Defaults fills unset fields with the embedded single-node defaults.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:4000"
	}
	if c.NodeID == "" {
		c.NodeID = "n1"
	}
	if c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:4001"
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 24 * time.Hour
	}
	if c.DefaultCurrency == "" {
		c.DefaultCurrency = "USD"
	}
	if c.Store == "" {
		c.Store = StoreRaft
	}
	if c.Role == "" {
		c.Role = httpapi.RoleAll
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.JoinCatchUpTimeout <= 0 {
		c.JoinCatchUpTimeout = raftstore.DefaultCatchUpTimeout
	}
}

// joinTimeout bounds one join request, end to end: the probe, the catch-up wait and the
// configuration changes around it.
func (c *Config) joinTimeout() time.Duration { return c.JoinCatchUpTimeout + 30*time.Second }

// Node is a running Chronicle node.
type Node struct {
	cfg Config
	log *slog.Logger
	// store is the Raft store (nil in SQL mode); sql the SQL one (nil in Raft mode);
	// events whichever of the two this node runs on.
	store  *raftstore.Store
	sql    *sqlSide
	events eventSource
	proj   *projector.Projector
	bus    *eventbus.Bus
	api    *httpapi.API
	ln     net.Listener
	srv    *http.Server
	peers  *http.Client
	tls    *pki.Peer // nil: plain HTTP and TCP
	// disk refuses writes below the free-space reserve (nil: off, or the SQL store).
	disk *diskguard.Guard
	// bootSecret is the bootstrap admin token ("" without one); the node also presents
	// it on its own calls to peers (to join a cluster without a client certificate).
	bootSecret string
	// repairing: the data directory holds chronicle repair's marker (RepairFile).
	repairing bool
	// metrics is the node's Prometheus registry and recorders (nil: --metrics=false).
	metrics *metrics.Set
	// dirLock holds the data directory for this process (Raft mode) until Run returns.
	dirLock *dirlock.Lock
}

// New opens the node's store and binds its HTTP listener; Run serves.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg.Defaults()
	cur, err := chronicle.LookupCurrency(cfg.DefaultCurrency)
	if err != nil {
		return nil, fmt.Errorf("node: default currency: %w", err)
	}
	cfg.DefaultCurrency = cur.Code
	if _, err := httpapi.ParseMaxAmount(chronicle.Decimal(cfg.MaxAmount)); cfg.MaxAmount != "" && err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID)}
	if !cfg.DisableMetrics {
		n.metrics = metrics.New(Version)
	}
	if n.tls, err = loadTLS(cfg); err != nil {
		return nil, err
	}
	if cfg.BootstrapTokenFile != "" {
		if n.bootSecret, err = bootstrapSecret(cfg.BootstrapTokenFile, n.log); err != nil {
			return nil, err
		}
	}
	switch cfg.Store {
	case StoreRaft:
		if cfg.Role != httpapi.RoleAll {
			return nil, fmt.Errorf("node: role %q needs --store sql; a Raft node serves every role", cfg.Role)
		}
		if err := checkRaftProtected(cfg); err != nil {
			return nil, err
		}
		if n.repairing, err = checkRepair(&cfg); err != nil {
			return nil, err
		}
		n.cfg = cfg
	case StoreSQL:
		return newSQL(ctx, n)
	default:
		return nil, fmt.Errorf("node: store %q: want raft or sql", cfg.Store)
	}
	// No overall timeout: every call to a peer carries its own deadline, and a join
	// waits for the joining node to catch up, far longer than any other call.
	n.peers = &http.Client{}
	if n.tls != nil {
		n.peers.Transport = &http.Transport{TLSClientConfig: n.tls.HTTPClient(), IdleConnTimeout: time.Minute}
	}
	// Before any store opens it: a second process gets a message naming the directory
	// and the holder instead of a store's "resource temporarily unavailable".
	if n.dirLock, err = dirlock.Acquire(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	opened := false
	defer func() {
		if !opened {
			_ = n.dirLock.Release()
		}
	}()
	if n.disk, err = newDiskGuard(cfg, n.log); err != nil {
		return nil, err
	}
	store, err := raftstore.Open(raftstore.Config{
		DataDir: filepath.Join(cfg.DataDir), NodeID: cfg.NodeID, RaftAddr: cfg.RaftAddr,
		Bootstrap: len(cfg.Join) == 0, IdempotencyWindow: cfg.IdempotencyWindow,
		SnapshotThreshold: cfg.SnapshotThreshold, ScrubInterval: cfg.ScrubInterval, TrailingLogs: cfg.TrailingLogs, Pebble: cfg.Pebble, Faults: cfg.RaftFaults, Logger: cfg.Logger,
		Progress: n.joinProgress, CatchUpTimeout: cfg.JoinCatchUpTimeout,
		TLS: n.raftTLS(), WriteGuard: n.disk.Check, Metrics: n.raftMetrics(),
	})
	if err != nil {
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	n.store, n.events = store, store
	if store.HasState() {
		n.clearRepair()
	}
	if err := checkProtected(cfg, func() (bool, error) {
		list, err := store.Tokens(ctx)
		return len(list) > 0, err
	}); err != nil {
		_ = store.Close()
		return nil, err
	}
	// Embedded, the state DB is the read model: no projector, no second copy of the log.
	var reads chronicle.ReadModel = store
	closeView := func() {}
	if embeddedReadModel(cfg.ReadModel) {
		dropPebbleView(cfg.DataDir, n.log)
	} else {
		view, err := openView(ctx, cfg)
		if err != nil {
			_ = store.Close()
			return nil, err
		}
		n.proj, reads = projector.New(store, view, cfg.Logger), view
		closeView = func() { _ = view.Close() }
	}
	n.bus, err = eventbus.Open(ctx, cfg.busConfig())
	if err != nil {
		closeView()
		_ = store.Close()
		return nil, fmt.Errorf("node: event bus: %w", err)
	}
	n.api = httpapi.New(n.apiConfig(httpapi.Config{Store: store, Tokens: store, Reads: reads, Node: n, Cluster: n, Backup: n.openBackup}))
	if err := n.registerMetrics(); err != nil {
		_ = n.bus.Close()
		closeView()
		_ = store.Close()
		return nil, err
	}
	ln, err := n.listen()
	if err != nil {
		_ = n.bus.Close()
		closeView()
		_ = store.Close()
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
	}
	n.ln = ln
	n.srv = n.httpServer()
	opened = true
	return n, nil
}

// apiHosts is the Host policy handed to the API. DNS rebinding aims at services on
// loopback, which trust the machine's own browser: a loopback listener (the default)
// answers only to the loopback names and its advertise URL's host, plus --allowed-hosts.
// A listener on another address is meant to be reached by whatever name its network
// gives it (compose service names, load balancers), so it answers to any Host unless
// --allowed-hosts names them; then the advertise URL's host is added, as peers forward
// to it. nil accepts any Host.
func apiHosts(cfg Config) []string {
	if len(cfg.AllowedHosts) == 0 && !loopbackAddr(cfg.HTTPAddr) {
		return nil
	}
	hosts := append([]string{"localhost"}, cfg.AllowedHosts...)
	if u, err := url.Parse(cfg.AdvertiseURL); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	if h, _, err := net.SplitHostPort(cfg.HTTPAddr); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// loopbackAddr reports whether a listen address (host:port) is on loopback only.
func loopbackAddr(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// apiConfig completes c with the node's settings.
func (n *Node) apiConfig(c httpapi.Config) httpapi.Config {
	cfg := n.cfg
	c.Role, c.CORSOrigins, c.DefaultCurrency, c.Logger, c.Version = cfg.Role, cfg.CORSOrigins, cfg.DefaultCurrency, cfg.Logger, Version
	c.AllowedHosts = apiHosts(cfg)
	c.MaxAmount = chronicle.Decimal(cfg.MaxAmount)
	c.MaxStreams, c.MaxStreamsPerClient, c.MaxInflightCommands = cfg.MaxStreams, cfg.MaxStreamsPerClient, cfg.MaxInflightCommands
	c.BodyReadTimeout, c.WriteTimeout = cfg.ReadTimeout, cfg.WriteTimeout
	c.JoinTimeout = cfg.joinTimeout()
	if n.tls != nil {
		c.PeerTLS = n.tls.HTTPClient()
	}
	c.AuthRequired, c.RateLimit, c.RateBurst = cfg.BootstrapTokenFile != "", cfg.RateLimit, cfg.RateBurst
	c.Metrics = n.metrics
	return c
}

// loadTLS reads the cluster TLS files: nil when none is configured, an error naming
// what is missing or unreadable when only some are, or they do not belong together.
func loadTLS(cfg Config) (*pki.Peer, error) {
	files := []struct{ flag, path string }{{"--tls-ca", cfg.TLSCAFile}, {"--tls-cert", cfg.TLSCertFile}, {"--tls-key", cfg.TLSKeyFile}}
	var given, missing []string
	for _, f := range files {
		if f.path != "" {
			given = append(given, f.flag)
		} else {
			missing = append(missing, f.flag)
		}
	}
	switch {
	case len(given) == 0:
		return nil, nil
	case len(missing) > 0:
		return nil, fmt.Errorf("node: TLS needs --tls-ca, --tls-cert and --tls-key together; %s given without %s (make them with chronicle certs)",
			strings.Join(given, ", "), strings.Join(missing, ", "))
	}
	p, err := pki.LoadPeer(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return p, nil
}

// raftTLS is the Raft transport's TLS, nil without cluster TLS.
func (n *Node) raftTLS() *raftstore.TLSConfig {
	if n.tls == nil {
		return nil
	}
	return &raftstore.TLSConfig{Server: n.tls.RaftServer(), Client: n.tls.RaftClient()}
}

// listen binds the API's listener: TLS when the cluster has it.
func (n *Node) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil || n.tls == nil {
		return ln, err
	}
	return tls.NewListener(ln, n.tls.HTTPServer()), nil
}

// httpServer builds the HTTP server. It sets no ReadTimeout or WriteTimeout: those would
// end event streams (and an expired read deadline cancels a request's context); the API
// sets per-request deadlines instead (a body must arrive within ReadTimeout, a response
// be written within WriteTimeout, each stream write within WriteTimeout).
func (n *Node) httpServer() *http.Server {
	var h http.Handler = n.api
	if n.cfg.WrapHandler != nil {
		h = n.cfg.WrapHandler(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if n.tls != nil {
		// Failed handshakes (a browser that does not trust the CA, a scanner) go to the
		// node's log rather than to stderr through the log package.
		srv.ErrorLog = slog.NewLogLogger(n.log.With("component", "http").Handler(), slog.LevelDebug)
	}
	return srv
}

// API exposes the node's HTTP API (for tests: its stream counters).
func (n *Node) API() *httpapi.API { return n.api }

// URL is the base URL the node serves on.
func (n *Node) URL() string {
	if n.tls != nil {
		return "https://" + n.ln.Addr().String()
	}
	return "http://" + n.ln.Addr().String()
}

// Store exposes the event store (for tests and tools in this binary).
func (n *Node) Store() *raftstore.Store { return n.store }

// Run serves HTTP until ctx ends, then shuts down gracefully: in-flight requests finish,
// Raft stops, and the stores close.
func (n *Node) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- n.srv.Serve(n.ln) }()
	projCtx, stopProj := context.WithCancel(context.Background())
	sqlDone := make(chan struct{})
	go func() {
		defer close(sqlDone)
		if n.sql != nil {
			n.sql.run(projCtx)
		}
	}()
	projDone := make(chan error, 1)
	wake, stopWake := n.events.Changes()
	go func() {
		if n.proj == nil {
			projDone <- nil
			return
		}
		projDone <- n.proj.Run(projCtx, wake)
	}()
	pubDone := make(chan error, 1)
	pubWake, stopPubWake := n.events.Changes()
	go func() { pubDone <- n.publish(projCtx, pubWake) }()
	diskDone := make(chan struct{})
	go func() {
		defer close(diskDone)
		n.disk.Run(projCtx, func(st diskguard.State) { n.afterDiskCheck(projCtx, st) })
	}()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		n.sweepHolds(projCtx)
	}()
	clusterDone := make(chan struct{})
	go func() {
		defer close(clusterDone)
		if n.store != nil {
			bootDone := make(chan struct{})
			go func() {
				defer close(bootDone)
				n.bootstrapToken(projCtx, n.store, n.store.IsLeader)
			}()
			n.form(projCtx)
			n.leadership(projCtx)
			<-bootDone
		} else {
			n.bootstrapToken(projCtx, n.sql, n.sql.open)
		}
	}()
	if n.store != nil {
		n.log.Info("chronicle node serving", "url", n.URL(), "data_dir", n.cfg.DataDir, "raft_addr", n.store.RaftAddr())
	} else {
		n.log.Info("chronicle node serving", "url", n.URL(), "store", "sql", "role", n.cfg.Role)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	n.api.CloseStreams()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(shutdownCtx); err != nil {
		n.log.Warn("http shutdown", "err", err)
		_ = n.srv.Close()
	}
	stopProj()
	<-clusterDone
	<-diskDone
	<-sweepDone
	<-sqlDone
	stopWake()
	stopPubWake()
	projErr := <-projDone
	pubErr := <-pubDone
	var viewErr error
	if n.proj != nil {
		viewErr = n.proj.View().Close()
	}
	closeErr := errors.Join(projErr, pubErr, viewErr, n.bus.Close(), n.events.Close())
	_ = n.dirLock.Release() // after the stores closed: the next process may open them
	n.log.Info("chronicle node stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("node: serve: %w", serveErr), closeErr)
	}
	return closeErr
}

// Ready implements httpapi.Node: a node is ready when a leader is known and its state
// machine is healthy.
func (n *Node) Ready(ctx context.Context) error {
	if n.sql != nil {
		// NATS is fan-out only: its outage shows in the status, never in readiness.
		return n.sql.health()
	}
	st := n.store.Status()
	if st.StorageFault != "" {
		return errors.New(st.StorageFault)
	}
	if st.Fatal != "" {
		return errors.New("state machine stopped: " + st.Fatal)
	}
	if ds := n.disk.State(); ds.Low {
		return errors.New(ds.Message())
	}
	if st.Leader == "" {
		return errors.New("no raft leader")
	}
	if !n.store.Ready() {
		return errors.New("catching up with the raft log")
	}
	return nil
}

// Status implements httpapi.Node.
func (n *Node) Status() any {
	out := map[string]any{"version": Version, "role": n.cfg.Role,
		"nats": n.natsStatus()}
	if n.store != nil {
		out["raft"] = n.store.Status()
		if n.disk != nil {
			out["disk"] = n.disk.State()
		}
	} else {
		out["store"] = "sql"
		out["event_store"] = n.sql.status()
	}
	if n.proj != nil || n.store != nil {
		out["projector"] = n.ViewStatus()
	}
	return out
}

// ViewStatus is the read model's progress as status and /cluster report it. The
// embedded read model is the state DB, so it is at the applied head by construction:
// it reports no lag (the field stays, in the projector's shape, for the dashboard).
func (n *Node) ViewStatus() projector.Status {
	if n.proj != nil {
		return n.proj.Status()
	}
	if n.store == nil {
		return projector.Status{}
	}
	pos, _ := n.store.Position(context.Background()) // never fails: the head is in memory
	return projector.Status{View: embeddedViewName, Position: pos, Head: pos}
}

// embeddedViewName names the state DB as a read model in status and logs.
const embeddedViewName = "embedded"

// WaitView implements httpapi.Node.
func (n *Node) WaitView(ctx context.Context, pos uint64) error {
	if n.proj != nil {
		return n.proj.WaitPosition(ctx, pos)
	}
	if n.store != nil {
		return n.store.WaitApplied(ctx, pos) // the state DB is the read model
	}
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "this process keeps no read model (role %s)", n.cfg.Role)
}

// Changes implements httpapi.Node.
func (n *Node) Changes() (<-chan struct{}, func()) { return n.events.Changes() }

// natsStatus is the bus's part of Status; "problem" is set while the publisher
// publishes nothing because the stream diverged from (or is ahead of) the log.
func (n *Node) natsStatus() map[string]any {
	st := map[string]any{"connected": n.bus.Connected(), "stream": n.bus.Stream(), "published": n.bus.Published(), "url": n.bus.ClientURL(),
		"jetstream": n.bus.JetStreamEnabled()}
	if p := n.bus.Problem(); p != "" {
		st["problem"] = p
	}
	return st
}

// Bus exposes the node's event bus (for tests).
func (n *Node) Bus() *eventbus.Bus { return n.bus }

// Projector exposes the node's projector (for tests and status); nil on a Raft node
// with the embedded read model, which needs none.
func (n *Node) Projector() *projector.Projector { return n.proj }

// embeddedReadModel reports whether rm (Config.ReadModel) selects the embedded read model.
func embeddedReadModel(rm string) bool { return rm == "" || rm == "pebble" }

// pebbleViewDir is where the embedded Pebble view lives: a SQL-store query process's
// read model, and a Raft node's before the state DB served its reads.
func pebbleViewDir(dataDir string) string { return filepath.Join(dataDir, "views", "pebble") }

// dropPebbleView deletes the Pebble view an earlier build of a Raft node kept beside the
// state DB. It was derived from the log alone and nothing reads it any more; left in
// place it would only hold a second copy of every event. An earlier build started on
// this directory again rebuilds it from the log. Failing to delete it costs disk space,
// not correctness, so it is logged, not fatal.
func dropPebbleView(dataDir string, log *slog.Logger) {
	dir := pebbleViewDir(dataDir)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("could not delete the old embedded Pebble view (the state DB serves reads now); delete it by hand", "dir", dir, "err", err)
		return
	}
	_ = os.Remove(filepath.Dir(dir)) // only when empty
	log.Info("deleted the old embedded Pebble view: the state DB serves reads now", "dir", dir)
}

// openView opens the configured read model for a projector to maintain.
func openView(ctx context.Context, cfg Config) (projector.View, error) {
	switch {
	case embeddedReadModel(cfg.ReadModel):
		v, err := projector.OpenPebbleView(pebbleViewDir(cfg.DataDir), cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		return v, nil
	case strings.HasPrefix(cfg.ReadModel, "postgres://"), strings.HasPrefix(cfg.ReadModel, "postgresql://"):
		return openPostgresView(ctx, cfg)
	default:
		return nil, fmt.Errorf("node: read model %q: want pebble or a postgres:// URL", cfg.ReadModel)
	}
}

// WaitApplied implements httpapi.Node.
func (n *Node) WaitApplied(ctx context.Context, pos uint64) error {
	return n.events.WaitApplied(ctx, pos)
}

// WaitReady blocks until the node can take commands.
func (n *Node) WaitReady(ctx context.Context) error {
	if n.sql != nil {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n.sql.health() != nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for the event store: %w (last: %v)", ctx.Err(), n.sql.health())
			case <-tick.C:
			}
		}
		return nil
	}
	return n.store.WaitReady(ctx)
}

var _ httpapi.Node = (*Node)(nil)
var _ chronicle.EventStore = (*raftstore.Store)(nil)

// publish runs the NATS publisher. Into its own embedded server every node publishes its
// own copy of the log (any node's stream holds every event). Into an external NATS shared
// by the cluster only the leader publishes: it runs while this node leads and stops when
// it loses leadership, and the next leader resumes from the stream's last sequence.
func (n *Node) publish(ctx context.Context, wake <-chan struct{}) error {
	if n.sql != nil {
		switch {
		case n.cfg.Role == httpapi.RoleQuery:
			return nil // command processes publish; a query process only reads
		case n.cfg.NATSURL == "":
			return n.bus.RunPublisher(ctx, n.sql, wake) // its own embedded server
		}
		// A NATS shared by the topology: whoever holds the publisher lease publishes. A
		// stale holder is harmless (the stream's expected-last-sequence check refuses it).
		var held atomic.Bool
		go n.sql.holdLease(ctx, "nats-publisher/"+n.bus.Stream(), &held)
		return n.publishWhile(ctx, wake, n.sql, held.Load)
	}
	if n.cfg.NATSURL == "" {
		return n.bus.RunPublisher(ctx, n.store, wake)
	}
	return n.publishWhile(ctx, wake, n.store, n.store.IsLeader)
}

// publishWhile runs the publisher from src whenever entitled says so, stopping it when
// that ends; the next entitled publisher resumes from the stream's last sequence.
func (n *Node) publishWhile(ctx context.Context, wake <-chan struct{}, src eventbus.Source, entitled func() bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for !entitled() {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		leadCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.bus.RunPublisher(leadCtx, src, wake) }()
		for entitled() && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		stop()
		if err := <-done; err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// newDiskGuard builds the free-space guard of a Raft node's data dir (nil when
// --disk-reserve is 0 or the platform cannot measure free space). raft/, state/, events/ and nats/
// may be on one filesystem or on several (mounts); each is watched.
func newDiskGuard(cfg Config, log *slog.Logger) (*diskguard.Guard, error) {
	reserve, err := diskguard.ParseReserve(cfg.DiskReserve)
	if err != nil {
		return nil, fmt.Errorf("node: --disk-reserve: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: create data dir: %w", err)
	}
	dirs := []string{cfg.DataDir}
	for _, sub := range []string{"raft", "state", "events", "nats"} {
		dirs = append(dirs, filepath.Join(cfg.DataDir, sub))
	}
	return diskguard.New(diskguard.Config{Dirs: dirs, Reserve: reserve, Logger: log}), nil
}

// afterDiskCheck runs after each free-space measurement: once the disk has room again,
// it re-enables the embedded JetStream if a full disk made the server disable it.
func (n *Node) afterDiskCheck(ctx context.Context, st diskguard.State) {
	if st.Low || n.bus.JetStreamEnabled() {
		return
	}
	if _, err := n.bus.ReviveJetStream(ctx); err != nil {
		n.log.Warn("JetStream could not be re-enabled yet; retrying", "err", err)
	}
}
