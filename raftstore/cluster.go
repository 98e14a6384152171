package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// NodeMeta is what the cluster knows of a node beyond its Raft address: where its API
// is, so that followers can forward to the leader.
type NodeMeta struct {
	ID     string `json:"id"`
	APIURL string `json:"api_url"`
}

// nodeMetaVersion is the first byte of a NodeMeta's binary layout.
const nodeMetaVersion = 1

// MarshalBinary encodes m: version u8 = 1 | id (u32 length, bytes) | api_url (same).
func (m NodeMeta) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 9+len(m.ID)+len(m.APIURL))
	b = append(b, nodeMetaVersion)
	for _, s := range []string{m.ID, m.APIURL} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (m *NodeMeta) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || data[0] != nodeMetaVersion {
		return fmt.Errorf("node metadata: not format version %d", nodeMetaVersion)
	}
	rest := data[1:]
	var fields [2]string
	for i := range fields {
		if len(rest) < 4 || uint64(binary.BigEndian.Uint32(rest)) > uint64(len(rest)-4) {
			return errors.New("node metadata: truncated")
		}
		n := binary.BigEndian.Uint32(rest)
		fields[i], rest = string(rest[4:4+n]), rest[4+n:]
	}
	if len(rest) != 0 {
		return errors.New("node metadata: trailing bytes")
	}
	m.ID, m.APIURL = fields[0], fields[1]
	return nil
}

// Server is one member of the Raft configuration.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIURL   string `json:"api_url,omitempty"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Register replicates this node's API URL (or another node's, when the leader admits it)
// so that every node can find every other's API.
func (s *Store) Register(ctx context.Context, m NodeMeta) error {
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	if err := s.writeGuard(); err != nil {
		return err
	}
	data, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	f := s.raft.Apply(chronicle.EncodeEntry(chronicle.EntryNodeMeta, data), timeoutOf(ctx, s.cfg.ApplyTimeout))
	if err := s.await(f); err != nil {
		return s.applyError(err)
	}
	return nil
}

// NodeMeta returns what the cluster registered for node id.
func (s *Store) NodeMeta(id string) (NodeMeta, bool, error) {
	var m NodeMeta
	var ok bool
	err := s.read(func(rd reader) error {
		var err error
		ok, err = pebbleutil.GetBinary(rd.r, nodeKey(id), &m)
		return err
	})
	return m, ok, err
}

// Servers lists the Raft configuration with each server's registered API URL.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftstore: read configuration: %w", err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Server
	for _, srv := range f.Configuration().Servers {
		m, _, err := s.NodeMeta(string(srv.ID))
		if err != nil && !errors.Is(err, pebble.ErrNotFound) {
			return nil, err
		}
		out = append(out, Server{ID: string(srv.ID), RaftAddr: string(srv.Address), APIURL: m.APIURL,
			Suffrage: srv.Suffrage.String(), Leader: srv.ID == leader})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Remove takes a node out of the Raft configuration.
func (s *Store) Remove(ctx context.Context, id string) error {
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	found := false
	cfg := s.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return fmt.Errorf("raftstore: read configuration: %w", err)
	}
	for _, srv := range cfg.Configuration().Servers {
		found = found || srv.ID == raft.ServerID(id)
	}
	if !found {
		return chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeNotFound, "node %q is not a member", id)
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx, 10*time.Second)).Error(); err != nil {
		return s.applyError(err)
	}
	s.log.Info("node removed", "id", id)
	return nil
}

// BootstrapWith forms a new cluster of the given servers. Every founding node calls it
// with the same list (as --bootstrap-expect does); a node that already has state refuses.
func (s *Store) BootstrapWith(servers []Server) error {
	var cfg raft.Configuration
	for _, srv := range servers {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(srv.ID), Address: raft.ServerAddress(srv.RaftAddr), Suffrage: raft.Voter})
	}
	sort.Slice(cfg.Servers, func(i, j int) bool { return cfg.Servers[i].ID < cfg.Servers[j].ID })
	err := s.raft.BootstrapCluster(cfg).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	return nil
}

// HasState reports whether this node has ever been part of a cluster.
func (s *Store) HasState() bool { return s.hadState }

// IsLeader reports whether this node is the leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderID is the current leader's id ("" when none is known).
func (s *Store) LeaderID() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// RaftAddr is the address this node's Raft transport advertises.
func (s *Store) RaftAddr() string { return string(s.transport.LocalAddr()) }

// LeaderChanges delivers true/false as this node gains and loses leadership.
func (s *Store) LeaderChanges() <-chan bool { return s.raft.LeaderCh() }

// LeaderBarrier makes sure this leader has committed an entry of its own term and
// applied everything before it. Until then a new leader's commit index can still be its
// follower-era value, and reads would miss writes the previous leader acknowledged. The
// barrier runs once per term; later calls return at once.
func (s *Store) LeaderBarrier(ctx context.Context) error {
	// A damaged node says so, whatever its Raft (which it is shutting down) says.
	if err := s.faultErr(); err != nil {
		return err
	}
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	term := s.raft.CurrentTerm()
	if s.barrierTerm.Load() == term {
		return nil
	}
	if err := s.raft.Barrier(timeoutOf(ctx, 5*time.Second)).Error(); err != nil {
		return s.readError(err)
	}
	s.barrierTerm.Store(term)
	return nil
}

// VerifyLeader confirms with a quorum that this node is still the leader, then waits
// until its state includes everything committed at that moment: after it, a local read
// is linearizable.
func (s *Store) VerifyLeader(ctx context.Context) error {
	if err := s.LeaderBarrier(ctx); err != nil {
		return err
	}
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return s.readError(err)
	}
	commit := s.raft.CommitIndex()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		if s.raft.AppliedIndex() >= commit {
			return nil
		}
		select {
		case <-ctx.Done():
			return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "waiting to apply index %d: %v", commit, ctx.Err())
		case <-t.C:
		}
	}
}

// readError maps a failed leadership check to what a reader should be told.
func (s *Store) readError(err error) error {
	if errors.Is(err, raft.ErrRaftShutdown) {
		return errStopping()
	}
	e := chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNotLeader, "this node could not confirm it leads (%v); retry on the leader", err)
	e.Safe = true
	return e
}

func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Millisecond
	}
	return def
}
