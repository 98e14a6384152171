package raftlog

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// segFile returns the path of the segment holding index and the record's offset.
func segRecord(t *testing.T, s *SegmentStore, index uint64) (string, int64, int64) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, g := range s.segs {
		if index >= g.first && index <= g.last() {
			off, end := g.bounds(index)
			return g.path, off, end
		}
	}
	t.Fatalf("index %d not stored", index)
	return "", 0, 0
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func storeBatches(t *testing.T, s Store, lo, hi, batch uint64) {
	t.Helper()
	for i := lo; i <= hi; i += batch {
		if err := s.StoreLogs(testLogs(i, min(i+batch-1, hi))); err != nil {
			t.Fatalf("StoreLogs(%d..): %v", i, err)
		}
	}
}

func checkAll(t *testing.T, s Store, lo, hi uint64) {
	t.Helper()
	checkBounds(t, s, lo, hi)
	for i := lo; i <= hi; i++ {
		checkLog(t, s, testLog(i))
	}
	checkMissing(t, s, lo-1, lo-1)
	checkMissing(t, s, hi+1, hi+1)
}

// small segments: about 10 records each.
var smallSegs = SegmentOptions{SegmentSize: 400}

func TestSegmentRollAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	storeBatches(t, s, 1, 300, 7)
	if n := len(segFiles(t, dir)); n < 10 {
		t.Fatalf("%d segment files, want many (rolled)", n)
	}
	checkAll(t, s, 1, 300)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, smallSegs)
	defer s.Close()
	checkAll(t, s, 1, 300)
	storeBatches(t, s, 301, 320, 3)
	checkAll(t, s, 1, 320)
}

func TestSegmentPrefixDeleteReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	storeBatches(t, s, 1, 200, 5)
	before := len(segFiles(t, dir))
	if err := s.DeleteRange(1, 123); err != nil {
		t.Fatal(err)
	}
	checkAll(t, s, 124, 200)
	checkMissing(t, s, 1, 123)
	if after := len(segFiles(t, dir)); after >= before {
		t.Fatalf("segments %d -> %d, want whole segments removed", before, after)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, smallSegs)
	defer s.Close()
	checkAll(t, s, 124, 200) // entries 1..123 sharing a segment with 124 stay hidden
	checkMissing(t, s, 1, 123)
}

// A crash between persisting the floor and removing the segments below it.
func TestSegmentPrefixDeleteCrashMidway(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	storeBatches(t, s, 1, 100, 5)
	s.stateMu.Lock()
	err := s.writeStateLocked(77, s.stable)
	s.stateMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, smallSegs)
	defer s.Close()
	checkAll(t, s, 77, 100)
	checkMissing(t, s, 1, 76)
	for _, p := range segFiles(t, dir) {
		if strings.HasSuffix(p, segmentName(1)) {
			t.Fatalf("segment wholly below the floor survived: %s", p)
		}
	}
}

func TestSegmentSuffixTruncateAppendReopen(t *testing.T) {
	for _, cut := range []uint64{150, 141, 101} { // mid-segment, and whichever lands on a boundary
		dir := t.TempDir()
		s := openSegTest(t, dir, smallSegs)
		storeBatches(t, s, 1, 200, 4)
		if err := s.DeleteRange(50, 60); err == nil {
			t.Fatalf("hole delete succeeded")
		}
		if err := s.DeleteRange(cut, 1000); err != nil {
			t.Fatal(err)
		}
		checkAll(t, s, 1, cut-1)
		next := testLogs(cut, cut+30)
		for _, l := range next {
			l.Term = 77
		}
		if err := s.StoreLogs(next); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openSegTest(t, dir, smallSegs)
		checkBounds(t, s, 1, cut+30)
		checkLog(t, s, testLog(cut-1))
		checkLog(t, s, next[0])
		checkLog(t, s, next[30])
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSegmentDeleteAllThenAnyIndex(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	storeBatches(t, s, 1, 100, 10)
	if err := s.DeleteRange(0, 1<<63); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	if n := len(segFiles(t, dir)); n != 0 {
		t.Fatalf("%d segment files after deleting all", n)
	}
	// Lower than the old last index, as after a snapshot restore.
	if err := s.StoreLogs(testLogs(40, 60)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, smallSegs)
	checkAll(t, s, 40, 60)
	if err := s.DeleteRange(40, 60); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, smallSegs)
	defer s.Close()
	checkBounds(t, s, 0, 0)
	if err := s.StoreLogs(testLogs(1000, 1001)); err != nil {
		t.Fatal(err)
	}
	checkAll(t, s, 1000, 1001)
}

func TestSegmentStoreLogsMustFollow(t *testing.T) {
	s := openSegTest(t, t.TempDir(), SegmentOptions{})
	defer s.Close()
	storeBatches(t, s, 1, 10, 10)
	for _, logs := range [][]*raft.Log{testLogs(12, 13), testLogs(10, 11), {testLog(11), testLog(13)}} {
		if err := s.StoreLogs(logs); err == nil {
			t.Fatalf("StoreLogs(%d..) after 10 succeeded", logs[0].Index)
		}
	}
	checkAll(t, s, 1, 10)
}

// damaged writes 1..30 into small segments, lets damage change the files, and
// reopens.
func damaged(t *testing.T, damage func(s *SegmentStore, dir string)) (*SegmentStore, string, error) {
	t.Helper()
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	storeBatches(t, s, 1, 30, 3)
	damage(s, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSegmentStore(dir, smallSegs, nil)
	if s != nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, dir, err
}

func wantCorruption(t *testing.T, err error, path string) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CorruptionError", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("error does not name %s: %v", path, err)
	}
	t.Logf("as expected: %v", err)
}

func TestSegmentOpenRefusesMidLogDamage(t *testing.T) {
	var path string
	_, _, err := damaged(t, func(s *SegmentStore, dir string) {
		var off, end int64
		path, off, end = segRecord(t, s, 29) // the last segment, with 30 after it
		flipByte(t, path, (off+end)/2)
	})
	wantCorruption(t, err, path)

	// A length field: past the end of the file, but an intact record follows.
	_, _, err = damaged(t, func(s *SegmentStore, dir string) {
		var off int64
		path, off, _ = segRecord(t, s, 29)
		flipByte(t, path, off+3)
	})
	wantCorruption(t, err, path)
}

func TestSegmentOpenRefusesSealedDamage(t *testing.T) {
	for _, idx := range []uint64{1, 5} { // the first record, and whatever ends a sealed segment
		var path string
		_, _, err := damaged(t, func(s *SegmentStore, dir string) {
			var off, end int64
			path, off, end = segRecord(t, s, idx)
			s.mu.RLock()
			g := s.segs[0]
			s.mu.RUnlock()
			if idx != 1 {
				off, end = g.bounds(g.last()) // the final record of a sealed segment
			}
			flipByte(t, path, end-1)
			_ = off
		})
		wantCorruption(t, err, path)
	}
	// A removed sealed segment leaves a gap.
	var path string
	_, _, err := damaged(t, func(s *SegmentStore, dir string) {
		s.mu.RLock()
		path = s.segs[1].path
		s.mu.RUnlock()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	})
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Open with a missing segment: %v", err)
	}
	// The state file.
	_, dir, err := damaged(t, func(s *SegmentStore, dir string) {
		flipByte(t, filepath.Join(dir, stateFileName), 9)
	})
	wantCorruption(t, err, filepath.Join(dir, stateFileName))
}

func TestSegmentOpenTruncatesTornAppend(t *testing.T) {
	cases := map[string]func(t *testing.T, path string, off, end int64){
		"short payload": func(t *testing.T, path string, off, end int64) { truncateFile(t, path, end-3) },
		"short header":  func(t *testing.T, path string, off, end int64) { truncateFile(t, path, off+5) },
		"bad crc":       func(t *testing.T, path string, off, end int64) { flipByte(t, path, end-1) },
		"zeros after": func(t *testing.T, path string, off, end int64) {
			truncateFile(t, path, off+20)
			appendBytes(t, path, make([]byte, 4096))
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			var path string
			s, dir, err := damaged(t, func(s *SegmentStore, dir string) {
				var off, end int64
				path, off, end = segRecord(t, s, 30)
				damage(t, path, off, end)
			})
			if err != nil {
				t.Fatalf("Open after a torn append: %v", err)
			}
			checkAll(t, s, 1, 29)
			if err := s.StoreLogs(testLogs(30, 33)); err != nil {
				t.Fatalf("StoreLogs after a torn append: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSegTest(t, dir, smallSegs)
			defer s.Close()
			checkAll(t, s, 1, 33)
		})
	}
}

// A batch that started a segment and was torn in its header: the file goes.
func TestSegmentOpenRemovesTornNewSegment(t *testing.T) {
	s, dir, err := damaged(t, func(s *SegmentStore, dir string) {
		s.opts.SegmentSize = 1 // roll
		if err := s.StoreLogs(testLogs(31, 31)); err != nil {
			t.Fatal(err)
		}
		truncateFile(t, filepath.Join(dir, segmentName(31)), 0)
		appendBytes(t, filepath.Join(dir, segmentName(31)), []byte(segMagic[:5]))
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	checkAll(t, s, 1, 30)
	if _, err := os.Stat(filepath.Join(dir, segmentName(31))); !os.IsNotExist(err) {
		t.Fatalf("torn segment still there: %v", err)
	}
	if err := s.StoreLogs(testLogs(31, 40)); err != nil {
		t.Fatal(err)
	}
	checkAll(t, s, 1, 40)
}

func TestSegmentGetLogDamagedAfterOpen(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, smallSegs)
	defer s.Close()
	storeBatches(t, s, 1, 30, 3)
	path, off, end := segRecord(t, s, 12)
	flipByte(t, path, (off+end)/2)
	err := s.GetLog(12, new(raft.Log))
	var ce *CorruptionError
	if err == nil || errors.Is(err, raft.ErrLogNotFound) || !errors.As(err, &ce) {
		t.Fatalf("GetLog of a damaged record: %v, want a corruption error", err)
	}
	checkLog(t, s, testLog(11))
	checkLog(t, s, testLog(13))
}

func TestSegmentStableEmptyAndOverwrite(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, SegmentOptions{})
	for i := range uint64(5) {
		if err := s.SetUint64([]byte("CurrentTerm"), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSegTest(t, dir, SegmentOptions{})
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 4 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	if err := s.Set([]byte("x"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("x")); err == nil || err.Error() == "not found" {
		t.Fatalf("GetUint64 of 3 bytes: %v", err)
	}
	if v, err := s.Get([]byte("x")); err != nil || !bytes.Equal(v, []byte{1, 2, 3}) {
		t.Fatalf("Get = %v, %v", v, err)
	}
}

func TestOpenChoosesByDisk(t *testing.T) {
	// A Pebble directory stays on Pebble.
	dir := t.TempDir()
	p := openTestStore(t, dir)
	if err := p.StoreLogs(testLogs(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, KindAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*LogStore); !ok {
		t.Fatalf("Open of a Pebble dir gave %T", s)
	}
	checkAll(t, s, 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, KindSegment, nil); err == nil {
		t.Fatalf("Open(KindSegment) of a Pebble dir succeeded")
	}

	// A new directory (missing, or with only a LOCK file) gets segments.
	for _, dir := range []string{filepath.Join(t.TempDir(), "raft"), t.TempDir()} {
		s, err := Open(dir, KindAuto, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.(*SegmentStore); !ok {
			t.Fatalf("Open of a new dir gave %T", s)
		}
		if err := s.StoreLogs(testLogs(1, 3)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if k, err := DetectKind(dir); err != nil || k != KindSegment {
			t.Fatalf("DetectKind = %q, %v", k, err)
		}
		if _, err := Open(dir, KindPebble, nil); err == nil {
			t.Fatalf("Open(KindPebble) of a segment dir succeeded")
		}
	}

	// Forcing Pebble for a new directory.
	s, err = Open(t.TempDir(), KindPebble, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*LogStore); !ok {
		t.Fatalf("Open(KindPebble) gave %T", s)
	}
	_ = s.Close()
}

func TestSegmentStoreLocksDir(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, SegmentOptions{})
	defer s.Close()
	if _, err := OpenSegmentStore(dir, SegmentOptions{}, nil); err == nil {
		t.Fatalf("a second open of a locked store succeeded")
	}
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// Appends are written into zeros laid down ahead of them, so most appends leave the
// file's length alone; the zeroed tail reads as the clean end of the log (no warning,
// nothing truncated), and a record larger than the zeroed tail extends the file again.
func TestSegmentZeroedAhead(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := OpenSegmentStore(dir, SegmentOptions{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		t.Helper()
		files := segFiles(t, dir)
		if len(files) != 1 {
			t.Fatalf("%d segment files, want 1", len(files))
		}
		fi, err := os.Stat(files[0])
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	storeBatches(t, s, 1, 1, 1)
	first := size()
	if first < zeroAhead {
		t.Fatalf("segment is %d bytes after one small append, want at least %d zeroed ahead", first, zeroAhead)
	}
	storeBatches(t, s, 2, 200, 1)
	if got := size(); got != first {
		t.Fatalf("segment grew from %d to %d bytes over small appends inside its zeroed tail", first, got)
	}
	big := testLog(201)
	big.Data = bytes.Repeat([]byte{7}, 3*zeroAhead/2)
	if err := s.StoreLogs([]*raft.Log{big}); err != nil {
		t.Fatal(err)
	}
	grown := size()
	if grown <= first+int64(len(big.Data)) {
		t.Fatalf("segment is %d bytes after a record of %d past a %d-byte file", grown, len(big.Data), first)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenSegmentStore(dir, SegmentOptions{}, logger)
	if err != nil {
		t.Fatalf("reopen with a zeroed tail: %v", err)
	}
	defer s.Close()
	if strings.Contains(logs.String(), "torn") || size() != grown {
		t.Fatalf("reopen treated the zeroed tail as damage (size %d, was %d): %s", size(), grown, logs.String())
	}
	checkBounds(t, s, 1, 201)
	for i := uint64(1); i <= 200; i++ {
		checkLog(t, s, testLog(i))
	}
	checkLog(t, s, big)
	storeBatches(t, s, 202, 220, 1)
	if got := size(); got != grown {
		t.Fatalf("appends after reopen changed the length from %d to %d", grown, got)
	}
	checkLog(t, s, testLog(220))
}

// A non-zero byte in the zeroed tail of the last segment is beyond every record: it is
// cut off as a torn append, and nothing stored is lost.
func TestSegmentGarbageInZeroedTail(t *testing.T) {
	dir := t.TempDir()
	s := openSegTest(t, dir, SegmentOptions{})
	storeBatches(t, s, 1, 50, 1)
	path, _, end := segRecord(t, s, 50)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, end+100)
	s = openSegTest(t, dir, SegmentOptions{})
	defer s.Close()
	checkAll(t, s, 1, 50)
	storeBatches(t, s, 51, 60, 1)
	checkAll(t, s, 1, 60)
}
