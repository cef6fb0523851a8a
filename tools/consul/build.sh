#!/usr/bin/env bash
# Builds a real Consul agent (the version pinned in tools/consul/go.mod) to bin/consul for the
# integration tests and the demo; cached (see tools/gotool.sh). About 5 minutes cold on 2 cores.
set -euo pipefail
exec bash "$(dirname "$0")/../gotool.sh" consul github.com/hashicorp/consul
