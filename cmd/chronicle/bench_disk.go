package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"
)

// diskConfig is what `chronicle bench disk` was asked to do.
type diskConfig struct {
	dir         string // parent of the store; a temp dir in it is removed afterwards
	duration    time.Duration
	concurrency int
	size        int // bytes per record value
}

// diskResult is Pebble's durable-write ceiling as measured: every commit is a one-record
// batch committed with pebble.Sync, so records/s is commits/s.
type diskResult struct {
	records, commits int64
	elapsed          time.Duration
	latencies        []time.Duration // commit latencies, sorted
	fsyncs           uint64          // WAL fsyncs (Pebble groups concurrent syncs)
	walBytes         uint64
	reopened         int64 // records found after closing and reopening the store
}

func (r diskResult) perSecond() float64 {
	if s := r.elapsed.Seconds(); s > 0 {
		return float64(r.records) / s
	}
	return 0
}

func (r diskResult) commitsPerFsync() float64 {
	if r.fsyncs == 0 {
		return 0
	}
	return float64(r.commits) / float64(r.fsyncs)
}

func benchDisk(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseDiskFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := runDiskBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	writeDiskReport(stdout, cfg, res)
	if res.reopened != res.records {
		return fmt.Errorf("bench disk: after reopening the store %d of %d acknowledged records are there", res.reopened, res.records)
	}
	return nil
}

func parseDiskFlags(args []string, stderr io.Writer) (diskConfig, error) {
	var cfg diskConfig
	fs := flag.NewFlagSet("chronicle bench disk", flag.ContinueOnError)
	fs.StringVar(&cfg.dir, "dir", "", "directory to put the store in (a temp dir inside it, removed afterwards; default /var/tmp, else the system's temp dir): the disk the data dir is on")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to write")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "writers, each committing one-record batches with pebble.Sync")
	fs.IntVar(&cfg.size, "size", 200, "bytes per record value (incompressible)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench disk [flags]\n\n"+
			"Measures Pebble's durable-write ceiling on this disk, as ../shared/bench/pebblesync's\n"+
			"concurrent mode does: --concurrency goroutines commit one-record batches with\n"+
			"pebble.Sync on a fresh store (Pebble groups concurrent syncs into one WAL fsync) for\n"+
			"--duration; then the store is reopened and every acknowledged record counted.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if cfg.concurrency < 1 {
		return cfg, fmt.Errorf("bench disk: --concurrency must be at least 1, got %d", cfg.concurrency)
	}
	if cfg.duration <= 0 {
		return cfg, fmt.Errorf("bench disk: --duration must be positive, got %s", cfg.duration)
	}
	if cfg.size < 1 || cfg.size > 1<<15 {
		return cfg, fmt.Errorf("bench disk: --size must be between 1 and 32768 bytes, got %d", cfg.size)
	}
	return cfg, nil
}

// runDiskBench writes for cfg.duration (or until ctx ends) into a fresh store, closes
// it, reopens it and counts the records.
func runDiskBench(ctx context.Context, cfg diskConfig, stderr io.Writer) (diskResult, error) {
	parent, err := os.MkdirTemp(benchTempParent(cfg.dir), "chronicle-bench-disk-")
	if err != nil {
		return diskResult{}, fmt.Errorf("bench disk: %w", err)
	}
	defer os.RemoveAll(parent)
	path := filepath.Join(parent, "store")
	fmt.Fprintf(stderr, "bench disk: %d writers, 1-record synced batches of %d bytes, for %s, store in %s\n",
		cfg.concurrency, cfg.size, cfg.duration, path)

	db, err := pebble.Open(path, &pebble.Options{Logger: quietPebble{stderr}})
	if err != nil {
		return diskResult{}, fmt.Errorf("bench disk: open: %w", err)
	}
	m0 := db.Metrics()
	fs0, wal0 := walFsyncs(m0), m0.WAL.BytesWritten

	loadCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	lats := make([][]time.Duration, cfg.concurrency)
	counts := make([]int64, cfg.concurrency)
	errs := make([]error, cfg.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.concurrency {
		wg.Go(func() {
			noise := make([]byte, 1<<16) // incompressible values, sliced at varying offsets
			_, _ = rand.Read(noise)
			key := make([]byte, 16)
			binary.BigEndian.PutUint64(key[:8], uint64(w))
			var seq uint64
			for loadCtx.Err() == nil {
				b := db.NewBatch()
				binary.BigEndian.PutUint64(key[8:], seq)
				off := int(seq*131) % (len(noise) - cfg.size)
				if err := b.Set(key, noise[off:off+cfg.size], nil); err != nil {
					errs[w] = err
					return
				}
				t0 := time.Now()
				if err := b.Commit(pebble.Sync); err != nil {
					errs[w] = err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				_ = b.Close()
				seq++
				counts[w] = int64(seq)
			}
		})
	}
	wg.Wait()
	res := diskResult{elapsed: time.Since(start)}
	m1 := db.Metrics()
	res.fsyncs = walFsyncs(m1) - fs0
	res.walBytes = m1.WAL.BytesWritten - wal0
	for w := range lats {
		res.latencies = append(res.latencies, lats[w]...)
		res.records += counts[w]
	}
	res.commits = int64(len(res.latencies))
	slices.Sort(res.latencies)
	if err := db.Close(); err != nil {
		return res, fmt.Errorf("bench disk: close: %w", err)
	}
	for _, err := range errs {
		if err != nil {
			return res, fmt.Errorf("bench disk: commit: %w", err)
		}
	}

	// Reopen and count: every acknowledged record must be readable.
	db, err = pebble.Open(path, &pebble.Options{Logger: quietPebble{stderr}})
	if err != nil {
		return res, fmt.Errorf("bench disk: reopen: %w", err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return res, fmt.Errorf("bench disk: reopen: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		res.reopened++
	}
	if err := it.Close(); err != nil {
		return res, fmt.Errorf("bench disk: reopen: %w", err)
	}
	return res, nil
}

// benchTempParent is dir, or where benches put their stores by default: /var/tmp (disk
// backed, where ../shared/bench/pebblesync puts its store; /tmp may be a tmpfs), else
// the system's temp dir.
func benchTempParent(dir string) string {
	if dir != "" {
		return dir
	}
	if st, err := os.Stat("/var/tmp"); err == nil && st.IsDir() {
		return "/var/tmp"
	}
	return os.TempDir()
}

// walFsyncs is the number of WAL fsyncs Pebble has done (its fsync latency histogram's
// sample count).
func walFsyncs(m *pebble.Metrics) uint64 {
	if m.LogWriter.FsyncLatency == nil {
		return 0
	}
	var pb dto.Metric
	if err := m.LogWriter.FsyncLatency.Write(&pb); err != nil || pb.Histogram == nil {
		return 0
	}
	return pb.Histogram.GetSampleCount()
}

func writeDiskReport(w io.Writer, cfg diskConfig, res diskResult) {
	secs := res.elapsed.Seconds()
	fmt.Fprintf(w, "store:         pebble v2, fresh, 1-record batches of %d bytes, pebble.Sync\n", cfg.size)
	fmt.Fprintf(w, "concurrency:   %d\n", cfg.concurrency)
	fmt.Fprintf(w, "duration:      %s\n", res.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "records:       %d\n", res.records)
	fmt.Fprintf(w, "throughput:    %.1f records/s\n", res.perSecond())
	fmt.Fprintf(w, "wal fsyncs:    %d (%.1f/s, %.1f commits per fsync)\n", res.fsyncs, float64(res.fsyncs)/max(secs, 1e-9), res.commitsPerFsync())
	fmt.Fprintf(w, "wal:           %.1f MB/s\n", float64(res.walBytes)/max(secs, 1e-9)/1e6)
	for _, p := range []int{50, 90, 99} {
		fmt.Fprintf(w, "commit p%d:    %s\n", p, formatLatency(percentile(res.latencies, p)))
	}
	fmt.Fprintf(w, "reopened:      %d of %d records present\n", res.reopened, res.records)
}

// quietPebble drops Pebble's informational messages (WAL replay notes) and keeps errors.
type quietPebble struct{ w io.Writer }

func (quietPebble) Infof(string, ...any) {}
func (q quietPebble) Errorf(format string, args ...any) {
	fmt.Fprintf(q.w, "pebble: "+format+"\n", args...)
}
func (q quietPebble) Fatalf(format string, args ...any) {
	fmt.Fprintf(q.w, "pebble: "+format+"\n", args...)
	os.Exit(1)
}
