package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chronicle-ledger/chronicle/internal/fsutil"
)

// DataFormat is the version of everything this package writes under a data directory:
// the Raft entry envelope and command batches, stored events and state records, the
// snapshot stream and the key layout. Format 1 was release 0.1 (JSON throughout, no
// FORMAT file); format 2 is the binary layouts of this build.
const DataFormat = 2

// formatFile names the data format of a data directory, written once when it is created.
const formatFile = "FORMAT"

const formatPrefix = "chronicle data format "

// checkDataDir makes sure dir holds data of DataFormat, creating a new data directory
// (and its FORMAT file) when there is none. A directory of another format is refused
// with both versions named, before anything in it is opened or written.
func checkDataDir(dir string) error {
	err := checkFormatFile(dir)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// No FORMAT file: a new directory, or one written by release 0.1, which had none.
	for _, sub := range []string{"raft", "state", "snapshots"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err == nil && len(entries) > 0 {
			return fmt.Errorf("data directory %s holds data format 1 (release 0.1: JSON log entries, no %s file); "+
				"this build reads data format %d and will not open it: start this build on a new data directory", dir, formatFile, DataFormat)
		}
	}
	return writeFormatFile(dir)
}

// checkFormatFile reads dir's FORMAT file: nil when it names DataFormat, an error
// wrapping os.ErrNotExist when there is none, another error otherwise.
func checkFormatFile(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("data directory %s has no %s file: %w", dir, formatFile, err)
	case err != nil:
		return fmt.Errorf("data directory %s: read %s: %w", dir, formatFile, err)
	}
	line := strings.TrimSpace(string(b))
	v, perr := strconv.Atoi(strings.TrimPrefix(line, formatPrefix))
	if !strings.HasPrefix(line, formatPrefix) || perr != nil {
		return fmt.Errorf("data directory %s: %s is damaged (%q); this build reads data format %d", dir, formatFile, line, DataFormat)
	}
	if v != DataFormat {
		return fmt.Errorf("data directory %s holds data format %d; this build reads data format %d and will not open it", dir, v, DataFormat)
	}
	return nil
}

// writeFormatFile writes FORMAT durably and atomically.
func writeFormatFile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, formatFile), []byte(fmt.Sprintf("%s%d\n", formatPrefix, DataFormat)), 0o644)
}
