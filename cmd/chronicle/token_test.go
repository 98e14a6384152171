package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestServePprofOffLoopbackRefused: profiles are never served to other machines unless
// the operator says so with --insecure.
func TestServePprofOffLoopbackRefused(t *testing.T) {
	code, _, errOut := runCmd(t, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--pprof-addr", "0.0.0.0:0")
	if code != 1 || !strings.Contains(errOut, "--pprof-addr 0.0.0.0:0") || !strings.Contains(errOut, "--insecure") {
		t.Fatalf("serve --pprof-addr 0.0.0.0:0: exit %d, stderr %q", code, errOut)
	}
}
