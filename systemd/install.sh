#!/usr/bin/env bash
# Installs flanneld-ts as a systemd service from this checkout (Debian 12 or 13, as root):
#
#   sudo systemd/install.sh
#   sudoedit /etc/default/flanneld-ts        # etcd endpoints, interface, --ip-masq, ...
#   sudo systemctl enable --now flanneld-ts
#
# Puts in place
#   /opt/flanneld-ts/                  package.json, bin/, dist/ and the production
#                                      dependencies only (npm ci --omit=dev)
#   /usr/local/bin/flanneld-ts         wrapper: the absolute path of this machine's
#                                      node (systemd's PATH may not find it)
#   /etc/systemd/system/flanneld-ts.service
#   /etc/default/flanneld-ts           from systemd/flanneld-ts.env.example, only when
#                                      absent (mode 0600: it may hold the etcd password)
# Idempotent: a second run replaces the program and the unit with the same
# content and leaves an existing /etc/default/flanneld-ts alone. It neither
# enables nor starts the service. Needs Node.js 24 (the supported runtime; a newer
# major is accepted with a warning) outside /home and /root (the
# unit's ProtectHome=yes hides those) and the npm registry (or npm's cache).
#
# Env: DESTDIR=/some/root stages everything under that directory instead (no
# systemctl call then; used by the tests); PREFIX (default /opt/flanneld-ts).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/flanneld-ts}
BINDIR=/usr/local/bin

log() { printf 'install: %s\n' "$*" >&2; }
die() {
  printf 'install: %s\n' "$*" >&2
  exit 1
}

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo $0), or set DESTDIR to stage the files"; fi
case $PREFIX in /*) ;; *) die "PREFIX must be an absolute path, not $PREFIX" ;; esac

node=$(command -v node || true)
[ -n "$node" ] || die "node is not on PATH: install Node.js 24 first"
node=$(readlink -f "$node")
node_major=$("$node" -e 'process.stdout.write(process.versions.node.split(".")[0])') || die "$node does not run"
if [ "$node_major" -lt 24 ]; then
  die "flanneld-ts runs on Node.js 24 (the supported runtime); $node is $("$node" --version): install Node.js 24"
elif [ "$node_major" -gt 24 ]; then
  log "warning: $node is $("$node" --version); flanneld-ts is tested on Node.js 24 only"
fi
# A staged install (DESTDIR) is not run by this machine's systemd: only a real one must find node outside ProtectHome's reach.
[ -n "$DESTDIR" ] || case $node in
  /home/* | /root/* | /run/user/*) die "$node is under /home, /root or /run/user, which the unit hides (ProtectHome=yes): install Node.js system-wide (e.g. /usr/bin/node)" ;;
esac

# dist/ from this checkout's sources (npm ci builds it through the prepare
# script); rebuilt when a source file is newer than it.
if [ ! -f "$repo/dist/main.js" ] && [ ! -x "$repo/node_modules/.bin/tsc" ]; then
  log "building: npm ci in $repo"
  (cd "$repo" && npm ci --no-audit --no-fund)
# A copy without src/ (a release tree: package.json, package-lock.json, bin/, dist/, systemd/) installs its dist/ as it is.
elif [ ! -f "$repo/dist/main.js" ] || { [ -d "$repo/src" ] && [ -n "$(find "$repo/src" -newer "$repo/dist/main.js" -print -quit)" ]; }; then
  log "building: npm run build in $repo"
  (cd "$repo" && npm run --silent build)
fi
[ -f "$repo/dist/main.js" ] || die "no $repo/dist/main.js after the build"

# The program: staged beside the target, then swapped in, so a failed npm ci
# leaves the installed version untouched.
target="$DESTDIR$PREFIX"
stage="$target.new.$$"
mkdir -p "$(dirname "$target")"
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"
cp -R "$repo/package.json" "$repo/package-lock.json" "$repo/bin" "$repo/dist" "$stage/"
cp "$repo/README.md" "$stage/" 2>/dev/null || true
log "installing production dependencies in $PREFIX"
# --ignore-scripts: no `prepare` (dist/ is copied in) and no native build
# (netlink loads its prebuilt binding).
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
"$node" "$stage/bin/flanneld-ts" --version >/dev/null || die "the staged program does not run: $node $stage/bin/flanneld-ts --version"
if [ -e "$target" ]; then
  mv "$target" "$target.old.$$"
  mv "$stage" "$target"
  rm -rf "$target.old.$$"
else
  mv "$stage" "$target"
fi
trap - EXIT

mkdir -p "$DESTDIR$BINDIR"
wrapper=$(mktemp)
cat >"$wrapper" <<EOF
#!/bin/sh
# flanneld-ts, installed by systemd/install.sh: run with the Node.js found at install time
# (first on PATH, so the program's own shebang, which carries its Node flags, finds it).
PATH=$(dirname "$node"):\$PATH exec $PREFIX/bin/flanneld-ts "\$@"
EOF
install -m 0755 "$wrapper" "$DESTDIR$BINDIR/flanneld-ts"
rm -f "$wrapper"

install -D -m 0644 "$repo/systemd/flanneld-ts.service" "$DESTDIR/etc/systemd/system/flanneld-ts.service"
if [ -e "$DESTDIR/etc/default/flanneld-ts" ]; then
  log "kept the existing /etc/default/flanneld-ts (the example is $repo/systemd/flanneld-ts.env.example)"
else
  install -D -m 0600 "$repo/systemd/flanneld-ts.env.example" "$DESTDIR/etc/default/flanneld-ts"
  log "wrote /etc/default/flanneld-ts from the example: set FLANNELD_ETCD_ENDPOINTS there"
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
log "installed flanneld-ts $("$node" "$target/bin/flanneld-ts" --version) in $target"
log "next: edit /etc/default/flanneld-ts, then: systemctl enable --now flanneld-ts"
