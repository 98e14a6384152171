package node_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestOverviewEndpoint: GET /overview needs a reader token and says how many customer
// accounts there are and how much money the ledger holds per currency: what came in
// (opening balances, deposits) minus what went out (withdrawals, an overdraft included);
// transfers between accounts change nothing. It is fresh after each write on the
// embedded read model.
func TestOverviewEndpoint(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.token")
	n := nodetest.Start(t, withBootstrapToken(file))
	admin := n.Client.WithToken(readSecret(t, file))
	waitToken(t, admin)
	ctx := context.Background()
	readerTok, err := admin.CreateToken(ctx, "dashboard", "reader")
	if err != nil {
		t.Fatal(err)
	}
	reader := n.Client.WithToken(readerTok.Secret)
	if code, errCode := status(t, n.Client, http.MethodGet, "/overview", ""); code != http.StatusUnauthorized || errCode != chronicle.CodeUnauthorized {
		t.Fatalf("GET /overview without a token: %d %s, want 401", code, errCode)
	}
	overview := func() api.Overview {
		t.Helper()
		var o api.Overview
		if code, err := reader.Do(ctx, http.MethodGet, "/overview", nil, nil, &o); code != http.StatusOK || err != nil {
			t.Fatalf("GET /overview as a reader: %d %v", code, err)
		}
		return o
	}
	if o := overview(); o.Accounts != 0 || len(o.Currencies) != 0 || o.Scanned {
		t.Fatalf("overview of an empty ledger: %+v", o)
	}
	batch := func(cmds ...string) {
		t.Helper()
		var res api.BatchResponse
		body := `{"commands":[`
		for i, c := range cmds {
			if i > 0 {
				body += ","
			}
			body += c
		}
		if code, err := admin.Do(ctx, http.MethodPost, "/commands/batch", []byte(body+`]}`), nil, &res); code >= 300 || err != nil {
			t.Fatalf("batch: %d %v", code, err)
		}
		for _, r := range res.Results {
			if !r.Success {
				t.Fatalf("batch: %+v", res.Results)
			}
		}
	}
	batch(`{"type":"create-account","account_id":"a","owner_name":"A","currency":"USD","initial_balance":"100.25"}`,
		`{"type":"create-account","account_id":"b","owner_name":"B","currency":"USD","overdraft_limit":"50"}`,
		`{"type":"create-account","account_id":"y","owner_name":"Y","currency":"JPY","initial_balance":"500"}`,
		`{"type":"create-account","account_id":"e","owner_name":"E","currency":"EUR"}`)
	o := overview()
	want := map[string]string{"USD": "100.25", "JPY": "500"} // EUR holds nothing: not listed
	check := func(what string, o api.Overview, accounts int64, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for _, c := range o.Currencies {
			got[c.Currency] = c.Held
		}
		if o.Accounts != accounts || len(got) != len(want) {
			t.Fatalf("%s: overview %+v, want %d accounts, held %v", what, o, accounts, want)
		}
		for cur, w := range want {
			if got[cur] != w {
				t.Fatalf("%s: %s held %q, want %q (%+v)", what, cur, got[cur], w, o)
			}
		}
	}
	check("after opening", o, 4, want)
	first := o.Position
	batch(`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"30"}`,
		`{"type":"withdraw","account_id":"b","amount":"70.10"}`, // b overdraws: 30 - 70.10
		`{"type":"deposit","account_id":"y","amount":"25"}`,
		`{"type":"deposit","account_id":"e","amount":"0.01"}`,
		`{"type":"withdraw","account_id":"e","amount":"0.01"}`)
	o = overview()
	check("after moving money", o, 4, map[string]string{"USD": "30.15", "JPY": "525"})
	if o.Position <= first {
		t.Fatalf("overview position %d did not move past %d", o.Position, first)
	}
	// The totals are the sum of the balances the accounts show.
	var accts api.Accounts
	if code, err := reader.Do(ctx, http.MethodGet, "/accounts", nil, nil, &accts); code != http.StatusOK || err != nil {
		t.Fatal(code, err)
	}
	if len(accts.Accounts) != 4 || accts.Accounts[1].Balance != "-40.10" {
		t.Fatalf("accounts: %+v", accts.Accounts)
	}
}
