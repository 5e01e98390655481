# flanneld-ts container image: node:24-trixie-slim with the compiled daemon,
# its production dependencies, iptables (for --ip-masq and the FORWARD rules)
# and iproute2 (`ip`/`bridge`, to look at what the daemon programmed).
#
#   docker build -t flanneld-ts .
#   docker run -d --name flanneld-ts --network host \
#     --cap-add NET_ADMIN --cap-add NET_RAW \
#     -v /run/flannel:/run/flannel \
#     flanneld-ts --etcd-endpoints http://10.0.0.5:2379 --ip-masq
#
# What it needs at run time (it runs as root inside the container, but needs no
# other privilege):
#   --network host (hostNetwork: true)  flannel.1, its routes, neighbours and FDB
#                                       entries and the iptables rules belong in
#                                       the node's own network namespace
#   CAP_NET_ADMIN                       rtnetlink (link, address, route, neighbour,
#                                       FDB) and iptables
#   CAP_NET_RAW                         iptables-legacy's raw socket
#   /run/flannel (read-write)           subnet.env for the CNI plugin
#   /run/xtables.lock (optional)        share the host's iptables lock when the
#                                       host uses iptables-legacy
# Not --privileged: Docker's default capability set plus the two above suffices.
#
# In this workplace's CI (no container registry) ../shared/tools/offline-docker.sh
# provides the node:24-trixie-slim base and the engine; npm inside the build
# then needs the machine's CA bundle, passed as a build secret:
#   DOCKER_BUILDKIT=1 docker build --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt -t flanneld-ts .
# On a normal machine the secret is simply absent (required=false) and npm uses
# Node's own CA store.

# ---- build: all dependencies, TypeScript -> dist/ ------------------------------
FROM node:24-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would run tsc before the sources are here, and no
# dependency needs an install script (netlink loads its prebuilt binding).
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; fi \
 && npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- cni: the reference CNI plugins the kind DaemonSet installs on nodes --------
# Debian's containernetworking-plugins; only the four a flannel-style pod network
# uses (kind's node image has no `bridge`). See e2e-kind/README section.
FROM node:24-trixie-slim AS cni
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containernetworking-plugins \
 && mkdir -p /cni \
 && cp /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap /cni/

# ---- runtime: production dependencies only --------------------------------------
# setpriv, which makes the kernel watch's `ip monitor` die with the daemon, is in
# util-linux: essential, so already in the base image.
FROM node:24-trixie-slim AS runtime
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iptables nftables iproute2 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
WORKDIR /opt/flanneld-ts
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; fi \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=cni /cni /opt/flanneld-ts/cni/bin
COPY bin ./bin
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production
ENTRYPOINT ["/opt/flanneld-ts/bin/flanneld-ts"]
