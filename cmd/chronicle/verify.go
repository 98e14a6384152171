package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// errVerifyFailed makes the process exit 1 after the report says what failed.
var errVerifyFailed = errors.New("verification failed")

// viewReader is what verify needs of a read model.
type viewReader interface {
	Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error)
	LineCount(ctx context.Context, id string) (int, error)
}

func verify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle verify", flag.ContinueOnError)
	nodeURL := fs.String("url", "http://127.0.0.1:4000", "node whose log (and view) to verify")
	tf := addTokenFlags(fs)
	readModel := fs.String("read-model", "", "also verify this PostgreSQL read model (postgres://...)")
	eventStore := fs.String("event-store", "", "read the log straight from this SQL event store's events table (postgres://...); the node at --url is then checked only when --url is given")
	wait := fs.Duration("wait", 30*time.Second, "how long a view may take to reach the log's head")
	clusterMode := fs.Bool("cluster", false, "also check every cluster member's own log and state (consistency=local) and compare them; the default when the node at --url names more than one member")
	allowUnreachable := fs.Bool("allow-unreachable", false, "with the cluster check: a member that cannot be read is reported but does not fail the result")
	tlsOpts := addClientTLSFlags(fs, false)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle verify [flags]\n\nChecks the hash chain, that every balance is the sum of its postings, that every currency\nsums to zero, and that each view agrees with the log. In a cluster it then reads every\nmember's own log and state and names any member that disagrees (see --cluster).\nExit status 1 on any failure.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	urlGiven := false
	fs.Visit(func(f *flag.Flag) { urlGiven = urlGiven || f.Name == "url" })
	tf.tls = tlsOpts
	c, err := tf.client(*nodeURL)
	if err != nil {
		return err
	}
	rep := &report{w: stdout}
	var events []chronicle.Event
	if *eventStore != "" {
		err := sqlstore.ScanLog(ctx, *eventStore, func(e chronicle.Event) error {
			events = append(events, e)
			return nil
		})
		if err != nil {
			rep.fail("events table", "%v", err)
			fmt.Fprintln(stdout, "RESULT: FAIL")
			return errVerifyFailed
		}
		rep.ok("events table", "%d rows: stored bytes decode, and every row's columns and event_data agree with them", len(events))
	} else {
		var err error
		if events, err = c.AllEvents(ctx); err != nil {
			return fmt.Errorf("read the log from %s: %w", *nodeURL, err)
		}
	}
	state := rep.checkLog(events)
	if state == nil {
		fmt.Fprintln(stdout, "RESULT: FAIL")
		return errVerifyFailed
	}
	head := uint64(len(events))
	waitCtx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	if *eventStore == "" || urlGiven {
		rep.checkView("node view", &httpView{c: c, minPosition: head}, state)
	}
	if *eventStore == "" || urlGiven {
		members, err := readMembers(ctx, c)
		switch {
		case err != nil && *clusterMode:
			rep.fail("cluster", "%v", err)
		case err == nil && (*clusterMode || len(members) > 1):
			verifyCluster(ctx, rep, tf, members, *allowUnreachable)
		}
	}
	if *readModel != "" {
		v, err := projector.OpenPostgresView(ctx, *readModel, nil)
		if err != nil {
			rep.fail("postgres view", "cannot open: %v", err)
		} else {
			defer v.Close()
			if err := waitPosition(waitCtx, v, head); err != nil {
				rep.fail("postgres view", "%v", err)
			} else {
				rep.checkView("postgres view", v, state)
			}
		}
	}
	if rep.failed {
		fmt.Fprintln(stdout, "RESULT: FAIL")
		return errVerifyFailed
	}
	fmt.Fprintln(stdout, "RESULT: OK")
	return nil
}

// waitPosition polls a view until it has applied pos.
func waitPosition(ctx context.Context, v projector.View, pos uint64) error {
	for {
		p, err := v.Position(ctx)
		if err != nil {
			return fmt.Errorf("read position: %w", err)
		}
		if p >= pos {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("view at position %d did not reach the log's head %d in time", p, pos)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type report struct {
	w      io.Writer
	failed bool
}

func (r *report) ok(check, format string, args ...any) {
	fmt.Fprintf(r.w, "%-14s ok    %s\n", check+":", fmt.Sprintf(format, args...))
}

func (r *report) fail(check, format string, args ...any) {
	r.failed = true
	fmt.Fprintf(r.w, "%-14s FAIL  %s\n", check+":", fmt.Sprintf(format, args...))
}

// checkLog verifies the chain and the postings by replaying the log; it returns the
// replayed state, or nil when the log itself is broken.
func (r *report) checkLog(events []chronicle.Event) *chronicle.MemState {
	rp := chronicle.NewReplayer()
	for _, e := range events {
		if err := rp.Add(e); err != nil {
			r.fail("chain", "%v", err)
			return nil
		}
	}
	st := rp.State
	pos, hash := st.Head.Position, st.Head.Hash
	r.ok("chain", "%d events, positions 1..%d, head %s", len(events), pos, short(hash))
	n := 0
	for _, a := range st.Accounts {
		if !a.External() {
			n++
		}
	}
	r.ok("postings", "%d accounts: every balance_after is the running sum of the account's postings", n)
	totals := st.Totals()
	var curs []string
	bad := false
	for cur, t := range totals {
		curs = append(curs, fmt.Sprintf("%s %d", cur, t))
		bad = bad || t != 0
	}
	sort.Strings(curs)
	if bad {
		r.fail("currencies", "per-currency totals are not zero: %s", strings.Join(curs, ", "))
	} else {
		r.ok("currencies", "%d currencies sum to zero across all accounts, external included", len(totals))
	}
	return st
}

// checkView compares a view with the replayed state account by account: balance,
// version and the number of statement lines, and that it holds no account the log lacks.
func (r *report) checkView(name string, v viewReader, st *chronicle.MemState) {
	ctx := context.Background()
	seen := map[string]bool{}
	var problems []string
	after := ""
	for {
		page, err := v.Accounts(ctx, after, chronicle.MaxPageSize)
		if err != nil {
			r.fail(name, "list accounts: %v", err)
			return
		}
		for _, a := range page {
			seen[a.ID] = true
			want, ok := st.Accounts[a.ID]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("account %s is not in the log", a.ID))
			case a.Balance != want.Balance || a.Currency != want.Currency:
				cur, _ := chronicle.LookupCurrency(want.Currency)
				problems = append(problems, fmt.Sprintf("account %s: balance %s %s, the log gives %s %s", a.ID,
					chronicle.FormatMinor(a.Balance, cur), a.Currency, chronicle.FormatMinor(want.Balance, cur), want.Currency))
			case a.Version != want.Version:
				problems = append(problems, fmt.Sprintf("account %s: version %d, the log has %d events", a.ID, a.Version, want.Version))
			case a.Status != want.Status:
				problems = append(problems, fmt.Sprintf("account %s: status %s, the log gives %s", a.ID, a.Status, want.Status))
			}
			if ok {
				n, err := v.LineCount(ctx, a.ID)
				if err != nil {
					r.fail(name, "count transactions of %s: %v", a.ID, err)
					return
				}
				if uint64(n) != want.Version {
					problems = append(problems, fmt.Sprintf("account %s: %d transactions, the log has %d events", a.ID, n, want.Version))
				}
			}
		}
		if len(page) < chronicle.MaxPageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	n := 0
	for id, a := range st.Accounts {
		if a.External() {
			continue
		}
		n++
		if !seen[id] {
			problems = append(problems, fmt.Sprintf("account %s is missing", id))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
		}
		r.fail(name, "%d disagreement(s) with the log:\n               %s", len(problems), strings.Join(problems, "\n               "))
		return
	}
	r.ok(name, "%d accounts agree with the log (balance, version, transaction count)", n)
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// httpView reads the node's own view through its API, at least at minPosition.
type httpView struct {
	c           *client.Client
	minPosition uint64
}

func (v *httpView) Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}, "min_position": {strconv.FormatUint(v.minPosition, 10)}}
	if after != "" {
		q.Set("after", after)
	}
	var out api.Accounts
	if _, err := v.c.Do(ctx, http.MethodGet, "/accounts?"+q.Encode(), nil, nil, &out); err != nil {
		return nil, err
	}
	accts := make([]chronicle.Account, 0, len(out.Accounts))
	for _, a := range out.Accounts {
		cur, err := chronicle.LookupCurrency(a.Currency)
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", a.AccountID, err)
		}
		bal, err := chronicle.ParseMoney(a.Balance, cur)
		if err != nil {
			return nil, fmt.Errorf("account %s balance %q: %w", a.AccountID, a.Balance, err)
		}
		accts = append(accts, chronicle.Account{ID: a.AccountID, Currency: a.Currency, Balance: bal, Version: a.Version,
			Status: chronicle.AccountStatus(a.Status)})
	}
	return accts, nil
}

func (v *httpView) LineCount(ctx context.Context, id string) (int, error) {
	lines, err := v.c.AllTransactions(ctx, id, v.minPosition)
	return len(lines), err
}
