package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// The dashboard driven by Debian's headless Chromium through the DevTools protocol:
// real node, real browser, no mocks. Without a browser the tests skip, unless
// CHRONICLE_REQUIRE_BROWSER=1 makes that a failure. CHRONICLE_UPDATE_SCREENSHOTS=1 also
// writes the screenshots to docs/screenshots/.

const stepTimeout = 20 * time.Second

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CHRONICLE_REQUIRE_BROWSER") == "1" {
		t.Fatal("CHRONICLE_REQUIRE_BROWSER=1 but neither chromium nor chromium-browser is on PATH (apt-get install -y chromium)")
	}
	t.Skip("browser tests skipped: neither chromium nor chromium-browser is on PATH (apt-get install -y chromium; CHRONICLE_REQUIRE_BROWSER=1 makes this a failure)")
	return ""
}

// tab is a headless Chromium tab and what it reported: console errors, uncaught
// exceptions, CSP violations, dialogs, and the bytes it loaded.
type tab struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu       sync.Mutex
	problems []string
	warnings []string
	dialogs  []string
	urls     map[network.RequestID]string
	bytes    map[string]float64 // URL -> encoded bytes on the wire (headers included)
	requests []sentRequest      // every request the page sent, in order
	console  []string           // every console message, whatever its level
}

// sentRequest is a request as the page sent it.
type sentRequest struct {
	url     string
	typ     network.ResourceType
	headers map[string]string
}

func openTab(t *testing.T, width, height int) *tab {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// The machine has no network: without these Chromium waits on connection attempts.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tb := &tab{t: t, dir: t.TempDir(), urls: map[network.RequestID]string{}, bytes: map[string]float64{}}
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithListener(tb.listen))
	tb.ctx = ctx
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx (no timeout)
		t.Fatalf("start %s: %v", path, err)
	}
	return tb
}

func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		msg := fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
		tb.console = append(tb.console, msg)
		switch ev.Type {
		case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeAssert:
			tb.problems = append(tb.problems, msg)
		case runtime.ConsoleAPICalledTypeWarning:
			tb.warnings = append(tb.warnings, msg)
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		desc := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			desc += " " + d.Exception.Description
		}
		tb.problems = append(tb.problems, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, desc))
	case *cdplog.EventEntryAdded:
		// Failed requests (a 404 from balance-at, a 422 from a refused command) are the
		// API answering; anything else at error level (CSP or Trusted Types violations,
		// script errors) is a problem.
		if e := ev.Entry; e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
			tb.problems = append(tb.problems, fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
		}
	case *cdppage.EventJavascriptDialogOpening:
		tb.dialogs = append(tb.dialogs, ev.Message)
		go func() { // a listener must not run commands itself
			_, _ = chromedp.Call(tb.ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: false})
		}()
	case *network.EventRequestWillBeSent:
		r := sentRequest{url: ev.Request.URL, typ: ev.Type, headers: map[string]string{}}
		for k, v := range ev.Request.Headers {
			r.headers[strings.ToLower(k)] = fmt.Sprint(v)
		}
		tb.requests = append(tb.requests, r)
	case *network.EventResponseReceived:
		tb.urls[ev.RequestID] = ev.Response.URL
	case *network.EventLoadingFinished:
		if u, ok := tb.urls[ev.RequestID]; ok {
			tb.bytes[u] += ev.EncodedDataLength
		}
	}
}

// do runs actions with a bound on how long they may take.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v%s%s", what, err, tb.report(), tb.screen())
	}
}

// screen is the text of the view on screen, to explain a failed wait.
func (tb *tab) screen() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + ' theme=' + document.documentElement.dataset.theme + ' scrollY=' + scrollY + '\n' + (document.querySelector('.view:not([hidden])') || document.body).innerText`))
	if err != nil {
		return ""
	}
	return "\nthe page shows: " + text
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v%s", expr, err, tb.report())
	}
	return v
}

// until polls a JavaScript predicate in the page (requestAnimationFrame by
// requestAnimationFrame) until it holds.
func (tb *tab) until(what, predicate string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		tb.t.Fatalf("waiting until %s: %v\npredicate: %s%s%s", what, err, predicate, tb.report(), tb.screen())
	}
}

func (tb *tab) visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// fill types into a field, replacing what it held.
func (tb *tab) fill(sel, value string) {
	tb.t.Helper()
	tb.clear(sel)
	tb.do("fill "+sel, chromedp.SendKeys(chromedp.CSS(sel), value))
}

// clear empties a field as a user would, with an input event.
func (tb *tab) clear(sel string) {
	tb.t.Helper()
	tb.do("clear "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Evaluate[chromedp.Void](`(() => {
		const el = document.querySelector(`+jsString(sel)+`);
		el.value = '';
		el.dispatchEvent(new Event('input', {bubbles: true}));
	})()`))
}

func (tb *tab) report() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.problems) == 0 && len(tb.dialogs) == 0 {
		return ""
	}
	return fmt.Sprintf("\npage problems: %q\ndialogs: %q", tb.problems, tb.dialogs)
}

func (tb *tab) checkClean() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, w := range tb.warnings {
		tb.t.Logf("page warning: %s", w)
	}
	if len(tb.problems) > 0 {
		tb.t.Errorf("the page reported %d problems:\n  %s", len(tb.problems), strings.Join(tb.problems, "\n  "))
	}
	if len(tb.dialogs) > 0 {
		tb.t.Errorf("the page opened dialogs (script injection?): %q", tb.dialogs)
	}
}

// screenshot saves a PNG of the whole page to the test's temporary directory (gone when
// the test ends) and, with CHRONICLE_UPDATE_SCREENSHOTS=1, to docs/screenshots/.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	tb.shot(name, true)
}

// shot saves a screenshot; publish says whether CHRONICLE_UPDATE_SCREENSHOTS=1 also
// writes it to docs/screenshots/.
func (tb *tab) shot(name string, publish bool) {
	tb.t.Helper()
	// From the top (sticky parts in place), once the last toast has gone.
	tb.do("settle for a screenshot", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), chromedp.WaitNotVisible(chromedp.CSS(`#toast`)))
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(tb.dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s", p)
	if publish && os.Getenv("CHRONICLE_UPDATE_SCREENSHOTS") == "1" {
		dir := filepath.Join("..", "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		tb.t.Logf("screenshot updated: docs/screenshots/%s", name)
	}
}

// loadReport reports the bytes the page loaded since the last report (per URL, headers
// included) and the paint timings of the current document.
func (tb *tab) loadReport(label string) {
	tb.t.Helper()
	tb.mu.Lock()
	defer func() {
		tb.mu.Lock()
		tb.bytes = map[string]float64{}
		tb.mu.Unlock()
	}()
	var total float64
	var assets, api float64
	var lines []string
	for u, b := range tb.bytes {
		total += b
		if strings.Contains(u, "/ui/") || strings.HasSuffix(u, "/") {
			assets += b
		} else {
			api += b
		}
		lines = append(lines, fmt.Sprintf("%7.0f %s", b, u))
	}
	n := len(tb.bytes)
	tb.mu.Unlock()
	timing := eval[map[string]float64](tb, `(() => {
		const out = {};
		for (const e of performance.getEntriesByType('paint')) out[e.name] = e.startTime;
		const m = performance.getEntriesByName('chronicle:first-data')[0];
		if (m) out['first-data-render'] = m.startTime;
		const nav = performance.getEntriesByType('navigation')[0];
		if (nav) { out['dom-content-loaded'] = nav.domContentLoadedEventEnd; out['load'] = nav.loadEventEnd; }
		return out;
	})()`)
	tb.t.Logf("%s: %d responses, %.0f bytes on the wire (%.0f dashboard files, %.0f API answers; the open event stream not counted)", label, n, total, assets, api)
	for _, l := range lines {
		tb.t.Logf("  %s", l)
	}
	tb.t.Logf("%s timing (ms since navigation): first-paint %.0f, first-contentful-paint %.0f, first data rendered %.0f, DOMContentLoaded %.0f, load %.0f",
		label, timing["first-paint"], timing["first-contentful-paint"], timing["first-data-render"], timing["dom-content-loaded"], timing["load"])
}

// seed gives the ledger some history so that the views have something to show.
func seed(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	must := func(_ client.CommandResult, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CreateAccount(ctx, client.CreateAccount{AccountID: "acme:payroll", OwnerName: "ACME Corp payroll", Currency: "USD", InitialBalance: "25000.00"}, ""))
	must(c.CreateAccount(ctx, client.CreateAccount{AccountID: "bob", OwnerName: "Bob Martin", Currency: "USD", InitialBalance: "150.00", OverdraftLimit: "100.00"}, ""))
	must(c.CreateAccount(ctx, client.CreateAccount{AccountID: "eu-ops", OwnerName: "Operations Europe", Currency: "EUR", InitialBalance: "1200.00"}, ""))
	must(c.Transfer(ctx, client.Transfer{FromAccountID: "acme:payroll", ToAccountID: "bob", Amount: "2350.00", Description: "salary March"}, ""))
	must(c.Withdraw(ctx, client.Money{AccountID: "bob", Amount: "60.00", Description: "ATM"}, ""))
	must(c.Deposit(ctx, client.Money{AccountID: "eu-ops", Amount: "310.45", Description: "refund"}, ""))
}

func TestDashboardBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	seed(t, n.Client)
	tb := openTab(t, 1440, 900)
	base := n.URL() + "/"

	// First load: no console errors, the log renders, the node pill fills in.
	// The overview is the landing view; the event log loads behind it.
	tb.do("load the dashboard", chromedp.Navigate(base), tb.visible(`#overview-money[data-state="ok"] #overview-money-rows tr`), tb.visible(`#node-pill[data-state="ok"]`))
	tb.loadReport("first load")
	checkOverviewSeed(tb, true)
	tb.do("the event log", chromedp.Navigate(base+"#/events"), tb.visible(`html[data-events-loaded="true"] #event-list li`))
	tb.do("reload", chromedp.Reload(), tb.visible(`html[data-events-loaded="true"] #event-list li`), tb.visible(`#node-pill[data-state="ok"]`))
	if asked := eval[bool](tb, `!document.querySelector('#signin').hidden || !document.querySelector('#sign-out').hidden || 'auth' in document.querySelector('#main').dataset`); asked {
		t.Error("a node without tokens got the token prompt or the sign-out control")
	}
	tb.loadReport("repeat visit")
	tb.until("the stream is live", `document.querySelector('#live-state').dataset.state === 'live'`)
	if got := eval[int](tb, `document.querySelectorAll('#event-list li').length`); got != 7 {
		t.Errorf("the log shows %d events, want 7 (the seed)", got)
	}
	tb.checkClean()

	var aliceCreated string // position of alice's AccountCreated
	t.Run("create account through the form appears live", func(t *testing.T) {
		tb.t = t
		tb.do("open commands", chromedp.Click(chromedp.CSS(`a[data-view="commands"]`)), tb.visible(`#cmd-create-account`))
		tb.fill(`#ca-id`, "alice")
		tb.fill(`#ca-owner`, "Alice Liddell")
		tb.fill(`#ca-initial`, "500.00")
		tb.do("submit", chromedp.Click(chromedp.CSS(`#cmd-create-account button[type=submit]`)), tb.visible(`#cmd-create-account .form-result[data-kind="ok"]`))
		res := eval[string](tb, `document.querySelector('#cmd-create-account .form-result').textContent`)
		if !strings.Contains(res, "Account alice opened") || !strings.Contains(res, "Position 8") {
			t.Errorf("result %q lacks the account or position", res)
		}
		tb.do("back to the log", chromedp.Click(chromedp.CSS(`a[data-view="events"]`)),
			tb.visible(`#event-list li[data-type="AccountCreated"][data-aggregate="alice"]`))
		aliceCreated = eval[string](tb, `document.querySelector('#event-list li[data-aggregate="alice"]').dataset.position`)
		tb.until("the new event is announced", `document.querySelector('#event-announcer').textContent.includes('alice')`)
	})

	t.Run("validation errors next to their field", func(t *testing.T) {
		tb.t = t
		tb.do("open commands", chromedp.Navigate(base+"#/commands"), tb.visible(`#cmd-deposit`))
		tb.fill(`#dp-account`, "alice")
		tb.fill(`#dp-amount`, "12.345")
		tb.do("submit", chromedp.Click(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#dp-amount[aria-invalid="true"]`), tb.visible(`#dp-amount-error`))
		if msg := eval[string](tb, `document.querySelector('#dp-amount-error').textContent`); !strings.Contains(msg, "decimal") {
			t.Errorf("amount error %q", msg)
		}
		tb.fill(`#dp-account`, "nobody")
		tb.fill(`#dp-amount`, "10")
		tb.do("submit", chromedp.Click(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#cmd-deposit .form-result[data-kind="error"]`))
		tb.until("the unknown account is named", `document.querySelector('#cmd-deposit').textContent.includes('nobody')`)
		tb.fill(`#dp-account`, "alice")
		tb.fill(`#dp-amount`, "25")
		tb.fill(`#dp-desc`, "pocket money")
		// A double click posts once: the second submission is refused while the first is
		// in flight, and both would carry the same Idempotency-Key.
		tb.do("submit", chromedp.DoubleClick(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#cmd-deposit .form-result[data-kind="ok"]`))
		tb.until("the new balance is shown", `document.querySelector('#cmd-deposit .result-balances').textContent.includes('525.00 USD')`)
		lines, err := n.Client.Transactions(context.Background(), "alice", 0, 10)
		if err != nil || len(lines) != 2 {
			t.Errorf("alice has %d statement lines after a double-clicked deposit, want 2 (err %v)", len(lines), err)
		}
		if v := eval[bool](tb, `document.querySelector('#dp-amount').hasAttribute('aria-invalid')`); v {
			t.Error("the amount is still marked invalid after a success")
		}
	})

	t.Run("filter the log", func(t *testing.T) {
		tb.t = t
		tb.do("open the log", chromedp.Navigate(base+"#/events"), tb.visible(`#event-list li[data-aggregate="alice"]`))
		tb.fill(`#filter-account`, "alice")
		tb.until("only alice's events show", `(() => {
			const shown = [...document.querySelectorAll('#event-list li')].filter(li => !li.hidden);
			return shown.length === 2 && shown.every(li => li.dataset.aggregate === 'alice');
		})()`)
		tb.clear(`#filter-account`)
		eval[chromedp.Void](tb, `(() => { const s = document.querySelector('#filter-type'); s.value = 'AccountCreated'; s.dispatchEvent(new Event('change')); })()`)
		tb.fill(`#filter-text`, "liddell")
		tb.until("type and text filter", `(() => {
			const shown = [...document.querySelectorAll('#event-list li')].filter(li => !li.hidden);
			return shown.length === 1 && shown[0].dataset.aggregate === 'alice' && document.querySelector('#event-count').textContent.startsWith('1 of');
		})()`)
		tb.fill(`#filter-text`, "no such thing anywhere")
		tb.do("empty message", tb.visible(`#event-empty`))
		tb.clear(`#filter-text`)
		eval[chromedp.Void](tb, `(() => { const s = document.querySelector('#filter-type'); s.value = ''; s.dispatchEvent(new Event('change')); document.querySelector('#filter-text').dispatchEvent(new Event('input')); })()`)
		tb.until("all events again", `[...document.querySelectorAll('#event-list li')].every(li => !li.hidden)`)
	})

	t.Run("pause and resume the live log", func(t *testing.T) {
		tb.t = t
		tb.do("pause", chromedp.Click(chromedp.CSS(`#pause-button`)), tb.visible(`#pause-button[aria-pressed="true"]`), tb.visible(`#live-state[data-state="paused"]`))
		if _, err := n.Client.Deposit(context.Background(), client.Money{AccountID: "eu-ops", Amount: "1.00", Description: "while paused"}, ""); err != nil {
			t.Fatal(err)
		}
		tb.until("the paused log counts the new event", `document.querySelector('#live-state').textContent.includes('1 new')`)
		if got := eval[bool](tb, `!!document.querySelector('#event-list li[data-position="10"]')`); got {
			t.Error("a paused log showed a new event")
		}
		tb.do("resume", chromedp.Click(chromedp.CSS(`#pause-button`)), tb.visible(`#pause-button[aria-pressed="false"]`), tb.visible(`#event-list li[data-position="10"]`), tb.visible(`#live-state[data-state="live"]`))
	})

	t.Run("expand an event and copy it", func(t *testing.T) {
		tb.t = t
		row := `#event-list li[data-type="AccountCreated"][data-aggregate="alice"]`
		tb.do("expand", chromedp.Click(chromedp.CSS(row+` .event-toggle`)), tb.visible(row+` .event-details pre.json .json-key`))
		if v := eval[string](tb, `document.querySelector('`+row+` .event-toggle').getAttribute('aria-expanded')`); v != "true" {
			t.Errorf("aria-expanded = %q", v)
		}
		js := eval[string](tb, `document.querySelector('`+row+` pre.json').textContent`)
		var ev struct {
			Position  uint64            `json:"position"`
			EventData map[string]string `json:"event_data"`
			Hash      string            `json:"hash"`
		}
		if err := json.Unmarshal([]byte(js), &ev); err != nil || ev.EventData["owner_name"] != "Alice Liddell" || len(ev.Hash) != 64 {
			t.Errorf("expanded JSON %q: %v", js, err)
		}
		tb.screenshot("event-log-light.png")
		tb.do("copy", chromedp.Click(chromedp.CSS(row+` .detail-actions button`)), tb.visible(`#toast.show`))
		if msg := eval[string](tb, `document.querySelector('#toast').textContent`); !strings.Contains(msg, "copied") {
			t.Errorf("copy said %q", msg)
		}
	})

	t.Run("a transfer changes the balance", func(t *testing.T) {
		tb.t = t
		tb.do("open alice", chromedp.Navigate(base+"#/accounts/alice"), tb.visible(`#account-card`), tb.visible(`#balance-chart .u-over`))
		tb.until("balance 525.00", `document.querySelector('#account-balance').textContent === '525.00 USD'`)
		tb.do("open commands", chromedp.Click(chromedp.CSS(`a[data-view="commands"]`)), tb.visible(`#cmd-transfer`))
		tb.fill(`#tr-from`, "alice")
		tb.fill(`#tr-to`, "bob")
		tb.fill(`#tr-amount`, "120.50")
		tb.fill(`#tr-desc`, "concert tickets")
		tb.do("transfer", chromedp.Click(chromedp.CSS(`#cmd-transfer button[type=submit]`)), tb.visible(`#cmd-transfer .form-result[data-kind="ok"]`))
		tb.until("both balances shown", `document.querySelector('#cmd-transfer .result-balances').textContent.includes('alice: 404.50 USD')`)
		// A refused command: the error sits next to the field the API names.
		tb.fill(`#wd-account`, "alice")
		tb.fill(`#wd-amount`, "5000")
		tb.do("overdraw", chromedp.Click(chromedp.CSS(`#cmd-withdraw button[type=submit]`)), tb.visible(`#wd-amount[aria-invalid="true"]`), tb.visible(`#cmd-withdraw .form-result[data-kind="error"]`))
		if msg := eval[string](tb, `document.querySelector('#cmd-withdraw .form-result').textContent`); !strings.Contains(msg, "insufficient_funds") {
			t.Errorf("overdraft refused with %q", msg)
		}
		tb.screenshot("commands.png")
		tb.do("back to alice", chromedp.Navigate(base+"#/accounts/alice"), tb.visible(`#account-card`))
		tb.until("balance 404.50", `document.querySelector('#account-balance').textContent === '404.50 USD'`)
		// Watch the page while another client moves money: the balance changes live.
		if _, err := n.Client.Transfer(context.Background(), client.Transfer{FromAccountID: "bob", ToAccountID: "alice", Amount: "19.99", Description: "half the taxi"}, ""); err != nil {
			t.Fatal(err)
		}
		tb.until("live balance 424.49", `document.querySelector('#account-balance').textContent === '424.49 USD'`)
		tb.until("statement and list follow", `document.querySelectorAll('#statement-rows tr').length === 4 &&
			document.querySelector('#account-rows tr[data-id="alice"] .balance-cell').textContent === '424.49 USD'`)
	})

	t.Run("time travel", func(t *testing.T) {
		tb.t = t
		// The opening line: the balance right after alice was opened.
		tb.do("travel to the opening", chromedp.Click(chromedp.CSS(`#statement-rows tr[data-position="`+aliceCreated+`"] .tt-line`)),
			tb.visible(`#tt-result[data-state="ok"]`))
		tb.until("balance 500.00 then", `document.querySelector('#tt-result .tt-balance').textContent === '500.00 USD'`)
		// An instant typed into the field, before the account existed.
		eval[chromedp.Void](tb, `(() => { const i = document.querySelector('#tt-input'); i.value = '2020-01-01T00:00:00'; i.dispatchEvent(new Event('change')); })()`)
		tb.do("before it existed", tb.visible(`#tt-result[data-state="missing"]`))
		if msg := eval[string](tb, `document.querySelector('#tt-result').textContent`); !strings.Contains(msg, "did not exist yet") {
			t.Errorf("before creation: %q", msg)
		}
		// A click on the chart picks an instant: near the right edge, today's balance.
		tb.do("scroll to the chart", chromedp.ScrollIntoView(chromedp.CSS(`#balance-chart`)))
		box := eval[map[string]float64](tb, `(() => { const r = document.querySelector('#balance-chart .u-over').getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()`)
		tb.do("click the chart", chromedp.MouseClickXY(box["x"]+box["w"]-3, box["y"]+box["h"]/2), tb.visible(`#tt-result[data-state="ok"]`))
		tb.until("the latest balance", `document.querySelector('#tt-result .tt-balance').textContent === '424.49 USD'`)
		if v := eval[string](tb, `document.querySelector('#tt-input').value`); !strings.HasPrefix(v, "20") {
			t.Errorf("the chart click left the instant field at %q", v)
		}
		tb.do("travel to the opening", chromedp.Click(chromedp.CSS(`#statement-rows tr[data-position="`+aliceCreated+`"] .tt-line`)))
		tb.until("balance 500.00 then", `document.querySelector('#tt-result .tt-balance').textContent === '500.00 USD'`)
		tb.screenshot("accounts.png")
	})

	t.Run("a hostile owner name is text", func(t *testing.T) {
		tb.t = t
		const hostile = `<img src=x onerror=alert(1)>`
		tb.do("open commands", chromedp.Navigate(base+"#/commands"), tb.visible(`#cmd-create-account`))
		tb.fill(`#ca-id`, "mallory")
		tb.fill(`#ca-owner`, hostile)
		tb.do("submit", chromedp.Click(chromedp.CSS(`#cmd-create-account button[type=submit]`)), tb.visible(`#cmd-create-account .form-result[data-kind="ok"]`))
		tb.do("the log", chromedp.Navigate(base+"#/events"), tb.visible(`#event-list li[data-aggregate="mallory"] .ev-owner`))
		if got := eval[string](tb, `document.querySelector('#event-list li[data-aggregate="mallory"] .ev-owner').textContent`); got != hostile {
			t.Errorf("owner shown as %q", got)
		}
		tb.do("the account", chromedp.Navigate(base+"#/accounts/mallory"), tb.visible(`#account-card`))
		tb.until("owner rendered", `document.querySelector('#account-owner').textContent === `+jsString(hostile))
		tb.until("the list row", `document.querySelector('#account-rows tr[data-id="mallory"] .owner-cell')?.textContent === `+jsString(hostile))
		if n := eval[int](tb, `document.querySelectorAll('img').length`); n != 0 {
			t.Errorf("%d img elements in the page", n)
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		tb.t = t
		tb.do("reload", chromedp.Navigate(base+"#/events"), chromedp.Reload(), tb.visible(`html[data-events-loaded="true"] #event-list li`))
		tb.do("tab", chromedp.KeyEvent("\t"))
		if id := eval[string](tb, `document.activeElement.id`); id != "skip-link" {
			t.Errorf("the first Tab focuses #%s, want the skip link", id)
		}
		tb.do("skip", chromedp.KeyEvent("\r"))
		tb.until("main has focus", `document.activeElement.id === 'main'`)
		// From main, Tab reaches the log's controls in reading order.
		var order []string
		for range 4 {
			tb.do("tab", chromedp.KeyEvent("\t"))
			order = append(order, eval[string](tb, `document.activeElement.id || document.activeElement.className`))
		}
		if want := []string{"pause-button", "filter-type", "filter-account", "filter-text"}; strings.Join(order, " ") != strings.Join(want, " ") {
			t.Errorf("tab order %q, want %q", order, want)
		}
		// An event row opens with the keyboard.
		tb.do("tab to the first event", chromedp.KeyEvent("\t"), chromedp.KeyEvent("\r"))
		tb.until("Enter expands the focused event", `document.activeElement.classList.contains('event-toggle') && document.activeElement.getAttribute('aria-expanded') === 'true'`)
		tb.do("close", chromedp.KeyEvent(" "))
		tb.until("Space collapses it", `document.activeElement.getAttribute('aria-expanded') === 'false'`)
	})

	t.Run("dark theme and phone", func(t *testing.T) {
		tb.t = t
		tb.do("dark", chromedp.Navigate(base+"#/events"), tb.visible(`#event-list li`), chromedp.Click(chromedp.CSS(`#theme-toggle`)),
			tb.visible(`html[data-theme="dark"] #theme-toggle[aria-pressed="true"]`))
		tb.do("reload keeps it", chromedp.Reload(), tb.visible(`html[data-theme="dark"][data-events-loaded="true"] #event-list li`))
		tb.do("expand", chromedp.Click(chromedp.CSS(`#event-list li[data-aggregate="mallory"] .event-toggle`)), tb.visible(`#event-list li[data-aggregate="mallory"] pre.json`))
		tb.screenshot("event-log-dark.png")
		tb.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Navigate(base+"#/accounts/alice"), chromedp.Reload(), tb.visible(`#balance-chart .u-over`))
		tb.until("chart fits the phone", `document.querySelector('#balance-chart canvas').getBoundingClientRect().right <= window.innerWidth`)
		if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 390 {
			wide := eval[[]string](tb, `[...document.querySelectorAll('body *')].filter(e => {
				return e.getBoundingClientRect().right > 391 && !e.closest('.table-wrap, .mainnav');
			}).slice(0, 12).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`)
			dims := eval[string](tb, `JSON.stringify({iw: innerWidth, cw: document.documentElement.clientWidth, sw: document.documentElement.scrollWidth, bw: document.body.scrollWidth, vv: visualViewport.width, toast: document.querySelector('#toast').getBoundingClientRect().right, skip: document.querySelector('.skip-link').getBoundingClientRect().right})`)
			t.Errorf("the page is %dpx wide on a 390px phone; too wide: %q %s", w, wide, dims)
		}
		tb.screenshot("accounts-phone-dark.png")
		tb.do("phone log", chromedp.Navigate(base+"#/events"), tb.visible(`#event-list li`))
		if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the event log is %dpx wide on a 390px phone", w)
		}
		tb.shot("event-log-phone-dark.png", false)
		tb.do("light again", chromedp.Click(chromedp.CSS(`#theme-toggle`)), tb.visible(`html[data-theme="light"]`), chromedp.EmulateReset())
	})

	tb.t = t
	tb.checkClean()
}

func TestDashboardClusterBrowser(t *testing.T) {
	chromiumPath(t)
	cl := nodetest.StartCluster(t, 3)
	leader := cl.Leader(t)
	follower := (leader + 1) % 3
	seed(t, cl.Nodes[leader].Client)
	tb := openTab(t, 1440, 900)
	tb.do("cluster view on a follower", chromedp.Navigate(cl.Nodes[follower].URL()+"/#/cluster"), tb.visible(`#member-rows tr`))
	tb.until("three members, one leader", `(() => {
		const rows = [...document.querySelectorAll('#member-rows tr')];
		return rows.length === 3 && rows.filter(r => r.classList.contains('leader-row')).length === 1 &&
			document.querySelectorAll('#member-rows .role-follower').length === 2;
	})()`)
	leaderID := eval[string](tb, `document.querySelector('#member-rows tr.leader-row').dataset.node`)
	if want := cl.Config(leader).NodeID; leaderID != want {
		t.Errorf("leader shown as %s, want %s", leaderID, want)
	}
	tb.until("this node is a follower", `document.querySelector('#node-pill').textContent.includes('Follower') &&
		document.querySelector('#node-status').textContent.includes('connected')`)
	// The Raft card says why its indexes and the log position differ.
	if note := eval[string](tb, `(document.querySelector('#raft-index-note') || {}).textContent || ''`); !strings.Contains(note, "Log position counts ledger events") || !strings.Contains(note, "Raft log entries") {
		t.Errorf("the Raft card does not explain index versus position: %q", note)
	}
	// Commands sent to a follower are forwarded; the stream there shows them.
	tb.do("event log on the follower", chromedp.Navigate(cl.Nodes[follower].URL()+"/#/events"), tb.visible(`#event-list li`))
	if _, err := cl.Nodes[leader].Client.Deposit(context.Background(), client.Money{AccountID: "bob", Amount: "5", Description: "tip"}, ""); err != nil {
		t.Fatal(err)
	}
	tb.until("the follower streams the deposit", `document.querySelectorAll('#event-list li').length === 8`)
	tb.do("back to the cluster", chromedp.Navigate(cl.Nodes[follower].URL()+"/#/cluster"), tb.visible(`#member-rows tr.leader-row`))
	tb.until("positions caught up", `[...document.querySelectorAll('#member-rows tr')].every(r => r.children[5].textContent === '8')`)
	tb.screenshot("cluster.png")
	tb.checkClean()
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDashboardBehindProxyBrowser serves the node under a path prefix through a proxy
// that refuses the event stream: the page must use relative URLs only, fall back to
// polling, and page through more history than one page holds.
func TestDashboardBehindProxyBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	// History longer than a page: 120 accounts and 150 deposits into one of them.
	var cmds []map[string]string
	for i := range 120 {
		cmds = append(cmds, map[string]string{"type": "create-account", "account_id": fmt.Sprintf("acct-%03d", i), "owner_name": fmt.Sprintf("Owner %03d", i), "currency": "USD"})
	}
	for i := range 150 {
		cmds = append(cmds, map[string]string{"type": "deposit", "account_id": "acct-007", "amount": fmt.Sprintf("%d.%02d", i+1, i%100)})
	}
	body, _ := json.Marshal(map[string]any{"commands": cmds})
	if status, err := n.Client.Do(context.Background(), http.MethodPost, "/commands/batch", body, nil, nil); err != nil || status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, err)
	}

	target, err := url.Parse(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	upstream := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		rest, ok := strings.CutPrefix(r.URL.Path, "/ledger/")
		if !ok {
			http.Error(w, "outside the prefix: "+r.URL.Path, http.StatusNotFound)
			return
		}
		if rest == "events/stream" {
			http.Error(w, "this proxy does not stream", http.StatusBadGateway)
			return
		}
		r.URL.Path, r.URL.RawPath = "/"+rest, ""
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	tb := openTab(t, 1280, 900)
	base := proxy.URL + "/ledger/"
	tb.do("load behind the prefix", chromedp.Navigate(base), tb.visible(`#overview-money[data-state="ok"]`), tb.visible(`#overview-metrics[data-state="on"]`))
	tb.do("the event log behind the prefix", chromedp.Navigate(base+"#/events"), tb.visible(`html[data-events-loaded="true"] #event-list li`))
	tb.until("the refused stream falls back to polling", `document.querySelector('#live-state').dataset.state === 'polling'`)
	if _, err := n.Client.CreateAccount(context.Background(), client.CreateAccount{AccountID: "late", OwnerName: "Late Comer", Currency: "USD"}, ""); err != nil {
		t.Fatal(err)
	}
	tb.do("polling delivers new events", tb.visible(`#event-list li[data-aggregate="late"]`))

	// Older history, page by page.
	if got := eval[int](tb, `document.querySelectorAll('#event-list li').length`); got != 101 {
		t.Errorf("%d events before paging, want 100 and the new one", got)
	}
	tb.do("older events", chromedp.Click(chromedp.CSS(`#older-button`)), tb.visible(`#event-list li[data-position="170"]`))
	tb.do("older events", chromedp.Click(chromedp.CSS(`#older-button`)), tb.visible(`#event-list li[data-position="1"]`), chromedp.WaitNotVisible(chromedp.CSS(`#older-button`)))

	// Accounts, page by page, and an exact lookup beyond the loaded pages.
	tb.do("accounts", chromedp.Click(chromedp.CSS(`a[data-view="accounts"]`)), tb.visible(`#account-rows tr`), tb.visible(`#more-accounts`))
	if got := eval[int](tb, `document.querySelectorAll('#account-rows tr').length`); got != 100 {
		t.Errorf("%d accounts on the first page, want 100", got)
	}
	tb.fill(`#account-query`, "acct-115")
	tb.do("exact lookup", tb.visible(`#account-rows tr[data-id="acct-115"] .tag`))
	tb.fill(`#account-query`, "Owner 00")
	tb.until("search filters the loaded pages", `document.querySelectorAll('#account-rows tr').length === 10`)
	tb.clear(`#account-query`)
	tb.do("more accounts", chromedp.Click(chromedp.CSS(`#more-accounts`)), tb.visible(`#account-rows tr[data-id="late"]`))

	// A long statement, page by page; the chart follows.
	tb.do("open acct-007", chromedp.Click(chromedp.CSS(`#account-rows tr[data-id="acct-007"] a`)), tb.visible(`#statement-rows tr`), tb.visible(`#older-lines`))
	if got := eval[int](tb, `document.querySelectorAll('#statement-rows tr').length`); got != 100 {
		t.Errorf("%d statement lines on the first page, want 100", got)
	}
	tb.do("older lines", chromedp.Click(chromedp.CSS(`#older-lines`)), chromedp.WaitNotVisible(chromedp.CSS(`#older-lines`)))
	if got := eval[int](tb, `document.querySelectorAll('#statement-rows tr').length`); got != 151 {
		t.Errorf("%d statement lines after paging, want 151", got)
	}
	tb.do("time travel behind the proxy", chromedp.Click(chromedp.CSS(`#statement-rows tr:last-child .tt-line`)), tb.visible(`#tt-result[data-state="ok"]`))

	mu.Lock()
	for _, p := range seen {
		if !strings.HasPrefix(p, "/ledger/") {
			t.Errorf("the page requested %s, outside its prefix", p)
		}
	}
	mu.Unlock()
	tb.checkClean()
}

// TestCrossOriginAttackBrowser: a page on another origin tries what any web page can do
// without a preflight, a fetch with mode no-cors and a plain HTML form with
// enctype="text/plain" whose field spells a JSON deposit; the node refuses both and the
// balance does not move.
func TestCrossOriginAttackBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	ctx := context.Background()
	if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "victim", OwnerName: "Victim", Currency: "USD", InitialBalance: "10.00"}, ""); err != nil {
		t.Fatal(err)
	}
	action := n.URL() + "/commands/deposit"
	page := `<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="f" method="POST" enctype="text/plain" target="sink" action="` + action + `">
<input type="hidden" name='{"account_id":"victim","amount":"1000","description":"' value='x"}'>
</form></body></html>`
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(attacker.Close)

	tb := openTab(t, 800, 600)
	tb.do("open the attacker's page", chromedp.Navigate(attacker.URL+"/"), tb.visible(`#f`))
	// The opaque response of a no-cors fetch hides the status from the page, not from us.
	tb.do("a no-cors fetch", chromedp.Evaluate[chromedp.Void](`fetch(`+jsString(action)+`, {method: 'POST', mode: 'no-cors',
		headers: {'Content-Type': 'text/plain'}, body: JSON.stringify({account_id: 'victim', amount: '1000'})}).then(() => true, () => true)`,
		chromedp.EvalAwaitPromise))
	tb.do("submit the form into a frame", chromedp.Evaluate[chromedp.Void](`window.answered = false;
		document.getElementById('sink').addEventListener('load', () => { window.answered = true; });
		document.getElementById('f').submit()`))
	tb.until("the node answers the form", `window.answered === true`)
	acct, err := n.Client.Account(ctx, "victim", 0)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != "10.00" {
		t.Fatalf("the attacker's page moved the balance to %s", acct.Balance)
	}
	events, err := n.Client.Events(ctx, client.EventsQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Fatalf("%d events after the attack, want the account's creation alone", len(events))
	}
}
