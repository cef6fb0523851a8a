#!/usr/bin/env bash
# Builds the root file system of the test bed's "instance" nodes (internal/testbed, instance.go):
# Debian 12 from Debian's packages with systemd, dbus, docker.io and cloud-init, as an EC2 image
# would have before swarm-agent is installed on it. mmdebstrap (apt-based debootstrap) builds it
# in a tmpfs (dpkg's fsyncs cost nothing there), then it is copied to
# ~/.cache/swarm-agent/instance-rootfs-HASH (HASH: this script and the architecture), and
# bin/instance-rootfs links to it. Run again, it only restores the link. Instances never write to
# it: each boots over an overlay of its own. Needs root and mmdebstrap (tools/prepare.sh installs
# it). SWARM_AGENT_DEBIAN_MIRROR overrides the mirror (default: mmdebstrap's, deb.debian.org with
# the updates and security suites).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
link="$root/bin/instance-rootfs"
suite=bookworm
# systemd-sysv: /sbin/init and friends; the rest is what the issue's instance runs.
packages=systemd,systemd-sysv,dbus,docker.io,cloud-init

if [ "$(id -u)" != 0 ]; then
  echo "instance: must run as root (mmdebstrap in root mode, mounts)" >&2
  exit 2
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "instance: mmdebstrap not found: apt-get install mmdebstrap (tools/prepare.sh does)" >&2
  exit 2
fi
arch="$(dpkg --print-architecture)"
key="$( (cat "$0"; echo "$arch") | sha256sum | cut -c1-16)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/swarm-agent"
cache="$cache_root/instance-rootfs-$key"
mkdir -p "$cache_root" "$root/bin"

# One build at a time per cache entry (parallel test processes, a second prepare).
exec 9>"$cache.lock"
flock 9
if [ -d "$cache" ]; then
  ln -sfn "$cache" "$link"
  echo "instance: $link -> $cache (cached)"
  exit 0
fi

echo "instance: building $cache (Debian $suite: $packages)"
start=$EPOCHREALTIME
tmp="$cache.tmp.$$"
work="$(mktemp -d)"
trap 'rm -rf "$tmp"; rmdir "$work" 2>/dev/null || true' EXIT
rm -rf "$cache".tmp.*
mkdir -p "$tmp"
mirror=()
if [ -n "${SWARM_AGENT_DEBIAN_MIRROR:-}" ]; then
  mirror=("$SWARM_AGENT_DEBIAN_MIRROR")
fi
# What makes it an image rather than a copy of the build: no host name, no machine id (each
# instance gets its own at its first boot), and no apt timers (an instance does not fetch from the
# network while a test runs). What the test bed's "cloud" provides (cloud-init's datasource, the
# network) the bed writes at an instance's first boot.
customize='
set -e
rm -f "$1/etc/hostname"
: > "$1/etc/machine-id"
for t in apt-daily.timer apt-daily-upgrade.timer; do ln -sfn /dev/null "$1/etc/systemd/system/$t"; done
'
# The tmpfs lives in a mount namespace of its own: it goes away with the build, whatever happens.
unshare --mount --propagation private -- bash -euo pipefail -c '
  work="$1"; out="$2"; suite="$3"; packages="$4"; customize="$5"; shift 5
  mount -t tmpfs -o size=4g,mode=755 swarm-agent-instance "$work"
  mmdebstrap --variant=minbase --mode=root --format=directory \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt=force-unsafe-io \
    --include="$packages" \
    --customize-hook="$customize" \
    "$suite" "$work/root" "$@"
  cp -a "$work/root/." "$out/"
' build "$work" "$tmp" "$suite" "$packages" "$customize" "${mirror[@]}" 2>&1 |
  grep --line-buffered -E '^(I: (running apt-get update|downloading|extracting|installing|success)|E: )' |
  sed -u 's/^/instance: /'
mv "$tmp" "$cache"
ln -sfn "$cache" "$link"
echo "instance: $link -> $cache ($(du -sh "$cache" | cut -f1), built in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'))"
