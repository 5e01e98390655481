#!/usr/bin/env bash
# The demo of flanneld-ts: sudo ./scripts/demo.sh
# Installs what it needs (Debian 12 or 13, Node.js 24), then runs `npm run demo`: two namespace
# hosts, a real etcd, flanneld-ts on both, nginx1 -> nginx2 ping across the
# VXLAN overlay, the state along the path printed, then `flanneld-ts trace`
# nginx1 -> nginx2 hop by hop, everything torn down. `sudo ./scripts/demo.sh --dual-stack`: the same
# in IPv4 and IPv6 (flannel-v6.1 beside flannel.1, ping6 too).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh must run as root (it creates network namespaces): sudo ./scripts/demo.sh" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
# Node.js 24 first in PATH (fetched when the machine's node is another version).
# shellcheck source=scripts/use-node.sh
source scripts/use-node.sh
bash scripts/install-deps.sh
npm run build --silent
exec npm run demo --silent -- "$@"
