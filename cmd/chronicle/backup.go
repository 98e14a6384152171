package main

// chronicle backup and chronicle restore: an online backup of a running Raft node,
// streamed from GET /admin/backup into a file, and a new data directory made from one.
// The file's layout and checks are raftstore's (raftstore/backup.go).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/internal/fsutil"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle backup", flag.ContinueOnError)
	nodeURL := fs.String("url", "http://127.0.0.1:4000", "node to back up (any member of a Raft cluster, leader or follower)")
	out := fs.String("out", "", "file to write the backup to (required; must not exist)")
	tf := addTokenFlags(fs)
	tlsOpts := addClientTLSFlags(fs, false)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle backup --url URL --out FILE [flags]\n\nTakes an online, consistent backup of a running Raft node (writes go on) through\nGET /admin/backup (an admin token when the node has tokens). The file is written to\nFILE.tmp, synced, checked in full and only then renamed to FILE.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "chronicle backup: --out FILE is required")
		return errUsage
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("backup: %s exists; choose another --out (a backup never overwrites a file)", *out)
	}
	secret, err := tf.secret()
	if err != nil {
		return err
	}
	hc, err := tlsOpts.client(0) // no overall timeout: a large ledger takes a while
	if err != nil {
		return err
	}
	start := time.Now()
	base := strings.TrimRight(*nodeURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/admin/backup", nil)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("backup: cannot reach %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorBody
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(body))
		}
		return fmt.Errorf("backup: %s refused: %s (%d %s)", base, e.Message, resp.StatusCode, e.Code)
	}
	tmp := *out + ".tmp"
	size, err := receiveBackup(resp.Body, tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	f, closer, err := raftstore.OpenBackupFile(tmp)
	if err == nil {
		err = f.Verify()
		_ = closer.Close()
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: what %s sent is no complete backup (nothing kept): %w", base, err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := fsutil.SyncDir(filepath.Dir(*out)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	h := f.Header
	fmt.Fprintf(stdout, "backup of node %s written to %s\n  position   %d\n  head hash  %s\n  raft index %d (term %d)\n  size       %d bytes\n  took       %s\n",
		h.NodeID, *out, h.Position, h.HeadHash, h.AppliedIndex, h.Term, size, time.Since(start).Round(time.Millisecond))
	return nil
}

// receiveBackup writes body to path and fsyncs it.
func receiveBackup(body io.Reader, path string) (int64, error) {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(fh, body)
	if err != nil {
		_ = fh.Close()
		return n, fmt.Errorf("receive the backup (after %d bytes): %w", n, err)
	}
	if err := errors.Join(fh.Sync(), fh.Close()); err != nil {
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	return n, nil
}

func restoreCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle restore", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory to create (required; must not exist or be empty)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle restore FILE --data-dir DIR\n\nChecks the backup FILE in full (checksum, hash chain, head) while it builds a data\ndirectory holding its ledger beside DIR, and moves it to DIR only once every check has\npassed. `chronicle serve --data-dir DIR` (without --join) then starts a new\none-node cluster at the backup's head; other nodes join it as usual.\n\n")
		fs.PrintDefaults()
	}
	// The file may come before or after the flags.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	} else if n := len(args); n > 0 && !strings.HasPrefix(args[n-1], "-") && (n < 2 || args[n-2] != "--data-dir" && args[n-2] != "-data-dir") {
		file, args = args[n-1], args[:n-1]
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if file == "" || *dataDir == "" {
		fmt.Fprintln(stderr, "chronicle restore: a backup FILE and --data-dir DIR are required")
		fs.Usage()
		return errUsage
	}
	start := time.Now()
	f, closer, err := raftstore.OpenBackupFile(file)
	if err != nil {
		return fmt.Errorf("restore: %w (nothing was written)", err)
	}
	defer closer.Close()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := raftstore.RestoreBackup(f, *dataDir, log); err != nil {
		if strings.HasPrefix(err.Error(), "damaged backup") {
			return fmt.Errorf("restore: %s: %w (nothing was written)", file, err)
		}
		return err
	}
	h := f.Header
	fmt.Fprintf(stdout, "restored %s into %s\n  position   %d\n  head hash  %s\n  from node  %s (raft index %d, taken %s)\n  took       %s\n\n"+
		"Start it as a new one-node cluster: chronicle serve --data-dir %s (without --join)\n",
		file, *dataDir, h.Position, h.HeadHash, h.NodeID, h.AppliedIndex, h.Created.Format(time.RFC3339), time.Since(start).Round(time.Millisecond), *dataDir)
	return nil
}
