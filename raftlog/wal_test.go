package raftlog

import (
	"errors"
	"testing"

	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// raft-wal (pinned in go.mod, used only by tests and benchmarks) runs the
// shared contract tests for comparison. Where it differs: a missing stable key
// is not an error (Get returns nil, nil and GetUint64 0, nil), and a stored
// empty value reads back as missing; see TestStableStoreMissing.
func init() {
	storeKinds = append(storeKinds, storeKind{name: "raft-wal", wal: true, open: openWALTest})
}

// walStore closes raft-wal's meta DB too: WAL.Close leaves the bolt file (and
// its flock) open, so a reopen in the same process would block forever.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (w walStore) Close() error {
	return errors.Join(w.WAL.Close(), w.meta.Close())
}

func openWALTest(t testing.TB, dir string) Store {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta))
	if err != nil {
		t.Fatalf("wal.Open: %v", err)
	}
	return walStore{WAL: w, meta: meta}
}
