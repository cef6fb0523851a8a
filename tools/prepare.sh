#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine, as root. Idempotent.
# Docker is installed by swarm-agent itself (`swarm-agent install`), so that path runs for real.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "prepare: must run as root (network namespaces, dockerd, apt-get)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
pkgs=(iproute2 iptables busybox-static file systemd procps util-linux rpm cloud-init)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "prepare: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Docker through the product's own install command (apt path on Debian).
if [ ! -x bin/swarm-agent ]; then
  CGO_ENABLED=0 go build -trimpath -o bin/swarm-agent .
fi
bin/swarm-agent install
# A real Consul agent, built from the module proxy once and cached in bin/.
if [ -f tools/consul/build.sh ]; then
  bash tools/consul/build.sh
fi
# Packer (validates the AMI template offline), built the same way.
if [ -f tools/packer/build.sh ]; then
  bash tools/packer/build.sh
fi
# moto's server (preinstalled with the machine's Python).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "prepare: moto_server not found; install it with: pip install 'moto[server]'" >&2
  exit 1
fi
echo "prepare: ready (dockerd $(dockerd --version | awk '{print $3}' | tr -d ,), moto $(python3 -c 'import moto; print(moto.__version__)'))"
