package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// scrape GETs /metrics with c's token and parses it; it fails the test unless the answer
// is 200 in the Prometheus text format.
func scrape(t *testing.T, c *client.Client) map[string]*dto.MetricFamily {
	return scrapeWith(t, c, "")
}

// scrapeWith scrapes with token as the bearer token ("" sends none).
func scrapeWith(t *testing.T, c *client.Client, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.BaseURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the value of family name's series with exactly the given labels (a counter,
// gauge, or a histogram's sample count), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func histogramSum(fams map[string]*dto.MetricFamily, name string) float64 {
	var sum float64
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return sum
}

// TestMetrics: a real node answers commands (some refused), and /metrics counts them
// exactly by type and code, with Raft, Pebble, projector, NATS, HTTP and Go runtime
// metrics beside them; no label carries an account id; every metric the Grafana
// dashboard queries exists.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t)
	c := n.Client
	ctx := context.Background()
	const alice, bob = "acct-metrics-alice", "acct-metrics-bob"
	for _, id := range []string{alice, bob} {
		if _, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: "M", InitialBalance: "100", Currency: "USD"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	const transfers = 5
	for i := 0; i < transfers; i++ {
		if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: alice, ToAccountID: bob, Amount: "1"}, fmt.Sprintf("idem-metrics-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A replay of an idempotent transfer: answered ok, not a new command in Raft.
	if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: alice, ToAccountID: bob, Amount: "1"}, "idem-metrics-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: alice, ToAccountID: bob, Amount: "1000"}, ""); client.CodeOf(err) != chronicle.CodeInsufficientFunds {
		t.Fatalf("overdrawing transfer: %v, want %s", err, chronicle.CodeInsufficientFunds)
	}
	if code, errCode := status(t, c, http.MethodPost, "/commands/deposit", `{"account_id":"`+alice+`","amount":"-1"}`); code != http.StatusUnprocessableEntity && code != http.StatusBadRequest {
		t.Fatalf("negative deposit: %d %s", code, errCode)
	}
	batch := `{"commands":[{"type":"deposit","account_id":"` + alice + `","amount":"2"},` +
		`{"type":"transfer","from_account_id":"` + alice + `","to_account_id":"` + bob + `","amount":"1"},` +
		`{"type":"transfer","from_account_id":"` + bob + `","to_account_id":"` + alice + `","amount":"9999"}]}`
	if code, errCode := status(t, c, http.MethodPost, "/commands/batch", batch); code != http.StatusOK {
		t.Fatalf("batch: %d %s", code, errCode)
	}
	if code, _ := status(t, c, http.MethodPost, "/commands/batch", `{"commands":[]}`); code != http.StatusBadRequest {
		t.Fatalf("empty batch: %d, want 400", code)
	}
	if _, err := c.Account(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	if code, _ := status(t, c, http.MethodGet, "/accounts/acct-metrics-nobody", ""); code != http.StatusNotFound {
		t.Fatalf("unknown account: %d", code)
	}

	_, negCode := status(t, c, http.MethodPost, "/commands/deposit", `{"account_id":"x","amount":"-1"}`)
	fams := scrape(t, c) // both deposit refusals are in it
	wantCounts := []struct {
		labels []string
		want   float64
	}{
		{[]string{"type", "create-account", "code", "ok"}, 2},
		{[]string{"type", "transfer", "code", "ok"}, transfers + 1 + 1}, // the replay, the batch's
		{[]string{"type", "transfer", "code", chronicle.CodeInsufficientFunds}, 2},
		{[]string{"type", "deposit", "code", "ok"}, 1},
		{[]string{"type", "deposit", "code", negCode}, 2},
		{[]string{"type", "batch", "code", chronicle.CodeMissingField}, 1},
		{[]string{"type", "withdraw", "code", "ok"}, 0}, // made up front for dashboards
	}
	for _, w := range wantCounts {
		if got, ok := value(fams, "chronicle_commands_total", w.labels...); !ok || got != w.want {
			t.Errorf("chronicle_commands_total%v = %v (present %v), want %v", w.labels, got, ok, w.want)
		}
	}
	if got, _ := value(fams, "chronicle_command_duration_seconds", "type", "transfer"); got != transfers+2 {
		t.Errorf("transfer latency observations: %v, want %d (single transfer requests)", got, transfers+2)
	}
	if got, _ := value(fams, "chronicle_batch_commands"); got != 1 || histogramSum(fams, "chronicle_batch_commands") != 3 {
		t.Errorf("batch sizes: %v batches of %v commands, want 1 of 3", got, histogramSum(fams, "chronicle_batch_commands"))
	}
	// Raft saw each command that passed decoding once: 2 accounts, 5 transfers, the
	// replay (the state machine answers it), the refused transfer, the batch's 3.
	if got := histogramSum(fams, "chronicle_raft_entry_commands"); got != 2+transfers+1+1+3 {
		t.Errorf("commands in Raft entries: %v, want %d", got, 2+transfers+1+1+3)
	}
	if got, _ := value(fams, "chronicle_raft_state", "state", "leader"); got != 1 {
		t.Errorf("raft state leader = %v, want 1", got)
	}
	if got, _ := value(fams, "chronicle_raft_state", "state", "follower"); got != 0 {
		t.Errorf("raft state follower = %v, want 0", got)
	}
	commit, _ := value(fams, "chronicle_raft_commit_index")
	last, _ := value(fams, "chronicle_raft_last_log_index")
	if term, _ := value(fams, "chronicle_raft_term"); term < 1 || commit < 1 || last < commit {
		t.Errorf("raft term %v, commit %v, last %v", term, commit, last)
	}
	if got, ok := value(fams, "chronicle_head_position"); !ok || got < 11 {
		t.Errorf("head position %v (present %v), want at least the 11 commands' events", got, ok)
	}
	if got, ok := value(fams, "chronicle_projector_lag_events", "view", "embedded"); !ok || got != 0 {
		t.Errorf("embedded view lag %v (present %v), want 0", got, ok)
	}
	if _, ok := value(fams, "chronicle_nats_publish_lag_events"); !ok {
		t.Error("no NATS publisher lag")
	}
	if got, ok := value(fams, "chronicle_http_requests_total", "route", "/commands/transfer", "code", "201"); !ok || got != transfers {
		t.Errorf("HTTP /commands/transfer 201: %v, want %d", got, transfers)
	}
	if got, ok := value(fams, "chronicle_http_requests_total", "route", "/accounts/{id}", "code", "404"); !ok || got != 1 {
		t.Errorf("HTTP /accounts/{id} 404: %v, want 1", got)
	}
	if got, ok := value(fams, "chronicle_pebble_wal_bytes_in_total", "db", "events"); !ok || got <= 0 {
		t.Errorf("state DB WAL bytes %v (present %v), want > 0", got, ok)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "chronicle_build_info",
		"chronicle_sse_clients", "chronicle_raft_log_store_duration_seconds", "chronicle_raft_entry_duration_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// Bounded labels: no series names an account, whatever the route or the command.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "acct-metrics") || strings.Contains(l.GetValue(), "idem-metrics") {
					t.Errorf("%s has label %s=%q: an id in a label", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	checkDashboardMetrics(t, fams)
}

// checkDashboardMetrics: every chronicle_, go_ and process_ metric a PromQL expression
// of the Grafana dashboards names is in fams (a histogram's _bucket, _sum and _count
// are its family's).
func checkDashboardMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "deploy", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under deploy/grafana/dashboards: %v", err)
	}
	ident := regexp.MustCompile(`\b(?:chronicle|go|process)_[a-zA-Z0-9_]+`)
	var names []string
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		exprs := collectExprs(doc, nil)
		if len(exprs) == 0 {
			t.Fatalf("%s: no PromQL expressions found", file)
		}
		for _, e := range exprs {
			names = append(names, ident.FindAllString(e, -1)...)
		}
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if !metricExists(fams, name) {
			t.Errorf("the dashboard queries %s, which the node does not export", name)
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d metric names found in the dashboards: %v", len(seen), names)
	}
}

// collectExprs gathers every "expr" string and every templating "query" in a dashboard.
func collectExprs(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, vv := range x {
			if s, ok := vv.(string); ok && (k == "expr" || k == "query" || k == "definition") {
				out = append(out, s)
				continue
			}
			out = collectExprs(vv, out)
		}
	case []any:
		for _, vv := range x {
			out = collectExprs(vv, out)
		}
	}
	return out
}

func metricExists(fams map[string]*dto.MetricFamily, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

// TestMetricsAuth: with tokens on, /metrics needs one (a reader's is enough).
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, withBootstrapToken(file))
	admin := n.Client.WithToken(readSecret(t, file))
	waitToken(t, admin)
	if code, errCode := status(t, n.Client, http.MethodGet, "/metrics", ""); code != http.StatusUnauthorized || errCode != chronicle.CodeUnauthorized {
		t.Fatalf("GET /metrics without a token: %d %s, want 401", code, errCode)
	}
	reader, err := admin.CreateToken(context.Background(), "prometheus", string(chronicle.RoleReader))
	if err != nil {
		t.Fatal(err)
	}
	fams := scrapeWith(t, n.Client, reader.Secret)
	if _, ok := fams["chronicle_commands_total"]; !ok {
		t.Fatal("a reader's scrape has no chronicle_commands_total")
	}
	// DNS rebinding: another Host is refused, as on every route but /health.
	req, err := http.NewRequest(http.MethodGet, n.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "attacker.example"
	req.Header.Set("Authorization", "Bearer "+reader.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET /metrics with Host attacker.example: %d, want 421", resp.StatusCode)
	}
	// The scrape itself is counted under its route, and the refusal under 401.
	fams = scrapeWith(t, n.Client, reader.Secret)
	if got, _ := value(fams, "chronicle_http_requests_total", "route", "/metrics", "code", "401"); got != 1 {
		t.Errorf("/metrics 401s counted: %v, want 1", got)
	}
}

// TestMetricsOff: --metrics=false serves no /metrics.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, func(c *node.Config) { c.DisableMetrics = true })
	if code, _ := status(t, n.Client, http.MethodGet, "/metrics", ""); code != http.StatusNotFound {
		t.Fatalf("GET /metrics with metrics off: %d, want 404", code)
	}
	if _, err := n.Client.CreateAccount(context.Background(), client.CreateAccount{AccountID: "a", OwnerName: "A", Currency: "USD"}, ""); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsSQL: a SQL-mode command process counts commands and publishes; it has no
// Raft or Pebble metrics; a query process reports its projector.
func TestMetricsSQL(t *testing.T) {
	t.Parallel()
	es := pgtest.Schema(t)
	cmd := sqlNode(t, es, httpapi.RoleCommand, "")
	q := sqlNode(t, es, httpapi.RoleQuery, "")
	ctx := context.Background()
	res, err := cmd.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "A", InitialBalance: "5", Currency: "USD"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Client.Withdraw(ctx, client.Money{AccountID: "A", Amount: "6"}, ""); client.CodeOf(err) != chronicle.CodeInsufficientFunds {
		t.Fatalf("overdrawing withdraw: %v", err)
	}
	fams := scrape(t, cmd.Client)
	if got, _ := value(fams, "chronicle_commands_total", "type", "create-account", "code", "ok"); got != 1 {
		t.Errorf("create-account ok: %v, want 1", got)
	}
	if got, _ := value(fams, "chronicle_commands_total", "type", "withdraw", "code", chronicle.CodeInsufficientFunds); got != 1 {
		t.Errorf("withdraw insufficient_funds: %v, want 1", got)
	}
	for name := range fams {
		if strings.HasPrefix(name, "chronicle_raft_") || strings.HasPrefix(name, "chronicle_pebble_") {
			t.Errorf("SQL mode exports %s", name)
		}
	}
	if _, ok := value(fams, "chronicle_nats_published_position"); !ok {
		t.Error("a command process reports no NATS publisher")
	}
	if _, err := q.Client.Account(ctx, "A", res.Position); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, q.Client)
	if got, ok := value(fams, "chronicle_projector_position", "view", "pebble"); !ok || got < float64(res.Position) {
		t.Errorf("query process projector position %v (present %v), want >= %d", got, ok, res.Position)
	}
	if _, ok := value(fams, "chronicle_nats_published_position"); ok {
		t.Error("a query process reports a NATS publisher")
	}
}

// TestMetricsCluster: in a three-node cluster each node reports its own Raft state (one
// leader, the others followers, one term); a command sent to a follower is counted once,
// by the node that executed it (the leader), while the follower counts the HTTP request
// it forwarded.
func TestMetricsCluster(t *testing.T) {
	t.Parallel()
	c := nodetest.StartCluster(t, 3)
	fi := (c.Leader(t) + 1) % 3
	ctx := context.Background()
	follower := c.Nodes[fi].Client
	if _, err := follower.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "A", InitialBalance: "5", Currency: "USD"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Withdraw(ctx, client.Money{AccountID: "A", Amount: "9"}, ""); client.CodeOf(err) != chronicle.CodeInsufficientFunds {
		t.Fatalf("overdrawing withdraw through a follower: %v", err)
	}
	// Counted once across the cluster, whichever node led at the time (an election on a
	// busy machine may move the leader, never double a count).
	var created, refused float64
	for _, n := range c.Nodes {
		fams := scrape(t, n.Client)
		v, _ := value(fams, "chronicle_commands_total", "type", "create-account", "code", "ok")
		created += v
		v, _ = value(fams, "chronicle_commands_total", "type", "withdraw", "code", chronicle.CodeInsufficientFunds)
		refused += v
	}
	if created != 1 || refused != 1 {
		t.Errorf("across the cluster: create-account ok %v, withdraw insufficient_funds %v, want 1 each", created, refused)
	}
	if got, _ := value(scrape(t, follower), "chronicle_http_requests_total", "route", "/commands/create-account", "code", "201"); got != 1 {
		t.Errorf("the follower's forwarded create-account: %v HTTP 201s, want 1", got)
	}
	// Raft state per node: one leader, the others followers, all in one term. Polled: a
	// scrape may fall in an election.
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders, states, terms := 0, 0, map[float64]bool{}
		for _, n := range c.Nodes {
			fams := scrape(t, n.Client)
			lead, _ := value(fams, "chronicle_raft_state", "state", "leader")
			follow, _ := value(fams, "chronicle_raft_state", "state", "follower")
			leaders += int(lead)
			states += int(lead + follow)
			term, _ := value(fams, "chronicle_raft_term")
			terms[term] = true
		}
		if leaders == 1 && states == 3 && len(terms) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leaders, %d nodes leader or follower, terms %v: want 1, 3 and one term", leaders, states, terms)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
