package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/golang/snappy"

	"github.com/chronicle-ledger/chronicle"
)

// takeBackup writes a whole backup of s to memory.
func takeBackup(t *testing.T, s *Store) []byte {
	t.Helper()
	b, err := s.OpenBackup()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var buf bytes.Buffer
	n, err := b.WriteTo(context.Background(), &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d bytes reported, %d written, %v", n, buf.Len(), err)
	}
	return buf.Bytes()
}

func readBackup(data []byte) (*BackupFile, error) {
	f, err := ReadBackupFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	return f, f.Verify()
}

// TestBackupFileRefusesEveryDamage: a backup of a small ledger verifies and names the
// head; every single flipped byte and every truncation is refused.
func TestBackupFileRefusesEveryDamage(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	fillLedger(t, s, 3, 4)
	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data := takeBackup(t, s)
	f, err := readBackup(data)
	if err != nil {
		t.Fatalf("a fresh backup does not verify: %v", err)
	}
	if f.Header.Position != 7 || f.Header.HeadHash != head.Hash || f.Header.NodeID != "n1" || f.Header.AppliedIndex == 0 ||
		f.Header.DataFormat != DataFormat || f.Header.Created.IsZero() {
		t.Fatalf("header %+v; want position 7, hash %s, node n1", f.Header, head.Hash)
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x20
		if _, err := readBackup(bad); err == nil {
			t.Fatalf("a backup with byte %d of %d flipped verifies", i, len(data))
		}
	}
	for n := range len(data) {
		_, err := readBackup(data[:n])
		if err == nil {
			t.Fatalf("a backup cut to %d of %d bytes verifies", n, len(data))
		}
		if n > 100 && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("a backup cut to %d of %d bytes: %v; want it called truncated", n, len(data), err)
		}
	}
	if _, err := readBackup(append(bytes.Clone(data), 0)); err == nil {
		t.Fatal("a backup with a byte appended verifies")
	}
}

// TestRestoredDirStartsANewCluster: a restored directory opens as a new one-node cluster
// under another node id, at the backup's head, without the old cluster's node records,
// and its log continues from the backup's head.
func TestRestoredDirStartsANewCluster(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	want := fillLedger(t, s, 2, 5)
	if err := s.Register(context.Background(), NodeMeta{ID: "n1", APIURL: "http://old.example:4000"}); err != nil {
		t.Fatal(err)
	}
	data := takeBackup(t, s)
	// Writes after the backup are not in it.
	mustOK(t, s, cmdDeposit("acc-00", "5.00"))
	closeStore(t, s)

	f, err := ReadBackupFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := RestoreBackup(f, dir, env.cfg.Logger); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".restored.restore-*")); len(left) != 0 {
		t.Fatalf("temporary directories left: %v", left)
	}
	if err := RestoreBackup(f, dir, env.cfg.Logger); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second restore into the same directory: %v; want it refused as not empty", err)
	}

	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); err != nil {
		t.Fatalf("no %s marker in the restored directory: %v", RestoredFile, err)
	}
	// Started to join another cluster, it is refused: it founds its own.
	joining := newLedgerEnv(t, func(c *Config) { c.DataDir, c.NodeID, c.Bootstrap = dir, "fresh", false })
	if s, err := Open(joining.cfg); err == nil || !strings.Contains(err.Error(), "without --join") {
		if err == nil {
			_ = s.Close()
		}
		t.Fatalf("a restored directory started to join: %v; want it refused", err)
	}

	renv := newLedgerEnv(t, func(c *Config) { c.DataDir, c.NodeID = dir, "fresh" })
	r := renv.open()
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); !os.IsNotExist(err) {
		t.Fatalf("the %s marker is still there after the first start: %v", RestoredFile, err)
	}
	// Its state is filed as a Raft snapshot at the backup's index, so that a node joining
	// later is sent it.
	if snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "snapshots", "*", "meta.json")); len(snaps) != 1 {
		t.Fatalf("snapshots after the first start: %v; want one", snaps)
	}
	head, err := r.Head(context.Background())
	if err != nil || head.Position != f.Header.Position || head.Hash != f.Header.HeadHash {
		t.Fatalf("restored head %+v, %v; want position %d hash %s", head, err, f.Header.Position, f.Header.HeadHash)
	}
	for id, bal := range want {
		a, ok, err := reader{r.fsm.db, r.fsm.ev}.Account(id)
		if err != nil || !ok || a.Balance != bal {
			t.Fatalf("account %s restored as %+v (%v, %v); want balance %d", id, a, ok, err, bal)
		}
	}
	if _, ok, err := r.NodeMeta("n1"); ok || err != nil {
		t.Fatalf("the old cluster's node record survived the restore (%v, %v)", ok, err)
	}
	if servers, err := r.Servers(); err != nil || len(servers) != 1 || servers[0].ID != "fresh" {
		t.Fatalf("servers of the restored node: %+v, %v; want fresh alone", servers, err)
	}
	res := mustOK(t, r, cmdDeposit("acc-01", "1.00"))
	if res[0].Position != f.Header.Position+1 || res[0].Events[0].PrevHash != f.Header.HeadHash {
		t.Fatalf("first write after restore at %d with prev hash %s; want %d after %s",
			res[0].Position, res[0].Events[0].PrevHash, f.Header.Position+1, f.Header.HeadHash)
	}
	// A restart applies nothing twice.
	closeStore(t, r)
	r = renv.open()
	if head, _ := r.Head(context.Background()); head.Position != f.Header.Position+1 {
		t.Fatalf("head after restart %d, want %d", head.Position, f.Header.Position+1)
	}
	if a, _, _ := (reader{r.fsm.db, r.fsm.ev}).Account("acc-01"); a.Balance != want["acc-01"]+100 {
		t.Fatalf("acc-01 after restart: %d, want %d", a.Balance, want["acc-01"]+100)
	}
}

// TestRestoreRefusesBeforeWriting: a damaged file or a non-empty target leaves the target
// as it was.
func TestRestoreRefusesBeforeWriting(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	fillLedger(t, s, 1, 2)
	data := takeBackup(t, s)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 1
	f, err := ReadBackupFile(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err) // the framing is intact; only the contents are not
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "d")
	if err := RestoreBackup(f, dir, env.cfg.Logger); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("restore of a damaged backup: %v; want a checksum error", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a refused restore left %v in %s", entries, parent)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	good, _ := ReadBackupFile(bytes.NewReader(data), int64(len(data)))
	if err := RestoreBackup(good, dir, env.cfg.Logger); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a refused restore changed %s: %v", dir, entries)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("a refused restore left %v in %s", entries, parent)
	}
}

// TestBackupOfEmptyLedger: a ledger without events backs up and restores too.
func TestBackupOfEmptyLedger(t *testing.T) {
	t.Run("after the first entries", func(t *testing.T) { testBackupOfEmptyLedger(t, true) })
	// A node that has applied nothing yet (here: one that never bootstrapped) backs up
	// applied index 0; a restore must still found a cluster that elects itself, not file
	// a snapshot at index 0, which Raft reads as no configuration (it once did).
	t.Run("at applied index 0", func(t *testing.T) { testBackupOfEmptyLedger(t, false) })
}

func testBackupOfEmptyLedger(t *testing.T, bootstrap bool) {
	env := newLedgerEnv(t, func(c *Config) { c.Bootstrap = bootstrap })
	var s *Store
	if bootstrap {
		s = env.open()
	} else {
		var err error
		if s, err = Open(env.cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	data := takeBackup(t, s)
	if bootstrap { // until the backup holds the first applied entries
		waitUntil(t, "a backup past applied index 0", func() bool {
			f, err := readBackup(data)
			if err == nil && f.Header.AppliedIndex > 0 {
				return true
			}
			data = takeBackup(t, s)
			return false
		})
	}
	f, err := readBackup(data)
	if err != nil || f.Header.Position != 0 || f.Header.HeadHash != chronicle.GenesisHash {
		t.Fatalf("empty backup: %+v, %v", f, err)
	}
	if (f.Header.AppliedIndex > 0) != bootstrap {
		t.Fatalf("backup at applied index %d", f.Header.AppliedIndex)
	}
	dir := filepath.Join(t.TempDir(), "e")
	if err := RestoreBackup(f, dir, env.cfg.Logger); err != nil {
		t.Fatal(err)
	}
	r := newLedgerEnv(t, func(c *Config) { c.DataDir = dir }).open()
	if res := mustOK(t, r, cmdCreate("first", "USD", "1", "")); res[0].Position != 1 {
		t.Fatalf("first write on a restored empty ledger at position %d", res[0].Position)
	}
}

// TestCloseEndsABackupInFlight: closing the store while a backup is open stops its
// writes rather than closing the state DB under its snapshot.
func TestCloseEndsABackupInFlight(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	fillLedger(t, s, 1, 1)
	b, err := s.OpenBackup()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	waitUntil(t, "close to start", func() bool {
		select {
		case <-s.stop:
			return true
		default:
			return false
		}
	})
	if _, err := b.WriteTo(context.Background(), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("a backup written while the store closes: %v", err)
	}
	_ = b.Close()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenBackup(); err == nil {
		t.Fatal("a closed store opened a backup")
	}
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestRestoreReadsTheFileOnce: restore checks the whole file and writes the state DB in
// one read of it, not one read per check and another to write.
func TestRestoreReadsTheFileOnce(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	fillLedger(t, s, 3, 200)
	data := takeBackup(t, s)
	cr := &countingReaderAt{r: bytes.NewReader(data)}
	f, err := ReadBackupFile(cr, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	cr.n.Store(0) // the framing's two ends, read once by every reader of a backup
	dir := filepath.Join(t.TempDir(), "restored")
	if err := RestoreBackup(f, dir, env.cfg.Logger); err != nil {
		t.Fatal(err)
	}
	if n := cr.n.Load(); n > int64(len(data)) {
		t.Fatalf("restore read %d bytes of a %d-byte backup (%.1f times)", n, len(data), float64(n)/float64(len(data)))
	}
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); err != nil {
		t.Fatalf("the restore made no data directory: %v", err)
	}
}

// rewriteBackup re-encodes the backup data with its records passed through edit, and a
// checksum that matches: damage only the body's own checks can find.
func rewriteBackup(t *testing.T, data []byte, edit func([]kv) []kv) []byte {
	t.Helper()
	f, err := ReadBackupFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	h, br, err := readFullHeader(bytes.NewReader(data[f.bodyOff : f.bodyOff+f.bodyLen]))
	if err != nil {
		t.Fatal(err)
	}
	var recs []kv
	for {
		k, err := readChunk(br)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readChunk(br)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, kv{k, v})
	}
	var body bytes.Buffer
	sw := snappy.NewBufferedWriter(&body)
	bw := bufio.NewWriter(sw)
	hb, err := h.marshal()
	if err != nil {
		t.Fatal(err)
	}
	chunks := [][]byte{hb}
	for _, r := range edit(recs) {
		chunks = append(chunks, r.k, r.v)
	}
	for _, c := range append(chunks, nil) {
		if err := writeChunk(bw, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(bw.Flush(), sw.Close()); err != nil {
		t.Fatal(err)
	}
	out := append(bytes.Clone(data[:f.bodyOff]), body.Bytes()...)
	out = append(out, backupTrailerMagic...)
	out = binary.BigEndian.AppendUint64(out, uint64(body.Len()))
	sum := sha256.Sum256(out[:len(out)-len(backupTrailerMagic)-8])
	return append(out, sum[:]...)
}

// TestRestoreRefusesForgedChecksum: a body that fails its own checks under a checksum
// that matches is refused, and leaves neither the target, nor the hidden directory it was
// being written into, nor the target's parent made for it, wherever in the body the
// damage is (the last event missing is found only after every record was written).
func TestRestoreRefusesForgedChecksum(t *testing.T) {
	env := newLedgerEnv(t, nil)
	s := env.open()
	fillLedger(t, s, 2, 20)
	data := takeBackup(t, s)
	if _, err := readBackup(rewriteBackup(t, data, func(r []kv) []kv { return r })); err != nil {
		t.Fatalf("the rewrite of an intact backup does not verify: %v", err)
	}
	lastEvent := func(r []kv) int {
		i := len(r) - 1
		for r[i].k[0] != prefixEvent {
			i--
		}
		return i
	}
	for _, c := range []struct {
		name, want string
		edit       func([]kv) []kv
	}{
		{"an event altered", "hash chain", func(r []kv) []kv {
			i := lastEvent(r) / 2
			var e chronicle.Event
			if err := e.UnmarshalBinary(r[i].v); err != nil {
				t.Fatal(err)
			}
			e.Data.Amount++
			v, err := e.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			r[i].v = v
			return r
		}},
		{"the last event missing", "the events end at position", func(r []kv) []kv {
			i := lastEvent(r)
			return append(r[:i], r[i+1:]...)
		}},
		{"records out of order", "out of order", func(r []kv) []kv {
			r[1], r[2] = r[2], r[1]
			return r
		}},
		{"the head record missing", "no head record", func(r []kv) []kv {
			return slices.DeleteFunc(r, func(e kv) bool { return bytes.Equal(e.k, metaKey(metaHead)) })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := rewriteBackup(t, data, func(r []kv) []kv {
				return c.edit(slices.Clone(r))
			})
			if _, err := readBackup(bad); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify: %v; want %q", err, c.want)
			}
			f, err := ReadBackupFile(bytes.NewReader(bad), int64(len(bad)))
			if err != nil {
				t.Fatal(err)
			}
			// The target's parent does not exist yet: it is made for the restore, and
			// removed again with it.
			parent := t.TempDir()
			err = RestoreBackup(f, filepath.Join(parent, "new", "d"), env.cfg.Logger)
			if err == nil || !strings.HasPrefix(err.Error(), "damaged backup") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore: %v; want a damaged backup and %q", err, c.want)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Fatalf("a refused restore left %v in %s", entries, parent)
			}
		})
	}
}
