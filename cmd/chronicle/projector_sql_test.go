package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// TestProjectorFromSQLEventStore: `chronicle projector rebuild --event-store` reads the SQL
// event store by position, with no node in between, into the PostgreSQL read model, which
// then holds every account as the store does.
func TestProjectorFromSQLEventStore(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := sqlstore.Open(ctx, sqlstore.Config{URL: es, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cmds := []chronicle.Command{
		{Type: chronicle.CmdCreateAccount, AccountID: "A", OwnerName: "Alice", Currency: "USD", InitialBalance: "10"},
		{Type: chronicle.CmdCreateAccount, AccountID: "B", OwnerName: "Bob", Currency: "USD"},
		{Type: chronicle.CmdCreateAccount, AccountID: "Y", OwnerName: "Yui", Currency: "JPY", InitialBalance: "500"},
	}
	for i := range 40 {
		cmds = append(cmds, chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "A", ToAccountID: "B", Amount: chronicle.Decimal(fmt.Sprintf("0.%02d", i+1))})
	}
	for i := range cmds {
		cmds[i].ID = chronicle.NewID()
	}
	res, err := st.Execute(ctx, cmds)
	if err != nil {
		t.Fatal(err)
	}
	var ok int
	for _, r := range res {
		if r.Err == nil {
			ok++
		}
	}
	head, err := st.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := projectorCmd(ctx, []string{"rebuild", "--event-store", es, "--read-model", rm, "--log-level", "error"}, &out, &errOut); err != nil {
		t.Fatalf("projector rebuild: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("to position %d", head.Position)) {
		t.Fatalf("projector said %q; the store's head is %d (%d commands ok)", out.String(), head.Position, ok)
	}
	view, err := projector.OpenPostgresView(ctx, rm, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	for _, id := range []string{"A", "B", "Y"} {
		want, err := st.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := view.Account(ctx, id)
		if err != nil || got.Balance != want.Balance || got.Version != want.Version || got.Currency != want.Currency {
			t.Fatalf("account %s: read model %+v (%v), event store %+v", id, got, err, want)
		}
	}
}
