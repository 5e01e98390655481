#!/usr/bin/env bash
# Installs what flanneld-ts's tests and demo need on Debian 12 or 13 (run as root
# from the repo root): the apt packages below when missing, Node.js 24 when the
# machine's node is another version (scripts/use-node.sh), then `npm ci` (which also
# builds dist/ through the prepare script) when node_modules is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package names; each provides a binary the tests run (etcd, etcdctl, /usr/lib/cni/*, ip, bridge, ping, iptables, nft,
# openssl: test/e2e/security.test.ts makes its CA and certificates with it; minimal Debian images lack it;
# the shellcheck linter for test/unit/kind-manifests.test.ts; systemd: systemd-analyze and systemd-notify for
# test/integration/systemd.test.ts, with python3 for its stand-in notify socket; tcpdump: `flanneld-ts trace --capture`).
packages=(etcd-server etcd-client containernetworking-plugins iproute2 iputils-ping iptables nftables openssl shellcheck systemd python3 tcpdump)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node.js 24 first in PATH (a no-op when the caller already sourced it).
# shellcheck source=scripts/use-node.sh
source scripts/use-node.sh

# flanneld-ts, like flanneld, exits 1 at start without br_netfilter (unless EnableNFTables): every daemon the
# tests and the demo start would. Checked here, not loaded: loading kernel modules is the machine owner's call.
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  echo "br_netfilter is not loaded (/proc/sys/net/bridge/bridge-nf-call-iptables is missing): run \"modprobe br_netfilter\" first" >&2
  exit 2
fi

# npm writes node_modules/.package-lock.json on install: older than the lockfile means stale.
if [ "${CI:-}" = true ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci
fi
