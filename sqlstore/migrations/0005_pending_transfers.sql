-- Two-phase transfers. An account's held total (its open holds), and one row per pending
-- transfer, open or finished: chronicle.PendingTransfer. Times are Unix nanoseconds, 0
-- for none. The partial indexes serve the state machine's two questions: the open holds
-- of a debit account, and the open holds due by a commit time (the expiry sweep).
ALTER TABLE chronicle_accounts ADD COLUMN IF NOT EXISTS held INT8 NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS chronicle_pending_transfers (
    transfer_id       TEXT NOT NULL PRIMARY KEY,
    from_account_id   TEXT NOT NULL,
    to_account_id     TEXT NOT NULL,
    currency          TEXT NOT NULL,
    amount            INT8 NOT NULL,
    created_at_nanos  INT8 NOT NULL,
    expires_at_nanos  INT8 NOT NULL,
    state             TEXT NOT NULL,
    captured_amount   INT8 NOT NULL DEFAULT 0,
    finished_at_nanos INT8 NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS chronicle_pending_transfers_due
    ON chronicle_pending_transfers (expires_at_nanos, transfer_id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS chronicle_pending_transfers_from
    ON chronicle_pending_transfers (from_account_id) WHERE state = 'pending';
