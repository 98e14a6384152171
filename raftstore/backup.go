package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/fsutil"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// Online backup. A backup is the FSM snapshot stream (the state DB's every record, read
// from one Pebble snapshot, so at one applied index) inside a file of its own:
//
//	magic "CHRONBAK" | version u16 | header length u32 | header (JSON, BackupHeader)
//	body: the snapshot stream exactly as Raft would persist it (snapshot.go)
//	trailer: "CHRONEND" | body length u64 | SHA-256 of everything before the trailer
//
// It is taken without Raft: no Raft snapshot is forced and the log is not truncated, so a
// backup neither disturbs replication nor waits for it. The header is written before the
// body and the checksum after it, so the file streams over HTTP in one pass and a file
// cut short anywhere lacks a valid trailer.

// BackupVersion is the version of the backup file layout this build writes and reads.
const BackupVersion = 1

const (
	backupMagic        = "CHRONBAK"
	backupTrailerMagic = "CHRONEND"
	backupPrefixSize   = len(backupMagic) + 2 + 4
	backupTrailerSize  = len(backupTrailerMagic) + 8 + sha256.Size
	// maxBackupHeader bounds the JSON header a reader accepts: a few hundred bytes are
	// written; a damaged length must not make a reader allocate gigabytes.
	maxBackupHeader = 64 << 10
)

// BackupHeader describes a backup: where the ledger stood and where it came from.
type BackupHeader struct {
	// Position and HeadHash are the ledger's head in the backup: its last event.
	Position   uint64    `json:"position"`
	HeadHash   string    `json:"head_hash"`
	CommitTime time.Time `json:"commit_time"`
	// AppliedIndex is the Raft index the state was at; Term the Raft term when the
	// backup was taken. Both are the source cluster's; a restore starts a new log.
	AppliedIndex uint64 `json:"applied_index"`
	Term         uint64 `json:"term"`
	// NodeID is the node the backup was taken from.
	NodeID string `json:"node_id"`
	// Created is when the backup was taken (the node's clock, UTC).
	Created time.Time `json:"created"`
	// DataFormat is the data format of the records in the body (DataFormat).
	DataFormat int `json:"data_format"`
}

// Head is the ledger head the header names.
func (h BackupHeader) Head() chronicle.Head {
	return chronicle.Head{Position: h.Position, Hash: h.HeadHash, CommitTime: h.CommitTime}
}

// Backup is an online backup being taken: a Pebble snapshot of the state DB, and the
// header describing it. Close it when done.
type Backup struct {
	Header BackupHeader
	v      views
	stop   <-chan struct{}
	done   func()
	once   sync.Once
}

// backupGate lets Close wait for backups in flight (a Pebble snapshot must be released
// before its DB closes) and refuses new ones once the store is closing.
type backupGate struct {
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

func (g *backupGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.wg.Add(1)
	return true
}

// close refuses new backups and waits for those in flight, which stop at their next
// write once the store's stop channel is closed.
func (g *backupGate) close() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.wg.Wait()
}

// OpenBackup takes a consistent view of this node's state for a backup: leader or
// follower, whatever it has applied. Writes go on meanwhile.
func (s *Store) OpenBackup() (*Backup, error) {
	if err := s.fsm.failed(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "no backup: the state machine stopped: %v", err)
	}
	if f := s.StorageFault(); f != "" {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "no backup: %s", f)
	}
	if !s.backups.enter() {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "no backup: the node is shutting down")
	}
	f := s.fsm
	// The read lock keeps a snapshot install from swapping the DB's contents while the
	// Pebble snapshot is taken; the snapshot then sees one applied index throughout.
	f.mu.RLock()
	v := takeViews(f.db, f.ev)
	f.mu.RUnlock()
	rd := v.reader()
	applied, err := rd.applied()
	var head chronicle.Head
	if err == nil {
		head, err = rd.head()
	}
	if err != nil {
		_ = v.Close()
		s.backups.wg.Done()
		return nil, fmt.Errorf("backup: read the state: %w", err)
	}
	return &Backup{v: v, stop: s.stop, done: s.backups.wg.Done, Header: BackupHeader{
		Position: head.Position, HeadHash: head.Hash, CommitTime: head.CommitTime,
		AppliedIndex: applied, Term: s.raft.CurrentTerm(), NodeID: s.cfg.NodeID,
		Created: time.Now().UTC(), DataFormat: DataFormat,
	}}, nil
}

// Position is the backup's head position (for the HTTP response's headers).
func (b *Backup) Position() uint64 { return b.Header.Position }

// HeadHash is the hash of the backup's last event.
func (b *Backup) HeadHash() string { return b.Header.HeadHash }

// Close releases the snapshot.
func (b *Backup) Close() error {
	var err error
	b.once.Do(func() {
		err = b.v.Close()
		b.done()
	})
	return err
}

// WriteTo writes the whole backup file to w: header, body, trailer. It stops with an
// error when ctx ends or the store closes; what was written is then no valid file.
func (b *Backup) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	hb, err := json.Marshal(b.Header)
	if err != nil {
		return 0, fmt.Errorf("backup header: %w", err)
	}
	sum := sha256.New()
	out := &backupWriter{ctx: ctx, stop: b.stop, w: io.MultiWriter(w, sum)}
	prefix := make([]byte, 0, backupPrefixSize+len(hb))
	prefix = append(prefix, backupMagic...)
	prefix = binary.BigEndian.AppendUint16(prefix, BackupVersion)
	prefix = binary.BigEndian.AppendUint32(prefix, uint32(len(hb)))
	prefix = append(prefix, hb...)
	if _, err := out.Write(prefix); err != nil {
		return out.n, err
	}
	body := out.n
	snapshot := &fsmSnapshot{v: b.v, header: snapshotHeader{Format: snapshotFormat, Applied: b.Header.AppliedIndex,
		Head: b.Header.Head()}}
	if err := snapshot.write(out); err != nil {
		return out.n, fmt.Errorf("backup body: %w", err)
	}
	trailer := make([]byte, 0, backupTrailerSize)
	trailer = append(trailer, backupTrailerMagic...)
	trailer = binary.BigEndian.AppendUint64(trailer, uint64(out.n-body))
	trailer = sum.Sum(trailer)
	n, err := w.Write(trailer)
	return out.n + int64(n), err
}

// backupWriter counts what it writes and stops when the backup is abandoned.
type backupWriter struct {
	ctx  context.Context
	stop <-chan struct{}
	w    io.Writer
	n    int64
}

func (bw *backupWriter) Write(p []byte) (int, error) {
	if err := bw.ctx.Err(); err != nil {
		return 0, fmt.Errorf("backup abandoned: %w", err)
	}
	select {
	case <-bw.stop:
		return 0, errors.New("backup abandoned: the node is shutting down")
	default:
	}
	n, err := bw.w.Write(p)
	bw.n += int64(n)
	return n, err
}

// BackupFile is a backup file opened for reading: its header read and its layout
// checked, its contents not yet (see Verify).
type BackupFile struct {
	Header  BackupHeader
	ra      io.ReaderAt
	size    int64
	bodyOff int64
	bodyLen int64
	sum     []byte
}

// Size is the file's length in bytes.
func (f *BackupFile) Size() int64 { return f.size }

// ReadBackupFile checks a backup file's framing: magic, version, header, trailer and
// that the lengths add up to size. It reads only the two ends; Verify reads the rest.
func ReadBackupFile(ra io.ReaderAt, size int64) (*BackupFile, error) {
	if size < int64(backupPrefixSize+backupTrailerSize) {
		return nil, fmt.Errorf("not a chronicle backup: %d bytes, shorter than any backup file (truncated?)", size)
	}
	prefix := make([]byte, backupPrefixSize)
	if _, err := ra.ReadAt(prefix, 0); err != nil {
		return nil, fmt.Errorf("read the backup header: %w", err)
	}
	if string(prefix[:len(backupMagic)]) != backupMagic {
		return nil, errors.New("not a chronicle backup: the file does not start with " + backupMagic)
	}
	if v := binary.BigEndian.Uint16(prefix[len(backupMagic):]); v != BackupVersion {
		return nil, fmt.Errorf("backup file version %d; this build reads version %d", v, BackupVersion)
	}
	hlen := int64(binary.BigEndian.Uint32(prefix[len(backupMagic)+2:]))
	if hlen > maxBackupHeader {
		return nil, fmt.Errorf("damaged backup: a header of %d bytes (at most %d)", hlen, maxBackupHeader)
	}
	bodyOff := int64(backupPrefixSize) + hlen
	if bodyOff+int64(backupTrailerSize) > size {
		return nil, fmt.Errorf("truncated backup: %d bytes, the header alone needs %d", size, bodyOff+int64(backupTrailerSize))
	}
	f := &BackupFile{ra: ra, size: size, bodyOff: bodyOff, bodyLen: size - bodyOff - int64(backupTrailerSize)}
	hb := make([]byte, hlen)
	if _, err := ra.ReadAt(hb, int64(backupPrefixSize)); err != nil {
		return nil, fmt.Errorf("read the backup header: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f.Header); err != nil {
		return nil, fmt.Errorf("damaged backup: the header does not decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("damaged backup: data after the header")
	}
	// Format 2 kept the same records in one DB: its body reads the same. Formats 2 and 3
	// have the older indexes, which restoring upgrades (stateLoad, format4.go).
	if f.Header.DataFormat != DataFormat && f.Header.DataFormat != 2 && f.Header.DataFormat != 3 {
		return nil, fmt.Errorf("backup of data format %d; this build reads data formats 2 to %d", f.Header.DataFormat, DataFormat)
	}
	if f.Header.Position == 0 && f.Header.HeadHash != chronicle.GenesisHash || len(f.Header.HeadHash) != len(chronicle.GenesisHash) ||
		f.Header.Position > 0 && f.Header.AppliedIndex == 0 {
		return nil, fmt.Errorf("damaged backup: the header names head hash %q at position %d", f.Header.HeadHash, f.Header.Position)
	}
	trailer := make([]byte, backupTrailerSize)
	if _, err := ra.ReadAt(trailer, size-int64(backupTrailerSize)); err != nil {
		return nil, fmt.Errorf("read the backup trailer: %w", err)
	}
	if string(trailer[:len(backupTrailerMagic)]) != backupTrailerMagic {
		return nil, errors.New("truncated or damaged backup: the file does not end with its trailer (was the backup cut short?)")
	}
	if n := binary.BigEndian.Uint64(trailer[len(backupTrailerMagic):]); n != uint64(f.bodyLen) {
		return nil, fmt.Errorf("truncated or damaged backup: the trailer says the body is %d bytes, the file holds %d", n, f.bodyLen)
	}
	f.sum = trailer[len(backupTrailerMagic)+8:]
	return f, nil
}

// OpenBackupFile opens path and checks its framing (ReadBackupFile). Close the file.
func OpenBackupFile(path string) (*BackupFile, io.Closer, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		_ = fh.Close()
		return nil, nil, err
	}
	f, err := ReadBackupFile(fh, st.Size())
	if err != nil {
		_ = fh.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, fh, nil
}

// Verify reads the whole file: the checksum must match, and the body must decode to
// records in key order whose events form an intact hash chain from position 1 to the
// header's head, with the state's head record and the snapshot's own header agreeing.
func (f *BackupFile) Verify() error { return f.scan(nil) }

// scan reads the file once, from its first byte to the trailer, and checks it as Verify
// says, handing each record of the body to each (if not nil) as soon as the records up to
// it have passed their checks. The checksum and the end of the chain are known only at
// the end of the file: each may have been handed records of a file that then fails, so
// it must write them only where nothing depends on them until scan returns nil (restore
// writes into a hidden directory that it renames into place after).
//
// A file that fails a check of its body and also its checksum is reported as failing
// its checksum, the first thing a reader should know: the rest is read to tell.
func (f *BackupFile) scan(each func(k, v []byte) error) error {
	sum := sha256.New()
	raw := io.TeeReader(io.NewSectionReader(f.ra, 0, f.bodyOff+f.bodyLen), sum)
	var sinkErr error
	bodyErr := func() error {
		if _, err := io.CopyN(io.Discard, raw, f.bodyOff); err != nil {
			return fmt.Errorf("read the backup header: %w", err)
		}
		return f.records(raw, func(k, v []byte) error {
			if each == nil {
				return nil
			}
			if err := each(k, v); err != nil {
				sinkErr = err
				return err
			}
			return nil
		})
	}()
	if sinkErr != nil {
		return sinkErr
	}
	// What the body's decoder left unread (all of it after a failure) still counts.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return fmt.Errorf("read the backup: %w", err)
	}
	if !bytes.Equal(sum.Sum(nil), f.sum) {
		return errors.New("damaged backup: the SHA-256 checksum does not match the contents (the file was altered or corrupted)")
	}
	if bodyErr != nil {
		return fmt.Errorf("damaged backup: %w", bodyErr)
	}
	return nil
}

// body opens the body (r, from its first byte) as a snapshot stream, its header checked
// against the file's.
func (f *BackupFile) body(r io.Reader) (snapshotHeader, *bufio.Reader, error) {
	h, br, err := readFullHeader(r)
	if err != nil {
		return h, nil, err
	}
	if h.Applied != f.Header.AppliedIndex || h.Head.Position != f.Header.Position || h.Head.Hash != f.Header.HeadHash {
		return h, nil, fmt.Errorf("the body is at index %d, position %d, hash %s; the header says index %d, position %d, hash %s",
			h.Applied, h.Head.Position, h.Head.Hash, f.Header.AppliedIndex, f.Header.Position, f.Header.HeadHash)
	}
	return h, br, nil
}

// decodeBody checks the body alone, without the checksum (for the fuzz test: a fuzzer
// cannot forge the checksum, so scan would stop every body at it).
func (f *BackupFile) decodeBody() error {
	return f.records(io.NewSectionReader(f.ra, f.bodyOff, f.bodyLen), func(k, v []byte) error { return nil })
}

// records decodes the body read from r and checks it, record by record: keys in strictly
// increasing order, every event under its own key and chained to the one before, the
// head record as the header says; then nothing after the last record, and the chain
// ending at the header's head. each gets every record that passed its own checks.
func (f *BackupFile) records(r io.Reader, each func(k, v []byte) error) error {
	h, br, err := f.body(r)
	if err != nil {
		return err
	}
	chain := chronicle.NewChainVerifier()
	var prev []byte
	sawHead := false
	for {
		k, err := readChunk(br)
		if err != nil {
			return fmt.Errorf("read a record key: %w", err)
		}
		if len(k) == 0 {
			break
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("record keys out of order (%q after %q)", k, prev)
		}
		prev = k
		v, err := readChunk(br)
		if err != nil {
			return fmt.Errorf("read a record value: %w", err)
		}
		switch {
		case k[0] == prefixEvent:
			var e chronicle.Event
			if err := e.UnmarshalBinary(v); err != nil {
				return fmt.Errorf("event record %x: %w", k, err)
			}
			if !bytes.Equal(k, eventKey(e.Position)) {
				return fmt.Errorf("event %d stored under key %x", e.Position, k)
			}
			if err := chain.Check(e); err != nil {
				return fmt.Errorf("hash chain: %w", err)
			}
		case bytes.Equal(k, metaKey(metaHead)):
			var head chronicle.Head
			if err := head.UnmarshalBinary(v); err != nil {
				return fmt.Errorf("head record: %w", err)
			}
			if head.Position != h.Head.Position || head.Hash != h.Head.Hash {
				return fmt.Errorf("the state's head is position %d hash %s, the header says position %d hash %s",
					head.Position, head.Hash, h.Head.Position, h.Head.Hash)
			}
			sawHead = true
		}
		if err := each(k, v); err != nil {
			return err
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("data after the end of the records")
	}
	if pos, hash := chain.Head(); pos != h.Head.Position || hash != h.Head.Hash {
		return fmt.Errorf("the events end at position %d hash %s, the header names position %d hash %s", pos, hash, h.Head.Position, h.Head.Hash)
	}
	if !sawHead && h.Head.Position > 0 {
		return errors.New("no head record")
	}
	return nil
}

// RestoreBackup makes dir a new data directory holding the backup's state, from which a
// node starts as the founder of a new cluster (its Raft log empty; the node id and Raft
// address come from the flags it is started with; see adoptRestored). dir must not exist
// or be empty. Everything is written into a temporary directory beside dir, synced, and
// renamed to dir only when complete and the file verified in full (Verify's checks, made
// in the same single read of the file that writes the state DB), so a damaged file, a
// failure or a crash leaves dir as it was (a crash also leaves a hidden .restore-*
// directory to remove; a refusal removes it).
func RestoreBackup(f *BackupFile, dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if err := checkRestoreTarget(dir); err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	// The directories made for dir's parent are removed again on a refusal (each only
	// if empty), so that a refused restore leaves nothing behind.
	made, err := mkdirs(parent)
	if err != nil {
		return fmt.Errorf("restore: create %s: %w", parent, err)
	}
	var tmp string
	fail := func(err error) error {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.Remove(made[i])
		}
		return err
	}
	if tmp, err = os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dir))+".restore-"); err != nil {
		return fail(fmt.Errorf("restore: %w", err))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fail(fmt.Errorf("restore: %w", err))
	}
	if err := restoreInto(f, tmp, log); err != nil {
		return fail(err)
	}
	// Checked again: another process may have filled dir meanwhile. An empty dir is
	// removed first (os.Rename will not replace a directory); rmdir fails on a non-empty
	// one, so nothing is clobbered.
	if err := checkRestoreTarget(dir); err != nil {
		return fail(err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(fmt.Errorf("restore: %w", err))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fail(fmt.Errorf("restore: move the restored data into %s: %w", dir, err))
	}
	return fsutil.SyncDir(parent)
}

// mkdirs is os.MkdirAll(dir, 0o755) that returns the directories it made, outermost
// first (none: it removed them again, on an error).
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			for j := len(made) - 1; j >= 0; j-- {
				_ = os.Remove(made[j])
			}
			return nil, err
		} else if err == nil {
			made = append(made, missing[i])
		}
	}
	return made, nil
}

// checkRestoreTarget refuses a dir that exists and is not an empty directory.
func checkRestoreTarget(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("restore: %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("restore: %s is not empty: restore only into a new or empty directory (nothing was written)", dir)
	}
	return nil
}

// RestoredFile marks a data directory made by RestoreBackup that has not started yet:
// its first start founds the new cluster from it (adoptRestored). It holds the backup's
// header, for the record.
const RestoredFile = "RESTORED"

// restoreInto builds the data directory in dir (new and empty): FORMAT, an empty raft/
// and snapshots/, state/ loaded from the body the way a Raft snapshot is installed
// (stateLoad) at the backup's applied index, and the RESTORED marker. The old cluster's
// node records are left out. The state DB's records are written as the file is read and
// checked (BackupFile.scan), the applied index only once the whole file has passed: a
// damaged file returns its "damaged backup" error with dir half written, for the caller
// to remove.
func restoreInto(f *BackupFile, dir string, log *slog.Logger) error {
	if err := writeFormatFile(dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, d := range []string{"raft", "state", eventsDir, "snapshots"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	stateDir := filepath.Join(dir, "state")
	db, ev, err := openState(dir, pebbleutil.Tuning{}, log, nil)
	if err != nil {
		return fmt.Errorf("restore: create the state: %w", err)
	}
	closeDB := func() error {
		if err := closeState(db, ev); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		return nil
	}
	l, err := newStateLoad(db, ev, func(k []byte) bool { return k[0] == prefixNode }, f.Header.DataFormat < DataFormat)
	if err != nil {
		return errors.Join(fmt.Errorf("restore: %w", err), closeDB())
	}
	err = f.scan(func(k, v []byte) error {
		if err := l.set(k, v); err != nil {
			return fmt.Errorf("restore: write the state DB: %w", err)
		}
		return nil
	})
	if err != nil {
		// The file's own errors as they are ("damaged backup: …").
		l.close()
		return errors.Join(err, closeDB())
	}
	err = l.commit(f.Header.AppliedIndex)
	l.close()
	var mem *working
	if err == nil {
		// As a node would load it at its first start.
		mem, err = loadWorking(db)
	}
	if err == nil {
		err = checkHead(reader{db, ev}, mem.head, stateDirs(dir))
	}
	if err == nil && (mem.head.Position != f.Header.Position || mem.head.Hash != f.Header.HeadHash) {
		err = fmt.Errorf("the restored state's head is position %d hash %s, the backup's %d %s",
			mem.head.Position, mem.head.Hash, f.Header.Position, f.Header.HeadHash)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("restore: %w", err), closeDB())
	}
	if err := closeDB(); err != nil {
		return err
	}
	marker, err := json.MarshalIndent(f.Header, "", "  ")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, RestoredFile), append(marker, '\n'), 0o644); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, d := range []string{stateDir, filepath.Join(dir, eventsDir), filepath.Join(dir, "raft"), filepath.Join(dir, "snapshots"), dir} {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}

// adoptRestored runs at the start of a data directory RestoreBackup made, before Raft:
// the state is at the old cluster's applied index N with an empty Raft log, and a log
// that started at index 1 would not hold it, so a node joining later would be sent that
// log and never the state. Instead, as raft.RecoverCluster does for a recovered node, it
// files the state as a Raft snapshot at index N whose configuration is this node alone:
// Raft starts from it, the new log continues at N+1, and a joining node is sent the
// snapshot. The marker is then removed; a start after a crash in between finds the
// snapshot and only removes it.
func (s *Store) adoptRestored(rc *raft.Config, snaps raft.SnapshotStore) error {
	path := filepath.Join(s.cfg.DataDir, RestoredFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raftstore: list snapshots: %w", err)
	}
	if len(metas) == 0 {
		if !s.cfg.Bootstrap {
			return fmt.Errorf("raftstore: %s was restored from a backup and starts a new cluster of its own: start it without --join, then join other nodes to it", s.cfg.DataDir)
		}
		applied := s.fsm.mem.applied
		if applied == 0 {
			// A backup taken before its node applied a single entry holds an empty ledger.
			// Raft takes a snapshot at index 0 as no configuration at all (it would never
			// hold an election), and there is nothing to carry: bootstrap as a new node does.
			return s.removeRestoredMarker(path)
		}
		// The snapshot's term, set first: a crash after the snapshot but before this
		// would leave term 0 under it, and the next start only removes the marker.
		if err := s.logs.SetUint64([]byte("CurrentTerm"), 1); err != nil {
			return fmt.Errorf("raftstore: %w", err)
		}
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: s.transport.LocalAddr()}}}
		snap, err := recoveryFSM{s.fsm}.Snapshot()
		if err != nil {
			return fmt.Errorf("raftstore: snapshot the restored state: %w", err)
		}
		sink, err := snaps.Create(raft.SnapshotVersionMax, applied, 1, conf, applied, s.transport)
		if err != nil {
			return fmt.Errorf("raftstore: snapshot the restored state: %w", err)
		}
		if err := snap.Persist(sink); err != nil {
			return fmt.Errorf("raftstore: snapshot the restored state: %w", err)
		}
	}
	return s.removeRestoredMarker(path)
}

// removeRestoredMarker ends adoptRestored: the directory is an ordinary one from now on.
func (s *Store) removeRestoredMarker(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("raftstore: remove %s: %w", path, err)
	}
	if err := fsutil.SyncDir(s.cfg.DataDir); err != nil {
		return err
	}
	s.log.Warn("RESTORED: this node founds a new one-node cluster from the restored backup",
		"position", s.head.Position, "head_hash", s.head.Hash, "snapshot_index", s.fsm.mem.applied, "raft_addr", s.transport.LocalAddr())
	return nil
}

// restoredPending reports whether dir holds the marker of a restore not yet started.
func restoredPending(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, RestoredFile))
	return err == nil
}
