#!/bin/sh
# Run once by the postgres image when it creates the database (docker-entrypoint-initdb.d):
# the role `serve` connects as, with the rights of serve-role.sql.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role=order_svc -v owner="$POSTGRES_USER" -v password="$SERVE_DB_PASSWORD" \
  -f /order-svc/serve-role.sql
