package raftstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWritePeersRefuses: the recovery file is written only for a stopped node's data
// directory of this format, and only with a configuration Raft can run.
func TestWritePeersRefuses(t *testing.T) {
	e := newLedgerEnv(t, nil)
	dir := e.cfg.DataDir
	good := []Peer{{ID: "n1", Address: "127.0.0.1:4001"}}
	for name, peers := range map[string][]Peer{
		"empty":          nil,
		"no voter":       {{ID: "n1", Address: "127.0.0.1:4001", NonVoter: true}},
		"repeated id":    {{ID: "n1", Address: "127.0.0.1:4001"}, {ID: "n1", Address: "127.0.0.1:4002"}},
		"repeated addr":  {{ID: "n1", Address: "127.0.0.1:4001"}, {ID: "n2", Address: "127.0.0.1:4001"}},
		"not host:port":  {{ID: "n1", Address: "127.0.0.1"}},
		"id without one": {{Address: "127.0.0.1:4001"}},
	} {
		if err := WritePeers(dir, peers); err == nil {
			t.Errorf("%s: WritePeers accepted %+v", name, peers)
		}
	}
	if err := WritePeers(t.TempDir(), good); err == nil || !strings.Contains(err.Error(), "not a chronicle data directory") {
		t.Errorf("empty directory: %v", err)
	}
	s := e.open()
	mustOK(t, s, cmdCreate("a", "USD", "1", ""))
	if err := WritePeers(dir, good); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("open store: %v", err)
	}
	closeStore(t, s)
	if err := os.WriteFile(filepath.Join(dir, formatFile), []byte("chronicle data format 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WritePeers(dir, good); err == nil || !strings.Contains(err.Error(), "data format 1") {
		t.Errorf("format 1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, PeersFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused WritePeers left %s: %v", PeersFile, err)
	}
}

// TestRecoveryFileMustNameThisNode: a recovery file that leaves this node out (a typo
// in --peers) stops the start, and stays for the operator to fix; the data is untouched.
func TestRecoveryFileMustNameThisNode(t *testing.T) {
	e := newLedgerEnv(t, nil)
	s := e.open()
	mustOK(t, s, cmdCreate("a", "USD", "1", ""))
	closeStore(t, s)
	if err := WritePeers(e.cfg.DataDir, []Peer{{ID: "n9", Address: "127.0.0.1:4001"}}); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(e.cfg); err == nil || !strings.Contains(err.Error(), "does not name this node (n1)") {
		if err == nil {
			_ = s.Close()
		}
		t.Fatalf("Open with a recovery file without this node: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.DataDir, PeersFile)); err != nil {
		t.Fatalf("the refused recovery file is gone: %v", err)
	}
	if err := os.Remove(filepath.Join(e.cfg.DataDir, PeersFile)); err != nil {
		t.Fatal(err)
	}
	s = e.open()
	if acc, err := s.Account(context.Background(), "a"); err != nil || acc.Balance != 100 {
		t.Fatalf("account a after the refused recovery: %+v, %v", acc, err)
	}
}
