#!/bin/bash
# podnet: the node image's pod network (kindnetd, kind's own CNI daemon, is an image we
# cannot pull offline). On each node it writes a bridge + host-local CNI config for the
# node's spec.podCIDR and keeps one route per peer node's podCIDR via that node's
# InternalIP, which is all a flat multi-node kind network needs.
#
# It also installs two guards first, before anything else runs, because pod or Service
# traffic that is not routed inside the node would otherwise follow the node's default
# route through the Docker bridge and off the machine (shared/facts/offline-kind.md §4.4):
#   - an `unreachable` route for the whole pod subnet (more specific per-node routes win);
#   - REJECT for the Service subnet in OUTPUT/FORWARD (filter runs after kube-proxy's DNAT,
#     so Service traffic that was translated to a pod IP is unaffected).
set -u
KUBECONFIG_FILE=/etc/kubernetes/kubelet.conf
NODE=$(hostname)
CONF=/etc/cni/net.d/10-podnet.conflist

subnet() { # $1 = podSubnet|serviceSubnet, $2 = default
  local v
  v=$(sed -n "s/^ *$1: *\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" /kind/kubeadm.conf 2>/dev/null | head -1)
  echo "${v:-$2}"
}

guard() {
  ip route replace unreachable "$(subnet podSubnet 10.244.0.0/16)" 2>/dev/null
  local svc ch
  svc=$(subnet serviceSubnet 10.96.0.0/16)
  for ch in OUTPUT FORWARD; do
    iptables -C "$ch" -d "$svc" -j REJECT 2>/dev/null || iptables -I "$ch" -d "$svc" -j REJECT
  done
}

write_conf() { # $1 = this node's podCIDR
  grep -q "\"$1\"" "$CONF" 2>/dev/null && return
  mkdir -p "$(dirname "$CONF")"
  cat > "$CONF.tmp" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "podnet",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$1"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  mv "$CONF.tmp" "$CONF"
  echo "podnet: wrote $CONF for podCIDR $1"
}

# One line per node: name podCIDR InternalIP (a watch prints objects, a get prints a list).
NODE_JSONPATH='{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}'
LIST_JSONPATH="{range .items[*]}$NODE_JSONPATH{end}"

sync_routes() {
  while read -r name cidr ip; do
    [ -n "$name" ] && [ -n "$cidr" ] || continue
    if [ "$name" = "$NODE" ]; then
      write_conf "$cidr"
    elif [ -n "$ip" ]; then
      ip route replace "$cidr" via "$ip" 2>/dev/null
    fi
  done
}

guard
while true; do
  guard
  if [ -f "$KUBECONFIG_FILE" ]; then
    kubectl --kubeconfig="$KUBECONFIG_FILE" get nodes -o "jsonpath=$LIST_JSONPATH" 2>/dev/null | sync_routes
    # Then follow changes instead of polling: a sandbox's node set rarely changes, and a
    # kubectl process every few seconds on every node costs real CPU on a laptop.
    kubectl --kubeconfig="$KUBECONFIG_FILE" get nodes --watch --output-watch-events=false \
      -o "jsonpath=$NODE_JSONPATH" --request-timeout=0 2>/dev/null | sync_routes
  fi
  sleep 3
done
