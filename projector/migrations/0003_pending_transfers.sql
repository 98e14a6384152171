-- Two-phase transfers. held_minor is an account's total of open holds (available is
-- balance_minor - held_minor); pending_transfers has one row per hold, its status moving
-- from 'pending' to 'captured', 'voided' or 'expired'. A capture's posting is in
-- transactions and transfers as a transfer's is (transfer_out / transfer_in lines, one
-- transfers row with the captured amount); a hold and its release are statement lines
-- (hold, hold_voided, hold_expired) that leave balance_after unchanged.
ALTER TABLE account_balance ADD COLUMN held_minor BIGINT NOT NULL DEFAULT 0;

CREATE TABLE pending_transfers (
    transfer_id       UUID PRIMARY KEY,
    from_account_id   VARCHAR(64) COLLATE "C" NOT NULL REFERENCES account_balance (account_id),
    to_account_id     VARCHAR(64) COLLATE "C" NOT NULL,
    amount_minor      BIGINT NOT NULL,
    currency          CHAR(3) NOT NULL,
    status            VARCHAR(20) NOT NULL,
    captured_minor    BIGINT,
    expires_at        TIMESTAMPTZ NOT NULL,
    expires_at_nanos  INTEGER NOT NULL DEFAULT 0,
    position          BIGINT NOT NULL,
    finished_position BIGINT,
    CONSTRAINT pending_transfers_expires_at_nanos CHECK (expires_at_nanos BETWEEN 0 AND 999)
);

CREATE INDEX idx_pending_transfers_from_account ON pending_transfers (from_account_id);
CREATE INDEX idx_pending_transfers_open ON pending_transfers (expires_at) WHERE status = 'pending';
