#!/usr/bin/env bash
# Builds a real Consul agent (the version pinned in tools/consul/go.mod) to bin/consul for the
# integration tests and the demo. It rebuilds only when bin/consul is missing or when
# tools/consul/go.sum changed since the last build (its hash is kept in bin/consul.gosum).
# Takes about 5 minutes on 2 cores the first time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${CONSUL_OUT:-$root/bin/consul}"
stamp="$out.gosum"
want="$(sha256sum "$here/go.sum" | awk '{print $1}')"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "consul: $out is up to date"
  exit 0
fi
mkdir -p "$(dirname "$out")"
# A copy kept outside the checkout, keyed by go.sum, so that a clean checkout (CI) reuses it.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/swarm-agent/consul-$want"
if [ -x "$cache" ]; then
  cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
  echo "$want" >"$stamp"
  echo "consul: $out restored from $cache"
  exit 0
fi
echo "consul: building $out (a few minutes)"
cd "$here"
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp" github.com/hashicorp/consul
mv "$out.tmp" "$out"
echo "$want" >"$stamp"
mkdir -p "$(dirname "$cache")" && cp "$out" "$cache.tmp" && mv "$cache.tmp" "$cache" || true
"$out" version | sed -n 1p
