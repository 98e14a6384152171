package raftstore

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Faults cuts this node's Raft traffic to chosen peers: the fault injection partition
// tests use (as a proxy or iptables would, without needing either). A connection to a
// blocked peer fails on its next read or write, and new dials to it are refused. Block
// a peer on both sides for a symmetric partition.
type Faults struct {
	mu      sync.Mutex
	blocked map[string]bool
}

// NewFaults returns a fault injector that blocks nothing.
func NewFaults() *Faults { return &Faults{blocked: map[string]bool{}} }

// Block cuts traffic to the given Raft addresses.
func (f *Faults) Block(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		f.blocked[a] = true
	}
}

// Heal restores traffic to every peer.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.blocked)
}

func (f *Faults) isBlocked(addr string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[addr]
}

var errPartitioned = errors.New("raftstore: peer is partitioned away (fault injection)")

// faultyLayer is a raft.StreamLayer over TCP that honours Faults.
type faultyLayer struct {
	net.Listener
	advertise net.Addr
	faults    *Faults
}

var _ raft.StreamLayer = (*faultyLayer)(nil)

func (l *faultyLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.Listener.Addr()
}

func (l *faultyLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.faults.isBlocked(string(addr)) {
		return nil, errPartitioned
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	return &faultyConn{Conn: c, peer: string(addr), faults: l.faults}, nil
}

type faultyConn struct {
	net.Conn
	peer   string
	faults *Faults
}

func (c *faultyConn) Read(b []byte) (int, error) {
	if c.faults.isBlocked(c.peer) {
		_ = c.Conn.Close()
		return 0, errPartitioned
	}
	return c.Conn.Read(b)
}

func (c *faultyConn) Write(b []byte) (int, error) {
	if c.faults.isBlocked(c.peer) {
		_ = c.Conn.Close()
		return 0, errPartitioned
	}
	return c.Conn.Write(b)
}
