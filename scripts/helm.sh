#!/usr/bin/env bash
# Makes the real `helm` CLI available and prints its path on stdout; diagnostics go to stderr.
# The version is the one klipper-helm v0.9.4-build20250113 (the Job image k3s v1.31.4+k3s1's
# helm-controller runs) bundles: k3s-io/klipper-helm package/Dockerfile fetches helm-v3.16.4.
# Order: 1. $HELM_PATH  2. the cached build below  3. `go install` of that version from the Go module
# proxy into the cache (about 3 min cold). A `helm` on PATH is not used: its version may differ.
set -euo pipefail
VERSION="${HELM_VERSION:-v3.16.4}"
CACHE_DIR="${PEDRO_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pedro-ops}/helm/$VERSION"
say() { echo "helm: $*" >&2; }
t0=$(date +%s)
trap 'rc=$?; say "$([ $rc = 0 ] && echo ready || echo "failed (exit $rc)") in $(( $(date +%s) - t0 )) s"' EXIT

if [ -n "${HELM_PATH:-}" ]; then
  if [ -x "$HELM_PATH" ]; then say "using HELM_PATH"; echo "$HELM_PATH"; exit 0; fi
  say "HELM_PATH=$HELM_PATH is not an executable file"; exit 1
fi
if [ -x "$CACHE_DIR/helm" ] && "$CACHE_DIR/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$VERSION"; then
  say "using cached build"; echo "$CACHE_DIR/helm"; exit 0
fi
GO="$(command -v go 2>/dev/null || true)"
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then say "Go is not installed: install Go >= 1.22, or set HELM_PATH to a helm $VERSION"; exit 1; fi
say "building helm.sh/helm/v3/cmd/helm@$VERSION into $CACHE_DIR"
mkdir -p "$CACHE_DIR"
# helm's Makefile stamps the version into internal/version; without it `helm version` says v3.x-dev.
GOBIN="$CACHE_DIR" GOFLAGS="${GOFLAGS:-} -trimpath" "$GO" install \
  -ldflags "-X helm.sh/helm/v3/internal/version.version=$VERSION" "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
echo "$CACHE_DIR/helm"
