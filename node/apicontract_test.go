package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// openAPIDoc is the part of the OpenAPI document these tests read.
type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T, raw []byte) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// TestOpenAPIListsEveryRoute walks the router of a node serving everything (all roles,
// a Raft cluster, the dashboard) and holds /openapi.json to it both ways.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	n := nodetest.Start(t)
	resp, err := http.Get(n.Client.BaseURL() + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !bytes.Equal(served, api.OpenAPI()) {
		t.Fatalf("GET /openapi.json: %s %q, %d bytes; want 200 JSON, the api package's document", resp.Status, resp.Header.Get("Content-Type"), len(served))
	}
	doc := loadOpenAPI(t, served)

	inRouter := map[string]bool{}
	err = chi.Walk(n.API().Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		// chi's catch-all is a named path parameter in OpenAPI.
		if p, ok := strings.CutSuffix(route, "/*"); ok {
			route = p + "/{path}"
		}
		inRouter[strings.ToLower(method)+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inRouter) < 20 {
		t.Fatalf("the router has only %d routes: %v", len(inRouter), inRouter)
	}
	inDoc := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				inDoc[method+" "+path] = true
			}
		}
	}
	for r := range inRouter {
		if !inDoc[r] {
			t.Errorf("route %s is not in /openapi.json", r)
		}
	}
	for r := range inDoc {
		if !inRouter[r] {
			t.Errorf("/openapi.json lists %s, which the router lacks", r)
		}
	}
}

// TestResponsesDecodeIntoAPITypes decodes what a real node serves into the api types,
// refusing unknown fields, so that the types are what is served.
func TestResponsesDecodeIntoAPITypes(t *testing.T) {
	n := nodetest.Start(t)
	base := n.Client.BaseURL()
	call := func(method, path, body string, hdr map[string]string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	// expect checks the status and decodes the body strictly into out.
	expect := func(method, path, body string, hdr map[string]string, status int, out any) {
		t.Helper()
		got, b := call(method, path, body, hdr)
		if got != status {
			t.Fatalf("%s %s: %d %s; want %d", method, path, got, b, status)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(out); err != nil {
			t.Fatalf("%s %s: %s does not decode into %T: %v", method, path, b, out, err)
		}
	}

	var res api.CommandResult
	expect("POST", "/commands/create-account", `{"account_id":"A","owner_name":"Ann","currency":"EUR","initial_balance":"100","overdraft_limit":"50","description":"open"}`, nil, http.StatusCreated, &res)
	if !res.Success || res.AccountID != "A" || res.EventID == "" || len(res.Events) != 1 || res.Position == 0 || res.CommittedAt.IsZero() {
		t.Fatalf("create-account: %+v", res)
	}
	expect("POST", "/commands/create-account", `{"account_id":"B","owner_name":"Bob","currency":"EUR"}`, nil, http.StatusCreated, &api.CommandResult{})
	key := map[string]string{"Idempotency-Key": "k1"}
	expect("POST", "/commands/deposit", `{"account_id":"A","amount":"10.5","description":"cash"}`, key, http.StatusCreated, &api.CommandResult{})
	res = api.CommandResult{}
	expect("POST", "/commands/deposit", `{"account_id":"A","amount":"10.5","description":"cash"}`, key, http.StatusOK, &res)
	if !res.Replayed {
		t.Fatalf("replayed deposit: %+v", res)
	}
	expect("POST", "/commands/withdraw", `{"account_id":"A","amount":1}`, nil, http.StatusCreated, &api.CommandResult{})
	res = api.CommandResult{}
	expect("POST", "/commands/transfer", `{"from_account_id":"A","to_account_id":"B","amount":"20","currency":"EUR","description":"rent"}`, nil, http.StatusCreated, &res)
	if res.TransferID == "" || len(res.Events) != 2 {
		t.Fatalf("transfer: %+v", res)
	}
	var batch api.BatchResponse
	items, _ := json.Marshal(api.Batch{Commands: []api.BatchItem{
		{Type: "deposit", AccountID: "B", Amount: "1", IdempotencyKey: "b1"},
		{Type: "withdraw", AccountID: "B", Amount: "1000000"},
		{Type: "create-account", AccountID: "C", OwnerName: "Cy", Currency: "JPY", InitialBalance: "5"},
	}})
	expect("POST", "/commands/batch", string(items), nil, http.StatusOK, &batch)
	if len(batch.Results) != 3 || !batch.Results[0].Success || batch.Results[1].Code == "" || batch.Results[1].Success || !batch.Results[2].Success || batch.Position == 0 {
		t.Fatalf("batch: %+v", batch)
	}
	res = api.CommandResult{}
	expect("POST", "/commands/freeze-account", `{"account_id":"C","reason":"review"}`, nil, http.StatusCreated, &res)
	if len(res.Events) != 1 || res.Events[0].Type != "AccountFrozen" || res.AccountID != "C" {
		t.Fatalf("freeze-account: %+v", res)
	}
	expect("POST", "/commands/unfreeze-account", `{"account_id":"C"}`, nil, http.StatusCreated, &api.CommandResult{})

	// Two-phase transfers: a hold captured in part, another voided with a reason.
	res = api.CommandResult{}
	expect("POST", "/commands/transfer", `{"from_account_id":"B","to_account_id":"A","amount":"5","pending":true,"timeout_seconds":600}`, nil, http.StatusCreated, &res)
	expect("POST", "/commands/capture-transfer", `{"transfer_id":"`+res.TransferID+`","amount":"2","description":"part"}`, nil, http.StatusCreated, &api.CommandResult{})
	res = api.CommandResult{}
	expect("POST", "/commands/transfer", `{"from_account_id":"B","to_account_id":"A","amount":"1","pending":true}`, nil, http.StatusCreated, &res)
	expect("POST", "/commands/void-transfer", `{"transfer_id":"`+res.TransferID+`","reason":"cancelled"}`, nil, http.StatusCreated, &api.CommandResult{})

	var accts api.Accounts
	expect("GET", "/accounts?limit=2", "", nil, http.StatusOK, &accts)
	if accts.Total != 2 || accts.NextAfter != "B" || accts.Accounts[0].OverdraftLimit != "50.00" {
		t.Fatalf("accounts: %+v", accts)
	}
	var acc api.Account
	expect("GET", "/accounts/A", "", nil, http.StatusOK, &acc)
	if acc.Balance != "91.50" || acc.Held != "0.00" || acc.Available != "91.50" || acc.Version == 0 {
		t.Fatalf("account: %+v", acc)
	}
	var txs api.Transactions
	expect("GET", "/accounts/A/transactions?limit=2", "", nil, http.StatusOK, &txs)
	if txs.Total != 2 || txs.NextBefore == 0 || txs.Transactions[0].Counterparty != "B" || txs.Transactions[0].TransferID == "" {
		t.Fatalf("transactions: %+v", txs)
	}
	var bal api.Balance
	expect("GET", "/accounts/A/balance-at?timestamp="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "", nil, http.StatusOK, &bal)
	if bal.Balance != "91.50" || bal.AsOf.IsZero() || bal.Position == 0 {
		t.Fatalf("balance-at: %+v", bal)
	}
	var evs api.Events
	expect("GET", "/events?limit=3", "", nil, http.StatusOK, &evs)
	if evs.Total != 3 || evs.NextAfter == 0 {
		t.Fatalf("events: %+v", evs)
	}
	var health api.Health
	expect("GET", "/health", "", nil, http.StatusOK, &health)
	var ready api.Ready
	expect("GET", "/ready", "", nil, http.StatusOK, &ready)
	if ready.Status != "ready" || ready.Node == nil {
		t.Fatalf("ready: %+v", ready)
	}

	for _, c := range []struct {
		method, path, body string
		status             int
		code, field        string
	}{
		{"GET", "/accounts/nobody", "", http.StatusNotFound, "account_not_found", ""},
		{"POST", "/commands/deposit", `{"account_id":"A","amount":"1","colour":"red"}`, http.StatusBadRequest, "unknown_field", "colour"},
		{"GET", "/no/such/route", "", http.StatusNotFound, "not_found", ""},
	} {
		var e api.ErrorBody
		expect(c.method, c.path, c.body, nil, c.status, &e)
		if e.Code != c.code || e.Field != c.field || e.Message == "" {
			t.Errorf("%s %s: %+v; want code %s field %q", c.method, c.path, e, c.code, c.field)
		}
	}

	// Events decode through the domain's own JSON; hold their fields to the document.
	doc := loadOpenAPI(t, api.OpenAPI())
	eventSchema := doc.Components.Schemas["Event"]
	_, b := call("GET", "/events?limit=1000", "", nil)
	var raw struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Events) < 8 {
		t.Fatalf("events: %s, %v", b, err)
	}
	for _, e := range raw.Events {
		for k, v := range e {
			if _, ok := eventSchema.Properties[k]; !ok {
				t.Errorf("event field %s is not in the Event schema", k)
			}
			if k == "event_data" {
				var data map[string]json.RawMessage
				if err := json.Unmarshal(v, &data); err != nil {
					t.Fatal(err)
				}
				for dk := range data {
					if _, ok := eventSchema.Properties[k].Properties[dk]; !ok {
						t.Errorf("event_data field %s is not in the Event schema", dk)
					}
				}
			}
		}
	}
	if !slices.ContainsFunc(raw.Events, func(e map[string]json.RawMessage) bool { return len(e["metadata"]) > 0 }) {
		t.Error("no event carries metadata; the check above did not see that field")
	}
}
