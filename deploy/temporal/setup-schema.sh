#!/bin/sh
# Temporal's persistence on PostgreSQL: the `temporal` and `temporal_visibility` databases, created if missing and
# brought to the schema version this admin-tools image ships (temporal-sql-tool; safe to run on every start).
# Run by the temporal-schema service of docker-compose.yml (temporalio/admin-tools). SQL_PASSWORD is read by the tool.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
port="${DB_PORT:-5432}"
schema=/etc/temporal/schema/postgresql/v12

tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$port" "$@"
}

for db in temporal temporal_visibility; do
  case "$db" in
    temporal) versioned="$schema/temporal/versioned" ;;
    *) versioned="$schema/visibility/versioned" ;;
  esac
  echo "cmk: Temporal database $db"
  tool --db "$db" create 2>/dev/null || echo "cmk: $db exists"
  # setup-schema -v 0.0 only records the starting version; update-schema applies every versioned step still missing.
  tool --db "$db" setup-schema -v 0.0 2>/dev/null || echo "cmk: $db already has a schema version"
  tool --db "$db" update-schema -d "$versioned"
done
echo "cmk: Temporal schema ready"
