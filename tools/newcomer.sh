#!/usr/bin/env bash
# A newcomer's first hour, measured: clones this checkout's HEAD into a temporary directory, runs
# the README's two commands there, as a new user would, and prints how long each took.
#
#   sudo tools/newcomer.sh [--cold] [--keep] [demo] [test]
#
# demo and test pick the commands (default: both, demo first). --cold also starts from empty
# Go build, Go module and tool caches (XDG_CACHE_HOME: Consul and Packer are built from source),
# as on a machine that never built the project; without it those caches are shared with this
# machine, as for a second clone. Each command's output goes to the terminal and to a log kept in
# /tmp. --keep keeps the clone. Exit status: 0 when every command succeeded. ($MAKE, default
# make, runs the commands.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

cold=false keep=false cmds=()
for arg in "$@"; do
  case "$arg" in
    --cold) cold=true ;;
    --keep) keep=true ;;
    demo | test) cmds+=("$arg") ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "newcomer: unknown argument $arg (want demo, test, --cold or --keep)" >&2
      exit 2
      ;;
  esac
done
[ ${#cmds[@]} -gt 0 ] || cmds=(demo test)
if [ "$(id -u)" != 0 ]; then
  echo "newcomer: must run as root, as the README's commands do (sudo make demo, sudo make test)" >&2
  exit 2
fi

work="$(mktemp -d /tmp/swarm-agent-newcomer.XXXXXX)"
cleanup() {
  if $keep; then
    echo "newcomer: kept $work"
    return
  fi
  chmod -R u+w "$work" 2>/dev/null || true # the Go module cache is read-only
  rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet "$root" "$work/swarm-agent"
cd "$work/swarm-agent"
commit="$(git rev-parse --short HEAD)"
if $cold; then
  export XDG_CACHE_HOME="$work/cache" GOCACHE="$work/cache/go-build" GOMODCACHE="$work/cache/go-mod"
fi

fmt_duration() { awk -v s="$1" 'BEGIN { if (s >= 60) printf "%dm%04.1fs", s / 60, s % 60; else printf "%.1fs", s }'; }

results=() status=0
for c in "${cmds[@]}"; do
  log="/tmp/swarm-agent-newcomer-$c.log"
  echo "newcomer: sudo make $c (in $work/swarm-agent, commit $commit; log $log)"
  start=$EPOCHREALTIME
  rc=0
  "${MAKE:-make}" "$c" 2>&1 | tee "$log" || rc=$?
  took="$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
  result=ok
  if [ "$rc" != 0 ]; then
    result="FAILED (exit $rc)"
    status=1
  fi
  results+=("$(printf '%-16s %-16s %s' "sudo make $c" "$result" "$(fmt_duration "$took")")")
done

echo
echo "newcomer: a fresh clone of commit $commit, $(nproc) cores, $($cold && echo "cold caches" || echo "this machine's caches"), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
for r in "${results[@]}"; do
  echo "newcomer: $r"
done
exit $status
