#!/usr/bin/env bash
# Builds dist/swarm-agent_VERSION-1_ARCH.deb and dist/swarm-agent-VERSION-1.ARCH.rpm from
# bin/swarm-agent (make build) with nfpm, pinned below and run from the Go module proxy.
#   VERSION  package version (default: the tag vX.Y.Z on HEAD without its v, else
#            0.0.0+gitYYYYMMDD.SHORTSHA)
#   BIN      the binary to package (default: bin/swarm-agent)
#   DIST     where the packages go (default: dist/)
# The package architecture is the one the binary was built for (go version -m).
set -euo pipefail
NFPM_VERSION=v2.45.2
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${BIN:-bin/swarm-agent}"
dist="${DIST:-dist}"
if [ ! -x "$bin" ]; then
  echo "package: $bin missing: run make build first" >&2
  exit 2
fi
arch="$(go version -m "$bin" | awk '$1 == "build" && $2 ~ /^GOARCH=/ {sub("GOARCH=", "", $2); print $2}')"
if [ -z "$arch" ]; then
  echo "package: cannot read GOARCH from $bin (go version -m): is it a Go binary?" >&2
  exit 1
fi
if [ -z "${VERSION:-}" ]; then
  if tag="$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null)"; then
    VERSION="${tag#v}"
  else
    VERSION="0.0.0+git$(date -u +%Y%m%d).$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  fi
fi
case "$VERSION" in
  [0-9]*) ;;
  *) echo "package: VERSION=$VERSION must start with a digit (deb and rpm require it)" >&2; exit 2 ;;
esac
# nfpm.yaml names its files relative to the repository root: lay them out in a staging folder,
# so that BIN can be any file.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/packaging"
cp "$bin" "$stage/bin/swarm-agent"
cp -r packaging/nfpm.yaml packaging/swarm-agent.default packaging/systemd packaging/scripts "$stage/packaging/"
mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"
# nfpm.yaml reads PACKAGE_VERSION and PACKAGE_ARCH; nfpm itself is built for this machine.
export PACKAGE_VERSION="$VERSION" PACKAGE_ARCH="$arch"
for fmt in deb rpm; do
  (cd "$stage" && go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package \
    --config packaging/nfpm.yaml --packager "$fmt" --target "$dist/") | sed 's/^/package: /'
done
