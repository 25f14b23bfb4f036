# Sourced by the real-node scripts: the node's network plan and small helpers.
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/lib.sh"

# The pod network exists only on this machine: a bridge with a private range that no
# other host knows, reached by nothing outside (see net.sh for the rules that hold it).
# The ranges are far from Kubernetes' defaults so that they cannot meet a real network
# that some other tool set up here.
RN_BRIDGE="${RN_BRIDGE:-dispatch0}"
RN_HOST_IP="10.213.0.1"       # the bridge's host address: apiserver, kubelet, model server
RN_POD_CIDR="10.213.0.0/24"   # this node's pods (host-local IPAM)
RN_POD_SUPERNET="10.213.0.0/16"
RN_SERVICE_CIDR="10.214.0.0/16"
RN_NODE_NAME="dispatch-node"
RN_RULE_COMMENT="dispatch-real-node: pod traffic never leaves this machine"
# One real node at a time on a machine: the bridge, the ports and the iptables rules are
# global. Everything that sets up or tears down takes this lock.
RN_LOCK="${DISPATCH_CACHE}/real-node.lock"

rn_log() { printf '[real-node] %s\n' "$*" >&2; }

# iptables and ip6tables, same arguments.
ipt_both() {
  iptables "$@"
  ip6tables "$@"
}
