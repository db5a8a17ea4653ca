-- Web sign-in sessions (OpenID Connect): one row per signed-in browser. The cookie holds
-- 256 random bits; only their SHA-256 is kept, so a copy of this table signs nobody in.
-- A session ends when it expires or its user signs out (the row is deleted).
CREATE TABLE sessions (
    id_hash    bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    subject    text        NOT NULL,
    name       text        NOT NULL,
    client     text        NOT NULL,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
