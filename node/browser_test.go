package node_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// attack sends what a browser page would: method, path, body, and the headers a form or
// a fetch without preflight carries. host, when set, replaces the Host header (a page
// whose DNS name rebinds to the node). It returns the status and the error code.
func attack(t *testing.T, base, method, path, body, host string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct{ Error, Code string }
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s: non-JSON error body %q", method, path, raw)
		}
	}
	return resp.StatusCode, e.Code
}

// TestBrowserContentType: a command whose body is not typed application/json (what a
// form or a fetch without preflight sends) is refused with 415 and writes nothing; JSON
// with parameters or in other case is accepted.
func TestBrowserContentType(t *testing.T) {
	n := nodetest.Start(t)
	c := n.Client
	mustCreate(t, c, "A", "USD", "100.00")
	mustCreate(t, c, "B", "USD", "0")
	before := head(t, c)
	bodies := map[string]string{
		"/commands/create-account": `{"account_id":"evil","owner_name":"Mallory","currency":"USD","initial_balance":"1000000"}`,
		"/commands/deposit":        `{"account_id":"A","amount":"1000"}`,
		"/commands/transfer":       `{"from_account_id":"A","to_account_id":"B","amount":"100"}`,
		"/commands/withdraw":       `{"account_id":"A","amount":"1"}`,
		"/commands/batch":          `{"commands":[{"type":"deposit","account_id":"A","amount":1}]}`,
	}
	types := []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=----x", "", "application/jsonx", "text/json", "application/json-patch+json", "not a type"}
	for path, body := range bodies {
		for _, ct := range types {
			hdr := map[string]string{}
			if ct != "" {
				hdr["Content-Type"] = ct
			}
			if status, code := attack(t, n.URL(), http.MethodPost, path, body, "", hdr); status != http.StatusUnsupportedMediaType || code != "unsupported_media_type" {
				t.Errorf("POST %s as %q: %d %s, want 415 unsupported_media_type", path, ct, status, code)
			}
		}
	}
	if status, code := attack(t, n.URL(), http.MethodPost, "/cluster/join", `{"node_id":"evil","raft_addr":"203.0.113.1:4001"}`, "", map[string]string{"Content-Type": "text/plain"}); status != http.StatusUnsupportedMediaType || code != "unsupported_media_type" {
		t.Errorf("POST /cluster/join as text/plain: %d %s, want 415", status, code)
	}
	if status, code := attack(t, n.URL(), http.MethodDelete, "/cluster/nodes/n1", "x", "", map[string]string{"Content-Type": "text/plain"}); status != http.StatusUnsupportedMediaType {
		t.Errorf("DELETE /cluster/nodes/n1 as text/plain: %d %s, want 415", status, code)
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused requests wrote to the log: head %d -> %d", before, after)
	}
	if a, _ := c.Account(ctxT(t), "A", 0); a.Balance != "100.00" {
		t.Fatalf("balance of A moved to %s", a.Balance)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"} {
		if status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", `{"account_id":"A","amount":"1"}`, "", map[string]string{"Content-Type": ct}); status != http.StatusCreated {
			t.Errorf("deposit as %q: %d %s, want 201", ct, status, code)
		}
	}
}

// TestBrowserOrigin: a state-changing request from a foreign or opaque origin is refused
// with 403 and writes nothing; the node's own origin (the dashboard), a --cors-origin
// origin and requests without Origin (curl, Go clients) go through; reads are untouched.
func TestBrowserOrigin(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.CORSOrigins = []string{"http://localhost:3000"} })
	c := n.Client
	mustCreate(t, c, "A", "USD", "0")
	before := head(t, c)
	deposit := `{"account_id":"A","amount":"1"}`
	for _, origin := range []string{"http://evil.example", "null", "http://localhost:3001", "https://localhost:3000.evil.example",
		"http://evil.example:" + port(t, n.URL()), "file://", "http://127.0.0.1:" + port(t, n.URL()) + "@evil.example"} {
		for _, ct := range []string{"application/json", "text/plain"} {
			status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", deposit, "", map[string]string{"Origin": origin, "Content-Type": ct})
			if status != http.StatusForbidden || code != "forbidden_origin" {
				t.Errorf("deposit from origin %q as %s: %d %s, want 403 forbidden_origin", origin, ct, status, code)
			}
		}
	}
	if status, code := attack(t, n.URL(), http.MethodPost, "/cluster/join", `{"node_id":"evil","raft_addr":"203.0.113.1:4001"}`, "", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}); status != http.StatusForbidden {
		t.Errorf("join from a foreign origin: %d %s, want 403", status, code)
	}
	if status, code := attack(t, n.URL(), http.MethodDelete, "/cluster/nodes/n9", "", "", map[string]string{"Origin": "http://evil.example"}); status != http.StatusForbidden {
		t.Errorf("remove from a foreign origin: %d %s, want 403", status, code)
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused requests wrote to the log: head %d -> %d", before, after)
	}
	// A read from a foreign origin is answered (the browser withholds it without CORS).
	if status, _ := attack(t, n.URL(), http.MethodGet, "/accounts/A", "", "", map[string]string{"Origin": "http://evil.example"}); status != http.StatusOK {
		t.Errorf("GET from a foreign origin: %d", status)
	}
	for _, origin := range []string{n.URL(), "http://localhost:3000", ""} {
		hdr := map[string]string{"Content-Type": "application/json"}
		if origin != "" {
			hdr["Origin"] = origin
		}
		if status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", deposit, "", hdr); status != http.StatusCreated {
			t.Errorf("deposit from origin %q: %d %s, want 201", origin, status, code)
		}
	}
	// The same-origin dashboard reached as localhost.
	local := "localhost:" + port(t, n.URL())
	if status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", deposit, local, map[string]string{"Origin": "http://" + local, "Content-Type": "application/json"}); status != http.StatusCreated {
		t.Errorf("deposit from the dashboard at %s: %d %s", local, status, code)
	}
	// "*" lets every origin in (the operator's explicit choice), but never "null".
	anyNode := nodetest.Start(t, func(c *node.Config) { c.CORSOrigins = []string{"*"} })
	mustCreate(t, anyNode.Client, "A", "USD", "0")
	if status, code := attack(t, anyNode.URL(), http.MethodPost, "/commands/deposit", deposit, "", map[string]string{"Origin": "http://elsewhere.example", "Content-Type": "application/json"}); status != http.StatusCreated {
		t.Errorf("deposit from any origin with *: %d %s", status, code)
	}
	if status, code := attack(t, anyNode.URL(), http.MethodPost, "/commands/deposit", deposit, "", map[string]string{"Origin": "null", "Content-Type": "application/json"}); status != http.StatusForbidden {
		t.Errorf("deposit from origin null with *: %d %s, want 403", status, code)
	}
}

// TestBrowserHost: on a loopback node a Host other than a loopback name or the
// advertise URL's (a DNS-rebinding page) is refused with 421 on reads and commands
// alike; /health stays open; --allowed-hosts admits a name.
func TestBrowserHost(t *testing.T) {
	n := nodetest.Start(t)
	c := n.Client
	mustCreate(t, c, "A", "USD", "0")
	before := head(t, c)
	p := port(t, n.URL())
	deposit := `{"account_id":"A","amount":"1"}`
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, host := range []string{"evil.example", "evil.example:" + p, "localhost.evil.example:" + p, "127.0.0.1.nip.example:" + p} {
		for _, path := range []string{"/accounts", "/accounts/A", "/events", "/ready", "/", "/cluster"} {
			if status, code := attack(t, n.URL(), http.MethodGet, path, "", host, nil); status != http.StatusMisdirectedRequest || code != "forbidden_host" {
				t.Errorf("GET %s with Host %s: %d %s, want 421 forbidden_host", path, host, status, code)
			}
		}
		hdr := map[string]string{"Content-Type": "application/json", "Origin": "http://" + host}
		if status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", deposit, host, hdr); status != http.StatusMisdirectedRequest || code != "forbidden_host" {
			t.Errorf("deposit with Host %s: %d %s, want 421 forbidden_host", host, status, code)
		}
		if status, _ := attack(t, n.URL(), http.MethodGet, "/health", "", host, nil); status != http.StatusOK {
			t.Errorf("GET /health with Host %s: %d, want 200", host, status)
		}
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused requests wrote to the log: head %d -> %d", before, after)
	}
	for _, host := range []string{"127.0.0.1:" + p, "localhost:" + p, "LOCALHOST:" + p, "localhost", "[::1]:" + p} {
		if status, code := attack(t, n.URL(), http.MethodGet, "/accounts", "", host, nil); status != http.StatusOK {
			t.Errorf("GET /accounts with Host %s: %d %s", host, status, code)
		}
		if status, code := attack(t, n.URL(), http.MethodPost, "/commands/deposit", deposit, host, jsonCT); status != http.StatusCreated {
			t.Errorf("deposit with Host %s: %d %s", host, status, code)
		}
	}

	allowed := nodetest.Start(t, func(c *node.Config) { c.AllowedHosts = []string{"ledger.internal"} })
	mustCreate(t, allowed.Client, "A", "USD", "0")
	ap := port(t, allowed.URL())
	for host, want := range map[string]int{"ledger.internal:" + ap: 200, "ledger.internal": 200, "127.0.0.1:" + ap: 200, "evil.example:" + ap: 421} {
		if status, code := attack(t, allowed.URL(), http.MethodGet, "/accounts", "", host, nil); status != want {
			t.Errorf("--allowed-hosts ledger.internal: GET with Host %s: %d %s, want %d", host, status, code, want)
		}
		if want == http.StatusOK {
			want = http.StatusCreated
		}
		if status, code := attack(t, allowed.URL(), http.MethodPost, "/commands/deposit", deposit, host, jsonCT); status != want {
			t.Errorf("--allowed-hosts ledger.internal: deposit with Host %s: %d %s, want %d", host, status, code, want)
		}
	}
}

func port(t *testing.T, base string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
