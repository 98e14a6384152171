package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestAccountLifecycleHTTP drives freeze, unfreeze and close through the API: the
// commands, their idempotency, the statuses in queries, statements and events, and every
// refusal with its status and stable code, none of which writes anything.
func TestAccountLifecycleHTTP(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "a", "USD", "100.00")
	mustCreate(t, c, "b", "USD", "0")
	mustCreate(t, c, "c", "USD", "20.00")

	fr, err := c.FreezeAccount(ctx, client.AccountLifecycle{AccountID: "a", Reason: "court order 17"}, "fz-a")
	if err != nil || fr.Status != http.StatusCreated || !fr.Success || fr.AccountID != "a" || len(fr.Events) != 1 || fr.Events[0].Type != chronicle.EventAccountFrozen {
		t.Fatalf("freeze: %+v, %v", fr, err)
	}
	again, err := c.FreezeAccount(ctx, client.AccountLifecycle{AccountID: "a", Reason: "court order 17"}, "fz-a")
	if err != nil || again.Status != http.StatusOK || !again.Replayed || again.Position != fr.Position {
		t.Fatalf("retried freeze: %+v, %v", again, err)
	}
	if a, err := c.Account(ctx, "a", fr.Position); err != nil || a.Status != "frozen" || a.Balance != "100.00" {
		t.Fatalf("frozen account: %+v, %v", a, err)
	}
	// Credits reach a frozen account.
	if _, err := c.Deposit(ctx, client.Money{AccountID: "a", Amount: "5"}, ""); err != nil {
		t.Fatalf("deposit to a frozen account: %v", err)
	}
	if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: "c", ToAccountID: "a", Amount: "10"}, ""); err != nil {
		t.Fatalf("transfer to a frozen account: %v", err)
	}
	cl, err := c.CloseAccount(ctx, client.AccountLifecycle{AccountID: "b", Reason: "customer left"}, "")
	if err != nil || cl.Events[0].Type != chronicle.EventAccountClosed {
		t.Fatalf("close: %+v, %v", cl, err)
	}

	before := head(t, c)
	post := func(path, body string, hdr map[string]string) (int, string, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct{ Error, Code, Field string }
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, e.Code, b
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"withdraw frozen", "/commands/withdraw", `{"account_id":"a","amount":"1"}`, 422, "account_frozen"},
		{"transfer from frozen", "/commands/transfer", `{"from_account_id":"a","to_account_id":"c","amount":"1"}`, 422, "account_frozen"},
		{"freeze frozen", "/commands/freeze-account", `{"account_id":"a","reason":"again"}`, 422, "account_frozen"},
		{"unfreeze active", "/commands/unfreeze-account", `{"account_id":"c"}`, 422, "account_not_frozen"},
		{"close with balance", "/commands/close-account", `{"account_id":"a","reason":"x"}`, 422, "balance_not_zero"},
		{"deposit closed", "/commands/deposit", `{"account_id":"b","amount":"1"}`, 422, "account_closed"},
		{"withdraw closed", "/commands/withdraw", `{"account_id":"b","amount":"1"}`, 422, "account_closed"},
		{"transfer to closed", "/commands/transfer", `{"from_account_id":"c","to_account_id":"b","amount":"1"}`, 422, "account_closed"},
		{"transfer from closed", "/commands/transfer", `{"from_account_id":"b","to_account_id":"c","amount":"1"}`, 422, "account_closed"},
		{"freeze closed", "/commands/freeze-account", `{"account_id":"b","reason":"x"}`, 422, "account_closed"},
		{"unfreeze closed", "/commands/unfreeze-account", `{"account_id":"b"}`, 422, "account_closed"},
		{"close closed", "/commands/close-account", `{"account_id":"b","reason":"x"}`, 422, "account_closed"},
		{"freeze unknown", "/commands/freeze-account", `{"account_id":"ghost","reason":"x"}`, 404, "account_not_found"},
		{"close unknown", "/commands/close-account", `{"account_id":"ghost","reason":"x"}`, 404, "account_not_found"},
		{"freeze external", "/commands/freeze-account", `{"account_id":"@world:USD","reason":"x"}`, 400, "invalid_account_id"},
		{"close external", "/commands/close-account", `{"account_id":"@world:USD","reason":"x"}`, 400, "invalid_account_id"},
		{"freeze without reason", "/commands/freeze-account", `{"account_id":"c"}`, 400, "missing_field"},
		{"close without reason", "/commands/close-account", `{"account_id":"c","reason":""}`, 400, "missing_field"},
		{"reason with control", "/commands/freeze-account", `{"account_id":"c","reason":"a\u0007b"}`, 400, "invalid_field"},
		{"reason too long", "/commands/freeze-account", `{"account_id":"c","reason":"` + strings.Repeat("r", chronicle.MaxReasonLen+1) + `"}`, 400, "invalid_field"},
		{"reason a number", "/commands/freeze-account", `{"account_id":"c","reason":7}`, 400, "invalid_field"},
		{"unknown field", "/commands/freeze-account", `{"account_id":"c","reason":"x","amount":"1"}`, 400, "unknown_field"},
		{"reason on deposit", "/commands/deposit", `{"account_id":"c","amount":"1","reason":"x"}`, 400, "unknown_field"},
		{"key reused", "/commands/freeze-account", `{"account_id":"a","reason":"other"}`, 422, "idempotency_key_reused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr map[string]string
			if tc.name == "key reused" {
				hdr = map[string]string{"Idempotency-Key": "fz-a"}
			}
			status, code, body := post(tc.path, tc.body, hdr)
			if status != tc.status || code != tc.code {
				t.Fatalf("%s %s: %d %s; want %d %s", tc.path, tc.body, status, body, tc.status, tc.code)
			}
		})
	}
	// In a batch, each refusal is that item's result.
	status, _, body := post("/commands/batch", `{"commands":[
		{"type":"withdraw","account_id":"a","amount":"1"},
		{"type":"freeze-account","account_id":"b","reason":"x"},
		{"type":"unfreeze-account","account_id":"c"},
		{"type":"close-account","account_id":"c","reason":"x"}]}`, nil)
	var out struct {
		Results []struct {
			Success bool
			Code    string
		}
	}
	if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK || len(out.Results) != 4 {
		t.Fatalf("batch: %d %s", status, body)
	}
	for i, want := range []string{"account_frozen", "account_closed", "account_not_frozen", "balance_not_zero"} {
		if out.Results[i].Success || out.Results[i].Code != want {
			t.Fatalf("batch item %d: %+v, want %s", i, out.Results[i], want)
		}
	}
	if after := head(t, c); after != before {
		t.Fatalf("refused lifecycle requests wrote to the log: head %d -> %d", before, after)
	}

	// A batch that succeeds: unfreeze, empty the account, close it.
	status, _, body = post("/commands/batch", `{"commands":[
		{"type":"unfreeze-account","account_id":"a","idempotency_key":"uf-a"},
		{"type":"withdraw","account_id":"a","amount":"115"},
		{"type":"close-account","account_id":"a","reason":"emptied and closed"}]}`, nil)
	if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK || len(out.Results) != 3 {
		t.Fatalf("batch: %d %s", status, body)
	}
	for i, r := range out.Results {
		if !r.Success {
			t.Fatalf("batch item %d refused: %s", i, r.Code)
		}
	}
	pos := head(t, c)
	if a, err := c.Account(ctx, "a", pos); err != nil || a.Status != "closed" || a.Balance != "0.00" {
		t.Fatalf("account a: %+v, %v", a, err)
	}

	// The statement shows each status change, its reason as the description.
	txs, err := c.Transactions(ctx, "a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, l := range txs {
		types = append(types, l.Type)
	}
	want := "account_closed withdrawal account_unfrozen transfer_in deposit account_frozen opening_balance"
	if got := strings.Join(types, " "); got != want || txs[0].Description != "emptied and closed" || txs[5].Description != "court order 17" ||
		txs[5].Amount != "0.00" || txs[5].BalanceAfter != "100.00" {
		t.Fatalf("statement of a: %s\nwant %s\n%+v", got, want, txs)
	}

	// The event log: the lifecycle events carry the reason and no amount.
	var raw struct {
		Events []struct {
			EventType string         `json:"event_type"`
			Data      map[string]any `json:"event_data"`
		} `json:"events"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/events?type=AccountFrozen&order=asc", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Events) != 1 || raw.Events[0].Data["reason"] != "court order 17" || raw.Events[0].Data["balance_after"] != "100.00" {
		t.Fatalf("AccountFrozen events: %+v", raw.Events)
	}
	if _, ok := raw.Events[0].Data["amount"]; ok {
		t.Fatalf("AccountFrozen carries an amount: %v", raw.Events[0].Data)
	}

	// Statuses survive a restart.
	n = n.Restart(t)
	for id, want := range map[string]string{"a": "closed", "b": "closed", "c": "active"} {
		if a, err := n.Client.Account(ctx, id, pos); err != nil || a.Status != want {
			t.Fatalf("after restart, account %s: %+v, %v; want %s", id, a, err, want)
		}
	}
	if status, code, _ := postTo(t, n.Client, "/commands/deposit", `{"account_id":"a","amount":"1"}`); status != 422 || code != "account_closed" {
		t.Fatalf("deposit to a closed account after restart: %d %s", status, code)
	}
}

func postTo(t *testing.T, c *client.Client, path, body string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Post(c.BaseURL()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Code string }
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code, b
}

// TestClusterLifecycle: a freeze sent to a follower is forwarded, every member serves the
// status from its own state, a refusal through another member writes nothing, and the
// status survives the leader's restart and a new leader.
func TestClusterLifecycle(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := ctxT(t)
	l := c.Leader(t)
	f := (l + 1) % 3
	mustCreate(t, c.Nodes[l].Client, "x", "USD", "7")
	fr, err := c.Nodes[f].Client.FreezeAccount(ctx, client.AccountLifecycle{AccountID: "x", Reason: "sanctions check"}, "fz-x")
	if err != nil || fr.Status != http.StatusCreated {
		t.Fatalf("freeze via follower: %+v, %v", fr, err)
	}
	local := func(what string, want string) {
		t.Helper()
		for i, n := range c.Nodes {
			var a client.Account
			path := "/accounts/x?consistency=local&min_position=" + strconv.FormatUint(fr.Position, 10)
			if _, err := n.Client.Do(ctx, http.MethodGet, path, nil, nil, &a); err != nil || a.Status != want {
				t.Fatalf("%s: node %d local read: %+v, %v; want %s", what, i, a, err, want)
			}
		}
	}
	local("after the freeze", "frozen")
	g := (l + 2) % 3
	if _, err := c.Nodes[g].Client.Withdraw(ctx, client.Money{AccountID: "x", Amount: "1"}, ""); client.CodeOf(err) != chronicle.CodeAccountFrozen {
		t.Fatalf("withdraw via node %d: %v, want %s", g, err, chronicle.CodeAccountFrozen)
	}
	if h := head(t, c.Nodes[l].Client); h != fr.Position {
		t.Fatalf("head %d after the refusal, want %d", h, fr.Position)
	}
	c.Restart(t, l)
	c.WaitReady(t)
	local("after the leader's restart", "frozen")
	nl := c.Leader(t)
	again, err := c.Nodes[nl].Client.FreezeAccount(ctx, client.AccountLifecycle{AccountID: "x", Reason: "sanctions check"}, "fz-x")
	if err != nil || !again.Replayed || again.Position != fr.Position {
		t.Fatalf("retried freeze on node %d: %+v, %v", nl, again, err)
	}
}
