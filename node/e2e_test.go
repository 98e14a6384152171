package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSeedFlow is the original system's walk-through, with its paths and field names.
func TestSeedFlow(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	for _, id := range []string{"A", "B"} {
		res, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: "Owner " + id, InitialBalance: "0", Currency: "USD"}, "")
		if err != nil || res.Status != http.StatusCreated || !res.Success || res.EventID == "" {
			t.Fatalf("create %s: %+v, %v", id, res, err)
		}
	}
	dep, err := c.Deposit(ctx, client.Money{AccountID: "A", Amount: "1000"}, "")
	if err != nil {
		t.Fatal(err)
	}
	T := dep.CommittedAt // every later command commits strictly after this instant
	tr, err := c.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "300"}, "")
	if err != nil || tr.TransferID == "" || len(tr.Events) != 2 || tr.Events[0].Type != "MoneyWithdrawn" || tr.Events[1].Type != "MoneyDeposited" {
		t.Fatalf("transfer: %+v, %v", tr, err)
	}
	if !tr.CommittedAt.After(T) {
		t.Fatalf("transfer committed at %v, not after the deposit at %v", tr.CommittedAt, T)
	}
	if _, err := c.Withdraw(ctx, client.Money{AccountID: "B", Amount: "50"}, ""); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"A": "700.00", "B": "250.00"} {
		a, err := c.Account(ctx, id, 0)
		if err != nil || a.Balance != want || a.Currency != "USD" || a.Status != "active" || a.OwnerName != "Owner "+id {
			t.Fatalf("account %s: %+v, %v; want balance %s", id, a, err, want)
		}
	}
	bal, err := c.BalanceAt(ctx, "A", T)
	if err != nil || bal.Balance != "1000.00" {
		t.Fatalf("balance of A at T: %+v, %v; want 1000.00", bal, err)
	}
	events, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.EventType)
	}
	want := "AccountCreated AccountCreated MoneyDeposited MoneyWithdrawn MoneyDeposited MoneyWithdrawn"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("events: %s\nwant %s", got, want)
	}
	r := chronicle.NewReplayer()
	for _, e := range events {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	// The seed's /events answered newest first, with its field names.
	var raw struct {
		Events []map[string]any `json:"events"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/events?limit=2", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Events) != 2 || raw.Events[0]["position"] != float64(6) {
		t.Fatalf("default /events order: %v", raw.Events)
	}
	for _, f := range []string{"event_id", "aggregate_id", "aggregate_type", "event_type", "event_version", "event_data", "created_at", "hash", "prev_hash"} {
		if _, ok := raw.Events[0][f]; !ok {
			t.Errorf("event lacks field %s", f)
		}
	}
	txs, err := c.Transactions(ctx, "B", 0, 0)
	if err != nil || len(txs) != 3 || txs[0].Type != "withdrawal" || txs[0].BalanceAfter != "250.00" || txs[1].Type != "transfer_in" || txs[1].BalanceAfter != "300.00" {
		t.Fatalf("transactions of B: %+v, %v", txs, err)
	}
}

// TestBadInput sends malformed and refused requests: each gets its 4xx and stable code,
// and none writes anything.
func TestBadInput(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "usd1", "USD", "100.00")
	mustCreate(t, c, "usd2", "USD", "0")
	mustCreate(t, c, "eur1", "EUR", "10.00")
	mustCreate(t, c, "jpy1", "JPY", "500")
	if _, err := c.Deposit(ctx, client.Money{AccountID: "usd1", Amount: "1.00"}, "key-1"); err != nil {
		t.Fatal(err)
	}
	before := head(t, c)

	big := `{"account_id":"x","owner_name":"` + strings.Repeat("a", 2<<20) + `","currency":"USD"}`
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"invalid json", "POST", "/commands/deposit", `{"account_id":`, nil, 400, "invalid_json"},
		{"not an object", "POST", "/commands/deposit", `[1,2]`, nil, 400, "invalid_json"},
		{"empty body", "POST", "/commands/deposit", ``, nil, 400, "invalid_json"},
		{"trailing data", "POST", "/commands/deposit", `{"account_id":"usd1","amount":1} {}`, nil, 400, "invalid_json"},
		{"unknown field", "POST", "/commands/deposit", `{"account_id":"usd1","amount":1,"amout":2}`, nil, 400, "unknown_field"},
		{"wrong type", "POST", "/commands/deposit", `{"account_id":5,"amount":1}`, nil, 400, "invalid_field"},
		{"amount bool", "POST", "/commands/deposit", `{"account_id":"usd1","amount":true}`, nil, 400, "invalid_field"},
		{"missing account", "POST", "/commands/deposit", `{"amount":1}`, nil, 400, "missing_field"},
		{"missing amount", "POST", "/commands/deposit", `{"account_id":"usd1"}`, nil, 400, "missing_field"},
		{"zero amount", "POST", "/commands/deposit", `{"account_id":"usd1","amount":0}`, nil, 422, "invalid_amount"},
		{"negative amount", "POST", "/commands/withdraw", `{"account_id":"usd1","amount":"-5"}`, nil, 422, "invalid_amount"},
		{"too precise", "POST", "/commands/deposit", `{"account_id":"usd1","amount":"1.001"}`, nil, 422, "invalid_amount"},
		{"too precise yen", "POST", "/commands/deposit", `{"account_id":"jpy1","amount":"1.5"}`, nil, 422, "invalid_amount"},
		{"exponent", "POST", "/commands/deposit", `{"account_id":"usd1","amount":1e3}`, nil, 422, "invalid_amount"},
		{"overflow", "POST", "/commands/deposit", `{"account_id":"usd1","amount":"92233720368547758.08"}`, nil, 422, "invalid_amount"},
		{"balance overflow", "POST", "/commands/deposit", `{"account_id":"usd1","amount":"92233720368547758.00"}`, nil, 422, "invalid_amount"},
		{"unknown currency", "POST", "/commands/create-account", `{"account_id":"n1","owner_name":"N","currency":"ABC"}`, nil, 422, "unknown_currency"},
		// A missing currency takes --default-currency (TestOriginalClientShapes).
		{"currency of the wrong type", "POST", "/commands/create-account", `{"account_id":"n1","owner_name":"N","currency":7}`, nil, 400, "invalid_field"},
		{"missing owner", "POST", "/commands/create-account", `{"account_id":"n1","currency":"USD"}`, nil, 400, "missing_field"},
		{"negative initial", "POST", "/commands/create-account", `{"account_id":"n1","owner_name":"N","currency":"USD","initial_balance":"-1"}`, nil, 422, "invalid_amount"},
		{"illegal id", "POST", "/commands/create-account", `{"account_id":"a b","owner_name":"N","currency":"USD"}`, nil, 400, "invalid_account_id"},
		{"external id", "POST", "/commands/create-account", `{"account_id":"@world:USD","owner_name":"N","currency":"USD"}`, nil, 400, "invalid_account_id"},
		{"long id", "POST", "/commands/create-account", `{"account_id":"` + strings.Repeat("x", 65) + `","owner_name":"N","currency":"USD"}`, nil, 400, "invalid_account_id"},
		{"control char owner", "POST", "/commands/create-account", `{"account_id":"n1","owner_name":"a\u0000b","currency":"USD"}`, nil, 400, "invalid_field"},
		{"exists", "POST", "/commands/create-account", `{"account_id":"usd1","owner_name":"N","currency":"USD"}`, nil, 409, "account_exists"},
		{"unknown account", "POST", "/commands/deposit", `{"account_id":"nobody","amount":1}`, nil, 404, "account_not_found"},
		{"currency field mismatch", "POST", "/commands/deposit", `{"account_id":"usd1","amount":1,"currency":"EUR"}`, nil, 422, "currency_mismatch"},
		{"insufficient", "POST", "/commands/withdraw", `{"account_id":"usd2","amount":"0.01"}`, nil, 422, "insufficient_funds"},
		{"same account", "POST", "/commands/transfer", `{"from_account_id":"usd1","to_account_id":"usd1","amount":1}`, nil, 422, "same_account"},
		{"cross currency", "POST", "/commands/transfer", `{"from_account_id":"usd1","to_account_id":"eur1","amount":1}`, nil, 422, "currency_mismatch"},
		{"transfer unknown to", "POST", "/commands/transfer", `{"from_account_id":"usd1","to_account_id":"ghost","amount":1}`, nil, 404, "account_not_found"},
		{"transfer overdraw", "POST", "/commands/transfer", `{"from_account_id":"usd2","to_account_id":"usd1","amount":1}`, nil, 422, "insufficient_funds"},
		{"key reused", "POST", "/commands/deposit", `{"account_id":"usd1","amount":"2.00"}`, map[string]string{"Idempotency-Key": "key-1"}, 422, "idempotency_key_reused"},
		{"key too long", "POST", "/commands/deposit", `{"account_id":"usd1","amount":"2.00"}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, 400, "invalid_idempotency_key"},
		{"too large", "POST", "/commands/create-account", big, nil, 413, "body_too_large"},
		{"empty batch", "POST", "/commands/batch", `{"commands":[]}`, nil, 400, "missing_field"},
		{"batch bad item", "POST", "/commands/batch", `{"commands":[{"type":"deposit","account_id":"usd1","amount":1},{"type":"nope"}]}`, nil, 400, "invalid_field"},
		{"bad timestamp", "GET", "/accounts/usd1/balance-at?timestamp=yesterday", "", nil, 400, "invalid_timestamp"},
		{"missing timestamp", "GET", "/accounts/usd1/balance-at", "", nil, 400, "missing_field"},
		{"before creation", "GET", "/accounts/usd1/balance-at?timestamp=2000-01-01T00:00:00Z", "", nil, 404, "account_not_found"},
		{"unknown account read", "GET", "/accounts/nobody", "", nil, 404, "account_not_found"},
		{"external account read", "GET", "/accounts/@world:USD", "", nil, 400, "invalid_account_id"},
		{"bad limit", "GET", "/events?limit=5000", "", nil, 400, "invalid_query"},
		{"bad after", "GET", "/events?after=-1", "", nil, 400, "invalid_query"},
		{"bad order", "GET", "/events?order=sideways", "", nil, 400, "invalid_query"},
		{"bad min_position", "GET", "/accounts/usd1?min_position=x", "", nil, 400, "invalid_query"},
		{"no route", "GET", "/nope", "", nil, 404, "not_found"},
		{"wrong method", "GET", "/commands/deposit", "", nil, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, c.BaseURL()+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.method == http.MethodPost {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("non-JSON error body %q", body)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Error == "" {
				t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Code, e.Error, tc.status, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
		})
	}
	if after := head(t, c); after != before {
		t.Fatalf("bad requests wrote to the log: head %d -> %d", before, after)
	}
	if a, _ := c.Account(ctx, "usd1", 0); a.Balance != "101.00" {
		t.Fatalf("usd1 balance %s after refused commands, want 101.00", a.Balance)
	}
}

// TestConcurrentWithdrawals: 100 concurrent withdrawals of 10 from 100 — exactly 10 win.
func TestConcurrentWithdrawals(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "pot", "USD", "100")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Withdraw(ctx, client.Money{AccountID: "pot", Amount: "10"}, "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[client.CodeOf(err)]++
			} else {
				codes["ok"]++
			}
		}()
	}
	wg.Wait()
	if codes["ok"] != 10 || codes["insufficient_funds"] != 90 || len(codes) != 2 {
		t.Fatalf("outcomes %v, want 10 ok and 90 insufficient_funds", codes)
	}
	if a, err := c.Account(ctx, "pot", 0); err != nil || a.Balance != "0.00" || a.Version != 11 {
		t.Fatalf("pot: %+v, %v", a, err)
	}
}

// TestIdempotentRetry: the same key and body answers the original result with 200.
func TestIdempotentRetry(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "a", "USD", "100")
	mustCreate(t, c, "b", "USD", "0")
	req := client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "25.50"}
	first, err := c.Transfer(ctx, req, "retry-1")
	if err != nil || first.Status != http.StatusCreated || first.Replayed {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := c.Transfer(ctx, req, "retry-1")
	if err != nil || again.Status != http.StatusOK || !again.Replayed || again.TransferID != first.TransferID || again.Position != first.Position || again.EventID != first.EventID {
		t.Fatalf("retry: %+v, %v; want replay of %+v", again, err, first)
	}
	if a, _ := c.Account(ctx, "a", 0); a.Balance != "74.50" {
		t.Fatalf("a = %s after a retried transfer, want 74.50", a.Balance)
	}
	// The key survives a restart: the record is part of the replicated state.
	n = n.Restart(t)
	again, err = n.Client.Transfer(ctx, req, "retry-1")
	if err != nil || again.Status != http.StatusOK || again.TransferID != first.TransferID {
		t.Fatalf("retry after restart: %+v, %v", again, err)
	}
	if h := head(t, n.Client); h != first.Position {
		t.Fatalf("head %d after retries, want %d", h, first.Position)
	}
}

// TestRestartKeepsState: a node restarted on its data dir serves what it had and goes on.
func TestRestartKeepsState(t *testing.T) {
	n := nodetest.Start(t)
	ctx := ctxT(t)
	mustCreate(t, n.Client, "a", "EUR", "10.00")
	before, err := n.Client.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n = n.Restart(t)
	after, err := n.Client.AllEvents(ctx)
	if err != nil || len(after) != len(before) || after[len(after)-1].Hash != before[len(before)-1].Hash {
		t.Fatalf("log after restart differs: %d events vs %d, %v", len(after), len(before), err)
	}
	res, err := n.Client.Deposit(ctx, client.Money{AccountID: "a", Amount: "0.01"}, "")
	if err != nil || res.Position != uint64(len(before)+1) {
		t.Fatalf("deposit after restart: %+v, %v", res, err)
	}
	if a, _ := n.Client.Account(ctx, "a", res.Position); a.Balance != "10.01" {
		t.Fatalf("balance %s, want 10.01", a.Balance)
	}
}

// TestCORS: a configured origin gets CORS headers and preflights; others do not.
func TestCORS(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.CORSOrigins = []string{"http://localhost:3000"} })
	for origin, want := range map[string]string{"http://localhost:3000": "http://localhost:3000", "http://evil.example": ""} {
		req, _ := http.NewRequest(http.MethodOptions, n.URL()+"/commands/deposit", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %s: Allow-Origin %q, want %q", origin, got, want)
		}
	}
}

// TestBatch: many commands in one request, each with its own outcome.
func TestBatch(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	body := `{"commands":[
		{"type":"create-account","account_id":"x","owner_name":"X","currency":"USD","initial_balance":"5"},
		{"type":"withdraw","account_id":"x","amount":"10"},
		{"type":"deposit","account_id":"x","amount":"1.25","idempotency_key":"k"}]}`
	var out struct {
		Results []struct {
			Success bool
			Code    string
		}
	}
	if _, err := c.Do(ctx, http.MethodPost, "/commands/batch", []byte(body), nil, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 3 || !out.Results[0].Success || out.Results[1].Code != "insufficient_funds" || !out.Results[2].Success {
		t.Fatalf("batch results %+v", out.Results)
	}
	if a, _ := c.Account(ctx, "x", 0); a.Balance != "6.25" {
		t.Fatalf("x = %s, want 6.25", a.Balance)
	}
}

func mustCreate(t *testing.T, c *client.Client, id, cur, initial string) {
	t.Helper()
	if _, err := c.CreateAccount(context.Background(), client.CreateAccount{AccountID: id, OwnerName: "Owner " + id, Currency: cur, InitialBalance: initial}, ""); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

func head(t *testing.T, c *client.Client) uint64 {
	t.Helper()
	ev, err := c.Events(context.Background(), client.EventsQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) == 0 {
		return 0
	}
	return ev[0].Position
}

// TestOriginalClientShapes: the original system's clients send create-account without a
// currency (it assumed USD) and with "initial_balance": null; the node's
// --default-currency is resolved into the command when it is accepted.
func TestOriginalClientShapes(t *testing.T) {
	for _, tc := range []struct {
		def, want string
	}{{"", "USD"}, {"eur", "EUR"}} {
		n := nodetest.Start(t, func(c *node.Config) { c.DefaultCurrency = tc.def })
		ctx := ctxT(t)
		status, err := n.Client.Do(ctx, http.MethodPost, "/commands/create-account",
			[]byte(`{"account_id":"orig","owner_name":"Original","initial_balance":null}`), nil, nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("default %q: create without currency: %d, %v", tc.def, status, err)
		}
		a, err := n.Client.Account(ctx, "orig", 0)
		if err != nil || a.Currency != tc.want || a.Balance != "0.00" {
			t.Fatalf("default %q: account %+v, %v; want %s 0.00", tc.def, a, err, tc.want)
		}
	}
	cfg := node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", DefaultCurrency: "XXX",
		Logger: nodetest.Logger()}
	// Refused before anything is opened, so there is nothing to close.
	if _, err := node.New(ctxT(t), cfg); err == nil || !strings.Contains(err.Error(), "default currency") {
		t.Fatalf("node with default currency XXX: %v", err)
	}
}
