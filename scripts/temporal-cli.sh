#!/usr/bin/env bash
# Makes a `temporal` CLI (which embeds the dev server and Web UI) available and prints its path
# on stdout; diagnostics go to stderr. Order:
#   1. $TEMPORAL_CLI_PATH   2. `temporal` on PATH   3. the cached build below
#   4. a fresh `go install` of the pinned version into the cache (no internet needed beyond the Go proxy)
# A machine with neither Go nor a binary gets a clear error; scripts/dev.ts may then fall back to
# the Temporal SDK's own download when the machine has internet.
set -euo pipefail
VERSION="${TEMPORAL_CLI_VERSION:-v1.5.1}"
CACHE_DIR="${PEDRO_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pedro-ops}/temporal-cli/$VERSION"
say() { echo "temporal-cli: $*" >&2; }
t0=$(date +%s)
# Every toolchain script says how long it took, cached or built (.ci/run prints the phases).
trap 'rc=$?; say "$([ $rc = 0 ] && echo ready || echo "failed (exit $rc)") in $(( $(date +%s) - t0 )) s"' EXIT

if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then
  if [ -x "$TEMPORAL_CLI_PATH" ]; then say "using TEMPORAL_CLI_PATH"; echo "$TEMPORAL_CLI_PATH"; exit 0; fi
  say "TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable file"; exit 1
fi
if found="$(command -v temporal 2>/dev/null)"; then say "using temporal on PATH"; echo "$found"; exit 0; fi
if [ -x "$CACHE_DIR/temporal" ]; then say "using cached build"; echo "$CACHE_DIR/temporal"; exit 0; fi

GO="$(command -v go 2>/dev/null || true)"
# Go's tarball install lives outside the default PATH of non-login shells.
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  say "no temporal CLI found and Go is not installed."
  say "Install one of: Go >= 1.23 (then re-run this script), or the Temporal CLI, and set TEMPORAL_CLI_PATH."
  exit 1
fi
say "building github.com/temporalio/cli/cmd/temporal@$VERSION into $CACHE_DIR (a few minutes on a cold Go cache)"
mkdir -p "$CACHE_DIR"
start=$(date +%s)
# Later tags carry `replace` lines that `go install pkg@version` refuses; v1.5.1 is the newest that builds this way.
GOBIN="$CACHE_DIR" GOFLAGS="${GOFLAGS:-} -trimpath" "$GO" install "github.com/temporalio/cli/cmd/temporal@$VERSION" >&2
say "built in $(( $(date +%s) - start ))s, $(du -h "$CACHE_DIR/temporal" | cut -f1)"
echo "$CACHE_DIR/temporal"
