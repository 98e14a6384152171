package main

// End-to-end tests of the read side (DESIGN.md §4): the `chronicle projector` process
// keeping a PostgreSQL view of a node's log, through kills, a NATS outage and a rebuild,
// and `chronicle verify` catching a view or a log that was changed behind the system's
// back. Every projector, verify and rebuild is the real binary as a child process; the
// nodes run in-process (nodetest) unless the test needs to stop and restart the binary.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/jackc/pgx/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/eventbus"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
	"github.com/chronicle-ledger/chronicle/projector"
)

// TestViewsAgreeAfterWorkload drives a random concurrent workload at a node while a
// separate projector process, woken over NATS, maintains a PostgreSQL view; afterwards
// verify passes and the view agrees with the node, the log and the client's own books
// account by account.
func TestViewsAgreeAfterWorkload(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := pgtest.Schema(t) // first: skips before the build when PostgreSQL is absent
	bin := buildChronicle(t, ctx)
	n := rsStartNode(t, func(c *node.Config) { c.NATSListen = "127.0.0.1:0" })
	natsURL := n.Bus().ClientURL()
	if natsURL == "" {
		t.Fatal("node with --nats-listen has no NATS client URL")
	}
	c := client.New(n.URL(), nil)
	led := newRSLedger(t, ctx, c, "agree", 8, 5)

	proj := startProjector(t, bin, "--from", n.URL(), "--read-model", pgURL, "--nats-url", natsURL)
	conn := rsPG(t, ctx, pgURL)

	led.run(ctx, c, 12, 1, 1500, nil)
	led.check(t, true)
	head := headPosition(t, ctx, c)
	waitPGPosition(t, ctx, conn, head, proj, 30*time.Second)

	out, code := runVerify(t, ctx, bin, n.URL(), pgURL)
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify exited %d, want 0 with RESULT: OK:\n%s", code, out)
	}
	compareViewWithLog(t, ctx, conn, c, led)
	checkPGExactlyOnce(t, ctx, conn, head)
}

// TestProjectorKilledMidStream SIGKILLs the projector twice while events flow and
// restarts it with the load still running: it resumes from its checkpoint, and the
// view ends up equal to the log with every event applied exactly once.
func TestProjectorKilledMidStream(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := pgtest.Schema(t) // first: skips before the build when PostgreSQL is absent
	bin := buildChronicle(t, ctx)
	n := rsStartNode(t, func(c *node.Config) { c.NATSListen = "127.0.0.1:0" })
	natsURL := n.Bus().ClientURL()
	c := client.New(n.URL(), nil)
	led := newRSLedger(t, ctx, c, "kill", 8, 4)
	conn := rsPG(t, ctx, pgURL)
	// The projector's connections carry an application_name of their own, so the test
	// can tell when the server is done with them after a kill (see waitPGBackendsGone).
	appName := fmt.Sprintf("chronicle_test_projector_%016x", rand.Uint64())
	projArgs := []string{"--from", n.URL(), "--read-model", withApplicationName(t, pgURL, appName), "--nats-url", natsURL}
	proj := startProjector(t, bin, projArgs...)

	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		led.run(ctx, c, 8, 2, 1<<40, stop)
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); <-loadDone })
	defer stopLoad()

	var lastKill uint64
	for cycle := 1; cycle <= 2; cycle++ {
		// Kill once the projector has applied some events beyond the last kill, with
		// the load still running.
		target := lastKill + 150
		waitPGPosition(t, ctx, conn, target, proj, 30*time.Second)
		if pgBackends(t, ctx, conn, appName) == 0 {
			t.Fatalf("no backend with application_name %s: the projector's connections do not carry it", appName)
		}
		if err := proj.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill projector: %v", err)
		}
		proj.waitKilled(t)
		// A COMMIT the projector sent just before it died still completes on the
		// server: read the checkpoint only once its backends have gone.
		waitPGBackendsGone(t, ctx, conn, appName, 30*time.Second)
		atKill, err := pgPosition(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		headAtKill := headPosition(t, ctx, c)
		t.Logf("cycle %d: projector killed at view position %d, log head %d", cycle, atKill, headAtKill)
		if atKill < target {
			t.Fatalf("cycle %d: view position went back from %d to %d", cycle, target, atKill)
		}
		lastKill = atKill

		// Keep writing while no projector runs: the view must stand still.
		waitHead(t, ctx, c, atKill+300, 30*time.Second)
		if p, err := pgPosition(ctx, conn); err != nil || p != atKill {
			t.Fatalf("cycle %d: view moved from %d to %d (%v) with no projector running", cycle, atKill, p, err)
		}

		proj = startProjector(t, bin, projArgs...)
		// It resumes from the checkpoint, not from the start.
		started := waitLogMatch(t, proj, regexp.MustCompile(`msg="projector started".* position=(\d+)`), 15*time.Second)
		if got, _ := strconv.ParseUint(started[1], 10, 64); got != atKill {
			t.Errorf("cycle %d: restarted projector started at position %d, the view's checkpoint was %d", cycle, got, atKill)
		}
	}
	stopLoad()
	led.check(t, true)
	head := headPosition(t, ctx, c)
	if head <= lastKill {
		t.Fatalf("log head %d is not beyond the last kill at %d: the kill was not mid-stream", head, lastKill)
	}
	waitPGPosition(t, ctx, conn, head, proj, 30*time.Second)
	out, code := runVerify(t, ctx, bin, n.URL(), pgURL)
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify exited %d, want 0 with RESULT: OK:\n%s", code, out)
	}
	checkPGExactlyOnce(t, ctx, conn, head)
	compareViewWithLog(t, ctx, conn, c, led)
}

// TestProjectorSurvivesNATSOutage runs the node and the projector against a NATS server
// of the test's own, shuts it down under load and brings it back on the same port and
// store: writes never fail, the projector falls back to polling the log and catches up,
// and the JetStream stream ends up holding every position once, in order.
func TestProjectorSurvivesNATSOutage(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := pgtest.Schema(t) // first: skips before the build when PostgreSQL is absent
	bin := buildChronicle(t, ctx)
	storeDir := t.TempDir()
	ns := startNATSServer(t, storeDir, natsserver.RANDOM_PORT)
	port := ns.Addr().(*net.TCPAddr).Port
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)

	n := rsStartNode(t, func(c *node.Config) { c.NATSURL = natsURL })
	c := client.New(n.URL(), nil)
	led := newRSLedger(t, ctx, c, "outage", 6, 4)
	conn := rsPG(t, ctx, pgURL)
	proj := startProjector(t, bin, "--from", n.URL(), "--read-model", pgURL, "--nats-url", natsURL, "--poll", "2s")

	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		led.run(ctx, c, 8, 3, 1<<40, stop)
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); <-loadDone })
	defer stopLoad()

	// NATS works: events reach the stream and the view.
	waitStreamLastSeq(t, ctx, natsURL, 200, 30*time.Second)
	waitPGPosition(t, ctx, conn, 200, proj, 30*time.Second)

	ns.Shutdown()
	ns.WaitForShutdown()
	ackedAtDown := led.nAcked.Load()
	headAtDown := headPosition(t, ctx, c)
	t.Logf("NATS shut down at log head %d", headAtDown)

	// Writes go on: the log is the truth, NATS only a copy.
	deadline := time.Now().Add(30 * time.Second)
	for led.nAcked.Load() < ackedAtDown+300 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged in 30s with NATS down", led.nAcked.Load()-ackedAtDown)
		}
		if p := led.problemCount(); p > 0 {
			stopLoad()
			led.check(t, false)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, not waiting for a condition by time
	}
	// The projector polls the log while NATS is down: it passes the head it had then.
	waitPGPosition(t, ctx, conn, headAtDown+1, proj, 15*time.Second)
	stopLoad()
	led.check(t, true)
	head := headPosition(t, ctx, c)
	t.Logf("load stopped at log head %d (%d written with NATS down)", head, head-headAtDown)

	startNATSServer(t, storeDir, port)
	waitStreamLastSeq(t, ctx, natsURL, head, 30*time.Second)
	// The projector's NATS connection comes back too, so it is woken again.
	waitLogMatch(t, proj, regexp.MustCompile(`msg="nats reconnected"`), 30*time.Second)
	waitPGPosition(t, ctx, conn, head, proj, 30*time.Second)

	out, code := runVerify(t, ctx, bin, n.URL(), pgURL)
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify exited %d, want 0 with RESULT: OK:\n%s", code, out)
	}
	checkPGExactlyOnce(t, ctx, conn, head)
	events := compareViewWithLog(t, ctx, conn, c, led)
	checkStream(t, ctx, natsURL, events)

	// Stop the node before the NATS server goes away in the cleanups.
	n.Stop(t)
}

// TestRebuildEqualsIncremental compares the view the projector built incrementally under
// load with what `chronicle projector rebuild` makes of the same log: identical rows.
func TestRebuildEqualsIncremental(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := pgtest.Schema(t) // first: skips before the build when PostgreSQL is absent
	bin := buildChronicle(t, ctx)
	n := rsStartNode(t, func(c *node.Config) { c.NATSListen = "127.0.0.1:0" })
	c := client.New(n.URL(), nil)
	led := newRSLedger(t, ctx, c, "rebuild", 6, 4)
	conn := rsPG(t, ctx, pgURL)
	proj := startProjector(t, bin, "--from", n.URL(), "--read-model", pgURL, "--nats-url", n.Bus().ClientURL())

	led.run(ctx, c, 8, 4, 800, nil)
	led.check(t, true)
	head := headPosition(t, ctx, c)
	waitPGPosition(t, ctx, conn, head, proj, 30*time.Second)
	if err := proj.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(proj, 15*time.Second); err != nil {
		t.Fatalf("projector after SIGTERM: %v; output:\n%s", err, proj.stderrTail())
	}
	if want := fmt.Sprintf("projector stopped at position %d", head); !strings.Contains(proj.stderrTail(), want) {
		t.Errorf("projector output lacks %q:\n%s", want, proj.stderrTail())
	}

	incremental := dumpView(t, ctx, conn)
	if len(incremental["transactions"]) != int(head) {
		t.Fatalf("incremental view holds %d transactions, the log %d events", len(incremental["transactions"]), head)
	}
	stdout, stderr, code := runChronicle(t, ctx, bin, "projector", "rebuild", "--from", n.URL(), "--read-model", pgURL)
	if code != 0 {
		t.Fatalf("projector rebuild exited %d:\n%s\n%s", code, stdout, stderr)
	}
	if want := fmt.Sprintf("rebuilt postgres read model to position %d ", head); !strings.Contains(stdout, want) {
		t.Errorf("rebuild output lacks %q:\n%s", want, stdout)
	}
	rebuilt := dumpView(t, ctx, conn)
	for _, table := range rsDumpTables {
		a, b := incremental[table.name], rebuilt[table.name]
		if len(a) != len(b) {
			t.Errorf("%s: %d rows incrementally, %d after rebuild", table.name, len(a), len(b))
		}
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Errorf("%s row %d differs:\nincremental: %s\nrebuilt:     %s", table.name, i, a[i], b[i])
				break
			}
		}
	}
}

// TestVerifyDetectsTampering changes the PostgreSQL view, then one stored event, behind
// the system's back; verify must fail and say where.
func TestVerifyDetectsTampering(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildChronicle(t, ctx)
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startChronicle(t, ctx, bin, dataDir, 0)
	c := client.New(p.url, nil)
	led := newRSLedger(t, ctx, c, "tamper", 4, 3)
	led.run(ctx, c, 6, 5, 300, nil)
	led.check(t, true)
	head := headPosition(t, ctx, c)

	t.Run("view", func(t *testing.T) {
		pgURL := pgtest.Schema(t)
		stdout, stderr, code := runChronicle(t, ctx, bin, "projector", "rebuild", "--from", p.url, "--read-model", pgURL)
		if code != 0 {
			t.Fatalf("projector rebuild exited %d:\n%s\n%s", code, stdout, stderr)
		}
		conn := rsPG(t, ctx, pgURL)
		if pos, err := pgPosition(ctx, conn); err != nil || pos != head {
			t.Fatalf("rebuilt view at position %d (%v), want %d", pos, err, head)
		}
		out, code := runVerify(t, ctx, bin, p.url, pgURL)
		if code != 0 || !strings.Contains(out, "RESULT: OK") {
			t.Fatalf("verify of the untouched view exited %d:\n%s", code, out)
		}

		// One cent more on a USD account.
		id := led.accts[0].id
		var bal int64
		if err := conn.QueryRow(ctx, `SELECT balance_minor FROM account_balance WHERE account_id = $1`, id).Scan(&bal); err != nil {
			t.Fatal(err)
		}
		tag, err := conn.Exec(ctx, `UPDATE account_balance SET balance_minor = balance_minor + 1, balance = balance + 0.01 WHERE account_id = $1`, id)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("tamper with %s: %v (%v rows)", id, err, tag.RowsAffected())
		}
		out, code = runVerify(t, ctx, bin, p.url, pgURL)
		usd, _ := chronicle.LookupCurrency("USD")
		wantLine := regexp.MustCompile(`(?m)^.*account ` + regexp.QuoteMeta(id) + `\b.*` + regexp.QuoteMeta(chronicle.FormatMinor(bal+1, usd)) + `.*$`)
		if code != 1 || !strings.Contains(out, "RESULT: FAIL") || !wantLine.MatchString(out) || !rsFailLine(out, "postgres view") {
			t.Errorf("verify with %s's balance raised by 0.01 in the view: exit %d, want 1, RESULT: FAIL and a postgres view failure naming the account and %s:\n%s",
				id, code, chronicle.FormatMinor(bal+1, usd), out)
		}
		if _, err := conn.Exec(ctx, `UPDATE account_balance SET balance_minor = balance_minor - 1, balance = balance - 0.01 WHERE account_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if out, code := runVerify(t, ctx, bin, p.url, pgURL); code != 0 {
			t.Fatalf("verify after undoing the balance change exited %d:\n%s", code, out)
		}

		// One statement line fewer.
		id = led.accts[len(led.accts)-1].id
		var lines int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE account_id = $1`, id).Scan(&lines); err != nil {
			t.Fatal(err)
		}
		tag, err = conn.Exec(ctx, `DELETE FROM transactions WHERE transaction_id =
			(SELECT transaction_id FROM transactions WHERE account_id = $1 ORDER BY version DESC LIMIT 1)`, id)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("delete a transaction of %s: %v (%v rows)", id, err, tag.RowsAffected())
		}
		out, code = runVerify(t, ctx, bin, p.url, pgURL)
		wantLine = regexp.MustCompile(`(?m)^.*account ` + regexp.QuoteMeta(id) + `\b.*\b` + strconv.Itoa(lines-1) + ` transactions.*\b` + strconv.Itoa(lines) + `\b.*$`)
		if code != 1 || !strings.Contains(out, "RESULT: FAIL") || !wantLine.MatchString(out) || !rsFailLine(out, "postgres view") {
			t.Errorf("verify with one of %s's %d transactions deleted from the view: exit %d, want 1, RESULT: FAIL and a postgres view failure naming the account and the counts %d vs %d:\n%s",
				id, lines, code, lines-1, lines, out)
		}
	})

	t.Run("log", func(t *testing.T) {
		events, err := c.AllEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A plain deposit in the second half of the log.
		var victim chronicle.Event
		for _, e := range events[len(events)/2:] {
			if e.EventType == chronicle.EventMoneyDeposited && e.Data.TransferID == "" {
				victim = e
				break
			}
		}
		if victim.Position == 0 {
			t.Fatal("no plain deposit in the second half of the log")
		}
		vd := victim.Data
		cur, err := chronicle.LookupCurrency(vd.Currency)
		if err != nil {
			t.Fatal(err)
		}
		amt := vd.Amount
		newAmount := chronicle.FormatMinor(amt+100, cur)

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := waitExit(p, 20*time.Second); err != nil {
			t.Fatalf("node after SIGTERM: %v; stderr:\n%s", err, p.stderrTail())
		}

		db, err := pebble.Open(filepath.Join(dataDir, "events"), &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion, Logger: rsPebbleLogger{t}})
		if err != nil {
			t.Fatalf("open the node's state: %v", err)
		}
		key := binary.BigEndian.AppendUint64([]byte{'e'}, victim.Position)
		val, closer, err := db.Get(key)
		if err != nil {
			db.Close()
			t.Fatalf("read event %d: %v", victim.Position, err)
		}
		// Edit the stored event as someone with the disk would: decode it, change the
		// amount, write it back with its old hash.
		var stored chronicle.Event
		if err := stored.UnmarshalBinary(val); err != nil || stored.Data.Amount != amt {
			closer.Close()
			db.Close()
			t.Fatalf("stored event %d: %v (amount %d, want %d)", victim.Position, err, stored.Data.Amount, amt)
		}
		closer.Close()
		stored.Data.Amount = amt + 100
		edited, err := stored.MarshalBinary()
		if err != nil {
			db.Close()
			t.Fatal(err)
		}
		if err := db.Set(key, edited, pebble.Sync); err != nil {
			db.Close()
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("changed the amount of the deposit at position %d from %s to %s", victim.Position, chronicle.FormatMinor(amt, cur), newAmount)

		p = startChronicle(t, ctx, bin, dataDir, 1)
		c = client.New(p.url, nil)
		// The node serves the edited event: the edit took.
		got, err := c.Events(ctx, client.EventsQuery{After: victim.Position - 1, Limit: 1, Order: "asc"})
		if err != nil || len(got) != 1 {
			t.Fatalf("read event %d after restart: %v (%d events)", victim.Position, err, len(got))
		}
		if d := got[0].Data; d.Amount != amt+100 {
			t.Fatalf("after restart event %d has amount %s, want the edited %s: the edit did not take", victim.Position, chronicle.FormatMinor(d.Amount, cur), newAmount)
		}

		out, code := runVerify(t, ctx, bin, p.url, "")
		posRE := regexp.MustCompile(`(?m)^chain:.*FAIL.*\bposition ` + strconv.FormatUint(victim.Position, 10) + `\b.*hash.*$`)
		if code != 1 || !posRE.MatchString(out) {
			t.Errorf("verify of a log with event %d altered: exit %d, want 1 and a chain failure naming the hash at position %d:\n%s",
				victim.Position, code, victim.Position, out)
		}
		if !strings.Contains(out, "RESULT: FAIL") {
			t.Errorf("verify of a log with event %d altered does not end with RESULT: FAIL:\n%s", victim.Position, out)
		}
	})
}

// TestServeSIGTERMIsClean stops `chronicle serve` with SIGTERM while writes are in
// flight: it exits 0 within a bounded time, and on restart every write it acknowledged
// is there and the log and views are consistent.
func TestServeSIGTERMIsClean(t *testing.T) {
	rsSkipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildChronicle(t, ctx)
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startChronicle(t, ctx, bin, dataDir, 0)
	c := client.New(p.url, nil)
	led := newRSLedger(t, ctx, c, "term", 4, 2)
	led.run(ctx, c, 6, 6, 300, nil)
	led.check(t, true)
	before, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// More writes in flight when the signal arrives; their outcome may be unknown.
	led.allowUnknown = true
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		led.run(ctx, c, 4, 7, 1<<40, stop)
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); <-loadDone })
	defer stopLoad()
	ackedBefore := led.nAcked.Load()
	deadline := time.Now().Add(20 * time.Second)
	for led.nAcked.Load() < ackedBefore+50 {
		if time.Now().After(deadline) {
			t.Fatal("the second batch of writes made no progress")
		}
		time.Sleep(2 * time.Millisecond) // polling a counter
	}
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(p, 15*time.Second); err != nil {
		t.Fatalf("serve after SIGTERM: %v; stderr:\n%s", err, p.stderrTail())
	}
	t.Logf("serve exited 0 %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	stopLoad()
	led.check(t, false)

	p = startChronicle(t, ctx, bin, dataDir, 1)
	c = client.New(p.url, nil)
	after, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) < len(before) {
		t.Fatalf("after restart the log holds %d events, %d before the second batch", len(after), len(before))
	}
	for i, e := range before {
		a := after[i]
		if a.Position != e.Position || a.EventID != e.EventID || a.Hash != e.Hash || a.Data != e.Data {
			t.Fatalf("event %d changed across the restart:\nbefore: %+v\nafter:  %+v", e.Position, e, a)
		}
	}
	led.mu.Lock()
	missing := 0
	for pos, id := range led.ackedEvents {
		if pos == 0 || pos > uint64(len(after)) || after[pos-1].EventID != id {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged event %s at position %d is not in the log after restart", id, pos)
			}
		}
	}
	nAcked, nUnknown := len(led.ackedEvents), led.unknown
	led.mu.Unlock()
	if missing > 0 {
		t.Fatalf("%d acknowledged events lost across SIGTERM", missing)
	}
	t.Logf("log after restart: %d events; all %d acknowledged events present; %d requests with unknown outcome", len(after), nAcked, nUnknown)

	out, code := runVerify(t, ctx, bin, p.url, "")
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify after restart exited %d:\n%s", code, out)
	}
	// The node's balances are what the log says.
	r := chronicle.NewReplayer()
	for _, e := range after {
		if err := r.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range led.accts {
		got, err := c.Account(ctx, a.id, uint64(len(after)))
		if err != nil {
			t.Fatal(err)
		}
		want := r.State.Accounts[a.id]
		if got.Balance != chronicle.FormatMinor(want.Balance, a.cur) || got.Version != want.Version {
			t.Errorf("after restart account %s: balance %s version %d, the log gives %s version %d",
				a.id, got.Balance, got.Version, chronicle.FormatMinor(want.Balance, a.cur), want.Version)
		}
	}
}

// ---- helpers ----

func rsSkipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary against PostgreSQL and NATS; skipped in -short mode")
	}
}

// rsLog is an in-process node's log, shown when the test fails.
type rsLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *rsLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *rsLog) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 16<<10 {
		s = "...\n" + s[len(s)-16<<10:]
	}
	return s
}

// rsStartNode starts an in-process node whose log is printed if the test fails.
func rsStartNode(t *testing.T, opts ...nodetest.Option) *nodetest.Node {
	t.Helper()
	lg := &rsLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node log:\n%s", lg.tail())
		}
	})
	opts = append([]nodetest.Option{func(c *node.Config) {
		c.Logger = slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}}, opts...)
	return nodetest.Start(t, opts...)
}

// rsPebbleLogger keeps Pebble's start-up chatter out of the test output.
type rsPebbleLogger struct{ t *testing.T }

func (rsPebbleLogger) Infof(string, ...any)                {}
func (l rsPebbleLogger) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }
func (rsPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

func rsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHRONICLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// startProjector starts `chronicle projector args...`; its stdout and stderr go to one
// file (stderrTail shows it). It is killed when the test ends unless waited for.
func startProjector(t *testing.T, bin string, args ...string) *chronicleProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "projector.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, append([]string{"projector"}, args...)...)
	cmd.Env = rsEnv()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start projector: %v", err)
	}
	p := &chronicleProc{cmd: cmd, stderrPath: path, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if !p.waited {
			_ = cmd.Process.Kill()
			_ = p.wait()
		}
	})
	return p
}

// waitExit waits up to d for p to exit and returns nil only for exit status 0.
func waitExit(p *chronicleProc, d time.Duration) error {
	if p.waited {
		return p.waitErr
	}
	select {
	case err := <-p.exited:
		p.waited, p.waitErr = true, err
		return err
	case <-time.After(d):
		return fmt.Errorf("still running %s after the signal", d)
	}
}

// checkAlive fails t when p has exited.
func checkAlive(t *testing.T, p *chronicleProc, what string) {
	t.Helper()
	if p == nil {
		return
	}
	if !p.waited {
		select {
		case err := <-p.exited:
			p.waited, p.waitErr = true, err
		default:
			return
		}
	}
	t.Fatalf("%s: the process exited (%v); output:\n%s", what, p.waitErr, p.stderrTail())
}

// waitLogMatch polls p's output until re matches a line and returns the submatches.
func waitLogMatch(t *testing.T, p *chronicleProc, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(p.stderrPath)
		if m := re.FindStringSubmatch(string(b)); m != nil {
			return m
		}
		checkAlive(t, p, "waiting for "+re.String())
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the output within %s:\n%s", re, d, p.stderrTail())
		}
		time.Sleep(20 * time.Millisecond) // polling the file
	}
}

// runChronicle runs the binary to completion.
func runChronicle(t *testing.T, ctx context.Context, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = rsEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	default:
		t.Fatalf("chronicle %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String(), code
}

// runVerify runs `chronicle verify` and returns its report (stdout, then stderr).
func runVerify(t *testing.T, ctx context.Context, bin, nodeURL, pgURL string) (string, int) {
	t.Helper()
	args := []string{"verify", "--url", nodeURL, "--wait", "30s"}
	if pgURL != "" {
		args = append(args, "--read-model", pgURL)
	}
	o, e, code := runChronicle(t, ctx, bin, args...)
	if e != "" {
		o += "--- stderr:\n" + e
	}
	return o, code
}

// rsFailLine reports whether the report has a FAIL line for check.
func rsFailLine(out, check string) bool {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, check+":") && strings.Contains(line, "FAIL") {
			return true
		}
	}
	return false
}

func rsPG(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to the test schema: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// withApplicationName returns connString (URL or keyword/value form) with its
// application_name set to name, a plain identifier.
func withApplicationName(t *testing.T, connString, name string) string {
	t.Helper()
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			t.Fatalf("parse connection URL: %v", err)
		}
		q := u.Query()
		q.Set("application_name", name)
		// Encode writes a space as '+', which pgx (like libpq) does not decode: use %20.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String()
	}
	return connString + " application_name=" + name
}

// waitPGBackendsGone waits until the server has no backend left for connections with
// the given application_name: whatever a killed client had sent is then either
// committed or rolled back, and nothing of it can change the view any more.
func waitPGBackendsGone(t *testing.T, ctx context.Context, conn *pgx.Conn, appName string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := pgBackends(t, ctx, conn, appName)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of %s still on the server %s after the client died", n, appName, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgBackends counts the server's backends for connections with the given application_name.
func pgBackends(t *testing.T, ctx context.Context, conn *pgx.Conn, appName string) int {
	t.Helper()
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, appName).Scan(&n)
	if err != nil {
		t.Fatalf("count the backends of %s: %v", appName, err)
	}
	return n
}

// pgPosition is the view's checkpoint; 0 before the projector created it.
func pgPosition(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var pos int64
	err := conn.QueryRow(ctx, `SELECT last_event_id FROM event_position WHERE processor_name = $1`, projector.DefaultProcessorName).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return uint64(pos), err
}

// waitPGPosition polls the view's checkpoint until it reaches want, failing when the
// projector process dies or d passes.
func waitPGPosition(t *testing.T, ctx context.Context, conn *pgx.Conn, want uint64, proj *chronicleProc, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var pos uint64
	var err error
	for {
		pos, err = pgPosition(ctx, conn)
		if err == nil && pos >= want {
			return
		}
		checkAlive(t, proj, fmt.Sprintf("waiting for the view to reach position %d", want))
		if time.Now().After(deadline) || ctx.Err() != nil {
			out := ""
			if proj != nil {
				out = proj.stderrTail()
			}
			t.Fatalf("view at position %d (last error %v), did not reach %d within %s; projector output:\n%s", pos, err, want, d, out)
		}
		time.Sleep(20 * time.Millisecond) // polling the checkpoint
	}
}

// waitHead polls the node until its log reaches want.
func waitHead(t *testing.T, ctx context.Context, c *client.Client, want uint64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		h := headPosition(t, ctx, c)
		if h >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log head %d did not reach %d within %s", h, want, d)
		}
		time.Sleep(10 * time.Millisecond) // polling the head
	}
}

// ---- workload ----

type rsAcct struct {
	id  string
	cur chronicle.Currency
}

// rsLedger drives a random workload and keeps the client's books: what every
// acknowledged command did to each account.
type rsLedger struct {
	accts        []rsAcct
	allowUnknown bool // transport errors are expected (the node is being stopped)

	nAcked atomic.Int64
	ops    atomic.Int64

	mu          sync.Mutex
	balance     map[string]int64 // minor units
	events      map[string]uint64
	transfers   int
	acked       int
	refused     map[string]int // by code
	unknown     int
	problems    []string
	ackedEvents map[uint64]string // position -> event id, as responses reported them
}

// newRSLedger creates nUSD USD and nJPY JPY accounts named prefix-...
func newRSLedger(t *testing.T, ctx context.Context, c *client.Client, prefix string, nUSD, nJPY int) *rsLedger {
	t.Helper()
	l := &rsLedger{balance: map[string]int64{}, events: map[string]uint64{}, refused: map[string]int{}, ackedEvents: map[uint64]string{}}
	for _, spec := range []struct {
		code    string
		n       int
		initial int64
	}{{"USD", nUSD, 50000}, {"JPY", nJPY, 50000}} {
		cur, err := chronicle.LookupCurrency(spec.code)
		if err != nil {
			t.Fatal(err)
		}
		for i := range spec.n {
			a := rsAcct{id: fmt.Sprintf("%s-%s-%02d", prefix, strings.ToLower(spec.code), i), cur: cur}
			res, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: a.id, OwnerName: "Owner " + a.id,
				Currency: spec.code, InitialBalance: chronicle.FormatMinor(spec.initial, cur)}, "")
			if err != nil || res.Status != http.StatusCreated || len(res.Events) != 1 {
				t.Fatalf("create %s: %+v, %v", a.id, res, err)
			}
			l.accts = append(l.accts, a)
			l.balance[a.id] = spec.initial
			l.events[a.id] = 1
			l.ackedEvents[res.Events[0].Position] = res.Events[0].EventID
		}
	}
	return l
}

// run drives workers until maxOps commands were sent or stop closes: deposits,
// withdrawals (some beyond the balance), transfers (some too large, some across
// currencies, some to the same account: refused).
func (l *rsLedger) run(ctx context.Context, c *client.Client, workers int, seed uint64, maxOps int64, stop <-chan struct{}) {
	hc := &http.Client{Timeout: 15 * time.Second}
	c = client.New(c.BaseURL(), hc)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				select {
				case <-stop:
					return
				default:
				}
				if l.ops.Add(1) > maxOps {
					return
				}
				l.one(ctx, c, rng)
			}
		})
	}
	wg.Wait()
	l.ops.Store(0)
}

func (l *rsLedger) one(ctx context.Context, c *client.Client, rng *rand.Rand) {
	a := l.accts[rng.IntN(len(l.accts))]
	amount := 1 + rng.Int64N(20000)
	amt := chronicle.FormatMinor(amount, a.cur)
	var (
		res        client.CommandResult
		err        error
		what       string
		deltas     = map[string]int64{}
		wantTypes  []string
		wantAggs   []string
		mustRefuse string
	)
	switch r := rng.IntN(100); {
	case r < 30:
		what = "deposit to " + a.id
		res, err = c.Deposit(ctx, client.Money{AccountID: a.id, Amount: amt, Description: "readside deposit"}, "")
		deltas[a.id] = amount
		wantTypes, wantAggs = []string{chronicle.EventMoneyDeposited}, []string{a.id}
	case r < 50:
		what = "withdrawal from " + a.id
		res, err = c.Withdraw(ctx, client.Money{AccountID: a.id, Amount: amt, Currency: a.cur.Code}, "")
		deltas[a.id] = -amount
		wantTypes, wantAggs = []string{chronicle.EventMoneyWithdrawn}, []string{a.id}
	case r < 95:
		// Mostly within one currency; the rest must be refused.
		sameCur := rng.IntN(100) < 85
		b := l.accts[rng.IntN(len(l.accts))]
		for b.id == a.id || sameCur && b.cur.Code != a.cur.Code {
			b = l.accts[rng.IntN(len(l.accts))]
		}
		if b.cur.Code != a.cur.Code {
			mustRefuse = chronicle.CodeCurrencyMismatch
		}
		what = fmt.Sprintf("transfer %s -> %s", a.id, b.id)
		res, err = c.Transfer(ctx, client.Transfer{FromAccountID: a.id, ToAccountID: b.id, Amount: amt, Description: "readside transfer"}, "")
		deltas[a.id], deltas[b.id] = -amount, amount
		wantTypes, wantAggs = []string{chronicle.EventMoneyWithdrawn, chronicle.EventMoneyDeposited}, []string{a.id, b.id}
	default:
		what = "transfer to self " + a.id
		mustRefuse = chronicle.CodeSameAccount
		res, err = c.Transfer(ctx, client.Transfer{FromAccountID: a.id, ToAccountID: a.id, Amount: amt}, "")
	}
	var apiErr *client.APIError
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		if mustRefuse != "" {
			l.problems = append(l.problems, fmt.Sprintf("%s %s was accepted, want %s: %+v", what, amt, mustRefuse, res))
			return
		}
		ok := res.Status == http.StatusCreated && len(res.Events) == len(wantTypes)
		for i := range min(len(res.Events), len(wantTypes)) {
			ok = ok && res.Events[i].Type == wantTypes[i] && res.Events[i].AggregateID == wantAggs[i] && res.Events[i].Position > 0
		}
		if !ok {
			l.problems = append(l.problems, fmt.Sprintf("%s %s: unexpected acknowledgement %+v", what, amt, res))
			return
		}
		for _, e := range res.Events {
			if prev, dup := l.ackedEvents[e.Position]; dup {
				l.problems = append(l.problems, fmt.Sprintf("%s: position %d acknowledged for events %s and %s", what, e.Position, prev, e.EventID))
			}
			l.ackedEvents[e.Position] = e.EventID
		}
		for id, d := range deltas {
			l.balance[id] += d
			l.events[id]++
		}
		if len(wantTypes) == 2 {
			l.transfers++
		}
		l.acked++
		l.nAcked.Add(1)
	case errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500:
		switch apiErr.Code {
		case mustRefuse:
		case chronicle.CodeInsufficientFunds:
			if mustRefuse != "" || deltas[a.id] >= 0 {
				l.problems = append(l.problems, fmt.Sprintf("%s %s refused with %s, want %q", what, amt, apiErr.Code, mustRefuse))
			}
		default:
			l.problems = append(l.problems, fmt.Sprintf("%s %s refused: %v", what, amt, err))
		}
		l.refused[apiErr.Code]++
	case l.allowUnknown && ctx.Err() == nil:
		l.unknown++
	default:
		if ctx.Err() == nil {
			l.problems = append(l.problems, fmt.Sprintf("%s %s failed: %v", what, amt, err))
		}
	}
}

func (l *rsLedger) problemCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.problems)
}

// check fails t on any problem; full also demands that the mix had both acknowledged
// and refused commands of each kind of refusal.
func (l *rsLedger) check(t *testing.T, full bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.problems); n > 0 {
		if n > 10 {
			l.problems = append(l.problems[:10], fmt.Sprintf("... and %d more", n-10))
		}
		t.Fatalf("%d command(s) went wrong:\n%s", n, strings.Join(l.problems, "\n"))
	}
	if full {
		for _, code := range []string{chronicle.CodeInsufficientFunds, chronicle.CodeCurrencyMismatch, chronicle.CodeSameAccount} {
			if l.refused[code] == 0 {
				t.Errorf("the workload had no %s refusal (refusals: %v)", code, l.refused)
			}
		}
		if l.acked == 0 || l.transfers == 0 {
			t.Errorf("the workload had %d acknowledged commands, %d transfers", l.acked, l.transfers)
		}
	}
	t.Logf("workload: %d acknowledged (%d transfers), refused %v", l.acked, l.transfers, l.refused)
}

// ---- comparisons ----

// compareViewWithLog compares, account by account, the PostgreSQL view with the node's
// /accounts answers, the replayed log and the client's books: balance, version, number
// of statement lines; and the transfers table with the log's transfers. It returns the
// log.
func compareViewWithLog(t *testing.T, ctx context.Context, conn *pgx.Conn, c *client.Client, l *rsLedger) []chronicle.Event {
	t.Helper()
	events, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head := uint64(len(events))
	r := chronicle.NewReplayer()
	lines := map[string]uint64{}
	logTransfers := map[string]bool{}
	for i, e := range events {
		if e.Position != uint64(i+1) {
			t.Fatalf("event #%d has position %d", i+1, e.Position)
		}
		if err := r.Add(e); err != nil {
			t.Fatalf("replay the log: %v", err)
		}
		lines[e.AggregateID]++
		if d := e.Data; d.TransferID != "" && e.EventType == chronicle.EventMoneyWithdrawn {
			logTransfers[d.TransferID] = true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for pos, id := range l.ackedEvents {
		if pos > head || events[pos-1].EventID != id {
			t.Errorf("acknowledged event %s at position %d is not there in the log", id, pos)
		}
	}
	if want := len(l.ackedEvents); int(head) != want {
		t.Errorf("log has %d events, %d were acknowledged", head, want)
	}

	type pgAcct struct {
		cur, balance string
		minor        int64
		version      int64
	}
	pg := map[string]pgAcct{}
	rows, err := conn.Query(ctx, `SELECT account_id, currency, balance::text, balance_minor, version FROM account_balance`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var a pgAcct
		if err := rows.Scan(&id, &a.cur, &a.balance, &a.minor, &a.version); err != nil {
			t.Fatal(err)
		}
		pg[id] = a
	}
	if rows.Close(); rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	pgLines := map[string]uint64{}
	rows, err = conn.Query(ctx, `SELECT account_id, count(*) FROM transactions GROUP BY account_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		pgLines[id] = uint64(n)
	}
	if rows.Close(); rows.Err() != nil {
		t.Fatal(rows.Err())
	}

	nodeList, err := c.Accounts(ctx, "", chronicle.MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	var nodeIDs, pgIDs, wantIDs []string
	for _, a := range nodeList {
		nodeIDs = append(nodeIDs, a.AccountID)
	}
	for id := range pg {
		pgIDs = append(pgIDs, id)
	}
	for _, a := range l.accts {
		wantIDs = append(wantIDs, a.id)
	}
	sort.Strings(nodeIDs)
	sort.Strings(pgIDs)
	sort.Strings(wantIDs)
	if fmt.Sprint(nodeIDs) != fmt.Sprint(wantIDs) || fmt.Sprint(pgIDs) != fmt.Sprint(wantIDs) {
		t.Errorf("accounts: created %v\nnode lists %v\nview holds %v", wantIDs, nodeIDs, pgIDs)
	}

	for _, a := range l.accts {
		na, err := c.Account(ctx, a.id, head)
		if err != nil {
			t.Fatalf("node account %s: %v", a.id, err)
		}
		nodeBal, err := chronicle.ParseMoney(na.Balance, a.cur)
		if err != nil {
			t.Fatalf("node account %s balance %q: %v", a.id, na.Balance, err)
		}
		ra := r.State.Accounts[a.id]
		pa := pg[a.id]
		books := l.balance[a.id]
		if pa.minor != nodeBal || pa.minor != ra.Balance || pa.minor != books || pa.balance != chronicle.FormatMinor(pa.minor, a.cur) || pa.cur != a.cur.Code {
			t.Errorf("account %s balance: view %d minor (%s %s), node %s, log %d, client's books %d",
				a.id, pa.minor, pa.balance, pa.cur, na.Balance, ra.Balance, books)
		}
		if uint64(pa.version) != na.Version || na.Version != ra.Version || ra.Version != lines[a.id] || lines[a.id] != l.events[a.id] || pgLines[a.id] != lines[a.id] {
			t.Errorf("account %s: view version %d with %d transactions rows, node version %d, log %d events (replay version %d), client's books %d",
				a.id, pa.version, pgLines[a.id], na.Version, lines[a.id], ra.Version, l.events[a.id])
		}
	}
	var pgTransfers int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM transfers`).Scan(&pgTransfers); err != nil {
		t.Fatal(err)
	}
	if pgTransfers != len(logTransfers) || pgTransfers != l.transfers {
		t.Errorf("transfers: view %d rows, log %d, client's books %d", pgTransfers, len(logTransfers), l.transfers)
	}
	return events
}

// checkPGExactlyOnce checks that the view applied positions 1..head, each once.
func checkPGExactlyOnce(t *testing.T, ctx context.Context, conn *pgx.Conn, head uint64) {
	t.Helper()
	var n, distinctTx, distinctPos, minPos, maxPos int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT transaction_id), count(DISTINCT position),
		coalesce(min(position), 0), coalesce(max(position), 0) FROM transactions`).Scan(&n, &distinctTx, &distinctPos, &minPos, &maxPos); err != nil {
		t.Fatal(err)
	}
	if n != distinctTx || n != distinctPos || uint64(n) != head || minPos != 1 || uint64(maxPos) != head {
		t.Errorf("transactions: %d rows, %d distinct transaction_id, %d distinct positions in %d..%d; want %d, each once, 1..%d",
			n, distinctTx, distinctPos, minPos, maxPos, head, head)
	}
	if pos, err := pgPosition(ctx, conn); err != nil || pos != head {
		t.Errorf("event_position %d (%v), want the head %d", pos, err, head)
	}
}

var rsDumpTables = []struct{ name, orderBy string }{
	{"account_balance", "account_id"},
	{"transactions", "position"},
	{"transfers", "position"},
	{"event_position", "processor_name"},
}

// dumpView returns every row of the view's tables as JSON text, in a fixed order;
// event_position without last_processed_at.
func dumpView(t *testing.T, ctx context.Context, conn *pgx.Conn) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range rsDumpTables {
		sel := `to_jsonb(x)`
		if tb.name == "event_position" {
			sel = `to_jsonb(x) - 'last_processed_at'`
		}
		rows, err := conn.Query(ctx, `SELECT (`+sel+`)::text FROM `+tb.name+` x ORDER BY `+tb.orderBy)
		if err != nil {
			t.Fatalf("dump %s: %v", tb.name, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out[tb.name] = append(out[tb.name], s)
		}
		if rows.Close(); rows.Err() != nil {
			t.Fatal(rows.Err())
		}
	}
	return out
}

// ---- NATS ----

// startNATSServer starts a JetStream NATS server on 127.0.0.1:port (RANDOM_PORT: any)
// storing in storeDir; it is shut down when the test ends.
func startNATSServer(t *testing.T, storeDir string, port int) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{ServerName: "readside-test", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(15 * time.Second) {
		t.Fatalf("nats server on port %d not ready", port)
	}
	return ns
}

func rsJetStream(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return nc, js
}

// waitStreamLastSeq polls the stream until its last sequence reaches want.
func waitStreamLastSeq(t *testing.T, ctx context.Context, url string, want uint64, d time.Duration) {
	t.Helper()
	nc, js := rsJetStream(t, url)
	defer nc.Close()
	deadline := time.Now().Add(d)
	var last uint64
	var lastErr error
	for {
		s, err := js.Stream(ctx, eventbus.DefaultStream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil {
				last = info.State.LastSeq
				if last >= want {
					return
				}
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("stream %s at sequence %d (last error %v), did not reach %d within %s", eventbus.DefaultStream, last, lastErr, want, d)
		}
		time.Sleep(20 * time.Millisecond) // polling the stream
	}
}

// checkStream checks that the stream holds exactly the log: messages 1..N, message i
// being the event at position i.
func checkStream(t *testing.T, ctx context.Context, url string, events []chronicle.Event) {
	t.Helper()
	head := uint64(len(events))
	nc, js := rsJetStream(t, url)
	defer nc.Close()
	s, err := js.Stream(ctx, eventbus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := info.State
	if st.Msgs != head || st.FirstSeq != 1 || st.LastSeq != head || st.NumDeleted != 0 {
		t.Fatalf("stream state: %d msgs, seq %d..%d, %d deleted; want %d msgs, 1..%d, none deleted", st.Msgs, st.FirstSeq, st.LastSeq, st.NumDeleted, head, head)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var next uint64 = 1
	deadline := time.Now().Add(30 * time.Second)
	for next <= head {
		if time.Now().After(deadline) {
			t.Fatalf("read only up to sequence %d of %d from the stream", next-1, head)
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			var e chronicle.Event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				t.Fatalf("stream message %d: %v", md.Sequence.Stream, err)
			}
			if md.Sequence.Stream != next || e.Position != next || e.EventID != events[next-1].EventID || e.Hash != events[next-1].Hash {
				t.Fatalf("stream message #%d: sequence %d holds position %d (event %s, hash %.12s); the log's position %d is event %s, hash %.12s",
					next, md.Sequence.Stream, e.Position, e.EventID, e.Hash, next, events[next-1].EventID, events[next-1].Hash)
			}
			next++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, io.EOF) {
			t.Fatalf("fetch from the stream: %v", err)
		}
	}
}
