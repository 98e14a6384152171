// Package nodetest starts real Chronicle nodes for tests: in-process on free ports with
// their own data directories. Every end-to-end test uses it.
package nodetest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/pki"
	"github.com/chronicle-ledger/chronicle/internal/pki/pkitest"
	"github.com/chronicle-ledger/chronicle/node"
)

// Node is a node running in this process.
type Node struct {
	*node.Node
	Client *client.Client
	Config node.Config
	cancel context.CancelFunc
	done   chan error
}

// Option adjusts a node's configuration before it starts.
type Option func(*node.Config)

// WithDataDir runs the node on an existing data directory.
func WithDataDir(dir string) Option { return func(c *node.Config) { c.DataDir = dir } }

// WithTLS runs the node with the cluster TLS in f (its certificate named by its node
// id), and makes its --join URLs https.
func WithTLS(f pkitest.Files) Option {
	return func(c *node.Config) {
		c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = f.CACert, f.Cert(c.NodeID), f.Key(c.NodeID)
		join := make([]string, len(c.Join))
		for i, j := range c.Join {
			join[i] = strings.Replace(j, "http://", "https://", 1)
		}
		c.Join = join
	}
}

// Start runs a node on 127.0.0.1 with OS-chosen ports and a fresh data directory, waits
// until it has a leader, and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Node {
	t.Helper()
	cfg := node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeID: "n1", Logger: Logger()}
	for _, o := range opts {
		o(&cfg)
	}
	return start(t, cfg)
}

// Logger is quiet unless CHRONICLE_TEST_LOG=1.
func Logger() *slog.Logger {
	if os.Getenv("CHRONICLE_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func start(t testing.TB, cfg node.Config) *Node {
	t.Helper()
	tn := Launch(t, cfg)
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer waitCancel()
	if err := tn.WaitReady(waitCtx); err != nil {
		t.Fatalf("node %s not ready: %v", cfg.NodeID, err)
	}
	return tn
}

// Launch starts a node with cfg without waiting for it to be ready (a cluster member
// becomes ready only once the cluster forms). It is stopped when the test ends.
func Launch(t testing.TB, cfg node.Config) *Node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start node %s: %v", cfg.NodeID, err)
	}
	var hc *http.Client
	if cfg.TLSCAFile != "" {
		// An ordinary API client: it trusts the cluster CA and has no certificate.
		tc, err := pki.ClientConfig(cfg.TLSCAFile, "", "")
		if err != nil {
			cancel()
			t.Fatalf("node %s: %v", cfg.NodeID, err)
		}
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	tn := &Node{Node: n, Client: client.New(n.URL(), hc), Config: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(func() { tn.Stop(t) })
	return tn
}

// Stop shuts the node down gracefully; stopping twice is harmless.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		t.Errorf("node stopped with error: %v", err)
	}
}

// Restart stops n and starts a node on the same data directory.
func (n *Node) Restart(t testing.TB) *Node {
	t.Helper()
	n.Stop(t)
	cfg := n.Config
	return start(t, cfg)
}
