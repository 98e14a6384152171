package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/gctune"
	"github.com/chronicle-ledger/chronicle/internal/pki/pkitest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestTokenCommand: chronicle token generate|create|list|revoke against a node whose
// bootstrap token came from generate; the secret create prints works, revoke ends it.
func TestTokenCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"token"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	file := filepath.Join(t.TempDir(), "admin.token")
	if code, out, errOut := cli("generate", "--out", file); code != 0 || strings.Contains(out, "chr_") {
		t.Fatalf("generate: %d %q %q (the secret must not be printed)", code, out, errOut)
	}
	first, _ := os.ReadFile(file)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 || !bytes.HasPrefix(first, []byte("chr_")) {
		t.Fatalf("generated file: %v %v %q", err, fi.Mode(), first)
	}
	if code, _, _ := cli("generate", "--out", file); code != 0 {
		t.Fatal("generate over an existing file failed")
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, first) {
		t.Fatal("generate replaced an existing secret")
	}

	n := nodetest.Start(t, func(c *node.Config) { c.BootstrapTokenFile = file })
	admin := strings.TrimSpace(string(first))
	deadline := time.Now().Add(20 * time.Second)
	for code, _, _ := cli("list", "--url", n.URL(), "--token-file", file); code != 0; code, _, _ = cli("list", "--url", n.URL(), "--token-file", file) {
		if time.Now().After(deadline) {
			t.Fatal("the bootstrap token never became usable")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, errOut := cli("create", "--url", n.URL(), "--name", "ci", "--role", "writer"); code != 1 || !strings.Contains(errOut, "401 unauthorized") {
		t.Fatalf("create without a token: %d %q", code, errOut)
	}
	code, out, errOut := cli("create", "--url", n.URL(), "--token", admin, "--name", "ci", "--role", "writer")
	secret := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(secret, "chr_") || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "not shown again") {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	writer := n.Client.WithToken(secret)
	if code, err := writer.Do(ctx, http.MethodPost, "/commands/create-account", []byte(`{"account_id":"ci","owner_name":"CI"}`), nil, nil); code != http.StatusCreated {
		t.Fatalf("the created token: %d %v", code, err)
	}
	_, list, _ := cli("list", "--url", n.URL(), "--token-file", file)
	if !strings.Contains(list, "ci") || !strings.Contains(list, "writer") || !strings.Contains(list, node.BootstrapTokenName) || strings.Contains(list, "chr_") {
		t.Fatalf("list:\n%s", list)
	}
	if code, _, errOut := cli("revoke", "--url", n.URL(), "--token-file", file, "ci"); code != 0 {
		t.Fatalf("revoke: %d %q", code, errOut)
	}
	if code, _ := writer.Do(ctx, http.MethodGet, "/events", nil, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d, want 401", code)
	}
	_, list, _ = cli("list", "--url", n.URL(), "--token-file", file)
	if !strings.Contains(list, "revoked") {
		t.Fatalf("list after revoke:\n%s", list)
	}
}

// TestTokenCreateOut: token create --out, the compose files' one-shot for Prometheus'
// reader token, against an HTTPS node. The secret goes to the file (mode 0600), never to
// the output; --cacert-out copies the CA's certificates and nothing else; a rerun keeps
// the file and makes no second token; a rerun that lost the file refuses to make one
// under the taken name and says why; a directory it cannot write makes no token.
func TestTokenCreateOut(t *testing.T) {
	certs := pkitest.Write(t, "n1")
	dir := t.TempDir()
	admin := filepath.Join(dir, "admin.token")
	if code, _, errOut := runCmd(t, "token", "generate", "--out", admin); code != 0 {
		t.Fatalf("generate: %d %q", code, errOut)
	}
	n := nodetest.Start(t, nodetest.WithTLS(certs), func(c *node.Config) { c.BootstrapTokenFile = admin })
	list := func() string {
		t.Helper()
		code, out, errOut := runCmd(t, "token", "list", "--url", n.URL(), "--cacert", certs.CACert, "--token-file", admin)
		if code != 0 {
			t.Fatalf("list: %d %q", code, errOut)
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for code, _, _ := runCmd(t, "token", "list", "--url", n.URL(), "--cacert", certs.CACert, "--token-file", admin); code != 0; code, _, _ = runCmd(t, "token", "list", "--url", n.URL(), "--cacert", certs.CACert, "--token-file", admin) {
		if time.Now().After(deadline) {
			t.Fatal("the bootstrap token never became usable")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// --cacert with the CA key appended: the copy must hold the certificate only.
	caPEM, _ := os.ReadFile(certs.CACert)
	keyPEM, _ := os.ReadFile(certs.CAKey)
	bundle := filepath.Join(dir, "ca-and-key.pem")
	if err := os.WriteFile(bundle, append(append([]byte{}, caPEM...), keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "metrics")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, caOut := filepath.Join(outDir, "prometheus.token"), filepath.Join(outDir, "ca.crt")
	create := func(out, name string) (int, string, string) {
		t.Helper()
		return runCmd(t, "token", "create", "--url", n.URL(), "--cacert", bundle, "--token-file", admin,
			"--name", name, "--role", "reader", "--out", out, "--cacert-out", caOut)
	}
	code, stdout, stderr := create(out, "prometheus")
	if code != 0 || strings.Contains(stdout+stderr, "chr_") {
		t.Fatalf("create --out: %d %q %q (the secret must not be printed)", code, stdout, stderr)
	}
	secret, _ := os.ReadFile(out)
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 || !bytes.HasPrefix(secret, []byte("chr_")) {
		t.Fatalf("--out file: %v %v %q", err, fi, secret)
	}
	copied, _ := os.ReadFile(caOut)
	if fi, err := os.Stat(caOut); err != nil || fi.Mode().Perm() != 0o644 || !bytes.Equal(copied, caPEM) || bytes.Contains(copied, []byte("PRIVATE KEY")) {
		t.Fatalf("--cacert-out file: %v %v\n%s", err, fi, copied)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 2 {
		t.Fatalf("%s holds %d files, want the token and the CA certificate only (a temporary file left?)", outDir, len(entries))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reader := n.Client.WithToken(strings.TrimSpace(string(secret)))
	if code, err := reader.Do(ctx, http.MethodGet, "/metrics", nil, nil, nil); code != http.StatusOK {
		t.Fatalf("the reader token on /metrics: %d %v", code, err)
	}
	if code, _ := reader.Do(ctx, http.MethodPost, "/commands/create-account", []byte(`{"account_id":"x","owner_name":"X"}`), nil, nil); code != http.StatusForbidden {
		t.Fatalf("the reader token on a command: %d, want 403", code)
	}

	// A rerun keeps the file and asks no node for a second token.
	if code, stdout, stderr := create(out, "prometheus"); code != 0 || !strings.Contains(stdout, "kept") {
		t.Fatalf("rerun: %d %q %q", code, stdout, stderr)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, secret) {
		t.Fatal("a rerun replaced the secret")
	}
	if l := list(); strings.Count(l, "prometheus") != 1 || !strings.Contains(l, "reader") {
		t.Fatalf("after the rerun, want one token prometheus:\n%s", l)
	}

	// The file lost, the name is taken: refused, saying what to do, and nothing written.
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := create(out, "prometheus"); code != 1 || !strings.Contains(stderr, "exists but") || !strings.Contains(stderr, "revoke") {
		t.Fatalf("rerun without the file: %d %q", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("rerun without the file wrote it: %v", err)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Fatalf("%s holds %d files after a refused create, want the CA certificate only", outDir, len(entries))
	}

	// A directory it cannot write to: refused before a token is made.
	if code, _, stderr := create(filepath.Join(dir, "missing", "p.token"), "prometheus-2"); code != 1 || !strings.Contains(stderr, "--out") {
		t.Fatalf("create into a missing directory: %d %q", code, stderr)
	}
	if l := list(); strings.Contains(l, "prometheus-2") {
		t.Fatalf("a token was made though its secret could not be written:\n%s", l)
	}
}

// TestServePprofOffLoopbackRefused: profiles are never served to other machines unless
// the operator says so with --insecure.
func TestServePprofOffLoopbackRefused(t *testing.T) {
	code, _, errOut := runCmd(t, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--pprof-addr", "0.0.0.0:0")
	if code != 1 || !strings.Contains(errOut, "--pprof-addr 0.0.0.0:0") || !strings.Contains(errOut, "--insecure") {
		t.Fatalf("serve --pprof-addr 0.0.0.0:0: exit %d, stderr %q", code, errOut)
	}
}

// TestServeRefusesBadHeapBudget: a heap budget that is not a size stops the node before
// it opens anything, naming the flag.
func TestServeRefusesBadHeapBudget(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCmd(t, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--heap-budget", "lots")
	if code != 1 || !strings.Contains(errOut, `--heap-budget "lots"`) {
		t.Fatalf("serve --heap-budget lots: exit %d, stderr %q", code, errOut)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("data dir after a refused start: %v, %v; want it untouched", ents, err)
	}
}

// TestTuneGCLeavesAnOperatorsGOGC: serve paces the collector (the test binary's small
// heap gets GOGC 400) unless GOGC is in the environment or the budget is 0; an empty
// GOGC counts as unset, as Go reads it. Not parallel: GOGC is the process's.
func TestTuneGCLeavesAnOperatorsGOGC(t *testing.T) {
	gogc := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		env, budget string
		tuned       bool
	}{{"", defaultHeapBudget, true}, {"100", defaultHeapBudget, false}, {"", "0", false}} {
		t.Setenv("GOGC", c.env)
		stop, err := tuneGC(c.budget, log)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond) // the tuner runs on the finalizer goroutine
		}
		if got := gogc(); (got == gctune.MaxPercent) != c.tuned {
			t.Errorf("GOGC=%q, --heap-budget %s: GOGC in force %d, tuned %t", c.env, c.budget, got, c.tuned)
		}
		stop()
		if got := gogc(); got != 100 {
			t.Errorf("GOGC=%q: %d after stop, want 100", c.env, got)
		}
	}
}
