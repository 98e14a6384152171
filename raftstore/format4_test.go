package raftstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// The fixture testdata/format-3-datadir.tar.gz was written by the last format-3 build
// (20fa308) through its HTTP API, then stopped with SIGTERM: five accounts (one in JPY),
// a keyed deposit, 240 transfers in six batches of 40 and 60 single ones, two pending
// transfers, a withdrawal, a freeze and a keyed deposit, 611 events over three type index
// blocks; the embedded NATS data was left out. Its Raft log holds every entry from index
// 1, so a node that has lost its state DB rebuilds it from the log as this build writes it.
const format3Fixture = "format-3-datadir.tar.gz"

// format3Replayed is the fixture with its state and events DBs removed: opening it
// applies the whole Raft log again, with this build.
func format3Replayed(t *testing.T) []kv {
	t.Helper()
	env := newLedgerEnv(t, nil)
	untar(t, filepath.Join("testdata", format3Fixture), env.cfg.DataDir)
	for _, d := range []string{"state", eventsDir} {
		if err := os.RemoveAll(filepath.Join(env.cfg.DataDir, d)); err != nil {
			t.Fatal(err)
		}
	}
	s := env.open()
	waitUntil(t, "the log to be applied again", func() bool { return mustHead(t, s).Position == 611 })
	closeStore(t, s)
	return dumpDir(t, env.cfg.DataDir)
}

// dumpDir reads a stopped node's state and events DBs.
func dumpDir(t *testing.T, dir string) []kv {
	t.Helper()
	db, ev := openStateDB(t, dir), openEventsDBT(t, dir)
	defer func() { _ = errors.Join(db.Close(), ev.Close()) }()
	return dumpDBs(t, db, ev)
}

// TestDataDirFormat3Migrates opens the format-3 fixture: the indexes are rewritten, FORMAT
// says 4, and the state DB holds exactly the bytes this build writes when it applies the
// same log from scratch. A start that crashed halfway through the rewrite (some stream
// entries and type blocks written, the old records still there, FORMAT still 3) ends
// the same.
func TestDataDirFormat3Migrates(t *testing.T) {
	t.Parallel()
	want := format3Replayed(t)
	for _, k := range want {
		if k.k[0] == legacyHistory || k.k[0] == legacyType {
			t.Fatalf("a format-4 state DB holds legacy record %q", k.k)
		}
	}
	for _, halfway := range []bool{false, true} {
		env := newLedgerEnv(t, nil)
		untar(t, filepath.Join("testdata", format3Fixture), env.cfg.DataDir)
		if halfway {
			halfUpgrade(t, env.cfg.DataDir)
		}
		s := env.open()
		if b, err := os.ReadFile(filepath.Join(env.cfg.DataDir, formatFile)); err != nil || string(b) != "chronicle data format 4\n" {
			t.Fatalf("FORMAT after the move: %q (%v)", b, err)
		}
		if !strings.Contains(env.logs.String(), "data format 3 to 4") {
			t.Fatal("the move was not logged")
		}
		if h := mustHead(t, s); h.Position != 611 {
			t.Fatalf("head after the move: %+v, want position 611", h)
		}
		_, events := verifyAgainstReplay(t, s)
		checkMovedFixture(t, s, 6, 611)
		closeStore(t, s)
		requireSameState(t, withoutApplied(want), withoutApplied(dumpDir(t, env.cfg.DataDir)))

		// Written on: a new transfer lands in the stream and the type index, and the
		// second start moves nothing.
		logged := len(env.logs.String())
		s = env.open()
		if strings.Contains(env.logs.String()[logged:], "data format 3 to 4") {
			t.Fatal("a format-4 directory was moved again")
		}
		mustOK(t, s, cmdTransfer("alice", "bob", "1.00"))
		if _, after := verifyAgainstReplay(t, s); len(after) != len(events)+2 {
			t.Fatalf("%d events after a transfer, want %d", len(after), len(events)+2)
		}
		closeStore(t, s)
	}
}

// halfUpgrade leaves dir as a start that crashed in upgradeIndexes would: half of the
// stream entries and type blocks rewritten and durable, the legacy records all there,
// FORMAT 3.
func halfUpgrade(t *testing.T, dir string) {
	t.Helper()
	db, ev := openStateDB(t, dir), openEventsDBT(t, dir)
	written := map[byte]int{}
	u := indexUpgrade{event: reader{r: db, ev: ev}.event, emit: func(k, v []byte) error {
		written[k[0]]++
		return db.Set(k, v, pebble.NoSync)
	}}
	for _, p := range []byte{prefixStream, legacyType} {
		recs := dumpRange(t, db, []byte{p})
		for _, r := range recs[:len(recs)/2] {
			if _, err := u.record(r.k, r.v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := u.flush(); err != nil {
		t.Fatal(err)
	}
	if written[prefixStream] < 100 || written[prefixTypeBlock] == 0 {
		t.Fatalf("half an upgrade wrote %v", written)
	}
	if err := errors.Join(db.Flush(), db.Close(), ev.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestLegacySnapshotUpgradesOnRestore restores a snapshot stream of the old format (header
// format 2, format-3 records: the fixture's state as a format-3 leader would send it)
// into a new FSM: its indexes come out as this build writes them.
func TestLegacySnapshotUpgradesOnRestore(t *testing.T) {
	t.Parallel()
	want := format3Replayed(t)
	dir := t.TempDir()
	untar(t, filepath.Join("testdata", format3Fixture), dir)
	db, ev := openStateDB(t, dir), openEventsDBT(t, dir)
	rd := reader{r: db, ev: ev}
	head, err := rd.head()
	if err != nil {
		t.Fatal(err)
	}
	applied, err := rd.applied()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	snap := &fsmSnapshot{v: takeViews(db, ev), header: snapshotHeader{Format: 2, Applied: applied, Head: head}}
	w := bufio.NewWriter(&buf)
	err = snap.write(w)
	snap.Release()
	if err = errors.Join(err, w.Flush(), db.Close(), ev.Close()); err != nil {
		t.Fatal(err)
	}
	f := newBareFSM(t)
	if err := restore(f, buf.Bytes()); err != nil {
		t.Fatalf("Restore of a format-2 snapshot: %v", err)
	}
	requireSameState(t, withoutApplied(want), withoutApplied(dumpFSM(t, f)))
}

// withoutApplied is a dump without its applied index: the Raft entries that carry no
// commands (a new term's) move it on different nodes differently.
func withoutApplied(kvs []kv) []kv {
	out := kvs[:0:0]
	for _, r := range kvs {
		if !bytes.Equal(r.k, metaKey(metaApplied)) {
			out = append(out, r)
		}
	}
	return out
}

// TestBalanceAtAcrossCheckpoints gives one account a stream several checkpoints long,
// with several deposits per entry and more than one event per commit instant (transfers
// between two accounts of the test), and checks balance-at at every instant
// (checkIndexes), before and after a restart.
func TestBalanceAtAcrossCheckpoints(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "0", "0"), cmdCreate("b", "USD", "0", "0"))
	for i := range 3*checkpointEvery/8 + 5 {
		var cmds []chronicle.Command
		for range 8 {
			cmds = append(cmds, cmdDeposit("a", "1.00"))
		}
		if i%3 == 0 {
			cmds = append(cmds, cmdTransfer("a", "b", "0.50"))
		}
		mustOK(t, s, cmds...)
	}
	if a, err := s.Account(t.Context(), "a"); err != nil || a.Version < 3*checkpointEvery {
		t.Fatalf("account a: %+v, %v; want a stream of three checkpoints", a, err)
	}
	verifyAgainstReplay(t, s)
	closeStore(t, s)
	s = env.open()
	verifyAgainstReplay(t, s)
	closeStore(t, s)

	// Written as format 3 would have written it, the upgrade gives the same bytes,
	// checkpoints included.
	requireUpgradeRoundTrip(t, env.cfg.DataDir)
}

// requireUpgradeRoundTrip is requireSameUpgraded on a stopped node's data directory.
func requireUpgradeRoundTrip(t *testing.T, dir string) {
	t.Helper()
	db, ev := openStateDB(t, dir), openEventsDBT(t, dir)
	defer func() { _ = errors.Join(db.Close(), ev.Close()) }()
	requireSameUpgraded(t, db, ev)
}

// requireSameUpgraded writes the state as format 3 would have written it (downgrade),
// upgrades it, and requires the bytes it started with.
func requireSameUpgraded(t *testing.T, db, ev *pebble.DB) {
	t.Helper()
	want := dumpDBs(t, db, ev)
	downgrade(t, db, ev)
	if _, err := upgradeIndexes(db, ev); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, want, dumpDBs(t, db, ev))
}

// downgrade rewrites db's indexes as data format 3 had them, from the events: 8-byte
// stream values, a history record per commit instant and account, a type record per
// event, and no checkpoints or type blocks.
func downgrade(t *testing.T, db, ev *pebble.DB) {
	t.Helper()
	b := db.NewBatch()
	for _, p := range []byte{prefixCheckpoint, prefixTypeBlock} {
		if err := b.DeleteRange([]byte{p}, []byte{p + 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range dumpRange(t, ev, []byte{prefixEvent}) {
		var e chronicle.Event
		if err := e.UnmarshalBinary(r.v); err != nil {
			t.Fatal(err)
		}
		hv := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(e.Data.BalanceAfter)), e.Position)
		hk := binary.BigEndian.AppendUint64(appendIDPrefix(nil, legacyHistory, e.AggregateID), timeOrder(e.CreatedAt))
		tk := binary.BigEndian.AppendUint64(appendIDPrefix(nil, legacyType, e.EventType), e.Position)
		err := errors.Join(b.Set(streamKey(e.AggregateID, e.EventVersion), pebbleutil.U64(e.Position), nil),
			b.Set(hk, hv, nil), b.Set(tk, nil, nil))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeWithManyEventsAtOneInstant upgrades a state in which an account has several
// events at one commit instant: three holds on it expire in one step when a withdrawal
// touches it. The history index has one record for the instant (the last event's), so
// the upgrade reads the others from their events, and it must give the bytes this build
// writes. (An expiry leaves the balance as it was, so this shows the instant is found,
// not which record the balance came from: no command moves one account's balance twice.)
func TestUpgradeWithManyEventsAtOneInstant(t *testing.T) {
	t.Parallel()
	f := newBareFSM(t)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	hold := func() chronicle.Command {
		c := cmdTransfer("a", "b", "1.00")
		c.Pending, c.TimeoutSeconds = true, 60
		return c
	}
	entries := [][]chronicle.Command{
		{cmdCreate("a", "USD", "100.00", "0"), cmdCreate("b", "USD", "0", "0")},
		{hold(), hold()},
		{hold()},
		{cmdWithdraw("a", "5.00")}, // two minutes on: the three holds expire first
	}
	for i, cmds := range entries {
		at := t0.Add(time.Duration(i) * time.Second)
		if i == len(entries)-1 {
			at = t0.Add(2 * time.Minute)
		}
		for _, r := range f.ApplyBatch([]*raft.Log{batchEntry(t, uint64(i+1), at, cmds...)}) {
			for _, res := range responseOf(t, r).results {
				if res.Err != nil {
					t.Fatalf("entry %d: %v", i+1, res.Err)
				}
			}
		}
	}
	events := dumpRange(t, f.ev, []byte{prefixEvent})
	same := 0
	var prev chronicle.Event
	for _, r := range events {
		var e chronicle.Event
		if err := e.UnmarshalBinary(r.v); err != nil {
			t.Fatal(err)
		}
		if e.AggregateID == "a" && prev.AggregateID == "a" && e.CreatedAt.Equal(prev.CreatedAt) {
			same++
		}
		prev = e
	}
	if same < 2 {
		t.Fatalf("%d events of a share an instant with the one before; the test needs some", same)
	}
	requireSameUpgraded(t, f.db, f.ev)
}

// TestCheckpointsShareAnInstant has 600 holds on one account expire in one step, so its
// versions 602 to 1201 share one commit instant, and with them the checkpoint versions
// 768 and 1024: the instant's one checkpoint record holds 1024. Balance-at and the
// indexes hold (checkIndexes), and the upgrade of the same state written as format 3
// gives the same bytes.
func TestCheckpointsShareAnInstant(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	env := newLedgerEnv(t, func(c *Config) { c.Clock = clock.now })
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "1000.00", "0"), cmdCreate("b", "USD", "0", "0"))
	for range 6 {
		var cmds []chronicle.Command
		for range 100 {
			cmds = append(cmds, cmdHold("a", "b", "1.00", 60))
		}
		mustOK(t, s, cmds...)
	}
	clock.advance(2 * time.Minute)
	mustOK(t, s, cmdWithdraw("a", "5.00")) // the 600 holds expire first, in one step
	_, events := verifyAgainstReplay(t, s)
	var a []chronicle.Event
	for _, e := range events {
		if e.AggregateID == "a" {
			a = append(a, e)
		}
	}
	if len(a) < 1024 || !a[767].CreatedAt.Equal(a[1023].CreatedAt) {
		t.Fatalf("account a: %d events; the test needs versions 768 and 1024 at one instant", len(a))
	}
	closeStore(t, s)
	requireUpgradeRoundTrip(t, env.cfg.DataDir)
}

// TestUpgradeFillsHistoryGaps upgrades a format-3 state whose history index lacks a
// record in the middle of an account (damage): the entries it would have named take
// their time and balance from their events. The ids are prefixes of one another, which
// the walk of the history must keep apart.
func TestUpgradeFillsHistoryGaps(t *testing.T) {
	t.Parallel()
	f := newBareFSM(t)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	entries := [][]chronicle.Command{
		{cmdCreate("ab", "USD", "100.00", "0"), cmdCreate("ab.x", "USD", "0", "0"), cmdCreate("ab0", "USD", "0", "0")},
		{cmdTransfer("ab", "ab.x", "1.00"), cmdTransfer("ab.x", "ab0", "0.50")},
		{cmdTransfer("ab", "ab0", "1.00")},
		{cmdTransfer("ab0", "ab", "0.25"), cmdDeposit("ab.x", "3.00")},
	}
	for i, cmds := range entries {
		for _, r := range f.ApplyBatch([]*raft.Log{batchEntry(t, uint64(i+1), t0.Add(time.Duration(i)*time.Second), cmds...)}) {
			for _, res := range responseOf(t, r).results {
				if res.Err != nil {
					t.Fatalf("entry %d: %v", i+1, res.Err)
				}
			}
		}
	}
	want := dumpFSM(t, f)
	downgrade(t, f.db, f.ev)
	hist := dumpRange(t, f.db, appendIDPrefix(nil, legacyHistory, "ab"))
	if len(hist) < 3 {
		t.Fatalf("ab has %d history records", len(hist))
	}
	if err := f.db.Delete(hist[1].k, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, err := upgradeIndexes(f.db, f.ev); err != nil {
		t.Fatalf("upgrade with a history record missing: %v", err)
	}
	requireSameState(t, want, dumpFSM(t, f))
}

// TestDamagedIndexRecordsRefuse writes a damaged index record under a running store: a
// short stream value, or a type block naming a position that holds another type. The
// read that meets it is refused (never a panic, never a listing with a hole in it), and
// the node records a storage fault naming the damage and refuses what follows.
func TestDamagedIndexRecordsRefuse(t *testing.T) {
	t.Parallel()
	shortEntry := func(s *Store, leg chronicle.Event) error {
		return s.fsm.db.Set(streamKey("a", leg.EventVersion), []byte{0, 0, 0, 3}, pebble.NoSync)
	}
	for _, c := range []struct {
		name   string
		damage func(s *Store, leg chronicle.Event) error
		read   func(s *Store, leg chronicle.Event) error
		want   string
	}{
		{"stream page", shortEntry, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{AggregateID: "a", Limit: 10})
			return err
		}, "stream entry"},
		{"stream page after a position", shortEntry, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{AggregateID: "a", After: 1, Limit: 10})
			return err
		}, "stream entry"},
		{"balance-at", shortEntry, func(s *Store, leg chronicle.Event) error {
			_, err := s.BalanceAt(t.Context(), "a", leg.CreatedAt)
			return err
		}, "stream entry"},
		{"type listing", func(s *Store, leg chronicle.Event) error {
			bits := make([]byte, typeBlockBytes)
			bits[0] = 1<<2 | 1<<leg.Position // position 2 holds another type
			return s.fsm.db.Set(typeBlockKey(leg.EventType, 0), bits, pebble.NoSync)
		}, func(s *Store, leg chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{EventType: leg.EventType, Limit: 10})
			return err
		}, "type index lists event 2"},
		{"stream naming a missing event", func(s *Store, leg chronicle.Event) error {
			return s.fsm.ev.Delete(eventKey(leg.Position), pebble.NoSync)
		}, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{AggregateID: "a", Limit: 10})
			return err
		}, "does not hold it as one of that account's"},
		{"stream naming another account's event", func(s *Store, leg chronicle.Event) error {
			// Position 2 is b's creation.
			return s.fsm.db.Set(streamKey("a", leg.EventVersion), appendStreamValue(nil, 2, leg.CreatedAt, 0), pebble.NoSync)
		}, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{AggregateID: "a", Limit: 10})
			return err
		}, "lists event 2"},
		{"log page over a missing event", func(s *Store, _ chronicle.Event) error {
			return s.fsm.ev.Delete(eventKey(2), pebble.NoSync)
		}, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{Descending: true, Limit: 10})
			return err
		}, "holds event 1 where event 2 should be"},
		{"log page ending early", func(s *Store, _ chronicle.Event) error {
			return s.fsm.ev.Delete(eventKey(1), pebble.NoSync)
		}, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{Descending: true, Limit: 10})
			return err
		}, "ends before event 1"},
		{"log page after a position over a missing event", func(s *Store, _ chronicle.Event) error {
			return s.fsm.ev.Delete(eventKey(3), pebble.NoSync)
		}, func(s *Store, _ chronicle.Event) error {
			_, err := s.Events(t.Context(), chronicle.EventQuery{Descending: true, After: 5, Limit: 10})
			return err
		}, "holds event 2 where event 3 should be"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newLedgerEnv(t, nil)
			s := env.open()
			mustOK(t, s, cmdCreate("a", "USD", "10.00", "0"), cmdCreate("b", "USD", "0", "0"))
			mustOK(t, s, cmdTransfer("a", "b", "1.00"))
			events := allEvents(t, s)
			leg := events[2] // a's transfer leg; position 2 is b's creation
			if leg.AggregateID != "a" || events[1].EventType == leg.EventType {
				t.Fatalf("unexpected events %+v", events)
			}
			if err := c.damage(s, leg); err != nil {
				t.Fatal(err)
			}
			if err := c.read(s, leg); err == nil || !strings.Contains(err.Error(), "storage_fault") {
				t.Fatalf("read over the damage: %v, want a storage fault", err)
			}
			if f := s.StorageFault(); !strings.Contains(f, c.want) {
				t.Fatalf("storage fault %q, want it to name %q", f, c.want)
			}
		})
	}
}
