#!/bin/sh
# Builds one lab node's private root inside a fresh mount + UTS namespace, then stays as the namespace's
# holder process (sshd is started into the namespace separately with nsenter, so it can be restarted
# without tearing the node down). Run as:
#   unshare --mount --uts --propagation private -- sh node-root.sh <nodeDir> <hostname>
# Quirks found on the way:
# - `--propagation private` is what keeps every mount below out of the host's mount table; the
#   namespace and all its mounts vanish when its last process exits, so stop() only kills pids.
# - Bind mounts need an existing mount point, and /etc/rancher, /var/lib/rancher, /data do not exist
#   on the host (creating them would write the host). So the node gets its own root: a tmpfs with the
#   host's /usr read-only, overlays (upper dir in the node dir) for /etc and /var, a private /root,
#   /tmp and /run, and the contract's private paths bound from the node dir on top. sshd runs
#   chrooted into it.
# - Overlay upper dirs must not live inside the lower dir: the lab dir must not be under /etc, /var
#   (os.tmpdir() is fine).
# - /etc/os-release is a symlink into /usr/lib on Debian; the overlay lets us replace it with a file
#   and bind the node's own os-release file over that.
# - sshd refuses to start without its privilege separation dir /run/sshd (root-owned, not writable
#   by others); the private /run tmpfs provides it.
set -eu
N=$1
NAME=$2
ROOT=$N/.root
OV=$N/.overlay

hostname "$NAME"
mkdir -p "$ROOT"
mount -t tmpfs -o mode=755 lab-root "$ROOT"
cd "$ROOT"

# Debian 12 has a merged /usr: /bin, /sbin, /lib* are symlinks into /usr
for l in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$l"; elif [ -d "/$l" ]; then mkdir "$l"; mount --rbind "/$l" "$l"; fi
done
mkdir -p usr dev proc sys run tmp etc var root data opt home srv mnt media
mount --rbind /usr usr
mount -o remount,bind,ro usr
mount --rbind /dev dev
mount --rbind /proc proc
mount --rbind /sys sys
for d in etc var; do
  mkdir -p "$OV/$d/upper" "$OV/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$OV/$d/upper,workdir=$OV/$d/work" "$d"
done
mkdir -p "$N/tmp" "$N/root" && chmod 1777 "$N/tmp" && chmod 700 "$N/root"
mount --bind "$N/tmp" tmp
# a fresh root home: the host's /root holds its own dotfiles (bash reads ~/.bashrc even for ssh
# commands) and keys that a lab node must not see
mount --bind "$N/root" root
mount -t tmpfs -o mode=755 lab-run run
mkdir -p run/sshd run/lab
chmod 755 run/sshd
mount --bind "$N/.lab" run/lab

for p in etc/rancher var/lib/rancher usr/local/bin usr/local/sbin etc/systemd/system data/persistent-storage \
  etc/sysctl.d etc/modules-load.d var/lib/lab; do
  mkdir -p "$N/$p" "$ROOT/$p"
  mount --bind "$N/$p" "$ROOT/$p"
done
rm -f etc/os-release
touch etc/os-release
mount --bind "$N/etc/os-release" etc/os-release

echo "lab-node-ready"
# Holder: keeps the namespace alive; exits when the lab process closes our stdin (also if it crashes).
exec cat >/dev/null
