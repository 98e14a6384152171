package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/freeport"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// TestDataDirInUse: while a node runs on a data directory (in this test's process), the
// binary started on the same directory as serve, repair or cluster recover says the
// directory is in use by this process, naming its pid, and exits 1 having changed
// nothing; the running node goes on serving.
func TestDataDirInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildChronicle(t, ctx)
	dir := t.TempDir()
	n := nodetest.Start(t, nodetest.WithDataDir(dir))
	want := "data directory " + dir + " is in use by another chronicle process (pid " + strconv.Itoa(os.Getpid()) + ")"
	for _, args := range [][]string{
		{"serve", "--data-dir", dir, "--http-addr", freeport.Addr(t), "--raft-addr", freeport.Addr(t)},
		{"repair", "--data-dir", dir, "--node-id", "n1", "--join", "http://" + freeport.Addr(t)},
		{"cluster", "recover", "--data-dir", dir, "--peers", "n1=" + freeport.Addr(t)},
	} {
		stdout, stderr, code := runChronicle(t, ctx, bin, args...)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("chronicle %s: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", args[0], code, stdout, stderr, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, raftstore.PeersFile)); err == nil {
		t.Error("cluster recover wrote peers.json into a running node's directory")
	}
	if err := n.Ready(ctx); err != nil {
		t.Errorf("the running node is not ready after the refused starts: %v", err)
	}
}
