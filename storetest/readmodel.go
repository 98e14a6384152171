package storetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// ReadModelDump is everything a read model serves, read through its paging.
type ReadModelDump struct {
	Position uint64
	Accounts []chronicle.Account
	Lines    map[string][]chronicle.StatementLine // newest first, as served
}

// DumpReadModel reads all of rm, following its pagination with page sizes rng picks (nil:
// fixed sizes), so that every page boundary is exercised somewhere.
func DumpReadModel(t testing.TB, rm chronicle.ReadModel, rng *rand.Rand) ReadModelDump {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	size := func(n int) int {
		if rng == nil {
			return n
		}
		return 1 + rng.IntN(n)
	}
	d := ReadModelDump{Lines: map[string][]chronicle.StatementLine{}}
	var err error
	if d.Position, err = rm.Position(ctx); err != nil {
		t.Fatalf("read model position: %v", err)
	}
	after := ""
	for {
		page, err := rm.Accounts(ctx, after, size(37))
		if err != nil {
			t.Fatalf("accounts after %q: %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			d.Accounts = append(d.Accounts, normAccount(a))
		}
		after = page[len(page)-1].ID
	}
	for _, a := range d.Accounts {
		got, err := rm.Account(ctx, a.ID)
		if err != nil {
			t.Fatalf("account %s: %v", a.ID, err)
		}
		if normAccount(got) != a {
			t.Fatalf("account %s alone %+v, in the listing %+v", a.ID, got, a)
		}
		before := uint64(0)
		for {
			page, err := rm.Transactions(ctx, a.ID, before, size(11))
			if err != nil {
				t.Fatalf("transactions of %s before %d: %v", a.ID, before, err)
			}
			if len(page) == 0 {
				break
			}
			for _, l := range page {
				l.Timestamp = l.Timestamp.UTC()
				d.Lines[a.ID] = append(d.Lines[a.ID], l)
			}
			before = page[len(page)-1].Version
		}
	}
	return d
}

func normAccount(a chronicle.Account) chronicle.Account {
	a.CreatedAt, a.LastUpdated = a.CreatedAt.UTC(), a.LastUpdated.UTC()
	return a
}

// ExpectedReadModel is what a read model of log must serve, from a replay of the log
// (chronicle.Replayer): accounts as the replay leaves them, and one line per event whose
// balance_after is the replay's balance after it, not the event's own field.
func ExpectedReadModel(t testing.TB, log []chronicle.Event) ReadModelDump {
	t.Helper()
	r := chronicle.NewReplayer()
	x := ReadModelDump{Lines: map[string][]chronicle.StatementLine{}}
	for _, e := range log {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
		a := r.State.Accounts[e.AggregateID]
		d := e.Data
		l := chronicle.StatementLine{TransactionID: e.EventID, AccountID: e.AggregateID, EventType: e.EventType,
			Amount: d.Amount, BalanceAfter: a.Balance, Currency: a.Currency, Description: d.Description,
			TransferID: d.TransferID, Counterparty: d.Counterparty, Position: e.Position, Version: e.EventVersion,
			Timestamp: e.CreatedAt.UTC()}
		switch {
		case e.EventType == chronicle.EventTransferPending:
			l.Type = chronicle.LineHold
		case e.EventType == chronicle.EventTransferVoided:
			l.Type = chronicle.LineHoldVoided
		case e.EventType == chronicle.EventTransferExpired:
			l.Type = chronicle.LineHoldExpired
		case e.EventType == chronicle.EventTransferCaptured && e.AggregateID == d.FromAccountID:
			l.Type = chronicle.LineTransferOut
		case e.EventType == chronicle.EventTransferCaptured:
			l.Type = chronicle.LineTransferIn
		case e.EventType == chronicle.EventAccountCreated:
			l.Type, l.Amount = chronicle.LineOpening, d.InitialBalance
		case e.EventType == chronicle.EventAccountFrozen:
			l.Type, l.Description = chronicle.LineFrozen, d.Reason
		case e.EventType == chronicle.EventAccountUnfrozen:
			l.Type, l.Description = chronicle.LineUnfrozen, d.Reason
		case e.EventType == chronicle.EventAccountClosed:
			l.Type, l.Description = chronicle.LineClosed, d.Reason
		case e.EventType == chronicle.EventMoneyDeposited && d.TransferID != "":
			l.Type = chronicle.LineTransferIn
		case e.EventType == chronicle.EventMoneyDeposited:
			l.Type = chronicle.LineDeposit
		case d.TransferID != "":
			l.Type = chronicle.LineTransferOut
		default:
			l.Type = chronicle.LineWithdrawal
		}
		// Newest first, as a statement is served.
		x.Lines[l.AccountID] = append([]chronicle.StatementLine{l}, x.Lines[l.AccountID]...)
		x.Position = e.Position
	}
	for _, a := range r.State.SortedAccounts() {
		if !a.External() {
			x.Accounts = append(x.Accounts, normAccount(a))
		}
	}
	return x
}

// SameReadModel fails the test unless got serves exactly what want does.
func SameReadModel(t testing.TB, what string, want, got ReadModelDump) {
	t.Helper()
	if got.Position != want.Position {
		t.Fatalf("%s: position %d, want %d", what, got.Position, want.Position)
	}
	if len(got.Accounts) != len(want.Accounts) {
		t.Fatalf("%s: %d accounts, want %d", what, len(got.Accounts), len(want.Accounts))
	}
	for i, w := range want.Accounts {
		if g := got.Accounts[i]; g != w {
			t.Fatalf("%s: account %d:\n got %+v\nwant %+v", what, i, g, w)
		}
		gl, wl := got.Lines[w.ID], want.Lines[w.ID]
		if len(gl) != len(wl) || uint64(len(wl)) != w.Version {
			t.Fatalf("%s: account %s (version %d): %d lines, want %d", what, w.ID, w.Version, len(gl), len(wl))
		}
		for j := range wl {
			if gl[j] != wl[j] {
				t.Fatalf("%s: account %s line %d:\n got %+v\nwant %+v", what, w.ID, j, gl[j], wl[j])
			}
		}
	}
}

// CheckReadModel fails the test unless rm serves exactly what a replay of log gives, at
// log's last position, and answers "not found" for what is not there.
func CheckReadModel(t testing.TB, what string, rm chronicle.ReadModel, log []chronicle.Event, rng *rand.Rand) {
	t.Helper()
	SameReadModel(t, what, ExpectedReadModel(t, log), DumpReadModel(t, rm, rng))
	CheckOverview(t, what, rm, log)
	CheckReadModelSemantics(t, what, rm)
}

// CheckReadModelSemantics checks the answers for what is not there.
func CheckReadModelSemantics(t testing.TB, what string, rm chronicle.ReadModel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	notFound := func(err error) bool {
		var e *chronicle.Error
		return errors.As(err, &e) && e.Code == chronicle.CodeAccountNotFound
	}
	for _, id := range []string{"no-such-account", chronicle.ExternalAccountID("USD"), ""} {
		if _, err := rm.Account(ctx, id); !notFound(err) {
			t.Fatalf("%s: Account(%q) = %v, want account_not_found", what, id, err)
		}
		if _, err := rm.Transactions(ctx, id, 0, 10); !notFound(err) {
			t.Fatalf("%s: Transactions(%q) = %v, want account_not_found", what, id, err)
		}
	}
	if got, err := rm.Accounts(ctx, "", 0); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("%s: Accounts(limit 0) = %#v, %v; want an empty list", what, got, err)
	}
	if got, err := rm.Accounts(ctx, "\x7f", 10); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("%s: Accounts(after the last) = %#v, %v; want an empty list", what, got, err)
	}
}
