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
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
		if want := fmt.Sprintf("n%d stopped cleanly", i); !strings.Contains(stderr.String(), want) {
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
