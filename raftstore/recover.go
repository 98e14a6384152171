package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle/internal/fsutil"
)

// PeersFile is the recovery file `chronicle cluster recover` writes at the top of a
// data directory, beside FORMAT: hashicorp/raft's peers.json (raft.ReadConfigJSON). It
// lives outside raft/, which only the Raft log store (raftlog) writes to.
const PeersFile = "peers.json"

// Peer is one server of a recovered configuration, as peers.json spells it.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	NonVoter bool   `json:"non_voter"`
}

// WritePeers writes the recovery file for a node whose cluster lost its quorum for good:
// on its next start the node replaces its Raft configuration with peers (see
// recoverFromPeersFile). It refuses a directory that is not a data directory of this
// build's format with Raft state in it, and one that a running node holds open.
func WritePeers(dataDir string, peers []Peer) error {
	if err := checkPeers(peers); err != nil {
		return err
	}
	if err := checkFormatFile(dataDir); err != nil {
		return fmt.Errorf("not a chronicle data directory of this build: %w", err)
	}
	raftDir := filepath.Join(dataDir, "raft")
	if entries, err := os.ReadDir(raftDir); err != nil || len(entries) == 0 {
		return fmt.Errorf("data directory %s holds no Raft state (%s is missing or empty): nothing to recover", dataDir, raftDir)
	}
	// The Raft log store's lock (Pebble's LOCK, which raftlog.SegmentStore takes the
	// same way): held by a running node, and kept here until the
	// file is written so that no node starts meanwhile.
	lock, err := vfs.Default.Lock(filepath.Join(raftDir, "LOCK"))
	if err != nil {
		return fmt.Errorf("data directory %s is in use (%v): stop the node first", dataDir, err)
	}
	defer lock.Close()
	b, err := json.MarshalIndent(peers, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dataDir, PeersFile), append(b, '\n'), 0o644)
}

// checkPeers refuses a configuration Raft could not run: empty, without a voter, with
// a repeated id or address, or an address that is not host:port.
func checkPeers(peers []Peer) error {
	ids, addrs, voters := map[string]bool{}, map[string]bool{}, 0
	for _, p := range peers {
		if p.ID == "" {
			return errors.New("a peer without an id")
		}
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			return fmt.Errorf("peer %s: address %q is not host:port", p.ID, p.Address)
		}
		if ids[p.ID] || addrs[p.Address] {
			return fmt.Errorf("peer %s at %s: id or address given twice", p.ID, p.Address)
		}
		ids[p.ID], addrs[p.Address] = true, true
		if !p.NonVoter {
			voters++
		}
	}
	if voters == 0 {
		return errors.New("the recovered configuration needs at least one voter")
	}
	return nil
}

// recoverFromPeersFile applies a recovery file, if there is one, before Raft starts:
// raft.RecoverCluster replays the local log into the state, takes a snapshot carrying
// the new configuration and compacts the log, so the node starts as a member of the
// configuration in the file alone. Every entry in the local log is applied, committed or
// not; writes that only the lost nodes had are gone. The file is then renamed aside so
// that it is never applied twice.
func (s *Store) recoverFromPeersFile(rc *raft.Config, snaps raft.SnapshotStore, existing bool) error {
	path := filepath.Join(s.cfg.DataDir, PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("raftstore: %s: %w", path, err)
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("raftstore: recovery file %s: %w (fix it, or remove it to start without recovering)", path, err)
	}
	if !existing {
		return fmt.Errorf("raftstore: recovery file %s, but this node has no Raft state to recover; remove the file", path)
	}
	var members []string
	self := false
	for _, srv := range conf.Servers {
		members = append(members, fmt.Sprintf("%s=%s (%s)", srv.ID, srv.Address, srv.Suffrage))
		self = self || srv.ID == rc.LocalID && srv.Suffrage == raft.Voter
	}
	if !self {
		return fmt.Errorf("raftstore: recovery file %s does not name this node (%s) as a voter: it could never lead or vote; fix the file or remove it", path, rc.LocalID)
	}
	last, err := s.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("raftstore: recovery: %w", err)
	}
	s.log.Warn("RECOVERING: replacing the Raft configuration from the recovery file; every entry in this node's log is applied, committed or not",
		"file", path, "members", strings.Join(members, ", "), "last_log_index", last, "position", s.head.Position)
	if err := raft.RecoverCluster(rc, recoveryFSM{s.fsm}, s.logs, s.logs, snaps, s.transport, conf); err != nil {
		return fmt.Errorf("raftstore: recover the cluster from %s: %w", path, err)
	}
	if err := s.fsm.failed(); err != nil {
		return fmt.Errorf("raftstore: recover the cluster from %s: the state machine stopped: %w", path, err)
	}
	applied := path + ".applied-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, applied); err != nil {
		return fmt.Errorf("raftstore: recovered, but could not rename %s aside (remove it before the next start): %w", path, err)
	}
	if err := fsutil.SyncDir(s.cfg.DataDir); err != nil {
		return err
	}
	s.headMu.Lock()
	pos, hash := s.head.Position, s.head.Hash
	s.headMu.Unlock()
	s.log.Warn("RECOVERED: the Raft configuration is now the recovery file's; it was renamed aside",
		"members", strings.Join(members, ", "), "position", pos, "head_hash", hash, "renamed_to", applied)
	return nil
}

// recoveryFSM is the FSM as raft.RecoverCluster uses it: RecoverCluster persists the
// snapshot it takes but never releases it, and an unreleased snapshot would pin the
// state DB's files.
type recoveryFSM struct{ *fsm }

func (r recoveryFSM) Snapshot() (raft.FSMSnapshot, error) {
	snap, err := r.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return releasingSnapshot{snap}, nil
}

type releasingSnapshot struct{ raft.FSMSnapshot }

func (s releasingSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	return s.FSMSnapshot.Persist(sink)
}
