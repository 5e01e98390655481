#!/usr/bin/env bash
# The systemd unit under a real systemd (issue 14, item 5):
#
#   sudo scripts/systemd-e2e.sh        (after `npm run build`: it installs this dist/)
#
# Builds a "host" image FROM node:24-trixie-slim with Debian's systemd,
# systemd-sysv, iproute2, etcd-server, etcd-client and iptables, into which
# systemd/install.sh installs flanneld-ts from this checkout's package.json,
# package-lock.json, bin/, dist/ and systemd/ (its npm ci gets the registry at
# build time, as the Dockerfile's does). On one internal Docker network it runs
#   <run>-etcd        etcd, holding the network config
#   <run>-h1, -h2     the image, --privileged, with /sbin/init (systemd) as PID 1
# and checks, on those hosts:
#   - `systemctl start flanneld-ts` returns only once subnet.env, flannel.1 and
#     every peer's route, neighbour and FDB entry exist (read at that instant);
#   - `systemctl status` shows the daemon's STATUS line;
#   - `systemctl restart` on h2 drops no ping between pods (a network namespace on
#     each host, wired to cni0 with a veth) on the two hosts, and keeps flannel.1's MAC;
#   - `journalctl` holds the daemon's JSON lines, and nothing else from it;
#   - the hardening takes effect: `systemd-analyze security` rates the running unit
#     3.5 or better, and the daemon runs with exactly CAP_NET_ADMIN and CAP_NET_RAW
#     (effective and bounding sets read from /proc/<pid>/status), no_new_privs and
#     a seccomp filter;
#   - a bad setting in /etc/default/flanneld-ts (exit 2) fails the unit once, with
#     the one-line error in the journal, and systemd does not restart it.
# Everything it made is removed on exit (the image is kept as a build cache;
# FLTS_E2E_RMI=1 removes it). A dockerd it started is stopped. Nothing is added to
# the machine's own namespaces but what dockerd itself adds when it starts.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
image=flanneld-ts-systemd-host:e2e
e2e_name=systemd-e2e
e2e_run_prefix=flts-sd
# shellcheck source=scripts/docker-lib.sh
source scripts/docker-lib.sh
[ -f dist/main.js ] || die "no dist/main.js: run npm run build first"

docker_lock
docker_engine_start

on() { # $1: host (h1, h2), then a shell command run there
  local host=$1
  shift
  d exec "$run_id-$host" sh -c "$*"
}

dump() {
  local h
  log "state at failure:"
  for h in h1 h2; do
    echo "=== $h"
    on "$h" 'systemctl status flanneld-ts --no-pager; cat /run/flannel/subnet.env; ip -br addr; ip route; ip neigh show dev flannel.1; bridge fdb show dev flannel.1; journalctl -u flanneld-ts --no-pager | tail -n 40' 2>&1 || true
  done
}

# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ "${hosts_up:-false}" = true ]; then dump >&2 || true; fi
  log "removing containers and network of $run_id"
  remove_labelled "$label"
  rm -rf "${context:-}"
  if [ "${FLTS_E2E_RMI:-}" = 1 ]; then d rmi -f "$image" >/dev/null 2>&1 || true; fi
  d image prune -f --filter label=flts.e2e.image >/dev/null 2>&1 || true
  docker_engine_stop
  if [ "$rc" -eq 0 ]; then log "PASS (${SECONDS}s)"; else log "FAIL (exit $rc, ${SECONDS}s)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

remove_labelled flts.e2e

# ---- image ---------------------------------------------------------------------
# What a release of flanneld-ts holds, without src/ (install.sh then installs this dist/).
context=$(mktemp -d /tmp/flts-systemd-e2e.XXXXXX)
cp -R package.json package-lock.json README.md bin dist systemd "$context/"
cat >"$context/Dockerfile" <<'EOF'
FROM node:24-trixie-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      systemd systemd-sysv iproute2 etcd-server etcd-client iptables iputils-ping \
 && rm -rf /var/lib/apt/lists/*
# etcd-server enables a local etcd on every host; the run has one etcd container instead.
RUN systemctl mask etcd.service
COPY . /usr/src/flanneld-ts
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; fi \
 && bash /usr/src/flanneld-ts/systemd/install.sh
STOPSIGNAL SIGRTMIN+3
ENV container=docker
CMD ["/sbin/init"]
EOF
log "building $image (systemd, etcd, iptables; systemd/install.sh of this dist/)"
d build -q "${docker_build_secret[@]}" --label flts.e2e.image=1 -t "$image" "$context" >/dev/null || die "docker build of the systemd host image failed"
log "image $image: Node.js $(d run --rm --entrypoint node "$image" --version)"

# ---- etcd and two hosts ---------------------------------------------------------
d network create --internal --label "$label" "$run_id" >/dev/null
d run -d --name "$run_id-etcd" --network "$run_id" --label "$label" --entrypoint etcd "$image" \
  --name e2e --data-dir /tmp/etcd \
  --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379 >/dev/null
etcd_ip=$(d inspect -f "{{(index .NetworkSettings.Networks \"$run_id\").IPAddress}}" "$run_id-etcd")
for _ in $(seq 100); do
  d exec "$run_id-etcd" etcdctl endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
d exec "$run_id-etcd" etcdctl put /coreos.com/network/config "$network_config" >/dev/null || die "etcd at $etcd_ip did not take the network config"

declare -A ip subnet mac pod
for h in h1 h2; do
  d run -d --name "$run_id-$h" --hostname "$h" --network "$run_id" --label "$label" \
    --privileged --sysctl net.ipv4.ip_forward=1 "$image" >/dev/null
done
hosts_up=true
for h in h1 h2; do
  state=''
  for _ in $(seq 120); do
    state=$(on "$h" 'systemctl is-system-running 2>/dev/null' || true)
    case $state in running | degraded) break ;; esac
    sleep 0.5
  done
  case $state in running | degraded) ;; *) die "$h: systemd did not finish booting (state: ${state:-none})" ;; esac
  [ "$(on "$h" 'cat /proc/1/comm')" = systemd ] || die "$h: PID 1 is not systemd"
  ip[$h]=$(d inspect -f "{{(index .NetworkSettings.Networks \"$run_id\").IPAddress}}" "$run_id-$h")
  on "$h" "printf 'FLANNELD_ETCD_ENDPOINTS=http://$etcd_ip:2379\nFLANNELD_IFACE=eth0\n' >/etc/default/flanneld-ts"
done
log "etcd at $etcd_ip; h1 ${ip[h1]} and h2 ${ip[h2]} booted systemd as PID 1"

# ---- start: returns once everything is in place ----------------------------------
on h1 'systemctl start flanneld-ts' || die "h1: systemctl start flanneld-ts failed"
on h1 'test -s /run/flannel/subnet.env && ip link show flannel.1 >/dev/null' || die "h1: no subnet.env or flannel.1 when systemctl start returned"
# h2 starts with h1 as its peer: its route, neighbour and FDB entry must exist when start returns.
at_start=$(on h2 'systemctl start flanneld-ts && cat /run/flannel/subnet.env && cat /sys/class/net/flannel.1/address && ip route show dev flannel.1 && ip neigh show dev flannel.1 && bridge fdb show dev flannel.1') ||
  die "h2: systemctl start flanneld-ts failed: $at_start"
for h in h1 h2; do
  env=$(on "$h" 'cat /run/flannel/subnet.env')
  s=$(sed -n 's/^FLANNEL_SUBNET=\([0-9.]*\)\.1\/24$/\1.0/p' <<<"$env")
  [ -n "$s" ] || die "$h: no FLANNEL_SUBNET=x.y.z.1/24 in subnet.env: $env"
  subnet[$h]=$s
  mac[$h]=$(on "$h" 'cat /sys/class/net/flannel.1/address')
done
grep -q "^${subnet[h1]}/24 via ${subnet[h1]} onlink" <<<"$at_start" || die "h2: no route to h1's ${subnet[h1]}/24 when start returned: $at_start"
grep -q "^${subnet[h1]} lladdr ${mac[h1]} PERMANENT" <<<"$at_start" || die "h2: no neighbour for h1 when start returned: $at_start"
grep -q "^${mac[h1]} dst ${ip[h1]} self permanent" <<<"$at_start" || die "h2: no FDB entry for h1 when start returned: $at_start"
ra=$(on h2 'cat /proc/sys/net/ipv6/conf/flannel.1/accept_ra')
[ "$ra" = 0 ] || die "h2: net.ipv6.conf.flannel.1.accept_ra is '$ra' under the unit's sandbox, not 0"
on h2 'journalctl _SYSTEMD_UNIT=flanneld-ts.service -o cat --no-pager' | grep -q 'accept_ra' && die "h2: the daemon logged an accept_ra failure under the unit's sandbox"
log "systemctl start returned with subnet.env, flannel.1 and the peer's route, neighbour and FDB entry in place (h1 ${subnet[h1]}/24, h2 ${subnet[h2]}/24)"

status=$(on h2 'systemctl status flanneld-ts --no-pager' || true)
grep -qF "Status: \"subnet ${subnet[h2]}/24, 1 peers programmed\"" <<<"$status" || die "h2: systemctl status shows no STATUS line: $status"
log "systemctl status: Status: \"subnet ${subnet[h2]}/24, 1 peers programmed\""

# ---- hardening -------------------------------------------------------------------
exposure=$(on h2 'systemd-analyze security flanneld-ts.service --no-pager' | sed -n 's/.*Overall exposure level for flanneld-ts.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || die "h2: systemd-analyze security printed no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 3.5) }' || die "h2: systemd-analyze security rates the running unit $exposure (> 3.5)"
pid=$(on h2 'systemctl show -p MainPID --value flanneld-ts')
proc=$(on h2 "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/$pid/status; readlink /proc/$pid/exe")
# CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
for want in 'CapEff:	0000000000003000' 'CapPrm:	0000000000003000' 'CapBnd:	0000000000003000' 'NoNewPrivs:	1' 'Seccomp:	2'; do
  grep -qF "$want" <<<"$proc" || die "h2: the daemon (pid $pid) does not have '$want': $proc"
done
grep -q '/node$' <<<"$proc" || die "h2: the unit's main process is not node: $proc"
log "hardening in effect: exposure $exposure; the daemon has only CAP_NET_ADMIN and CAP_NET_RAW, no_new_privs, seccomp"

# ---- journal ---------------------------------------------------------------------
journal=$(on h2 'journalctl _SYSTEMD_UNIT=flanneld-ts.service -o cat --no-pager')
# Every line the daemon wrote is one JSON object, and the ready line is among them.
d exec -i "$run_id-h2" node -e '
  const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
  const bad = lines.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
  if (bad.length || !lines.some((l) => JSON.parse(l).msg.startsWith("ready: "))) { console.error(bad.join("\n") || "no ready line"); process.exit(1); }
' <<<"$journal" || die "h2: journalctl -u flanneld-ts does not hold only the daemon's JSON lines with a ready line: $journal"
log "journalctl: $(grep -c . <<<"$journal") JSON lines from the daemon, ready among them"

# ---- pods, and a restart under traffic ------------------------------------------
for h in h1 h2; do
  base=${subnet[$h]%.0}
  pod[$h]=$base.2
  on "$h" "set -e
    ip link add cni0 type bridge && ip addr add $base.1/24 dev cni0 && ip link set cni0 up
    ip netns add pod && ip -n pod link set lo up
    ip link add vpod type veth peer name eth0 netns pod && ip link set vpod master cni0 up
    ip -n pod addr add ${pod[$h]}/24 dev eth0 && ip -n pod link set eth0 up && ip -n pod route add default via $base.1" ||
    die "$h: could not wire a pod to cni0"
done
on h1 "ip netns exec pod ping -n -q -c 3 -w 10 ${pod[h2]}" >/dev/null || die "the pod on h1 cannot ping the pod on h2 (${pod[h2]})"
log "pods ${pod[h1]} (h1) and ${pod[h2]} (h2) reach each other through flannel.1"

mac_before=${mac[h2]}
ping_out=$(mktemp)
on h1 "ip netns exec pod ping -n -q -i 0.2 -c 50 -W 2 ${pod[h2]}" >"$ping_out" 2>&1 &
ping_pid=$!
sleep 2
on h2 'systemctl restart flanneld-ts' || die "h2: systemctl restart flanneld-ts failed"
wait "$ping_pid" || true
result=$(cat "$ping_out")
rm -f "$ping_out"
grep -q '50 packets transmitted, 50 received' <<<"$result" || die "pings between the pods were lost across systemctl restart on h2: $result"
[ "$(on h2 'cat /sys/class/net/flannel.1/address')" = "$mac_before" ] || die "h2: flannel.1 changed its MAC across the restart"
log "systemctl restart on h2 under a ping of 50 packets: 0 lost; flannel.1 kept its MAC"

# ---- a bad setting is not restarted in a loop --------------------------------------
on h2 "sed -i 's|^FLANNELD_ETCD_ENDPOINTS=.*|FLANNELD_ETCD_ENDPOINTS=http://etcd:2379/v2|' /etc/default/flanneld-ts"
if on h2 'systemctl restart flanneld-ts' 2>/dev/null; then die "h2: systemctl restart succeeded with FLANNELD_ETCD_ENDPOINTS=http://etcd:2379/v2"; fi
# RestartSec=5: a restart, were there one, would have happened within 8 s.
sleep 8
show=$(on h2 'systemctl show -p ActiveState -p Result -p ExecMainStatus -p NRestarts flanneld-ts')
for want in ActiveState=failed ExecMainStatus=2 NRestarts=0; do
  grep -qx "$want" <<<"$show" || die "h2: after a bad setting the unit is not failed with exit 2 and no restart: $show"
done
on h2 'journalctl _SYSTEMD_UNIT=flanneld-ts.service -o cat --no-pager' | grep -q '^flanneld-ts: --etcd-endpoints: "http://etcd:2379/v2" is not an http(s)://host:port URL or host:port$' ||
  die "h2: the journal does not hold the one-line error naming --etcd-endpoints"
on h2 "sed -i 's|^FLANNELD_ETCD_ENDPOINTS=.*|FLANNELD_ETCD_ENDPOINTS=http://$etcd_ip:2379|' /etc/default/flanneld-ts && systemctl reset-failed flanneld-ts && systemctl start flanneld-ts" ||
  die "h2: did not start again with the setting fixed"
log "a bad setting: the unit failed once with exit 2 (NRestarts=0 after 8 s), the error in the journal; fixed, it starts again"
