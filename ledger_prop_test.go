package chronicle_test

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chronicle-ledger/chronicle"
)

// The property tests drive MemState with random batches and check it against a small,
// independent model of the ledger's rules (written from the spec, not from ledger.go),
// plus the invariants that must hold whatever the rules are.

var (
	propCurrencies = []string{"USD", "JPY", "BHD", "EUR"}
	propExponent   = map[string]int{"USD": 2, "JPY": 0, "BHD": 3, "EUR": 2}
	propAccounts   = []string{"acc0", "acc1", "acc2", "acc3", "acc4", "acc5"}
	propKeys       = []string{"", "", "", "", "k0", "k1", "k2"}
	// Amounts that are wrong for every currency, or right only for some.
	// Reasons of lifecycle commands: valid, missing, blank, with a control character.
	propReasons    = rapid.SampledFrom([]string{"court order", "kyc review", "customer left", "", " ", "a\tb"})
	propOddAmounts = []string{"0", "-1", "0.00", "-0.5", "1.001", "0.001", "1.5", "99999999999999999999",
		"9223372036854775807", "92233720368547758.07", "9223372036854775.808", "1e3", "", "1.0", "007.50"}
)

// ---------------------------------------------------------------------------------------
// generators

func genAmount(t *rapid.T, label string) string {
	if rapid.IntRange(0, 6).Draw(t, label+"_odd") == 0 {
		return rapid.SampledFrom(propOddAmounts).Draw(t, label)
	}
	whole := rapid.IntRange(0, 3000).Draw(t, label+"_whole")
	decimals := rapid.IntRange(0, 3).Draw(t, label+"_decimals")
	s := fmt.Sprint(whole)
	if decimals > 0 {
		frac := rapid.IntRange(0, int(math.Pow10(decimals))-1).Draw(t, label+"_frac")
		s += fmt.Sprintf(".%0*d", decimals, frac)
	}
	return s
}

func genOptionalAmount(t *rapid.T, label string) string {
	if rapid.Bool().Draw(t, label+"_set") {
		return genAmount(t, label)
	}
	return ""
}

// genCommand draws one command; earlier commands may come back as a client's retry.
func genCommand(t *rapid.T, earlier []chronicle.Command) chronicle.Command {
	if len(earlier) > 0 && rapid.IntRange(0, 3).Draw(t, "retry") == 0 {
		return retry(rapid.SampledFrom(earlier).Draw(t, "retry_of"))
	}
	// Mostly the accounts the first batch opens.
	account := rapid.SampledFrom(append(propAccounts, "acc0", "acc1", "acc1", "acc2", "acc3"))
	currencyField := rapid.SampledFrom([]string{"", "", "", "", "", "", "", "", "USD", "JPY", "eur", "BHD", "QQQ"})
	var c chronicle.Command
	switch rapid.IntRange(0, 17).Draw(t, "type") {
	case 0:
		c = newCreate(account.Draw(t, "account"),
			rapid.SampledFrom(append([]string{"XYZ", "jpy"}, propCurrencies...)).Draw(t, "currency"),
			genOptionalAmount(t, "initial"), genOptionalAmount(t, "overdraft"))
	case 2, 3, 4:
		c = withCurrency(newDeposit(account.Draw(t, "account"), genAmount(t, "amount")), currencyField.Draw(t, "currency"))
	case 5, 6, 7:
		c = withCurrency(newWithdraw(account.Draw(t, "account"), genAmount(t, "amount")), currencyField.Draw(t, "currency"))
	case 14, 15:
		c = newFreeze(account.Draw(t, "account"), propReasons.Draw(t, "reason"))
	case 16:
		c = newUnfreeze(account.Draw(t, "account"), propReasons.Draw(t, "reason"))
	case 17:
		c = newClose(account.Draw(t, "account"), propReasons.Draw(t, "reason"))
	default:
		c = withCurrency(newTransfer(account.Draw(t, "from"), account.Draw(t, "to"), genAmount(t, "amount")),
			currencyField.Draw(t, "currency"))
	}
	return withKey(c, rapid.SampledFrom(propKeys).Draw(t, "key"))
}

// ---------------------------------------------------------------------------------------
// the model

var plainDecimal = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// minorUnits converts s to minor units with big-number arithmetic: ok is false for text
// that is not a plain decimal, finer than the minor unit, or outside int64.
func minorUnits(s string, exp int) (int64, bool) {
	if len(s) > 40 || !plainDecimal.MatchString(s) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}

// signOf is the sign of a plain decimal.
func signOf(s string) int {
	r, _ := new(big.Rat).SetString(s)
	return r.Sign()
}

func fits(v *big.Int) bool { return v.IsInt64() }

type modelAccount struct {
	status  chronicle.AccountStatus
	cur     string
	owner   string
	balance int64
	limit   int64
	version uint64
}

type modelKey struct {
	body     chronicle.Command
	t        time.Time
	position uint64
	result   chronicle.Result // as first returned
}

type balancePoint struct {
	t       time.Time
	balance int64
}

type model struct {
	accounts map[string]*modelAccount
	external map[string]int64
	keys     map[string]*modelKey
	last     time.Time
	position uint64
	history  map[string][]balancePoint
}

func newModel() *model {
	return &model{accounts: map[string]*modelAccount{}, external: map[string]int64{},
		keys: map[string]*modelKey{}, history: map[string][]balancePoint{}}
}

// expectation is what the model predicts for one command.
type expectation struct {
	code     string // refusal code, "" for success
	replayOf *modelKey
	events   int
}

func body(c chronicle.Command) chronicle.Command {
	c.ID, c.IdempotencyKey, c.RequestID, c.CreatedBy = "", "", "", ""
	return c
}

// validate is the state-free check, in the spec's order.
func (m *model) validate(c chronicle.Command) string {
	checkAmount := func(s string) string {
		if s == "" {
			return chronicle.CodeMissingField
		}
		if len(s) > 40 || !plainDecimal.MatchString(s) || signOf(s) <= 0 {
			return chronicle.CodeInvalidAmount
		}
		return ""
	}
	checkCurrencyField := func(s string) string {
		if s != "" {
			if _, ok := propExponent[strings.ToUpper(s)]; !ok {
				return chronicle.CodeUnknownCurrency
			}
		}
		return ""
	}
	switch c.Type {
	case chronicle.CmdCreateAccount:
		exp, ok := propExponent[strings.ToUpper(c.Currency)]
		if !ok {
			return chronicle.CodeUnknownCurrency
		}
		for _, d := range []chronicle.Decimal{c.InitialBalance, c.OverdraftLimit} {
			if d == "" {
				continue
			}
			if v, ok := minorUnits(string(d), exp); !ok || v < 0 {
				return chronicle.CodeInvalidAmount
			}
		}
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		if code := checkAmount(string(c.Amount)); code != "" {
			return code
		}
		return checkCurrencyField(c.Currency)
	case chronicle.CmdTransfer:
		if c.FromAccountID == c.ToAccountID {
			return chronicle.CodeSameAccount
		}
		if code := checkAmount(string(c.Amount)); code != "" {
			return code
		}
		return checkCurrencyField(c.Currency)
	case chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount:
		switch {
		case c.Reason == "" && c.Type != chronicle.CmdUnfreezeAccount:
			return chronicle.CodeMissingField
		case c.Reason != "" && (strings.TrimSpace(c.Reason) == "" || strings.ContainsAny(c.Reason, "\t\n")):
			return chronicle.CodeInvalidField
		}
	}
	return ""
}

// step predicts and applies one command at the batch's clock reading and window.
func (m *model) step(c chronicle.Command, base time.Time, window time.Duration) expectation {
	if code := m.validate(c); code != "" {
		return expectation{code: code}
	}
	t := base
	if !t.After(m.last) {
		t = m.last.Add(time.Nanosecond)
	}
	if k, ok := m.keys[c.IdempotencyKey]; ok && c.IdempotencyKey != "" && !(window > 0 && t.Sub(k.t) > window) {
		if body(c) != k.body {
			return expectation{code: chronicle.CodeIdempotencyMismatch}
		}
		return expectation{replayOf: k}
	}
	changes := map[string]int64{} // customer account -> new balance
	var extCur string
	var extNew int64
	events := 1
	requireCurrency := func(held string) bool { return c.Currency == "" || strings.ToUpper(c.Currency) == held }
	// post moves v from debit to credit (nil: the external account of cur).
	post := func(debit, credit *modelAccount, cur string, v int64) string {
		bal := func(a *modelAccount) int64 {
			if a == nil {
				return m.external[cur]
			}
			return a.balance
		}
		nd := new(big.Int).Sub(big.NewInt(bal(debit)), big.NewInt(v))
		nc := new(big.Int).Add(big.NewInt(bal(credit)), big.NewInt(v))
		if !fits(nd) || !fits(nc) {
			return chronicle.CodeInvalidAmount
		}
		if debit != nil && nd.Int64() < -debit.limit {
			return chronicle.CodeInsufficientFunds
		}
		return ""
	}
	apply := func(a *modelAccount, id string, delta int64) {
		if a == nil {
			extNew = m.external[extCur] + delta
			return
		}
		changes[id] = a.balance + delta
	}
	switch c.Type {
	case chronicle.CmdCreateAccount:
		if _, ok := m.accounts[c.AccountID]; ok {
			return expectation{code: chronicle.CodeAccountExists}
		}
		cur := strings.ToUpper(c.Currency)
		exp := propExponent[cur]
		initial, limit := int64(0), int64(0)
		if c.InitialBalance != "" {
			initial, _ = minorUnits(string(c.InitialBalance), exp)
		}
		if c.OverdraftLimit != "" {
			limit, _ = minorUnits(string(c.OverdraftLimit), exp)
		}
		a := &modelAccount{status: chronicle.StatusActive, cur: cur, owner: c.OwnerName, limit: limit}
		extCur = cur
		if initial > 0 {
			if code := post(nil, a, cur, initial); code != "" {
				return expectation{code: code}
			}
			apply(nil, "", -initial)
		} else {
			extNew = m.external[cur]
		}
		a.balance = initial
		m.accounts[c.AccountID] = a
		changes[c.AccountID] = initial
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		a, ok := m.accounts[c.AccountID]
		if !ok {
			return expectation{code: chronicle.CodeAccountNotFound}
		}
		if code := statusRefusal(a, c.Type == chronicle.CmdWithdraw); code != "" {
			return expectation{code: code}
		}
		if !requireCurrency(a.cur) {
			return expectation{code: chronicle.CodeCurrencyMismatch}
		}
		v, ok := minorUnits(string(c.Amount), propExponent[a.cur])
		if !ok || v <= 0 {
			return expectation{code: chronicle.CodeInvalidAmount}
		}
		extCur = a.cur
		if c.Type == chronicle.CmdDeposit {
			if code := post(nil, a, a.cur, v); code != "" {
				return expectation{code: code}
			}
			apply(nil, "", -v)
			apply(a, c.AccountID, v)
		} else {
			if code := post(a, nil, a.cur, v); code != "" {
				return expectation{code: code}
			}
			apply(nil, "", v)
			apply(a, c.AccountID, -v)
		}
	case chronicle.CmdTransfer:
		from, ok := m.accounts[c.FromAccountID]
		if !ok {
			return expectation{code: chronicle.CodeAccountNotFound}
		}
		if code := statusRefusal(from, true); code != "" {
			return expectation{code: code}
		}
		to, ok := m.accounts[c.ToAccountID]
		if !ok {
			return expectation{code: chronicle.CodeAccountNotFound}
		}
		if code := statusRefusal(to, false); code != "" {
			return expectation{code: code}
		}
		if from.cur != to.cur || !requireCurrency(from.cur) {
			return expectation{code: chronicle.CodeCurrencyMismatch}
		}
		v, ok := minorUnits(string(c.Amount), propExponent[from.cur])
		if !ok || v <= 0 {
			return expectation{code: chronicle.CodeInvalidAmount}
		}
		if code := post(from, to, from.cur, v); code != "" {
			return expectation{code: code}
		}
		extCur = from.cur
		extNew = m.external[from.cur]
		apply(from, c.FromAccountID, -v)
		apply(to, c.ToAccountID, v)
		events = 2
	case chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount:
		a, ok := m.accounts[c.AccountID]
		if !ok {
			return expectation{code: chronicle.CodeAccountNotFound}
		}
		next := chronicle.StatusActive
		switch {
		case a.status == chronicle.StatusClosed:
			return expectation{code: chronicle.CodeAccountClosed}
		case c.Type == chronicle.CmdFreezeAccount && a.status == chronicle.StatusFrozen:
			return expectation{code: chronicle.CodeAccountFrozen}
		case c.Type == chronicle.CmdFreezeAccount:
			next = chronicle.StatusFrozen
		case c.Type == chronicle.CmdUnfreezeAccount && a.status != chronicle.StatusFrozen:
			return expectation{code: chronicle.CodeAccountNotFrozen}
		case c.Type == chronicle.CmdCloseAccount && a.balance != 0:
			return expectation{code: chronicle.CodeBalanceNotZero}
		case c.Type == chronicle.CmdCloseAccount:
			next = chronicle.StatusClosed
		}
		a.status = next
		changes[c.AccountID] = a.balance
	}
	// Success: commit.
	m.last = t
	m.position += uint64(events)
	ids := make([]string, 0, len(changes))
	for id := range changes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		a := m.accounts[id]
		a.balance = changes[id]
		a.version++
		m.history[id] = append(m.history[id], balancePoint{t: t, balance: a.balance})
	}
	if extCur != "" {
		m.external[extCur] = extNew
	}
	if c.IdempotencyKey != "" {
		m.keys[c.IdempotencyKey] = &modelKey{body: body(c), t: t, position: m.position}
	}
	return expectation{events: events}
}

// ---------------------------------------------------------------------------------------
// the property

func TestLedgerProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := chronicle.NewMemState()
		m := newModel()
		wall := t0
		var earlier []chronicle.Command
		var commitTimes []time.Time // of every command that wrote events, in order
		nBatches := rapid.IntRange(1, 16).Draw(rt, "batches")
		for bi := 0; bi < nBatches; bi++ {
			// The leader's clock mostly moves forward but may step back or stand still.
			wall = wall.Add(time.Duration(rapid.IntRange(0, 90).Draw(rt, "advance")) * time.Second)
			jitter := time.Duration(rapid.IntRange(-120, 10).Draw(rt, "jitter"))*time.Second +
				time.Duration(rapid.IntRange(0, 2).Draw(rt, "jitter_ns"))
			window := rapid.SampledFrom([]time.Duration{0, 30 * time.Second, 2 * time.Minute}).Draw(rt, "window")
			n := rapid.IntRange(0, 10).Draw(rt, "commands")
			var cmds []chronicle.Command
			if bi == 0 {
				// Open a few accounts first, mostly in two currencies so that transfers
				// between them can succeed.
				for i, id := range propAccounts[:4] {
					cur := rapid.SampledFrom([]string{"USD", "USD", "USD", "JPY", "JPY", "BHD", "EUR"}).Draw(rt, "open_currency")
					// A zero opening balance now and then, so that closes can succeed.
					open := rapid.SampledFrom([]int{0, 1, 1, 1}).Draw(rt, "open_nonzero") * rapid.IntRange(0, 2000).Draw(rt, "open_balance")
					cmds = append(cmds, newCreate(id, cur, fmt.Sprint(open),
						[]string{"", "10"}[i%2]))
				}
			}
			for range n {
				c := genCommand(rt, earlier)
				cmds = append(cmds, c)
				earlier = append(earlier, c)
			}
			b := chronicle.Batch{Time: wall.Add(jitter), IdempotencyWindow: window, Commands: cmds}

			before := cloneState(s)
			out, err := chronicle.Apply(s, s.Head, b)
			if err != nil {
				rt.Fatalf("batch %d: Apply: %v", bi, err)
			}
			res := execBatch(rt, s, b)
			// Apply leaves a replayed result's events to the store, which reads them back.
			for i := range out.Results {
				if r := &out.Results[i]; r.Replayed {
					r.SetEvents(s.EventsBetween(r.FirstPosition(), r.Position))
				}
			}
			if !reflect.DeepEqual(res, out.Results) {
				rt.Fatalf("batch %d: Execute and Apply disagree", bi)
			}

			// Each result against the model.
			var wantEvents []chronicle.Event
			for i, r := range res {
				c := cmds[i]
				exp := m.step(c, b.Time.UTC(), window)
				if exp.replayOf != nil {
					if r.Err != nil || !r.Replayed {
						rt.Fatalf("batch %d command %d %+v: got %+v, want a replay of position %d", bi, i, c, r, exp.replayOf.position)
					}
					orig := exp.replayOf.result
					r.Replayed = false
					if !reflect.DeepEqual(r, orig) {
						rt.Fatalf("batch %d command %d: replayed result\n%+v\nwant\n%+v", bi, i, r, orig)
					}
					continue
				}
				if exp.code != "" {
					if r.Err == nil {
						rt.Fatalf("batch %d command %d %+v: succeeded, want %s", bi, i, c, exp.code)
					}
					if r.Err.Code != exp.code {
						rt.Fatalf("batch %d command %d %+v: refused with %v, want %s", bi, i, c, r.Err, exp.code)
					}
					if r.Err.Kind == chronicle.KindInternal || len(r.Events) != 0 || r.Position != 0 || r.Replayed {
						rt.Fatalf("batch %d command %d: refusal %+v", bi, i, r)
					}
					continue
				}
				if r.Err != nil || r.Replayed {
					rt.Fatalf("batch %d command %d %+v: got %+v, want success", bi, i, c, r)
				}
				if len(r.Events) != exp.events || r.Position != m.position {
					rt.Fatalf("batch %d command %d: %d events at %d, want %d at %d", bi, i, len(r.Events), r.Position, exp.events, m.position)
				}
				if c.IdempotencyKey != "" {
					m.keys[c.IdempotencyKey].result = r
				}
				for _, e := range r.Events {
					if !e.CreatedAt.Equal(r.CommitTime) || e.Metadata["command_id"] != c.ID {
						rt.Fatalf("batch %d command %d: event %+v", bi, i, e)
					}
				}
				commitTimes = append(commitTimes, r.CommitTime)
				wantEvents = append(wantEvents, r.Events...)
			}

			// The outcome holds the successful commands' events and nothing else.
			if !reflect.DeepEqual(out.Events, wantEvents) && (len(out.Events) > 0 || len(wantEvents) > 0) {
				rt.Fatalf("batch %d: outcome events differ from the results' events", bi)
			}
			if len(out.History) != len(out.Events) {
				rt.Fatalf("batch %d: %d history points for %d events", bi, len(out.History), len(out.Events))
			}
			for i, e := range out.Events {
				h := out.History[i]
				cur, _ := chronicle.LookupCurrency(eventData(rt, e).Currency)
				want, err := chronicle.ParseMoney(eventData(rt, e).BalanceAfter, cur)
				if err != nil || h.AccountID != e.AggregateID || h.Position != e.Position || !h.Time.Equal(e.CreatedAt) || h.Balance != want {
					rt.Fatalf("batch %d: history point %+v for event %d (balance_after %d, %v)", bi, h, e.Position, want, err)
				}
			}

			// Refused commands changed nothing: the batch without them ends the same.
			var kept []chronicle.Command
			for i, r := range res {
				if r.Err == nil {
					kept = append(kept, cmds[i])
				}
			}
			alt := cloneState(before)
			altRes := execBatch(rt, alt, chronicle.Batch{Time: b.Time, IdempotencyWindow: window, Commands: kept})
			for i, r := range altRes {
				if r.Err != nil {
					rt.Fatalf("batch %d: without the refused commands, command %d is refused: %v", bi, i, r.Err)
				}
			}
			if !reflect.DeepEqual(alt.Log, s.Log) || !reflect.DeepEqual(alt.Accounts, s.Accounts) ||
				!reflect.DeepEqual(alt.Keys, s.Keys) || alt.Head != s.Head {
				rt.Fatalf("batch %d: refused commands changed the ledger", bi)
			}

			checkInvariants(rt, s, m, bi)
			checkClosedUnchanged(rt, before, s, bi)
		}

		// Commit times strictly increase from one command to the next.
		for i := 1; i < len(commitTimes); i++ {
			if !commitTimes[i].After(commitTimes[i-1]) {
				rt.Fatalf("commit time %v after %v", commitTimes[i], commitTimes[i-1])
			}
		}
		for i := 1; i < len(s.Log); i++ {
			p, e := s.Log[i-1], s.Log[i]
			same := p.Metadata["command_id"] == e.Metadata["command_id"]
			if same && !e.CreatedAt.Equal(p.CreatedAt) || !same && !e.CreatedAt.After(p.CreatedAt) {
				rt.Fatalf("events %d and %d: created_at %v, %v", p.Position, e.Position, p.CreatedAt, e.CreatedAt)
			}
		}

		checkReplay(rt, s)
		checkBalanceAt(rt, s, m)
		checkLifecycleLog(rt, s)
	})
}

func checkInvariants(rt *rapid.T, s *chronicle.MemState, m *model, bi int) {
	for cur, total := range s.Totals() {
		if total != 0 {
			rt.Fatalf("batch %d: %s balances sum to %d", bi, cur, total)
		}
	}
	for id, a := range s.Accounts {
		if a.External() {
			if a.ID != chronicle.ExternalAccountID(a.Currency) || a.Balance != m.external[a.Currency] {
				rt.Fatalf("batch %d: external account %+v, model balance %d", bi, a, m.external[a.Currency])
			}
			continue
		}
		if a.Balance < -a.OverdraftLimit {
			rt.Fatalf("batch %d: account %s at %d, below its overdraft limit %d", bi, id, a.Balance, a.OverdraftLimit)
		}
		ma, ok := m.accounts[id]
		if !ok || a.Balance != ma.balance || a.Currency != ma.cur || a.OverdraftLimit != ma.limit ||
			a.Version != ma.version || a.OwnerName != ma.owner || a.Status != ma.status {
			rt.Fatalf("batch %d: account %+v, model %+v", bi, a, ma)
		}
	}
	for id := range m.accounts {
		if _, ok := s.Accounts[id]; !ok {
			rt.Fatalf("batch %d: account %s missing", bi, id)
		}
	}
	for cur, bal := range m.external {
		if a, ok := s.Accounts[chronicle.ExternalAccountID(cur)]; (ok && a.Balance != bal) || (!ok && bal != 0) {
			rt.Fatalf("batch %d: external %s at %d, model %d", bi, cur, a.Balance, bal)
		}
	}
	if s.Head.Position != uint64(len(s.Log)) || s.Head.Position != m.position {
		rt.Fatalf("batch %d: head %d, log %d, model %d", bi, s.Head.Position, len(s.Log), m.position)
	}
}

// checkReplay rebuilds the ledger from its events and compares it with the live one.
func checkReplay(rt *rapid.T, s *chronicle.MemState) {
	r := chronicle.NewReplayer()
	for _, e := range s.Log {
		if err := r.Add(e); err != nil {
			rt.Fatalf("replay: %v", err)
		}
	}
	got := r.State
	if got.Head != s.Head {
		rt.Fatalf("replayed head %+v, live %+v", got.Head, s.Head)
	}
	if len(got.Accounts) != len(s.Accounts) {
		rt.Fatalf("replay has %d accounts, live %d", len(got.Accounts), len(s.Accounts))
	}
	for id, live := range s.Accounts {
		a, ok := got.Accounts[id]
		if !ok {
			rt.Fatalf("replay lacks account %s", id)
		}
		if a.Balance != live.Balance || a.Version != live.Version || a.Currency != live.Currency ||
			a.OwnerName != live.OwnerName || a.OverdraftLimit != live.OverdraftLimit || a.Status != live.Status {
			rt.Fatalf("account %s: replayed %+v\nlive %+v", id, a, live)
		}
		if !a.CreatedAt.Equal(live.CreatedAt) || !a.LastUpdated.Equal(live.LastUpdated) {
			rt.Fatalf("account %s timestamps: replayed %v/%v, live %v/%v", id, a.CreatedAt, a.LastUpdated, live.CreatedAt, live.LastUpdated)
		}
	}
	if !reflect.DeepEqual(got.Log, s.Log) && len(s.Log) > 0 {
		rt.Fatalf("replayed log differs")
	}
}

// checkBalanceAt compares chronicle.BalanceAt with the model's history and with the
// balance_after of the account's last event at or before t.
func checkBalanceAt(rt *rapid.T, s *chronicle.MemState, m *model) {
	if len(s.Log) == 0 {
		return
	}
	first, last := s.Log[0].CreatedAt, s.Log[len(s.Log)-1].CreatedAt
	for i := 0; i < 20; i++ {
		var at time.Time
		switch rapid.IntRange(0, 3).Draw(rt, "at_kind") {
		case 0: // exactly an event's time
			at = s.Log[rapid.IntRange(0, len(s.Log)-1).Draw(rt, "at_event")].CreatedAt
		case 1: // just before an event
			at = s.Log[rapid.IntRange(0, len(s.Log)-1).Draw(rt, "at_event")].CreatedAt.Add(-time.Nanosecond)
		default:
			span := last.Sub(first) + 2*time.Minute
			at = first.Add(-time.Minute + time.Duration(rapid.Int64Range(0, int64(span)).Draw(rt, "at_offset")))
		}
		id := rapid.SampledFrom(propAccounts).Draw(rt, "at_account")

		got, ok, err := chronicle.BalanceAt(s.Log, id, at)
		if err != nil {
			rt.Fatalf("BalanceAt(%s, %v): %v", id, at, err)
		}
		// From the model's history.
		var want int64
		wantOK := false
		for _, p := range m.history[id] {
			if !p.t.After(at) {
				want, wantOK = p.balance, true
			}
		}
		if ok != wantOK || got != want {
			rt.Fatalf("BalanceAt(%s, %v) = %d, %v; model says %d, %v", id, at, got, ok, want, wantOK)
		}
		// From the log: balance_after of the last event at or before at.
		var fromLog string
		for _, e := range s.Log {
			if e.AggregateID == id && !e.CreatedAt.After(at) {
				fromLog = eventData(rt, e).BalanceAfter
			}
		}
		if fromLog == "" {
			if ok {
				rt.Fatalf("BalanceAt(%s, %v) found a balance before the account's first event", id, at)
			}
			continue
		}
		cur, _ := chronicle.LookupCurrency(s.Accounts[id].Currency)
		if chronicle.FormatMinor(got, cur) != fromLog {
			rt.Fatalf("BalanceAt(%s, %v) = %d, last balance_after %s", id, at, got, fromLog)
		}
	}
}

// statusRefusal is the model's status rule: a closed account takes nothing, a frozen one
// takes no debit.
func statusRefusal(a *modelAccount, debit bool) string {
	switch {
	case a.status == chronicle.StatusClosed:
		return chronicle.CodeAccountClosed
	case a.status == chronicle.StatusFrozen && debit:
		return chronicle.CodeAccountFrozen
	}
	return ""
}

// checkClosedUnchanged: an account closed before a batch is exactly as it was after it.
func checkClosedUnchanged(rt *rapid.T, before, after *chronicle.MemState, bi int) {
	for id, a := range before.Accounts {
		if a.Status == chronicle.StatusClosed && after.Accounts[id] != a {
			rt.Fatalf("batch %d: closed account %s changed:\n%+v\n%+v", bi, id, a, after.Accounts[id])
		}
	}
}

// checkLifecycleLog walks the log with the statuses its own events give (not the state
// machine's): no withdrawal leaves a frozen account (so its balance never decreases
// while frozen), nothing follows an account's AccountClosed, and every AccountClosed
// has a zero balance.
func checkLifecycleLog(rt *rapid.T, s *chronicle.MemState) {
	status := map[string]chronicle.AccountStatus{}
	balance := map[string]int64{}
	for _, e := range s.Log {
		id := e.AggregateID
		st := status[id]
		if st == chronicle.StatusClosed {
			rt.Fatalf("position %d: %s after account %s was closed", e.Position, e.EventType, id)
		}
		switch e.EventType {
		case chronicle.EventAccountCreated:
			st = chronicle.StatusActive
		case chronicle.EventAccountFrozen:
			st = chronicle.StatusFrozen
		case chronicle.EventAccountUnfrozen:
			st = chronicle.StatusActive
		case chronicle.EventAccountClosed:
			if e.Data.BalanceAfter != 0 {
				rt.Fatalf("position %d: account %s closed at balance %d", e.Position, id, e.Data.BalanceAfter)
			}
			st = chronicle.StatusClosed
		case chronicle.EventMoneyWithdrawn:
			if st == chronicle.StatusFrozen {
				rt.Fatalf("position %d: withdrawal from frozen account %s", e.Position, id)
			}
		}
		if st == chronicle.StatusFrozen && status[id] == chronicle.StatusFrozen && e.Data.BalanceAfter < balance[id] {
			rt.Fatalf("position %d: frozen account %s went from %d to %d", e.Position, id, balance[id], e.Data.BalanceAfter)
		}
		if chronicle.IsLifecycleEvent(e.EventType) && e.Data.BalanceAfter != balance[id] {
			rt.Fatalf("position %d: %s changed account %s's balance from %d to %d", e.Position, e.EventType, id, balance[id], e.Data.BalanceAfter)
		}
		status[id], balance[id] = st, e.Data.BalanceAfter
	}
}
