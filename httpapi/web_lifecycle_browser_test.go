package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestDashboardLifecycleBrowser freezes an account from the dashboard's form and sees the
// status badge on the account, the refusal of a withdrawal, the statement line and the
// event; then another client unfreezes it and the page follows live.
func TestDashboardLifecycleBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	seed(t, n.Client)
	tb := openTab(t, 1440, 900)
	base := n.URL() + "/"

	tb.do("open bob", chromedp.Navigate(base+"#/accounts/bob"), tb.visible(`#account-card`), tb.visible(`#account-facts .status-active`))
	tb.do("open the commands for bob", chromedp.Navigate(base+"#/commands?account=bob"), tb.visible(`#cmd-lifecycle`))
	if v := eval[string](tb, `document.querySelector('#lc-account').value`); v != "bob" {
		t.Fatalf("the lifecycle form's account is %q, want bob", v)
	}
	// Freezing needs a reason: the API names the field and the form shows it there.
	tb.do("freeze without a reason", chromedp.Click(chromedp.CSS(`#cmd-lifecycle button[type=submit]`)),
		tb.visible(`#lc-reason[aria-invalid="true"]`), tb.visible(`#cmd-lifecycle .form-result[data-kind="error"]`))
	tb.fill(`#lc-reason`, "chargeback review")
	tb.do("freeze", chromedp.Click(chromedp.CSS(`#cmd-lifecycle button[type=submit]`)), tb.visible(`#cmd-lifecycle .form-result[data-kind="ok"]`))
	if res := eval[string](tb, `document.querySelector('#cmd-lifecycle .form-result').textContent`); !strings.Contains(res, "Account bob frozen") {
		t.Errorf("freeze result %q", res)
	}
	// A frozen account refuses a withdrawal, next to the account field.
	tb.fill(`#wd-account`, "bob")
	tb.fill(`#wd-amount`, "1.00")
	tb.do("withdraw from frozen", chromedp.Click(chromedp.CSS(`#cmd-withdraw button[type=submit]`)),
		tb.visible(`#wd-account[aria-invalid="true"]`), tb.visible(`#cmd-withdraw .form-result[data-kind="error"]`))
	if msg := eval[string](tb, `document.querySelector('#cmd-withdraw .form-result').textContent`); !strings.Contains(msg, "account_frozen") {
		t.Errorf("withdrawal from a frozen account: %q", msg)
	}
	// Unfreezing an active account is refused: pick the action, submit twice.
	eval[chromedp.Void](tb, `(() => { const s = document.querySelector('#lc-action'); s.value = 'close-account';
		s.dispatchEvent(new Event('change')); s.dispatchEvent(new Event('input', {bubbles: true})); })()`)
	tb.fill(`#lc-reason`, "leaving")
	tb.do("close with a balance", chromedp.Click(chromedp.CSS(`#cmd-lifecycle button[type=submit]`)), tb.visible(`#cmd-lifecycle .form-result[data-kind="error"]`))
	if msg := eval[string](tb, `document.querySelector('#cmd-lifecycle .form-result').textContent`); !strings.Contains(msg, "balance_not_zero") {
		t.Errorf("close with a balance: %q", msg)
	}

	// The account shows its status: a badge in the facts and in the list, a statement line.
	tb.do("back to bob", chromedp.Navigate(base+"#/accounts/bob"), tb.visible(`#account-card`))
	tb.until("the frozen badge", `(document.querySelector('#account-facts .status-frozen') || {}).textContent === 'frozen'`)
	tb.until("the list tags bob", `(document.querySelector('#account-rows tr[data-id="bob"] .tag.warn') || {}).textContent === 'frozen'`)
	tb.until("the statement line", `[...document.querySelectorAll('#statement-rows tr')].some((r) => r.textContent.includes('Frozen') && r.textContent.includes('chargeback review'))`)
	tb.screenshot("account-frozen.png")

	// Another client unfreezes bob: the page follows live.
	if _, err := n.Client.UnfreezeAccount(context.Background(), client.AccountLifecycle{AccountID: "bob", Reason: "cleared"}, ""); err != nil {
		t.Fatal(err)
	}
	tb.until("the active badge", `(document.querySelector('#account-facts .status-active') || {}).textContent === 'active'`)
	tb.until("the list tag is gone", `document.querySelector('#account-rows tr[data-id="bob"]') && !document.querySelector('#account-rows tr[data-id="bob"] .tag.warn')`)

	// The event log shows both events with their reasons.
	tb.do("open the log", chromedp.Navigate(base+"#/events"), tb.visible(`#event-list .badge.type-AccountUnfrozen`), tb.visible(`#event-list .badge.type-AccountFrozen`))
	tb.until("the reason in the summary", `document.querySelector('#event-list').textContent.includes('chargeback review')`)
	tb.checkClean()
}
