#!/usr/bin/env bash
# Builds Packer (the version pinned in tools/packer/go.mod) to bin/packer so that the tests can run
# `packer validate` on packaging/packer/swarm-agent.pkr.hcl offline: Packer v1.9.4 bundles the
# amazon plugin, so no `packer init` (which downloads) is needed. Cached (see tools/gotool.sh).
set -euo pipefail
exec bash "$(dirname "$0")/../gotool.sh" packer github.com/hashicorp/packer
