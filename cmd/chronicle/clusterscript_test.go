package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/freeport"
)

// syncBuffer is a bytes.Buffer written by one goroutine and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestClusterScriptRuns runs scripts/cluster.sh (make cluster) for real on free ports:
// it generates one admin token before the nodes start, the cluster forms with
// authentication on (a request without the token is 401, with it reads and commands
// work), the status it prints was fetched with the token, what it prints says how to
// use the token, and SIGTERM stops every node cleanly.
func TestClusterScriptRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster through scripts/cluster.sh; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	bin := buildChronicle(t, ctx)
	base := freeport.Block(t, 9)
	data := t.TempDir()
	token, ca := filepath.Join(data, "admin.token"), filepath.Join(data, "certs", "ca.crt")

	cmd := exec.Command("bash", "../../scripts/cluster.sh")
	cmd.Env = append(os.Environ(), "BUILD=0", "BIN="+bin, "DATA="+data, "READY_WAIT=60", "STOP_WAIT=20",
		fmt.Sprintf("HTTP_BASE=%d", base), fmt.Sprintf("RAFT_BASE=%d", base+3), fmt.Sprintf("NATS_BASE=%d", base+6))
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var stdout syncBuffer
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdoutPipe)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(&stdout, sc.Text())
			if !signalled && strings.HasPrefix(sc.Text(), "Ctrl-C stops") {
				close(up)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdoutPipe)
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	select {
	case <-up:
	case err := <-exited:
		stopped = true
		t.Fatalf("cluster.sh exited before the cluster was up: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	case <-ctx.Done():
		t.Fatalf("cluster.sh: the cluster was not up in time\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	out := stdout.String()

	secret, err := os.ReadFile(token)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(token); err != nil || fi.Mode().Perm() != 0o600 || !bytes.HasPrefix(secret, []byte("chr_")) {
		t.Fatalf("admin token file: %v %v", err, fi.Mode())
	}
	if strings.Contains(out+stderr.String(), strings.TrimSpace(string(secret))) {
		t.Fatal("the script printed the admin token's secret")
	}
	n1 := fmt.Sprintf("https://127.0.0.1:%d", base)
	for _, want := range []string{
		"cluster as seen by", // the status the script fetched with the token
		"export CHRONICLE_TOKEN=$(cat " + token + ")",
		fmt.Sprintf(`curl --cacert %s -H "Authorization: Bearer $(cat %s)" %s/accounts`, ca, token, n1),
		"token create --url " + n1,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster.sh does not print %q:\n%s", want, out)
		}
	}

	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	call := func(method, url, secret, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := strings.TrimSpace(string(secret))
	n2, n3 := fmt.Sprintf("https://127.0.0.1:%d", base+1), fmt.Sprintf("https://127.0.0.1:%d", base+2)
	if code := call(http.MethodGet, n1+"/ready", "", ""); code != http.StatusOK {
		t.Errorf("GET /ready without a token: %d, want 200 (public)", code)
	}
	if code := call(http.MethodGet, n1+"/accounts", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /accounts without a token: %d, want 401", code)
	}
	if code := call(http.MethodPost, n2+"/commands/create-account", "", `{"account_id":"alice","owner_name":"Alice","initial_balance":"100"}`); code != http.StatusUnauthorized {
		t.Errorf("create-account without a token: %d, want 401", code)
	}
	if code := call(http.MethodPost, n2+"/commands/create-account", admin, `{"account_id":"alice","owner_name":"Alice","initial_balance":"100"}`); code != http.StatusCreated {
		t.Errorf("create-account with the admin token through a node: %d, want 201", code)
	}
	if code := call(http.MethodGet, n3+"/accounts/alice", admin, ""); code != http.StatusOK {
		t.Errorf("GET /accounts/alice with the admin token: %d, want 200", code)
	}

	// A node killed by hand: the script reports it with the exact command that restarts
	// it, and that command brings it back into the cluster on its data.
	killed := false
	if pid := clusterNodePid(t, filepath.Join(data, "n2")); pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed = true
		var line string
		for line == "" {
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.HasPrefix(l, "    "+bin+" serve --node-id n2 ") {
					line = strings.TrimSpace(l)
				}
			}
			if line == "" {
				select {
				case <-ctx.Done():
					t.Fatalf("the script gave no restart command for the killed n2:\n%s", stderr.String())
				case <-time.After(100 * time.Millisecond): // polling the script's output
				}
			}
		}
		hintCmd := exec.Command("bash", "../../scripts/cluster.sh", "restart-command", "2")
		hintCmd.Env = []string{"PATH=" + os.Getenv("PATH")} // the defaults, not this test's settings
		if hint, err := hintCmd.Output(); err != nil {
			t.Fatalf("cluster.sh restart-command 2: %v", err)
		} else if !strings.Contains(string(hint), "serve --node-id n2 --data-dir ./data-cluster/n2 ") {
			t.Errorf("cluster.sh restart-command 2 with the default settings printed %q", hint)
		}
		restarted := exec.Command("bash", "-c", "exec "+line)
		restarted.Dir, restarted.Stdout, restarted.Stderr = ".", io.Discard, io.Discard
		if err := restarted.Start(); err != nil {
			t.Fatal(err)
		}
		served := func() bool {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n2+"/accounts/alice", nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			resp, err := hc.Do(req)
			if err != nil {
				return false // not listening yet
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		for !served() {
			select {
			case <-ctx.Done():
				t.Fatal("the restarted n2 did not serve alice")
			case <-time.After(200 * time.Millisecond): // polling the node
			}
		}
		_ = restarted.Process.Signal(syscall.SIGTERM)
		if err := restarted.Wait(); err != nil {
			t.Errorf("the restarted n2 did not stop cleanly: %v", err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("cluster.sh after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("cluster.sh did not stop after SIGTERM\nstderr:\n%s", stderr.String())
	}
	for i := 1; i <= 3; i++ {
		want := fmt.Sprintf("n%d stopped cleanly", i)
		if i == 2 && killed {
			want = "n2 exited on its own"
		}
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
		}
	}
}

// TestSQLDemoScript checks scripts/sql-demo.sh (make sql-demo) parses. It is run for real
// by hand (it needs PostgreSQL and psql); TestSQLTopologyProcesses runs its topology.
func TestSQLDemoScript(t *testing.T) {
	const script = "../../scripts/sql-demo.sh"
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
}

// clusterNodePid finds the process serving data directory dir (its command line names
// it), or skips the kill when /proc cannot be read.
func clusterNodePid(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Logf("no /proc (%v): not killing a node", err)
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--data-dir" && args[i+1] == dir && slices.Contains(args, "serve") {
				return pid
			}
		}
	}
	t.Fatalf("no process serves %s", dir)
	return 0
}
