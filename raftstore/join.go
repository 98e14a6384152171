package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
)

// DefaultCatchUpTimeout is how long a joining node may take to catch up with the log
// before its admission is rolled back.
const DefaultCatchUpTimeout = 60 * time.Second

// probeTimeout bounds the reachability check of a joining node's Raft address.
const probeTimeout = 5 * time.Second

// progressPoll is how often the leader asks a joining node how far it has got.
const progressPoll = 200 * time.Millisecond

// JoinProgress is a joining node's own report of its place in the log.
type JoinProgress struct {
	// NodeID is the id the node answering at the API URL has: it must be the joiner's.
	NodeID string
	// Leader is the leader the node follows; it must be this one, which proves that
	// this leader's replication reaches it.
	Leader string
	// Applied is the node's Raft applied index (every entry kind counted).
	Applied uint64
}

// DialProbe is the default Probe: a TCP connection to the Raft address, closed at once
// (the transport reads EOF and drops it).
func DialProbe(ctx context.Context, raftAddr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", raftAddr)
	if err != nil {
		return err
	}
	return c.Close()
}

// tlsProbe is the Probe of a cluster running TLS: a full handshake, so a joining node
// must present a server certificate of the cluster CA on its Raft address before it is
// admitted (it also checks ours).
func tlsProbe(client *tls.Config) func(ctx context.Context, raftAddr string) error {
	return func(ctx context.Context, raftAddr string) error {
		d := tls.Dialer{NetDialer: &net.Dialer{}, Config: client}
		c, err := d.DialContext(ctx, "tcp", raftAddr)
		if err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", raftAddr, err)
		}
		return c.Close()
	}
}

// Join admits a node: it must answer on its Raft address, it enters as a non-voter,
// and it is promoted to voter only once it has applied the log up to the entry that
// admitted it. A voter that cannot keep up, or does not exist, would count towards the
// quorum and could stop the cluster from committing anything, for good; a non-voter
// cannot. If it does not catch up within CatchUpTimeout it is removed again and the
// join fails. Joining a voter already in the configuration at the same address only
// refreshes its API URL. A node known under the same id at another address, or another
// id at the same address, is replaced. Only the leader can; others answer not_leader.
func (s *Store) Join(ctx context.Context, id, raftAddr, apiURL string) error {
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	select {
	case s.joining <- struct{}{}:
		defer func() { <-s.joining }()
	case <-ctx.Done():
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "waiting for another join to finish: %v", ctx.Err())
	}
	cfg := s.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return fmt.Errorf("raftstore: read configuration: %w", err)
	}
	var current *raft.Server
	var stale []raft.Server
	for _, srv := range cfg.Configuration().Servers {
		sameID, sameAddr := srv.ID == raft.ServerID(id), srv.Address == raft.ServerAddress(raftAddr)
		switch {
		case sameID && sameAddr:
			current = &srv
		case sameID || sameAddr:
			if srv.ID == raft.ServerID(s.cfg.NodeID) {
				// The probe would reach this very node at its own address; replacing the
				// leader by a join is never what a joining node means.
				return chronicle.Errorf(chronicle.KindConflict, chronicle.CodeJoinConflict,
					"node %s at %s would replace the leader %s at %s; remove members with DELETE /cluster/nodes/{id}", id, raftAddr, srv.ID, srv.Address)
			}
			stale = append(stale, srv)
		}
	}
	if current != nil && current.Suffrage == raft.Voter {
		return s.refreshRegistration(ctx, id, apiURL)
	}
	if s.cfg.Progress == nil {
		return errors.New("raftstore: join: this store has no way to follow a joining node's progress (Config.Progress)")
	}
	probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
	err := s.cfg.Probe(probeCtx, raftAddr)
	cancel()
	if err != nil {
		s.log.Warn("refusing a join: the node does not answer on its raft address", "id", id, "raft_addr", raftAddr, "err", err)
		return chronicle.Errorf(chronicle.KindRejected, chronicle.CodeJoinUnreachable,
			"node %s does not answer on its raft address %s (%v); nothing was changed", id, raftAddr, err)
	}
	for _, srv := range stale {
		s.log.Info("replacing a member", "old_id", srv.ID, "old_raft_addr", srv.Address, "id", id, "raft_addr", raftAddr)
		if err := s.raft.RemoveServer(srv.ID, 0, timeoutOf(ctx, 10*time.Second)).Error(); err != nil {
			return s.applyError(err)
		}
	}
	f := s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutOf(ctx, 10*time.Second))
	if err := f.Error(); err != nil {
		return s.applyError(err)
	}
	target := f.Index()
	s.log.Info("node admitted as non-voter; waiting for it to catch up", "id", id, "raft_addr", raftAddr, "index", target, "timeout", s.cfg.CatchUpTimeout)
	// Registered now, so that the cluster view can show the joining node while it catches up.
	if err := s.Register(ctx, NodeMeta{ID: id, APIURL: apiURL}); err != nil {
		s.rollbackJoin(id, err)
		return err
	}
	if err := s.waitCaughtUp(ctx, id, apiURL, target); err != nil {
		s.rollbackJoin(id, err)
		return err
	}
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutOf(ctx, 10*time.Second)).Error(); err != nil {
		// Leadership was lost: the node stays a non-voter, and asks the next leader again.
		return s.applyError(err)
	}
	s.log.Info("node joined as voter", "id", id, "raft_addr", raftAddr, "api_url", apiURL)
	return nil
}

// refreshRegistration is the join of a voter already in the configuration (a restart,
// or a retry whose answer was lost): it records a changed API URL and does nothing else.
func (s *Store) refreshRegistration(ctx context.Context, id, apiURL string) error {
	if m, ok, err := s.NodeMeta(id); err == nil && ok && m.APIURL == apiURL {
		return nil
	}
	s.log.Info("node already a member; refreshing its registration", "id", id, "api_url", apiURL)
	return s.Register(ctx, NodeMeta{ID: id, APIURL: apiURL})
}

// waitCaughtUp polls the joining node until it follows this leader and has applied the
// log up to target (the entry that admitted it), within CatchUpTimeout.
func (s *Store) waitCaughtUp(parent context.Context, id, apiURL string, target uint64) error {
	ctx, cancel := context.WithTimeout(parent, s.cfg.CatchUpTimeout)
	defer cancel()
	t := time.NewTicker(progressPoll)
	defer t.Stop()
	var last JoinProgress
	var lastErr error
	for {
		if s.raft.State() != raft.Leader {
			return s.notLeader()
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		p, err := s.cfg.Progress(pctx, id, apiURL)
		pcancel()
		switch {
		case err != nil:
			lastErr = err
		case p.NodeID != id:
			return chronicle.Errorf(chronicle.KindRejected, chronicle.CodeJoinUnreachable,
				"the API at %s belongs to node %q, not %s; it was removed again", apiURL, p.NodeID, id)
		case p.Leader == s.cfg.NodeID && p.Applied >= target:
			s.log.Info("joining node caught up", "id", id, "applied", p.Applied, "target", target)
			return nil
		default:
			last, lastErr = p, nil
		}
		select {
		case <-ctx.Done():
			why := fmt.Sprintf("it had applied index %d of %d, following leader %q", last.Applied, target, last.Leader)
			if lastErr != nil {
				why = fmt.Sprintf("its API at %s: %v", apiURL, lastErr)
			}
			if parent.Err() != nil {
				return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeJoinCatchUp,
					"the join request ended before node %s caught up (%s); it was removed again", id, why)
			}
			return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeJoinCatchUp,
				"node %s did not catch up with the log within %s (%s); it was removed again", id, s.cfg.CatchUpTimeout, why)
		case <-t.C:
		}
	}
}

// rollbackJoin removes a node whose admission failed. It runs even when the request's
// context has ended (the caller gave up): a half-admitted node must not stay behind.
func (s *Store) rollbackJoin(id string, cause error) {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		// Not the leader any more: the node stays a non-voter, which cannot cost the
		// quorum; it asks the next leader again, or an operator removes it.
		s.log.Error("join failed and the non-voter could not be removed", "id", id, "cause", cause, "err", err)
		return
	}
	s.log.Warn("join failed; the node was removed again", "id", id, "cause", cause)
}

// Suffrage reports how id takes part in the latest configuration: "Voter", "Nonvoter",
// or "" when it is not a member.
func (s *Store) Suffrage(id string) string {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(id) {
			return srv.Suffrage.String()
		}
	}
	return ""
}
