package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// openSQLStore opens the SQL event store at url for a test and closes it when t ends.
func openSQLStore(t *testing.T, ctx context.Context, url string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(ctx, sqlstore.Config{URL: url, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestProjectorFromSQLEventStore: `chronicle projector rebuild --event-store` reads the SQL
// event store by position, with no node in between, into the PostgreSQL read model, which
// then holds every account as the store does.
func TestProjectorFromSQLEventStore(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := openSQLStore(t, ctx, es)
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
	// rebuild after the flags works as well (it once had to come first).
	out.Reset()
	if err := projectorCmd(ctx, []string{"--event-store", es, "--read-model", rm, "--log-level", "error", "rebuild"}, &out, &errOut); err != nil {
		t.Fatalf("projector FLAGS rebuild: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("rebuilt postgres read model to position %d", head.Position)) {
		t.Fatalf("projector FLAGS rebuild said %q; the store's head is %d", out.String(), head.Position)
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

// TestVerifySQLEventStore: `chronicle verify --event-store` checks the chain from the
// events table itself, and fails, naming the position, when a row's stored bytes or its
// columns are edited behind the store's back.
func TestVerifySQLEventStore(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := openSQLStore(t, ctx, es)
	cmds := []chronicle.Command{
		{Type: chronicle.CmdCreateAccount, AccountID: "A", OwnerName: "Alice", Currency: "USD", InitialBalance: "10"},
		{Type: chronicle.CmdCreateAccount, AccountID: "B", OwnerName: "Bob", Currency: "USD"},
		{Type: chronicle.CmdTransfer, FromAccountID: "A", ToAccountID: "B", Amount: "2.50"},
		{Type: chronicle.CmdDeposit, AccountID: "B", Amount: "1"},
		// The account lifecycle: statuses in the events table, the SQL store's accounts
		// and the PostgreSQL view, which verify compares.
		{Type: chronicle.CmdCreateAccount, AccountID: "C", OwnerName: "Cy", Currency: "USD"},
		{Type: chronicle.CmdFreezeAccount, AccountID: "A", Reason: "review"},
		{Type: chronicle.CmdCloseAccount, AccountID: "C", Reason: "unused"},
	}
	for i := range cmds {
		cmds[i].ID = chronicle.NewID()
	}
	res, err := st.Execute(ctx, cmds)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d: %v", i, r.Err)
		}
	}
	if err := projectorCmd(ctx, []string{"rebuild", "--event-store", es, "--read-model", rm, "--log-level", "error"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		var out bytes.Buffer
		err := verify(ctx, []string{"--event-store", es, "--read-model", rm, "--wait", "5s"}, &out, io.Discard)
		return out.String(), err
	}
	if out, err := run(); err != nil || !strings.Contains(out, "events table:  ok    8 rows") || !strings.Contains(out, "postgres view: ok") {
		t.Fatalf("verify of an intact store: %v\n%s", err, out)
	}
	// A view whose status disagrees with the log is named.
	rmConn, err := pgx.Connect(ctx, rm)
	if err != nil {
		t.Fatal(err)
	}
	defer rmConn.Close(ctx)
	if _, err := rmConn.Exec(ctx, `UPDATE account_balance SET status = 'active' WHERE account_id = 'A'`); err != nil {
		t.Fatal(err)
	}
	if out, err := run(); err == nil || !strings.Contains(out, "account A: status active, the log gives frozen") {
		t.Fatalf("verify after thawing A in the view: %v\n%s", err, out)
	}
	if _, err := rmConn.Exec(ctx, `UPDATE account_balance SET status = 'frozen' WHERE account_id = 'A'`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, es)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, tc := range []struct{ name, edit, undo, want string }{
		{"event_data column", `UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '"3.50"') WHERE position = 4`,
			`UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '"2.50"') WHERE position = 4`, "position 4: column event_data"},
		{"aggregate column", `UPDATE events SET aggregate_id = 'Z' WHERE position = 3`,
			`UPDATE events SET aggregate_id = 'A' WHERE position = 3`, "position 3: columns Z/"},
		{"stored bytes", `UPDATE events SET stored = overlay(stored placing '\x7f'::bytea from 40 for 1) WHERE position = 2`,
			"", "position 2"},
	} {
		if _, err := conn.Exec(ctx, tc.edit); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, err := run()
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "RESULT: FAIL") {
			t.Fatalf("verify after editing the %s: %v\n%s", tc.name, err, out)
		}
		if tc.undo != "" {
			if _, err := conn.Exec(ctx, tc.undo); err != nil {
				t.Fatal(err)
			}
		}
	}
}
