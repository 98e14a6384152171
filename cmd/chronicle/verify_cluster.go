package main

// verify --cluster: every member's own log and state, read with consistency=local, and
// compared across members.
//
// How members that lag under load are compared soundly:
//
//   - Each member's log is checked on its own (hash chain, postings), and its state is
//     checked against that log account by account at the account's own version: an
//     account read at version v must hold the balance_after of its v-th event in the
//     member's log. The accounts are read before the log, so the log read afterwards
//     covers every version the state showed, whatever was applied in between.
//   - Across members, the logs are compared up to the smallest head among them (the
//     common position C). Because every hash covers the previous one, two verified
//     chains with the same hash at C hold the same events at every position up to C;
//     the member outside the majority is named with the first position where it differs.
//     Balances at C are then replayed from each member's own log and compared too, so a
//     disagreement is shown in money, not only in hashes.
//   - Before reading, each member is asked to reach the head the reference member had at
//     the start (min_position, bounded by the node's --max-wait): under steady load the
//     common position is then at least that head. A member that cannot reach it in time
//     is still compared, up to its own head, and the lag is shown.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
)

// clusterMember is one member as the cluster overview names it.
type clusterMember struct {
	id, apiURL, suffrage string
	leader               bool
}

// readMembers asks the node at c for the cluster's members (GET /cluster).
func readMembers(ctx context.Context, c *client.Client) ([]clusterMember, error) {
	var ov clusterOverview
	if _, err := c.Do(ctx, http.MethodGet, "/cluster", nil, nil, &ov); err != nil {
		return nil, fmt.Errorf("read the cluster's members from %s/cluster: %w", c.BaseURL(), err)
	}
	members := make([]clusterMember, 0, len(ov.Nodes))
	for _, m := range ov.Nodes {
		members = append(members, clusterMember{id: m.ID, apiURL: strings.TrimRight(m.APIURL, "/"), suffrage: m.Suffrage, leader: m.Leader || m.ID == ov.Leader})
	}
	return members, nil
}

// memberState is what verify read from one member, with its own checks' results.
type memberState struct {
	clusterMember
	events   []chronicle.Event
	accounts []chronicle.Account
	// headBefore is the member's head read before its accounts.
	headBefore uint64
	// err: unreachable or unreadable; broken: its own log or state is inconsistent.
	err    error
	broken []string
	lagged string
}

func (m *memberState) head() uint64 { return uint64(len(m.events)) }

func (m *memberState) headHash() string {
	if len(m.events) == 0 {
		return chronicle.GenesisHead().Hash
	}
	return m.events[len(m.events)-1].Hash
}

// localGet reads path from the member's own state (?consistency=local).
func localGet(ctx context.Context, c *client.Client, path string, q url.Values, out any) error {
	q.Set("consistency", "local")
	_, err := c.Do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, nil, out)
	return err
}

// localHead is the position of the member's newest event, from its own log.
func localHead(ctx context.Context, c *client.Client, minPosition uint64) (uint64, error) {
	q := url.Values{"order": {"desc"}, "limit": {"1"}}
	if minPosition > 0 {
		q.Set("min_position", strconv.FormatUint(minPosition, 10))
	}
	var out api.Events
	if err := localGet(ctx, c, "/events", q, &out); err != nil {
		return 0, err
	}
	if len(out.Events) == 0 {
		return 0, nil
	}
	return out.Events[0].Position, nil
}

// readMember reads one member's head, accounts and then its whole log, all local.
func readMember(ctx context.Context, c *client.Client, m *memberState, wantHead uint64) {
	h, err := localHead(ctx, c, wantHead)
	if err != nil && client.CodeOf(err) == chronicle.CodeTimeout {
		if h, err = localHead(ctx, c, 0); err == nil {
			m.lagged = fmt.Sprintf("did not reach position %d in time (at %d)", wantHead, h)
		}
	}
	if err != nil {
		m.err = fmt.Errorf("read its head: %w", err)
		return
	}
	m.headBefore = h
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(chronicle.MaxPageSize)}}
		if after != "" {
			q.Set("after", after)
		}
		var out api.Accounts
		if err := localGet(ctx, c, "/accounts", q, &out); err != nil {
			m.err = fmt.Errorf("read its accounts: %w", err)
			return
		}
		for _, a := range out.Accounts {
			acc, err := parseAccount(a)
			if err != nil {
				m.broken = append(m.broken, err.Error())
				continue
			}
			m.accounts = append(m.accounts, acc)
		}
		if len(out.Accounts) < chronicle.MaxPageSize {
			break
		}
		after = out.Accounts[len(out.Accounts)-1].AccountID
	}
	var pos uint64
	for {
		q := url.Values{"order": {"asc"}, "limit": {strconv.Itoa(chronicle.MaxEventsPage)}, "after": {strconv.FormatUint(pos, 10)}}
		var out api.Events
		if err := localGet(ctx, c, "/events", q, &out); err != nil {
			m.err = fmt.Errorf("read its log after position %d: %w", pos, err)
			return
		}
		m.events = append(m.events, out.Events...)
		if len(out.Events) < chronicle.MaxEventsPage {
			return
		}
		pos = out.Events[len(out.Events)-1].Position
	}
}

func parseAccount(a api.Account) (chronicle.Account, error) {
	cur, err := chronicle.LookupCurrency(a.Currency)
	if err != nil {
		return chronicle.Account{}, fmt.Errorf("account %s: %w", a.AccountID, err)
	}
	bal, err := chronicle.ParseMoney(a.Balance, cur)
	if err != nil {
		return chronicle.Account{}, fmt.Errorf("account %s: balance %q: %w", a.AccountID, a.Balance, err)
	}
	return chronicle.Account{ID: a.AccountID, Currency: cur.Code, Balance: bal, Version: a.Version}, nil
}

// checkOwn checks a member's log (chain and postings) and its state against that log.
func (m *memberState) checkOwn() {
	rp := chronicle.NewReplayer()
	// balances[id][v-1] is the account's balance after its v-th event.
	balances := map[string][]int64{}
	created := map[string]uint64{}
	for _, e := range m.events {
		if err := rp.Add(e); err != nil {
			m.broken = append(m.broken, fmt.Sprintf("its own log is broken: %v", err))
			return
		}
		balances[e.AggregateID] = append(balances[e.AggregateID], e.Data.BalanceAfter)
		if _, ok := created[e.AggregateID]; !ok {
			created[e.AggregateID] = e.Position
		}
	}
	seen := map[string]bool{}
	var problems []string
	for _, a := range m.accounts {
		seen[a.ID] = true
		h := balances[a.ID]
		switch {
		case a.Version == 0 || a.Version > uint64(len(h)):
			problems = append(problems, fmt.Sprintf("account %s is at version %d, its own log has %d events of it", a.ID, a.Version, len(h)))
		case h[a.Version-1] != a.Balance:
			cur, _ := chronicle.LookupCurrency(a.Currency)
			problems = append(problems, fmt.Sprintf("account %s holds %s at version %d, its own log gives %s", a.ID,
				chronicle.FormatMinor(a.Balance, cur), a.Version, chronicle.FormatMinor(h[a.Version-1], cur)))
		}
	}
	for id, pos := range created {
		if pos <= m.headBefore && !seen[id] && !chronicle.IsExternal(id) {
			problems = append(problems, fmt.Sprintf("account %s (created at position %d) is missing from its state", id, pos))
		}
	}
	sort.Strings(problems)
	m.broken = append(m.broken, problems...)
}

// balancesAt replays events[:pos] and returns every account's balance.
func balancesAt(events []chronicle.Event, pos uint64) map[string]chronicle.Account {
	rp := chronicle.NewReplayer()
	for _, e := range events[:pos] {
		if rp.Add(e) != nil {
			break // checked before: not reached
		}
	}
	return rp.State.Accounts
}

// verifyCluster reads every member and compares them; it reports on rep.
func verifyCluster(ctx context.Context, rep *report, tf *tokenFlags, members []clusterMember, allowUnreachable bool) {
	if len(members) == 0 {
		rep.fail("cluster", "the node names no members: it has not formed or joined a cluster")
		return
	}
	// The reference for the start head is the leader, else the first member.
	sort.SliceStable(members, func(i, j int) bool { return members[i].leader && !members[j].leader })
	states := make([]*memberState, len(members))
	var startHead uint64
	for i, cm := range members {
		m := &memberState{clusterMember: cm}
		states[i] = m
		if cm.apiURL == "" {
			m.err = errors.New("no API URL is registered for it")
			continue
		}
		c, err := tf.client(cm.apiURL)
		if err != nil {
			m.err = err
			continue
		}
		readMember(ctx, c, m, startHead)
		if i == 0 && m.err == nil {
			startHead = m.headBefore
		}
	}
	var good []*memberState
	for _, m := range states {
		name := "member " + m.id
		switch {
		case m.err != nil && allowUnreachable:
			rep.ok(name, "skipped (--allow-unreachable): unreachable at %s: %v", orDash(m.apiURL), m.err)
			continue
		case m.err != nil:
			rep.fail(name, "unreachable at %s: %v", orDash(m.apiURL), m.err)
			continue
		}
		m.checkOwn()
		if len(m.broken) > 0 {
			rep.fail(name, "%s", indentList(m.broken))
			continue
		}
		good = append(good, m)
	}
	if len(good) == 0 {
		rep.fail("cluster", "no member could be compared")
		return
	}
	common := good[0].head()
	for _, m := range good[1:] {
		common = min(common, m.head())
	}
	// Group the members by their hash at the common position: equal hashes there mean
	// equal logs up to it (each chain was verified). The largest group is the reference.
	groups := map[string][]*memberState{}
	for _, m := range good {
		h := chronicle.GenesisHead().Hash
		if common > 0 {
			h = m.events[common-1].Hash
		}
		groups[h] = append(groups[h], m)
	}
	var ref []*memberState
	for _, g := range groups {
		if len(g) > len(ref) || len(g) == len(ref) && g[0].leader {
			ref = g
		}
	}
	if len(ref)*2 <= len(good) && len(groups) > 1 {
		// No majority: every member is named, against the first.
		ref = []*memberState{good[0]}
	}
	refM := ref[0]
	refBal := balancesAt(refM.events, common)
	for _, m := range good {
		name := "member " + m.id
		role := m.suffrage
		if m.leader {
			role = "leader"
		}
		desc := fmt.Sprintf("%s, head %d %s", strings.ToLower(orDash(role)), m.head(), short(m.headHash()))
		if m.lagged != "" {
			desc += "; " + m.lagged
		}
		if m == refM {
			rep.ok(name, "%s; own log and state agree", desc)
			continue
		}
		var diffs []string
		for i := range common {
			a, b := m.events[i], refM.events[i]
			if a.Hash != b.Hash || a.EventID != b.EventID {
				diffs = append(diffs, fmt.Sprintf("position %d: hash %s (event %s) here, %s (event %s) on %s",
					a.Position, short(a.Hash), a.EventID, short(b.Hash), b.EventID, refM.id))
				break
			}
		}
		diffs = append(diffs, balanceDiffs(balancesAt(m.events, common), refBal, refM.id, common)...)
		if len(diffs) > 0 {
			rep.fail(name, "%s; disagrees with %s:\n               %s", desc, refM.id, indentList(diffs))
			continue
		}
		rep.ok(name, "%s; own log and state agree, and with %s up to position %d", desc, refM.id, common)
	}
	heads := make([]string, 0, len(good))
	for _, m := range good {
		heads = append(heads, fmt.Sprintf("%s %d", m.id, m.head()))
	}
	if !rep.failed {
		rep.ok("cluster", "%d members agree on every position, hash and balance up to position %d (heads: %s)",
			len(good), common, strings.Join(heads, ", "))
	}
}

// balanceDiffs lists the accounts whose balance or version at position pos differs.
func balanceDiffs(got, want map[string]chronicle.Account, refID string, pos uint64) []string {
	var out []string
	fmtBal := func(a chronicle.Account) string {
		cur, _ := chronicle.LookupCurrency(a.Currency)
		return fmt.Sprintf("%s %s (version %d)", chronicle.FormatMinor(a.Balance, cur), a.Currency, a.Version)
	}
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("account %s at position %d: missing here, %s on %s", id, pos, fmtBal(w), refID))
		case g.Balance != w.Balance || g.Version != w.Version || g.Currency != w.Currency:
			out = append(out, fmt.Sprintf("account %s at position %d: %s here, %s on %s", id, pos, fmtBal(g), fmtBal(w), refID))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			out = append(out, fmt.Sprintf("account %s at position %d: %s here, absent on %s", id, pos, fmtBal(g), refID))
		}
	}
	sort.Strings(out)
	return out
}

func indentList(items []string) string {
	if len(items) > 20 {
		items = append(items[:20:20], fmt.Sprintf("... and %d more", len(items)-20))
	}
	return strings.Join(items, "\n               ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
