#!/usr/bin/env bash
# flanneld-ts as the pod network of a kind cluster, end to end:
#
#   e2e-kind/run.sh            create the cluster, build and load the image, apply,
#                              check nginx1 -> nginx2 across nodes, delete the cluster
#   KEEP=1 e2e-kind/run.sh     leave the cluster up to look around
#                              (kind delete cluster --name flts-kind when done)
#
# Needs docker, kind (v0.26+) and kubectl, and a machine that can pull kind's node
# image and nginx:1.27-alpine. The overlay's etcd runs the etcd image kubeadm
# already put on the nodes: read from the control-plane node (`kubeadm config
# images list`) and rendered into the manifest, whatever Kubernetes that kind ships. (This workplace's machines reach no container registry,
# so kind cannot start on them: CI validates the manifests and shellchecks this
# script instead, see test/unit/kind-manifests.test.ts.)
#
# The manifests are generated from e2e-kind/manifests.ts (typed models); the YAML
# files beside this script are the rendering that gets applied.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=e2e-kind/kind-lib.sh
source e2e-kind/kind-lib.sh
here=e2e-kind
cluster=${CLUSTER:-flts-kind}
image=flanneld-ts:dev
ctx="kind-$cluster"

log() { printf '[%4ds] kind-e2e: %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "FAIL: $*"
  exit 1
}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
k() { kubectl --context "$ctx" "$@"; }

# Preflight, before anything is created.
kind_inotify_ok "$(sysctl -n fs.inotify.max_user_instances)" "$(sysctl -n fs.inotify.max_user_watches)" || die "inotify limits too low (see above)"
# A cluster of that name (e.g. one kept by KEEP=1) is never ours to create or delete.
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  die "a kind cluster named $cluster exists already (kept by an earlier KEEP=1 run?): delete it (kind delete cluster --name $cluster) or pick another name (CLUSTER=…)"
fi
created=false
work=$(mktemp -d)

dump() {
  k get nodes -o wide || true
  k -n flanneld-ts get pods -o wide || true
  k -n flanneld-ts logs daemonset/flanneld-ts -c flanneld-ts --tail=50 || true
  k get pods -o wide || true
  local node
  for node in $(kind get nodes --name "$cluster" 2>/dev/null); do
    echo "=== $node"
    docker exec "$node" sh -c 'cat /run/flannel/subnet.env; ip -d link show flannel.1; ip route; bridge fdb show dev flannel.1; cat /etc/cni/net.d/10-flanneld-ts.conflist' || true
  done
}

# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ "$created" = true ]; then dump >&2 || true; fi
  rm -rf "$work"
  # Only a cluster this run created is deleted (a failed `kind create` removes its own nodes).
  if [ "$created" = true ] && [ "${KEEP:-}" = 1 ]; then
    log "cluster $cluster kept (kind delete cluster --name $cluster)"
  elif [ "$created" = true ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  if [ "$rc" -eq 0 ]; then log PASS; else log "FAIL (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT

log "creating kind cluster $cluster (no default CNI)"
kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --wait 0s
created=true
log "building $image"
docker build -t "$image" .
# `kind load docker-image` fails with Docker's containerd image store (the default
# of fresh Docker Engine 29 installs; kind issue 3795): load an archive of the
# node's platform instead.
arch=$(docker version -f '{{.Server.Arch}}')
platform=()
if docker save --help 2>/dev/null | grep -q -- '--platform'; then platform=(--platform "linux/$arch"); fi
docker save "${platform[@]}" -o "$work/image.tar" "$image"
kind load image-archive "$work/image.tar" --name "$cluster"

# The etcd image kubeadm put on the nodes of this kind's Kubernetes (no pull needed).
etcd_image=$(docker exec "$cluster-control-plane" kubeadm config images list --config /kind/kubeadm.conf 2>/dev/null | kind_etcd_image) ||
  die "could not read the etcd image from $cluster-control-plane (kubeadm config images list)"
kind_render_etcd_image "$etcd_image" <"$here/flanneld-ts.yaml" >"$work/flanneld-ts.yaml"
log "applying $here/flanneld-ts.yaml with etcd $etcd_image"
k apply -f "$work/flanneld-ts.yaml"
k -n flanneld-ts rollout status deployment/flanneld-ts-etcd --timeout=180s
k -n flanneld-ts wait --for=condition=complete job/flanneld-ts-network-config --timeout=180s
k -n flanneld-ts rollout status daemonset/flanneld-ts --timeout=300s
k wait --for=condition=Ready node --all --timeout=180s
log "nodes Ready with flanneld-ts as their pod network"

for node in $(kind get nodes --name "$cluster"); do
  docker exec "$node" ip -d link show flannel.1 | grep -q 'vxlan id 1 ' || die "$node has no flannel.1"
  docker exec "$node" test -s /etc/cni/net.d/10-flanneld-ts.conflist || die "$node has no CNI config"
done

log "deploying nginx1 and nginx2 on different nodes"
k apply -f "$here/test-pods.yaml"
k wait --for=condition=Ready pod/nginx1 pod/nginx2 --timeout=300s
ip1=$(k get pod nginx1 -o jsonpath='{.status.podIP}')
ip2=$(k get pod nginx2 -o jsonpath='{.status.podIP}')
node1=$(k get pod nginx1 -o jsonpath='{.spec.nodeName}')
node2=$(k get pod nginx2 -o jsonpath='{.spec.nodeName}')
log "nginx1 $ip1 on $node1, nginx2 $ip2 on $node2"
[ "$node1" != "$node2" ] || die "both pods landed on $node1"
case "$ip1 $ip2" in 10.244.*" "10.244.*) ;; *) die "pod IPs $ip1 $ip2 are not in 10.244.0.0/16" ;; esac

k exec nginx1 -- ping -c 3 -W 2 "$ip2" || die "nginx1 cannot ping nginx2"
k exec nginx2 -- ping -c 3 -W 2 "$ip1" || die "nginx2 cannot ping nginx1"
k exec nginx1 -- wget -q -T 5 -O - "http://$ip2/" | grep -q 'Welcome to nginx' || die "nginx1 cannot fetch nginx2's page"
log "nginx1 <-> nginx2 across nodes: ping and HTTP ok"

# The daemon's own view: every node's flannel.1 has a route to each other node's subnet.
nodes=$(kind get nodes --name "$cluster" | wc -l)
for node in $(kind get nodes --name "$cluster"); do
  n=$(docker exec "$node" ip route show dev flannel.1 | grep -c onlink || true)
  [ "$n" -eq $((nodes - 1)) ] || die "$node has $n flannel.1 routes, want $((nodes - 1))"
done
log "every node programs $((nodes - 1)) peers"
