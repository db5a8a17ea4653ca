-- Retention: deletes the orders stored more than `keep` ago (a psql variable, such as
-- '90 days') with their deliveries, payments and items, 10 000 orders per transaction so
-- that no lock is held for long, and the dead-letter records and audit records as old. Run it as the schema's
-- owner (serve's role may not DELETE), from cron or a Kubernetes CronJob:
--   psql "$OWNER_DATABASE_URL" -v keep='90 days' -f deploy/postgres/purge.sql
-- A purged order that Kafka still holds comes back if a consumer group replays the topic:
-- keep the topic's retention shorter than this one.
\set ON_ERROR_STOP on
CREATE PROCEDURE pg_temp.purge(cutoff timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  gone text[];
BEGIN
  LOOP
    SELECT array_agg(order_uid) INTO gone FROM (
      SELECT order_uid FROM orders WHERE ingested_at < cutoff ORDER BY ingested_at LIMIT 10000
    ) oldest;
    EXIT WHEN gone IS NULL;
    DELETE FROM items WHERE order_uid = ANY (gone);
    DELETE FROM payments WHERE order_uid = ANY (gone);
    DELETE FROM deliveries WHERE order_uid = ANY (gone);
    DELETE FROM orders WHERE order_uid = ANY (gone);
    RAISE NOTICE 'purged % orders', cardinality(gone);
    COMMIT;
  END LOOP;
  DELETE FROM dead_letters WHERE sent_at < cutoff;
  -- The audit trail refuses deletes but for its retention, which says so (migrations/V7).
  PERFORM set_config('order_svc.audit_purge', 'on', true);
  DELETE FROM audit_log WHERE at < cutoff;
END $$;
CALL pg_temp.purge(now() - :'keep'::interval);
