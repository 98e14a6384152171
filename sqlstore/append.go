package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

const accountColumns = `account_id, owner_name, currency, balance, overdraft_limit, status, created_at_nanos, last_updated_nanos, version, held`

func scanAccount(row pgx.Row) (chronicle.Account, error) {
	var a chronicle.Account
	var status string
	var created, updated, version int64
	if err := row.Scan(&a.ID, &a.OwnerName, &a.Currency, &a.Balance, &a.OverdraftLimit, &status, &created, &updated, &version, &a.Held); err != nil {
		return chronicle.Account{}, err
	}
	a.Status, a.CreatedAt, a.LastUpdated, a.Version = chronicle.AccountStatus(status), fromNanos(created), fromNanos(updated), uint64(version)
	return a, nil
}

// txState is the chronicle.State of one append attempt: the rows prefetched for the
// batch, and a query per miss. A nil entry records a row known not to exist.
type txState struct {
	ctx      context.Context
	tx       pgx.Tx
	accounts map[string]*chronicle.Account
	keys     map[string]*chronicle.IdempotencyRecord
	holds    map[string]*chronicle.PendingTransfer // holds.go
}

func (st *txState) Account(id string) (chronicle.Account, bool, error) {
	if a, ok := st.accounts[id]; ok {
		if a == nil {
			return chronicle.Account{}, false, nil
		}
		return *a, true, nil
	}
	a, err := scanAccount(st.tx.QueryRow(st.ctx, `SELECT `+accountColumns+` FROM chronicle_accounts WHERE account_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		st.accounts[id] = nil
		return chronicle.Account{}, false, nil
	}
	if err != nil {
		return chronicle.Account{}, false, fmt.Errorf("read account: %w", err)
	}
	st.accounts[id] = &a
	return a, true, nil
}

func (st *txState) Idempotency(key string) (chronicle.IdempotencyRecord, bool, error) {
	if r, ok := st.keys[key]; ok {
		if r == nil {
			return chronicle.IdempotencyRecord{}, false, nil
		}
		return *r, true, nil
	}
	r, err := scanIdempotency(st.tx.QueryRow(st.ctx, `SELECT `+idempotencyColumns+` FROM chronicle_idempotency WHERE idempotency_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		st.keys[key] = nil
		return chronicle.IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return chronicle.IdempotencyRecord{}, false, fmt.Errorf("read idempotency record: %w", err)
	}
	st.keys[key] = &r
	return r, true, nil
}

const idempotencyColumns = `idempotency_key, fingerprint, commit_time_nanos, position, event_count`

func scanIdempotency(row pgx.Row) (chronicle.IdempotencyRecord, error) {
	var r chronicle.IdempotencyRecord
	var t, pos, count int64
	if err := row.Scan(&r.Key, &r.Fingerprint, &t, &pos, &count); err != nil {
		return chronicle.IdempotencyRecord{}, err
	}
	r.CommitTime, r.Position, r.Count = fromNanos(t), uint64(pos), uint32(count)
	return r, nil
}

// decodeEvent reads an event from its stored form.
func decodeEvent(stored []byte) (chronicle.Event, error) {
	var e chronicle.Event
	if err := e.UnmarshalBinary(stored); err != nil {
		return e, &permanentError{fmt.Errorf("decode stored event: %w", err)}
	}
	return e, nil
}

// resultFromLog is the result of a command found committed under its id: what Apply
// returned when it committed.
func resultFromLog(evs []chronicle.Event) chronicle.Result {
	last := evs[len(evs)-1]
	r := chronicle.Result{Position: last.Position, CommitTime: last.CreatedAt, EventCount: len(evs)}
	r.SetEvents(evs)
	return r
}

// appendTx is one attempt of an append: reads, Apply, writes (the caller commits).
// settled is called once the command ids have been looked up, which settles whether an
// earlier attempt committed. fromLog counts the commands answered from the log.
func (s *Store) appendTx(ctx context.Context, tx pgx.Tx, cmds []chronicle.Command, settled func()) (results []chronicle.Result, fromLog int, err error) {
	// What to read: the commands' ids and keys, the accounts they name and the external
	// accounts of the currencies they name.
	var ids, keys, accountIDs []string
	seen := map[string]bool{}
	addAccount := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			accountIDs = append(accountIDs, id)
		}
	}
	for _, c := range cmds {
		if c.ID != "" {
			ids = append(ids, c.ID)
		}
		if c.IdempotencyKey != "" {
			keys = append(keys, c.IdempotencyKey)
		}
		addAccount(c.AccountID)
		addAccount(c.FromAccountID)
		addAccount(c.ToAccountID)
		if cur, err := chronicle.LookupCurrency(c.Currency); err == nil {
			addAccount(chronicle.ExternalAccountID(cur.Code))
		}
	}

	// One round trip. The clock is read after the head row is locked, so it is not older
	// than the commit it waited for.
	var (
		head      = chronicle.Head{}
		clock     time.Time
		committed = map[string][]chronicle.Event{}
		st        = &txState{ctx: ctx, tx: tx, accounts: map[string]*chronicle.Account{}, keys: map[string]*chronicle.IdempotencyRecord{}}
	)
	var rb pgx.Batch
	if s.dialect == dialectPostgres {
		// PostgreSQL takes a SERIALIZABLE transaction's snapshot at its first statement
		// that reads, and fails it with 40001 if a row it then waits to lock was changed:
		// every store waiting on the head row would fail each time another commits, and
		// a busy store could starve the others. LOCK TABLE takes no snapshot, so the
		// reads below start once the lock is held. CockroachDB has no LOCK TABLE and
		// needs none: it refreshes a pushed read and retries internally.
		rb.Queue(`LOCK TABLE chronicle_head IN EXCLUSIVE MODE`)
	}
	rb.Queue(`SELECT position, hash, commit_time_nanos FROM chronicle_head WHERE id = 1 FOR UPDATE`).QueryRow(func(row pgx.Row) error {
		var pos, t int64
		if err := row.Scan(&pos, &head.Hash, &t); err != nil {
			return fmt.Errorf("lock head: %w", err)
		}
		head.Position, head.CommitTime = uint64(pos), fromNanos(t)
		return nil
	})
	rb.Queue(`SELECT clock_timestamp()`).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&clock); err != nil {
			return fmt.Errorf("read clock: %w", err)
		}
		return nil
	})
	if len(ids) > 0 {
		rb.Queue(`SELECT command_id, stored FROM events WHERE command_id = ANY($1) ORDER BY position`, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var stored []byte
				if err := rows.Scan(&id, &stored); err != nil {
					return err
				}
				e, err := decodeEvent(stored)
				if err != nil {
					return err
				}
				committed[id] = append(committed[id], e)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("look up command ids: %w", err)
			}
			return nil
		})
	}
	if len(accountIDs) > 0 {
		rb.Queue(`SELECT `+accountColumns+` FROM chronicle_accounts
			WHERE account_id = ANY($1)
			   OR account_id IN (SELECT '`+chronicle.ExternalPrefix+`' || currency FROM chronicle_accounts WHERE account_id = ANY($1))`,
			accountIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				a, err := scanAccount(rows)
				if err != nil {
					return err
				}
				st.accounts[a.ID] = &a
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("prefetch accounts: %w", err)
			}
			return nil
		})
	}
	if len(keys) > 0 {
		rb.Queue(`SELECT `+idempotencyColumns+` FROM chronicle_idempotency WHERE idempotency_key = ANY($1)`, keys).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				r, err := scanIdempotency(rows)
				if err != nil {
					return err
				}
				st.keys[r.Key] = &r
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("prefetch idempotency records: %w", err)
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, &rb).Close(); err != nil {
		return nil, 0, err
	}
	settled()
	// What the prefetch did not find does not exist: the named accounts, the named keys,
	// and the external accounts of every currency seen.
	for _, id := range accountIDs {
		if _, ok := st.accounts[id]; !ok {
			st.accounts[id] = nil
		}
	}
	var externals []string
	for _, a := range st.accounts {
		if a != nil {
			externals = append(externals, chronicle.ExternalAccountID(a.Currency))
		}
	}
	for _, x := range externals {
		if _, ok := st.accounts[x]; !ok {
			st.accounts[x] = nil
		}
	}
	for _, k := range keys {
		if _, ok := st.keys[k]; !ok {
			st.keys[k] = nil
		}
	}

	// Commands already committed under their id are answered from the log; a repeated id
	// within the batch gets its first occurrence's result. The rest go to Apply.
	results = make([]chronicle.Result, len(cmds))
	firstOf := map[string]int{}
	dupOf := map[int]int{}
	var applyIdx []int
	var applyCmds []chronicle.Command
	for i, c := range cmds {
		if c.ID != "" {
			if evs, ok := committed[c.ID]; ok {
				results[i] = resultFromLog(evs)
				fromLog++
				continue
			}
			if j, ok := firstOf[c.ID]; ok {
				dupOf[i] = j
				continue
			}
			firstOf[c.ID] = i
		}
		applyIdx = append(applyIdx, i)
		applyCmds = append(applyCmds, c)
	}
	if len(applyCmds) == 0 {
		for i, j := range dupOf {
			results[i] = results[j]
		}
		return results, fromLog, nil
	}

	out, err := chronicle.Apply(st, head, chronicle.Batch{Time: clock, IdempotencyWindow: s.cfg.IdempotencyWindow, Commands: applyCmds})
	if err != nil {
		var inv *chronicle.InvariantError
		if errors.As(err, &inv) {
			return nil, 0, &permanentError{err}
		}
		return nil, 0, fmt.Errorf("apply: %w", err)
	}
	for k, i := range applyIdx {
		results[i] = out.Results[k]
	}

	var wb pgx.Batch
	if err := queueWrites(&wb, out, head); err != nil {
		return nil, 0, err
	}
	// Replayed results (idempotency keys) carry positions only: their events come from
	// this batch or from the log.
	fresh := map[uint64]chronicle.Event{}
	for _, e := range out.Events {
		fresh[e.Position] = e
	}
	var old []int64
	for _, r := range out.Results {
		if r.Replayed {
			for p := r.FirstPosition(); p != 0 && p <= r.Position; p++ {
				if _, ok := fresh[p]; !ok {
					old = append(old, int64(p))
				}
			}
		}
	}
	logged := map[uint64]chronicle.Event{}
	if len(old) > 0 {
		wb.Queue(`SELECT stored FROM events WHERE position = ANY($1)`, old).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var stored []byte
				if err := rows.Scan(&stored); err != nil {
					return err
				}
				e, err := decodeEvent(stored)
				if err != nil {
					return err
				}
				logged[e.Position] = e
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read replayed events: %w", err)
			}
			return nil
		})
	}
	if wb.Len() > 0 {
		if err := tx.SendBatch(ctx, &wb).Close(); err != nil {
			return nil, 0, err
		}
	}
	for _, i := range applyIdx {
		r := &results[i]
		if !r.Replayed || r.EventCount == 0 {
			continue
		}
		evs := make([]chronicle.Event, 0, r.EventCount)
		for p := r.FirstPosition(); p <= r.Position; p++ {
			e, ok := fresh[p]
			if !ok {
				e, ok = logged[p]
			}
			if !ok {
				return nil, 0, &permanentError{fmt.Errorf("replayed result names position %d, which is not in the log", p)}
			}
			evs = append(evs, e)
		}
		r.SetEvents(evs)
	}
	for i, j := range dupOf {
		results[i] = results[j]
	}
	return results, fromLog, nil
}

// queueWrites queues the statements that write out: events, accounts, idempotency
// records, balance history and the head. Arrays and unnest keep each to one statement
// whatever the batch's size (a VALUES list would hit the 65535-parameter limit).
func queueWrites(b *pgx.Batch, out chronicle.Outcome, head chronicle.Head) error {
	if len(out.Events) > 0 {
		n := len(out.Events)
		var (
			pos, ver, createdNs               = make([]int64, n), make([]int64, n), make([]int64, n)
			eid, agg, aggType, evType, data   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			createdBy, prev, hash, commandIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			created                           = make([]time.Time, n)
			meta                              = make([]*string, n)
			stored                            = make([][]byte, n)
		)
		for i := range out.Events {
			e := &out.Events[i]
			bin, err := e.MarshalBinary()
			if err != nil {
				return &permanentError{fmt.Errorf("encode event %d: %w", e.Position, err)}
			}
			js, err := json.Marshal(e)
			if err != nil {
				return &permanentError{fmt.Errorf("encode event %d as JSON: %w", e.Position, err)}
			}
			var parts struct {
				Data     json.RawMessage `json:"event_data"`
				Metadata json.RawMessage `json:"metadata"`
			}
			if err := json.Unmarshal(js, &parts); err != nil {
				return &permanentError{fmt.Errorf("split event %d's JSON: %w", e.Position, err)}
			}
			pos[i], ver[i], createdNs[i] = int64(e.Position), int64(e.EventVersion), nanos(e.CreatedAt)
			eid[i], agg[i], aggType[i], evType[i], data[i] = e.EventID, e.AggregateID, e.AggregateType, e.EventType, string(parts.Data)
			createdBy[i], prev[i], hash[i], commandIDs[i] = e.CreatedBy, e.PrevHash, e.Hash, e.Metadata["command_id"]
			created[i], stored[i] = e.CreatedAt, bin
			if len(parts.Metadata) > 0 {
				m := string(parts.Metadata)
				meta[i] = &m
			}
		}
		b.Queue(`INSERT INTO events (position, event_id, aggregate_id, aggregate_type, event_type, event_data,
				event_version, created_at, created_at_nanos, created_by, metadata, prev_hash, hash, command_id, stored)
			SELECT p, eid::UUID, agg, aggt, et, ed::JSONB, ev, ca, can, cb, md::JSONB, ph, h, cid, st
			FROM unnest($1::INT8[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INT8[],
				$8::TIMESTAMPTZ[], $9::INT8[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[], $14::TEXT[], $15::BYTEA[])
				AS t (p, eid, agg, aggt, et, ed, ev, ca, can, cb, md, ph, h, cid, st)`,
			pos, eid, agg, aggType, evType, data, ver, created, createdNs, createdBy, meta, prev, hash, commandIDs, stored)
	}
	if len(out.Accounts) > 0 {
		n := len(out.Accounts)
		id, owner, cur, status := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		bal, limit, created, updated, ver := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		held := make([]int64, n)
		for i, a := range out.Accounts {
			id[i], owner[i], cur[i], status[i] = a.ID, a.OwnerName, a.Currency, string(a.Status)
			bal[i], limit[i], created[i], updated[i], ver[i] = a.Balance, a.OverdraftLimit, nanos(a.CreatedAt), nanos(a.LastUpdated), int64(a.Version)
			held[i] = a.Held
		}
		b.Queue(`INSERT INTO chronicle_accounts (`+accountColumns+`)
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::INT8[], $5::INT8[], $6::TEXT[], $7::INT8[], $8::INT8[], $9::INT8[], $10::INT8[])
			ON CONFLICT (account_id) DO UPDATE SET owner_name = excluded.owner_name, currency = excluded.currency,
				balance = excluded.balance, overdraft_limit = excluded.overdraft_limit, status = excluded.status,
				created_at_nanos = excluded.created_at_nanos, last_updated_nanos = excluded.last_updated_nanos,
				version = excluded.version, held = excluded.held`,
			id, owner, cur, bal, limit, status, created, updated, ver, held)
	}
	queueHoldWrites(b, out.Holds)
	if len(out.Idempotency) > 0 {
		n := len(out.Idempotency)
		key, fp := make([]string, n), make([]string, n)
		t, pos, count := make([]int64, n), make([]int64, n), make([]int64, n)
		for i, r := range out.Idempotency {
			key[i], fp[i], t[i], pos[i], count[i] = r.Key, r.Fingerprint, nanos(r.CommitTime), int64(r.Position), int64(r.Count)
		}
		// A key may be written again once its record has expired.
		b.Queue(`INSERT INTO chronicle_idempotency (`+idempotencyColumns+`)
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::INT8[], $4::INT8[], $5::INT8[])
			ON CONFLICT (idempotency_key) DO UPDATE SET fingerprint = excluded.fingerprint,
				commit_time_nanos = excluded.commit_time_nanos, position = excluded.position, event_count = excluded.event_count`,
			key, fp, t, pos, count)
	}
	if len(out.History) > 0 {
		n := len(out.History)
		id := make([]string, n)
		t, pos, bal := make([]int64, n), make([]int64, n), make([]int64, n)
		for i, p := range out.History {
			id[i], t[i], pos[i], bal[i] = p.AccountID, nanos(p.Time), int64(p.Position), p.Balance
		}
		b.Queue(`INSERT INTO chronicle_balance_history (account_id, commit_time_nanos, position, balance)
			SELECT * FROM unnest($1::TEXT[], $2::INT8[], $3::INT8[], $4::INT8[])`, id, t, pos, bal)
	}
	if out.Head.Position != head.Position {
		b.Queue(`UPDATE chronicle_head SET position = $1, hash = $2, commit_time_nanos = $3 WHERE id = 1`,
			int64(out.Head.Position), out.Head.Hash, nanos(out.Head.CommitTime))
	}
	return nil
}

// asInvariant finds a broken ledger invariant in err.
func asInvariant(err error) (*chronicle.InvariantError, bool) {
	var inv *chronicle.InvariantError
	ok := errors.As(err, &inv)
	return inv, ok
}
