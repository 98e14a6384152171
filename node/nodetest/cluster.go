package nodetest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/freeport"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// Cluster is a Raft cluster of in-process nodes on fixed free ports, so that a node
// restarted on its data directory keeps its addresses.
type Cluster struct {
	Nodes []*Node
	cfgs  []node.Config
}

// FreeAddr reserves a free 127.0.0.1 port and returns host:port.
func FreeAddr(t testing.TB) string { return freeport.Addr(t) }

// StartCluster starts size nodes (n1..nN) that found a cluster together with
// --bootstrap-expect, and waits until every one of them is ready.
func StartCluster(t testing.TB, size int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{}
	var join []string
	for i := 1; i <= size; i++ {
		cfg := node.Config{NodeID: fmt.Sprintf("n%d", i), DataDir: t.TempDir(), HTTPAddr: FreeAddr(t), RaftAddr: FreeAddr(t),
			BootstrapExpect: size, RaftFaults: raftstore.NewFaults(), Logger: Logger()}
		join = append(join, "http://"+cfg.HTTPAddr)
		c.cfgs = append(c.cfgs, cfg)
	}
	for i := range c.cfgs {
		c.cfgs[i].Join = join
		for _, o := range opts {
			o(&c.cfgs[i])
		}
		c.Nodes = append(c.Nodes, Launch(t, c.cfgs[i]))
	}
	c.WaitReady(t)
	return c
}

// WaitReady waits until every running node is ready.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if n == nil || n.cancel == nil {
			continue
		}
		if err := n.WaitReady(ctx); err != nil {
			t.Fatalf("node %s not ready: %v", n.Config.NodeID, err)
		}
	}
}

// Leader waits for a leader among the running nodes and returns its index.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range c.Nodes {
			if n != nil && n.cancel != nil && n.IsLeader() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader elected within 30s")
	return -1
}

// Stop stops node i (gracefully: in-process nodes cannot be SIGKILLed; the binary tests
// in cmd/chronicle do that).
func (c *Cluster) Stop(t testing.TB, i int) {
	t.Helper()
	c.Nodes[i].Stop(t)
}

// Restart starts node i again on its data directory and addresses.
func (c *Cluster) Restart(t testing.TB, i int) *Node {
	t.Helper()
	c.Nodes[i].Stop(t)
	c.Nodes[i] = Launch(t, c.cfgs[i])
	return c.Nodes[i]
}

// Wipe stops node i, deletes its data directory, and starts it again as a new node that
// must join the running cluster (and catch up by snapshot).
func (c *Cluster) Wipe(t testing.TB, i int) *Node {
	t.Helper()
	c.Nodes[i].Stop(t)
	if err := os.RemoveAll(c.cfgs[i].DataDir); err != nil {
		t.Fatal(err)
	}
	c.cfgs[i].BootstrapExpect = 0
	c.Nodes[i] = Launch(t, c.cfgs[i])
	return c.Nodes[i]
}

// Isolate cuts node i's Raft traffic to and from every other node.
func (c *Cluster) Isolate(i int) {
	for j := range c.cfgs {
		if j == i {
			continue
		}
		c.cfgs[i].RaftFaults.Block(c.cfgs[j].RaftAddr)
		c.cfgs[j].RaftFaults.Block(c.cfgs[i].RaftAddr)
	}
}

// Heal restores all Raft traffic.
func (c *Cluster) Heal() {
	for _, cfg := range c.cfgs {
		cfg.RaftFaults.Heal()
	}
}

// Config returns node i's configuration.
func (c *Cluster) Config(i int) node.Config { return c.cfgs[i] }
