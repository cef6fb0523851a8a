#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine, as root. Idempotent.
#
#   tools/prepare.sh [--consul] [--packer] [--packaging] [--instance] [--all] [--plan]
#
# Always: the test bed's Debian packages, Docker through the product's own `swarm-agent install`
# (so that path runs for real) and a check that moto's server is there; that is all `make demo`
# needs. --consul builds a Consul agent (`make demo DEMO_FLAGS=-mode=consul`, the Consul tests),
# --packer builds Packer (the packaging tests validate the AMI template with it), --packaging adds
# the Debian packages the packaging tests use (file, systemd, rpm, cloud-init), --instance builds
# the root file system of the test bed's instance nodes (systemd, docker.io, cloud-init from
# Debian's packages, with mmdebstrap: tools/instance/build.sh); --all is the four, what `make
# test` asks for. Consul, Packer and the root file system take minutes the first time, then come
# from bin/ or ~/.cache/swarm-agent. Each step prints a line with its duration; --plan prints the
# steps and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

consul=false packer=false packaging=false instance=false plan=false
for arg in "$@"; do
  case "$arg" in
    --consul) consul=true ;;
    --packer) packer=true ;;
    --packaging) packaging=true ;;
    --instance) instance=true ;;
    --all) consul=true packer=true packaging=true instance=true ;;
    --plan) plan=true ;;
    -h | --help)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "prepare: unknown argument $arg (want --consul, --packer, --packaging, --instance or --all)" >&2
      exit 2
      ;;
  esac
done
if ! $plan && [ "$(id -u)" != 0 ]; then
  echo "prepare: must run as root (network namespaces, dockerd, apt-get)" >&2
  exit 2
fi

steps=3
$consul && steps=$((steps + 1))
$packer && steps=$((steps + 1))
$instance && steps=$((steps + 1))
n=0
total_start=$EPOCHREALTIME
# step NAME COMMAND...: runs one step, then prints its duration.
step() {
  local name="$1" start=$EPOCHREALTIME
  shift
  n=$((n + 1))
  echo "prepare: [$n/$steps] $name"
  if $plan; then
    return
  fi
  "$@"
  echo "prepare: [$n/$steps] $name: done in $(elapsed "$start")"
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# The test bed's tools: network namespaces, bridges, busybox images (internal/testbed).
pkgs=(iproute2 iptables busybox-static procps util-linux)
if $packaging; then
  pkgs+=(file systemd rpm cloud-init)
fi
if $instance; then
  pkgs+=(mmdebstrap)
fi
install_packages() {
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "prepare: all installed"
    return
  fi
  echo "prepare: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_docker() {
  # Docker through the product's own install command (apt path on Debian).
  if [ ! -x bin/swarm-agent ]; then
    CGO_ENABLED=0 go build -trimpath -o bin/swarm-agent .
  fi
  local summary actions
  summary="$(bin/swarm-agent install --log-format=console --log-level=warn)"
  actions="$(sed -n 's/.*"actions":\[\([^]]*\)\].*/\1/p' <<<"$summary")"
  echo "prepare: dockerd $(dockerd --version | awk '{print $3}' | tr -d ,); swarm-agent install changed: ${actions:-nothing}"
}

check_moto() {
  # moto's server (preinstalled with the machine's Python).
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "prepare: moto_server not found; install it with: pip install 'moto[server]'" >&2
    return 1
  fi
  echo "prepare: moto $(python3 -c 'import importlib.metadata as m; print(m.version("moto"))')"
}

step "Debian packages (${pkgs[*]})" install_packages
step "Docker (swarm-agent install)" install_docker
step "moto" check_moto
if $consul; then
  step "Consul agent (bin/consul)" bash tools/consul/build.sh
fi
if $packer; then
  step "Packer (bin/packer)" bash tools/packer/build.sh
fi
if $instance; then
  step "instance root file system (bin/instance-rootfs)" bash tools/instance/build.sh
fi
if ! $plan; then
  echo "prepare: ready in $(elapsed "$total_start")"
fi
