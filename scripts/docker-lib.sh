# shellcheck shell=bash
# Shared by scripts/container-e2e.sh and scripts/systemd-e2e.sh (sourced first,
# with $repo, $e2e_name and $e2e_run_prefix set): the run's id and label, log and
# die, the root check, one run at a time, a Docker engine (the running one, else
# ../shared/tools/offline-docker.sh starts one, since this workplace's machines
# reach no container registry), and removal by label.
# shellcheck disable=SC2034 # network_config and label are used by the scripts that source this
network_config='{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}'
run_id="${e2e_run_prefix:?}-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
label="flts.e2e=$run_id"
t0=$SECONDS

log() { printf '[%4ds] %s: %s\n' "$((SECONDS - t0))" "${e2e_name:?}" "$*" >&2; }
die() {
  log "FAIL: $*"
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/$e2e_name.sh must run as root (it may start dockerd): sudo $0" >&2
  exit 2
fi

docker_tool="$(dirname "${repo:?}")/shared/tools/offline-docker.sh"

# One run at a time on a machine: runs share the engine and the image tags, and a
# run that starts dockerd stops it again. Whatever carries our labels while we hold
# the lock was left by a run that was killed.
docker_lock() {
  exec 9>/var/tmp/flts-container-e2e.lock
  flock -w 1800 9 || die "another container e2e run holds /var/tmp/flts-container-e2e.lock"
}

# Sets DOCKER and started_dockerd.
docker_engine_start() {
  started_dockerd=false
  # The distribution's client (/usr/bin/docker) first: it matches the engine that
  # offline-docker.sh installs, and builds with DOCKER_BUILDKIT=1 without buildx.
  if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
  fi
  if ! command -v "$DOCKER" >/dev/null 2>&1 || ! "$DOCKER" info >/dev/null 2>&1; then
    if [ ! -f "$docker_tool" ]; then
      die "no running Docker engine, and no $docker_tool to start one (it sits beside the repository on this workplace's machines); start Docker or run from a checkout with shared/ beside it"
    fi
    log "starting Docker with $docker_tool"
    # setsid: dockerd gets a session of its own, so the test runner's process-group
    # kill does not take it down mid-shutdown; docker_engine_stop stops it.
    local exports
    exports=$(BASE_TAG=node:24-trixie-slim setsid bash "$docker_tool" start </dev/null) || die "$docker_tool start failed"
    eval "$exports"
    started_dockerd=true
  fi
  export DOCKER_BUILDKIT=1
}

d() { "$DOCKER" "$@"; }

# Stops the engine if this run started it.
docker_engine_stop() {
  if [ "${started_dockerd:-false}" = true ]; then
    log "stopping the dockerd this run started"
    bash "$docker_tool" stop || true
    for _ in $(seq 60); do d info >/dev/null 2>&1 || break; sleep 0.5; done
  fi
}

remove_labelled() { # $1: label filter (key or key=value)
  local ids
  ids=$(d ps -aq --filter "label=$1")
  # shellcheck disable=SC2086 # one id per word
  if [ -n "$ids" ]; then d rm -f $ids >/dev/null 2>&1 || true; fi
  ids=$(d network ls -q --filter "label=$1")
  # shellcheck disable=SC2086
  if [ -n "$ids" ]; then d network rm $ids >/dev/null 2>&1 || true; fi
  ids=$(d volume ls -q --filter "label=$1")
  # shellcheck disable=SC2086
  if [ -n "$ids" ]; then d volume rm -f $ids >/dev/null 2>&1 || true; fi
}

# The machine's CA bundle as a build secret: HTTPS egress may be intercepted here, and
# npm inside a build mounts it (required=false, so it is optional elsewhere).
# shellcheck disable=SC2034 # used by the scripts that source this one
docker_build_secret=()
# shellcheck disable=SC2034
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then docker_build_secret=(--secret "id=cacert,src=/etc/ssl/certs/ca-certificates.crt"); fi
