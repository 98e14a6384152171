-- API tokens: the hash of each secret (never the secret), its role, and who made and
-- revoked it when. Rows are never deleted, so a name is never reused.
CREATE TABLE IF NOT EXISTS chronicle_tokens (
    name       TEXT NOT NULL PRIMARY KEY,
    role       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TIMESTAMPTZ,
    revoked_by TEXT NOT NULL DEFAULT ''
);
