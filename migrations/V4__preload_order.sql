-- The preload reads the newest orders page by page in the order they were stored:
-- (ingested_at, order_uid) is that order, unique, and one index serves both the search for
-- where the newest N begin and each page. It replaces the index on ingested_at alone, so
-- ingest keeps one index to maintain here, not two.
CREATE INDEX orders_ingested_at_uid_idx ON orders (ingested_at, order_uid);
DROP INDEX orders_ingested_at_idx;
