package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func withBootstrapToken(path string) nodetest.Option {
	return func(c *node.Config) { c.BootstrapTokenFile = path }
}

// readSecret reads a bootstrap token file the node wrote.
func readSecret(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// status sends one request and returns its status and error code ("" on success).
func status(t *testing.T, c *client.Client, method, path, body string) (int, string) {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	code, err := c.Do(context.Background(), method, path, b, nil, nil)
	return code, client.CodeOf(err)
}

// waitToken polls until c's token is accepted for a read (a token made on another node
// reaches this one through replication).
func waitToken(t *testing.T, c *client.Client) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, errCode := status(t, c, http.MethodGet, "/events?limit=1", "")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still refused: %d %s", code, errCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTokensAndRoles: with a bootstrap token every route but the public ones needs a
// token; roles decide what a token may do; refusals write nothing; the principal is each
// event's created_by; tokens never appear in the event log; revocation takes effect.
func TestTokensAndRoles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, withBootstrapToken(file))
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap token file: %v, mode %v; want one made with mode 0600", err, fi.Mode())
	}
	admin := n.Client.WithToken(readSecret(t, file))
	anon := n.Client
	ctx := context.Background()
	waitToken(t, admin)

	for _, p := range []string{"/health", "/ready", "/openapi.json", "/", "/cluster/info"} {
		if code, _ := status(t, anon, http.MethodGet, p, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200 (public)", p, code)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/accounts", ""},
		{http.MethodGet, "/accounts/a", ""},
		{http.MethodGet, "/events", ""},
		{http.MethodGet, "/events/stream", ""},
		{http.MethodGet, "/cluster", ""},
		{http.MethodGet, "/admin/tokens", ""},
		{http.MethodPost, "/commands/create-account", `{"account_id":"a","owner_name":"A","initial_balance":"5"}`},
		{http.MethodPost, "/commands/batch", `{"commands":[{"type":"deposit","account_id":"a","amount":"1"}]}`},
		{http.MethodPost, "/cluster/join", `{"node_id":"evil","raft_addr":"127.0.0.1:1"}`},
		{http.MethodDelete, "/cluster/nodes/n1", ""},
	} {
		for _, who := range []*client.Client{anon, n.Client.WithToken("chr_not-a-token"), n.Client.WithToken(chronicle.NewTokenSecret())} {
			if code, errCode := status(t, who, c.method, c.path, c.body); code != http.StatusUnauthorized || errCode != chronicle.CodeUnauthorized {
				t.Errorf("%s %s with a missing or unknown token: %d %s, want 401 %s", c.method, c.path, code, errCode, chronicle.CodeUnauthorized)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/accounts", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", resp.Header.Get("WWW-Authenticate"))
	}

	writerTok, err := admin.CreateToken(ctx, "teller-1", "writer")
	if err != nil || writerTok.Secret == "" || writerTok.Role != "writer" || writerTok.CreatedBy != node.BootstrapTokenName {
		t.Fatalf("create writer: %+v, %v", writerTok, err)
	}
	readerTok, err := admin.CreateToken(ctx, "auditor", "reader")
	if err != nil {
		t.Fatal(err)
	}
	writer, reader := n.Client.WithToken(writerTok.Secret), n.Client.WithToken(readerTok.Secret)
	for _, c := range []struct {
		name, role, code string
		status           int
	}{
		{"teller-1", "reader", chronicle.CodeTokenExists, http.StatusConflict},
		{"root", "root", chronicle.CodeInvalidRole, http.StatusBadRequest},
		{"bad name", "reader", chronicle.CodeInvalidTokenName, http.StatusBadRequest},
	} {
		_, err := admin.CreateToken(ctx, c.name, c.role)
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != c.status || apiErr.Code != c.code {
			t.Errorf("create %q %q: %v, want %d %s", c.name, c.role, err, c.status, c.code)
		}
	}

	head := func() uint64 {
		evs, err := reader.Events(ctx, client.EventsQuery{Order: "desc", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return 0
		}
		return evs[0].Position
	}
	if code, errCode := status(t, writer, http.MethodPost, "/commands/create-account", `{"account_id":"a","owner_name":"A","initial_balance":"5"}`); code != http.StatusCreated {
		t.Fatalf("writer create-account: %d %s", code, errCode)
	}
	before := head()
	for _, c := range []struct {
		who          *client.Client
		method, path string
		body         string
	}{
		{reader, http.MethodPost, "/commands/deposit", `{"account_id":"a","amount":"1"}`},
		{reader, http.MethodPost, "/commands/batch", `{"commands":[{"type":"deposit","account_id":"a","amount":"1"}]}`},
		{writer, http.MethodGet, "/admin/tokens", ""},
		{writer, http.MethodPost, "/admin/tokens", `{"name":"sneaky","role":"admin"}`},
		{writer, http.MethodPost, "/admin/tokens/auditor/revoke", `{}`},
		{writer, http.MethodPost, "/cluster/join", `{"node_id":"evil","raft_addr":"127.0.0.1:1"}`},
		{reader, http.MethodDelete, "/cluster/nodes/n1", ""},
	} {
		if code, errCode := status(t, c.who, c.method, c.path, c.body); code != http.StatusForbidden || errCode != chronicle.CodeForbiddenRole {
			t.Errorf("%s %s with too weak a role: %d %s, want 403 %s", c.method, c.path, code, errCode, chronicle.CodeForbiddenRole)
		}
	}
	if got := head(); got != before {
		t.Fatalf("refused requests moved the head from %d to %d", before, got)
	}
	if list, _ := admin.Tokens(ctx); len(list) != 3 {
		t.Fatalf("tokens after refusals: %+v, want bootstrap-admin, teller-1 and auditor", list)
	}
	// Readers read; writers write and read; the principal is created_by.
	if code, errCode := status(t, reader, http.MethodGet, "/accounts/a", ""); code != http.StatusOK {
		t.Fatalf("reader GET /accounts/a: %d %s", code, errCode)
	}
	if _, err := writer.Deposit(ctx, client.Money{AccountID: "a", Amount: "2"}, ""); err != nil {
		t.Fatal(err)
	}
	events, err := reader.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if e.Position != uint64(i+1) {
			t.Fatalf("event %d at position %d: token operations took log positions", i, e.Position)
		}
		if e.CreatedBy != "teller-1" {
			t.Errorf("event %d (%s) created_by %q, want the writer's token name", e.Position, e.EventType, e.CreatedBy)
		}
		if strings.Contains(strings.ToLower(e.EventType), "token") {
			t.Errorf("a token operation in the ledger: %+v", e)
		}
	}
	// Revocation counts at once on this node; the name stays taken.
	if _, err := admin.RevokeToken(ctx, "teller-1"); err != nil {
		t.Fatal(err)
	}
	if code, errCode := status(t, writer, http.MethodPost, "/commands/deposit", `{"account_id":"a","amount":"1"}`); code != http.StatusUnauthorized {
		t.Fatalf("revoked writer deposits: %d %s, want 401", code, errCode)
	}
	if _, err := admin.CreateToken(ctx, "teller-1", "writer"); client.CodeOf(err) != chronicle.CodeTokenExists {
		t.Fatalf("recreate a revoked name: %v", err)
	}
	// A restart keeps the table; revoking the bootstrap token is for good, even though
	// the node restarts with the same file.
	second, err := admin.CreateToken(ctx, "ops", "admin")
	if err != nil {
		t.Fatal(err)
	}
	ops := n.Client.WithToken(second.Secret)
	if _, err := ops.RevokeToken(ctx, node.BootstrapTokenName); err != nil {
		t.Fatal(err)
	}
	n = n.Restart(t)
	admin, ops, reader = n.Client.WithToken(readSecret(t, file)), n.Client.WithToken(second.Secret), n.Client.WithToken(readerTok.Secret)
	waitToken(t, reader)
	if code, _ := status(t, admin, http.MethodGet, "/accounts", ""); code != http.StatusUnauthorized {
		t.Fatalf("revoked bootstrap token after a restart with its file: %d, want 401", code)
	}
	list, err := ops.Tokens(ctx)
	if err != nil || len(list) != 4 {
		t.Fatalf("tokens after restart: %+v, %v", list, err)
	}
	for _, tok := range list {
		if want := tok.Name == "teller-1" || tok.Name == node.BootstrapTokenName; tok.Revoked != want {
			t.Errorf("token %s revoked=%v after restart", tok.Name, tok.Revoked)
		}
	}
}

// TestFirstTokenTurnsAuthOn: a loopback node without tokens serves anyone (make run, the
// original system's scripts); the first token made turns authentication on for good.
func TestFirstTokenTurnsAuthOn(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "open", OwnerName: "O", InitialBalance: "1"}, ""); err != nil {
		t.Fatalf("open node refused an anonymous command: %v", err)
	}
	if code, errCode := status(t, n.Client.WithToken("chr_whatever-this-is"), http.MethodGet, "/accounts/open", ""); code != http.StatusUnauthorized {
		t.Fatalf("a made-up token on an open node: %d %s, want 401", code, errCode)
	}
	tok, err := n.Client.CreateToken(ctx, "first", "admin")
	if err != nil || tok.CreatedBy != "anonymous" {
		t.Fatalf("first token: %+v, %v", tok, err)
	}
	if code, _ := status(t, n.Client, http.MethodGet, "/accounts/open", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous read after the first token: %d, want 401", code)
	}
	if code, _ := status(t, n.Client.WithToken(tok.Secret), http.MethodGet, "/accounts/open", ""); code != http.StatusOK {
		t.Fatalf("read with the first token: %d", code)
	}
	n = n.Restart(t)
	if code, _ := status(t, n.Client, http.MethodGet, "/accounts/open", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous read after a restart: %d, want 401", code)
	}
}

// TestRateLimitPerToken: a token over its budget gets 429 rate_limited with
// Retry-After; another token's budget is its own.
func TestRateLimitPerToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.token")
	// One request per 1000 s after a burst of 3: no refill can happen during the test.
	n := nodetest.Start(t, withBootstrapToken(file), func(c *node.Config) { c.RateLimit, c.RateBurst = 0.001, 3 })
	admin := n.Client.WithToken(readSecret(t, file))
	ctx := context.Background()
	// The admin's 1st request within its budget (refusals cost nothing), then the 2nd.
	waitToken(t, admin)
	tok, err := admin.CreateToken(ctx, "busy", "reader")
	if err != nil {
		t.Fatal(err)
	}
	busy := n.Client.WithToken(tok.Secret)
	for i := range 3 {
		if code, errCode := status(t, busy, http.MethodGet, "/events?limit=1", ""); code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, code, errCode)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/events?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request over the budget: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, errCode := status(t, admin, http.MethodGet, "/events?limit=1", ""); code != http.StatusOK {
		t.Fatalf("another token after busy's budget ran out: %d %s", code, errCode)
	}
}

// TestProtectedMode: a node with a listener other machines can reach refuses to start
// without authentication, and says how to fix it; --insecure or a token file lets it.
func TestProtectedMode(t *testing.T) {
	base := func() node.Config {
		return node.Config{DataDir: t.TempDir(), HTTPAddr: "0.0.0.0:0", RaftAddr: "127.0.0.1:0", NodeID: "n1", Logger: nodetest.Logger()}
	}
	_, err := node.New(context.Background(), base())
	if err == nil || !strings.Contains(err.Error(), "--bootstrap-token-file") || !strings.Contains(err.Error(), "--insecure") ||
		!strings.Contains(err.Error(), "--http-addr 0.0.0.0:0") {
		t.Fatalf("exposed node without tokens started or said %v", err)
	}
	cfg := base()
	cfg.HTTPAddr, cfg.NATSListen = "127.0.0.1:0", "0.0.0.0:"+strings.Split(nodetest.FreeAddr(t), ":")[1]
	if _, err := node.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--nats-listen") {
		t.Fatalf("exposed NATS without tokens: %v", err)
	}
	raftOpen := base()
	raftOpen.HTTPAddr, raftOpen.RaftAddr, raftOpen.BootstrapTokenFile = "127.0.0.1:0", "0.0.0.0:0", filepath.Join(t.TempDir(), "t")
	if _, err := node.New(context.Background(), raftOpen); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Fatalf("Raft on every interface without TLS, tokens or not: %v", err)
	}
	insecure := base()
	insecure.Insecure = true
	nodetest.Launch(t, insecure)
	tokens := base()
	tokens.BootstrapTokenFile = filepath.Join(t.TempDir(), "t")
	nodetest.Launch(t, tokens)
}

// TestTokensAcrossTheCluster: a token made through a follower (forwarded to the leader)
// works on every node; a revocation reaches every node.
func TestTokensAcrossTheCluster(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.token")
	c := nodetest.StartCluster(t, 3, withBootstrapToken(file))
	secret := readSecret(t, file)
	l := c.Leader(t)
	f := (l + 1) % 3
	for _, n := range c.Nodes {
		waitToken(t, n.Client.WithToken(secret))
	}
	ctx := context.Background()
	tok, err := c.Nodes[f].Client.WithToken(secret).CreateToken(ctx, "clerk", "writer")
	if err != nil {
		t.Fatalf("create through a follower: %v", err)
	}
	for i, n := range c.Nodes {
		waitToken(t, n.Client.WithToken(tok.Secret))
		if _, err := n.Client.WithToken(tok.Secret).Deposit(ctx, client.Money{AccountID: "c" + string(rune('0'+i)), Amount: "1"}, ""); client.CodeOf(err) != chronicle.CodeAccountNotFound {
			t.Fatalf("node %d: a writer's deposit to a missing account: %v, want %s (authenticated, then refused)", i, err, chronicle.CodeAccountNotFound)
		}
	}
	if _, err := c.Nodes[f].Client.WithToken(secret).RevokeToken(ctx, "clerk"); err != nil {
		t.Fatal(err)
	}
	for i, n := range c.Nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _ := status(t, n.Client.WithToken(tok.Secret), http.MethodGet, "/events?limit=1&consistency=local", "")
			if code == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d still accepts a revoked token: %d", i, code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestTokensInSQLMode: in the SQL topology the token table is a table of the event store:
// the bootstrap token and a token made through one process work on every process, a
// query process serves readers, and the principal is created_by in the log.
func TestTokensInSQLMode(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	file := filepath.Join(t.TempDir(), "admin.token")
	sqlAuthNode := func(role, readModel string) *nodetest.Node {
		return nodetest.Start(t, withBootstrapToken(file), func(c *node.Config) {
			c.Store, c.EventStoreURL, c.Role, c.ReadModel = node.StoreSQL, es, role, readModel
		})
	}
	c1 := sqlAuthNode(httpapi.RoleCommand, "")
	c2 := sqlAuthNode(httpapi.RoleCommand, "")
	q := sqlAuthNode(httpapi.RoleQuery, rm)
	secret := readSecret(t, file)
	ctx := ctxT(t)
	waitToken(t, q.Client.WithToken(secret))
	if code, _ := status(t, c1.Client, http.MethodPost, "/commands/create-account", `{"account_id":"s","owner_name":"S"}`); code != http.StatusUnauthorized {
		t.Fatalf("anonymous command on a SQL process with a bootstrap token: %d, want 401", code)
	}
	w, err := c1.Client.WithToken(secret).CreateToken(ctx, "sql-writer", "writer")
	if err != nil {
		t.Fatal(err)
	}
	r, err := c2.Client.WithToken(secret).CreateToken(ctx, "sql-reader", "reader")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c2.Client.WithToken(w.Secret).CreateAccount(ctx, client.CreateAccount{AccountID: "s", OwnerName: "S", InitialBalance: "3"}, "")
	if err != nil {
		t.Fatalf("a token made on one command process, used on the other: %v", err)
	}
	reader := q.Client.WithToken(r.Secret)
	waitToken(t, reader)
	var acct client.Account
	if _, err := reader.Do(ctx, http.MethodGet, fmt.Sprintf("/accounts/s?min_position=%d", res.Position), nil, nil, &acct); err != nil || acct.Balance != "3.00" {
		t.Fatalf("reader on the query process: %+v, %v", acct, err)
	}
	evs, err := reader.AllEvents(ctx)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %d, %v", len(evs), err)
	}
	for _, e := range evs {
		if e.CreatedBy != "sql-writer" {
			t.Errorf("event %d created_by %q, want sql-writer", e.Position, e.CreatedBy)
		}
	}
	if code, _ := status(t, q.Client.WithToken(r.Secret), http.MethodPost, "/commands/deposit", `{"account_id":"s","amount":"1"}`); code != http.StatusNotFound && code != http.StatusForbidden {
		t.Fatalf("reader posting a command to a query process: %d", code)
	}
}

// TestRevokedTokenEndsItsStream: an open event stream whose token is revoked is told so
// (event: error, code unauthorized) and closed, though it passed the check when it opened.
func TestRevokedTokenEndsItsStream(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, withBootstrapToken(file))
	admin := n.Client.WithToken(readSecret(t, file))
	waitToken(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tok, err := admin.CreateToken(ctx, "watcher", "reader")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open the stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if _, err := admin.CreateAccount(ctx, client.CreateAccount{AccountID: "w", OwnerName: "W"}, ""); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	read := func(until func(string) bool) bool {
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if until(sc.Text()) {
				return true
			}
		}
		return false
	}
	if !read(func(l string) bool { return strings.HasPrefix(l, "data:") && strings.Contains(l, `"AccountCreated"`) }) {
		t.Fatalf("the stream did not deliver the event before the revocation: %q", seen)
	}
	if _, err := admin.RevokeToken(ctx, "watcher"); err != nil {
		t.Fatal(err)
	}
	if !read(func(l string) bool {
		return strings.HasPrefix(l, "data:") && strings.Contains(l, chronicle.CodeUnauthorized)
	}) {
		t.Fatalf("the stream of a revoked token was not told (%v): %q", sc.Err(), seen)
	}
	if read(func(string) bool { return false }); sc.Err() != nil && ctx.Err() != nil {
		t.Fatalf("the stream stayed open after telling the client: %v", sc.Err())
	}
}
