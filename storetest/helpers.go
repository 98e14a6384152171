package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// callTimeout bounds one store call or one wait: a store slower than this is broken.
const callTimeout = time.Minute

// callCtx is the context of one store call, ended with the test.
func callCtx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), callTimeout)
}

// Command builders. exec gives each command its ID, as the HTTP layer does.

func create(id, cur, initial, overdraft string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: id, OwnerName: "Owner of " + id,
		Currency: cur, InitialBalance: chronicle.Decimal(initial), OverdraftLimit: chronicle.Decimal(overdraft)}
}

func deposit(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdDeposit, AccountID: id, Amount: chronicle.Decimal(amount)}
}

func withdraw(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: id, Amount: chronicle.Decimal(amount)}
}

func transfer(from, to, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: from, ToAccountID: to, Amount: chronicle.Decimal(amount)}
}

// keyed returns c with an idempotency key.
func keyed(c chronicle.Command, key string) chronicle.Command {
	c.IdempotencyKey = key
	return c
}

// money renders minor units of cur as the decimal text a client sends.
func money(minor int64, cur string) string { return chronicle.FormatMinor(minor, mustCurrency(cur)) }

// unit is one major unit of cur in minor units (100 for USD, 1 for JPY, 1000 for BHD).
func unit(cur string) int64 {
	u := int64(1)
	for range mustCurrency(cur).Exponent {
		u *= 10
	}
	return u
}

// tryExec executes cmds on s, giving every command without an ID a fresh one, and checks
// the shape of each result. It is safe to call from any goroutine.
func tryExec(ctx context.Context, s chronicle.EventStore, cmds ...chronicle.Command) ([]chronicle.Result, error) {
	cmds = append([]chronicle.Command(nil), cmds...)
	for i := range cmds {
		if cmds[i].ID == "" {
			cmds[i].ID = chronicle.NewID()
		}
	}
	res, err := s.Execute(ctx, cmds)
	if err != nil {
		return nil, err
	}
	if len(res) != len(cmds) {
		return nil, fmt.Errorf("%d results for %d commands", len(res), len(cmds))
	}
	for i, r := range res {
		if err := checkResult(cmds[i], r); err != nil {
			return nil, fmt.Errorf("result %d (%s): %w", i, cmds[i].Type, err)
		}
	}
	return res, nil
}

// exec executes cmds, failing the test if the store fails the call as a whole.
func exec(t testing.TB, s chronicle.EventStore, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	res, err := tryExec(ctx, s, cmds...)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return res
}

// execOK executes commands that must all succeed.
func execOK(t testing.TB, s chronicle.EventStore, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	res := exec(t, s, cmds...)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d (%s %s%s) refused: %v", i, cmds[i].Type, cmds[i].AccountID, cmds[i].FromAccountID, r.Err)
		}
	}
	return res
}

// checkResult checks what every result must look like: a refusal carries no events or
// position; an acceptance carries its events at consecutive positions ending at
// Position, stamped with its commit time, hashing to their stored hash, and (unless it
// is a replay of an earlier command) made by this command.
func checkResult(c chronicle.Command, r chronicle.Result) error {
	if r.Err != nil {
		if len(r.Events) != 0 || r.Position != 0 || r.EventCount != 0 || r.Replayed || r.TransferID != "" {
			return fmt.Errorf("refused (%v) but has %d events, position %d, replayed %v, transfer %q",
				r.Err, len(r.Events), r.Position, r.Replayed, r.TransferID)
		}
		return nil
	}
	if len(r.Events) == 0 || r.EventCount != len(r.Events) {
		return fmt.Errorf("accepted with %d events, EventCount %d", len(r.Events), r.EventCount)
	}
	first := r.Position - uint64(len(r.Events)) + 1
	for i, e := range r.Events {
		switch {
		case e.Position != first+uint64(i):
			return fmt.Errorf("event %d at position %d, want %d", i, e.Position, first+uint64(i))
		case !e.CreatedAt.Equal(r.CommitTime):
			return fmt.Errorf("event %d created at %s, command committed at %s", i, e.CreatedAt, r.CommitTime)
		case e.ComputeHash() != e.Hash:
			return fmt.Errorf("event %d: content does not hash to its hash %s", i, e.Hash)
		case !r.Replayed && e.Metadata["command_id"] != c.ID:
			return fmt.Errorf("event %d has command_id %q, want %q", i, e.Metadata["command_id"], c.ID)
		case c.Type == chronicle.CmdTransfer && (r.TransferID == "" || e.Data.TransferID != r.TransferID):
			return fmt.Errorf("event %d has transfer id %q, result %q", i, e.Data.TransferID, r.TransferID)
		}
	}
	return nil
}

// wantRefused checks that r was refused with the domain's kind, code and field.
func wantRefused(t testing.TB, what string, r chronicle.Result, kind chronicle.Kind, code, field string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("%s: accepted at position %d, want %s", what, r.Position, code)
	}
	if r.Err.Kind != kind || r.Err.Code != code || r.Err.Field != field {
		t.Fatalf("%s: refused with kind %d code %s field %q (%s), want kind %d code %s field %q",
			what, r.Err.Kind, r.Err.Code, r.Err.Field, r.Err.Message, kind, code, field)
	}
}

// wantNotFound checks that err is the domain's not-found error.
func wantNotFound(t testing.TB, what string, err error) {
	t.Helper()
	var ce *chronicle.Error
	if !errors.As(err, &ce) || ce.Kind != chronicle.KindNotFound {
		t.Fatalf("%s: %v, want a KindNotFound *chronicle.Error", what, err)
	}
}

func mustHead(t testing.TB, s chronicle.EventStore) chronicle.Head {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

func mustAccount(t testing.TB, s chronicle.EventStore, id string) chronicle.Account {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	a, err := s.Account(ctx, id)
	if err != nil {
		t.Fatalf("Account(%s): %v", id, err)
	}
	return a
}

func mustEvents(t testing.TB, s chronicle.EventStore, q chronicle.EventQuery) []chronicle.Event {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	evs, err := s.Events(ctx, q)
	if err != nil {
		t.Fatalf("Events(%+v): %v", q, err)
	}
	checkEncodedEvents(t, ctx, s, q, evs)
	return evs
}

// checkEncodedEvents reads q again with each event's JSON (the store's own when it keeps
// it) and checks the JSON is the event's and the events are evs (of those positions
// both reads returned: the log may have grown in between).
func checkEncodedEvents(t testing.TB, ctx context.Context, s chronicle.EventStore, q chronicle.EventQuery, evs []chronicle.Event) {
	t.Helper()
	enc, err := chronicle.ReadEncodedEvents(ctx, s, q)
	if err != nil {
		t.Fatalf("ReadEncodedEvents(%+v): %v", q, err)
	}
	byPos := make(map[uint64]*chronicle.Event, len(evs))
	for i := range evs {
		byPos[evs[i].Position] = &evs[i]
	}
	for _, e := range enc {
		if want := e.Event.AppendJSON(nil); !bytes.Equal(e.JSON, want) {
			t.Fatalf("ReadEncodedEvents(%+v): position %d has JSON %s, want %s", q, e.Event.Position, e.JSON, want)
		}
		if o, ok := byPos[e.Event.Position]; ok && !bytes.Equal(o.AppendJSON(nil), e.JSON) {
			t.Fatalf("ReadEncodedEvents(%+v): position %d differs from Events'", q, e.Event.Position)
		}
	}
}

// waitHead polls until s's head reaches pos. A store sees its own acknowledged writes at
// once; another process's writes on a shared backing may take a moment.
func waitHead(t testing.TB, s chronicle.EventStore, pos uint64) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		h := mustHead(t, s)
		if h.Position >= pos {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head stays at %d, want %d", h.Position, pos)
		}
		<-tick.C
	}
}

// allEvents reads the whole log in ascending pages of pageSize, checking that pages are
// no larger than asked and continue where the last ended.
func allEvents(t testing.TB, s chronicle.EventStore, pageSize int) []chronicle.Event {
	t.Helper()
	var out []chronicle.Event
	var after uint64
	for {
		page := mustEvents(t, s, chronicle.EventQuery{After: after, Limit: pageSize})
		if len(page) == 0 {
			return out
		}
		if len(page) > pageSize {
			t.Fatalf("Events(after %d, limit %d) returned %d events", after, pageSize, len(page))
		}
		for _, e := range page {
			if e.Position != after+1 {
				t.Fatalf("Events(after %d): position %d follows %d: a gap or reorder", after, e.Position, after)
			}
			after = e.Position
		}
		out = append(out, page...)
	}
}

// checkCommitTimes checks that the events of one command share its commit time and that
// each command commits strictly after the one before (the suite gives every command an ID).
func checkCommitTimes(t testing.TB, events []chronicle.Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		prev, e := events[i-1], events[i]
		if e.Metadata["command_id"] == prev.Metadata["command_id"] {
			if !e.CreatedAt.Equal(prev.CreatedAt) {
				t.Fatalf("events %d and %d of one command have times %s and %s", prev.Position, e.Position, prev.CreatedAt, e.CreatedAt)
			}
		} else if !e.CreatedAt.After(prev.CreatedAt) {
			t.Fatalf("event %d committed at %s, not after event %d at %s", e.Position,
				e.CreatedAt.Format(time.RFC3339Nano), prev.Position, prev.CreatedAt.Format(time.RFC3339Nano))
		}
	}
}

// verify checks a store against a replay of its own log: the chain verifies, every
// balance_after holds, the head is the last event, every customer account is as the
// replay builds it, external accounts are not served, and each currency's balances (the
// store's customer accounts and the replay's external ones) sum to zero.
func verify(t testing.TB, s chronicle.EventStore) (*chronicle.Replayer, []chronicle.Event) {
	t.Helper()
	events := allEvents(t, s, 250)
	checkCommitTimes(t, events)
	rep := chronicle.NewReplayer()
	for _, e := range events {
		if err := rep.Add(e); err != nil {
			t.Fatalf("replaying the store's log: %v", err)
		}
	}
	if head, want := mustHead(t, s), rep.State.Head; !sameHead(head, want) {
		t.Fatalf("head %+v, the log ends at %+v", head, want)
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	totals := map[string]int64{}
	for _, want := range rep.State.SortedAccounts() {
		if want.External() {
			_, err := s.Account(ctx, want.ID)
			wantNotFound(t, "Account of external account "+want.ID, err)
			totals[want.Currency] += want.Balance
			continue
		}
		got := mustAccount(t, s, want.ID)
		if d := accountDiff(want, got); d != "" {
			t.Fatalf("account %s differs from the replay of the log: %s", want.ID, d)
		}
		totals[got.Currency] += got.Balance
	}
	for cur, sum := range totals {
		if sum != 0 {
			t.Fatalf("%s balances sum to %s, want 0", cur, money(sum, cur))
		}
	}
	return rep, events
}

func sameHead(a, b chronicle.Head) bool {
	return a.Position == b.Position && a.Hash == b.Hash && a.CommitTime.Equal(b.CommitTime)
}

// accountDiff lists the fields in which got differs from want ("" when none).
func accountDiff(want, got chronicle.Account) string {
	var d []string
	add := func(field string, w, g any) { d = append(d, fmt.Sprintf("%s %v, want %v", field, g, w)) }
	if want.ID != got.ID {
		add("id", want.ID, got.ID)
	}
	if want.OwnerName != got.OwnerName {
		add("owner", want.OwnerName, got.OwnerName)
	}
	if want.Currency != got.Currency {
		add("currency", want.Currency, got.Currency)
	}
	if want.Balance != got.Balance {
		add("balance", want.Balance, got.Balance)
	}
	if want.OverdraftLimit != got.OverdraftLimit {
		add("overdraft", want.OverdraftLimit, got.OverdraftLimit)
	}
	if want.Status != got.Status {
		add("status", want.Status, got.Status)
	}
	if !want.CreatedAt.Equal(got.CreatedAt) {
		add("created_at", want.CreatedAt, got.CreatedAt)
	}
	if !want.LastUpdated.Equal(got.LastUpdated) {
		add("last_updated", want.LastUpdated, got.LastUpdated)
	}
	if want.Version != got.Version {
		add("version", want.Version, got.Version)
	}
	if want.Held != got.Held {
		add("held", want.Held, got.Held)
	}
	return strings.Join(d, "; ")
}

// sameEvents reports how got differs from want, comparing each event's canonical
// encoding (every field but the hash) and its hash.
func sameEvents(want, got []chronicle.Event) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		if want[i].Hash != got[i].Hash || !bytes.Equal(want[i].AppendCanonical(nil), got[i].AppendCanonical(nil)) {
			return fmt.Errorf("event %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	return nil
}

// refEvents answers q by filtering the whole log: what EventQuery documents.
func refEvents(all []chronicle.Event, q chronicle.EventQuery) []chronicle.Event {
	limit := q.Limit
	if limit <= 0 || limit > chronicle.MaxEventsPage {
		limit = chronicle.MaxEventsPage
	}
	out := []chronicle.Event{}
	for i := range all {
		e := all[i]
		if q.Descending {
			e = all[len(all)-1-i]
		}
		switch {
		case len(out) == limit:
			return out
		case q.EventType != "" && e.EventType != q.EventType, q.AggregateID != "" && e.AggregateID != q.AggregateID:
		case q.Descending && q.After > 0 && e.Position >= q.After, !q.Descending && e.Position <= q.After:
		default:
			out = append(out, e)
		}
	}
	return out
}
