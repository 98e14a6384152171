package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// requireRoot skips a test that needs root (to mount a filesystem), or fails it under
// CHRONICLE_REQUIRE_ROOT=1 (CI runs as root and must run it).
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		msg := fmt.Sprintf("needs root on Linux to %s (running as uid %d on %s)", why, os.Geteuid(), runtime.GOOS)
		if os.Getenv("CHRONICLE_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s, and CHRONICLE_REQUIRE_ROOT=1", msg)
		}
		t.Skip(msg + "; set CHRONICLE_REQUIRE_ROOT=1 to fail instead")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts it when the
// test ends (after everything registered later, such as the node on it, has stopped).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	requireRoot(t, "mount a small tmpfs")
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		msg := fmt.Sprintf("mount a tmpfs on %s: %v", dir, err)
		if os.Getenv("CHRONICLE_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s, and CHRONICLE_REQUIRE_ROOT=1", msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Logf("unmount %s: %v; detaching it lazily", dir, err)
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount %s: %v", dir, err)
			}
		}
	})
	return dir
}

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	body   []byte
	err    error
}

func (a answer) code() string {
	var e api.ErrorBody
	_ = json.Unmarshal(a.body, &e)
	return e.Code
}

func do(ctx context.Context, method, url, body string) answer {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, err: err}
}

// fillTo grows the file at path until the filesystem holding it has at most left bytes
// free (others write to it meanwhile: the free space is measured as it goes).
func fillTo(path string, left int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 256<<10)
	var size int64
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
			return err
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		if free <= left {
			return nil
		}
		n, err := f.Write(chunk[:min(free-left, int64(len(chunk)))])
		size += int64(n)
		if errors.Is(err, unix.ENOSPC) {
			// The node's own writers took the rest between the Statfs and the write (a
			// flush or a compaction writes megabytes at once): give back enough to be at
			// the target again rather than leave the filesystem full, which is another test.
			size = max(size-left, 0)
			if err := f.Truncate(size); err != nil {
				return fmt.Errorf("fill %s: give back space: %w", path, err)
			}
			if _, err := f.Seek(size, io.SeekStart); err != nil {
				return fmt.Errorf("fill %s: %w", path, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
}

// A node on a small filesystem filled to below its reserve refuses every write with 507
// insufficient_storage (nothing dropped, nothing half-done), keeps serving reads, says
// so on /ready, and takes writes again by itself once space is freed; its balances are
// exactly what the acknowledged writes imply, and the JetStream stream (which the
// embedded server had disabled) catches up with the log.
func TestDiskFullRefusesWritesKeepsReads(t *testing.T) {
	const reserve = 8 << 20
	mnt := mountTmpfs(t, 64<<20)
	n := nodetest.Start(t, nodetest.WithDataDir(filepath.Join(mnt, "data")), func(c *node.Config) {
		c.DiskReserve = "8MiB"
		c.NATSMaxBytes = 4 << 20 // JetStream refuses a stream larger than its filesystem
	})
	base := n.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if a := do(ctx, "POST", base+"/commands/create-account", `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":"0"}`); a.err != nil || a.status != http.StatusCreated {
		t.Fatalf("create: %d %s %v", a.status, a.body, a.err)
	}

	var acked atomic.Int64 // deposits of 1.00 answered 201
	deposit := func() answer {
		a := do(ctx, "POST", base+"/commands/deposit", `{"account_id":"a","amount":"1.00"}`)
		switch {
		case a.err != nil:
			t.Errorf("deposit: no answer: %v", a.err)
		case a.status == http.StatusCreated:
			acked.Add(1)
		case a.status == http.StatusInsufficientStorage && a.code() == "insufficient_storage":
		default:
			t.Errorf("deposit: %d %s, want 201 or 507 insufficient_storage", a.status, a.body)
		}
		return a
	}
	for range 20 {
		deposit()
	}

	// Fill the filesystem to half the reserve, with writers running.
	filler := filepath.Join(mnt, "filler")
	var refused atomic.Int64
	var lastRefusal atomic.Pointer[answer]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopWriters := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopWriters) // before the node stops, if the test ends early
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a := deposit(); a.status == http.StatusInsufficientStorage {
					refused.Add(1)
					lastRefusal.Store(&a)
				}
				if t.Failed() {
					return
				}
			}
		}()
	}
	if err := fillTo(filler, reserve/2); err != nil {
		stopWriters()
		t.Fatal(err)
	}
	poll(t, time.Minute, "writers refused with 507", func() error {
		if refused.Load() < 20 {
			return fmt.Errorf("%d refusals so far", refused.Load())
		}
		return nil
	})
	stopWriters()
	if t.Failed() {
		t.FailNow()
	}
	msg := lastRefusal.Load().body
	for _, want := range []string{"free", "reserve of 8.0 MiB", "--disk-reserve"} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Errorf("507 body %s lacks %q", msg, want)
		}
	}

	// While full: every write is refused, a batch too; reads and the log answer.
	want := acked.Load()
	for range 10 {
		if a := deposit(); a.status != http.StatusInsufficientStorage {
			t.Fatalf("deposit while full: %d %s", a.status, a.body)
		}
	}
	if a := do(ctx, "POST", base+"/commands/batch", `{"commands":[{"type":"deposit","account_id":"a","amount":"1.00"}]}`); a.status != http.StatusInsufficientStorage || a.code() != "insufficient_storage" {
		t.Fatalf("batch while full: %d %s", a.status, a.body)
	}
	checkBalance(t, ctx, base, want)
	headFull := checkEvents(t, ctx, base)
	if a := do(ctx, "GET", base+"/ready", ""); a.status != http.StatusServiceUnavailable || !bytes.Contains(a.body, []byte("insufficient storage")) {
		t.Fatalf("/ready while full: %d %s", a.status, a.body)
	}
	// The embedded server disables JetStream when one of its writes hits a full disk;
	// make sure it has (it may already have), as the node must turn it back on.
	if err := n.Bus().Server().ShutdownJetStream(); err != nil {
		t.Fatalf("shut JetStream down: %v", err)
	}

	// Space freed: writes resume by themselves, /ready recovers, JetStream is back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "a deposit accepted after freeing space", func() error {
		if a := deposit(); a.status != http.StatusCreated {
			return fmt.Errorf("%d %s", a.status, a.body)
		}
		return nil
	})
	if t.Failed() {
		t.FailNow()
	}
	for range 10 {
		if a := deposit(); a.status != http.StatusCreated {
			t.Fatalf("deposit after freeing space: %d %s", a.status, a.body)
		}
	}
	poll(t, 30*time.Second, "ready again", func() error {
		if a := do(ctx, "GET", base+"/ready", ""); a.status != http.StatusOK {
			return fmt.Errorf("%d %s", a.status, a.body)
		}
		return nil
	})
	checkBalance(t, ctx, base, acked.Load())
	head := checkEvents(t, ctx, base)
	// One event per acknowledged deposit since the disk filled, none for a refused one.
	if head-headFull != uint64(acked.Load()-want) {
		t.Fatalf("head %d after %d deposits since %d", head, acked.Load()-want, headFull)
	}
	poll(t, time.Minute, "JetStream re-enabled and caught up with the log", func() error {
		if !n.Bus().JetStreamEnabled() || n.Bus().Published() < head {
			return fmt.Errorf("jetstream %t, published %d of %d", n.Bus().JetStreamEnabled(), n.Bus().Published(), head)
		}
		return nil
	})
	n.Stop(t)
}

func checkBalance(t *testing.T, ctx context.Context, base string, deposits int64) {
	t.Helper()
	a := do(ctx, "GET", base+"/accounts/a", "")
	var acc api.Account
	if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &acc) != nil {
		t.Fatalf("GET /accounts/a: %d %s %v", a.status, a.body, a.err)
	}
	if want := fmt.Sprintf("%d.00", deposits); acc.Balance != want {
		t.Fatalf("balance %s, want %s (%d acknowledged deposits of 1.00)", acc.Balance, want, deposits)
	}
}

// checkEvents reads the newest event and returns its position.
func checkEvents(t *testing.T, ctx context.Context, base string) uint64 {
	t.Helper()
	a := do(ctx, "GET", base+"/events?order=desc&limit=1", "")
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("GET /events: %d %s %v", a.status, a.body, a.err)
	}
	var page struct {
		Events []struct {
			Position uint64 `json:"position"`
		} `json:"events"`
	}
	if err := json.Unmarshal(a.body, &page); err != nil || len(page.Events) != 1 {
		t.Fatalf("GET /events: %s (%v)", a.body, errors.Join(err))
	}
	return page.Events[0].Position
}
