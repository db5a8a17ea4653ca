-- The rights `order-svc serve` uses and no more: it reads and inserts orders and dead
-- letters; it never updates, deletes, or changes the schema. `order-svc migrate` runs as the
-- owner of the schema; `serve` runs as this role.
--
-- Run it as the schema's owner (or a superuser) in the orders database, before or after
-- `migrate` (the default privileges cover tables the owner creates later):
--
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -v role=order_svc -v owner=orders \
--        -v password="$SERVE_DB_PASSWORD" -f deploy/postgres/serve-role.sql
--
-- then give serve DATABASE_URL=postgres://order_svc:...@host/orders.

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role')
\gexec

-- Nothing by default: no creating objects in the schema (PostgreSQL 14 and older let every
-- role create in `public`).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"role";

-- orders, deliveries, payments, items: INSERT ... ON CONFLICT DO NOTHING and reads;
-- dead_letters: the ledger of dead letters sent, inserted and read.
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT ON TABLES TO :"role";

-- api_keys: serve records when a key was last used, and nothing else of a key. (The table
-- comes with migration V7: run this again after `migrate` if it ran before.)
SELECT format('GRANT UPDATE (last_used_at) ON api_keys TO %I', :'role')
WHERE to_regclass('api_keys') IS NOT NULL
\gexec
-- audit_log: serve inserts records and reads them for GET /audit; never changes or deletes
-- one (SELECT, INSERT above; the table's trigger refuses UPDATE and DELETE to everyone).
-- sessions: serve signs people in and out (migration V8: run this again after `migrate` if
-- it ran before). Deleting a row is signing out, or dropping expired sessions.
SELECT format('GRANT DELETE ON sessions TO %I', :'role')
WHERE to_regclass('sessions') IS NOT NULL
\gexec
