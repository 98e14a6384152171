package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func int64p(v int64) *int64 { return &v }

func wantAccount(t *testing.T, c *client.Client, id, balance, held, available string) {
	t.Helper()
	a, err := c.Account(context.Background(), id, 0)
	if err != nil || a.Balance != balance || a.Held != held || a.Available != available {
		t.Fatalf("account %s: %+v, %v; want balance %s held %s available %s", id, a, err, balance, held, available)
	}
}

// postRaw sends body to path and returns the status and error code ("" on success).
func postRaw(t *testing.T, c *client.Client, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.BaseURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e struct{ Error, Code string }
	_ = json.Unmarshal(data, &e)
	if resp.StatusCode >= 400 && (e.Code == "" || e.Error == "") {
		t.Fatalf("%s: %d without a JSON error: %q", path, resp.StatusCode, data)
	}
	return resp.StatusCode, e.Code
}

// TestPendingTransfersHTTP walks a hold through capture and void over HTTP, and sends
// every refusal of the two-phase commands: each is its 4xx with a stable code and writes
// nothing.
func TestPendingTransfersHTTP(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "A", "USD", "100.00")
	mustCreate(t, c, "B", "USD", "0")
	mustCreate(t, c, "E", "EUR", "5.00")

	hold, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "30", Pending: true, TimeoutSeconds: int64p(600)}, "")
	if err != nil || hold.Status != http.StatusCreated || hold.TransferID == "" || len(hold.Events) != 1 || hold.Events[0].Type != "TransferPending" {
		t.Fatalf("hold: %+v, %v", hold, err)
	}
	wantAccount(t, c, "A", "100.00", "30.00", "70.00")
	wantAccount(t, c, "B", "0.00", "0.00", "0.00")
	// Available, not balance, bounds a withdrawal.
	if _, err := c.Withdraw(ctx, client.Money{AccountID: "A", Amount: "70.01"}, ""); client.CodeOf(err) != "insufficient_funds" {
		t.Fatalf("withdraw above available: %v", err)
	}
	second, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "10", Pending: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	posted, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	before := head(t, c)

	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"unknown transfer", "/commands/capture-transfer", `{"transfer_id":"00000000-0000-0000-0000-000000000000"}`, 404, "transfer_not_found"},
		{"void unknown", "/commands/void-transfer", `{"transfer_id":"nope"}`, 404, "transfer_not_found"},
		{"posted transfer", "/commands/capture-transfer", `{"transfer_id":"` + posted.TransferID + `"}`, 404, "transfer_not_found"},
		{"missing id", "/commands/capture-transfer", `{}`, 400, "missing_field"},
		{"id of the wrong type", "/commands/void-transfer", `{"transfer_id":5}`, 400, "invalid_field"},
		{"unknown field", "/commands/void-transfer", `{"transfer_id":"` + hold.TransferID + `","amount":"1"}`, 400, "unknown_field"},
		{"capture above the hold", "/commands/capture-transfer", `{"transfer_id":"` + hold.TransferID + `","amount":"30.01"}`, 422, "invalid_amount"},
		{"capture zero", "/commands/capture-transfer", `{"transfer_id":"` + hold.TransferID + `","amount":"0"}`, 422, "invalid_amount"},
		{"capture too precise", "/commands/capture-transfer", `{"transfer_id":"` + hold.TransferID + `","amount":"1.001"}`, 422, "invalid_amount"},
		{"timeout zero", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":true,"timeout_seconds":0}`, 400, "invalid_field"},
		{"timeout negative", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":true,"timeout_seconds":-5}`, 400, "invalid_field"},
		{"timeout too long", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":true,"timeout_seconds":2592001}`, 400, "invalid_field"},
		{"timeout fraction", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":true,"timeout_seconds":1.5}`, 400, "invalid_field"},
		{"timeout string", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":true,"timeout_seconds":"60"}`, 400, "invalid_field"},
		{"timeout without pending", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"timeout_seconds":60}`, 400, "invalid_field"},
		{"pending not a boolean", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":1,"pending":"yes"}`, 400, "invalid_field"},
		{"hold above available", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":"59.01","pending":true}`, 422, "insufficient_funds"},
		{"hold cross currency", "/commands/transfer", `{"from_account_id":"A","to_account_id":"E","amount":1,"pending":true}`, 422, "currency_mismatch"},
		{"hold to unknown", "/commands/transfer", `{"from_account_id":"A","to_account_id":"ghost","amount":1,"pending":true}`, 404, "account_not_found"},
		{"node's own command", "/commands/batch", `{"commands":[{"type":"expire-transfers"}]}`, 400, "invalid_field"},
		{"no route for expire", "/commands/expire-transfers", `{}`, 404, "not_found"},
		{"batch bad capture", "/commands/batch", `{"commands":[{"type":"capture-transfer","transfer_id":"` + hold.TransferID + `","reason":"x"}]}`, 400, "unknown_field"},
	}
	for _, tc := range cases {
		if status, code := postRaw(t, c, tc.path, tc.body); status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
		}
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused commands wrote to the log: head %d -> %d", before, after)
	}

	// Capture part of the first hold; the rest is released with it.
	capt, err := c.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: hold.TransferID, Amount: "12.50"}, "cap-1")
	if err != nil || capt.TransferID != hold.TransferID || len(capt.Events) != 2 || capt.Events[0].Type != "TransferCaptured" || capt.Events[0].AggregateID != "A" {
		t.Fatalf("capture: %+v, %v", capt, err)
	}
	again, err := c.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: hold.TransferID, Amount: "12.50"}, "cap-1")
	if err != nil || !again.Replayed || again.Position != capt.Position {
		t.Fatalf("retried capture: %+v, %v", again, err)
	}
	wantAccount(t, c, "A", "86.50", "10.00", "76.50")
	wantAccount(t, c, "B", "13.50", "0.00", "13.50")
	if _, err := c.VoidTransfer(ctx, client.VoidTransfer{TransferID: second.TransferID, Reason: "order cancelled"}, ""); err != nil {
		t.Fatal(err)
	}
	wantAccount(t, c, "A", "86.50", "0.00", "86.50")
	before = head(t, c)
	for _, path := range []string{"/commands/capture-transfer", "/commands/void-transfer"} {
		for _, id := range []string{hold.TransferID, second.TransferID} {
			if status, code := postRaw(t, c, path, `{"transfer_id":"`+id+`"}`); status != 422 || code != "transfer_not_pending" {
				t.Errorf("%s of a finished hold: %d %s", path, status, code)
			}
		}
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused commands wrote to the log: head %d -> %d", before, after)
	}

	// The statement: a hold and its release leave the balance alone, a capture moves it.
	txs, err := c.Transactions(ctx, "A", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, l := range txs {
		types = append(types, l.Type+":"+l.Amount+":"+l.BalanceAfter)
	}
	want := "hold_voided:10.00:86.50 transfer_out:12.50:86.50 transfer_out:1.00:99.00 hold:10.00:100.00 hold:30.00:100.00 opening_balance:100.00:100.00"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("statement of A:\n%s\nwant\n%s", got, want)
	}
	bal, err := c.BalanceAt(ctx, "A", capt.CommittedAt.Add(-time.Nanosecond))
	if err != nil || bal.Balance != "99.00" {
		t.Fatalf("balance before the capture: %+v, %v", bal, err)
	}

	// A batch mixes a hold and a capture of an earlier one.
	h3, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "5", Pending: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	var br struct {
		Results []struct {
			Success    bool   `json:"success"`
			Code       string `json:"code"`
			TransferID string `json:"transfer_id"`
		} `json:"results"`
	}
	body := `{"commands":[{"type":"transfer","from_account_id":"A","to_account_id":"B","amount":"2","pending":true,"timeout_seconds":60},` +
		`{"type":"capture-transfer","transfer_id":"` + h3.TransferID + `"},{"type":"void-transfer","transfer_id":"` + h3.TransferID + `"}]}`
	if _, err := c.Do(ctx, http.MethodPost, "/commands/batch", []byte(body), nil, &br); err != nil {
		t.Fatal(err)
	}
	if len(br.Results) != 3 || !br.Results[0].Success || br.Results[0].TransferID == "" || !br.Results[1].Success || br.Results[2].Code != "transfer_not_pending" {
		t.Fatalf("batch: %+v", br)
	}
	wantAccount(t, c, "A", "81.50", "2.00", "79.50")
	wantAccount(t, c, "B", "18.50", "0.00", "18.50")
}

// TestPendingTransferExpiresHTTP: the leader's sweep expires a hold past its deadline
// with no command touching it; a capture then gets transfer_expired and writes nothing.
func TestPendingTransferExpiresHTTP(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.HoldSweepInterval = 20 * time.Millisecond })
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "A", "USD", "10.00")
	mustCreate(t, c, "B", "USD", "0")
	hold, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "4", Pending: true, TimeoutSeconds: int64p(1)}, "")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := c.Account(ctx, "A", 0)
		if err != nil {
			t.Fatal(err)
		}
		if a.Held == "0.00" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hold did not expire: %+v", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	evs, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.EventType != "TransferExpired" || last.Data.TransferID != hold.TransferID || last.CreatedBy != "hold-sweep" {
		t.Fatalf("last event %+v", last)
	}
	before := head(t, c)
	if status, code := postRaw(t, c, "/commands/capture-transfer", `{"transfer_id":"`+hold.TransferID+`"}`); status != 422 || code != "transfer_expired" {
		t.Fatalf("capture after expiry: %d %s", status, code)
	}
	if after := head(t, c); after != before {
		t.Fatalf("head %d -> %d", before, after)
	}
	wantAccount(t, c, "A", "10.00", "0.00", "10.00")
}
