package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
)

// TestStorageFaults runs the real binary on a data directory whose Raft log is damaged:
// after a clean stop, a byte flipped in the middle of the log makes `chronicle serve` exit
// non-zero naming the file and the way out; damage made while it runs is found by the
// background scrub, after which /ready is 503 with the reason and every read and
// command is 503 storage_fault while the process stays up.
func TestStorageFaults(t *testing.T) {
	t.Parallel()
	// Not deferred: the parallel subtests run after this function returns.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	bin := buildChronicle(t, ctx)

	// deposits starts a node, makes an account with 40 deposits of 1.00 and returns it running.
	deposits := func(t *testing.T, dataDir string, extra ...string) (*chronicleProc, *client.Client) {
		p := launchServe(t, ctx, bin, dataDir, extra...)
		c := client.New(p.url, nil)
		if _, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "A", Currency: "USD"}, ""); err != nil {
			t.Fatalf("create account: %v; stderr:\n%s", err, p.stderrTail())
		}
		for range 40 {
			if _, err := c.Deposit(ctx, client.Money{AccountID: "A", Amount: "1.00"}, ""); err != nil {
				t.Fatalf("deposit: %v; stderr:\n%s", err, p.stderrTail())
			}
		}
		return p, c
	}
	middleOfLastSegment := func(t *testing.T, dataDir string) string {
		segs, err := filepath.Glob(filepath.Join(dataDir, "raft", "*.seg"))
		if err != nil || len(segs) == 0 {
			t.Fatalf("no Raft log segments in %s: %v", dataDir, err)
		}
		slices.Sort(segs)
		seg := segs[len(segs)-1]
		f, err := os.OpenFile(seg, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// The middle of the records: the segment ends in zeros written ahead of appends.
		all, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		mid := int64(len(bytes.TrimRight(all, "\x00")) / 2)
		b := []byte{all[mid] ^ 0xff}
		if _, err := f.WriteAt(b, mid); err != nil {
			t.Fatal(err)
		}
		return seg
	}

	t.Run("refused at start", func(t *testing.T) {
		t.Parallel()
		dataDir := t.TempDir()
		p, _ := deposits(t, dataDir)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(); err != nil {
			t.Fatalf("clean stop: %v; stderr:\n%s", err, p.stderrTail())
		}
		seg := middleOfLastSegment(t, dataDir)

		stderrPath := filepath.Join(t.TempDir(), "stderr.log")
		q, _ := launchChronicle(t, bin, stderrPath, "serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
		err := q.wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
			t.Fatalf("chronicle serve on a damaged log: %v, want a non-zero exit; stderr:\n%s", err, q.stderrTail())
		}
		line := q.logLine("chronicle: ")
		for _, w := range []string{"the Raft log is damaged at " + seg, "restore it from a backup", "remove its data directory"} {
			if !strings.Contains(line, w) {
				t.Fatalf("exit message %q does not name %q; stderr:\n%s", line, w, q.stderrTail())
			}
		}
		t.Logf("exit %d: %s", ee.ExitCode(), line)
	})

	t.Run("found by the scrub at run time", func(t *testing.T) {
		t.Parallel()
		dataDir := t.TempDir()
		p, c := deposits(t, dataDir, "--scrub-interval", "50ms")
		seg := middleOfLastSegment(t, dataDir)
		var ready api.Ready
		for {
			resp, err := http.Get(p.url + "/ready")
			if err != nil {
				t.Fatalf("/ready: %v", err)
			}
			ready = api.Ready{}
			err = json.NewDecoder(resp.Body).Decode(&ready)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatalf("/ready body: %v", err)
			}
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("/ready never turned 503 after the log was damaged (last %+v); stderr:\n%s", ready, p.stderrTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ready.Status != "not_ready" || !strings.Contains(ready.Error, "storage fault in the Raft log") || !strings.Contains(ready.Error, seg) {
			t.Fatalf("/ready after the damage: %+v; want the Raft log fault naming %s", ready, seg)
		}
		t.Logf("/ready: 503 %s", ready.Error)
		_, err := c.Account(ctx, "A", 0)
		t.Logf("GET /accounts/A: %v", err)
		requireHTTPStorageFault(t, "GET /accounts/A", err)
		_, err = c.Deposit(ctx, client.Money{AccountID: "A", Amount: "1.00"}, "")
		requireHTTPStorageFault(t, "deposit", err)
		_, err = c.Events(ctx, client.EventsQuery{Limit: 10})
		requireHTTPStorageFault(t, "GET /events", err)
		select {
		case err := <-p.exited:
			p.waited, p.waitErr = true, err
			t.Fatalf("the process exited after a run-time storage fault (%v); it must stay up, not ready", err)
		default:
		}
	})
}

func requireHTTPStorageFault(t *testing.T, what string, err error) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != chronicle.CodeStorageFault {
		t.Fatalf("%s: %v, want 503 %s", what, err, chronicle.CodeStorageFault)
	}
}

// launchServe starts `chronicle serve` on dataDir with OS-chosen ports (and extra flags)
// and waits for it to serve.
func launchServe(t *testing.T, ctx context.Context, bin, dataDir string, extra ...string) *chronicleProc {
	t.Helper()
	stderrPath := filepath.Join(t.TempDir(), fmt.Sprintf("stderr-%d.log", time.Now().UnixNano()))
	args := append([]string{"serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, extra...)
	p, urls := launchChronicle(t, bin, stderrPath, args...)
	select {
	case p.url = <-urls:
	case err := <-p.exited:
		p.waited, p.waitErr = true, err
		t.Fatalf("chronicle exited before serving (%v); stderr:\n%s", err, p.stderrTail())
	case <-ctx.Done():
		t.Fatalf("chronicle did not serve in time; stderr:\n%s", p.stderrTail())
	}
	c := client.New(p.url, nil)
	for c.Ready(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatalf("chronicle never became ready; stderr:\n%s", p.stderrTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}
