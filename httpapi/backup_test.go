package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chronicle-ledger/chronicle/api"
)

// heldBackup writes its first bytes, then waits for release; with fail set it then
// reports an error instead of finishing.
type heldBackup struct {
	release chan struct{}
	fail    bool
}

func (b *heldBackup) Position() uint64 { return 7 }
func (b *heldBackup) HeadHash() string { return "abc" }
func (b *heldBackup) Close() error     { return nil }
func (b *heldBackup) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	// More than the response buffer holds, so that the first bytes reach the client.
	n, err := w.Write(append([]byte("CHRONBAK"), make([]byte, 64<<10)...))
	if err != nil {
		return int64(n), err
	}
	<-b.release
	if b.fail {
		return int64(n), errors.New("disk gone")
	}
	m, err := w.Write([]byte("rest"))
	return int64(n + m), err
}

func responseCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var e api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return e.Code
}

// TestBackupEndpoint: one backup at a time (409 backup_in_progress), a failure midway
// cuts the connection (the client never sees a clean end), and without a backup source
// (SQL mode) 501 backup_unsupported.
func TestBackupEndpoint(t *testing.T) {
	b := &heldBackup{release: make(chan struct{})}
	srv := httptest.NewServer(New(Config{Backup: func(context.Context) (BackupSource, error) { return b, nil }}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 8)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "CHRONBAK" || resp.Header.Get("X-Chronicle-Position") != "7" {
		t.Fatalf("first backup: %q, %v, headers %v", first, err, resp.Header)
	}
	second, err := http.Get(srv.URL + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	if second.StatusCode != http.StatusConflict || responseCode(t, second) != CodeBackupInProgress {
		t.Fatalf("a second backup at once: %d", second.StatusCode)
	}
	second.Body.Close()
	close(b.release)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(rest) != 64<<10+4 || string(rest[len(rest)-4:]) != "rest" {
		t.Fatalf("rest of the first backup: %d bytes, %v", len(rest), err)
	}

	// Failing midway: the response is cut, not ended cleanly.
	b = &heldBackup{release: make(chan struct{}), fail: true}
	close(b.release)
	resp, err = http.Get(srv.URL + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("a backup that failed midway ended cleanly after %d bytes", len(got))
	}

	none := httptest.NewServer(New(Config{}))
	defer none.Close()
	resp, err = http.Get(none.URL + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || responseCode(t, resp) != CodeBackupUnsupported {
		t.Fatalf("backup without a source: %d", resp.StatusCode)
	}
}
