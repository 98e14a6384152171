package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/dirlock"
	"github.com/chronicle-ledger/chronicle/internal/freeport"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestRepairDamagedFollower damages one follower of a three-node cluster under write
// load (bytes flipped in the middle of its Raft log segment), checks that it refuses to
// start, repairs it with `chronicle repair`, starts it again with its usual
// configuration, keeps writing, and ends with all three nodes agreeing on every
// position, hash and balance: checked by `chronicle verify --cluster` and by reading
// each node's own state here.
func TestRepairDamagedFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster under load; skipped in -short mode")
	}
	repairUnderLoad(t, false)
}

// TestRepairDamagedFollowerBySnapshot is the same with the leader's log compacted while
// the node is away, so that it can only catch up by snapshot. It caught a design that
// streamed a follower the leader's current state under an older snapshot's index: the
// rejoined node crashed in hashicorp/raft ("log not found" in processLogs).
func TestRepairDamagedFollowerBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster under load; skipped in -short mode")
	}
	repairUnderLoad(t, true)
}

func repairUnderLoad(t *testing.T, bySnapshot bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var opts []nodetest.Option
	if bySnapshot {
		// Few trailing logs, so that the leader's log is compacted by the snapshot
		// below and the repaired node can only catch up by snapshot.
		opts = append(opts, func(cfg *node.Config) { cfg.TrailingLogs = 32; cfg.SnapshotThreshold = 64 })
	}
	c := nodetest.StartCluster(t, 3, opts...)
	L := c.Leader(t)
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = fmt.Sprintf("rp-%02d", i)
		if _, err := c.Nodes[L].Client.CreateAccount(ctx, client.CreateAccount{AccountID: ids[i], OwnerName: "Repair " + ids[i],
			Currency: "USD", InitialBalance: "1000.00"}, "create-"+ids[i]); err != nil {
			t.Fatalf("create %s: %v", ids[i], err)
		}
	}
	load := newRepairLoad(c, ids)
	for w := range 4 {
		load.wg.Add(1)
		go load.worker(ctx, w)
	}
	defer load.stopAll()

	load.waitAcks(t, 150)
	f := (L + 1) % 3
	fcfg := c.Config(f)
	load.down(f)
	c.Stop(t, f)

	// Damage: flip bytes in the middle of the records of its largest Raft log segment.
	segs, err := filepath.Glob(filepath.Join(fcfg.DataDir, "raft", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no Raft log segments in %s (%v)", fcfg.DataDir, err)
	}
	var seg string
	var size int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil && fi.Size() > size {
			seg, size = s, fi.Size()
		}
	}
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// The segment ends in zeros written ahead of appends: damage the records.
	used := len(bytes.TrimRight(b, "\x00"))
	for i := used / 2; i < used/2+8; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// It must refuse to start on that data.
	if n, err := node.New(ctx, fcfg); err == nil {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		_ = n.Run(cctx)
		t.Fatalf("%s started on a Raft log with bytes flipped in the middle of %s", fcfg.NodeID, seg)
	} else {
		t.Logf("%s refuses to start, as it must: %v", fcfg.NodeID, err)
	}

	// The cluster goes on without it; then its leader compacts its log.
	load.waitAcks(t, load.acks.Load()+100)
	if bySnapshot {
		L = c.Leader(t)
		if err := c.Nodes[L].Store().Snapshot(); err != nil {
			t.Fatalf("snapshot on the leader: %v", err)
		}
	}

	// Repair through the other members.
	var join []string
	for i := range c.Nodes {
		if i != f {
			join = append(join, c.Nodes[i].URL())
		}
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"repair", "--data-dir", fcfg.DataDir, "--node-id", fcfg.NodeID, "--join", strings.Join(join, ",")}, &out, &errOut); code != 0 {
		t.Fatalf("repair exited %d:\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("repair:\n%s", out.String())
	if !strings.Contains(out.String(), "removed node "+fcfg.NodeID) {
		t.Errorf("repair did not remove %s from the configuration:\n%s", fcfg.NodeID, out.String())
	}
	if s := c.Nodes[c.Leader(t)].Store().Suffrage(fcfg.NodeID); s != "" {
		t.Errorf("after the repair %s is still a member (%s)", fcfg.NodeID, s)
	}
	aside, _ := filepath.Glob(fcfg.DataDir + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("want one aside folder next to %s, got %v", fcfg.DataDir, aside)
	}
	if moved, _ := os.ReadFile(filepath.Join(aside[0], "raft", filepath.Base(seg))); !bytes.Equal(moved, b) {
		t.Errorf("the damaged segment was not kept in %s", aside[0])
	}
	entries, _ := os.ReadDir(fcfg.DataDir)
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return e.Name() == dirlock.FileName }) // the lock, not data
	if len(entries) != 1 || entries[0].Name() != node.RepairFile {
		t.Errorf("after the repair %s should hold only %s (and %s), holds %v", fcfg.DataDir, node.RepairFile, dirlock.FileName, entries)
	}
	// Without --join the repaired node would found a cluster of its own: refused.
	alone := fcfg
	alone.Join, alone.BootstrapExpect = nil, 0
	if n, err := node.New(ctx, alone); err == nil {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		_ = n.Run(cctx)
		t.Fatal("a repaired node started without --join")
	} else if !strings.Contains(err.Error(), "--join") {
		t.Errorf("refusal of a repaired node without --join does not say what to do: %v", err)
	}

	// Start it again with its usual configuration: it rejoins as a new member.
	nf := c.Restart(t, f)
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	if err := nf.WaitReady(rctx); err != nil {
		t.Fatalf("repaired %s not ready: %v", fcfg.NodeID, err)
	}
	rcancel()
	waitUntil(t, 60*time.Second, fcfg.NodeID+" promoted to voter", func() error {
		if s := c.Nodes[c.Leader(t)].Store().Suffrage(fcfg.NodeID); s != "Voter" {
			return fmt.Errorf("suffrage %q", s)
		}
		return nil
	})
	waitUntil(t, 30*time.Second, "the repair marker removed once the node rejoined", func() error {
		if _, err := os.Stat(filepath.Join(fcfg.DataDir, node.RepairFile)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	load.up(f, nf.Client)
	load.waitAcks(t, load.acks.Load()+100)
	load.stopAll()
	load.report(t)

	// Every node agrees: verify --cluster, then each node's own state read here.
	L = c.Leader(t)
	// A member registers its API URL through Raft after it starts; verify rightly fails
	// on one it cannot reach, so wait until every member has registered.
	waitUntil(t, 30*time.Second, "every member's API URL registered", func() error {
		members, err := readMembers(ctx, c.Nodes[L].Client)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.apiURL == "" {
				return fmt.Errorf("%s has no API URL yet", m.id)
			}
		}
		return nil
	})
	head := localHeadOf(t, ctx, c.Nodes[L].Client)
	out.Reset()
	errOut.Reset()
	if code := run(ctx, []string{"verify", "--cluster", "--url", c.Nodes[L].URL()}, &out, &errOut); code != 0 {
		t.Fatalf("verify --cluster exited %d:\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("verify --cluster:\n%s", out.String())
	if !strings.Contains(out.String(), "3 members agree") {
		t.Errorf("verify --cluster does not say that the three members agree:\n%s", out.String())
	}
	var refEvents []chronicle.Event
	var refAccounts []api.Account
	for i, n := range c.Nodes {
		lc := client.New(n.URL(), &http.Client{Timeout: 30 * time.Second, Transport: localReads{base: http.DefaultTransport, minPosition: head}})
		events, err := lc.AllEvents(ctx)
		if err != nil {
			t.Fatalf("node %d: read its log: %v", i, err)
		}
		accts, err := lc.Accounts(ctx, "", chronicle.MaxPageSize)
		if err != nil {
			t.Fatalf("node %d: read its accounts: %v", i, err)
		}
		if uint64(len(events)) != head {
			t.Errorf("node %s holds %d events, the leader's head is %d", n.Config.NodeID, len(events), head)
		}
		if refEvents == nil {
			refEvents, refAccounts = events, accts
			continue
		}
		for j := range min(len(events), len(refEvents)) {
			a, b := refEvents[j], events[j]
			if a.Position != b.Position || a.Hash != b.Hash || a.EventID != b.EventID {
				t.Fatalf("node %s differs at position %d: hash %s, the first node's %s", n.Config.NodeID, b.Position, b.Hash, a.Hash)
			}
		}
		if fmt.Sprint(accts) != fmt.Sprint(refAccounts) {
			t.Errorf("node %s balances differ:\n%v\nfirst node:\n%v", n.Config.NodeID, accts, refAccounts)
		}
	}
	// Nothing acknowledged was lost.
	load.mu.Lock()
	defer load.mu.Unlock()
	for key, res := range load.acked {
		for _, ref := range res.Events {
			if ref.Position == 0 || ref.Position > uint64(len(refEvents)) || refEvents[ref.Position-1].EventID != ref.EventID {
				t.Errorf("acknowledged transfer %s: event %s at position %d is not in the log", key, ref.EventID, ref.Position)
			}
		}
	}
	t.Logf("%d transfers acknowledged; every node holds the same %d events", len(load.acked), head)
}

// repairLoad sends transfers to the running nodes in turn.
type repairLoad struct {
	ids     []string
	clients []atomic.Pointer[client.Client] // nil while the node is down
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	rr      atomic.Uint64
	acks    atomic.Int64

	mu       sync.Mutex
	acked    map[string]client.CommandResult
	problems []string
}

func newRepairLoad(c *nodetest.Cluster, ids []string) *repairLoad {
	l := &repairLoad{ids: ids, clients: make([]atomic.Pointer[client.Client], len(c.Nodes)), stop: make(chan struct{}), acked: map[string]client.CommandResult{}}
	for i, n := range c.Nodes {
		l.clients[i].Store(n.Client)
	}
	return l
}

func (l *repairLoad) down(i int)                 { l.clients[i].Store(nil) }
func (l *repairLoad) up(i int, c *client.Client) { l.clients[i].Store(c) }
func (l *repairLoad) stopAll()                   { l.once.Do(func() { close(l.stop) }); l.wg.Wait() }
func (l *repairLoad) problem(format string, a ...any) {
	l.mu.Lock()
	l.problems = append(l.problems, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *repairLoad) worker(ctx context.Context, w int) {
	defer l.wg.Done()
	for seq := 0; ; seq++ {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		var c *client.Client
		for range len(l.clients) {
			if c = l.clients[l.rr.Add(1)%uint64(len(l.clients))].Load(); c != nil {
				break
			}
		}
		from := (w + seq) % len(l.ids)
		to := (from + 1 + seq%(len(l.ids)-1)) % len(l.ids)
		key := fmt.Sprintf("repair-w%d-%d", w, seq)
		res, err := c.Transfer(ctx, client.Transfer{FromAccountID: l.ids[from], ToAccountID: l.ids[to], Amount: "0.01"}, key)
		var apiErr *client.APIError
		switch {
		case err == nil:
			l.mu.Lock()
			l.acked[key] = res
			l.mu.Unlock()
			l.acks.Add(1)
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusInternalServerError:
			l.problem("transfer %s: 500 is always a bug: %v", key, err)
		default:
			// A node stopping or an election: back off a little (bounded client backoff).
			select {
			case <-time.After(10 * time.Millisecond):
			case <-l.stop:
			}
		}
	}
}

// waitAcks polls until target transfers have been acknowledged in all.
func (l *repairLoad) waitAcks(t *testing.T, target int64) {
	t.Helper()
	waitUntil(t, 90*time.Second, fmt.Sprintf("%d transfers acknowledged", target), func() error {
		if n := l.acks.Load(); n < target {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
}

func (l *repairLoad) report(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Error(p)
	}
}

// waitUntil polls f until it returns nil, failing the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		<-tick.C
	}
}

// localHeadOf is the position of the node's newest event in its own log.
func localHeadOf(t *testing.T, ctx context.Context, c *client.Client) uint64 {
	t.Helper()
	h, err := localHead(ctx, c, 0)
	if err != nil {
		t.Fatalf("read the head of %s: %v", c.BaseURL(), err)
	}
	return h
}

// TestVerifyClusterNamesDisagreeingNode checks that verify --cluster names the member
// whose log and balances differ, reports an unreachable one, and passes agreeing ones.
// Two real single-node ledgers with different histories play two members; the only
// impersonation is the entry point's GET /cluster (an httptest server that proxies every
// other request to the first node), because a real cluster cannot be made to hold two
// different valid logs without the damage paths this test is not about.
func TestVerifyClusterNamesDisagreeingNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := nodetest.Start(t)
	b := nodetest.Start(t, func(c *node.Config) { c.NodeID = "n2" })
	for i, n := range []*nodetest.Node{a, b} {
		if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "acct-1", OwnerName: "One", Currency: "USD", InitialBalance: "10.00"}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "acct-1", Amount: strconv.Itoa(i+1) + ".00"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	dead := "http://" + freeport.Addr(t) // nothing listens there
	type member struct{ id, url string }
	entry := func(members ...member) string {
		target, _ := url.Parse(a.URL())
		proxy := httputil.NewSingleHostReverseProxy(target)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/cluster" {
				proxy.ServeHTTP(w, r)
				return
			}
			var nodes []map[string]any
			for i, m := range members {
				nodes = append(nodes, map[string]any{"id": m.id, "api_url": m.url, "suffrage": "Voter", "leader": i == 0, "raft_addr": "127.0.0.1:1"})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"node_id": "n1", "leader": "n1", "term": 1, "nodes": nodes})
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	verifyOut := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"verify"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	line := func(out, prefix string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}

	// Agreeing members (the same node twice): OK, by default once two members are named.
	code, out := verifyOut("--url", entry(member{"n1", a.URL()}, member{"n1b", a.URL()}))
	if code != 0 || !strings.Contains(out, "2 members agree") {
		t.Fatalf("agreeing members: exit %d:\n%s", code, out)
	}

	// A member with another history is named, with the position and the balance.
	code, out = verifyOut("--cluster", "--url", entry(member{"n1", a.URL()}, member{"n2", b.URL()}))
	t.Logf("verify --cluster with a disagreeing member:\n%s", out)
	if code != 1 {
		t.Fatalf("disagreeing member: exit %d, want 1:\n%s", code, out)
	}
	if l := line(out, "member n2:"); !strings.Contains(l, "FAIL") || !strings.Contains(out, "position 1: hash") ||
		!strings.Contains(out, "account acct-1 at position 2: 12.00 USD (version 2) here, 11.00 USD (version 2) on n1") {
		t.Errorf("n2 is not named with what differs:\n%s", out)
	}
	if l := line(out, "member n1:"); !strings.Contains(l, " ok ") {
		t.Errorf("n1 should be ok:\n%s", out)
	}
	if !strings.Contains(out, "RESULT: FAIL") {
		t.Errorf("no RESULT: FAIL:\n%s", out)
	}

	// An unreachable member fails the result, unless --allow-unreachable.
	u := entry(member{"n1", a.URL()}, member{"n3", dead})
	code, out = verifyOut("--url", u)
	if l := line(out, "member n3:"); code != 1 || !strings.Contains(l, "FAIL") || !strings.Contains(l, "unreachable") {
		t.Errorf("unreachable member: exit %d:\n%s", code, out)
	}
	code, out = verifyOut("--url", u, "--allow-unreachable")
	if l := line(out, "member n3:"); code != 0 || !strings.Contains(l, "skipped") {
		t.Errorf("unreachable member with --allow-unreachable: exit %d:\n%s", code, out)
	}
}
