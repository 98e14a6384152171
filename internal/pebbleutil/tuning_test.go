package pebbleutil

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestTuningValidate(t *testing.T) {
	good := []Tuning{{}, {MemTableSize: 1 << 20, CacheSize: 0, Compression: "none"},
		{L0CompactionThreshold: 2, L0StopWritesThreshold: 3, Compression: "minlz"}}
	for _, tu := range good {
		if err := tu.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", tu, err)
		}
	}
	bad := []Tuning{{MemTableSize: 1000}, {MemTableSize: 4 << 30}, {CacheSize: -1},
		{L0CompactionThreshold: 8, L0StopWritesThreshold: 8}, {L0CompactionThreshold: -1}, {Compression: "lz4"}}
	for _, tu := range bad {
		if err := tu.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", tu)
		}
	}
}

// TestTuningOpens: a store opened with tuned options takes them, writes and reads back
// through the chosen compression.
func TestTuningOpens(t *testing.T) {
	for _, c := range []string{"snappy", "minlz", "none"} {
		t.Run(c, func(t *testing.T) {
			opts := &pebble.Options{FormatMajorVersion: FormatMajorVersion}
			tu := Tuning{MemTableSize: 2 << 20, CacheSize: 1 << 20, L0CompactionThreshold: 3, L0StopWritesThreshold: 9, Compression: c}
			tu.Apply(opts)
			if opts.MemTableSize != 2<<20 || opts.CacheSize != 1<<20 || opts.L0CompactionThreshold != 3 || opts.L0StopWritesThreshold != 9 {
				t.Fatalf("Apply did not set the options: %+v", opts)
			}
			want, _ := compressionProfile(c)
			if got := opts.Levels[6].Compression(); got != want {
				t.Fatalf("L6 compression %s, want %s", got.Name, want.Name)
			}
			dir := t.TempDir()
			db, err := pebble.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			val := make([]byte, 4096)
			for i := range 2000 {
				if err := db.Set(U64(uint64(i)), val, pebble.NoSync); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Compact(t.Context(), U64(0), U64(2000), true); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = pebble.Open(dir, &pebble.Options{FormatMajorVersion: FormatMajorVersion})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			v, closer, err := db.Get(U64(1999))
			if err != nil || len(v) != 4096 {
				t.Fatalf("read back: %d bytes, %v", len(v), err)
			}
			closer.Close()
		})
	}
}
