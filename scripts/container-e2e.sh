#!/usr/bin/env bash
# Container end to end: proves the image, not just the code (issue 5, item 3).
#
#   sudo scripts/container-e2e.sh
#
# With a Docker engine (the running one, else ../shared/tools/offline-docker.sh
# starts one: this workplace's machines reach no container registry), it builds
# the flanneld-ts image from the Dockerfile and a test-tools image (etcd, ping,
# the image's own CNI plugins), then on one internal Docker network runs
#   <run>-etcd        etcd, holding the network config
#   <run>-n1 … n3     "nodes": each owns a network namespace on the network and
#                     plays kubelet and the container runtime (CAP_SYS_ADMIN): it writes
#                     the CNI config with e2e-kind/flanneld-ts-cni.sh from the node's
#                     subnet.env and wires a pod namespace with the real
#                     bridge/host-local plugins
#   <run>-d1 … d3     the flanneld-ts image on each node's network namespace, as a
#                     hostNetwork DaemonSet pod runs: --ip-masq, only CAP_NET_ADMIN
#                     and CAP_NET_RAW (--cap-drop ALL), not privileged
# and checks what a Kubernetes node would need: subnet.env, flannel.1, one route,
# neighbour and FDB entry per peer, the ip-masq and forward chains, pod-to-pod
# ping across nodes through flannel.1, a pod reaching a non-overlay address from
# the node's address (masqueraded), and a daemon restart that keeps
# its subnet (the daemon's container restarts; the node's namespace stays, as a
# host's does). Everything it made is removed on exit (images are kept as a build
# cache; FLTS_E2E_RMI=1 removes them too). A dockerd it started is stopped.
#
# It adds no iptables rule and no interface to the machine's own namespace:
# everything runs inside containers. (dockerd itself adds its usual rules there
# when it starts: that is the engine's business.) The network is --internal, so
# no packet of the test can leave the machine.
#
# Env: FLTS_E2E_NODES (2 or 3, default 3), FLTS_E2E_RMI=1, DOCKER (client path).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
nodes=${FLTS_E2E_NODES:-3}
image=flanneld-ts:e2e
tools_image=flanneld-ts-e2e-tools:latest
e2e_name=container-e2e
e2e_run_prefix=flts-e2e
# shellcheck source=scripts/docker-lib.sh
source scripts/docker-lib.sh
case $nodes in 2 | 3) ;; *) die "FLTS_E2E_NODES must be 2 or 3, not $nodes" ;; esac

docker_lock

# ---- engine --------------------------------------------------------------------
docker_engine_start

dump() {
  local i
  log "state at failure:"
  for i in $(seq "$nodes"); do
    echo "=== node n$i"
    d exec "$run_id-n$i" sh -c 'cat /run/flannel/subnet.env; ip -br addr; ip -d link show flannel.1; ip route; ip neigh show dev flannel.1; bridge fdb show dev flannel.1' 2>&1 || true
    d exec "$run_id-d$i" sh -c 'iptables -t nat -S; iptables -S' 2>&1 || true
    echo "--- logs of $run_id-d$i"
    d logs "$run_id-d$i" 2>&1 | tail -n 40 || true
  done
  echo "--- logs of $run_id-etcd"
  d logs "$run_id-etcd" 2>&1 | tail -n 20 || true
}

# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ "${cluster_up:-false}" = true ]; then dump >&2 || true; fi
  log "removing containers, network and volumes of $run_id"
  remove_labelled "$label"
  if [ "${FLTS_E2E_RMI:-}" = 1 ]; then d rmi -f "$image" "$tools_image" >/dev/null 2>&1 || true; fi
  d image prune -f --filter label=flts.e2e.image >/dev/null 2>&1 || true
  docker_engine_stop
  if [ "$rc" -eq 0 ]; then log "PASS (${SECONDS}s)"; else log "FAIL (exit $rc, ${SECONDS}s)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

remove_labelled flts.e2e

# What of flannel this machine's own namespace holds (normally nothing): compared
# at the end, so a daemon that ran in the host namespace by mistake fails the test.
host_overlay_state() {
  ip -o link show 2>/dev/null | grep -oE ' flannel\.[0-9]+[:@]' || true
  { iptables-save 2>/dev/null || true; } | grep -iE 'flannel' | sed 's/\[[0-9:]*\]//' || true
}
host_before=$(host_overlay_state)

# ---- images --------------------------------------------------------------------
log "building $image from the Dockerfile"
d build -q "${docker_build_secret[@]}" --label flts.e2e.image=1 -t "$image" "$repo" >/dev/null || die "docker build of the Dockerfile failed"
log "building $tools_image (etcd, ping, the image's CNI plugins)"
# Debian packages first (cached across runs), then the plugins from the image under test.
d build -q --label flts.e2e.image=1 -t "$tools_image" - >/dev/null <<EOF || die "docker build of the test tools image failed"
FROM node:24-trixie-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      etcd-server etcd-client iproute2 iputils-ping && rm -rf /var/lib/apt/lists/*
COPY --from=$image /opt/flanneld-ts/cni/bin /opt/cni/bin
EOF
size=$(d image inspect -f '{{.Size}}' "$image")
log "image $image: $((size / 1000000)) MB"

# ---- cluster -------------------------------------------------------------------
d network create --internal --label "$label" "$run_id" >/dev/null
cluster_up=true
d run -d --name "$run_id-etcd" --network "$run_id" --label "$label" --entrypoint etcd "$tools_image" \
  --name e2e --data-dir /tmp/etcd \
  --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379 >/dev/null
etcd_ip=$(d inspect -f "{{(index .NetworkSettings.Networks \"$run_id\").IPAddress}}" "$run_id-etcd")
for _ in $(seq 50); do
  d exec "$run_id-etcd" etcdctl endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
d exec "$run_id-etcd" etcdctl put /coreos.com/network/config "$network_config" >/dev/null || die "etcd at $etcd_ip did not take the network config"
log "etcd at $etcd_ip holds the network config"

start_node() { # $1: node number
  # The node: its namespace, and the kubelet/CNI role. Not --privileged: `docker
  # exec` into a privileged container fails on these VMs (offline-docker.sh drops
  # CAP_SYS_RESOURCE for `run` only), so just what `ip netns add` and the plugins need.
  d run -d --name "$run_id-n$1" --hostname "n$1" --network "$run_id" --label "$label" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --sysctl net.ipv4.ip_forward=1 \
    --mount "type=volume,src=$run_id-n$1,dst=/run/flannel,readonly,volume-label=$label" \
    --mount "type=bind,src=$repo/e2e-kind/flanneld-ts-cni.sh,dst=/flanneld-ts-cni.sh,readonly" \
    --entrypoint sleep "$tools_image" infinity >/dev/null
  start_daemon "$1"
}

start_daemon() { # $1: node number
  d run -d --name "$run_id-d$1" --network "container:$run_id-n$1" --label "$label" \
    --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW \
    --mount "type=volume,src=$run_id-n$1,dst=/run/flannel" \
    "$image" --etcd-endpoints "http://$etcd_ip:2379" --ip-masq >/dev/null
}

wait_ready() { # $1: container; waits for the daemon's "ready" log line after $2 earlier ones
  local c=$1 before=${2:-0} n
  for _ in $(seq 150); do
    n=$(d logs "$c" 2>&1 | grep -c '"msg":"ready: ' || true)
    [ "$n" -gt "$before" ] && return 0
    [ "$(d inspect -f '{{.State.Running}}' "$c")" = true ] || die "$c exited: $(d logs "$c" 2>&1 | tail -n 5)"
    sleep 0.2
  done
  die "$c did not log ready within 30 s"
}

node_ip=() subnet=() gw=() mac=()
for i in $(seq "$nodes"); do start_node "$i"; done
for i in $(seq "$nodes"); do
  c="$run_id-n$i"
  wait_ready "$run_id-d$i"
  node_ip[i]=$(d inspect -f "{{(index .NetworkSettings.Networks \"$run_id\").IPAddress}}" "$c")
  env=$(d exec "$c" cat /run/flannel/subnet.env)
  grep -qxE 'FLANNEL_NETWORK=10\.7\.0\.0/16' <<<"$env" || die "$c: subnet.env has no FLANNEL_NETWORK=10.7.0.0/16: $env"
  grep -qxE 'FLANNEL_MTU=1450' <<<"$env" || die "$c: subnet.env MTU is not 1450: $env"
  grep -qxE 'FLANNEL_IPMASQ=true' <<<"$env" || die "$c: subnet.env says no ip-masq: $env"
  s=$(sed -n 's/^FLANNEL_SUBNET=\([0-9.]*\)\.1\/24$/\1.0/p' <<<"$env")
  [ -n "$s" ] || die "$c: no FLANNEL_SUBNET=x.y.z.1/24 in subnet.env: $env"
  subnet[i]="$s/24" gw[i]=$s
  mac[i]=$(d exec "$c" cat /sys/class/net/flannel.1/address)
  log "n$i: ${node_ip[i]}, subnet ${subnet[i]}, VTEP MAC ${mac[i]}"
done
[ "$(printf '%s\n' "${subnet[@]}" | sort -u | wc -l)" -eq "$nodes" ] || die "subnets are not distinct: ${subnet[*]}"

# ---- kernel state of every node --------------------------------------------------
for i in $(seq "$nodes"); do
  c="$run_id-n$i"
  # Until every peer is programmed a ping could take the default route.
  for _ in $(seq 100); do
    [ "$(d exec "$c" ip route show dev flannel.1 | grep -c onlink)" -eq $((nodes - 1)) ] && break
    sleep 0.1
  done
  link=$(d exec "$c" ip -d link show flannel.1)
  # Each part on its own: iproute2 6.15 (trixie) prints nolearning after ttl and ageing, 6.1 right after dstport.
  { grep -q "vxlan id 1 local ${node_ip[i]} dev eth0 .*dstport 8472 " <<<"$link" && grep -q ' nolearning ' <<<"$link"; } || die "$c: flannel.1 is not vxlan id 1 local ${node_ip[i]} dev eth0 dstport 8472 nolearning: $link"
  grep -q 'mtu 1450 ' <<<"$link" || die "$c: flannel.1 MTU is not 1450: $link"
  # ip pads some lines with a trailing space.
  routes=$(d exec "$c" ip route show dev flannel.1 | sed 's/ *$//' | sort)
  neigh=$(d exec "$c" ip neigh show dev flannel.1 | sed 's/ *$//' | sort)
  fdb=$(d exec "$c" bridge fdb show dev flannel.1 | sed 's/ *$//' | sort)
  want_routes='' want_neigh='' want_fdb=''
  for j in $(seq "$nodes"); do
    [ "$j" -eq "$i" ] && continue
    want_routes+="${subnet[j]} via ${gw[j]} onlink"$'\n'
    want_neigh+="${gw[j]} lladdr ${mac[j]} PERMANENT"$'\n'
    want_fdb+="${mac[j]} dst ${node_ip[j]} self permanent"$'\n'
  done
  [ "$routes" = "$(sort <<<"${want_routes%$'\n'}")" ] || die "$c: routes on flannel.1 are"$'\n'"$routes"$'\n'"want"$'\n'"$want_routes"
  [ "$neigh" = "$(sort <<<"${want_neigh%$'\n'}")" ] || die "$c: neighbours on flannel.1 are"$'\n'"$neigh"$'\n'"want"$'\n'"$want_neigh"
  [ "$fdb" = "$(sort <<<"${want_fdb%$'\n'}")" ] || die "$c: FDB of flannel.1 is"$'\n'"$fdb"$'\n'"want"$'\n'"$want_fdb"
  masq=$(d exec "$run_id-d$i" iptables -t nat -S FLANNEL-POSTRTG)
  grep -qxF -- "-A FLANNEL-POSTRTG -s 10.7.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully" <<<"$masq" || die "$c: no MASQUERADE rule in FLANNEL-POSTRTG: $masq"
  d exec "$run_id-d$i" iptables -t nat -S POSTROUTING | grep -qxF -- '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' || die "$c: POSTROUTING does not jump to FLANNEL-POSTRTG"
  d exec "$run_id-d$i" iptables -S FLANNEL-FWD | grep -qxF -- '-A FLANNEL-FWD -s 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT' || die "$c: no FLANNEL-FWD accept rule"
done
log "every node: flannel.1, one route, neighbour and FDB entry per peer, masq and forward chains"
# The image's runtime and the iptables backend Debian's iptables selects there:
# the rules above must be in nf_tables, with nothing of ours in the legacy tables.
runtime=$(d exec "$run_id-d1" node --version)
[ "${runtime%%.*}" = v24 ] || die "the image runs Node.js $runtime, not 24"
backend=$(d exec "$run_id-d1" iptables -V)
grep -q '(nf_tables)' <<<"$backend" || die "the image's iptables is not the nf_tables backend: $backend"
legacy=$(d exec "$run_id-d1" iptables-legacy-save 2>&1 || true)
if grep -q FLANNEL <<<"$legacy"; then die "flannel rules in the legacy tables: $legacy"; fi
log "image: Node.js $runtime, $backend; the rules are in nf_tables, none in the legacy tables"

# ---- pods ------------------------------------------------------------------------
pod_ip=()
for i in $(seq "$nodes"); do
  n="$run_id-n$i"
  # What kubelet and the container runtime do for a pod: the CNI config from
  # subnet.env (the kind DaemonSet's script), a network namespace, CNI ADD.
  d exec -i "$n" sh -s >/dev/null <<'EOF' || die "$n: CNI ADD for a pod failed"
set -eu
ONESHOT=1 CNI_CONF=/etc/cni/net.d/10-flanneld-ts.conflist sh /flanneld-ts-cni.sh config
ip netns add pod
ip -n pod link set lo up
node -e 'const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  process.stdout.write(JSON.stringify({ ...l.plugins[0], name: l.name, cniVersion: l.cniVersion }));' /etc/cni/net.d/10-flanneld-ts.conflist |
  CNI_COMMAND=ADD CNI_CONTAINERID=pod CNI_NETNS=/var/run/netns/pod CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin /opt/cni/bin/bridge
EOF
  pod_ip[i]=$(d exec "$n" ip -n pod -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')
  case ${pod_ip[i]} in "${gw[i]%.0}".*) ;; *) die "$n: pod address ${pod_ip[i]} is not in ${subnet[i]}" ;; esac
done
log "pods: ${pod_ip[*]}"

ping_from() { # $1: node number, $2: address
  d exec "$run_id-n$1" ip netns exec pod ping -n -q -i 0.2 -c 3 -w 10 "$2" >/dev/null
}
for j in $(seq 2 "$nodes"); do
  ping_from 1 "${pod_ip[j]}" || die "pod on n1 cannot ping the pod on n$j (${pod_ip[j]})"
  ping_from "$j" "${pod_ip[1]}" || die "pod on n$j cannot ping the pod on n1 (${pod_ip[1]})"
done
log "pod-to-pod ping across nodes through flannel.1: ok"
# Outside the overlay: a UDP listener in etcd's container (not a node, no route
# to 10.7.0.0/16) records the source address of a datagram from n1's pod. With
# --ip-masq FLANNEL-POSTRTG masquerades it, so it must arrive from n1's address.
d exec -d "$run_id-etcd" node -e '
  const s = require("dgram").createSocket("udp4");
  s.on("message", (m, r) => require("fs").writeFileSync("/tmp/peer", r.address));
  s.bind(9999);'
seen=''
for _ in $(seq 30); do
  d exec "$run_id-n1" ip netns exec pod node -e '
    const s = require("dgram").createSocket("udp4");
    s.send("hello", 9999, process.argv[1], () => s.close());' "$etcd_ip"
  seen=$(d exec "$run_id-etcd" cat /tmp/peer 2>/dev/null || true)
  [ -n "$seen" ] && break
  sleep 0.2
done
[ "$seen" = "${node_ip[1]}" ] || die "a datagram from n1's pod (${pod_ip[1]}) to $etcd_ip arrived from '${seen:-nothing}', not from n1's address ${node_ip[1]}"
ping_from 1 "$etcd_ip" || die "pod on n1 cannot ping $etcd_ip outside the overlay"
log "pod to an address outside the overlay: arrives from the node's address ${node_ip[1]} (ip-masq)"

# ---- restart -----------------------------------------------------------------------
last="$run_id-d$nodes"
t_stop=$SECONDS
d stop -t 10 "$last" >/dev/null
code=$(d inspect -f '{{.State.ExitCode}}' "$last")
[ "$code" -eq 0 ] || die "$last exited with $code on SIGTERM, not 0"
[ $((SECONDS - t_stop)) -le 3 ] || die "$last took $((SECONDS - t_stop)) s to stop on SIGTERM"
ping_from 1 "${pod_ip[nodes]}" || die "traffic to n$nodes's pod stopped while its daemon was stopped"
d start "$last" >/dev/null
wait_ready "$last" 1
d exec "$run_id-n$nodes" grep -qx "FLANNEL_SUBNET=${gw[nodes]%.0}.1/24" /run/flannel/subnet.env || die "n$nodes came back with another subnet"
ping_from 1 "${pod_ip[nodes]}" || die "pod on n1 cannot ping n$nodes's pod after its daemon restarted"
log "SIGTERM exits 0 leaving the data path up; the restarted daemon keeps its subnet"

[ "$(host_overlay_state)" = "$host_before" ] || die "the machine's own namespace gained flannel state during the run:"$'\n'"$(host_overlay_state)"
log "nothing of flannel in the machine's own namespace"
