package raftstore

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// errTransportClosing answers a heartbeat that arrives while the store is closing.
var errTransportClosing = errors.New("raftstore: closing")

// heartbeatGate wraps the network transport so that Close can wait for heartbeats in
// flight. hashicorp/raft handles heartbeats on the transport's connection goroutines,
// which neither raft.Shutdown nor the transport's Close waits for: one that passed raft's
// shutdown check could still write the term to the log store after it was closed (a
// Pebble "closed" panic seen under the race detector). Every other RPC goes through
// raft's own goroutines, which Shutdown does wait for.
type heartbeatGate struct {
	*raft.NetworkTransport

	mu       sync.Mutex
	closing  bool
	inflight sync.WaitGroup
}

// SetHeartbeatHandler implements raft.Transport, counting the handler's calls.
func (g *heartbeatGate) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.mu.Lock()
		if g.closing {
			g.mu.Unlock()
			rpc.Respond(nil, errTransportClosing)
			return
		}
		g.inflight.Add(1)
		g.mu.Unlock()
		defer g.inflight.Done()
		cb(rpc)
	})
}

// drain refuses heartbeats from now on and waits for those being handled.
func (g *heartbeatGate) drain() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.inflight.Wait()
}
