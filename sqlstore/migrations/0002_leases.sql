-- Leases: work that one process at a time must do (the NATS publisher of the SQL
-- topology) is done by whoever holds its lease. Expiry is in the database's clock, so
-- holders' clocks need not agree.
CREATE TABLE IF NOT EXISTS chronicle_leases (
    name       TEXT NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
