package pebbleutil

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
)

// Tuning is the part of a Pebble store's options an operator may set. Zero fields take
// the defaults below.
type Tuning struct {
	// MemTableSize is the size of one memtable in bytes. Larger memtables mean fewer,
	// larger flushes and fewer L0 files to compact; Pebble may hold up to
	// MemTableStopWritesThreshold (4) of them.
	MemTableSize uint64
	// CacheSize is the block cache in bytes: reads of the read model (statements,
	// balance-at, the event log) are served from it.
	CacheSize int64
	// L0CompactionThreshold is how many L0 read-amplification units start a compaction
	// to Lbase; L0StopWritesThreshold is where writes stall until compactions catch up.
	L0CompactionThreshold int
	L0StopWritesThreshold int
	// Compression is the block compression: "snappy", "minlz" or "none".
	Compression string
}

// The state DB's defaults. Measured on the 2-core bench machine (docs/benchmarks.md):
// Pebble's own 4 MiB memtable flushed several times a second under load and the
// compactions behind the flushes took a quarter of the CPU; 16 MiB memtables and a
// higher L0 threshold let a compaction carry more at once. Memory stays bounded: at most
// 4 memtables plus the cache, about 96 MiB.
const (
	DefaultMemTableSize          = 16 << 20
	DefaultCacheSize             = 32 << 20
	DefaultL0CompactionThreshold = 4
	DefaultL0StopWritesThreshold = 24
	DefaultCompression           = "snappy"
)

// WithDefaults fills the zero fields.
func (t Tuning) WithDefaults() Tuning {
	if t.MemTableSize == 0 {
		t.MemTableSize = DefaultMemTableSize
	}
	if t.CacheSize == 0 {
		t.CacheSize = DefaultCacheSize
	}
	if t.L0CompactionThreshold == 0 {
		t.L0CompactionThreshold = DefaultL0CompactionThreshold
	}
	if t.L0StopWritesThreshold == 0 {
		t.L0StopWritesThreshold = DefaultL0StopWritesThreshold
	}
	if t.Compression == "" {
		t.Compression = DefaultCompression
	}
	return t
}

// Validate refuses settings Pebble would reject or misbehave with.
func (t Tuning) Validate() error {
	t = t.WithDefaults()
	if t.MemTableSize < 1<<20 || t.MemTableSize >= 4<<30 {
		return fmt.Errorf("pebble memtable size %d: want 1 MiB to 4 GiB", t.MemTableSize)
	}
	if t.CacheSize < 0 {
		return fmt.Errorf("pebble cache size %d is negative", t.CacheSize)
	}
	if t.L0CompactionThreshold < 1 || t.L0StopWritesThreshold <= t.L0CompactionThreshold {
		return fmt.Errorf("pebble L0 thresholds: compaction %d must be at least 1 and below stop-writes %d",
			t.L0CompactionThreshold, t.L0StopWritesThreshold)
	}
	if _, err := compressionProfile(t.Compression); err != nil {
		return err
	}
	return nil
}

// Apply sets the tuned fields of opts (defaults for zero fields). Validate first: Apply
// keeps Pebble's default compression for an unknown name.
func (t Tuning) Apply(opts *pebble.Options) {
	t = t.WithDefaults()
	opts.MemTableSize = t.MemTableSize
	opts.CacheSize = t.CacheSize
	opts.L0CompactionThreshold = t.L0CompactionThreshold
	opts.L0StopWritesThreshold = t.L0StopWritesThreshold
	if p, err := compressionProfile(t.Compression); err == nil {
		for i := range opts.Levels {
			opts.Levels[i].Compression = func() *block.CompressionProfile { return p }
		}
	}
}

func compressionProfile(name string) (*block.CompressionProfile, error) {
	switch name {
	case "snappy":
		return block.SnappyCompression, nil
	case "minlz":
		return block.MinLZCompression, nil
	case "none":
		return block.NoCompression, nil
	}
	return nil, fmt.Errorf("pebble compression %q: want snappy, minlz or none", name)
}
