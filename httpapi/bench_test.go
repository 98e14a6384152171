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

// BenchmarkBatchHandler is the HTTP layer's cost of one POST /commands/batch of 1,000
// transfers (decoding 1,000 items, the response of 1,000 results) over the in-memory store.
// go test -run '^$' -bench BatchHandler -benchmem ./httpapi
func BenchmarkBatchHandler(b *testing.B) {
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
	var sb strings.Builder
	sb.WriteString(`{"commands":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"0.01","description":"bench"}`)
	}
	sb.WriteString(`]}`)
	body := sb.String()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/commands/batch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		a.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkDecodeBatch is decoding alone, a batch of 1,000 transfers: the decoder in use
// against the reference one it replaced (decode_diff_test.go).
func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"commands":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"type":"transfer","from_account_id":"bench-1","to_account_id":"bench-2","amount":"1.00","description":"bench"}`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	def := New(Config{Store: storetest.NewMemStore()}).defaults()
	for _, d := range []struct {
		name   string
		decode func([]byte, commandDefaults, bool) ([]chronicle.Command, bool, error)
	}{{"onepass", decodeBatch}, {"reference", refDecodeBatch}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if cmds, _, err := d.decode(body, def, true); err != nil || len(cmds) != 1000 {
					b.Fatal(err)
				}
			}
		})
	}
}
