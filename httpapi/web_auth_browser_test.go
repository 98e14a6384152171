package httpapi_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// The dashboard on a node with API tokens: it asks for a token, keeps it in
// sessionStorage for the tab, sends it as a bearer token on every request (the live
// stream included, read with fetch since an EventSource cannot send one) and never in a
// URL, and says plainly when a token's role is too weak.

// eventually polls cond until it holds (the node makes its bootstrap token in the
// background).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// signIn types a token into the prompt and submits it.
func (tb *tab) signIn(secret string) {
	tb.t.Helper()
	tb.do("the token prompt", tb.visible(`#signin-token`))
	tb.fill(`#signin-token`, secret)
	tb.do("sign in", chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))
}

// sent returns the requests the page sent so far.
func (tb *tab) sent() []sentRequest {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]sentRequest(nil), tb.requests...)
}

// checkSecrets fails when a secret appears in a request URL or a console message.
func (tb *tab) checkSecrets(secrets ...string) {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, s := range secrets {
		for _, r := range tb.requests {
			if strings.Contains(r.url, s) {
				tb.t.Errorf("a token travelled in a URL: %s", r.url)
			}
		}
		for _, m := range tb.console {
			if strings.Contains(m, s) {
				tb.t.Errorf("a token was logged to the console: %s", m)
			}
		}
	}
}

func TestDashboardAuthBrowser(t *testing.T) {
	chromiumPath(t)
	file := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, func(c *node.Config) { c.BootstrapTokenFile = file })
	ctx := context.Background()
	var admin *client.Client
	eventually(t, "the bootstrap admin token works", func() bool {
		b, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		admin = n.Client.WithToken(strings.TrimSpace(string(b)))
		_, err = admin.Tokens(ctx)
		return err == nil
	})
	reader, err := admin.CreateToken(ctx, "viewer", "reader")
	if err != nil {
		t.Fatal(err)
	}
	writer, err := admin.CreateToken(ctx, "clerk", "writer")
	if err != nil {
		t.Fatal(err)
	}
	seed(t, admin)
	const wrong = "chr_not-a-token-anyone-made-0123456789"
	head := func() uint64 {
		t.Helper()
		evs, err := admin.Events(ctx, client.EventsQuery{Limit: 1})
		if err != nil || len(evs) == 0 {
			t.Fatalf("head: %v", err)
		}
		return evs[0].Position
	}

	tb := openTab(t, 1280, 900)
	base := n.URL() + "/"
	noToken := `sessionStorage.getItem('chronicle-token') === null`

	t.Run("the page asks for a token and shows no ledger data", func(t *testing.T) {
		tb.t = t
		tb.do("load", chromedp.Navigate(base), tb.visible(`#signin-token`), tb.visible(`#main[data-auth="required"]`))
		tb.until("the views stay hidden and empty", `(() => {
			const input = document.querySelector('#signin-token');
			return document.querySelector('#view-events').offsetParent === null &&
				document.querySelectorAll('#event-list li, #account-rows tr').length === 0 &&
				document.activeElement === input && input.type === 'password' &&
				document.querySelector('label[for="signin-token"]').textContent === 'API token' &&
				document.querySelector('#sign-out').hidden &&
				!document.body.innerText.includes('ACME');
		})()`)
		tb.screenshot("signin.png")
	})

	t.Run("a wrong token keeps the prompt with an error", func(t *testing.T) {
		tb.t = t
		tb.signIn(wrong)
		tb.do("refused", tb.visible(`#signin-token[aria-invalid="true"]`), tb.visible(`#signin-error`))
		if msg := eval[string](tb, `document.querySelector('#signin-error').textContent`); !strings.Contains(msg, "refused") || !strings.Contains(msg, "unknown API token") {
			t.Errorf("the error says %q", msg)
		}
		if ok := eval[bool](tb, noToken+` && !document.querySelector('#signin').hidden && document.querySelectorAll('#event-list li').length === 0`); !ok {
			t.Error("a refused token was kept, or the prompt went away")
		}
	})

	t.Run("a reader token loads the ledger and streams it live", func(t *testing.T) {
		tb.t = t
		sentBefore := len(tb.sent())
		tb.signIn(reader.Secret)
		// The landing view, the overview, reads its totals and /metrics with the token.
		tb.do("the overview loads", tb.visible(`#overview-money[data-state="ok"] #overview-money-rows tr`), chromedp.WaitNotVisible(chromedp.CSS(`#signin`)), tb.visible(`#sign-out`))
		tb.until("the overview read the metrics", `document.querySelector('#overview-metrics').dataset.state === 'on'`)
		scraped := 0
		for _, r := range tb.sent()[sentBefore:] {
			if strings.HasSuffix(r.url, "/overview") || strings.HasSuffix(r.url, "/metrics") {
				scraped++
				if got := r.headers["authorization"]; got != "Bearer "+reader.Secret {
					t.Errorf("%s carried Authorization %q", r.url, got)
				}
			}
		}
		if scraped < 2 {
			t.Errorf("after signing in the overview sent %d requests for its totals and metrics, want both", scraped)
		}
		tb.do("the log loads", chromedp.Click(chromedp.CSS(`a[data-view="events"]`)), tb.visible(`html[data-events-loaded="true"] #event-list li`))
		tb.until("the stream is live", `document.querySelector('#live-state').dataset.state === 'live'`)
		if got := eval[int](tb, `document.querySelectorAll('#event-list li').length`); got != 7 {
			t.Errorf("the log shows %d events, want 7", got)
		}
		if ok := eval[bool](tb, `sessionStorage.getItem('chronicle-token') === `+jsString(reader.Secret)+` &&
			!JSON.stringify(Object.entries(localStorage)).includes(`+jsString(reader.Secret)+`) && document.cookie === ''`); !ok {
			t.Error("the token is not in sessionStorage alone")
		}
		// An event committed after the page loaded arrives through the stream.
		if _, err := admin.Deposit(ctx, client.Money{AccountID: "bob", Amount: "7.00", Description: "after the page loaded"}, ""); err != nil {
			t.Fatal(err)
		}
		tb.do("the live event", tb.visible(`#event-list li[data-position="8"][data-aggregate="bob"]`))
		var streams int
		for _, r := range tb.sent() {
			if !strings.Contains(r.url, "/events/stream") {
				continue
			}
			streams++
			if r.typ != network.ResourceTypeFetch {
				t.Errorf("the stream was requested as %s, want Fetch", r.typ)
			}
			if got := r.headers["authorization"]; got != "Bearer "+reader.Secret {
				t.Errorf("stream request %s carried Authorization %q", r.url, got)
			}
		}
		if streams == 0 {
			t.Error("the page opened no event stream")
		}
		tb.do("accounts", chromedp.Click(chromedp.CSS(`a[data-view="accounts"]`)), tb.visible(`#account-rows tr[data-id="bob"]`))
	})

	t.Run("a reader token on the commands view gets a plain message and writes nothing", func(t *testing.T) {
		tb.t = t
		before := head()
		tb.do("commands", chromedp.Click(chromedp.CSS(`a[data-view="commands"]`)), tb.visible(`#cmd-deposit`))
		tb.fill(`#dp-account`, "bob")
		tb.fill(`#dp-amount`, "5")
		tb.do("deposit", chromedp.Click(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#cmd-deposit .form-result[data-kind="error"]`))
		msg := eval[string](tb, `document.querySelector('#cmd-deposit .form-result').textContent`)
		if !strings.Contains(msg, "this token is a reader token; commands need a writer token") || !strings.Contains(msg, "forbidden_role") {
			t.Errorf("the refusal says %q", msg)
		}
		if ok := eval[bool](tb, `document.querySelector('#signin').hidden`); !ok {
			t.Error("a 403 brought up the token prompt")
		}
		if after := head(); after != before {
			t.Errorf("a reader's deposit moved the head from %d to %d", before, after)
		}
	})

	t.Run("the token lasts the tab across a reload; sign out forgets it", func(t *testing.T) {
		tb.t = t
		tb.do("reload", chromedp.Navigate(base+"#/events"), chromedp.Reload(), tb.visible(`html[data-events-loaded="true"] #event-list li`), tb.visible(`#sign-out`))
		tb.do("sign out", chromedp.Click(chromedp.CSS(`#sign-out`)), tb.visible(`#signin-token`))
		if ok := eval[bool](tb, noToken+` && document.querySelectorAll('#event-list li').length === 0 && document.querySelector('#sign-out').hidden`); !ok {
			t.Error("signing out left the token or the ledger on the page")
		}
	})

	t.Run("a writer token sends commands; a revoked token brings the prompt back", func(t *testing.T) {
		tb.t = t
		tb.signIn(writer.Secret)
		tb.do("the log loads", tb.visible(`html[data-events-loaded="true"] #event-list li`))
		tb.do("commands", chromedp.Click(chromedp.CSS(`a[data-view="commands"]`)), tb.visible(`#cmd-deposit`))
		tb.fill(`#dp-account`, "bob")
		tb.fill(`#dp-amount`, "5")
		tb.do("deposit", chromedp.Click(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#cmd-deposit .form-result[data-kind="ok"]`))
		tb.do("the deposit in the log", chromedp.Click(chromedp.CSS(`a[data-view="events"]`)), tb.visible(`#event-list li[data-position="9"]`))
		if _, err := admin.RevokeToken(ctx, "clerk"); err != nil {
			t.Fatal(err)
		}
		before := head()
		tb.do("commands", chromedp.Click(chromedp.CSS(`a[data-view="commands"]`)), tb.visible(`#cmd-deposit`))
		tb.fill(`#dp-account`, "bob")
		tb.fill(`#dp-amount`, "6")
		tb.do("deposit with a revoked token", chromedp.Click(chromedp.CSS(`#cmd-deposit button[type=submit]`)), tb.visible(`#signin-token`))
		tb.until("the prompt says why, and the token is gone", noToken+` && document.querySelector('#signin-reason').textContent.includes('revoked')`)
		if after := head(); after != before {
			t.Errorf("a revoked token's deposit moved the head from %d to %d", before, after)
		}
		// Another token carries on where the page was: the form kept its content.
		tb.signIn(reader.Secret)
		tb.do("back on the commands view", chromedp.WaitNotVisible(chromedp.CSS(`#signin`)), tb.visible(`#cmd-deposit`))
		if v := eval[string](tb, `document.querySelector('#dp-amount').value`); v != "6" {
			t.Errorf("the deposit form holds %q after signing in again, want 6", v)
		}
		if _, err := admin.Deposit(ctx, client.Money{AccountID: "bob", Amount: "1.00"}, ""); err != nil {
			t.Fatal(err)
		}
		tb.do("the log streams again", chromedp.Click(chromedp.CSS(`a[data-view="events"]`)), tb.visible(`#event-list li[data-position="10"]`))
	})

	tb.t = t
	tb.checkSecrets(reader.Secret, writer.Secret, wrong)
	for _, r := range tb.sent() {
		if h := r.headers["authorization"]; h != "" && strings.Contains(r.url, "/ui/") {
			t.Errorf("a dashboard file was requested with Authorization: %s", r.url)
		}
	}
	tb.checkClean()
	status, err := n.Client.Do(ctx, http.MethodGet, "/events?limit=1", nil, nil, nil)
	if err == nil || status != http.StatusUnauthorized {
		t.Errorf("the node serves events without a token: %d %v", status, err)
	}
}

// TestEventStreamParserBrowser feeds the dashboard's text/event-stream parser the frames
// the node writes, split at awkward places (a CRLF across chunks, a field across chunks),
// and checks what it dispatches; and on a node without tokens the stream is a fetch
// without an Authorization header.
func TestEventStreamParserBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	tb := openTab(t, 1024, 768)
	tb.do("load", chromedp.Navigate(n.URL()+"/"), tb.visible(`html[data-events-loaded="true"]`))
	tb.until("the stream is live", `document.querySelector('#live-state').dataset.state === 'live'`)
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const { EventStreamParser } = await import('./ui/lib/feed.js');
		const out = [];
		const p = new EventStreamParser((ev) => out.push(ev));
		for (const chunk of ['retry: 2000\n: position 0\n\n', 'id: 5\r\nevent: MoneyDeposited\r', '\ndata: {"a":\ndata:1}\n', '\n',
			'data: x\r\rdata:y\n\n', 'event: error\nda', 'ta: "boom"\n\n: heartbeat 5\n\n', 'id\ndata\n\n', 'data: never dispatched']) p.push(chunk);
		return JSON.stringify({ out, retry: p.retry });
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"out":[{"type":"MoneyDeposited","data":"{\"a\":\n1}","lastEventId":"5"},{"type":"message","data":"x","lastEventId":"5"},` +
		`{"type":"message","data":"y","lastEventId":"5"},{"type":"error","data":"\"boom\"","lastEventId":"5"},{"type":"message","data":"","lastEventId":""}],"retry":2000}`
	if got != want {
		t.Errorf("parsed\n%s\nwant\n%s", got, want)
	}
	var streams int
	for _, r := range tb.sent() {
		if strings.Contains(r.url, "/events/stream") {
			streams++
			if r.typ != network.ResourceTypeFetch || r.headers["authorization"] != "" {
				t.Errorf("stream request %s as %s with Authorization %q", r.url, r.typ, r.headers["authorization"])
			}
		}
	}
	if streams == 0 {
		t.Error("no stream request")
	}
	tb.checkClean()
}
