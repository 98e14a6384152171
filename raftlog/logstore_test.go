package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

func openTestStore(t testing.TB, dir string) *LogStore {
	t.Helper()
	s, err := OpenLogStore(dir, nil)
	if err != nil {
		t.Fatalf("OpenLogStore: %v", err)
	}
	return s
}

// newTestStore opens a store in a fresh directory and closes it at cleanup.
func newTestStore(t testing.TB) *LogStore {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// storeKind opens one log store implementation for the shared contract tests.
type storeKind struct {
	name string
	open func(t testing.TB, dir string) Store
	// holes: DeleteRange may cut a hole in the middle (raft never asks for one).
	holes bool
	// wal: hashicorp/raft-wal, whose stable store reports a missing key as nil,
	// nil and an empty value as missing, and whose GetLog still returns entries
	// below FirstIndex after a head truncation (from its tail segment).
	wal bool
}

// storeKinds are the stores every contract test runs against; raft-wal adds
// itself in wal_test.go.
var storeKinds = []storeKind{
	{name: "pebble", holes: true, open: func(t testing.TB, dir string) Store { return openTestStore(t, dir) }},
	{name: "segment", open: func(t testing.TB, dir string) Store { return openSegTest(t, dir, SegmentOptions{}) }},
}

func openSegTest(t testing.TB, dir string, opts SegmentOptions) *SegmentStore {
	t.Helper()
	s, err := OpenSegmentStore(dir, opts, nil)
	if err != nil {
		t.Fatalf("OpenSegmentStore: %v", err)
	}
	return s
}

// forEachStore runs fn as a subtest per store kind, with a fresh store closed at cleanup.
func forEachStore(t *testing.T, fn func(t *testing.T, k storeKind, s Store)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.open(t, t.TempDir())
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			fn(t, k, s)
		})
	}
}

func testLog(i uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       i/10 + 1,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "data-%d", i),
		Extensions: fmt.Appendf(nil, "ext-%d", i),
		AppendedAt: time.Unix(1_700_000_000, int64(i)),
	}
}

func testLogs(lo, hi uint64) []*raft.Log {
	var logs []*raft.Log
	for i := lo; i <= hi; i++ {
		logs = append(logs, testLog(i))
	}
	return logs
}

func checkBounds(t *testing.T, s Store, wantFirst, wantLast uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if first != wantFirst || last != wantLast {
		t.Fatalf("bounds = %d..%d, want %d..%d", first, last, wantFirst, wantLast)
	}
}

func checkLog(t *testing.T, s Store, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", want.Index, err)
	}
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
		!got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
	}
}

func checkMissing(t *testing.T, s Store, lo, hi uint64) {
	t.Helper()
	for i := lo; i <= hi; i++ {
		if err := s.GetLog(i, new(raft.Log)); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) err = %v, want ErrLogNotFound", i, err)
		}
	}
}

func TestLogStoreContract(t *testing.T) {
	forEachStore(t, testContract)
}

func testContract(t *testing.T, k storeKind, s Store) {
	checkBounds(t, s, 0, 0)
	checkMissing(t, s, 1, 1)

	if err := s.StoreLogs(testLogs(1, 100)); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	checkBounds(t, s, 1, 100)
	for i := uint64(1); i <= 100; i++ {
		checkLog(t, s, testLog(i))
	}
	checkMissing(t, s, 101, 101)
	checkMissing(t, s, 0, 0)

	// Head truncation, as after a snapshot.
	if err := s.DeleteRange(1, 50); err != nil {
		t.Fatalf("DeleteRange(1, 50): %v", err)
	}
	checkBounds(t, s, 51, 100)
	if !k.wal { // raft-wal still returns entries below FirstIndex from its tail segment
		checkMissing(t, s, 1, 50)
	}
	checkLog(t, s, testLog(51))

	// Tail truncation, as on a log conflict.
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatalf("DeleteRange(91, 100): %v", err)
	}
	checkBounds(t, s, 51, 90)
	checkMissing(t, s, 91, 100)
	checkLog(t, s, testLog(90))

	// A hole in the middle leaves the bounds alone, or is refused.
	if err := s.DeleteRange(60, 70); !k.holes {
		if err == nil {
			t.Fatalf("DeleteRange(60, 70) in the middle succeeded, want an error")
		}
		checkLog(t, s, testLog(65))
	} else if err != nil {
		t.Fatalf("DeleteRange(60, 70): %v", err)
	} else {
		checkMissing(t, s, 60, 70)
	}
	checkBounds(t, s, 51, 90)
	checkLog(t, s, testLog(59))
	checkLog(t, s, testLog(71))

	// Appending after the tail was cut, with overwritten terms.
	next := testLogs(91, 110)
	for _, l := range next {
		l.Term = 99
	}
	if err := s.StoreLogs(next); err != nil {
		t.Fatalf("StoreLogs(91..110): %v", err)
	}
	checkBounds(t, s, 51, 110)
	checkLog(t, s, next[0])

	// Everything, with a range wider than what is stored.
	if err := s.DeleteRange(0, 1000); err != nil {
		t.Fatalf("DeleteRange(0, 1000): %v", err)
	}
	checkBounds(t, s, 0, 0)
	checkMissing(t, s, 51, 110)

	// Appending after everything was deleted, as after a snapshot restore.
	if err := s.StoreLog(testLog(500)); err != nil {
		t.Fatalf("StoreLog(500): %v", err)
	}
	if err := s.StoreLogs(testLogs(501, 510)); err != nil {
		t.Fatalf("StoreLogs(501..510): %v", err)
	}
	checkBounds(t, s, 500, 510)
	checkLog(t, s, testLog(505))
}

func TestLogStoreZeroValueFields(t *testing.T) {
	forEachStore(t, func(t *testing.T, _ storeKind, s Store) { testZeroValueFields(t, s) })
}

func testZeroValueFields(t *testing.T, s Store) {
	want := &raft.Log{Index: 7, Term: 3, Type: raft.LogNoop}
	if err := s.StoreLog(want); err != nil {
		t.Fatalf("StoreLog: %v", err)
	}
	var got raft.Log
	got.Data = []byte("stale") // GetLog must overwrite every field.
	if err := s.GetLog(7, &got); err != nil {
		t.Fatalf("GetLog: %v", err)
	}
	if got.Index != 7 || got.Term != 3 || got.Type != raft.LogNoop ||
		got.Data != nil || got.Extensions != nil || !got.AppendedAt.IsZero() {
		t.Fatalf("GetLog = %+v, want %+v", got, *want)
	}
}

func TestLogStoreReopen(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { testReopen(t, k) })
	}
}

func testReopen(t *testing.T, k storeKind) {
	dir := t.TempDir()
	s := k.open(t, dir)
	if err := s.StoreLogs(testLogs(1, 100)); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	if err := s.DeleteRange(1, 20); err != nil {
		t.Fatalf("DeleteRange: %v", err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-1")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatalf("Set(empty): %v", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatalf("SetUint64: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = k.open(t, dir)
	defer s.Close()
	checkBounds(t, s, 21, 100)
	checkMissing(t, s, 1, 20)
	for i := uint64(21); i <= 100; i++ {
		checkLog(t, s, testLog(i))
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-1" {
		t.Fatalf("Get = %q, %v; want node-1", v, err)
	}
	// A stored empty value is present, not missing: raft reads nil as "no vote".
	if v, err := s.Get([]byte("empty")); !k.wal && (err != nil || v == nil || len(v) != 0) {
		t.Fatalf("Get(empty) = %#v, %v; want empty non-nil", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 = %d, %v; want 42", v, err)
	}
}

func TestStableStoreMissing(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind, s Store) {
		if k.wal {
			t.Skip("raft-wal returns nil, nil for a missing key")
		}
		testStableMissing(t, s)
	})
}

func testStableMissing(t *testing.T, s Store) {
	// hashicorp/raft compares err.Error() == "not found" on a fresh store.
	v, err := s.Get([]byte("LastVoteCand"))
	if err == nil || err.Error() != "not found" || v != nil {
		t.Fatalf("Get(missing) = %q, %v; want nil, not found", v, err)
	}
	n, err := s.GetUint64([]byte("CurrentTerm"))
	if err == nil || err.Error() != "not found" || n != 0 {
		t.Fatalf("GetUint64(missing) = %d, %v; want 0, not found", n, err)
	}
	if !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("GetUint64(missing) err is not ErrKeyNotFound")
	}
	// Stable keys and log keys must not collide.
	if err := s.SetUint64([]byte{0, 0, 0, 0, 0, 0, 0, 1}, 1); err != nil {
		t.Fatalf("SetUint64: %v", err)
	}
	checkBounds(t, s, 0, 0)
	checkMissing(t, s, 1, 1)
}

func TestLogStoreCorruptValues(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := s.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Write garbage under existing keys behind the store's back.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleutil.Logger(slog.New(slog.DiscardHandler), "pebble")})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	key := func(i uint64) []byte { k := make([]byte, logKeyLen); putLogKey(k, i); return k }
	valid := make([]byte, encodedLogLen(testLog(9)))
	encodeLog(valid, testLog(9))
	garbage := map[uint64][]byte{
		3: {0xde, 0xad, 0xbe, 0xef},
		4: nil,
		5: valid[:len(valid)-1],                     // truncated
		6: append(valid[:len(valid):len(valid)], 0), // trailing byte
		7: valid,                                    // entry for index 9 stored under 7
	}
	for i, v := range garbage {
		if err := db.Set(key(i), v, pebble.Sync); err != nil {
			t.Fatalf("pebble Set: %v", err)
		}
	}
	if err := db.Set(stableKey([]byte("CurrentTerm")), []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatalf("pebble Set: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("pebble Close: %v", err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	for i := range garbage {
		err := s.GetLog(i, new(raft.Log))
		if err == nil || errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("GetLog(%d) of corrupt value err = %v, want a corruption error", i, err)
		}
	}
	checkLog(t, s, testLog(2))
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() == "not found" {
		t.Errorf("GetUint64 of 3-byte value err = %v, want a corruption error", err)
	}
}

// TestDecodeLogTruncated feeds every prefix of a valid encoding to the decoder.
func TestDecodeLogTruncated(t *testing.T) {
	l := testLog(1 << 40)
	l.Data = bytes.Repeat([]byte("x"), 300) // multi-byte length varint
	buf := make([]byte, encodedLogLen(l))
	encodeLog(buf, l)
	for n := range len(buf) {
		if err := decodeLog(buf[:n], new(raft.Log)); err == nil {
			t.Fatalf("decodeLog of %d/%d bytes succeeded", n, len(buf))
		}
	}
	var got raft.Log
	if err := decodeLog(buf, &got); err != nil || got.Index != l.Index || !bytes.Equal(got.Data, l.Data) {
		t.Fatalf("decodeLog(full) = %+v, %v", got, err)
	}
}

func FuzzDecodeLog(f *testing.F) {
	for _, l := range []*raft.Log{testLog(1), {Index: 1}, {Index: 1 << 63, Data: []byte{0}}} {
		buf := make([]byte, encodedLogLen(l))
		encodeLog(buf, l)
		f.Add(buf)
	}
	f.Add([]byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(b, &l); err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		out := make([]byte, encodedLogLen(&l))
		encodeLog(out, &l)
		var again raft.Log
		if err := decodeLog(out, &again); err != nil {
			t.Fatalf("decode of re-encoded %x: %v", out, err)
		}
		if again.Index != l.Index || again.Term != l.Term || again.Type != l.Type ||
			!bytes.Equal(again.Data, l.Data) || !bytes.Equal(again.Extensions, l.Extensions) ||
			!again.AppendedAt.Equal(l.AppendedAt) {
			t.Fatalf("round trip mismatch: %+v vs %+v", again, l)
		}
	})
}

// countingFSM counts applied commands.
type countingFSM struct{ n atomic.Uint64 }

func (f *countingFSM) Apply(l *raft.Log) any {
	if l.Type == raft.LogCommand {
		f.n.Add(1)
	}
	return nil
}

func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *countingFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

func startRaft(t *testing.T, store Store, snaps raft.SnapshotStore, fsm raft.FSM) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "node-1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.LogOutput = io.Discard
	_, trans := raft.NewInmemTransport(raft.ServerAddress(conf.LocalID))

	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		t.Fatalf("HasExistingState: %v", err)
	}
	if !has {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, cfg); err != nil {
			t.Fatalf("BootstrapCluster: %v", err)
		}
	}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			_ = r.Shutdown().Error()
			t.Fatalf("no leadership within 10s; state %v", r.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r
}

func TestRaftSingleNode(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { testRaftSingleNode(t, k) })
	}
}

func testRaftSingleNode(t *testing.T, k storeKind) {
	dir := t.TempDir()
	snaps := raft.NewInmemSnapshotStore()

	store := k.open(t, dir)
	fsm := &countingFSM{}
	r := startRaft(t, store, snaps, fsm)
	for i := range 100 {
		if err := r.Apply(fmt.Appendf(nil, "cmd-%d", i), 5*time.Second).Error(); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	if got := fsm.n.Load(); got != 100 {
		t.Fatalf("FSM applied %d, want 100", got)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	store = k.open(t, dir)
	defer store.Close()
	last, err := store.LastIndex()
	if err != nil || last < 100 {
		t.Fatalf("LastIndex after reopen = %d, %v; want >= 100", last, err)
	}
	// Bootstrap writes term 1; winning the election must have persisted more.
	term, err := store.GetUint64([]byte("CurrentTerm"))
	if err != nil || term < 2 {
		t.Fatalf("CurrentTerm after reopen = %d, %v; want >= 2", term, err)
	}

	fsm = &countingFSM{}
	r = startRaft(t, store, snaps, fsm)
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	if err := r.Apply([]byte("after-restart"), 5*time.Second).Error(); err != nil {
		t.Fatalf("Apply after restart: %v", err)
	}
	// The new leader replays the whole persisted log into the fresh FSM.
	if got := fsm.n.Load(); got != 101 {
		t.Fatalf("FSM after restart applied %d, want 101", got)
	}
	if newTerm, err := store.GetUint64([]byte("CurrentTerm")); err != nil || newTerm <= term {
		t.Fatalf("CurrentTerm after re-election = %d, %v; want > %d", newTerm, err, term)
	}
}

func benchStore(b *testing.B, fn func(*testing.B, *LogStore)) {
	fn(b, newTestStore(b))
}

func BenchmarkFirstIndex(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.FirstIndex(b, s) })
}

func BenchmarkLastIndex(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.LastIndex(b, s) })
}

func BenchmarkGetLog(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.GetLog(b, s) })
}

func BenchmarkStoreLog(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.StoreLog(b, s) })
}

func BenchmarkDeleteRange(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.DeleteRange(b, s) })
}

func BenchmarkSet(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.Set(b, s) })
}

func BenchmarkGet(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.Get(b, s) })
}

func BenchmarkSetUint64(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.SetUint64(b, s) })
}

func BenchmarkGetUint64(b *testing.B) {
	benchStore(b, func(b *testing.B, s *LogStore) { raftbench.GetUint64(b, s) })
}
