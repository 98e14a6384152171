package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// The ledger state lives in two Pebble DBs under the data directory (data format 3):
//
//   - state/ holds everything but events: accounts, the stream, type and history
//     indexes, idempotency records, holds, tokens, node records, the head and the
//     applied index. Its keys are random and often rewritten.
//   - events/ holds the event records (e | position), written once and never changed.
//
// Apart, every flush of the events DB is a file above all it already holds, so Pebble
// moves it down the LSM instead of rewriting it: the events, four fifths of the bytes,
// are written once. In one DB every compaction of the random keys rewrote the events
// beside them (compaction was 31 % of the node's CPU in batch mode).
//
// The two commit separately, so their order is what keeps them consistent:
//
//   - An apply commits its events to the events DB first, then the state batch that
//     names them (its head and indexes). The events DB may be ahead of the state DB by
//     the batch in flight, or after a crash by what the state DB lost; readers never
//     read past the head, and the replay of the Raft log writes the same events again.
//   - The state DB has no WAL: the Raft log is its log. Its writes become durable only
//     when a memtable is flushed, and every flush first syncs the events DB's WAL
//     (the FlushBegin hook of stateOptions), so whatever the state DB holds after a crash, the events DB
//     holds its events. A restart replays the Raft log after the state DB's applied
//     index, as it always has; snapshots flush before Raft truncates the log.
const eventsDir = "events"

// openEventsDB opens (creating) the events DB in dir. Its WAL is on: it is written NoSync
// and synced before each flush of the state DB.
func openEventsDB(dir string, t pebbleutil.Tuning, log *slog.Logger, fatal *pebbleutil.Fatal, cache *pebble.Cache) (*pebble.DB, error) {
	opts := &pebble.Options{
		FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger:             pebbleutil.LoggerWithFatal(log, "pebble-events", fatal), // nil fatal: Fatalf panics
		EventListener:      pebbleutil.Events(log, "pebble-events"),
	}
	t.Apply(opts)
	opts.Cache = cache // nil: its own, of the tuned size
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open the events DB in %s: %w", dir, err)
	}
	return db, nil
}

// openState opens dataDir's events DB and then its state DB (creating them). fatal
// receives both DBs' fatal errors; nil (the offline restore) leaves Pebble's default.
func openState(dataDir string, t pebbleutil.Tuning, log *slog.Logger, fatal *pebbleutil.Fatal) (db, ev *pebble.DB, err error) {
	// One block cache of the tuned size serves both DBs.
	cache := pebble.NewCache(t.WithDefaults().CacheSize)
	defer cache.Unref()
	ev, err = openEventsDB(filepath.Join(dataDir, eventsDir), t, log, fatal, cache)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(dataDir, "state")
	opts := stateOptions(t, log, fatal, ev)
	opts.Cache = cache
	db, err = pebble.Open(dir, opts)
	if err != nil {
		_ = ev.Close()
		return nil, nil, fmt.Errorf("open the state DB in %s: %w", dir, err)
	}
	return db, ev, nil
}

// stateOptions are the state DB's options: no WAL, and every flush preceded by a sync of
// the events DB ev (see the package comment above).
func stateOptions(t pebbleutil.Tuning, log *slog.Logger, fatal *pebbleutil.Fatal, ev *pebble.DB) *pebble.Options {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	el := pebbleutil.Events(log, "pebble")
	el.FlushBegin = func(pebble.FlushInfo) {
		if err := syncEvents(ev); err != nil {
			// The flush cannot be held back from here: Pebble holds the state DB's mutex
			// around this call, and parking in it would freeze every reader and the
			// shutdown. The node stops taking writes instead (a failed WAL sync is fatal
			// to the events DB itself too), and if the state on disk got ahead of its
			// events, the next start refuses (checkHead) rather than serve it. Without
			// a fatal handler (the offline restore, which syncs and checks the events
			// itself before it finishes) the failure is only logged.
			log.Error("cannot sync the events DB before a state DB flush", "err", err)
			if fatal != nil {
				fatal.Report(fmt.Errorf("sync the events DB before a state DB flush: %w", err))
			}
		}
	}
	// Without a WAL a full disk fails flushes, not commits: Pebble retries them and
	// writes stall until there is room again. Say so.
	el.BackgroundError = func(err error) {
		log.Error("state DB background work failed (retried): writes stall until it succeeds", "component", "pebble", "err", err)
	}
	opts := &pebble.Options{
		FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger:             pebbleutil.LoggerWithFatal(log, "pebble", fatal), // nil fatal: Fatalf panics
		EventListener:      el,
		DisableWAL:         true,
	}
	t.Apply(opts)
	return opts
}

// stateDirs names where a node's state lives, for messages about its damage.
func stateDirs(dataDir string) string {
	return filepath.Join(dataDir, "state") + " and " + filepath.Join(dataDir, eventsDir)
}

// syncEvents makes every event committed to ev so far durable.
func syncEvents(ev *pebble.DB) error {
	if err := ev.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync the events DB: %w", err)
	}
	return nil
}

// flushState makes the state DB durable up to its last commit (its events first, by the
// flush hook).
func flushState(db *pebble.DB) error {
	if err := db.Flush(); err != nil {
		return fmt.Errorf("flush the state DB: %w", err)
	}
	return nil
}

// closeState flushes and closes both DBs: the state DB has no WAL, so what a close
// left in its memtables would be replayed from the Raft log at the next start.
func closeState(db, ev *pebble.DB) error {
	var errs []error
	if db != nil {
		if err := flushState(db); err != nil {
			errs = append(errs, err)
		}
		if err := db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the state DB: %w", err))
		}
	}
	if ev != nil {
		if err := ev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the events DB: %w", err))
		}
	}
	return errors.Join(errs...)
}

// views is a consistent read of both DBs: the events view is taken after the state's,
// so it holds every event up to the state's head (and perhaps some after it, which
// readers bound by the head never see).
type views struct{ state, events *pebble.Snapshot }

func takeViews(db, ev *pebble.DB) views {
	s := db.NewSnapshot()
	return views{state: s, events: ev.NewSnapshot()}
}

func (v views) reader() reader { return reader{r: v.state, ev: v.events} }

func (v views) Close() error { return errors.Join(v.state.Close(), v.events.Close()) }

// eachRecord calls fn for every record of the state, in key order, as one DB would hold
// them: the state DB's records with the events up to head in their place (the snapshot
// and backup streams are unchanged by the split).
func eachRecord(state, events pebble.Reader, head uint64, fn func(k, v []byte) error) error {
	ranges := []struct {
		r            pebble.Reader
		lower, upper []byte
	}{
		{state, nil, []byte{prefixEvent}},
		{events, eventKey(1), eventKey(head + 1)},
		{state, []byte{prefixEvent + 1}, nil},
	}
	for _, rg := range ranges {
		if rg.r == events && head == 0 {
			continue
		}
		it, err := rg.r.NewIter(&pebble.IterOptions{LowerBound: rg.lower, UpperBound: rg.upper})
		if err != nil {
			return err
		}
		for valid := it.First(); valid; valid = it.Next() {
			if err := fn(it.Key(), it.Value()); err != nil {
				_ = it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}
