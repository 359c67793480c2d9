#!/usr/bin/env bash
# Builds and caches the lab's real Kubernetes control plane and the other real upstream binaries
# the tests run, from the Go module proxy (no other download), and prints the cache dir on stdout.
#   kube-apiserver, kube-controller-manager, kube-scheduler  k8s.io/kubernetes v1.31.4 (pinned k3s v1.31.4+k3s1)
#                                                            via the wrapper module in scripts/lab-toolchain/
#   kine      github.com/k3s-io/kine v0.17.5  (the SQLite storage k3s itself uses for one server)
#   kwok      sigs.k8s.io/kwok v0.6.1         (kubelets: Nodes and pods without containers)
#   coredns   github.com/coredns/coredns v1.11.4 (validates the split-DNS Corefile we write)
#   helm-controller github.com/k3s-io/helm-controller v0.16.5 (the one k3s v1.31.4+k3s1 embeds: its
#             go.mod); it reports its version (-X .../pkg/version.Version), and one of another
#             version is rebuilt, so the cache key stays the Kubernetes set's
# Order: $PEDRO_OPS_LAB_BIN (a folder holding all of them) -> the cache -> a build into the cache.
# Diagnostics go to stderr. A second run with everything cached takes milliseconds.
set -euo pipefail
K8S_VERSION=v1.31.4
KINE_VERSION=v0.17.5
KWOK_VERSION=v0.6.1
COREDNS_VERSION=v1.11.4
HELM_CONTROLLER_VERSION=v0.16.5
BINS=(kube-apiserver kube-controller-manager kube-scheduler kine kwok coredns helm-controller)
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${PEDRO_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pedro-ops}/lab-toolchain/k8s-$K8S_VERSION-kine-$KINE_VERSION-kwok-$KWOK_VERSION-coredns-$COREDNS_VERSION"
say() { echo "lab-toolchain: $*" >&2; }
t0=$(date +%s)
# Every toolchain script says how long it took, cached or built (.ci/run prints the phases).
trap 'rc=$?; say "$([ $rc = 0 ] && echo ready || echo "failed (exit $rc)") in $(( $(date +%s) - t0 )) s"' EXIT

helm_controller_ok() { "$1/helm-controller" --version 2>/dev/null | grep -q "version $HELM_CONTROLLER_VERSION "; }
have_all() {
  local d="$1"
  for b in "${BINS[@]}"; do [ -x "$d/$b" ] || return 1; done
  helm_controller_ok "$d"
}
if [ -n "${PEDRO_OPS_LAB_BIN:-}" ]; then
  if have_all "$PEDRO_OPS_LAB_BIN"; then echo "$PEDRO_OPS_LAB_BIN"; exit 0; fi
  say "PEDRO_OPS_LAB_BIN=$PEDRO_OPS_LAB_BIN does not hold all of: ${BINS[*]}"; exit 1
fi
if have_all "$CACHE_DIR"; then echo "$CACHE_DIR"; exit 0; fi

GO="$(command -v go 2>/dev/null || true)"
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then say "Go is not installed: install Go >= 1.22 or set PEDRO_OPS_LAB_BIN"; exit 1; fi
mkdir -p "$CACHE_DIR"
# One builder at a time per cache (npm test and .ci/run may both ask).
exec 9>"$CACHE_DIR/.lock"
flock 9
if have_all "$CACHE_DIR"; then echo "$CACHE_DIR"; exit 0; fi
start=$(date +%s)
say "building into $CACHE_DIR (about 8 minutes on a cold Go cache, 2 cores)"
build() { # name, command...
  local name="$1"; shift
  [ -x "$CACHE_DIR/$name" ] && return 0
  local t=$(date +%s)
  "$@" >&2
  say "$name built in $(( $(date +%s) - t ))s"
}
# /version must say the pinned version, not v0.0.0-master.
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
LDF="$LDF -X k8s.io/component-base/version.gitMinor=31 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
LDF="$LDF -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2024-12-10T00:00:00Z"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  build "$cmd" env -C "$HERE/lab-toolchain" CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "$LDF" \
    -o "$CACHE_DIR/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
build kine env GOBIN="$CACHE_DIR" CGO_ENABLED=1 "$GO" install -trimpath -ldflags "-s -w" "github.com/k3s-io/kine@$KINE_VERSION"
build kwok env GOBIN="$CACHE_DIR" CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
build coredns env GOBIN="$CACHE_DIR" CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
helm_controller_ok "$CACHE_DIR" || rm -f "$CACHE_DIR/helm-controller"
build helm-controller env GOBIN="$CACHE_DIR" CGO_ENABLED=0 "$GO" install -trimpath \
  -ldflags "-s -w -X github.com/k3s-io/helm-controller/pkg/version.Version=$HELM_CONTROLLER_VERSION" \
  "github.com/k3s-io/helm-controller@$HELM_CONTROLLER_VERSION"
say "all built in $(( $(date +%s) - start ))s"
echo "$CACHE_DIR"
