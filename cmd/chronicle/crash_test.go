package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
)

// TestCrashRecovery runs the real binary, SIGKILLs it twice under concurrent transfer
// load and restarts it on the same data directory, checking after each restart that
// every acknowledged transfer survived exactly once, that requests with an unknown
// outcome committed at most once (and exactly once after a retry with the same
// Idempotency-Key), that the log replays with an intact hash chain, and that no money
// was created or destroyed.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped in -short mode")
	}
	const (
		numAccounts   = 20
		initial       = "1000.00"
		workers       = 16
		ackedPerCycle = 400 // acknowledged transfers before each kill
		cycles        = 2
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	bin := buildChronicle(t, ctx)
	dataDir := filepath.Join(t.TempDir(), "data")
	usd, err := chronicle.LookupCurrency("USD")
	if err != nil {
		t.Fatal(err)
	}
	initialMinor, err := chronicle.ParseMoney(initial, usd)
	if err != nil {
		t.Fatal(err)
	}

	p := startChronicle(t, ctx, bin, dataDir, 0)
	c := client.New(p.url, nil)

	ids := make([]string, numAccounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("crash-%02d", i)
		res, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: ids[i], OwnerName: "Crash " + ids[i],
			Currency: "USD", InitialBalance: initial}, "create-"+ids[i])
		if err != nil || res.Status != http.StatusCreated {
			t.Fatalf("create %s: %+v, %v", ids[i], res, err)
		}
	}

	led := &ledgerRecord{acked: map[string]ackedTransfer{}, unknown: map[string]client.Transfer{}, refused: map[string]string{},
		lifecycle: newLifecycleLoad(t, ctx, c)}
	for cycle := 1; cycle <= cycles; cycle++ {
		led.lifecycle.start(ctx, p.url, cycle)
		runLoadAndKill(t, ctx, p, led, ids, cycle, workers, ackedPerCycle)
		led.lifecycle.wait(t, cycle)

		p = startChronicle(t, ctx, bin, dataDir, cycle)
		c = client.New(p.url, nil)
		t.Logf("cycle %d: restarted at %s; %d acknowledged, %d unknown, %d refused so far; %s",
			cycle, p.url, len(led.acked), len(led.unknown), len(led.refused), p.logLine("store open"))

		// A node that says it is serving must not hide acknowledged writes: read the
		// head at once, before anything could have waited for the log to be re-applied.
		if head := headPosition(t, ctx, c); head < led.maxAckedPos {
			t.Errorf("cycle %d: right after restart the node serves position %d, but position %d was acknowledged before the crash (stale reads after restart)",
				cycle, head, led.maxAckedPos)
		}
		// The rest checks what is durable, so let the node apply its whole log first:
		// a transfer refused for insufficient funds is decided by the state machine,
		// after every entry before it, and writes nothing.
		_, err := c.Transfer(ctx, client.Transfer{FromAccountID: ids[0], ToAccountID: ids[1], Amount: "999999.00"}, "")
		if client.CodeOf(err) != chronicle.CodeInsufficientFunds {
			t.Fatalf("cycle %d: barrier transfer: got %v, want %s", cycle, err, chronicle.CodeInsufficientFunds)
		}

		before := verifyLedger(t, ctx, c, led, ids, usd, initialMinor, fmt.Sprintf("cycle %d after restart", cycle))
		retryUnknown(t, ctx, c, led, before, cycle)
		verifyLedger(t, ctx, c, led, ids, usd, initialMinor, fmt.Sprintf("cycle %d after retries", cycle))
		if t.Failed() {
			t.FailNow()
		}
	}
}

// ackedTransfer is a transfer the node acknowledged with 201.
type ackedTransfer struct {
	transferID string
	req        client.Transfer
	positions  [2]uint64 // MoneyWithdrawn, MoneyDeposited
}

// ledgerRecord is what the client side knows, keyed by Idempotency-Key.
type ledgerRecord struct {
	mu          sync.Mutex
	acked       map[string]ackedTransfer
	unknown     map[string]client.Transfer // outcome unknown: transport error, 5xx
	refused     map[string]string          // definite 4xx refusal: key -> code
	maxAckedPos uint64
	nAcked      atomic.Int64 // acknowledged in the current cycle
	// lifecycle freezes and unfreezes accounts of its own beside the transfers.
	lifecycle *lifecycleLoad
}

// runLoadAndKill drives concurrent transfers against p and SIGKILLs it once ackTarget
// transfers have been acknowledged in this cycle, with the load still running.
func runLoadAndKill(t *testing.T, ctx context.Context, p *chronicleProc, led *ledgerRecord, ids []string, cycle, workers, ackTarget int) {
	t.Helper()
	led.nAcked.Store(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	var firstProblem atomic.Value // string
	hc := &http.Client{Timeout: 10 * time.Second}
	c := client.New(p.url, hc)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				from := rng.IntN(len(ids))
				to := (from + 1 + rng.IntN(len(ids)-1)) % len(ids)
				amount := 1 + rng.IntN(500) // 0.01 .. 5.00
				req := client.Transfer{FromAccountID: ids[from], ToAccountID: ids[to],
					Amount: fmt.Sprintf("%d.%02d", amount/100, amount%100), Description: "crash load"}
				key := fmt.Sprintf("crash-c%d-w%d-%d", cycle, w, seq.Add(1))
				res, err := c.Transfer(ctx, req, key)
				var apiErr *client.APIError
				led.mu.Lock()
				switch {
				case err == nil:
					ok := res.Status == http.StatusCreated && res.TransferID != "" && len(res.Events) == 2 &&
						res.Events[0].Type == chronicle.EventMoneyWithdrawn && res.Events[1].Type == chronicle.EventMoneyDeposited
					if !ok {
						firstProblem.CompareAndSwap(nil, fmt.Sprintf("transfer %s: unexpected acknowledgement %+v", key, res))
					}
					a := ackedTransfer{transferID: res.TransferID, req: req}
					for i := range min(2, len(res.Events)) {
						a.positions[i] = res.Events[i].Position
						led.maxAckedPos = max(led.maxAckedPos, res.Events[i].Position)
					}
					led.acked[key] = a
					led.nAcked.Add(1)
				case errors.As(err, &apiErr) && apiErr.Status < 500:
					led.refused[key] = apiErr.Code
				default:
					led.unknown[key] = req
				}
				led.mu.Unlock()
			}
		}()
	}

	// Kill once enough transfers are acknowledged: poll the counter, no fixed sleeps.
	tick := time.NewTicker(2 * time.Millisecond)
	deadline := time.NewTimer(60 * time.Second)
	for led.nAcked.Load() < int64(ackTarget) {
		select {
		case <-tick.C:
		case <-deadline.C:
			close(stop)
			wg.Wait()
			t.Fatalf("cycle %d: only %d transfers acknowledged in 60s; stderr:\n%s", cycle, led.nAcked.Load(), p.stderrTail())
		case err := <-p.exited:
			p.waited, p.waitErr = true, err
			close(stop)
			wg.Wait()
			t.Fatalf("cycle %d: chronicle exited under load (%v); stderr:\n%s", cycle, err, p.stderrTail())
		}
	}
	tick.Stop()
	deadline.Stop()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill chronicle: %v", err)
	}
	atKill := led.nAcked.Load()
	// In-flight requests now fail with transport errors (recorded as unknown).
	close(stop)
	p.waitKilled(t)
	wg.Wait()
	if msg, _ := firstProblem.Load().(string); msg != "" {
		t.Fatal(msg)
	}
	if n := led.nAcked.Load(); n != atKill {
		// A response can race the kill signal, but not arrive after the process is gone.
		t.Logf("cycle %d: %d acknowledged at kill, %d after (responses in flight)", cycle, atKill, n)
	}
	led.mu.Lock()
	t.Logf("cycle %d: killed after %d acknowledged transfers; totals: %d acknowledged, %d unknown, %d refused",
		cycle, atKill, len(led.acked), len(led.unknown), len(led.refused))
	led.mu.Unlock()
}

// logView is what one read of the whole log says about each Idempotency-Key.
type logView struct {
	withdrawn, deposited map[string]int    // by transfer_id
	keyEvents            map[string]int    // events carrying the idempotency_key
	keyTransfer          map[string]string // idempotency_key -> transfer_id
}

// verifyLedger reads the whole log and every account and checks them against led.
func verifyLedger(t *testing.T, ctx context.Context, c *client.Client, led *ledgerRecord, ids []string,
	usd chronicle.Currency, initialMinor int64, when string) logView {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	events, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatalf("%s: read events: %v", when, err)
	}
	// Positions are gap-free 1..N.
	for i, e := range events {
		if e.Position != uint64(i+1) {
			t.Fatalf("%s: event #%d has position %d (gap or reorder)", when, i+1, e.Position)
		}
	}
	// Replay: hash chain and every balance_after.
	r := chronicle.NewReplayer()
	for _, e := range events {
		if err := r.Add(e); err != nil {
			t.Fatalf("%s: replay: %v", when, err)
		}
	}
	if tot := r.State.Totals()["USD"]; tot != 0 {
		t.Errorf("%s: replayed USD total incl. external account is %d, want 0", when, tot)
	}

	v := logView{withdrawn: map[string]int{}, deposited: map[string]int{}, keyEvents: map[string]int{}, keyTransfer: map[string]string{}}
	for _, e := range events {
		d := e.Data
		switch e.EventType {
		case chronicle.EventMoneyWithdrawn:
			if d.TransferID != "" {
				v.withdrawn[d.TransferID]++
			}
		case chronicle.EventMoneyDeposited:
			if d.TransferID != "" {
				v.deposited[d.TransferID]++
			}
		}
		if k := e.Metadata["idempotency_key"]; strings.HasPrefix(k, "crash-c") {
			v.keyEvents[k]++
			if prev, ok := v.keyTransfer[k]; ok && prev != d.TransferID {
				t.Errorf("%s: key %s carries transfers %s and %s", when, k, prev, d.TransferID)
			}
			v.keyTransfer[k] = d.TransferID
		}
	}

	// Every acknowledged transfer is in the log exactly once, where the ack said.
	for key, a := range led.acked {
		if w, d := v.withdrawn[a.transferID], v.deposited[a.transferID]; w != 1 || d != 1 {
			t.Errorf("%s: acknowledged transfer %s (key %s, positions %v): %d MoneyWithdrawn, %d MoneyDeposited; want 1 each",
				when, a.transferID, key, a.positions, w, d)
			continue
		}
		if n := v.keyEvents[key]; n != 2 {
			t.Errorf("%s: key %s of acknowledged transfer %s is on %d events, want 2", when, key, a.transferID, n)
		}
		for i, pos := range a.positions {
			if pos == 0 || pos > uint64(len(events)) {
				t.Errorf("%s: acknowledged transfer %s: position %d not in the log of %d events", when, a.transferID, pos, len(events))
				continue
			}
			e := events[pos-1]
			d := e.Data
			wantType, wantAcct := chronicle.EventMoneyWithdrawn, a.req.FromAccountID
			if i == 1 {
				wantType, wantAcct = chronicle.EventMoneyDeposited, a.req.ToAccountID
			}
			if d.TransferID != a.transferID || e.EventType != wantType || e.AggregateID != wantAcct {
				t.Errorf("%s: acknowledged transfer %s said position %d is its %s on %s; the log has %s on %s of transfer %q",
					when, a.transferID, pos, wantType, wantAcct, e.EventType, e.AggregateID, d.TransferID)
			}
		}
	}
	// Unknown outcomes are in the log at most once, and whole.
	for key := range led.unknown {
		n := v.keyEvents[key]
		if n != 0 && n != 2 {
			t.Errorf("%s: unknown-outcome key %s is on %d events, want 0 or 2", when, key, n)
		}
		if id, ok := v.keyTransfer[key]; ok && (v.withdrawn[id] != 1 || v.deposited[id] != 1) {
			t.Errorf("%s: unknown-outcome key %s: transfer %s has %d MoneyWithdrawn, %d MoneyDeposited", when, key, id, v.withdrawn[id], v.deposited[id])
		}
	}
	// Refused requests wrote nothing.
	for key, code := range led.refused {
		if n := v.keyEvents[key]; n != 0 {
			t.Errorf("%s: key %s was refused (%s) but is on %d events", when, key, code, n)
		}
	}
	// Nothing in the log that the client never sent.
	for key := range v.keyEvents {
		_, a := led.acked[key]
		_, u := led.unknown[key]
		if !a && !u {
			t.Errorf("%s: log holds key %s, which was neither acknowledged nor in doubt", when, key)
		}
	}
	transfers := 0
	for id, w := range v.withdrawn {
		transfers++
		if w != 1 || v.deposited[id] != 1 {
			t.Errorf("%s: transfer %s has %d MoneyWithdrawn and %d MoneyDeposited", when, id, w, v.deposited[id])
		}
	}
	lcEvents := led.lifecycle.check(t, ctx, c, r, events, when)
	if want := len(ids) + 2*transfers + lcEvents; len(events) != want {
		t.Errorf("%s: %d events; want %d account creations + 2 x %d transfers + %d of the lifecycle accounts = %d",
			when, len(events), len(ids), transfers, lcEvents, want)
	}

	// Balances: the API's sum is conserved, and each equals the replay's.
	var sum int64
	for _, id := range ids {
		a, err := c.Account(ctx, id, 0)
		if err != nil {
			t.Fatalf("%s: account %s: %v", when, id, err)
		}
		bal, err := chronicle.ParseMoney(a.Balance, usd)
		if err != nil {
			t.Fatalf("%s: account %s balance %q: %v", when, id, a.Balance, err)
		}
		sum += bal
		ra, ok := r.State.Accounts[id]
		if !ok {
			t.Errorf("%s: account %s not in the replayed state", when, id)
			continue
		}
		if ra.Balance != bal || ra.Version != a.Version {
			t.Errorf("%s: account %s: API balance %s version %d, replay gives %s version %d",
				when, id, a.Balance, a.Version, chronicle.FormatMinor(ra.Balance, usd), ra.Version)
		}
	}
	if want := int64(len(ids)) * initialMinor; sum != want {
		t.Errorf("%s: customer balances sum to %s, want %s", when, chronicle.FormatMinor(sum, usd), chronicle.FormatMinor(want, usd))
	}
	t.Logf("%s: %d events, %d transfers verified (%d acknowledged, %d in doubt)", when, len(events), transfers, len(led.acked), len(led.unknown))
	return v
}

// retryUnknown resends every in-doubt transfer with its key and body: 200 when it had
// committed (same transfer), 201 when it had not. Each then counts as acknowledged.
func retryUnknown(t *testing.T, ctx context.Context, c *client.Client, led *ledgerRecord, before logView, cycle int) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	replayed, fresh := 0, 0
	for key, req := range led.unknown {
		res, err := c.Transfer(ctx, req, key)
		if err != nil {
			t.Errorf("cycle %d: retry of in-doubt %s: %v", cycle, key, err)
			continue
		}
		committed := before.keyEvents[key] > 0
		switch {
		case res.Status == http.StatusOK && committed:
			replayed++
			if want := before.keyTransfer[key]; res.TransferID != want || !res.Replayed {
				t.Errorf("cycle %d: retry of committed %s replayed transfer %s (replayed=%v), the log has %s", cycle, key, res.TransferID, res.Replayed, want)
			}
		case res.Status == http.StatusCreated && !committed:
			fresh++
		default:
			t.Errorf("cycle %d: retry of in-doubt %s (in log before: %v) got status %d: %+v", cycle, key, committed, res.Status, res)
		}
		if len(res.Events) != 2 {
			t.Errorf("cycle %d: retry of %s: %d events in the response", cycle, key, len(res.Events))
			continue
		}
		a := ackedTransfer{transferID: res.TransferID, req: req, positions: [2]uint64{res.Events[0].Position, res.Events[1].Position}}
		led.maxAckedPos = max(led.maxAckedPos, a.positions[1])
		led.acked[key] = a
		delete(led.unknown, key)
	}
	t.Logf("cycle %d: retried in-doubt transfers: %d had committed (200), %d had not (201)", cycle, replayed, fresh)
}

func headPosition(t *testing.T, ctx context.Context, c *client.Client) uint64 {
	t.Helper()
	evs, err := c.Events(ctx, client.EventsQuery{Limit: 1, Order: "desc"})
	if err != nil {
		t.Fatalf("read head: %v", err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[0].Position
}

// buildChronicle builds this package's binary into a temporary directory.
func buildChronicle(t *testing.T, ctx context.Context) string {
	t.Helper()
	built.once.Do(func() {
		// go test puts its own GOROOT/bin first on PATH, so this finds the go command
		// that is running the tests; a test binary run by hand needs go on PATH.
		goBin, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("the go command is needed to build the binary under test: %v", err)
			return
		}
		built.path = filepath.Join(built.dir, "chronicle")
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", built.path, ".")
		cmd.Dir = "." // go test runs in the package directory
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// built is the binary under test, built once for the whole package (a build costs
// seconds and every process-level test needs the same one).
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chronicle-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// chronicleProc is a running `chronicle serve` child process.
type chronicleProc struct {
	cmd        *exec.Cmd
	url        string
	stderrPath string
	exited     chan error // receives Wait's result once
	waitErr    error
	waited     bool
}

var servingRE = regexp.MustCompile(`serving at (http://\S+)`)

// startChronicle starts the binary on dataDir with OS-chosen ports and waits for its
// "serving at" line.
func startChronicle(t *testing.T, ctx context.Context, bin, dataDir string, run int) *chronicleProc {
	t.Helper()
	stderrPath := filepath.Join(t.TempDir(), fmt.Sprintf("stderr-%d.log", run))
	p, urls := launchChronicle(t, bin, stderrPath, "serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case p.url = <-urls:
		return p
	case err := <-p.exited:
		p.waited, p.waitErr = true, err
		t.Fatalf("chronicle exited before serving (%v); stderr:\n%s", err, p.stderrTail())
	case <-readyCtx.Done():
		t.Fatalf("chronicle did not print its serving line in time; stderr:\n%s", p.stderrTail())
	}
	return nil
}

func (p *chronicleProc) wait() error {
	if !p.waited {
		p.waitErr, p.waited = <-p.exited, true
	}
	return p.waitErr
}

// waitKilled waits for the process to die of the SIGKILL it was sent.
func (p *chronicleProc) waitKilled(t *testing.T) {
	t.Helper()
	err := p.wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Exited() {
		t.Fatalf("chronicle was not killed by the signal: %v; stderr:\n%s", err, p.stderrTail())
	}
}

// logLine returns the child's first log line containing s.
func (p *chronicleProc) logLine(s string) string {
	b, _ := os.ReadFile(p.stderrPath)
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return "(no " + strconv.Quote(s) + " in the log)"
}

// stderrTail is the end of the child's log, for failure messages.
func (p *chronicleProc) stderrTail() string {
	b, err := os.ReadFile(p.stderrPath)
	if err != nil {
		return "(no stderr: " + err.Error() + ")"
	}
	const tail = 8 << 10
	if len(b) > tail {
		b = append([]byte("...\n"), b[len(b)-tail:]...)
	}
	return string(b)
}

// launchChronicle starts the binary with args (without the caller's CHRONICLE_*
// environment), its stderr in stderrPath; the channel receives the URL it prints once
// serving. The process is killed when the test ends if nobody waited for it.
func launchChronicle(t *testing.T, bin, stderrPath string, args ...string) (*chronicleProc, <-chan string) {
	t.Helper()
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHRONICLE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chronicle: %v", err)
	}
	p := &chronicleProc{cmd: cmd, stderrPath: stderrPath, exited: make(chan error, 1)}
	t.Cleanup(func() {
		if !p.waited {
			_ = cmd.Process.Kill()
			p.wait()
		}
	})
	urls := make(chan string, 1)
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-stdoutDone // Wait closes the pipe: finish reading first
		p.exited <- cmd.Wait()
	}()
	return p, urls
}
