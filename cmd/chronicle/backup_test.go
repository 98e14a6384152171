package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// transferLoad runs writers goroutines doing transfers among accounts until stop is
// called; stop returns how many were acknowledged.
func transferLoad(t *testing.T, c *client.Client, accounts []string, writers int) (stop func() int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				from, to := accounts[(w+i)%len(accounts)], accounts[(w+i+1+i%3)%len(accounts)]
				_, err := c.Transfer(ctx, client.Transfer{FromAccountID: from, ToAccountID: to, Amount: "1.25"}, fmt.Sprintf("load-%d-%d", w, i))
				if err == nil {
					acked.Add(1)
				} else if ctx.Err() == nil && client.CodeOf(err) != chronicle.CodeInsufficientFunds {
					t.Errorf("transfer under load: %v", err)
					return
				}
			}
		}()
	}
	return func() int64 {
		cancel()
		wg.Wait()
		return acked.Load()
	}
}

// TestBackupUnderLoadRestoresExactly: a backup taken while four writers keep going holds
// exactly the log up to the position its header names; restored and started as a new
// node, it serves those events byte for byte (hashes equal), nothing after, balances equal
// to the original's at that position, passes verify, and takes new writes that continue
// the chain from the backup's head.
func TestBackupUnderLoadRestoresExactly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := nodetest.Start(t)
	accounts := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	for _, id := range accounts {
		if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: "Owner " + id, Currency: "EUR", InitialBalance: "500"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := transferLoad(t, n.Client, accounts, 4)
	waitHead(t, ctx, n.Client, 300, time.Minute)

	file := filepath.Join(t.TempDir(), "ledger.backup")
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"backup", "--url", n.URL(), "--out", file}, &out, &errOut); code != 0 {
		stop()
		t.Fatalf("backup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	f, closer, err := raftstore.OpenBackupFile(file)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	closer.Close()
	p := f.Header.Position
	// Writes went on during the backup and go on after it.
	waitHead(t, ctx, n.Client, p+200, time.Minute)
	if acked := stop(); acked == 0 {
		t.Fatal("no transfer was acknowledged")
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("the backup's temporary file is left: %v", err)
	}
	for _, want := range []string{fmt.Sprintf("position   %d", p), f.Header.HeadHash, "size", "took"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("backup output lacks %q:\n%s", want, out.String())
		}
	}
	orig, err := n.Client.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(orig)) < p+200 || orig[p-1].Hash != f.Header.HeadHash {
		t.Fatalf("original log: %d events, event %d hash %s; the backup names hash %s", len(orig), p, orig[p-1].Hash, f.Header.HeadHash)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	out.Reset()
	errOut.Reset()
	if code := run(ctx, []string{"restore", file, "--data-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	r := nodetest.Start(t, nodetest.WithDataDir(dir), func(c *node.Config) { c.NodeID = "restored" })
	got, err := r.Client.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != p {
		t.Fatalf("the restored node holds %d events; the backup's header names position %d", len(got), p)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], orig[i]) {
			t.Fatalf("event %d differs:\nrestored %+v\noriginal %+v", i+1, got[i], orig[i])
		}
	}
	// Balances: each account's last posting at or before p, and the original's
	// balance-at the backup's commit time.
	last := map[string]chronicle.Event{}
	for _, e := range orig[:p] {
		last[e.AggregateID] = e
	}
	for _, id := range accounts {
		a, err := r.Client.Account(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := last[id]
		cur, err := chronicle.LookupCurrency(a.Currency)
		if err != nil {
			t.Fatal(err)
		}
		if bal, err := chronicle.ParseMoney(a.Balance, cur); err != nil || bal != want.Data.BalanceAfter {
			t.Fatalf("account %s restored with balance %s (%v); its last posting at or before %d left %d", id, a.Balance, err, p, want.Data.BalanceAfter)
		}
		at, err := n.Client.BalanceAt(ctx, id, f.Header.CommitTime)
		if err != nil {
			t.Fatal(err)
		}
		if at.Position <= p && at.Balance != a.Balance {
			t.Fatalf("account %s: restored balance %s, the original's balance-at %s is %s", id, a.Balance, f.Header.CommitTime, at.Balance)
		}
	}
	out.Reset()
	errOut.Reset()
	if code := run(ctx, []string{"verify", "--url", r.URL()}, &out, &errOut); code != 0 {
		t.Fatalf("verify of the restored node: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	res, err := r.Client.Transfer(ctx, client.Transfer{FromAccountID: "a0", ToAccountID: "a1", Amount: "0.01"}, "after-restore")
	if err != nil || res.Position != p+2 {
		t.Fatalf("transfer on the restored node: %+v, %v; want position %d", res, err, p+2)
	}
	after, err := r.Client.Events(ctx, client.EventsQuery{After: p, Order: "asc"})
	if err != nil || len(after) != 2 || after[0].PrevHash != f.Header.HeadHash {
		t.Fatalf("events after the restore: %+v, %v; want two, the first after hash %s", after, err, f.Header.HeadHash)
	}
}

// TestRestoreRefusesDamagedFiles: a flipped byte in the body, a truncated file and a file
// that is no backup are refused with a message saying so, and the target directory is
// not created; a non-empty target is refused and left as it was.
func TestRestoreRefusesDamagedFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := nodetest.Start(t)
	for _, id := range []string{"x", "y"} {
		if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: id, Currency: "USD", InitialBalance: "10"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	file := filepath.Join(tmp, "good.backup")
	if code, out, errOut := runCmd(t, "backup", "--url", n.URL(), "--out", file); code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, "backup", "--url", n.URL(), "--out", file); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("backup over an existing file: exit %d, %s", code, errOut)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// A node (or a proxy) that ends the response early, cleanly: the CLI keeps nothing.
	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(good[:len(good)/2])
	}))
	defer short.Close()
	cut := filepath.Join(tmp, "cut.backup")
	if code, _, errOut := runCmd(t, "backup", "--url", short.URL, "--out", cut); code != 1 || !strings.Contains(errOut, "no complete backup") {
		t.Fatalf("backup of a response cut short: exit %d, %q", code, errOut)
	}
	for _, p := range []string{cut, cut + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("a backup cut short left %s (%v)", p, err)
		}
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"flipped", flipped, "checksum does not match"},
		{"truncated", good[:len(good)-10], "truncated"},
		{"cut-in-half", good[:len(good)/2], "truncated"},
		{"not-a-backup", []byte("hello, this is a text file and nothing more than that, really, nothing at all\n"), "not a chronicle backup"},
	}
	for _, c := range cases {
		path := filepath.Join(tmp, c.name+".backup")
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, "dir-"+c.name)
		code, _, errOut := runCmd(t, "restore", path, "--data-dir", dir)
		if code != 1 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "nothing was written") {
			t.Fatalf("restore of a %s file: exit %d, %q; want 1 and %q", c.name, code, errOut, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("restore of a %s file created %s (%v)", c.name, dir, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, ".*")); len(left) != 0 {
		t.Fatalf("refused restores left %v", left)
	}
	full := filepath.Join(tmp, "full")
	if err := os.MkdirAll(filepath.Join(full, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, "restore", "--data-dir", full, file)
	if code != 1 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore into a non-empty directory: exit %d, %q", code, errOut)
	}
	if entries, _ := os.ReadDir(full); len(entries) != 1 || entries[0].Name() != "state" {
		t.Fatalf("a refused restore changed %s: %v", full, entries)
	}
	// An empty directory is fine; the flags may come first.
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, "restore", "--data-dir", empty, file); code != 0 || !strings.Contains(out, "position   2") {
		t.Fatalf("restore into an empty directory: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := runCmd(t, "restore", file); code != 2 {
		t.Fatalf("restore without --data-dir: exit %d, want 2", code)
	}
}

// TestBackupNeedsAnAdmin: with authentication on, a backup without a token is 401, with
// a writer's token 403, from a page of another site 403; an admin's token gets it.
func TestBackupNeedsAnAdmin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, func(c *node.Config) { c.BootstrapTokenFile = tokenFile })
	secret, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := n.Client.WithToken(strings.TrimSpace(string(secret)))
	deadline := time.Now().Add(20 * time.Second)
	for _, err := admin.Tokens(ctx); err != nil; _, err = admin.Tokens(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("the bootstrap token never became usable: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	writer, err := admin.CreateToken(ctx, "teller", "writer")
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string, hdr map[string]string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/admin/backup", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("", nil); code != http.StatusUnauthorized {
		t.Fatalf("backup without a token: %d, want 401", code)
	}
	if code := get(writer.Secret, nil); code != http.StatusForbidden {
		t.Fatalf("backup with a writer's token: %d, want 403", code)
	}
	adminSecret := strings.TrimSpace(string(secret))
	if code := get(adminSecret, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); code != http.StatusForbidden {
		t.Fatalf("backup from another site's page: %d, want 403", code)
	}
	if code := get(adminSecret, nil); code != http.StatusOK {
		t.Fatalf("backup with the admin token: %d, want 200", code)
	}
	file := filepath.Join(t.TempDir(), "b")
	if code, _, errOut := runCmd(t, "backup", "--url", n.URL(), "--out", file); code != 1 || !strings.Contains(errOut, "401 unauthorized") {
		t.Fatalf("chronicle backup without a token: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused backup left %s (%v)", file, err)
	}
	if code, out, errOut := runCmd(t, "backup", "--url", n.URL(), "--out", file, "--token-file", tokenFile); code != 0 {
		t.Fatalf("chronicle backup with the admin token: exit %d\n%s%s", code, out, errOut)
	}
}

// TestRestoreKilledMidwayLeavesNoDataDir: `chronicle restore` killed (SIGKILL) while it
// writes leaves the target directory absent (never a half-written data directory a node
// would start from); the same restore run again succeeds, and the node started on it
// holds the backup's head.
func TestRestoreKilledMidwayLeavesNoDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildChronicle(t, ctx)
	n := nodetest.Start(t)
	var items []api.BatchItem
	for i := range 50 {
		items = append(items, api.BatchItem{Type: "create-account", AccountID: fmt.Sprintf("k%d", i), OwnerName: "K", Currency: "USD", InitialBalance: "1000"})
	}
	post := func(items []api.BatchItem) {
		body, _ := json.Marshal(api.Batch{Commands: items})
		if _, err := n.Client.Do(ctx, http.MethodPost, "/commands/batch", body, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	post(items)
	for range 15 {
		items = items[:0]
		for i := range 1000 {
			items = append(items, api.BatchItem{Type: "transfer", FromAccountID: fmt.Sprintf("k%d", i%50), ToAccountID: fmt.Sprintf("k%d", (i+7)%50), Amount: "0.01"})
		}
		post(items)
	}
	tmp := t.TempDir()
	file := filepath.Join(tmp, "b.backup")
	if code, out, errOut := runCmd(t, "backup", "--url", n.URL(), "--out", file); code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	f, closer, err := raftstore.OpenBackupFile(file)
	if err != nil {
		t.Fatal(err)
	}
	closer.Close()

	dir := filepath.Join(tmp, "restored")
	p, _ := launchChronicle(t, bin, filepath.Join(tmp, "restore.stderr"), "restore", file, "--data-dir", dir)
	// Kill it as soon as its work directory appears.
	for {
		if m, _ := filepath.Glob(filepath.Join(tmp, ".restored.restore-*")); len(m) > 0 {
			break
		}
		if _, err := os.Stat(dir); err == nil || ctx.Err() != nil {
			t.Skip("the restore finished before it could be killed; nothing shown")
		}
		time.Sleep(time.Millisecond)
	}
	_ = p.cmd.Process.Kill()
	p.wait()
	if _, err := os.Stat(dir); err == nil {
		t.Skip("the restore renamed its directory before the kill; nothing shown")
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, "restore", file, "--data-dir", dir); code != 0 {
		t.Fatalf("restore after a killed one: exit %d\n%s%s", code, out, errOut)
	}
	r := nodetest.Start(t, nodetest.WithDataDir(dir))
	if h := headOf(t, ctx, r.Client); h.Position != f.Header.Position || h.Hash != f.Header.HeadHash {
		t.Fatalf("restored head %d %s, want %d %s", h.Position, h.Hash, f.Header.Position, f.Header.HeadHash)
	}
}
