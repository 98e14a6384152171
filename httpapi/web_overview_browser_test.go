package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// checkOverviewSeed checks the overview of the seed (see seed): three accounts, money
// held per currency as in- minus outflows, and "metrics off" on a node without /metrics.
func checkOverviewSeed(tb *tab, metricsOn bool) {
	tb.t.Helper()
	tb.until("the overview shows the accounts", `document.querySelector('#overview-accounts').textContent === '3'`)
	held := eval[map[string]string](tb, `Object.fromEntries([...document.querySelectorAll('#overview-money-rows tr')].map(r => [r.dataset.currency, r.querySelector('td').textContent]))`)
	// USD: 25000 + 150 opening, 60 withdrawn; the salary transfer moves nothing in or out.
	if len(held) != 2 || held["USD"] != "25090.00" || held["EUR"] != "1510.45" {
		tb.t.Errorf("money held %v, want USD 25090.00 and EUR 1510.45", held)
	}
	if metricsOn {
		// The seed is six commands, none refused; the node's own /metrics counts them.
		tb.until("the node's counters", `document.querySelector('#overview-metrics').dataset.state === 'on' && document.querySelector('#overview-rate-note').textContent.startsWith('6 commands since')`)
		types := eval[map[string]string](tb, `Object.fromEntries([...document.querySelectorAll('#overview-type-rows tr')].map(r => [r.dataset.type, r.querySelectorAll('td')[1].textContent]))`)
		if len(types) != 4 || types["create-account"] != "3" || types["transfer"] != "1" || types["withdraw"] != "1" || types["deposit"] != "1" {
			tb.t.Errorf("commands by type %v, want create-account 3, transfer, withdraw and deposit 1 (types never sent left out)", types)
		}
		if n := eval[int](tb, `document.querySelectorAll('#overview-error-rows tr').length`); n != 0 {
			tb.t.Errorf("%d error rows for a seed with no refusals", n)
		}
	} else {
		tb.until("metrics are off", `document.querySelector('#overview-metrics').dataset.state === 'off' && document.querySelector('#overview-rate').textContent === 'metrics off'`)
		if txt := eval[string](tb, `document.querySelector('#overview-errors-empty').textContent`); txt != "metrics off" {
			tb.t.Errorf("errors card says %q on a node without metrics", txt)
		}
	}
	if cur := eval[string](tb, `document.querySelector('.mainnav a[aria-current="page"]').dataset.view`); cur != "overview" {
		tb.t.Errorf("the landing view is %q, want overview", cur)
	}
}

// fakeMetrics serves a Prometheus exposition whose chronicle_commands_total counters
// the test moves between scrapes.
type fakeMetrics struct {
	mu      sync.Mutex
	ok      int
	refused int
	scrapes int
	auth    []string
}

func (f *fakeMetrics) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scrapes++
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintf(w, "# HELP chronicle_commands_total Commands by type and result code.\n# TYPE chronicle_commands_total counter\n")
	fmt.Fprintf(w, "chronicle_commands_total{code=\"ok\",type=\"transfer\"} %d\n", f.ok)
	fmt.Fprintf(w, "chronicle_commands_total{code=\"insufficient_funds\",type=\"transfer\"} %d\n", f.refused)
	fmt.Fprintf(w, "chronicle_commands_total{code=\"ok\",type=\"deposit\"} 4\ngo_goroutines 12\n")
}

// TestDashboardOverviewMetricsOffBrowser: a node started with metrics off answers 404 on
// /metrics; the overview says "metrics off" and still shows the totals.
func TestDashboardOverviewMetricsOffBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t, func(c *node.Config) { c.DisableMetrics = true })
	seed(t, n.Client)
	tb := openTab(t, 1280, 900)
	tb.do("load", chromedp.Navigate(n.URL()+"/"), tb.visible(`#overview-money[data-state="ok"] #overview-money-rows tr`))
	checkOverviewSeed(tb, false)
	tb.checkClean()
}

// TestDashboardOverviewMetricsBrowser: with /metrics answering, the overview shows the
// commands per second computed from successive scrapes (sent with the dashboard's
// token), the totals, and errors by code; a hidden tab stops polling.
func TestDashboardOverviewMetricsBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	seed(t, n.Client)
	upstream := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: strings.TrimPrefix(n.URL(), "http://")})
	fm := &fakeMetrics{ok: 100, refused: 2}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fm.serve(w, r)
			return
		}
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	tb := openTab(t, 1280, 900)
	tb.do("load", chromedp.Navigate(front.URL+"/"), tb.visible(`#overview-metrics[data-state="on"]`))
	tb.until("the first scrape shows totals", `document.querySelector('#overview-rate-note').textContent.includes('106 commands since')`)
	fm.mu.Lock()
	fm.ok, fm.refused = 160, 5
	fm.mu.Unlock()
	tb.until("a rate after the second scrape", `/^\d+(\.\d)?\/s$/.test(document.querySelector('#overview-rate').textContent) && document.querySelector('#overview-rate').textContent !== '0/s'`)
	rate := eval[string](tb, `document.querySelector('#overview-rate').textContent`)
	if !regexp.MustCompile(`^\d+(\.\d)?/s$`).MatchString(rate) {
		t.Errorf("rate %q", rate)
	}
	errs := eval[map[string]string](tb, `Object.fromEntries([...document.querySelectorAll('#overview-error-rows tr')].map(r => [r.dataset.code, r.querySelectorAll('td')[1].textContent]))`)
	if len(errs) != 1 || errs["insufficient_funds"] != "5" {
		t.Errorf("errors by code %v, want insufficient_funds 5", errs)
	}
	types := eval[[]string](tb, `[...document.querySelectorAll('#overview-type-rows tr')].map(r => r.dataset.type)`)
	if strings.Join(types, ",") != "deposit,transfer" {
		t.Errorf("command types %v", types)
	}
	tb.shot("overview-fake-metrics.png", false) // the counters are the test's: never published
	// Money and accounts come from the node through the same page.
	checkHeld(tb, "USD", "25090.00")
	if _, err := n.Client.Deposit(context.Background(), client.Money{AccountID: "bob", Amount: "9.99"}, ""); err != nil {
		t.Fatal(err)
	}
	checkHeld(tb, "USD", "25099.99")

	// A hidden tab stops polling at once (no timer left); showing it reads again.
	tb.do("hide the tab", chromedp.Evaluate[chromedp.Void](`Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}); document.dispatchEvent(new Event('visibilitychange'))`))
	tb.until("polling paused", `document.querySelector('#overview-updated').dataset.polling === 'paused'`)
	fm.mu.Lock()
	fm.ok = 400
	fm.mu.Unlock()
	tb.do("show the tab", chromedp.Evaluate[chromedp.Void](`Object.defineProperty(document, 'hidden', {configurable: true, get: () => false}); document.dispatchEvent(new Event('visibilitychange'))`))
	tb.until("polling resumes with a fresh reading", `document.querySelector('#overview-updated').dataset.polling === 'on' && document.querySelector('#overview-rate-note').textContent.includes('409 commands since')`)
	// Leaving the view stops its polling too.
	tb.do("another view", chromedp.Navigate(front.URL+"/#/events"), tb.visible(`#event-list li`))
	tb.until("polling stopped", `document.querySelector('#overview-updated').dataset.polling === 'paused'`)
	fm.mu.Lock()
	for i, a := range fm.auth {
		if a != "" {
			t.Errorf("scrape %d sent Authorization %q on a node without tokens", i, a)
		}
	}
	fm.mu.Unlock()
	tb.checkClean()
}

func checkHeld(tb *tab, cur, want string) {
	tb.t.Helper()
	tb.until(cur+" held "+want, fmt.Sprintf(`(document.querySelector('#overview-money-rows tr[data-currency=%q] td') || {}).textContent === %q`, cur, want))
}
