package raftstore

import (
	"unsafe"

	"github.com/chronicle-ledger/chronicle"
)

// accountTable is the working state's accounts, laid out for a heap the garbage collector
// barely has to look at. A map of chronicle.Account values held five pointers per account
// (the id, the owner's name, the currency, the status, the map key) and two allocations;
// with a million accounts the collector's marking of it took a fifth of the CPU under
// load. Here each account is a pointer-free record, its owner's name is in an append-only
// byte arena, currency and status are indexes into a short list of interned strings, and
// the only pointer per account left is the index's key.
//
// It is not safe for concurrent use: working's lock and single writer cover it.
type accountTable struct {
	index map[string]uint32 // account id -> position in recs
	recs  []accountRec
	// text holds owner names. It only grows: bytes once written never change, so the
	// strings get hands out (views, not copies) stay valid; when append moves it to a
	// larger array, the old one lives on for as long as such a string does.
	text []byte
	// names are the interned currencies and statuses (a handful), by position.
	names   []string
	nameIdx map[string]uint32
}

// accountRec is one account without pointers; times are chronicle.StoredNanos, as the
// binary layout stores them, so the round trip gives back what loadWorking would decode.
type accountRec struct {
	balance, overdraft, held int64
	created, updated         int64
	version                  uint64
	ownerOff                 uint64
	ownerLen                 uint32
	currency, status         uint32
}

func newAccountTable() *accountTable {
	return &accountTable{index: map[string]uint32{}, nameIdx: map[string]uint32{}}
}

func (t *accountTable) len() int { return len(t.recs) }

// get returns the account with id, if there is one.
func (t *accountTable) get(id string) (chronicle.Account, bool) {
	i, ok := t.index[id]
	if !ok {
		return chronicle.Account{}, false
	}
	return t.account(id, &t.recs[i]), true
}

func (t *accountTable) account(id string, r *accountRec) chronicle.Account {
	return chronicle.Account{ID: id, OwnerName: t.owner(r), Currency: t.names[r.currency],
		Balance: r.balance, OverdraftLimit: r.overdraft, Status: chronicle.AccountStatus(t.names[r.status]),
		CreatedAt: chronicle.TimeFromStoredNanos(r.created), LastUpdated: chronicle.TimeFromStoredNanos(r.updated), Version: r.version, Held: r.held}
}

func (t *accountTable) owner(r *accountRec) string {
	if r.ownerLen == 0 {
		return ""
	}
	return unsafe.String(&t.text[r.ownerOff], int(r.ownerLen))
}

// put adds a or replaces the account with a.ID.
func (t *accountTable) put(a chronicle.Account) {
	r := accountRec{balance: a.Balance, overdraft: a.OverdraftLimit, held: a.Held,
		created: chronicle.StoredNanos(a.CreatedAt), updated: chronicle.StoredNanos(a.LastUpdated), version: a.Version,
		currency: t.intern(a.Currency), status: t.intern(string(a.Status))}
	i, exists := t.index[a.ID]
	if exists && t.owner(&t.recs[i]) == a.OwnerName {
		// Owners do not change: keep the name already in the arena.
		r.ownerOff, r.ownerLen = t.recs[i].ownerOff, t.recs[i].ownerLen
	} else if a.OwnerName != "" {
		r.ownerOff, r.ownerLen = uint64(len(t.text)), uint32(len(a.OwnerName))
		t.text = append(t.text, a.OwnerName...)
	}
	if exists {
		t.recs[i] = r
		return
	}
	t.index[a.ID] = uint32(len(t.recs))
	t.recs = append(t.recs, r)
}

// intern returns s's position in names, adding it the first time.
func (t *accountTable) intern(s string) uint32 {
	if i, ok := t.nameIdx[s]; ok {
		return i
	}
	i := uint32(len(t.names))
	t.names = append(t.names, s)
	t.nameIdx[s] = i
	return i
}

// each calls fn with every account, in no particular order.
func (t *accountTable) each(fn func(chronicle.Account)) {
	for id, i := range t.index {
		fn(t.account(id, &t.recs[i]))
	}
}
