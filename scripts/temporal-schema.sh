#!/bin/sh
# Creates Temporal's two SQL databases and brings their schemas to the newest version in
# TEMPORAL_SCHEMA_DIR. Idempotent: `create-database` accepts an existing database, `setup-schema
# -v 0.0` keeps a newer version, `update-schema` applies only the versions above the current one. So
# the same run installs a fresh database and upgrades one after a Temporal version bump (point
# TEMPORAL_SCHEMA_DIR at the new server's schema).
#
# Used by docker-compose.yml (temporal-schema job, inside temporalio/admin-tools), by the systemd
# setup in README ("Run in production without Docker") and by test/production. POSIX sh: the
# admin-tools image has no bash.
#
#   SQL_HOST, SQL_PORT, SQL_USER   the PostgreSQL server (default 127.0.0.1, 5432, temporal)
#   SQL_PASSWORD                   read by temporal-sql-tool itself, never on a command line
#   SQL_PLUGIN                     default postgres12 (the plugin for PostgreSQL >= 12)
#   TEMPORAL_DB, TEMPORAL_VISIBILITY_DB   default temporal, temporal_visibility
#   TEMPORAL_SCHEMA_DIR            <server>/schema/postgresql/v12 (default: where admin-tools has it)
#   TEMPORAL_SQL_TOOL              default temporal-sql-tool on PATH
#
# Upstream: tools/sql/main.go and tools/sql/handler.go (flags, SQL_* variables), and
# common/persistence/sql/sqlplugin/postgresql/admin.go (CreateDatabase ignores a duplicate) in
# temporalio/temporal v1.29.1.
set -eu
: "${SQL_HOST:=127.0.0.1}"
: "${SQL_PORT:=5432}"
: "${SQL_USER:=temporal}"
: "${SQL_PLUGIN:=postgres12}"
: "${TEMPORAL_DB:=temporal}"
: "${TEMPORAL_VISIBILITY_DB:=temporal_visibility}"
: "${TEMPORAL_SCHEMA_DIR:=/etc/temporal/schema/postgresql/v12}"
: "${TEMPORAL_SQL_TOOL:=temporal-sql-tool}"
export SQL_PASSWORD="${SQL_PASSWORD:-}"

for dir in "$TEMPORAL_SCHEMA_DIR/temporal/versioned" "$TEMPORAL_SCHEMA_DIR/visibility/versioned"; do
  [ -d "$dir" ] || { echo "temporal-schema: no schema dir $dir (set TEMPORAL_SCHEMA_DIR)" >&2; exit 1; }
done

sql() {
  "$TEMPORAL_SQL_TOOL" --plugin "$SQL_PLUGIN" --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" "$@"
}

newest() {
  # The versioned dir holds v0.0 … vX.Y folders; the newest is what update-schema brings the database to.
  ls "$1" | sed -n 's/^v\([0-9][0-9]*\.[0-9][0-9]*\)$/\1/p' | sort -t. -k1,1n -k2,2n | tail -n 1
}

for db in "$TEMPORAL_DB" "$TEMPORAL_VISIBILITY_DB"; do
  kind=temporal
  [ "$db" = "$TEMPORAL_VISIBILITY_DB" ] && kind=visibility
  versioned="$TEMPORAL_SCHEMA_DIR/$kind/versioned"
  echo "temporal-schema: $db ($kind schema, newest v$(newest "$versioned")) on $SQL_HOST:$SQL_PORT"
  sql --db "$db" create-database
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$versioned"
done
echo "temporal-schema: schema is current"
