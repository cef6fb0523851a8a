#!/usr/bin/env bash
# gotool.sh NAME MODULE: builds the Go tool MODULE (pinned in tools/NAME/go.mod, a module of its
# own, never the product's go.mod) to bin/NAME. It rebuilds only when bin/NAME is missing or
# tools/NAME/go.sum changed since the last build (its hash is kept in bin/NAME.gosum), and keeps
# a copy keyed by that hash under ~/.cache/swarm-agent so that a clean checkout (CI) reuses it.
set -euo pipefail
name="$1"
module="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
here="$root/tools/$name"
out="${GOTOOL_OUT:-$root/bin/$name}"
stamp="$out.gosum"
want="$(sha256sum "$here/go.sum" | awk '{print $1}')"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$name: $out is up to date"
  exit 0
fi
mkdir -p "$(dirname "$out")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/swarm-agent/$name-$want"
if [ -x "$cache" ]; then
  cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
  echo "$want" >"$stamp"
  echo "$name: $out restored from $cache"
  exit 0
fi
echo "$name: building $out (a few minutes the first time)"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp" "$module")
mv "$out.tmp" "$out"
echo "$want" >"$stamp"
mkdir -p "$(dirname "$cache")" && cp "$out" "$cache.tmp" && mv "$cache.tmp" "$cache" || true
CHECKPOINT_DISABLE=1 "$out" version | sed -n 1p
