#!/bin/sh
# Registers the namespace and the search attributes the workflows upsert (workflows/
# search-attributes.ts) on a running Temporal server. Creates only what is missing, so a second run
# changes nothing and says so; an attribute registered with another type is an error (Temporal
# cannot change a search attribute's type).
#
# Used by docker-compose.yml (temporal-setup job, inside temporalio/admin-tools), by the systemd
# setup in README ("Run in production without Docker") and by test/production. POSIX sh.
#
#   TEMPORAL_ADDRESS    the frontend (default 127.0.0.1:7233)
#   NAMESPACE           default "default"
#   RETENTION           of a namespace this creates (default 720h)
#   SEARCH_ATTRIBUTES   "Name=Type …" (default: the list below, kept equal to SEARCH_ATTRIBUTE_TYPES
#                       by test/unit/compose.test.ts)
#   TEMPORAL_CLI        default `temporal` on PATH (scripts/temporal-cli.sh prints one)
#   SETUP_WAIT_SECONDS  how long to wait for the frontend and the namespace (default 120)
#
# Upstream: the CLI's `operator namespace` and `operator search-attribute` commands
# (temporalio/cli v1.5.x, temporalcli/commands.operator_*.go).
set -eu
: "${TEMPORAL_ADDRESS:=127.0.0.1:7233}"
: "${NAMESPACE:=default}"
: "${RETENTION:=720h}"
: "${SEARCH_ATTRIBUTES:=ClusterName=Keyword Operation=Keyword Phase=Keyword State=Keyword DrillResult=Keyword RequestedBy=Keyword RtoSeconds=Int DrillsSkipped=Int DriftCount=Int}"
: "${TEMPORAL_CLI:=temporal}"
: "${SETUP_WAIT_SECONDS:=120}"

t() { "$TEMPORAL_CLI" --address "$TEMPORAL_ADDRESS" "$@"; }
say() { echo "temporal-setup: $*"; }
changed=0

waited=0
until t operator cluster health 2>/dev/null | grep -q SERVING; do
  [ "$waited" -lt "$SETUP_WAIT_SECONDS" ] || { say "the frontend at $TEMPORAL_ADDRESS never answered SERVING" >&2; exit 1; }
  say "waiting for the Temporal frontend at $TEMPORAL_ADDRESS"
  sleep 2
  waited=$((waited + 2))
done

if t operator namespace describe -n "$NAMESPACE" >/dev/null 2>&1; then
  say "namespace $NAMESPACE exists"
else
  t operator namespace create -n "$NAMESPACE" --retention "$RETENTION"
  say "namespace $NAMESPACE created (retention $RETENTION)"
  changed=$((changed + 1))
fi

# A new namespace reaches the frontend's cache a few seconds after it is created.
waited=0
until existing=$(t operator search-attribute list -n "$NAMESPACE" 2>/dev/null); do
  [ "$waited" -lt "$SETUP_WAIT_SECONDS" ] || { say "namespace $NAMESPACE never became visible" >&2; exit 1; }
  sleep 2
  waited=$((waited + 2))
done

for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  have=$(printf '%s\n' "$existing" | awk -v n="$name" '$1 == n { print $2; exit }')
  if [ -z "$have" ]; then
    t operator search-attribute create -n "$NAMESPACE" --name "$name" --type "$type"
    say "search attribute $name ($type) created"
    changed=$((changed + 1))
  elif [ "$have" = "$type" ]; then
    say "search attribute $name ($type) exists"
  else
    say "search attribute $name is registered as $have, not $type: Temporal cannot change its type" >&2
    exit 1
  fi
done

if [ "$changed" -eq 0 ]; then
  say "nothing changed: namespace $NAMESPACE and its search attributes were already set up"
else
  say "$changed change(s) made"
fi
