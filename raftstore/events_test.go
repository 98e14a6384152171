package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// fsLog records the file operations of the DBs opened on its FS.
type fsLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *fsLog) logf(format string, args ...any) {
	l.mu.Lock()
	l.ops = append(l.ops, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *fsLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ops[n:]...)
}

func (l *fsLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ops)
}

// TestStateFlushSyncsEventsFirst: the state DB has no WAL, so a flush is what makes its
// records durable; before the flush writes its first table, the events DB's WAL is
// synced, so the state on disk never names an event the events DB on disk lacks. The
// control, a state DB without the hook, flushes with no such sync: the check sees the
// difference.
func TestStateFlushSyncsEventsFirst(t *testing.T) {
	for _, hooked := range []bool{true, false} {
		t.Run(fmt.Sprintf("hooked=%v", hooked), func(t *testing.T) {
			dir := t.TempDir()
			rec := &fsLog{}
			fs := vfs.WithLogging(vfs.Default, rec.logf)
			evDir, stDir := filepath.Join(dir, eventsDir), filepath.Join(dir, "state")
			ev, err := pebble.Open(evDir, &pebble.Options{FS: fs, FormatMajorVersion: pebbleutil.FormatMajorVersion})
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			opts := &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion, DisableWAL: true}
			if hooked {
				opts = stateOptions(pebbleutil.Tuning{}, nil, nil, ev)
			}
			opts.FS = fs
			db, err := pebble.Open(stDir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()

			mark := rec.len()
			if err := ev.Set(eventKey(1), []byte("event"), pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			if err := db.Set(metaKey(metaHead), []byte("head naming event 1"), pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			ops := rec.since(mark)
			table, synced := -1, -1
			for i, op := range ops {
				switch {
				case table < 0 && strings.HasPrefix(op, "create: "+stDir) && strings.HasSuffix(op, ".sst"):
					table = i
				case synced < 0 && strings.HasPrefix(op, "sync") && strings.Contains(op, evDir) && strings.HasSuffix(op, ".log"):
					synced = i
				}
			}
			if table < 0 {
				t.Fatalf("the flush wrote no table: %q", ops)
			}
			if got := synced >= 0 && synced < table; got != hooked {
				t.Fatalf("events WAL synced before the state table: %v, want %v (ops %q)", got, hooked, ops)
			}
		})
	}
}

// TestStateLoadNeverNamesAMissingEvent: a snapshot install writes its records in
// batches. Whenever a state batch commits (and may be flushed, and then survive a crash
// before the load ends), the events DB has already committed every event staged before
// it, so a head that reached the state DB names an event the events DB holds. Batches
// of 512 bytes make every step a commit; a load that committed events only at the end
// fails at the first state batch after the head.
func TestStateLoadNeverNamesAMissingEvent(t *testing.T) {
	src := newBareFSM(t)
	applyScript(t, src, scriptEntries(t), 1)
	_, contents, hdr := persist(t, src)
	if hdr.Head.Position < 10 {
		t.Fatalf("script left position %d", hdr.Head.Position)
	}

	dst := newBareFSM(t)
	l, err := newStateLoad(dst.db, dst.ev, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.batchBytes = 512
	checked := 0
	for _, r := range contents {
		if err := l.set(r.k, r.v); err != nil {
			t.Fatal(err)
		}
		head, err := reader{r: dst.db}.head()
		if err != nil {
			t.Fatal(err)
		}
		if head.Position == 0 {
			continue
		}
		checked++
		if _, ok, err := (reader{ev: dst.ev}).event(head.Position); err != nil || !ok {
			t.Fatalf("the state DB names head position %d, the events DB does not hold it (%v)", head.Position, err)
		}
	}
	if checked == 0 {
		t.Fatal("no state batch with the head committed before the end: the check checked nothing")
	}
	if err := l.commit(hdr.Applied); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, contents, dumpFSM(t, dst))
}

// TestEventsNeverPastTheHead: the events DB may hold an event past the head (a batch in
// flight, or what a crashed state DB lost and the replay will write again). A planted
// event at head+1 stays invisible to every log read, ascending and descending, and the
// next command writes its own event there.
func TestEventsNeverPastTheHead(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "10.00", ""))
	head := mustHead(t, s)
	closeStore(t, s)

	ev := openEventsDBT(t, env.cfg.DataDir)
	planted := readEvent(t, ev, head.Position)
	planted.Position = head.Position + 1
	setRecord(t, ev, eventKey(planted.Position), &planted)
	if err := ev.Close(); err != nil {
		t.Fatal(err)
	}

	s = env.open()
	defer closeStore(t, s)
	for _, q := range []chronicle.EventQuery{{Limit: 100}, {Limit: 100, Descending: true}, {After: head.Position, Limit: 100}} {
		evs, err := s.Events(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Position > head.Position {
				t.Fatalf("query %+v returned position %d past the head %d", q, e.Position, head.Position)
			}
		}
	}
	res := mustOK(t, s, cmdDeposit("a", "1.00"))
	if got := allEvents(t, s); len(got) != int(head.Position)+1 || got[len(got)-1].EventID != res[0].Events[0].EventID {
		t.Fatalf("after the next command the log holds %d events ending with %+v", len(got), got[len(got)-1])
	}
}

// TestFailedLoadMovesTheReadersHead: a snapshot load that fails partway (a damaged or
// cut stream) has already replaced part of the state. The readers' head must follow the
// reloaded memory to what the state DB now says, or log reads below the old head would
// find events missing and report a storage fault on a node that is only waiting for Raft
// to send the snapshot again.
func TestFailedLoadMovesTheReadersHead(t *testing.T) {
	logs := scriptEntries(t)
	src := newBareFSM(t)
	applyScript(t, src, logs, 1)
	stream, _, hdr := persist(t, src)

	dst := newBareFSM(t)
	applyScript(t, dst, logs[:len(logs)/3], 1)
	var told []chronicle.Head
	dst.onApply = func(h chronicle.Head, _ uint64, _ []chronicle.Event) { told = append(told, h) }
	dst.loadBatchBytes = 512
	if err := dst.Restore(io.NopCloser(bytes.NewReader(stream[:len(stream)*2/3]))); err == nil {
		t.Fatal("a cut snapshot stream restored without an error")
	}
	head, err := reader{r: dst.db}.head()
	if err != nil {
		t.Fatal(err)
	}
	if len(told) != 1 || told[0] != head {
		t.Fatalf("readers were told %+v after the failed load; the state DB's head is %+v", told, head)
	}
	if head.Position >= hdr.Head.Position {
		t.Fatalf("a cut stream left head %d, the whole snapshot's is %d: the test cut nothing", head.Position, hdr.Head.Position)
	}
	for pos := uint64(1); pos <= head.Position; pos++ {
		if _, ok, err := (reader{ev: dst.ev}).event(pos); err != nil || !ok {
			t.Fatalf("event %d below the head %d is missing (%v)", pos, head.Position, err)
		}
	}
}
