#!/usr/bin/env bash
# The system packages the tests need (the lab's real sshd nodes, its CA, the k3s stand-in's jq,
# unshare for private node filesystems, Chromium for the /docs screenshot, PostgreSQL 15 for
# npm run test:production). Checks them in a second;
# as root on Debian installs the missing ones; otherwise exits 1 printing the one command to run.
# Used by .ci/run and by the vitest global setup (test/global-setup.ts), so `npm test` stops at once
# instead of failing file by file.
#
#   bash scripts/system-deps.sh [extra-package ...]
#   PEDRO_OPS_SYSTEM_DEPS_INSTALL=never   only check, never install (default: auto = install when root on Debian)
set -euo pipefail

# One package per line: "<debian package> <a file it installs>" (the file is what non-Debian
# machines are checked for). Add a package here and every caller gets it.
PACKAGES=(
  "openssh-server /usr/sbin/sshd"
  "openssh-client ssh-keygen"
  "openssl openssl"
  "curl curl"
  "jq jq"
  "util-linux unshare"
  "procps ps"
  "iproute2 ip"
  "chromium chromium"
  "postgresql-15 /usr/lib/postgresql/15/bin/postgres"
)
for extra in "$@"; do PACKAGES+=("$extra"); done

t0=$(date +%s)
mode="${PEDRO_OPS_SYSTEM_DEPS_INSTALL:-auto}"
pkgs=()
for line in "${PACKAGES[@]}"; do
  read -r pkg _ <<<"$line"
  pkgs+=("$pkg")
done

missing_debian() {
  local p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian: look for the files the packages would install.
  missing=()
  for line in "${PACKAGES[@]}"; do
    read -r pkg file <<<"$line"
    file="${file:-$pkg}"
    if [ "${file#/}" != "$file" ]; then [ -x "$file" ] || missing+=("$pkg"); else command -v "$file" >/dev/null 2>&1 || missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "system-deps: missing (Debian names): ${missing[*]}" >&2
  echo "system-deps: not a Debian system; install the equivalents with your package manager" >&2
  exit 1
fi

mapfile -t missing < <(missing_debian)
[ ${#missing[@]} -eq 0 ] && exit 0

install_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$mode" = never ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing system packages: ${missing[*]}" >&2
  echo "system-deps: install them with:" >&2
  if [ "$(id -u)" = 0 ]; then echo "  $install_cmd" >&2; else echo "  sudo sh -c '$install_cmd'" >&2; fi
  exit 1
fi

echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The lab starts its own sshd processes on loopback; a system sshd the package just enabled is not wanted.
if printf '%s\n' "${missing[@]}" | grep -qx openssh-server && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now ssh >/dev/null 2>&1 || true
fi
mapfile -t still < <(missing_debian)
if [ ${#still[@]} -gt 0 ]; then
  echo "system-deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "system-deps: installed ${missing[*]} in $(( $(date +%s) - t0 )) s" >&2
