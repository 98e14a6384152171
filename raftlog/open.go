package raftlog

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// Store is what a Raft node needs from its log store; LogStore (Pebble) and
// SegmentStore both are one.
type Store interface {
	raft.LogStore
	raft.StableStore
	raft.MonotonicLogStore
	io.Closer
}

var (
	_ Store = (*LogStore)(nil)
	_ Store = (*SegmentStore)(nil)
)

// Kind names a log store implementation.
type Kind string

const (
	// KindAuto opens what the directory holds, and a segment store when it is new.
	KindAuto Kind = ""
	// KindPebble is LogStore.
	KindPebble Kind = "pebble"
	// KindSegment is SegmentStore.
	KindSegment Kind = "segment"
)

// Open opens the log store in dir by what is on disk: a directory that holds a
// Pebble store (a CURRENT or MANIFEST-* file) stays on Pebble, one with
// segment store files stays on those, and a new or empty one gets kind
// (KindAuto means a SegmentStore). Asking for a kind that contradicts what the
// directory holds is an error: nothing converts one into the other.
func Open(dir string, kind Kind, logger *slog.Logger) (Store, error) {
	onDisk, err := DetectKind(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case onDisk == KindAuto && kind == KindAuto:
		onDisk = KindSegment
	case onDisk == KindAuto:
		onDisk = kind
	case kind != KindAuto && kind != onDisk:
		return nil, fmt.Errorf("raftlog: %s holds a %s log store, not the %s store asked for", dir, onDisk, kind)
	}
	switch onDisk {
	case KindPebble:
		return OpenLogStore(dir, logger)
	case KindSegment:
		return OpenSegmentStore(dir, SegmentOptions{}, logger)
	default:
		return nil, fmt.Errorf("raftlog: unknown log store kind %q", kind)
	}
}

// DetectKind tells which store dir holds: KindPebble, KindSegment, or KindAuto
// when it is missing or holds neither (a LOCK file alone is neither).
func DetectKind(dir string) (Kind, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return KindAuto, nil
	}
	if err != nil {
		return KindAuto, fmt.Errorf("raftlog: list %s: %w", dir, err)
	}
	var pebble, segment bool
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "CURRENT" || strings.HasPrefix(name, "MANIFEST-"):
			pebble = true
		case name == stateFileName || strings.HasSuffix(name, segSuffix):
			segment = true
		}
	}
	switch {
	case pebble && segment:
		return KindAuto, fmt.Errorf("raftlog: %s holds both a Pebble store and segment files (%s): refusing to guess",
			dir, filepath.Join(dir, stateFileName))
	case pebble:
		return KindPebble, nil
	case segment:
		return KindSegment, nil
	}
	return KindAuto, nil
}
