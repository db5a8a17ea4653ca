-- Orders in four normalized tables. The CHECK constraints mirror the field rules of
-- src/domain/validate.rs so that the database refuses what the service would refuse, even
-- when written by something else. Money and ids are bigint (64-bit), as in the JSON.
--
-- Measured on PostgreSQL 15 (see README, "Benchmarks"), two choices keep ingest fast:
-- * Regular expressions use `+` plus a length() check, never bounded repetition such as
--   `{1,64}`: PostgreSQL's regex engine runs those ~15x slower (6 us against 0.4 us a row).
-- * The child tables carry no FOREIGN KEY to orders: the per-row key lookup cost ~7 us a row,
--   more than the rest of the insert. Integrity comes from the writer instead: an order and
--   all its rows are inserted by ONE statement (src/adapters/postgres/store.rs), and orders
--   are never deleted.

CREATE TABLE orders (
    order_uid          text        PRIMARY KEY CHECK (order_uid ~ '^[A-Za-z0-9]+$' AND length(order_uid) <= 64),
    track_number       text        NOT NULL CHECK (track_number ~ '^[A-Za-z0-9]+$' AND length(track_number) <= 64),
    entry              text        NOT NULL CHECK (btrim(entry) <> ''),
    locale             text        NOT NULL CHECK (locale ~ '^[A-Za-z]+(-[A-Za-z0-9]+)*$'),
    internal_signature text        NOT NULL,
    customer_id        text        NOT NULL CHECK (btrim(customer_id) <> ''),
    delivery_service   text        NOT NULL CHECK (btrim(delivery_service) <> ''),
    shardkey           text        NOT NULL CHECK (shardkey ~ '^[0-9]+$'),
    sm_id              bigint      NOT NULL CHECK (sm_id > 0),
    date_created       timestamptz NOT NULL,
    oof_shard          text        NOT NULL CHECK (oof_shard ~ '^[0-9]+$'),
    -- SHA-256 of the canonical JSON: the same uid with another hash is a conflict, not a
    -- redelivery.
    content_hash       bytea       NOT NULL CHECK (length(content_hash) = 32),
    -- clock_timestamp(), not now(): rows of one batch insert keep their order.
    ingested_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- "The latest N orders" (cache preload) walks this index backwards.
CREATE INDEX orders_ingested_at_idx ON orders (ingested_at);

CREATE TABLE deliveries (
    order_uid text PRIMARY KEY,
    name      text NOT NULL CHECK (btrim(name) <> ''),
    phone     text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]+$' AND length(phone) <= 16),
    zip       text NOT NULL CHECK (zip ~ '^[0-9]+$'),
    city      text NOT NULL CHECK (btrim(city) <> ''),
    address   text NOT NULL CHECK (btrim(address) <> ''),
    region    text NOT NULL CHECK (btrim(region) <> ''),
    email     text NOT NULL CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$')
);

CREATE TABLE payments (
    order_uid     text   PRIMARY KEY,
    transaction   text   NOT NULL CHECK (transaction ~ '^[A-Za-z0-9]+$' AND length(transaction) <= 64),
    request_id    text   NOT NULL,
    currency      text   NOT NULL CHECK (currency ~ '^[A-Z]+$' AND length(currency) = 3),
    provider      text   NOT NULL CHECK (btrim(provider) <> ''),
    amount        bigint NOT NULL CHECK (amount >= 0),
    payment_dt    bigint NOT NULL CHECK (payment_dt > 0),
    bank          text   NOT NULL CHECK (btrim(bank) <> ''),
    delivery_cost bigint NOT NULL CHECK (delivery_cost >= 0),
    goods_total   bigint NOT NULL CHECK (goods_total > 0),
    custom_fee    bigint NOT NULL CHECK (custom_fee >= 0)
);

CREATE TABLE items (
    order_uid    text     NOT NULL,
    -- Position in the order's `items` array, so the order reads back as it arrived.
    position     integer  NOT NULL CHECK (position >= 0),
    chrt_id      bigint   NOT NULL CHECK (chrt_id > 0),
    track_number text     NOT NULL CHECK (track_number ~ '^[A-Za-z0-9]+$' AND length(track_number) <= 64),
    price        bigint   NOT NULL CHECK (price >= 0),
    rid          text     NOT NULL CHECK (rid ~ '^[A-Za-z0-9]+$' AND length(rid) <= 64),
    name         text     NOT NULL CHECK (btrim(name) <> ''),
    sale         bigint   NOT NULL CHECK (sale BETWEEN 0 AND 100),
    size         text     NOT NULL CHECK (btrim(size) <> ''),
    total_price  bigint   NOT NULL CHECK (total_price >= 0),
    nm_id        bigint   NOT NULL CHECK (nm_id > 0),
    brand        text     NOT NULL CHECK (btrim(brand) <> ''),
    status       bigint   NOT NULL CHECK (status <> 0),
    PRIMARY KEY (order_uid, position)
);
