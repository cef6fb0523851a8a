#!/bin/sh
# Package script (after install, upgrade and removal): make systemd reread its unit files, when
# systemd runs the machine (not in a container or a chroot, such as an image build's). Enabling
# and starting the service are left to the operator, or to `swarm-agent install`. A deb purge
# also removes the settings `swarm-agent boot` wrote (the package does not own that file).
set -e
if [ "${1:-}" = purge ]; then
  rm -f "${DPKG_ROOT:-}/etc/default/swarm-agent"
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload || echo "swarm-agent: systemctl daemon-reload failed; run it by hand" >&2
fi
exit 0
