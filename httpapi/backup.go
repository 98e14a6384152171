package httpapi

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// Error codes of GET /admin/backup.
const (
	// CodeBackupUnsupported: this node has no state of its own to back up (SQL mode).
	CodeBackupUnsupported = "backup_unsupported"
	// CodeBackupInProgress: a backup of this node is already being taken.
	CodeBackupInProgress = "backup_in_progress"
)

// BackupSource is an online backup being taken (raftstore.Backup).
type BackupSource interface {
	Position() uint64
	HeadHash() string
	// WriteTo writes the whole backup file; an error midway leaves it incomplete.
	WriteTo(ctx context.Context, w io.Writer) (int64, error)
	Close() error
}

// backup serves GET /admin/backup (admin): the node's state as a backup file (see
// raftstore/backup.go), streamed while writes go on. One backup at a time per node: each
// pins a Pebble snapshot and reads the whole state DB.
//
// It streams a backup file. Errors before the first byte are JSON; an error midway
// aborts the connection, so the client sees a truncated file (which its checks refuse),
// never one that looks complete.
func (a *API) backup(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Backup == nil {
		writeErrorStatus(w, http.StatusNotImplemented, CodeBackupUnsupported,
			"this node keeps no ledger state of its own (SQL mode): back up the event store with the database's own tools (pg_dump, or CockroachDB BACKUP)")
		return
	}
	// A GET needs no preflight, so a page on another site could make a browser start one
	// (it could not read it): refuse what the browser marks as cross-site.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		anyOrigin, allowed := corsPolicy(a.cfg.CORSOrigins)
		if !originAllowed(r.Header.Get("Origin"), r.Host, anyOrigin, allowed) {
			writeErrorStatus(w, http.StatusForbidden, chronicle.CodeForbiddenOrigin,
				"a backup may not be started from another site's page; allow its origin with --cors-origin")
			return
		}
	}
	select {
	case a.backupSlot <- struct{}{}:
		defer func() { <-a.backupSlot }()
	default:
		writeErrorStatus(w, http.StatusConflict, CodeBackupInProgress, "a backup of this node is already being taken; retry when it ends")
		return
	}
	b, err := a.cfg.Backup(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer b.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="chronicle-`+strconv.FormatUint(b.Position(), 10)+`.backup"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Chronicle-Position", strconv.FormatUint(b.Position(), 10))
	h.Set("X-Chronicle-Head-Hash", b.HeadHash())
	w.WriteHeader(http.StatusOK)
	// The whole file takes longer than one response may: each write gets its own
	// deadline, as an event stream's do.
	rc := http.NewResponseController(w)
	dw := &deadlineWriter{w: w, extend: func() { _ = rc.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout)) }}
	start := time.Now()
	n, err := b.WriteTo(r.Context(), dw)
	if err != nil {
		a.log.Warn("backup abandoned", "position", b.Position(), "bytes", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	a.log.Info("backup sent", "position", b.Position(), "head_hash", b.HeadHash(), "bytes", n, "took", time.Since(start))
}

type deadlineWriter struct {
	w      io.Writer
	extend func()
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.extend()
	return d.w.Write(p)
}
