#!/usr/bin/env bash
# Builds Packer (the version pinned in tools/packer/go.mod) to bin/packer so that the tests can run
# `packer validate` on packaging/packer/swarm-agent.pkr.hcl offline: Packer v1.9.4 bundles the
# amazon plugin, so no `packer init` (which downloads) is needed. It rebuilds only when bin/packer
# is missing or when tools/packer/go.sum changed since the last build (its hash is kept in
# bin/packer.gosum). Takes about 5 minutes on 2 cores the first time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${PACKER_OUT:-$root/bin/packer}"
stamp="$out.gosum"
want="$(sha256sum "$here/go.sum" | awk '{print $1}')"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "packer: $out is up to date"
  exit 0
fi
mkdir -p "$(dirname "$out")"
# A copy kept outside the checkout, keyed by go.sum, so that a clean checkout (CI) reuses it.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/swarm-agent/packer-$want"
if [ -x "$cache" ]; then
  cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
  echo "$want" >"$stamp"
  echo "packer: $out restored from $cache"
  exit 0
fi
echo "packer: building $out (a few minutes)"
cd "$here"
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp" github.com/hashicorp/packer
mv "$out.tmp" "$out"
echo "$want" >"$stamp"
mkdir -p "$(dirname "$cache")" && cp "$out" "$cache.tmp" && mv "$cache.tmp" "$cache" || true
CHECKPOINT_DISABLE=1 "$out" version | sed -n 1p
