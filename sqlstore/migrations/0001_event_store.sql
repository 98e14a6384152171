-- The event store. Every statement is idempotent, so a migration that failed after
-- some of its DDL ran (CockroachDB commits schema changes asynchronously) can rerun.
--
-- Money is int64 minor units (INT8), never a float. Times are Unix nanoseconds (INT8);
-- events.created_at repeats the commit time as TIMESTAMPTZ (microseconds) for people
-- and for the seed's consumers, who know these column names.

-- The log: one row per event. stored is chronicle.Event.MarshalBinary (version byte,
-- canonical encoding, hash), from which the hash is recomputed; the other columns are
-- the seed's, for people and SQL consumers.
CREATE TABLE IF NOT EXISTS events (
    position         INT8 NOT NULL PRIMARY KEY,
    event_id         UUID NOT NULL,
    aggregate_id     TEXT NOT NULL,
    aggregate_type   TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    event_data       JSONB NOT NULL,
    event_version    INT8 NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    created_at_nanos INT8 NOT NULL,
    created_by       TEXT NOT NULL DEFAULT '',
    metadata         JSONB,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    command_id       TEXT NOT NULL DEFAULT '',
    stored           BYTEA NOT NULL,
    CONSTRAINT events_position_positive CHECK (position > 0),
    CONSTRAINT events_aggregate_version UNIQUE (aggregate_id, event_version),
    -- Event ids derive from the command id: a command applied twice would collide here.
    CONSTRAINT events_event_id UNIQUE (event_id)
);

CREATE INDEX IF NOT EXISTS events_command_id ON events (command_id);
CREATE INDEX IF NOT EXISTS events_event_type_position ON events (event_type, position);

-- Current state of every account, external ones (@world:CUR) included.
CREATE TABLE IF NOT EXISTS chronicle_accounts (
    account_id         TEXT NOT NULL PRIMARY KEY,
    owner_name         TEXT NOT NULL DEFAULT '',
    currency           TEXT NOT NULL,
    balance            INT8 NOT NULL,
    overdraft_limit    INT8 NOT NULL DEFAULT 0,
    status             TEXT NOT NULL,
    created_at_nanos   INT8 NOT NULL,
    last_updated_nanos INT8 NOT NULL,
    version            INT8 NOT NULL
);

-- chronicle.IdempotencyRecord: what a keyed command asked for and where its events are.
CREATE TABLE IF NOT EXISTS chronicle_idempotency (
    idempotency_key   TEXT NOT NULL PRIMARY KEY,
    fingerprint       TEXT NOT NULL,
    commit_time_nanos INT8 NOT NULL,
    position          INT8 NOT NULL,
    event_count       INT8 NOT NULL
);

-- Balance after each event of an account, keyed so that BalanceAt is one index seek.
CREATE TABLE IF NOT EXISTS chronicle_balance_history (
    account_id        TEXT NOT NULL,
    commit_time_nanos INT8 NOT NULL,
    position          INT8 NOT NULL,
    balance           INT8 NOT NULL,
    PRIMARY KEY (account_id, commit_time_nanos, position)
);

-- The tail of the log. Every append locks this one row: it is the total order.
-- commit_time_nanos 0 stands for the genesis head's zero time.
CREATE TABLE IF NOT EXISTS chronicle_head (
    id                INT8 NOT NULL PRIMARY KEY,
    position          INT8 NOT NULL,
    hash              TEXT NOT NULL,
    commit_time_nanos INT8 NOT NULL,
    CONSTRAINT chronicle_head_single CHECK (id = 1)
);

INSERT INTO chronicle_head (id, position, hash, commit_time_nanos)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0)
ON CONFLICT (id) DO NOTHING;
