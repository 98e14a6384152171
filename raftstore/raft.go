package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func (s *Store) startRaft() error {
	cfg := s.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = newHCLogger(s.log)
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// Detect a lost leader in about a second on a LAN without flapping under load.
	rc.HeartbeatTimeout = 700 * time.Millisecond
	rc.ElectionTimeout = 700 * time.Millisecond
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	// Check every 30 s (raft's default is 2 min) whether SnapshotThreshold entries have
	// accumulated, so the log and restart replay stay short.
	rc.SnapshotInterval = 30 * time.Second
	rc.SnapshotThreshold = 8192
	rc.TrailingLogs = 10240
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	// The state must not be ahead of what the log and the latest snapshot hold.
	var snapIndex uint64
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raftstore: list snapshots: %w", err)
	}
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	// A restored directory's state is covered by the snapshot adoptRestored files below.
	if !restoredPending(cfg.DataDir) {
		if err := s.checkAppliedCovered(snapIndex); err != nil {
			return fmt.Errorf("raftstore: %w", err)
		}
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("raftstore: raft address %q: %w", cfg.RaftAddr, err)
	}
	var advertise net.Addr = addr
	if addr.Port == 0 {
		advertise = nil // an OS-chosen port (tests): advertise what the listener got
	}
	if cfg.TLS != nil {
		layer, err := newTLSLayer(cfg.RaftAddr, advertise, cfg.TLS, cfg.Faults)
		if err != nil {
			return fmt.Errorf("raftstore: listen for raft on %s: %w", cfg.RaftAddr, err)
		}
		s.transport = &heartbeatGate{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: rc.Logger})}
	} else if cfg.Faults != nil {
		ln, err := net.Listen("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("raftstore: listen for raft on %s: %w", cfg.RaftAddr, err)
		}
		s.transport = &heartbeatGate{NetworkTransport: raft.NewNetworkTransportWithLogger(&faultyLayer{Listener: ln, advertise: advertise, faults: cfg.Faults}, 3, 10*time.Second, rc.Logger)}
	} else if nt, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, advertise, 3, 10*time.Second, rc.Logger); err == nil {
		s.transport = &heartbeatGate{NetworkTransport: nt}
	} else {
		return fmt.Errorf("raftstore: listen for raft on %s: %w", cfg.RaftAddr, err)
	}
	if err := s.adoptRestored(rc, snaps); err != nil {
		_ = s.transport.Close()
		return err
	}
	existing, err := raft.HasExistingState(s.logs, s.logs, snaps)
	if err != nil {
		_ = s.transport.Close()
		return fmt.Errorf("raftstore: inspect raft state: %w", err)
	}
	s.hadState = existing
	// Recovery from a lost quorum happens here, before Raft starts, on the same stores.
	if err := s.recoverFromPeersFile(rc, snaps, existing); err != nil {
		_ = s.transport.Close()
		return err
	}
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.logs, snaps, s.transport); err != nil {
		_ = s.transport.Close()
		return fmt.Errorf("raftstore: start raft: %w", err)
	}
	s.fsm.running.Store(true)
	if !existing && cfg.Bootstrap {
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: s.transport.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("raftstore: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a one-node cluster", "raft_addr", s.transport.LocalAddr())
	}
	return nil
}

// hcLogger adapts hashicorp/raft's hclog output to slog, one line a record.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Info, Output: slogWriter{l.With("component", "raft")},
		DisableTime: true,
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}
