package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"

	"github.com/chronicle-ledger/chronicle/internal/fsutil"
)

// DataFormat is the version of everything this package writes under a data directory:
// the Raft entry envelope and command batches, stored events and state records, the
// snapshot stream and the key layout. Format 1 was release 0.1 (JSON throughout, no
// FORMAT file); format 2 the binary layouts, all in one state DB; format 3 the same
// records with the events in a DB of their own (events.go); format 4 the smaller stream
// and type indexes (format4.go). A directory of format 2 or 3 is moved to format 4 when
// a node opens it (migrateFormat2, migrateFormat3).
const DataFormat = 4

// formatFile names the data format of a data directory, written once when it is created.
const formatFile = "FORMAT"

const formatPrefix = "chronicle data format "

// checkDataDir makes sure dir holds data of DataFormat, creating a new data directory
// (and its FORMAT file) when there is none and migrating one of format 2. A directory
// of another format is refused with both versions named, before anything in it is
// opened or written.
func checkDataDir(dir string, log *slog.Logger) error {
	v, err := readFormatFile(dir)
	switch {
	case err == nil && v == 2:
		return migrateFormat2(dir, log)
	case err == nil && v == 3:
		return migrateFormat3(dir, log)
	case err == nil:
		return checkFormat(dir, v)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	// No FORMAT file: a new directory, or one written by release 0.1, which had none.
	for _, sub := range []string{"raft", "state", eventsDir, "snapshots"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err == nil && len(entries) > 0 {
			return fmt.Errorf("data directory %s holds data format 1 (release 0.1: JSON log entries, no %s file); "+
				"this build reads data format %d and will not open it: start this build on a new data directory", dir, formatFile, DataFormat)
		}
	}
	return writeFormatFile(dir)
}

// checkFormatFile reads dir's FORMAT file: nil when it names a format this build opens
// (DataFormat, or 2 or 3, which a node's start migrates), an error wrapping os.ErrNotExist
// when there is none, another error otherwise.
func checkFormatFile(dir string) error {
	v, err := readFormatFile(dir)
	if err != nil {
		return err
	}
	if v == 2 || v == 3 {
		return nil
	}
	return checkFormat(dir, v)
}

func checkFormat(dir string, v int) error {
	if v != DataFormat {
		return fmt.Errorf("data directory %s holds data format %d; this build reads data format %d and will not open it", dir, v, DataFormat)
	}
	return nil
}

// readFormatFile returns the format dir's FORMAT file names: an error wrapping
// os.ErrNotExist when there is none.
func readFormatFile(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("data directory %s has no %s file: %w", dir, formatFile, err)
	case err != nil:
		return 0, fmt.Errorf("data directory %s: read %s: %w", dir, formatFile, err)
	}
	line := strings.TrimSpace(string(b))
	v, perr := strconv.Atoi(strings.TrimPrefix(line, formatPrefix))
	if !strings.HasPrefix(line, formatPrefix) || perr != nil {
		return 0, fmt.Errorf("data directory %s: %s is damaged (%q); this build reads data format %d", dir, formatFile, line, DataFormat)
	}
	return v, nil
}

// migrateFormat2 moves the events of a format-2 data directory, where they shared the
// state DB with everything else, into the events DB, upgrades the indexes as format 4
// has them (upgradeIndexes), and then writes FORMAT 4. Each step is durable before the
// next, and FORMAT changes last: a crash midway leaves format 2, and the next start
// copies again (the same records under the same keys) and upgrades what is left.
func migrateFormat2(dir string, log *slog.Logger) error {
	start := time.Now()
	ev, err := openEventsDB(filepath.Join(dir, eventsDir), pebbleutil.Tuning{}, log, nil, nil)
	if err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	// The state DB as format 2 kept it, with its WAL (which Open replays).
	stateDir := filepath.Join(dir, "state")
	db, err := pebble.Open(stateDir, &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger: pebbleutil.Logger(log, "pebble"), EventListener: pebbleutil.Events(log, "pebble")})
	if err != nil {
		_ = ev.Close()
		return fmt.Errorf("move to data format 4: open the state DB in %s: %w", stateDir, err)
	}
	n, err := moveEvents(db, ev)
	records := 0
	if err == nil {
		records, err = upgradeIndexes(db, ev)
	}
	err = errors.Join(err, db.Close(), ev.Close())
	if err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	if err := writeFormatFile(dir); err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	log.Info("moved the events into their own DB and rewrote the indexes (data format 2 to 4)", "dir", dir,
		"events", n, "stream_and_type_records", records, "took", time.Since(start))
	return nil
}

// moveEvents copies db's event records into ev, syncs them, and only then deletes them
// from db, durably.
func moveEvents(db, ev *pebble.DB) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return 0, err
	}
	n := 0
	b := ev.NewBatch()
	for valid := it.First(); valid && err == nil; valid = it.Next() {
		if err = b.Set(it.Key(), it.Value(), nil); err != nil {
			break
		}
		n++
		if b.Len() > 16<<20 {
			err = b.Commit(pebble.NoSync)
			_ = b.Close()
			b = ev.NewBatch()
		}
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	err = errors.Join(err, it.Close())
	_ = b.Close()
	if err != nil {
		return n, fmt.Errorf("copy the events: %w", err)
	}
	if err := syncEvents(ev); err != nil {
		return n, err
	}
	if err := db.DeleteRange([]byte{prefixEvent}, []byte{prefixEvent + 1}, pebble.Sync); err != nil {
		return n, fmt.Errorf("delete the moved events from the state DB: %w", err)
	}
	return n, flushState(db)
}

// writeFormatFile writes FORMAT durably and atomically.
func writeFormatFile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, formatFile), []byte(fmt.Sprintf("%s%d\n", formatPrefix, DataFormat)), 0o644)
}
