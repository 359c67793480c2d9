#!/bin/sh
# k3s installer stand-in for the lab. Same interface and output as https://get.k3s.io:
#   curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION=v1.31.4+k3s1 INSTALL_K3S_EXEC="server --cluster-init" sh -s - --tls-san 1.2.3.4
#   K3S_URL=https://<server>:6443 K3S_TOKEN=<token> sh install.sh
# Env: INSTALL_K3S_VERSION, INSTALL_K3S_EXEC, INSTALL_K3S_SKIP_DOWNLOAD, INSTALL_K3S_SKIP_START, INSTALL_K3S_FORCE_RESTART,
# K3S_URL, K3S_TOKEN (plus any K3S_* kept in the service env file, as the real script does).
# The "download" copies the release's k3s stand-in from /run/lab/k3s-release/<version>; systemctl is the lab shim.
set -e
set -o noglob

info() { echo '[INFO] ' "$@"; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }
quote() { for arg in "$@"; do printf '%s\n' "$arg" | sed "s/'/'\\\\''/g;1s/^/'/;\$s/\$/'/"; done; }
quote_indent() { printf ' \\\n'; for arg in "$@"; do printf '\t%s \\\n' "$(quote "$arg")"; done; }
escape() { printf '%s' "$@" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'; }

# every run counts, including those that fail below (counters().installerRuns)
mkdir -p /var/lib/lab
echo "$(date +%s) $*" >>/var/lib/lab/installer-runs

BIN_DIR=/usr/local/bin
SYSTEMD_DIR=/etc/systemd/system
DEFAULT_VERSION=v1.31.4+k3s1

# --- INSTALL_K3S_EXEC words come first, then the positional args (sh -s - ...) ---
eval set -- $(escape "${INSTALL_K3S_EXEC}") $(quote "$@")
case "$1" in
  (-*|"")
    if [ -z "${K3S_URL}" ]; then
      CMD_K3S=server
    else
      if [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
        fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
      fi
      CMD_K3S=agent
    fi ;;
  (*) CMD_K3S=$1; shift ;;
esac
case "$CMD_K3S" in server|agent) ;; *) fatal "Unsupported command ${CMD_K3S} (expected server or agent)" ;; esac
if [ -n "${K3S_URL}" ]; then
  case "${K3S_URL}" in https://*) ;; *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;; esac
fi
if [ "$CMD_K3S" = server ]; then SYSTEM_NAME=k3s; else SYSTEM_NAME=k3s-$CMD_K3S; fi
FILE_K3S_SERVICE=$SYSTEMD_DIR/$SYSTEM_NAME.service
FILE_K3S_ENV=$SYSTEMD_DIR/$SYSTEM_NAME.service.env
UNINSTALL_K3S_SH=$BIN_DIR/$SYSTEM_NAME-uninstall.sh
KILLALL_K3S_SH=$BIN_DIR/k3s-killall.sh

ARCH=$(uname -m)
case $ARCH in
  amd64|x86_64) ARCH=amd64 ;;
  arm64|aarch64) ARCH=arm64 ;;
  s390x) ARCH=s390x ;;
  arm*) ARCH=arm ;;
  *) fatal "Unsupported architecture $ARCH" ;;
esac

hashes() { sha256sum $BIN_DIR/k3s "$FILE_K3S_SERVICE" "$FILE_K3S_ENV" 2>&1 || true; }
PRE_INSTALL_HASHES=$(hashes)

if [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = true ]; then
  info 'Skipping k3s download and verify'
  [ -x $BIN_DIR/k3s ] || fatal "Executable k3s binary not found at $BIN_DIR/k3s"
  VERSION_K3S=$($BIN_DIR/k3s --version | sed -n 's/^k3s version \([^ ]*\).*/\1/p')
else
  if [ -n "${INSTALL_K3S_VERSION}" ]; then
    VERSION_K3S=${INSTALL_K3S_VERSION}
  else
    info 'Finding release for channel stable'
    VERSION_K3S=$DEFAULT_VERSION
  fi
  info "Using ${VERSION_K3S} as release"
  GITHUB_URL=https://github.com/k3s-io/k3s/releases/download/${VERSION_K3S}
  info "Downloading hash ${GITHUB_URL}/sha256sum-${ARCH}.txt"
  # one binary per release (test/lab/nodes/index.ts K3S_RELEASES); an unknown version is GitHub's 404
  if ! echo "${VERSION_K3S}" | grep -Eq '^v1\.[0-9]+\.[0-9]+\+k3s[0-9]+$' || [ ! -f "/run/lab/k3s-release/${VERSION_K3S}/k3s" ]; then
    echo "curl: (22) The requested URL returned error: 404" >&2
    fatal 'Download failed'
  fi
  if [ -x $BIN_DIR/k3s ] && [ "$($BIN_DIR/k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3)" = "${VERSION_K3S}" ]; then
    info 'Skipping binary downloaded, installed k3s matches hash'
  else
    info "Downloading binary ${GITHUB_URL}/k3s"
    info 'Verifying binary download'
    info "Installing k3s to $BIN_DIR/k3s"
    cp "/run/lab/k3s-release/${VERSION_K3S}/k3s" $BIN_DIR/k3s.tmp
    chmod 755 $BIN_DIR/k3s.tmp
    mv -f $BIN_DIR/k3s.tmp $BIN_DIR/k3s
  fi
fi

for cmd in kubectl crictl ctr; do
  if [ -e "$BIN_DIR/$cmd" ]; then
    info "Skipping $BIN_DIR/$cmd symlink to k3s, already exists"
  else
    info "Creating $BIN_DIR/$cmd symlink to k3s"
    ln -sf k3s "$BIN_DIR/$cmd"
  fi
done

info "Creating killall script $KILLALL_K3S_SH"
cat >"$KILLALL_K3S_SH" <<'EOK'
#!/bin/sh
[ $(id -u) -eq 0 ] || exec sudo $0 $@
for service in /etc/systemd/system/k3s*.service; do
  [ -s "$service" ] && systemctl stop "$(basename "$service")"
done
exit 0
EOK
chmod 755 "$KILLALL_K3S_SH"

info "Creating uninstall script $UNINSTALL_K3S_SH"
cat >"$UNINSTALL_K3S_SH" <<EOU
#!/bin/sh
set -x
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
$KILLALL_K3S_SH
systemctl disable $SYSTEM_NAME
systemctl reset-failed $SYSTEM_NAME
systemctl daemon-reload
rm -f $FILE_K3S_SERVICE $FILE_K3S_ENV
# lab: the node leaves the cluster API (DELETE /lab/k3s/nodes/:name on the Kubernetes double)
if [ -f /var/lib/lab/k3s-node-name ]; then
  . /var/lib/lab/kube.env
  curl -sS -o /dev/null --cacert /var/lib/lab/kube-ca.pem -H @/var/lib/lab/kube-auth-header -X DELETE "\$KUBE_URL/lab/k3s/nodes/\$(cat /var/lib/lab/k3s-node-name)" || true
  rm -f /var/lib/lab/k3s-node-name
fi
remove_uninstall() { rm -f $UNINSTALL_K3S_SH; }
trap remove_uninstall EXIT
if (ls $SYSTEMD_DIR/k3s*.service) >/dev/null 2>&1; then
  set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; exit
fi
for cmd in kubectl crictl ctr; do
  if [ -L $BIN_DIR/\$cmd ]; then rm -f $BIN_DIR/\$cmd; fi
done
rm -rf /etc/rancher/k3s /run/k3s /var/lib/rancher/k3s /var/lib/kubelet
rm -f $BIN_DIR/k3s $KILLALL_K3S_SH
EOU
chmod 755 "$UNINSTALL_K3S_SH"

info "env: Creating environment file $FILE_K3S_ENV"
(umask 0177; env | grep -E '^(K3S|CONTAINERD)_' | sed -e 's/=\(.*\)/="\1"/' >"$FILE_K3S_ENV" || true)

info "systemd: Creating service file $FILE_K3S_SERVICE"
# k3s-io/k3s install.sh setup_env: SYSTEMD_TYPE=notify unless INSTALL_K3S_TYPE is set, for servers and
# agents alike; with TimeoutStartSec=0 below, `systemctl restart k3s-agent` blocks until the agent
# has validated its token against the server (the lab's systemctl shim does the same).
TYPE=${INSTALL_K3S_TYPE:-notify}
cat >"$FILE_K3S_SERVICE" <<EOS
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=$TYPE
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$FILE_K3S_ENV
KillMode=process
Delegate=yes
LimitNOFILE=1048576
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$BIN_DIR/k3s \\
    $CMD_K3S$(quote_indent "$@")

EOS

info "systemd: Enabling $SYSTEM_NAME unit"
systemctl enable "$SYSTEM_NAME"
systemctl daemon-reload >/dev/null

# k3s-io/k3s install.sh service_enable_and_start: `[ "${INSTALL_K3S_SKIP_START}" = true ] && return`
# right after enabling the unit (a restore onto a new machine installs without starting: the first
# start must be the cluster-reset, not a fresh cluster).
if [ "${INSTALL_K3S_SKIP_START}" = true ]; then
  exit 0
fi
# k3s-io/k3s install.sh service_enable_and_start: only the hashes of the binary, unit and env file
# decide. A stopped service with nothing changed stays stopped, and a changed config.yaml or
# registries.yaml is not a change here (neither file is hashed).
if [ "$PRE_INSTALL_HASHES" = "$(hashes)" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
  info 'No change detected so skipping service start'
  exit 0
fi
info "systemd: Starting $SYSTEM_NAME"
if ! systemctl restart "$SYSTEM_NAME"; then
  # lab addition: surface what k3s logged, so the failure is readable without journalctl
  grep 'level=fatal' "/var/lib/lab/journal/$SYSTEM_NAME.log" 2>/dev/null | tail -n 1 >&2
  exit 1
fi
