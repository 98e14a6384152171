package storetest

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// MemStore is a chronicle.EventStore over chronicle.MemState: the reference every other
// store is measured against, and the proof that the suite asks nothing of a store that
// the domain alone cannot give. Each Execute call is one chronicle.Batch stamped with
// time.Now(); a mutex serializes calls as a store's log would.
type MemStore struct {
	b *memBacking
}

// memBacking is the memory several MemStores may share, as processes share a database.
type memBacking struct {
	mu sync.RWMutex
	st *chronicle.MemState
	// streams holds, per account, the log indexes of its events, for Events and BalanceAt.
	streams map[string][]int
	// failed is set when Apply reported a broken invariant: a store must stop, not go on.
	failed error
	// tokens is the token table, by name.
	tokens map[string]chronicle.Token
}

var (
	_ chronicle.EventStore = (*MemStore)(nil)
	_ chronicle.TokenStore = (*MemStore)(nil)
)

// NewMemStore returns a store on a fresh, empty ledger.
func NewMemStore() *MemStore {
	return &MemStore{b: &memBacking{st: chronicle.NewMemState(), streams: map[string][]int{}, tokens: map[string]chronicle.Token{}}}
}

// Attach returns another store on the same memory: what a restart keeping its memory, or
// a second process on one database, would see.
func (s *MemStore) Attach() *MemStore { return &MemStore{b: s.b} }

// Execute implements chronicle.EventStore.
func (s *MemStore) Execute(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if len(cmds) > chronicle.MaxBatchCommands {
		return nil, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBatchTooLarge, "at most %d commands per batch", chronicle.MaxBatchCommands)
	}
	if err := ctx.Err(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "request ended before the command was executed: %v", err)
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "store stopped: %v", b.failed)
	}
	first := len(b.st.Log)
	// Apply is pure: on an error nothing was kept, and the store stops here.
	res, err := b.st.Execute(chronicle.Batch{Time: time.Now(), Commands: cmds})
	if err != nil {
		b.failed = err
		return nil, chronicle.Errorf(chronicle.KindInternal, chronicle.CodeInternal, "store stopped: %v", err)
	}
	for i := first; i < len(b.st.Log); i++ {
		id := b.st.Log[i].AggregateID
		b.streams[id] = append(b.streams[id], i)
	}
	for i := range res {
		res[i].Events = cloneEvents(res[i].Events)
	}
	return res, nil
}

// Account implements chronicle.EventStore; external accounts are not served.
func (s *MemStore) Account(_ context.Context, id string) (chronicle.Account, error) {
	s.b.mu.RLock()
	defer s.b.mu.RUnlock()
	a, ok := s.b.st.Accounts[id]
	if !ok || a.External() {
		return chronicle.Account{}, chronicle.ErrAccountNotFound(id)
	}
	return a, nil
}

// BalanceAt implements chronicle.EventStore.
func (s *MemStore) BalanceAt(_ context.Context, id string, t time.Time) (chronicle.BalancePoint, error) {
	b := s.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	if a, ok := b.st.Accounts[id]; !ok || a.External() {
		return chronicle.BalancePoint{}, chronicle.ErrAccountNotFound(id)
	}
	stream := b.streams[id]
	// Commit times grow along the log, so the stream is ordered by time too.
	n := sort.Search(len(stream), func(i int) bool { return b.st.Log[stream[i]].CreatedAt.After(t) })
	if n == 0 {
		return chronicle.BalancePoint{}, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound,
			"account %q did not exist at %s", id, t.UTC().Format(time.RFC3339Nano))
	}
	e := b.st.Log[stream[n-1]]
	return chronicle.BalancePoint{AccountID: id, Time: e.CreatedAt, Balance: e.Data.BalanceAfter, Position: e.Position}, nil
}

// Events implements chronicle.EventStore.
func (s *MemStore) Events(_ context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	b := s.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	limit := q.Limit
	if limit <= 0 || limit > chronicle.MaxEventsPage {
		limit = chronicle.MaxEventsPage
	}
	// idx lists the candidate log indexes in position order: the account's stream or the log.
	n, idx := len(b.st.Log), func(i int) int { return i }
	if q.AggregateID != "" {
		stream := b.streams[q.AggregateID]
		n, idx = len(stream), func(i int) int { return stream[i] }
	}
	pos := func(i int) uint64 { return b.st.Log[idx(i)].Position }
	out := []chronicle.Event{}
	// keep adds the i-th candidate when its type matches and reports whether to go on.
	keep := func(i int) bool {
		e := b.st.Log[idx(i)]
		if q.EventType == "" || e.EventType == q.EventType {
			out = append(out, cloneEvent(e))
		}
		return len(out) < limit
	}
	if q.Descending {
		end := n // candidates below position After, or all when After is zero
		if q.After > 0 {
			end = sort.Search(n, func(i int) bool { return pos(i) >= q.After })
		}
		for i := end - 1; i >= 0; i-- {
			if !keep(i) {
				break
			}
		}
		return out, nil
	}
	for i := sort.Search(n, func(i int) bool { return pos(i) > q.After }); i < n; i++ {
		if !keep(i) {
			break
		}
	}
	return out, nil
}

// Head implements chronicle.EventStore.
func (s *MemStore) Head(context.Context) (chronicle.Head, error) {
	s.b.mu.RLock()
	defer s.b.mu.RUnlock()
	return s.b.st.Head, nil
}

// cloneEvent copies e's metadata map too, so callers cannot change the log through it.
func cloneEvent(e chronicle.Event) chronicle.Event {
	e.Metadata = maps.Clone(e.Metadata)
	return e
}

func cloneEvents(evs []chronicle.Event) []chronicle.Event {
	if evs == nil {
		return nil
	}
	out := make([]chronicle.Event, len(evs))
	for i, e := range evs {
		out[i] = cloneEvent(e)
	}
	return out
}

// ApplyToken implements chronicle.TokenStore.
func (s *MemStore) ApplyToken(ctx context.Context, op chronicle.TokenOp) (chronicle.Token, error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	existing, found := b.tokens[op.Name]
	t, write, err := chronicle.ApplyTokenOp(op, existing, found, len(b.tokens) > 0)
	if err != nil {
		return chronicle.Token{}, err
	}
	if write {
		b.tokens[t.Name] = t
	}
	return t, nil
}

// Tokens implements chronicle.TokenStore.
func (s *MemStore) Tokens(ctx context.Context) ([]chronicle.Token, error) {
	b := s.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := slices.Collect(maps.Values(b.tokens))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
