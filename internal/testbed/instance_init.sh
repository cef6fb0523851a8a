#!/bin/sh
# Starts an instance of the test bed: systemd as PID 1 of its own PID, mount, UTS, IPC and
# cgroup namespaces, in a network namespace (internal/testbed, instance.go runs this).
#
#   instance_init.sh outer NAME ROOT NETNS CONSOLE CGROUP...
#     on the host: joins the instance's cgroups (one per hierarchy), then enters NETNS (a path
#     under /run/netns; "" makes a new, empty one) and unshares the rest, running itself again:
#   instance_init.sh inner NAME ROOT CONSOLE
#     as PID 1 of the new namespaces: mounts what systemd expects over ROOT (already an overlay),
#     pivots into it and becomes systemd.
#
# As systemd-nspawn does: /proc/sys and /sys read-only (an instance must not change the host's
# kernel settings or devices; /proc/sys/net stays writable, it is the instance's own network
# namespace), /dev a tmpfs with the harmless host devices bound in and a devpts of its own,
# CONSOLE (a pty the bed reads) as /dev/console, /run a tmpfs, and container=swarm-testbed in
# systemd's environment so that it knows it runs in a container.
set -eu
stage="$1"
shift
case "$stage" in
outer)
  name="$1" root="$2" netns="$3" console="$4"
  shift 4
  for cg in "$@"; do echo $$ >"$cg/cgroup.procs"; done
  if [ -n "$netns" ]; then
    set -- nsenter --net="$netns" -- unshare
  else
    set -- unshare --net
  fi
  exec "$@" --pid --fork --kill-child=SIGKILL --mount --propagation private --uts --ipc --cgroup \
    -- /bin/sh "$0" inner "$name" "$root" "$console"
  ;;
inner) ;;
*)
  echo "instance_init.sh: unknown stage $stage" >&2
  exit 2
  ;;
esac

name="$1" root="$2" console="$3"
hostname "$name"
ip link set lo up

mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
mount -o remount,bind,ro,nosuid,nodev,noexec "$root/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"

mount -t tmpfs -o mode=755,nosuid,size=65536k tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  : >"$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
if [ -n "$console" ]; then
  : >"$root/dev/console"
  mount --bind "$console" "$root/dev/console"
fi
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
exec chroot . /bin/sh -c 'umount -l /.oldroot && rmdir /.oldroot && exec env -i container=swarm-testbed /lib/systemd/systemd'
