// Package eventbus fans committed events out over NATS JetStream: it runs an embedded
// NATS server (or connects to an external one), keeps one stream of chronicle events,
// and publishes every log position as exactly one message whose stream sequence is the
// position.
//
// The log stays the truth (DESIGN.md §1): the stream is a copy a consumer may use to be
// woken or to read from, and anything built from it can be rebuilt from the log by
// position. A dead NATS costs lag, never data: the publisher resumes from the stream's
// last sequence and never skips a position.
//
// Stream configuration (created when missing; an existing stream is used as it is once
// its subjects are checked):
//
//   - Subjects "<prefix>.>", file storage, limits retention, discard old, one replica.
//   - Message ids on position 1 only. Every message carries
//     Nats-Expected-Last-Sequence = position-1, which the server checks before storing, so a gap or a second copy is impossible
//     whatever the timing, even with several publishers racing, and a publish retried
//     after a lost ack is refused rather than stored twice. A Nats-Msg-Id as well would
//     add nothing to that, and its deduplication map was a quarter of the embedded
//     server's and the publisher's CPU per event (BenchmarkPublish: 6.2 against 4.5 µs).
//     Only position 1 carries one ("1"): NATS servers before 2.9 do not check an
//     expected last sequence of 0. The Duplicates window is 10s (less if the stream's
//     max age is shorter).
//   - DenyDelete and DenyPurge: consumers rely on stream sequence == log position with
//     no holes. Deleting a message or purging by subject would punch a hole in the
//     middle; Config.MaxAge and Config.MaxBytes bound the stream instead and only ever
//     drop its oldest messages (the sequence numbering is unaffected). To rebuild the
//     stream from scratch, delete the whole stream: the publisher recreates it and
//     republishes from position 1.
//   - AllowDirect: consumers catching up by position can read single messages cheaply.
//   - PersistMode async: the server buffers writes to its message blocks and flushes
//     them in the background instead of one write syscall per message (about a third of
//     the embedded server's CPU per event at concurrency 64). A crash can lose the
//     stream's unflushed tail, as power loss already could with the default mode; the
//     publisher then resumes from the stream's last sequence and republishes the same
//     events at the same sequences from the log.
//
// Who may publish: an embedded server that listens for outside clients (Config.Listen)
// has two users. The node's own in-process connection logs in with a password drawn at
// start (random, held in memory only, never logged), and that user is refused on any
// other kind of connection. A client that connects without credentials becomes a
// read-only user (see ReaderPermissions): it may subscribe to the event subjects and
// read the stream through JetStream consumers, and nothing else; publishing an event
// or changing, purging or deleting the stream is a permission violation.
package eventbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults.
const (
	DefaultStream        = "CHRONICLE_EVENTS"
	DefaultSubjectPrefix = "events"
	DefaultServerName    = "chronicle"
	// DuplicateWindow is the Nats-Msg-Id deduplication window of a stream this package
	// creates. The publisher sends an id with position 1 only (Nats-Expected-Last-Sequence
	// keeps the stream exact), so it holds at most one; it is set because NATS's default
	// (two minutes) is refused on a stream with a shorter max age.
	DuplicateWindow = 10 * time.Second
)

// Bounds on waiting for NATS.
const (
	startTimeout   = 10 * time.Second // embedded server ready for connections
	requestTimeout = 5 * time.Second  // one JetStream API request
	reconnectWait  = 250 * time.Millisecond
)

// ErrClosed is returned by RunPublisher when the bus is closed under it (or before it).
var ErrClosed = errors.New("eventbus: bus closed")

// Config configures a Bus.
type Config struct {
	// DataDir is the JetStream storage of the embedded server (e.g. <data>/nats).
	// Required unless URL is set.
	DataDir string
	// Listen is "" for an embedded server that accepts in-process connections only, or
	// "host:port" to open it to outside consumers (port 0: any free port).
	Listen string
	// URL is an external NATS server (or comma-separated list); when set, no embedded
	// server is started, and Open succeeds even if it does not answer yet.
	URL string
	// Stream is the JetStream stream name (default DefaultStream).
	Stream string
	// SubjectPrefix prefixes every subject (default DefaultSubjectPrefix), see Subject.
	SubjectPrefix string
	// ServerName names the embedded server (the node id); also used in the client name.
	ServerName string
	// MaxAge and MaxBytes bound a stream this package creates (0: unlimited); only the
	// oldest messages are dropped. An existing stream keeps its own limits.
	MaxAge   time.Duration
	MaxBytes int64
	Logger   *slog.Logger
}

// Bus is a connection to NATS (with the embedded server when it runs one) and the
// stream events are published to.
type Bus struct {
	cfg       Config
	log       *slog.Logger
	ns        *server.Server // nil with an external URL
	nc        *nats.Conn
	js        jetstream.JetStream // stream management
	clientURL string
	published atomic.Uint64
	problem   atomic.Pointer[string] // why the publisher publishes nothing, see Problem

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // running publishers

	closeOnce sync.Once
	closeErr  error
}

// Open starts the embedded server when cfg.URL is empty, connects, and makes sure the
// stream exists. With an external URL that does not answer yet, Open still succeeds and
// the publisher creates the stream once NATS is reachable.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.ServerName == "" {
		cfg.ServerName = DefaultServerName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := validStreamName(cfg.Stream); err != nil {
		return nil, err
	}
	if err := validPrefix(cfg.SubjectPrefix); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, done: make(chan struct{}),
		log: cfg.Logger.With("component", "eventbus", "stream", cfg.Stream)}

	opts := []nats.Option{
		nats.Name("chronicle-eventbus/" + cfg.ServerName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// No reconnect buffer: a publish while disconnected fails at once and the
		// publisher backs off and resumes from the stream, instead of queueing blind.
		nats.ReconnectBufSize(-1),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			} else {
				b.log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { b.log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats async error", "err", err)
		}),
	}
	url := cfg.URL
	if url == "" {
		var password string
		if cfg.Listen != "" {
			var err error
			if password, err = randomPassword(); err != nil {
				return nil, err
			}
			opts = append(opts, nats.UserInfo(nodeUser, password))
		}
		ns, err := startServer(cfg, password, b.log)
		if err != nil {
			return nil, err
		}
		b.ns = ns
		if cfg.Listen != "" {
			b.clientURL = ns.ClientURL()
		}
		opts = append(opts, nats.InProcessServer(ns))
	} else {
		b.clientURL = url
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("eventbus: connect to nats: %w", err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(requestTimeout)); err != nil {
		b.Close()
		return nil, fmt.Errorf("eventbus: jetstream: %w", err)
	}
	if b.ns == nil && !nc.IsConnected() {
		b.log.Warn("nats not reachable yet; the publisher will create the stream once it is", "url", nc.Opts.Servers)
		return b, nil
	}
	ectx, cancel := context.WithTimeout(ctx, 2*requestTimeout)
	defer cancel()
	if _, err := b.ensureStream(ectx, b.js); err != nil {
		b.Close()
		return nil, err
	}
	b.log.Info("event bus open", "embedded", b.ns != nil, "client_url", b.clientURL, "subjects", cfg.SubjectPrefix+".>")
	return b, nil
}

// Users of an embedded server that listens for outside clients.
const (
	nodeUser   = "chronicle-node" // the node's in-process connection, password drawn at start
	readerUser = "reader"         // any client connecting without credentials
)

func randomPassword() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("eventbus: draw the nats password: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ReaderPermissions are what a client connecting to the embedded server without
// credentials may do: subscribe to the event subjects and to its inboxes (JetStream
// replies, pull consumer deliveries), and make the JetStream requests a reader of
// stream needs: account and stream info, get a message (directly too), create a
// consumer (ephemeral, ordered or durable), its info, delete it, list consumers, fetch
// the next messages, ack and answer flow control. (Consumers are the readers' own: one
// reader may delete another's, never the stream.) Everything else is refused, in particular
// publishing on the event subjects or an inbox (forged replies to the node), and the
// stream admin API (create, update, delete, purge, delete a message, snapshot, restore).
func ReaderPermissions(stream, prefix string) *server.Permissions {
	api := "$JS.API."
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{
				api + "INFO",
				api + "STREAM.NAMES",
				api + "STREAM.INFO." + stream,
				api + "STREAM.MSG.GET." + stream,
				api + "DIRECT.GET." + stream,
				api + "DIRECT.GET." + stream + ".>",
				api + "CONSUMER.CREATE." + stream,
				api + "CONSUMER.CREATE." + stream + ".>",
				api + "CONSUMER.DURABLE.CREATE." + stream + ".>",
				api + "CONSUMER.INFO." + stream + ".>",
				api + "CONSUMER.DELETE." + stream + ".>", // an ordered consumer removes its own
				api + "CONSUMER.NAMES." + stream,
				api + "CONSUMER.LIST." + stream,
				api + "CONSUMER.MSG.NEXT." + stream + ".>",
				"$JS.ACK." + stream + ".>",
				"$JS.FC." + stream + ".>",
			},
			// Outside the allow list anyway; named so a wider allow list cannot let them in.
			Deny: []string{
				prefix + ".>",
				"_INBOX.>",
				api + "STREAM.CREATE.>",
				api + "STREAM.UPDATE.>",
				api + "STREAM.DELETE.>",
				api + "STREAM.PURGE.>",
				api + "STREAM.MSG.DELETE.>",
				api + "STREAM.SNAPSHOT.>",
				api + "STREAM.RESTORE.>",
			},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{prefix + ".>", "_INBOX.>"},
		},
	}
}

// startServer starts the embedded NATS server with JetStream under cfg.DataDir. When it
// listens for outside clients, the node logs in as nodeUser with password (in-process
// connections only) and everyone else is the read-only readerUser.
func startServer(cfg Config, password string, log *slog.Logger) (*server.Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("eventbus: data dir is required for the embedded server")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("eventbus: create data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("eventbus: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("eventbus: listen address %q: bad port", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // for the server, 0 would mean its default 4222
		}
		opts.Host, opts.Port = host, p
		opts.Users = []*server.User{
			{Username: nodeUser, Password: password,
				AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}}},
			{Username: readerUser, Permissions: ReaderPermissions(cfg.Stream, cfg.SubjectPrefix)},
		}
		opts.NoAuthUser = readerUser
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("eventbus: nats server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(startTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("eventbus: nats server not ready after %s (listen %q)", startTimeout, cfg.Listen)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("eventbus: nats server started without jetstream")
	}
	return ns, nil
}

// streamConfig is the configuration of a stream this package creates.
func (b *Bus) streamConfig() jetstream.StreamConfig {
	dups := DuplicateWindow
	if b.cfg.MaxAge > 0 && b.cfg.MaxAge < dups {
		dups = b.cfg.MaxAge // the server refuses a window longer than the max age
	}
	return jetstream.StreamConfig{
		Name:        b.cfg.Stream,
		Description: "chronicle committed events; stream sequence == log position",
		Subjects:    []string{b.cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		MaxAge:      b.cfg.MaxAge,
		MaxBytes:    nonZero(b.cfg.MaxBytes),
		MaxMsgs:     -1,
		Duplicates:  dups,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
		PersistMode: jetstream.AsyncPersistMode,
	}
}

func nonZero(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

// ensureStream returns the stream, creating it when missing. An existing stream must
// capture "<prefix>.>"; its other settings are left as an operator made them.
func (b *Bus) ensureStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, b.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, b.streamConfig())
		if err == nil {
			b.log.Info("stream created", "subjects", b.cfg.SubjectPrefix+".>")
			return s, nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, b.cfg.Stream) // created concurrently
		}
	}
	if err != nil {
		return nil, fmt.Errorf("eventbus: stream %s: %w", b.cfg.Stream, err)
	}
	want := b.cfg.SubjectPrefix + ".>"
	if subj := s.CachedInfo().Config.Subjects; !slices.Contains(subj, want) {
		return nil, fmt.Errorf("eventbus: stream %s exists with subjects %v, not %q", b.cfg.Stream, subj, want)
	}
	return s, nil
}

// Close stops running publishers, closes the connection and shuts the embedded server
// down. It is safe to call more than once.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.done)
		b.mu.Unlock()
		b.wg.Wait()
		if b.nc != nil {
			b.nc.Close()
		}
		b.shutdownServer()
		b.log.Info("event bus closed", "published", b.Published())
	})
	return b.closeErr
}

func (b *Bus) shutdownServer() {
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// Conn is the bus's NATS connection (in-process for the embedded server).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// ClientURL is what an outside consumer connects to: the embedded server's listen URL,
// the external URL, or "" when the embedded server accepts in-process connections only.
func (b *Bus) ClientURL() string { return b.clientURL }

// Stream is the JetStream stream name.
func (b *Bus) Stream() string { return b.cfg.Stream }

// SubjectPrefix is the prefix of every subject the bus publishes on.
func (b *Bus) SubjectPrefix() string { return b.cfg.SubjectPrefix }

// Server is the embedded NATS server, nil with an external URL.
func (b *Bus) Server() *server.Server { return b.ns }

// Published is the last log position known to be in the stream.
func (b *Bus) Published() uint64 { return b.published.Load() }

// Problem is why the publisher publishes nothing although connected ("" when it
// publishes): the stream is ahead of the log or holds a different history. It says how
// to repair the stream.
func (b *Bus) Problem() string {
	if p := b.problem.Load(); p != nil {
		return *p
	}
	return ""
}

func (b *Bus) setProblem(msg string) {
	if msg == "" {
		b.problem.Store(nil)
		return
	}
	b.problem.Store(&msg)
}

// Connected reports whether the NATS connection is up.
func (b *Bus) Connected() bool { return b.nc != nil && b.nc.IsConnected() }

// notePublished raises Published to pos (several publishers may share a bus).
func (b *Bus) notePublished(pos uint64) {
	for {
		cur := b.published.Load()
		if pos <= cur || b.published.CompareAndSwap(cur, pos) {
			return
		}
	}
}

func validStreamName(name string) error {
	if strings.ContainsAny(name, " \t\r\n.*>/\\") {
		return fmt.Errorf("eventbus: invalid stream name %q", name)
	}
	return nil
}

func validPrefix(p string) error {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("eventbus: invalid subject prefix %q", p)
		}
	}
	return nil
}

// serverLogger routes the embedded server's log to slog: warnings and errors as such,
// notices at debug (the server is chatty at start-up), debug and trace dropped.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(string, ...any)           {}
func (s serverLogger) Tracef(string, ...any)           {}

// JetStreamEnabled reports whether JetStream runs on the embedded server (always true
// with an external server: its JetStream is that server's business).
func (b *Bus) JetStreamEnabled() bool { return b.ns == nil || b.ns.JetStreamEnabled() }

// ReviveJetStream re-enables the embedded server's JetStream after the server disabled
// it, which it does when a write of a stream hits a full disk ("JetStream out of file
// resources, will be DISABLED"). The server keeps running (the node's connection stays
// up); JetStream recovers the stream from its files, and the publisher, which retries
// with backoff, resumes from the stream's last sequence. Call it only once the disk has
// room again. It reports whether it re-enabled JetStream; a no-op while JetStream runs,
// while its shutdown is still in progress, with an external server, or once closed.
func (b *Bus) ReviveJetStream(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// JetStreamConfig is nil only once the shutdown has finished.
	if b.closed || b.ns == nil || b.ns.JetStreamEnabled() || b.ns.JetStreamConfig() != nil {
		return false, nil
	}
	b.log.Warn("re-enabling JetStream, which the embedded server disabled (its disk was full)")
	if err := b.ns.EnableJetStream(&server.JetStreamConfig{StoreDir: b.cfg.DataDir}); err != nil {
		return false, fmt.Errorf("eventbus: re-enable jetstream: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, 2*requestTimeout)
	defer cancel()
	if _, err := b.ensureStream(ectx, b.js); err != nil {
		return true, err
	}
	b.log.Info("JetStream re-enabled; the publisher resumes from the stream's last sequence")
	return true, nil
}
