-- The CHECKs agree with the field rules of src/domain/rules.rs: whatever validation accepts,
-- these accept (the property test in tests/it/roundtrip.rs proves it on generated orders).
--
-- * e-mail: the rule refuses every white-space and control character; the CHECK names the
--   ASCII ones explicitly instead of [:space:], whose meaning depends on the database's
--   locale.
-- * date_created: years 1 to 9999 in UTC, the range PostgreSQL, chrono and RFC 3339 share.
--   A row outside it could be stored but never read back as an order.

ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_email_check,
    ADD CONSTRAINT deliveries_email_check
        CHECK (email ~ '^[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+$');

ALTER TABLE orders
    ADD CONSTRAINT orders_date_created_check
        CHECK (date_created >= '0001-01-01 00:00:00+00' AND date_created < '10000-01-01 00:00:00+00')
        -- Rows stored before this rule are left as they are; the reader skips any it cannot read.
        NOT VALID;
