package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// BenchmarkTransferHandler is the HTTP layer's own cost of one transfer: the router, the
// middleware, decoding and the response, over the in-memory store (no network, no Raft).
// go test -run '^$' -bench TransferHandler -benchmem ./httpapi
func BenchmarkTransferHandler(b *testing.B) {
	store := storetest.NewMemStore()
	a := New(Config{Store: store})
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		res, err := store.Execute(ctx, []chronicle.Command{{Type: chronicle.CmdCreateAccount, AccountID: id, OwnerName: id,
			Currency: "USD", InitialBalance: "1000000000", ID: chronicle.NewID()}})
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res)
		}
	}
	body := `{"from_account_id":"a","to_account_id":"b","amount":"0.01","description":"bench"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/commands/transfer", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		a.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
