package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func runHealth(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, append([]string{"health"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// oneLine fails unless s is exactly one non-empty line containing want.
func oneLine(t *testing.T, s, want string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.Contains(s, want) {
		t.Fatalf("stderr = %q, want one line containing %q", s, want)
	}
}

func TestHealthReadyNode(t *testing.T) {
	n := nodetest.Start(t)
	code, out, errOut := runHealth(t, "--url", n.URL())
	if code != 0 || errOut != "" {
		t.Fatalf("health of a ready node: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, n.URL()+"/ready") {
		t.Fatalf("stdout = %q", out)
	}
	// The URL may also come from the environment, like every flag.
	t.Setenv("CHRONICLE_URL", n.URL()+"/")
	if code, _, errOut := runHealth(t); code != 0 {
		t.Fatalf("health with CHRONICLE_URL: exit %d, stderr %q", code, errOut)
	}
}

func TestHealthDeadPort(t *testing.T) {
	addr := nodetest.FreeAddr(t) // reserved and released: nothing listens there
	code, out, errOut := runHealth(t, "--url", "http://"+addr, "--timeout", "1s")
	if code != 1 || out != "" {
		t.Fatalf("health of a dead port: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "connection refused")
}

func TestHealthNotReady(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("{\"status\":\"not_ready\",\n\"error\":\"no raft leader\"}"))
	}))
	defer srv.Close()
	code, _, errOut := runHealth(t, "--url", srv.URL)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	oneLine(t, errOut, "503 Service Unavailable: no raft leader")
}

func TestHealthTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	code, _, errOut := runHealth(t, "--url", srv.URL, "--timeout", "200ms")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with --timeout 200ms", d)
	}
	oneLine(t, errOut, "deadline exceeded")
}

func TestHealthBadFlags(t *testing.T) {
	if code, _, _ := runHealth(t, "--no-such-flag"); code != 2 {
		t.Fatalf("unknown flag: exit %d, want 2", code)
	}
	if code, _, errOut := runHealth(t, "--timeout", "0s"); code != 1 || !strings.Contains(errOut, "positive") {
		t.Fatalf("--timeout 0s: exit %d, stderr %q", code, errOut)
	}
}

func TestVersionCommand(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{arg}, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", arg, code, errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if !strings.HasPrefix(lines[0], "chronicle "+node.Version) {
			t.Fatalf("%s: first line %q, want chronicle %s", arg, lines[0], node.Version)
		}
		if len(lines) < 2 || !strings.Contains(lines[1], runtime.Version()) {
			t.Fatalf("%s: no Go version in %q", arg, out.String())
		}
	}
}
