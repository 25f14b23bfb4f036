#!/usr/bin/env bash
# The real node's network, set up before any pod exists and taken down after the last:
#
#   net.sh up      rules and routes first, then the bridge
#   net.sh down    removes all of it and restores the sysctls it changed (idempotent)
#   net.sh check   exits non-zero unless every safety rule and route is in place
#
# What holds while it is up (the test in net-test.sh proves the first two with packets):
# - mangle FORWARD drops every packet from the bridge to any other interface and from any
#   other interface to the bridge. mangle FORWARD runs before filter FORWARD, where
#   kube-proxy and kube-router insert ACCEPT rules of their own, so none of theirs can let a
#   pod's packet out; the rule's counters are the proof that something tried.
# - The pod and Service ranges have unreachable routes on the host: a packet for a Service
#   address that kube-proxy has not (yet) translated, or for a pod address that is not on
#   the bridge, is refused here instead of taking the default route.
# - No masquerade: the CNI config has ipMasq off and nothing here adds SNAT.
# - Forwarding is on only for packets that arrive on the bridge (per-interface
#   `forwarding`): a Service address is translated to a pod on the same bridge and routed
#   back out of it. Packets that arrive on any other interface are never forwarded.
# - The bridge has no IPv6 and IPv6 forwarding rules mirror the IPv4 ones.
source "$(dirname "$0")/lib.sh"

RUN_DIR=/run/dispatch-real-node
SAVED="$RUN_DIR/sysctl.saved"

mangle_rules() {
  # Arguments for `iptables -t mangle -X FORWARD` (X = I, C or D), one rule per line.
  printf '%s\n' "-i $RN_BRIDGE ! -o $RN_BRIDGE" "! -i $RN_BRIDGE -o $RN_BRIDGE"
}

save_sysctl() {
  local key="$1"
  grep -q "^$key " "$SAVED" 2>/dev/null || echo "$key $(sysctl -n "$key")" >>"$SAVED"
}

set_sysctl() {
  save_sysctl "$1"
  sysctl -qw "$1=$2"
}

up() {
  mkdir -p "$RUN_DIR"
  # 1. The drop rules, before the bridge exists, so that no instant has a bridge without them.
  local rule tool
  while read -r rule; do
    for tool in iptables ip6tables; do
      # shellcheck disable=SC2086
      $tool -t mangle -C FORWARD $rule -m comment --comment "$RN_RULE_COMMENT" -j DROP 2>/dev/null ||
        $tool -t mangle -I FORWARD 1 $rule -m comment --comment "$RN_RULE_COMMENT" -j DROP
    done
  done < <(mangle_rules)
  # 2. Unreachable routes for the pod and Service ranges (the bridge's /24 is more specific).
  ip route replace unreachable "$RN_POD_SUPERNET"
  ip route replace unreachable "$RN_SERVICE_CIDR"
  # 3. Forwarding only from the bridge: on globally, then off for the default and for every
  #    interface that exists, then on for the bridge once it exists.
  #    Every value is saved before the global switch changes them all.
  local dev devs=()
  for dev in /proc/sys/net/ipv4/conf/*; do
    dev="$(basename "$dev")"
    case "$dev" in all | lo | "$RN_BRIDGE") ;; *) devs+=("$dev") ;; esac
  done
  for dev in "${devs[@]}"; do save_sysctl "net.ipv4.conf.$dev.forwarding"; done
  set_sysctl net.ipv4.ip_forward 1
  for dev in "${devs[@]}"; do sysctl -qw "net.ipv4.conf.$dev.forwarding=0"; done
  # Bridged pod-to-pod packets go through iptables too, so Service replies are un-NATed
  # and kube-router's policies see pod-to-pod traffic.
  set_sysctl net.bridge.bridge-nf-call-iptables 1
  set_sysctl net.bridge.bridge-nf-call-ip6tables 1
  # 4. The bridge.
  if ! ip link show "$RN_BRIDGE" >/dev/null 2>&1; then
    ip link add "$RN_BRIDGE" type bridge
  fi
  sysctl -qw "net.ipv6.conf.$RN_BRIDGE.disable_ipv6=1"
  ip addr replace "$RN_HOST_IP/${RN_POD_CIDR#*/}" dev "$RN_BRIDGE"
  ip link set "$RN_BRIDGE" up
  sysctl -qw "net.ipv4.conf.$RN_BRIDGE.forwarding=1"
  check
  rn_log "network up: bridge $RN_BRIDGE $RN_HOST_IP, pods $RN_POD_CIDR, services $RN_SERVICE_CIDR"
}

check() {
  local rule tool ok=0
  while read -r rule; do
    for tool in iptables ip6tables; do
      # shellcheck disable=SC2086
      $tool -t mangle -C FORWARD $rule -m comment --comment "$RN_RULE_COMMENT" -j DROP 2>/dev/null ||
        { echo "missing: $tool -t mangle FORWARD $rule DROP" >&2; ok=1; }
    done
  done < <(mangle_rules)
  local cidr
  for cidr in "$RN_POD_SUPERNET" "$RN_SERVICE_CIDR"; do
    grep -q "^unreachable $cidr" <<<"$(ip route show type unreachable)" ||
      { echo "missing: unreachable route for $cidr" >&2; ok=1; }
  done
  if grep -- "$RN_POD_SUPERNET\|${RN_POD_CIDR%/*}" <<<"$(iptables-save -t nat)" | grep -q MASQUERADE; then
    echo "a MASQUERADE rule names the pod range" >&2
    ok=1
  fi
  return $ok
}

down() {
  local rule tool
  while read -r rule; do
    for tool in iptables ip6tables; do
      # shellcheck disable=SC2086
      while $tool -t mangle -D FORWARD $rule -m comment --comment "$RN_RULE_COMMENT" -j DROP 2>/dev/null; do :; done
    done
  done < <(mangle_rules)
  ip link del "$RN_BRIDGE" 2>/dev/null || true
  ip route del unreachable "$RN_POD_SUPERNET" 2>/dev/null || true
  ip route del unreachable "$RN_SERVICE_CIDR" 2>/dev/null || true
  if [ -f "$SAVED" ]; then
    # Global switch first (writing it resets every interface), then the per-interface values.
    local key value
    grep '^net.ipv4.ip_forward ' "$SAVED" | while read -r key value; do sysctl -qw "$key=$value"; done
    grep -v '^net.ipv4.ip_forward ' "$SAVED" | while read -r key value; do
      sysctl -qw "$key=$value" 2>/dev/null || true # an interface may be gone
    done
    rm -f "$SAVED"
  fi
  rn_log "network down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  check) check ;;
  *) die "usage: $0 up|down|check" ;;
esac
