package projector

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// holdRows are the pending_transfers changes of one Apply (migrations/0003): new holds,
// then the holds finished, column by column. A hold finishes once, so one update each.
type holdRows struct {
	id, from, to, currency     []string
	amount, position           []int64
	expires                    []time.Time
	expiresNanos               []int32
	doneID, doneStatus         []string
	doneCaptured, donePosition []int64
	doneCapturedSet            []bool
}

func (r *holdRows) add(e chronicle.Event) {
	d := e.Data
	status := ""
	switch e.EventType {
	case chronicle.EventTransferPending:
		exp, en := splitTime(d.ExpiresAt)
		r.id = append(r.id, d.TransferID)
		r.from = append(r.from, d.FromAccountID)
		r.to = append(r.to, d.ToAccountID)
		r.currency = append(r.currency, d.Currency)
		r.amount = append(r.amount, d.Amount)
		r.position = append(r.position, int64(e.Position))
		r.expires = append(r.expires, exp)
		r.expiresNanos = append(r.expiresNanos, en)
		return
	case chronicle.EventTransferCaptured:
		if e.AggregateID != d.FromAccountID {
			return // the credit leg: the debit leg finished the hold
		}
		status = string(chronicle.TransferStateCaptured)
	case chronicle.EventTransferVoided:
		status = string(chronicle.TransferStateVoided)
	case chronicle.EventTransferExpired:
		status = string(chronicle.TransferStateExpired)
	default:
		return
	}
	r.doneID = append(r.doneID, d.TransferID)
	r.doneStatus = append(r.doneStatus, status)
	r.doneCaptured = append(r.doneCaptured, d.Amount)
	r.doneCapturedSet = append(r.doneCapturedSet, e.EventType == chronicle.EventTransferCaptured)
	r.donePosition = append(r.donePosition, int64(e.Position))
}

// queue adds the inserts and then the updates to b (after the accounts they refer to).
func (r *holdRows) queue(b *pgx.Batch) {
	if len(r.id) > 0 {
		b.Queue(`INSERT INTO pending_transfers (transfer_id, from_account_id, to_account_id, amount_minor, currency,
			status, expires_at, expires_at_nanos, position)
			SELECT u.id::uuid, u.from_id, u.to_id, u.amount, u.currency, 'pending', u.expires, u.expires_nanos, u.position
			FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[], $7::int[], $8::bigint[])
				AS u(id, from_id, to_id, amount, currency, expires, expires_nanos, position)`,
			r.id, r.from, r.to, r.amount, r.currency, r.expires, r.expiresNanos, r.position)
	}
	if len(r.doneID) > 0 {
		b.Queue(`UPDATE pending_transfers p SET status = u.status,
				captured_minor = CASE WHEN u.captured_set THEN u.captured END, finished_position = u.position
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::bigint[])
				AS u(id, status, captured, captured_set, position)
			WHERE p.transfer_id = u.id::uuid`,
			r.doneID, r.doneStatus, r.doneCaptured, r.doneCapturedSet, r.donePosition)
	}
}
