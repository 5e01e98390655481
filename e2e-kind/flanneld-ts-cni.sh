#!/bin/sh
# CNI wiring for flanneld-ts nodes, run from the DaemonSet (e2e-kind/) and by
# scripts/container-e2e.sh. No `flannel` CNI binary is needed: this writes the
# very config the flannel CNI plugin would hand to its `bridge` delegate
# (flannel-io/cni-plugin flannel_linux.go: bridge cni0, isGateway, ipMasq =
# !FLANNEL_IPMASQ, mtu = FLANNEL_MTU, host-local over FLANNEL_SUBNET with a
# route to FLANNEL_NETWORK, plus kube-flannel.yml's hairpinMode and
# isDefaultGateway), followed by portmap, as a conflist.
#
#   flanneld-ts-cni.sh install-plugins   copy bridge, host-local, loopback, portmap
#                                        from $PLUGIN_SRC to $CNI_BIN_DIR where missing
#   flanneld-ts-cni.sh config            write $CNI_CONF from $SUBNET_ENV, then rewrite it
#                                        whenever subnet.env changes (checked every
#                                        $INTERVAL s); ONESHOT=1 writes once and exits,
#                                        1 when subnet.env is missing or invalid
#
# subnet.env is read as the flannel plugin reads it: each line split at the first
# "=", values verbatim, the last of a repeated key wins.
set -eu

SUBNET_ENV=${SUBNET_ENV:-/run/flannel/subnet.env}
CNI_CONF=${CNI_CONF:-/etc/cni/net.d/10-flanneld-ts.conflist}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
PLUGIN_SRC=${PLUGIN_SRC:-/opt/flanneld-ts/cni/bin}
INTERVAL=${INTERVAL:-5}

log() { printf 'flanneld-ts-cni: %s\n' "$*" >&2; }

# 10.7.5.1/24 -> 10.7.5.0/24 (host bits cleared, as Go's net.ParseCIDR returns it).
masked() {
  case $1 in
    *[!0-9./]* | */*/* | '') return 1 ;;
    */*) ;;
    *) return 1 ;;
  esac
  len=${1#*/}
  [ -n "$len" ] && [ "$len" -le 32 ] || return 1
  old_ifs=$IFS
  IFS=.
  # shellcheck disable=SC2086 # split the dotted quad into $1..$4
  set -- ${1%/*}
  IFS=$old_ifs
  [ "$#" -eq 4 ] || return 1
  for o in "$@"; do [ -n "$o" ] && [ "$o" -le 255 ] || return 1; done
  n=$((($1 << 24) | ($2 << 16) | ($3 << 8) | $4))
  if [ "$len" -eq 0 ]; then n=0; else n=$((n & ((0xffffffff << (32 - len)) & 0xffffffff))); fi
  printf '%d.%d.%d.%d/%d\n' $(((n >> 24) & 255)) $(((n >> 16) & 255)) $(((n >> 8) & 255)) $((n & 255)) "$len"
}

# Prints the conflist for the subnet.env on stdin; fails naming the bad or missing key.
render() {
  network='' subnet='' mtu='' ipmasq='' seen=''
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in *=*) ;; *) continue ;; esac
    value=${line#*=}
    seen="$seen ${line%%=*}"
    case ${line%%=*} in
      FLANNEL_NETWORK) network=$value ;;
      FLANNEL_SUBNET) subnet=$value ;;
      FLANNEL_MTU) mtu=$value ;;
      FLANNEL_IPMASQ) ipmasq=$value ;;
    esac
  done
  for key in FLANNEL_NETWORK FLANNEL_SUBNET FLANNEL_MTU FLANNEL_IPMASQ; do
    case "$seen " in *" $key "*) ;; *) log "subnet.env is missing $key"; return 1 ;; esac
  done
  net=$(masked "$network") || { log "FLANNEL_NETWORK: invalid CIDR \"$network\""; return 1; }
  sn=$(masked "$subnet") || { log "FLANNEL_SUBNET: invalid CIDR \"$subnet\""; return 1; }
  case $mtu in '' | *[!0-9]*) log "FLANNEL_MTU: invalid number \"$mtu\""; return 1 ;; esac
  # flannel masquerades itself with --ip-masq; otherwise the bridge plugin should.
  if [ "$ipmasq" = true ]; then bridge_masq=false; else bridge_masq=true; fi
  cat <<JSON
{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "hairpinMode": true,
      "isDefaultGateway": true,
      "isGateway": true,
      "ipMasq": $bridge_masq,
      "mtu": $mtu,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$sn" }]],
        "routes": [{ "dst": "$net" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
}

# Writes $CNI_CONF atomically when its content would change; 1 when subnet.env is missing or bad.
write_config() {
  [ -r "$SUBNET_ENV" ] || { log "waiting for $SUBNET_ENV"; return 1; }
  conf=$(render <"$SUBNET_ENV") || return 1
  if [ -f "$CNI_CONF" ] && [ "$(cat "$CNI_CONF")" = "$conf" ]; then return 0; fi
  mkdir -p "$(dirname "$CNI_CONF")"
  printf '%s\n' "$conf" >"$CNI_CONF.tmp.$$"
  mv -f "$CNI_CONF.tmp.$$" "$CNI_CONF"
  log "wrote $CNI_CONF for $(grep '^FLANNEL_SUBNET=' "$SUBNET_ENV" | tail -n 1)"
}

install_plugins() {
  mkdir -p "$CNI_BIN_DIR"
  for p in bridge host-local loopback portmap; do
    if [ -x "$CNI_BIN_DIR/$p" ]; then
      log "$CNI_BIN_DIR/$p is there; kept"
    else
      # Copy then rename: a plugin being executed must never be half written.
      cp "$PLUGIN_SRC/$p" "$CNI_BIN_DIR/.$p.tmp"
      chmod 0755 "$CNI_BIN_DIR/.$p.tmp"
      mv -f "$CNI_BIN_DIR/.$p.tmp" "$CNI_BIN_DIR/$p"
      log "installed $CNI_BIN_DIR/$p"
    fi
  done
}

case ${1:-} in
  install-plugins) install_plugins ;;
  config)
    if [ -n "${ONESHOT:-}" ]; then
      write_config
      exit
    fi
    trap 'exit 0' TERM INT
    while :; do
      write_config || true
      sleep "$INTERVAL"
    done
    ;;
  render) render ;;
  *)
    echo "usage: $0 install-plugins|config|render" >&2
    exit 2
    ;;
esac
