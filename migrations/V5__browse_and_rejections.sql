-- Finding orders without their uid, and telling why an order never arrived.
--
-- Browse: the newest orders first walk orders_ingested_at_uid_idx backwards (V4). Search:
-- one index per field people arrive with, each an exact match.
-- * phone: the gate admits only E.164 ('+' and digits), so the stored value is already the
--   normal form; a search normalises its input to the same form (src/domain/browse.rs).
-- * e-mail: stored as it arrived (an order is returned unchanged), found by its lower case.
--   COLLATE "C" lowers ASCII letters only, whatever the database's locale, the same as the
--   search's own normalisation (to_ascii_lowercase).
-- * hash, not btree: every search is an exact match, and ingest pays for each index on
--   every order. Inserting 200 000 rows took 1.6 s with no search index, 5.0 s with these
--   four as btrees, 3.4 s as hash indexes (crash-safe and replicated since PostgreSQL 10).
CREATE INDEX orders_track_number_idx ON orders USING hash (track_number);
CREATE INDEX orders_customer_id_idx ON orders USING hash (customer_id);
CREATE INDEX payments_transaction_idx ON payments USING hash (transaction);
CREATE INDEX deliveries_phone_idx ON deliveries USING hash (phone);
CREATE INDEX deliveries_email_lower_idx ON deliveries USING hash (lower(email COLLATE "C"));

-- Every dead letter says what identifies it: the message key (any bytes), the order uid when
-- the payload was readable enough to hold one, and the original message's time. `id` orders
-- the records as they were written, for listing newest first.
ALTER TABLE dead_letters
    ADD COLUMN id           bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN message_key  bytea,
    ADD COLUMN order_uid    text,
    ADD COLUMN message_time timestamptz;
CREATE UNIQUE INDEX dead_letters_id_idx ON dead_letters (id);
CREATE INDEX dead_letters_order_uid_idx ON dead_letters (order_uid, id) WHERE order_uid IS NOT NULL;
