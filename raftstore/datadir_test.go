package raftstore

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
)

// untar unpacks a .tar.gz fixture into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, filepath.Clean(dir)+string(filepath.Separator)) {
			t.Fatalf("fixture entry %q escapes the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshotTree lists every file under dir with its contents, to prove a refusal wrote nothing.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(path)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDataDirOfRelease01Refused: a data directory written by release 0.1 (JSON log
// entries and state; the fixture was made by that release's binary: an account and a
// keyed deposit, then SIGTERM) is refused with both format versions named, and left
// exactly as it was.
func TestDataDirOfRelease01Refused(t *testing.T) {
	env := newLedgerEnv(t, nil)
	untar(t, filepath.Join("testdata", "release-0.1-datadir.tar.gz"), env.cfg.DataDir)
	before := snapshotTree(t, env.cfg.DataDir)
	s, err := Open(env.cfg)
	if err == nil {
		_ = s.Close()
		t.Fatal("a release 0.1 data directory opened")
	}
	if msg := err.Error(); !strings.Contains(msg, "data format 1") || !strings.Contains(msg, fmt.Sprintf("reads data format %d", DataFormat)) {
		t.Fatalf("refusal does not name both versions: %v", err)
	}
	if after := snapshotTree(t, env.cfg.DataDir); !sameTree(before, after) {
		t.Fatal("refusing the data directory changed it")
	}
}

func TestDataDirFormatFile(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "5", ""))
	closeStore(t, s)
	b, err := os.ReadFile(filepath.Join(env.cfg.DataDir, formatFile))
	if err != nil || string(b) != fmt.Sprintf("chronicle data format %d\n", DataFormat) {
		t.Fatalf("FORMAT holds %q (%v)", b, err)
	}
	// It reopens: the same format.
	s = env.open()
	if a, err := s.Account(t.Context(), "a"); err != nil || a.Balance != 500 {
		t.Fatalf("account after reopen: %+v, %v", a, err)
	}
	closeStore(t, s)

	for _, c := range []struct{ content, want string }{
		{fmt.Sprintf("chronicle data format %d\n", DataFormat+1), fmt.Sprintf("holds data format %d; this build reads data format %d", DataFormat+1, DataFormat)},
		{"chronicle data format x\n", "damaged"},
		{"", "damaged"},
	} {
		if err := os.WriteFile(filepath.Join(env.cfg.DataDir, formatFile), []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		before := snapshotTree(t, env.cfg.DataDir)
		if s, err := Open(env.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			if s != nil {
				_ = s.Close()
			}
			t.Fatalf("FORMAT %q: %v, want an error containing %q", c.content, err, c.want)
		}
		if after := snapshotTree(t, env.cfg.DataDir); !sameTree(before, after) {
			t.Fatalf("FORMAT %q: refusing changed the directory", c.content)
		}
	}
}

// TestEntryOfAnotherFormatStopsTheNode: a log entry this build cannot decode (a JSON
// entry of release 0.1, or a newer envelope) stops the state machine; nothing after it
// is applied and writes are refused, rather than the entry being skipped.
func TestEntryOfAnotherFormatStopsTheNode(t *testing.T) {
	for name, entry := range map[string][]byte{
		"release 0.1 JSON batch": []byte(`{"time":"2026-01-01T00:00:00Z","idempotency_window":0,"commands":[{"type":"deposit","account_id":"a","amount":"1"}]}`),
		"envelope version 2":     {2, 1, 0},
		"unknown kind":           chronicle.EncodeEntry(99, nil),
	} {
		t.Run(name, func(t *testing.T) {
			env := newLedgerEnv(t, nil)
			s := env.open()
			mustOK(t, s, cmdCreate("a", "USD", "5", ""))
			before := mustHead(t, s)
			f := s.raft.Apply(entry, 0)
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			if r, ok := f.Response().(applyResponse); !ok || r.err == nil {
				t.Fatalf("entry applied: %+v", f.Response())
			}
			if _, err := tryExec(s, cmdDeposit("a", "1")); err == nil {
				t.Fatal("a write succeeded after an undecodable entry")
			}
			if h := mustHead(t, s); h != before {
				t.Fatalf("head moved from %+v to %+v", before, h)
			}
			if st := s.Status(); st.Fatal == "" {
				t.Fatal("status does not report the stopped state machine")
			}
		})
	}
}

// TestDataDirFormat2Migrates opens a data directory written by the last format-2 build
// (testdata/format-2-datadir.tar.gz: three accounts, five transfers, a keyed deposit and
// a withdrawal, 15 events, then SIGTERM; its state DB still had them in its WAL). The
// events move into the events DB, the indexes are upgraded (format4.go), FORMAT says 4,
// and the ledger is the same: every
// event, balance, history and idempotency key. A start that stopped halfway (events
// copied, FORMAT still 2) copies again and ends the same.
func TestDataDirFormat2Migrates(t *testing.T) {
	for _, halfway := range []bool{false, true} {
		t.Run(fmt.Sprintf("halfway=%v", halfway), func(t *testing.T) {
			env := newLedgerEnv(t, nil)
			untar(t, filepath.Join("testdata", "format-2-datadir.tar.gz"), env.cfg.DataDir)
			if halfway {
				// The copy of an earlier start that crashed before deleting or writing FORMAT.
				db := openStateDB(t, env.cfg.DataDir)
				ev := openEventsDBT(t, env.cfg.DataDir)
				it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
				if err != nil {
					t.Fatal(err)
				}
				for valid := it.First(); valid; valid = it.Next() {
					if err := ev.Set(it.Key(), it.Value(), pebble.Sync); err != nil {
						t.Fatal(err)
					}
				}
				if err := errors.Join(it.Close(), db.Close(), ev.Close()); err != nil {
					t.Fatal(err)
				}
			}
			s := env.open()
			if b, err := os.ReadFile(filepath.Join(env.cfg.DataDir, formatFile)); err != nil || string(b) != fmt.Sprintf("chronicle data format %d\n", DataFormat) {
				t.Fatalf("FORMAT after the move: %q (%v)", b, err)
			}
			if !strings.Contains(env.logs.String(), "moved the events into their own DB") {
				t.Fatal("the move was not logged")
			}
			if h := mustHead(t, s); h.Position != 15 {
				t.Fatalf("head after the move: %+v, want position 15", h)
			}
			events := allEvents(t, s)
			if len(events) != 15 {
				t.Fatalf("%d events after the move, want 15", len(events))
			}
			verifyAgainstReplay(t, s)
			for id, want := range map[string]int64{"alice": 98375, "bob": 1375, "yen": 5070} {
				if a, err := s.Account(t.Context(), id); err != nil || a.Balance != want {
					t.Fatalf("account %s after the move: %+v, %v; want balance %d", id, a, err, want)
				}
			}
			// Statement and balance-at read the indexes in the state DB and the events
			// in the events DB.
			st, err := s.Events(t.Context(), chronicle.EventQuery{AggregateID: "bob", Limit: 100})
			if err != nil || len(st) != 7 {
				t.Fatalf("bob's stream: %d events, %v; want 7", len(st), err)
			}
			if p, err := s.BalanceAt(t.Context(), "bob", events[len(events)-2].CreatedAt); err != nil || p.Balance != 1625 {
				t.Fatalf("bob's balance before the withdrawal: %+v, %v; want 1625", p, err)
			}
			checkMovedFixture(t, s, 14, 15)
			mustOK(t, s, cmdTransfer("alice", "bob", "1.00"))
			closeStore(t, s)

			// The state DB holds no event any more; the second start moves nothing.
			db := openStateDB(t, env.cfg.DataDir)
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
			if err != nil {
				t.Fatal(err)
			}
			if it.First() {
				t.Fatalf("the state DB still holds event key %x", it.Key())
			}
			if err := errors.Join(it.Close(), db.Close()); err != nil {
				t.Fatal(err)
			}
			logged := len(env.logs.String())
			s = env.open()
			defer closeStore(t, s)
			if strings.Contains(env.logs.String()[logged:], "moved the events") {
				t.Fatal("a moved directory was moved again")
			}
			if h := mustHead(t, s); h.Position != 17 {
				t.Fatalf("head after reopening: %+v, want position 17", h)
			}
			verifyAgainstReplay(t, s)
		})
	}
}

// checkMovedFixture checks a store opened on a moved fixture directory: the fixture's
// keyed deposit of 70 to yen (at position keyed) is replayed, not applied again, and the
// scrub passes over all its events.
func checkMovedFixture(t *testing.T, s *Store, keyed, events uint64) {
	t.Helper()
	again := cmdDeposit("yen", "70")
	again.IdempotencyKey = "fixture-key-1"
	if res := mustOK(t, s, again); !res[0].Replayed || res[0].Position != keyed {
		t.Fatalf("the fixture's keyed deposit retried: %+v", res[0])
	}
	if st, err := s.Scrub(t.Context()); err != nil || !st.OK || st.Events != events {
		t.Fatalf("scrub after the move: %+v, %v", st, err)
	}
}
