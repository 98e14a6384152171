package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestDashboardPendingTransfersBrowser: a hold made with the transfer form's "Hold only"
// box shows the held and available amounts, the capture form posts part of it, the
// event log describes the capture, the account shows held and available, and a void of
// the finished hold is refused next to its transfer id field.
func TestDashboardPendingTransfersBrowser(t *testing.T) {
	chromiumPath(t)
	n := nodetest.Start(t)
	ctx := context.Background()
	for _, a := range []client.CreateAccount{
		{AccountID: "shop", OwnerName: "Shop", Currency: "USD", InitialBalance: "0"},
		{AccountID: "carol", OwnerName: "Carol", Currency: "USD", InitialBalance: "100.00"},
	} {
		if _, err := n.Client.CreateAccount(ctx, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	tb := openTab(t, 1440, 900)
	base := n.URL() + "/"
	tb.do("open commands", chromedp.Navigate(base+"#/commands"), tb.visible(`#cmd-transfer`))
	tb.fill(`#tr-from`, "carol")
	tb.fill(`#tr-to`, "shop")
	tb.fill(`#tr-amount`, "30.00")
	tb.do("tick hold only", chromedp.Click(chromedp.CSS(`#tr-pending`)))
	tb.fill(`#tr-timeout`, "600")
	tb.do("hold", chromedp.Click(chromedp.CSS(`#cmd-transfer button[type=submit]`)), tb.visible(`#cmd-transfer .form-result[data-kind="ok"]`))
	tb.until("held and available shown", `document.querySelector('#cmd-transfer .result-balances').textContent.includes('carol: 100.00 USD (held 30.00, available 70.00)')`)
	if msg := eval[string](tb, `document.querySelector('#cmd-transfer .form-result strong').textContent`); !strings.Contains(msg, "Held 30.00 on carol") {
		t.Errorf("hold result %q", msg)
	}
	if eval[bool](tb, `document.querySelector('#tr-pending').checked`) {
		t.Error("the hold box stays ticked after a hold")
	}
	id := eval[string](tb, `document.querySelectorAll('#cmd-transfer .result-meta code')[1].textContent`)
	if len(id) != 36 {
		t.Fatalf("transfer id %q", id)
	}

	tb.fill(`#cp-transfer`, id)
	tb.fill(`#cp-amount`, "12.50")
	tb.do("capture", chromedp.Click(chromedp.CSS(`#cmd-capture-transfer button[type=submit]`)), tb.visible(`#cmd-capture-transfer .form-result[data-kind="ok"]`))
	tb.until("balances after the capture", `document.querySelector('#cmd-capture-transfer .result-balances').textContent.includes('carol: 87.50 USD')`+
		` && document.querySelector('#cmd-capture-transfer .result-balances').textContent.includes('shop: 12.50 USD')`)

	// Finished: a void is refused, the error next to the transfer id.
	tb.fill(`#vd-transfer`, id)
	tb.do("void a captured hold", chromedp.Click(chromedp.CSS(`#cmd-void-transfer button[type=submit]`)),
		tb.visible(`#vd-transfer[aria-invalid="true"]`), tb.visible(`#cmd-void-transfer .form-result[data-kind="error"]`))
	if msg := eval[string](tb, `document.querySelector('#cmd-void-transfer .form-result').textContent`); !strings.Contains(msg, "transfer_not_pending") {
		t.Errorf("void refused with %q", msg)
	}

	tb.do("open carol", chromedp.Navigate(base+"#/accounts/carol"), tb.visible(`#account-card`))
	tb.until("held and available facts", `document.querySelector('#account-facts').textContent.includes('Held0.00 USD')`+
		` && document.querySelector('#account-facts').textContent.includes('Available87.50 USD')`)
	tb.until("statement lines", `[...document.querySelectorAll('#statement-rows tr')].map(r => r.textContent).join('|').includes('Hold')`)
	tb.do("open the log", chromedp.Navigate(base+"#/events"), tb.visible(`html[data-events-loaded="true"] #event-list li`))
	tb.until("the capture described", `document.querySelector('#event-list').textContent.includes('captured to shop')`)
	tb.checkClean()
}
