-- Who may read, and who read what.
--
-- API keys: a key is `osk_<id>_<secret>`; only the SHA-256 of the secret is kept (the secret
-- is 256 random bits, so a fast hash is enough: nothing to guess from it). The id finds the
-- row; the hash is compared in constant time by the service.
CREATE TABLE api_keys (
    id          text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    last_used_at timestamptz
);

-- The audit trail: every read of unmasked personal data and every search. A searched value
-- is never stored, only a keyed hash of it (AUDIT_HASH_KEY). Rows are only ever added: the
-- trigger below refuses to change or delete one, whoever asks, except the retention that
-- `order-svc audit --purge-before` runs (it sets order_svc.audit_purge for its transaction).
CREATE TABLE audit_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    subject      text        NOT NULL,
    client       text,
    via          text        NOT NULL,
    action       text        NOT NULL,
    route        text        NOT NULL,
    order_uid    text,
    fields       text[]      NOT NULL DEFAULT '{}',
    value_hashes text[]      NOT NULL DEFAULT '{}',
    results      bigint      NOT NULL,
    request_id   text        NOT NULL
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, id);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('order_svc.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
