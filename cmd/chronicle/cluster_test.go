package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// TestClusterCommand drives `chronicle cluster status|join|remove` against an in-process
// three-node cluster: the status table and its JSON, admitting a fourth node by hand
// through a follower (which forwards to the leader), and removing it again.
func TestClusterCommand(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	li := c.Leader(t)
	leaderID := c.Nodes[li].Config.NodeID
	follower := c.Nodes[(li+1)%3].URL()

	// The table, asked of a follower, once every member answers for itself (followers
	// register their API URLs with the leader within a couple of seconds).
	out := waitClusterStatus(t, ctx, follower, "all three members reachable", func(rows []clusterRow) bool {
		return len(rows) == 3 && countRole(rows, "unreachable") == 0
	})
	rows := parseClusterRows(t, out)
	var ids []string
	var marked []clusterRow
	for _, r := range rows {
		ids = append(ids, r.id)
		if r.leader {
			marked = append(marked, r)
		}
	}
	if want := []string{"n1", "n2", "n3"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("status lists nodes %v, want %v:\n%s", ids, want, out)
	}
	if len(marked) != 1 {
		t.Fatalf("%d lines marked leader, want exactly 1:\n%s", len(marked), out)
	}
	if marked[0].id != leaderID || marked[0].role != "leader" {
		t.Errorf("marked line is %s (%s), want the leader %s:\n%s", marked[0].id, marked[0].role, leaderID, out)
	}
	if n := countRole(rows, "follower"); n != 2 {
		t.Errorf("%d followers, want 2:\n%s", n, out)
	}
	for _, r := range rows {
		if r.ready != "yes" || r.suffrage != "voter" {
			t.Errorf("node %s ready=%s suffrage=%s, want yes and voter:\n%s", r.id, r.ready, r.suffrage, out)
		}
	}
	for _, want := range []string{"NODE", "ROLE", "SUFFRAGE", "RAFT ADDR", "API URL", "TERM", "COMMIT", "APPLIED", "POSITION", "LAST CONTACT", "READY", "leader " + leaderID} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	for _, n := range c.Nodes {
		if !strings.Contains(out, n.Config.RaftAddr) || !strings.Contains(out, n.URL()) {
			t.Errorf("status lacks %s's raft address %s or URL %s:\n%s", n.Config.NodeID, n.Config.RaftAddr, n.URL(), out)
		}
	}

	// --json is GET /cluster as is.
	code, jsonOut, errOut := runCluster(ctx, "status", "--url", follower, "--json")
	if code != 0 {
		t.Fatalf("status --json exited %d: %s", code, errOut)
	}
	var ov struct {
		NodeID string `json:"node_id"`
		Leader string `json:"leader"`
		Nodes  []struct {
			ID        string         `json:"id"`
			Leader    bool           `json:"leader"`
			Reachable bool           `json:"reachable"`
			Info      map[string]any `json:"info"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &ov); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, jsonOut)
	}
	if ov.Leader != leaderID || len(ov.Nodes) != 3 || ov.NodeID != c.Nodes[(li+1)%3].Config.NodeID {
		t.Errorf("status --json: node_id %q leader %q, %d nodes; want %s, %s, 3:\n%s", ov.NodeID, ov.Leader, len(ov.Nodes), c.Nodes[(li+1)%3].Config.NodeID, leaderID, jsonOut)
	}

	// The URL can come from CHRONICLE_URL; a flag wins over it.
	t.Setenv("CHRONICLE_URL", c.Nodes[li].URL())
	if code, out, errOut := runCluster(ctx, "status"); code != 0 || !strings.Contains(out, "as seen by "+leaderID) {
		t.Errorf("status with CHRONICLE_URL: exit %d, want 0 and the leader's view:\n%s%s", code, out, errOut)
	}
	t.Setenv("CHRONICLE_URL", "http://127.0.0.1:1")

	// A fourth node that waits to be admitted: with a Join list (an unreachable dummy)
	// it neither founds a cluster of its own nor gets in by itself.
	n4 := nodetest.Launch(t, node.Config{NodeID: "n4", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t),
		RaftAddr: nodetest.FreeAddr(t), Join: []string{"http://127.0.0.1:1"}, Logger: nodetest.Logger()})
	code, out, errOut = runCluster(ctx, "join", "--url", follower, "--node-id", "n4", "--raft-addr", n4.Config.RaftAddr, "--api-url", n4.URL())
	if code != 0 {
		t.Fatalf("cluster join exited %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "node n4 joined the cluster as a voter") || !strings.Contains(out, "leader "+leaderID) {
		t.Errorf("cluster join printed %q", out)
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 30*time.Second)
	if err := n4.WaitReady(readyCtx); err != nil {
		t.Fatalf("n4 not ready after joining: %v", err)
	}
	readyCancel()
	out = waitClusterStatus(t, ctx, follower, "n4 a reachable follower", func(rows []clusterRow) bool {
		r, ok := findRow(rows, "n4")
		return len(rows) == 4 && ok && r.role == "follower" && r.suffrage == "voter" && r.ready == "yes"
	})
	t.Logf("after join:\n%s", out)

	// n4 serves, from its own state, an account created after it joined.
	res, err := c.Nodes[li].Client.CreateAccount(ctx, client.CreateAccount{AccountID: "joined-1", OwnerName: "Ada", Currency: "USD", InitialBalance: "12.50"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var acct client.Account
	if _, err := client.New(n4.URL(), nil).Do(ctx, http.MethodGet, "/accounts/joined-1?consistency=local&min_position="+u64(res.Position), nil, nil, &acct); err != nil {
		t.Fatalf("n4 local read at position %d: %v", res.Position, err)
	}
	if acct.AccountID != "joined-1" || acct.OwnerName != "Ada" || acct.Balance != "12.50" {
		t.Errorf("n4 serves %+v", acct)
	}

	// Remove it again, id before the flags, through the follower.
	code, out, errOut = runCluster(ctx, "remove", "n4", "--url", follower)
	if code != 0 || !strings.Contains(out, "node n4 removed") {
		t.Fatalf("cluster remove n4: exit %d:\n%s%s", code, out, errOut)
	}
	out = waitClusterStatus(t, ctx, c.Nodes[li].URL(), "three members again", func(rows []clusterRow) bool {
		_, ok := findRow(rows, "n4")
		return len(rows) == 3 && !ok
	})
	t.Logf("after remove:\n%s", out)
	n4.Stop(t)

	// Failures: the API's message and exit 1; bad usage exits 2.
	code, out, errOut = runCluster(ctx, "remove", "--url", follower, "nosuch")
	if code != 1 || !strings.Contains(errOut, `node "nosuch" is not a member`) || !strings.Contains(errOut, "not_found") {
		t.Errorf("remove of an unknown node: exit %d, want 1 with the API's message:\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCluster(ctx, "join", "--url", follower, "--node-id", "bad id!", "--raft-addr", "127.0.0.1:1", "--api-url", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "invalid_account_id") && !strings.Contains(errOut, "node_id") {
		t.Errorf("join with an invalid id: exit %d, want 1 with the API's message: %s", code, errOut)
	}
	dead := nodetest.FreeAddr(t) // nothing listens there
	code, _, errOut = runCluster(ctx, "join", "--url", follower, "--node-id", "ghost", "--raft-addr", dead, "--api-url", "http://"+nodetest.FreeAddr(t))
	if code != 1 || !strings.Contains(errOut, "join_unreachable") || !strings.Contains(errOut, dead) {
		t.Errorf("join of an unreachable node: exit %d, want 1 naming join_unreachable and %s: %s", code, dead, errOut)
	}
	if rows := parseClusterRows(t, waitClusterStatus(t, ctx, follower, "three members", func(r []clusterRow) bool { return len(r) == 3 })); len(rows) != 3 {
		t.Errorf("after a refused join: %d members, want 3", len(rows))
	}
	code, _, errOut = runCluster(ctx, "status") // CHRONICLE_URL points nowhere
	if code != 1 || !strings.Contains(errOut, "cannot reach http://127.0.0.1:1") {
		t.Errorf("status of an unreachable node: exit %d, want 1: %s", code, errOut)
	}
	for _, args := range [][]string{
		{"remove", "--url", follower},
		{"remove", "--url", follower, "a", "b"},
		{"join", "--url", follower, "--node-id", "n5"},
		{"join", "--url", follower, "--node-id", "n5", "--raft-addr", "127.0.0.1:1"},
		{"status", "--nope"},
		{"frobnicate"},
		{},
	} {
		if code, _, errOut := runCluster(ctx, args...); code != 2 {
			t.Errorf("cluster %v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
}

// TestClusterStatusUnreachableMember renders a member that did not answer, and a
// non-voter (a node still catching up after its join) with its suffrage.
func TestClusterStatusUnreachableMember(t *testing.T) {
	ov := clusterOverview{NodeID: "n1", Leader: "n1", Term: 4, Nodes: []node.MemberView{
		{Server: raftstore.Server{ID: "n1", RaftAddr: "h:1", APIURL: "http://h:2", Suffrage: "Voter", Leader: true}, Reachable: true,
			Info: &node.NodeInfo{Status: raftstore.Status{State: "Leader", Term: 4, CommitIndex: 10, AppliedIndex: 10, Position: 7, LastContact: "0"}, Ready: true}},
		{Server: raftstore.Server{ID: "n2", RaftAddr: "h:3", APIURL: "http://h:4", Suffrage: "Voter"}, Error: "connection refused"},
		{Server: raftstore.Server{ID: "n3", RaftAddr: "h:5", APIURL: "http://h:6", Suffrage: "Nonvoter"}, Reachable: true,
			Info: &node.NodeInfo{Status: raftstore.Status{State: "Follower", Term: 4, CommitIndex: 10, AppliedIndex: 3, Position: 2, LastContact: "1ms"}}},
	}}
	var buf bytes.Buffer
	if err := printClusterStatus(&buf, "http://h:2/", ov); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	rows := parseClusterRows(t, out)
	if len(rows) != 3 || !rows[0].leader || rows[0].role != "leader" || rows[1].role != "unreachable" || rows[1].leader ||
		rows[0].suffrage != "voter" || rows[2].role != "follower" || rows[2].suffrage != "nonvoter" {
		t.Errorf("rows %+v:\n%s", rows, out)
	}
	if !strings.Contains(out, "n2: unreachable: connection refused") {
		t.Errorf("no note on n2:\n%s", out)
	}
}

func TestClusterSplitPositional(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("url", "", "")
	fs.Bool("json", false, "")
	for _, tc := range []struct {
		args, flags, pos []string
	}{
		{[]string{"n4"}, nil, []string{"n4"}},
		{[]string{"n4", "--url", "U"}, []string{"--url", "U"}, []string{"n4"}},
		{[]string{"--url", "U", "n4"}, []string{"--url", "U"}, []string{"n4"}},
		{[]string{"--url=U", "--json", "n4"}, []string{"--url=U", "--json"}, []string{"n4"}},
		{[]string{"-json", "--", "-x"}, []string{"-json"}, []string{"-x"}},
	} {
		flags, pos := splitPositional(fs, tc.args)
		if !reflect.DeepEqual(flags, tc.flags) || !reflect.DeepEqual(pos, tc.pos) {
			t.Errorf("splitPositional(%q) = %q, %q; want %q, %q", tc.args, flags, pos, tc.flags, tc.pos)
		}
	}
}

// TestClusterScript checks scripts/cluster.sh (make cluster) parses, and is
// shellcheck-clean when shellcheck is installed.
func TestClusterScript(t *testing.T) {
	const script = "../../scripts/cluster.sh"
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed; bash -n passed")
	}
	if out, err := exec.Command(sc, script).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck %s: %v\n%s", script, err, out)
	}
}

func runCluster(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(ctx, append([]string{"cluster"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// clusterRow is one line of the status table.
type clusterRow struct {
	leader                          bool
	id, role, suffrage, ready, rest string
}

// parseClusterRows reads the rows of `cluster status`'s table.
func parseClusterRows(t *testing.T, out string) []clusterRow {
	t.Helper()
	var rows []clusterRow
	inTable := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "NODE":
			inTable = true
			continue
		case !inTable:
			continue
		case len(f) == 0:
			return rows
		}
		var r clusterRow
		if f[0] == "*" {
			r.leader, f = true, f[1:]
		}
		if len(f) != 11 {
			t.Fatalf("status row %q has %d columns, want 11:\n%s", line, len(f), out)
		}
		r.id, r.role, r.suffrage, r.ready, r.rest = f[0], f[1], f[2], f[10], strings.Join(f[3:10], " ")
		rows = append(rows, r)
	}
	return rows
}

func findRow(rows []clusterRow, id string) (clusterRow, bool) {
	for _, r := range rows {
		if r.id == id {
			return r, true
		}
	}
	return clusterRow{}, false
}

func countRole(rows []clusterRow, role string) int {
	n := 0
	for _, r := range rows {
		if r.role == role {
			n++
		}
	}
	return n
}

// waitClusterStatus runs `cluster status --url u` until its table satisfies ok (up to 20 s)
// and returns that output.
func waitClusterStatus(t *testing.T, ctx context.Context, u, what string, ok func([]clusterRow) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut := runCluster(ctx, "status", "--url", u)
		if code != 0 {
			t.Fatalf("cluster status --url %s exited %d:\n%s%s", u, code, out, errOut)
		}
		if ok(parseClusterRows(t, out)) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status never showed %s:\n%s", what, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
