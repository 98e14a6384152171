-- The read model: the seed's tables and column names, with the columns exact reads need.
--
-- Money: every amount is kept twice. The NUMERIC column holds the exact decimal text of
-- chronicle.FormatMinor ('700.00' USD, '5' JPY, '1.234' BHD), for people and SQL tools;
-- the *_minor BIGINT column holds the same amount in minor units, which is what the view
-- reads. A CHECK ties the two together. No float column exists anywhere.
--
-- Time: TIMESTAMPTZ keeps microseconds, commit times have nanoseconds. Each timestamp
-- column is the instant truncated to the microsecond and its *_nanos column the 0..999
-- nanoseconds beyond it, so the view returns the commit time exactly.
--
-- Account ids are compared byte by byte (COLLATE "C"), so that listing accounts by id
-- gives the same order as every other view whatever the database's collation.

CREATE TABLE account_balance (
    account_id            VARCHAR(64) COLLATE "C" PRIMARY KEY,
    owner_name            TEXT NOT NULL,
    balance               NUMERIC NOT NULL,
    balance_minor         BIGINT NOT NULL,
    currency              CHAR(3) NOT NULL,
    overdraft_limit_minor BIGINT NOT NULL DEFAULT 0,
    status                VARCHAR(20) NOT NULL DEFAULT 'active',
    version               BIGINT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    created_at_nanos      INTEGER NOT NULL DEFAULT 0,
    last_updated          TIMESTAMPTZ NOT NULL,
    last_updated_nanos    INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT account_balance_minor_exact CHECK (balance * power(10::numeric, scale(balance)) = balance_minor),
    CONSTRAINT account_balance_created_at_nanos CHECK (created_at_nanos BETWEEN 0 AND 999),
    CONSTRAINT account_balance_last_updated_nanos CHECK (last_updated_nanos BETWEEN 0 AND 999)
) WITH (fillfactor = 80); -- every event rewrites its account's row: leave room for HOT updates

CREATE INDEX idx_account_balance_owner_name ON account_balance (owner_name);
CREATE INDEX idx_account_balance_status ON account_balance (status);

-- One row per event: an account's statement. transaction_id is the event id.
CREATE TABLE transactions (
    transaction_id      UUID PRIMARY KEY,
    account_id          VARCHAR(64) COLLATE "C" NOT NULL REFERENCES account_balance (account_id),
    type                VARCHAR(50) NOT NULL,
    event_type          VARCHAR(64) NOT NULL,
    amount              NUMERIC NOT NULL,
    amount_minor        BIGINT NOT NULL,
    balance_after       NUMERIC NOT NULL,
    balance_after_minor BIGINT NOT NULL,
    currency            CHAR(3) NOT NULL,
    description         TEXT,
    transfer_id         UUID,
    counterparty        VARCHAR(80) COLLATE "C",
    position            BIGINT NOT NULL UNIQUE,
    version             BIGINT NOT NULL,
    timestamp           TIMESTAMPTZ NOT NULL,
    timestamp_nanos     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, version),
    CONSTRAINT transactions_amount_minor_exact CHECK (amount * power(10::numeric, scale(amount)) = amount_minor),
    CONSTRAINT transactions_balance_after_minor_exact CHECK (balance_after * power(10::numeric, scale(balance_after)) = balance_after_minor),
    CONSTRAINT transactions_timestamp_nanos CHECK (timestamp_nanos BETWEEN 0 AND 999)
);

CREATE INDEX idx_transactions_account_timestamp ON transactions (account_id, timestamp DESC);
CREATE INDEX idx_transactions_type ON transactions (type);

-- One row per transfer, written with its MoneyWithdrawn event.
CREATE TABLE transfers (
    transfer_id     UUID PRIMARY KEY,
    from_account_id VARCHAR(64) COLLATE "C" NOT NULL REFERENCES account_balance (account_id),
    to_account_id   VARCHAR(64) COLLATE "C" NOT NULL REFERENCES account_balance (account_id),
    amount          NUMERIC NOT NULL,
    amount_minor    BIGINT NOT NULL,
    currency        CHAR(3),
    status          VARCHAR(20) NOT NULL DEFAULT 'completed',
    timestamp       TIMESTAMPTZ NOT NULL,
    timestamp_nanos INTEGER NOT NULL DEFAULT 0,
    position        BIGINT NOT NULL,
    CONSTRAINT transfers_amount_minor_exact CHECK (amount * power(10::numeric, scale(amount)) = amount_minor),
    CONSTRAINT transfers_timestamp_nanos CHECK (timestamp_nanos BETWEEN 0 AND 999)
);

CREATE INDEX idx_transfers_from_account ON transfers (from_account_id);
CREATE INDEX idx_transfers_to_account ON transfers (to_account_id);

-- The checkpoint: last_event_id is the log position of the last event applied, moved in
-- the same transaction as the rows above.
CREATE TABLE event_position (
    processor_name    VARCHAR(100) PRIMARY KEY,
    last_event_id     BIGINT NOT NULL,
    last_processed_at TIMESTAMPTZ
);
