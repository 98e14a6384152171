package raftstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/golang/snappy"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// bufferSink is a raft.SnapshotSink over a bytes.Buffer.
type bufferSink struct {
	buf              bytes.Buffer
	closed, canceled bool
	failWrites       bool
}

func (s *bufferSink) Write(p []byte) (int, error) {
	if s.failWrites {
		return 0, errors.New("disk full")
	}
	return s.buf.Write(p)
}
func (s *bufferSink) Close() error  { s.closed = true; return nil }
func (s *bufferSink) ID() string    { return "test-snapshot" }
func (s *bufferSink) Cancel() error { s.canceled = true; return nil }

var _ raft.SnapshotSink = (*bufferSink)(nil)

// newBareFSM is an fsm over a new, empty Pebble DB in its own directory.
func newBareFSM(t testing.TB) *fsm {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, ev, err := openState(t.TempDir(), pebbleutil.Tuning{}, log, nil)
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	t.Cleanup(func() { _ = closeState(db, ev) })
	f, err := newFSM(log, db, ev, nil)
	if err != nil {
		t.Fatalf("new fsm: %v", err)
	}
	return f
}

// persist snapshots f into a buffer and returns the bytes, the snapshot's contents as read
// straight from its Pebble snapshot, and its header.
func persist(t *testing.T, f *fsm) ([]byte, []kv, snapshotHeader) {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	fs := snap.(*fsmSnapshot)
	contents := dumpDBs(t, fs.v.state, fs.v.events)
	sink := &bufferSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.canceled {
		t.Fatalf("Persist left the sink closed=%v canceled=%v", sink.closed, sink.canceled)
	}
	return bytes.Clone(sink.buf.Bytes()), contents, fs.header
}

func restore(f *fsm, data []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(data)))
}

func batchEntry(t testing.TB, index uint64, at time.Time, cmds ...chronicle.Command) *raft.Log {
	t.Helper()
	for i := range cmds {
		cmds[i].ID = chronicle.NewID()
	}
	payload, err := chronicle.Batch{Time: at, Commands: cmds}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: chronicle.EncodeEntry(chronicle.EntryCommandBatch, payload)}
}

func responseOf(t *testing.T, v any) applyResponse {
	t.Helper()
	r, ok := v.(applyResponse)
	if !ok {
		t.Fatalf("apply response is %T", v)
	}
	return r
}

// 4. A snapshot restored into a fresh FSM reproduces the state DB exactly, and the
// restored FSM, fed the rest of the log, converges with the node it came from.
func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "300.00", ""), cmdCreate("b", "USD", "", "25.00"), cmdCreate("y", "JPY", "9000", ""))
	for i := range 20 {
		c := cmdTransfer("a", "b", "1.10")
		if i%3 == 0 {
			c.IdempotencyKey = "k" + string(rune('a'+i))
		}
		mustExec(t, s, c, cmdWithdraw("y", "100"), cmdDeposit("b", "1.234")) // the last is refused
	}
	waitAllApplied(t, s)
	snap1, dump1, hdr1 := persist(t, s.fsm)
	requireSameState(t, dumpState(t, s), dump1)

	for range 10 {
		mustOK(t, s, cmdTransfer("b", "a", "0.50"), cmdDeposit("y", "3"))
	}
	mustOK(t, s, cmdCreate("late", "JPY", "", ""))
	waitAllApplied(t, s)
	snap2, dump2, hdr2 := persist(t, s.fsm)
	if hdr2.Applied <= hdr1.Applied || hdr2.Head.Position <= hdr1.Head.Position {
		t.Fatalf("second snapshot (%+v) not past the first (%+v)", hdr2, hdr1)
	}
	if h := mustHead(t, s); hdr2.Head != h || hdr2.Applied != appliedIndex(t, s) {
		t.Fatalf("snapshot header %+v, store head %+v applied %d", hdr2, h, appliedIndex(t, s))
	}

	// Into a fresh DB.
	fresh := newBareFSM(t)
	var notified []uint64
	var notifiedHead chronicle.Head
	fresh.onApply = func(h chronicle.Head, idx uint64, _ []chronicle.Event) {
		notified = append(notified, idx)
		notifiedHead = h
	}
	if err := restore(fresh, snap2); err != nil {
		t.Fatalf("Restore into a fresh DB: %v", err)
	}
	requireSameState(t, dump2, dumpFSM(t, fresh))
	if len(notified) != 1 || notified[0] != hdr2.Applied || notifiedHead != hdr2.Head {
		t.Fatalf("onApply after restore: %v %+v, want [%d] %+v", notified, notifiedHead, hdr2.Applied, hdr2.Head)
	}

	// Again: the state covers the snapshot, so nothing changes.
	if err := restore(fresh, snap2); err != nil {
		t.Fatalf("Restore over itself: %v", err)
	}
	requireSameState(t, dump2, dumpFSM(t, fresh))
	// An older snapshot is covered too.
	if err := restore(fresh, snap1); err != nil {
		t.Fatalf("Restore of an older snapshot: %v", err)
	}
	requireSameState(t, dump2, dumpFSM(t, fresh))

	// Feed the restored FSM the log after the snapshot, as raft would: it must end where
	// the store ends, and a second pass must change nothing.
	for range 5 {
		mustExec(t, s, cmdTransfer("a", "b", "7.00"), cmdDeposit("late", "12"), cmdWithdraw("nobody", "1"))
	}
	waitAllApplied(t, s)
	want := dumpState(t, s)
	var tail []*raft.Log
	last, _ := s.logs.LastIndex()
	for idx := hdr2.Applied + 1; idx <= last; idx++ {
		var l raft.Log
		if err := s.logs.GetLog(idx, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", idx, err)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			tail = append(tail, &l)
		}
	}
	if len(tail) < 5 {
		t.Fatalf("only %d entries after the snapshot", len(tail))
	}
	for i := 0; i < len(tail); i += 2 {
		for _, r := range fresh.ApplyBatch(tail[i:min(i+2, len(tail))]) {
			if err := responseOf(t, r).err; err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
	}
	requireSameState(t, want, dumpFSM(t, fresh))
	for _, r := range fresh.ApplyBatch(tail) {
		if responseOf(t, r).err == nil {
			t.Fatalf("an entry was applied twice")
		}
	}
	requireSameState(t, want, dumpFSM(t, fresh))
	if err := fresh.failed(); err != nil {
		t.Fatalf("fsm failed: %v", err)
	}
}

// A state DB behind the snapshot is replaced by it, whatever it held.
func TestFSMRestoreReplacesLaggingState(t *testing.T) {
	src := newBareFSM(t)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := func(f *fsm, l *raft.Log) {
		t.Helper()
		for _, r := range f.ApplyBatch([]*raft.Log{l}) {
			if err := responseOf(t, r).err; err != nil {
				t.Fatalf("apply %d: %v", l.Index, err)
			}
		}
	}
	e1 := batchEntry(t, 1, at, cmdCreate("a", "USD", "50.00", ""), cmdCreate("b", "EUR", "1.00", ""))
	apply(src, e1)
	snap1, dump1, hdr1 := persist(t, src)
	k := cmdDeposit("a", "1.00")
	k.IdempotencyKey = "key"
	apply(src, batchEntry(t, 3, at.Add(time.Second), k, cmdWithdraw("a", "2.00")))
	apply(src, batchEntry(t, 4, at.Add(2*time.Second), cmdDeposit("b", "0.01")))
	snap2, dump2, hdr2 := persist(t, src)
	if hdr1.Applied != 1 || hdr2.Applied != 4 || hdr2.Head.Position != 5 {
		t.Fatalf("headers %+v %+v", hdr1, hdr2)
	}

	dst := newBareFSM(t)
	if err := restore(dst, snap1); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, dump1, dumpFSM(t, dst))
	// Leftovers a stale state DB may hold must not survive the restore.
	if err := dst.db.Set(idemKey("stale"), []byte(`{}`), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := dst.ev.Set(eventKey(99), []byte(`{}`), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := restore(dst, snap2); err != nil {
		t.Fatalf("Restore over a lagging state: %v", err)
	}
	requireSameState(t, dump2, dumpFSM(t, dst))

	// A truncated stream fails and leaves a lagging state as it was.
	lag := newBareFSM(t)
	if err := restore(lag, snap1); err != nil {
		t.Fatal(err)
	}
	if err := restore(lag, snap2[:len(snap2)-10]); err == nil {
		t.Fatalf("a truncated snapshot restored")
	}
	requireSameState(t, dump1, dumpFSM(t, lag))

	// A state DB that covers the snapshot's index but holds another history is refused.
	bad := chronicle.Event{Position: hdr1.Head.Position, Hash: strings.Repeat("ab", 32)}
	v, err := bad.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.ev.Set(eventKey(hdr1.Head.Position), v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := restore(dst, snap1); err == nil || !strings.Contains(err.Error(), "diverges") {
		t.Fatalf("Restore over a diverging state: %v, want a divergence error", err)
	}

	// A snapshot of another format is refused before anything is touched.
	var other bytes.Buffer
	w := bufio.NewWriter(&other)
	hb, _ := snapshotHeader{Format: snapshotFormat + 1, Applied: 100}.marshal()
	if err := writeChunk(w, hb); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if err := restore(lag, other.Bytes()); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("snapshot format %d, this build reads formats 2 and %d", snapshotFormat+1, snapshotFormat)) {
		t.Fatalf("Restore of another format: %v", err)
	}
	// So is a snapshot of release 0.1 (a JSON header).
	other.Reset()
	w = bufio.NewWriter(&other)
	if err := writeChunk(w, []byte(`{"format":1,"applied":100,"head":{"position":3}}`)); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if err := restore(lag, other.Bytes()); err == nil || !strings.Contains(err.Error(), "snapshot format 1") {
		t.Fatalf("Restore of a release 0.1 snapshot: %v", err)
	}
	requireSameState(t, dump1, dumpFSM(t, lag))
}

// A failing sink is canceled and the error reported.
func TestFSMPersistCancelsOnError(t *testing.T) {
	f := newBareFSM(t)
	f.ApplyBatch([]*raft.Log{batchEntry(t, 1, time.Now(), cmdCreate("a", "USD", "1.00", ""))})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &bufferSink{failWrites: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatalf("Persist into a failing sink succeeded")
	}
	if !sink.canceled || sink.closed {
		t.Fatalf("failing sink: canceled=%v closed=%v, want canceled only", sink.canceled, sink.closed)
	}
}

// Entries at or below the applied index are skipped; a batch mixing both applies the rest.
func TestFSMSkipsAppliedEntries(t *testing.T) {
	f := newBareFSM(t)
	var heads []chronicle.Head
	f.onApply = func(h chronicle.Head, _ uint64, _ []chronicle.Event) { heads = append(heads, h) }
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e1 := batchEntry(t, 1, at, cmdCreate("a", "USD", "10.00", ""))
	cfg := &raft.Log{Index: 2, Term: 1, Type: raft.LogConfiguration}
	e3 := batchEntry(t, 3, at.Add(time.Millisecond), cmdWithdraw("a", "1.00"))
	f.ApplyBatch([]*raft.Log{e1, cfg})
	before := dumpFSM(t, f)
	if got, _ := (reader{f.db, f.ev}).applied(); got != 2 {
		t.Fatalf("applied index %d after a configuration entry, want 2", got)
	}
	resp := f.ApplyBatch([]*raft.Log{e1, cfg, e3})
	if responseOf(t, resp[0]).err == nil || responseOf(t, resp[1]).err == nil {
		t.Fatalf("replayed entries were not reported as already applied: %+v", resp)
	}
	r3 := responseOf(t, resp[2])
	if r3.err != nil || len(r3.results) != 1 || r3.results[0].Err != nil || r3.results[0].Position != 2 {
		t.Fatalf("new entry: %+v", r3)
	}
	after := dumpFSM(t, f)
	if len(after) <= len(before) {
		t.Fatalf("new entry wrote nothing")
	}
	a, _, _ := (reader{f.db, f.ev}).Account("a")
	if a.Balance != 900 || a.Version != 2 {
		t.Fatalf("account after replay: balance %d version %d, want 900 and 2", a.Balance, a.Version)
	}
	// Only the whole replay again: nothing to write, nobody notified.
	n := len(heads)
	f.ApplyBatch([]*raft.Log{e1, cfg, e3})
	requireSameState(t, after, dumpFSM(t, f))
	if len(heads) != n {
		t.Fatalf("onApply called for a batch that applied nothing")
	}
}

// An entry that cannot be decoded stops the FSM without writing anything.
func TestFSMStopsOnCorruptEntry(t *testing.T) {
	f := newBareFSM(t)
	good := batchEntry(t, 2, time.Now(), cmdCreate("a", "USD", "1.00", ""))
	resp := f.ApplyBatch([]*raft.Log{good, {Index: 3, Type: raft.LogCommand, Data: []byte("{not json")}})
	for i, r := range resp {
		if responseOf(t, r).err == nil {
			t.Fatalf("response %d has no error", i)
		}
	}
	if f.failed() == nil {
		t.Fatalf("fsm did not stop")
	}
	if got := dumpFSM(t, f); len(got) != 0 {
		t.Fatalf("a failed batch wrote %d keys", len(got))
	}
	resp = f.ApplyBatch([]*raft.Log{batchEntry(t, 4, time.Now(), cmdCreate("b", "USD", "", ""))})
	if responseOf(t, resp[0]).err == nil {
		t.Fatalf("a stopped fsm applied an entry")
	}
}

// TestFSMSnapshotCompressedAndLegacy: snapshots are snappy-framed and much smaller than
// their contents, and an uncompressed stream still restores.
func TestFSMSnapshotCompressedAndLegacy(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "300.00", ""), cmdCreate("b", "USD", "", ""))
	for range 50 {
		mustOK(t, s, cmdTransfer("a", "b", "1.10"))
	}
	waitAllApplied(t, s)
	data, contents, _ := persist(t, s.fsm)
	if data[0] != 0xff {
		t.Fatalf("snapshot starts with %#x, want a snappy stream identifier", data[0])
	}
	raw, err := io.ReadAll(snappy.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Binary records hold ids and hashes that compress less than JSON did; still a
	// quarter or more is saved.
	if len(data)*4 > len(raw)*3 {
		t.Fatalf("compressed snapshot %d bytes for %d bytes of stream", len(data), len(raw))
	}
	for name, stream := range map[string][]byte{"compressed": data, "legacy": raw} {
		fresh := newBareFSM(t)
		if err := restore(fresh, stream); err != nil {
			t.Fatalf("%s restore: %v", name, err)
		}
		requireSameState(t, contents, dumpFSM(t, fresh))
	}
}

// Once Raft runs, a snapshot the state has applied past is refused, and the state is left
// as it was (hashicorp/raft would otherwise drop the log and move the applied index back).
func TestFSMRefusesStaleSnapshotWhileRunning(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "300.00", ""), cmdCreate("b", "USD", "", ""))
	waitAllApplied(t, s)
	stale, _, hdr := persist(t, s.fsm)
	for range 5 {
		mustOK(t, s, cmdTransfer("a", "b", "1.00"))
	}
	waitAllApplied(t, s)
	before := dumpState(t, s)
	err := restore(s.fsm, stale)
	if err == nil || !strings.Contains(err.Error(), "refusing a snapshot") {
		t.Fatalf("restore of a snapshot at applied index %d into a running node past it: %v, want a refusal", hdr.Applied, err)
	}
	requireSameState(t, before, dumpState(t, s))
	mustOK(t, s, cmdTransfer("b", "a", "2.00"))
	verifyAgainstReplay(t, s)
}
