#!/usr/bin/env bash
# The test command of flanneld-ts: sudo ./scripts/test.sh [vitest args…]
#
# Installs what the suite needs (Debian 12 or 13; Node.js 24, fetched when the
# machine's node is another version: scripts/use-node.sh), builds, typechecks, then runs vitest
# inside a private network namespace so that no test can touch the host's own
# interfaces, routes or iptables. Prints "N passed, N failed[, N skipped]" and
# exits with vitest's exit code. Extra arguments go to vitest (e.g. test/unit).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh must run as root (the tests create network namespaces): sudo ./scripts/test.sh" >&2
  exit 2
fi

cd "$(dirname "$0")/.."

# Node.js 24 first in PATH for everything below: npm, tsc, vitest and the daemons the tests start.
# shellcheck source=scripts/use-node.sh
source scripts/use-node.sh
echo "Node.js $(node --version) ($FLTS_NODE)"
# apt packages, npm ci (shared with scripts/demo.sh).
bash scripts/install-deps.sh
npm run build
npx tsc -p tsconfig.json --noEmit

# Namespaces of earlier runs that crashed (only idle ones, older than 10 minutes: another run may be live).
node -e 'require("./dist/testbed/netns").cleanupStale("flts-").then((d) => { if (d.length) console.log("deleted stale namespaces: " + d.join(" ")); })'

suite_ns="flts-suite-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
work=$(mktemp -d /tmp/flts-test.XXXXXX)
# createCluster appends each cluster prefix here, so clusters of a killed run get deleted too.
export FLTS_CLUSTER_LOG="$work/clusters"
export FLTS_SUITE_NETNS="$suite_ns"
# This shell stays in the machine's own namespaces: the container e2e test enters
# them (nsenter --target) to run dockerd, which the suite namespace cannot host.
export FLTS_HOST_PID=$$
: >"$FLTS_CLUSTER_LOG"

# shellcheck disable=SC2317 # both functions run from the EXIT trap, which shellcheck cannot follow
delete_netns() { # kill what runs inside, then delete
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  fi
  ip netns del "$1" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
  local prefix f
  # Whatever the tests started and left running (daemons, etcd) is in vitest's process group.
  if [ -n "${vitest_pid:-}" ]; then
    kill -TERM -- "-$vitest_pid" 2>/dev/null && sleep 1
    kill -KILL -- "-$vitest_pid" 2>/dev/null || true
  fi
  while read -r prefix; do
    [ -n "$prefix" ] || continue
    for f in /var/run/netns/"$prefix" /var/run/netns/"$prefix"-*; do
      if [ -e "$f" ]; then delete_netns "${f##*/}"; fi
    done
  done <"$FLTS_CLUSTER_LOG"
  delete_netns "$suite_ns"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$suite_ns"
ip -n "$suite_ns" link set lo up

# setsid: vitest and everything it spawns form one process group that cleanup can kill.
# Backgrounded without job control, setsid is no group leader, so it does not fork: pgid = pid.
setsid --wait ip netns exec "$suite_ns" npx vitest run --reporter=default --reporter=json --outputFile="$work/vitest.json" "$@" &
vitest_pid=$!
rc=0
wait "$vitest_pid" || rc=$?

if [ -s "$work/vitest.json" ]; then
  node -e '
    const r = require(process.argv[1]);
    const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
    const badFiles = r.testResults.filter((f) => f.status === "failed").length;
    if (badFiles > 0) console.log(badFiles + " test file(s) failed (failures in hooks count here, not below)");
    console.log(r.numPassedTests + " passed, " + r.numFailedTests + " failed" + (skipped ? ", " + skipped + " skipped" : ""));
  ' "$work/vitest.json"
else
  echo "vitest wrote no report (exit code $rc)" >&2
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
