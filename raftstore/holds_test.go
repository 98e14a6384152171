package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/holdsweep"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// testClock is a clock a test moves forward: the store's commit times and the sweep's
// deadlines both read it.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func cmdHold(from, to, amount string, timeout int64) chronicle.Command {
	c := cmdTransfer(from, to, amount)
	c.Pending, c.TimeoutSeconds = true, timeout
	return c
}

func cmdCapture(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCaptureTransfer, TransferID: id, Amount: chronicle.Decimal(amount)}
}

func cmdVoid(id string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdVoidTransfer, TransferID: id}
}

func wantHeld(t *testing.T, s *Store, id string, balance, held int64) {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != balance || a.Held != held {
		t.Fatalf("account %s: balance %d held %d, want %d and %d", id, a.Balance, a.Held, balance, held)
	}
}

func holdState(t *testing.T, s *Store, id string) chronicle.TransferState {
	t.Helper()
	p, ok, err := s.PendingTransfer(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("PendingTransfer(%s): %v %v", id, ok, err)
	}
	return p.State
}

// Holds, captures and voids survive a restart (working state reloaded from the state DB)
// and a snapshot restored into a fresh state machine; the replay of the events agrees.
func TestStoreHoldsSurviveRestartAndSnapshot(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "100.00", ""), cmdCreate("b", "USD", "", ""))
	h1 := mustOK(t, s, cmdHold("a", "b", "30", 3600))[0].TransferID
	h2 := mustOK(t, s, cmdHold("a", "b", "20", 3600))[0].TransferID
	h3 := mustOK(t, s, cmdHold("a", "b", "10", 7200))[0].TransferID
	mustOK(t, s, cmdCapture(h1, "12.5"), cmdVoid(h2))
	wantHeld(t, s, "a", 8750, 1000)
	verifyAgainstReplay(t, s)
	waitAllApplied(t, s)
	before := dumpState(t, s)
	snap, _, _ := persist(t, s.fsm)
	closeStore(t, s)

	s = env.open()
	waitAllApplied(t, s)
	requireSameState(t, before, dumpState(t, s))
	wantHeld(t, s, "a", 8750, 1000)
	if st := holdState(t, s, h1); st != chronicle.TransferStateCaptured {
		t.Fatalf("h1 %s", st)
	}
	if at, ok, _ := s.NextHoldDeadline(context.Background()); !ok || at.IsZero() {
		t.Fatal("the open hold's deadline was not reloaded")
	}
	// A finished hold is refused from the state DB; the open one still works.
	res := mustExec(t, s, cmdCapture(h2, ""), cmdCapture(h3, ""))
	if res[0].Err == nil || res[0].Err.Code != chronicle.CodeTransferNotPending || res[1].Err != nil {
		t.Fatalf("after restart: %+v", res)
	}
	wantHeld(t, s, "a", 7750, 0)
	verifyAgainstReplay(t, s)

	// The snapshot taken before, restored into a fresh state machine.
	fresh := newBareFSM(t)
	if err := restore(fresh, snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	a, _ := fresh.mem.account("a")
	if a.Held != 1000 || len(fresh.mem.holds.byID) != 1 || fresh.mem.holds.byID[h3].Amount != 1000 || len(fresh.mem.holds.due) != 1 {
		t.Fatalf("restored working state: account %+v, holds %+v", a, fresh.mem.holds)
	}
}

// The sweep expires a due hold with no client command touching it.
func TestStoreSweepExpiresHolds(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	env := newLedgerEnv(t, func(c *Config) { c.Clock = clock.now })
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "100.00", ""), cmdCreate("b", "USD", "", ""))
	id := mustOK(t, s, cmdHold("a", "b", "40", 60))[0].TransferID
	keep := mustOK(t, s, cmdHold("a", "b", "1", 7200))[0].TransferID
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		holdsweep.Run(ctx, holdsweep.Config{Active: s.IsLeader, NextDeadline: s.NextHoldDeadline, Execute: s.Execute,
			Interval: 5 * time.Millisecond, Now: clock.now})
	}()
	t.Cleanup(func() { cancel(); <-done })

	pos := mustHead(t, s).Position
	// Before the deadline nothing happens; the sweep proposes only past it.
	if holdsweep.Once(ctx, holdsweep.Config{Active: s.IsLeader, NextDeadline: s.NextHoldDeadline, Execute: s.Execute, Now: clock.now}) {
		t.Fatal("a sweep expired a hold before its deadline")
	}
	clock.advance(61 * time.Second)
	waitUntil(t, "the sweep to expire the hold", func() bool {
		a, _ := s.Account(context.Background(), "a")
		return a.Held == 100
	})
	if st := holdState(t, s, id); st != chronicle.TransferStateExpired {
		t.Fatalf("hold %s", st)
	}
	if st := holdState(t, s, keep); st != chronicle.TransferStatePending {
		t.Fatalf("the later hold is %s", st)
	}
	evs := allEvents(t, s)
	var expired []chronicle.Event
	for _, e := range evs[pos:] {
		if e.EventType == chronicle.EventTransferExpired {
			expired = append(expired, e)
		}
	}
	if len(expired) != 1 || expired[0].Data.TransferID != id || expired[0].CreatedBy != "hold-sweep" {
		t.Fatalf("expiry events %+v", expired)
	}
	res := mustExec(t, s, cmdCapture(id, ""))
	if res[0].Err == nil || res[0].Err.Code != chronicle.CodeTransferExpired {
		t.Fatalf("capture after expiry: %+v", res[0])
	}
	verifyAgainstReplay(t, s)
}

// holdsDB is a state DB holding n holds written through writeHolds, as the state machine
// writes them: every one opened, then all but those open(i) says finished (captured,
// voided or expired in turn). Deadlines repeat, so the index orders some by id alone.
func holdsDB(tb testing.TB, n int, open func(i int) bool) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open(tb.TempDir(), &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger: pebbleutil.Logger(slog.New(slog.NewTextHandler(io.Discard, nil)), "pebble")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	finished := []chronicle.TransferState{chronicle.TransferStateCaptured, chronicle.TransferStateVoided, chronicle.TransferStateExpired}
	for lo := 0; lo < n; lo += 10_000 {
		opened, closed := db.NewBatch(), db.NewBatch()
		for i := lo; i < min(lo+10_000, n); i++ {
			p := chronicle.PendingTransfer{ID: fmt.Sprintf("hold-%07d", i), FromAccountID: fmt.Sprintf("acc-%d", i%7),
				ToAccountID: "merchant", Currency: "USD", Amount: int64(i + 1), CreatedAt: at.Add(time.Duration(i) * time.Second),
				ExpiresAt: at.Add(time.Duration(i%97) * time.Hour), State: chronicle.TransferStatePending}
			if err := writeHolds(opened, []chronicle.PendingTransfer{p}); err != nil {
				tb.Fatal(err)
			}
			if open(i) {
				continue
			}
			p.State, p.FinishedAt = finished[i%3], p.CreatedAt.Add(time.Minute)
			if p.State == chronicle.TransferStateCaptured {
				p.CapturedAmount = p.Amount / 2
			}
			if err := writeHolds(closed, []chronicle.PendingTransfer{p}); err != nil {
				tb.Fatal(err)
			}
		}
		// Two commits, as two entries would: the finish deletes the d key the open wrote.
		for _, b := range []*pebble.Batch{opened, closed} {
			if err := b.Commit(pebble.NoSync); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := db.Flush(); err != nil {
		tb.Fatal(err)
	}
	return db
}

// readCounter is the real state DB with a count of what a load reads from the hold
// records: point reads of p keys, and any iterator whose bounds take in a p key.
type readCounter struct {
	pebble.Reader
	holdGets  int
	holdScans int
}

func (r *readCounter) Get(key []byte) ([]byte, io.Closer, error) {
	if len(key) > 0 && key[0] == prefixHold {
		r.holdGets++
	}
	return r.Reader.Get(key)
}

func (r *readCounter) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	r.countScan(o)
	return r.Reader.NewIter(o)
}

func (r *readCounter) NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error) {
	r.countScan(o)
	return r.Reader.NewIterWithContext(ctx, o)
}

func (r *readCounter) countScan(o *pebble.IterOptions) {
	if o == nil || (o.LowerBound == nil || bytes.Compare(o.LowerBound, []byte{prefixHold + 1}) < 0) &&
		(o.UpperBound == nil || bytes.Compare(o.UpperBound, []byte{prefixHold}) > 0) {
		r.holdScans++
	}
}

// Start-up loads exactly the open holds, in memory as a scan of every record would
// build them, and reads the record of no finished hold to do it.
func TestLoadHoldsReadsOpenHoldsOnly(t *testing.T) {
	t.Parallel()
	const n = 3_000
	open := func(i int) bool { return i%401 == 0 || i == n-1 } // 9 open, two at the same deadline
	db := holdsDB(t, n, open)
	rc := &readCounter{Reader: db}
	w, err := loadWorking(rc)
	if err != nil {
		t.Fatal(err)
	}
	want := workingFromDump(t, dumpReader(t, db))
	if len(want.holds) != 9 {
		t.Fatalf("the state DB holds %d open holds, want 9", len(want.holds))
	}
	requireSameWorking(t, "loaded with holds", want, copyWorking(w))
	if rc.holdScans != 0 || rc.holdGets != len(want.holds) {
		t.Fatalf("load read the hold records with %d scans and %d point reads; want none and one per open hold (%d)",
			rc.holdScans, rc.holdGets, len(want.holds))
	}
}

// A deadline index that disagrees with the hold records refuses the load, naming the
// hold, rather than building memory from one side of the disagreement.
func TestLoadHoldsRefusesDisagreeingIndex(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := func(id string, state chronicle.TransferState) chronicle.PendingTransfer {
		return chronicle.PendingTransfer{ID: id, FromAccountID: "a", ToAccountID: "b", Currency: "USD", Amount: 100,
			CreatedAt: at, ExpiresAt: at.Add(time.Hour), State: state}
	}
	for _, c := range []struct {
		name, id, want string
		damage         func(b *pebble.Batch) error
	}{
		{"due key with no record", "ghost", "has no record", func(b *pebble.Batch) error {
			return b.Set(holdDueKey(at, "ghost"), nil, nil)
		}},
		{"due key of a finished hold", "done", "record is voided", func(b *pebble.Batch) error {
			if err := setBinary(b, holdKey("done"), rec("done", chronicle.TransferStateVoided)); err != nil {
				return err
			}
			return b.Set(holdDueKey(at.Add(time.Hour), "done"), nil, nil)
		}},
		{"due key at another deadline", "moved", "its record expires at", func(b *pebble.Batch) error {
			if err := writeHolds(b, []chronicle.PendingTransfer{rec("moved", chronicle.TransferStatePending)}); err != nil {
				return err
			}
			return b.Set(holdDueKey(at.Add(2*time.Hour), "moved"), nil, nil)
		}},
		{"record under another id", "swapped", `holds id "other"`, func(b *pebble.Batch) error {
			if err := setBinary(b, holdKey("swapped"), rec("other", chronicle.TransferStatePending)); err != nil {
				return err
			}
			return b.Set(holdDueKey(at.Add(time.Hour), "swapped"), nil, nil)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := holdsDB(t, 10, func(i int) bool { return i%2 == 0 })
			b := db.NewBatch()
			if err := c.damage(b); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			_, err := loadWorking(db)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.id)) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v; want an error naming %q and saying %q", err, c.id, c.want)
			}
		})
	}
}

// BenchmarkLoadHolds measures the start-up load of a state DB that holds 100,000
// finished holds and 100 open ones.
func BenchmarkLoadHolds(b *testing.B) {
	db := holdsDB(b, 100_000, func(i int) bool { return i%1000 == 0 })
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		w, err := loadWorking(db)
		if err != nil {
			b.Fatal(err)
		}
		if len(w.holds.byID) != 100 {
			b.Fatalf("loaded %d open holds, want 100", len(w.holds.byID))
		}
	}
}
