#!/usr/bin/env bash
# Builds and caches the real Temporal server and its SQL schema tool from the Go module proxy, then
# prints where they are, as shell assignments on stdout (diagnostics go to stderr):
#   TEMPORAL_SERVER_BIN=…   the `server` binary (go.temporal.io/server/cmd/server)
#   TEMPORAL_SQL_TOOL=…     temporal-sql-tool (go.temporal.io/server/cmd/tools/sql)
#   TEMPORAL_SERVER_DIR=…   the server module's source dir (read only): its schema/ and config/
#   TEMPORAL_SCHEMA_DIR=…   <module>/schema/postgresql/v12 (temporal/ and visibility/ below it)
#   TEMPORAL_CONFIG_DIR=…   <module>/config (development-postgres12.yaml, dynamicconfig/)
# so `eval "$(bash scripts/temporal-server.sh)"` sets them. `--schema-only` skips the build and
# prints only the module's dirs (the upgrade test uses it for an older version's schema).
#
#   TEMPORAL_SERVER_VERSION   default v1.29.1 (the image tag docker-compose.yml pins)
#   PEDRO_OPS_CACHE_DIR       default ~/.cache/pedro-ops
#
# Like scripts/temporal-cli.sh: Go from PATH or /usr/local/go; a flock makes concurrent callers wait
# for one build instead of racing two `go install`s into the same GOBIN.
# Upstream: cmd/server/main.go and cmd/tools/sql/main.go in temporalio/temporal at the tag.
set -euo pipefail
VERSION="${TEMPORAL_SERVER_VERSION:-v1.29.1}"
CACHE_ROOT="${PEDRO_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pedro-ops}"
BIN_DIR="$CACHE_ROOT/temporal-server/$VERSION"
say() { echo "temporal-server $VERSION: $*" >&2; }
t0=$(date +%s)
# Every toolchain script says how long it took, cached or built (.ci/run prints the phases).
trap 'rc=$?; say "$([ $rc = 0 ] && echo ready || echo "failed (exit $rc)") in $(( $(date +%s) - t0 )) s"' EXIT

schema_only=false
[ "${1:-}" = "--schema-only" ] && schema_only=true

GO="$(command -v go 2>/dev/null || true)"
# Go's tarball install lives outside the default PATH of non-login shells.
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  say "Go is not installed: install Go >= 1.23 (it fetches go.temporal.io/server@$VERSION from the module proxy)."
  exit 1
fi

mkdir -p "$BIN_DIR"
exec 9>"$BIN_DIR.lock"
flock 9

# The module's source tree (schema and config templates). A module download needs no go.mod.
module_dir() {
  local dir
  dir="$(cd "$BIN_DIR" && "$GO" mod download -json "go.temporal.io/server@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir/schema/postgresql/v12" ] || {
    say "go mod download go.temporal.io/server@$VERSION gave no schema dir"
    exit 1
  }
  echo "$dir"
}

if ! $schema_only && { [ ! -x "$BIN_DIR/server" ] || [ ! -x "$BIN_DIR/temporal-sql-tool" ]; }; then
  say "building go.temporal.io/server/cmd/server and cmd/tools/sql @$VERSION into $BIN_DIR (minutes on a cold Go cache)"
  start=$(date +%s)
  tmp="$(mktemp -d "$BIN_DIR.build.XXXXXX")"
  trap 'rc=$?; rm -rf "$tmp"; say "$([ $rc = 0 ] && echo ready || echo "failed (exit $rc)") in $(( $(date +%s) - t0 )) s"' EXIT
  # One `go install` per main package: the same module version, so the second reuses the first's build cache.
  GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" "$GO" install "go.temporal.io/server/cmd/server@$VERSION" >&2
  GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" "$GO" install "go.temporal.io/server/cmd/tools/sql@$VERSION" >&2
  mv "$tmp/server" "$BIN_DIR/server"
  mv "$tmp/sql" "$BIN_DIR/temporal-sql-tool"
  say "built in $(($(date +%s) - start))s: server $(du -h "$BIN_DIR/server" | cut -f1), temporal-sql-tool $(du -h "$BIN_DIR/temporal-sql-tool" | cut -f1)"
fi

dir="$(module_dir)"
if ! $schema_only; then
  echo "TEMPORAL_SERVER_BIN=$BIN_DIR/server"
  echo "TEMPORAL_SQL_TOOL=$BIN_DIR/temporal-sql-tool"
fi
echo "TEMPORAL_SERVER_DIR=$dir"
echo "TEMPORAL_SCHEMA_DIR=$dir/schema/postgresql/v12"
echo "TEMPORAL_CONFIG_DIR=$dir/config"
