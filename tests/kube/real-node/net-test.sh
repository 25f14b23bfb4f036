#!/usr/bin/env bash
# Proves the real node's network rules with packets (run as root; takes the node's lock):
#
# - A "pod" (a netns on the bridge, set up as the CNI bridge plugin does) that sends to an
#   outside address has every packet counted by the FORWARD drop rule, and none arrives.
#   The outside host is a netns of this test behind a veth that is not the bridge (TEST-NET-2,
#   198.51.100.0/24): were the rule missing, the packets would arrive there and be counted by
#   its own INPUT rule, so "never leaves" is observed, not assumed; and nothing can reach a
#   real network even if the rule failed. The rule names no interface but the bridge, so what
#   it does to the veth it does to the default route's interface.
#   (This machine's default gateway is 192.0.2.1; the test never sends to it.)
# - Pod and Service addresses that nothing serves hit the unreachable routes, never the
#   default route, both from the host and from a pod.
# - Everything is removed at the end, also when an assertion fails.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

POD_NS="dsp-test-pod"
OUT_NS="dsp-test-outside"
POD_IP="10.213.0.250"
OUT_IP="198.51.100.1"
OUT_HOST_IP="198.51.100.254"
failures=0
passes=0

exec 8>"$RN_LOCK"
flock 8

cleanup() {
  ip netns del "$POD_NS" 2>/dev/null || true
  ip netns del "$OUT_NS" 2>/dev/null || true
  ip link del dsp-t-pod 2>/dev/null || true
  ip link del dsp-t-out 2>/dev/null || true
  "$HERE/net.sh" down
  # Nothing of ours may be left.
  local left=""
  ip link show "$RN_BRIDGE" >/dev/null 2>&1 && left+=" bridge"
  grep -q "$RN_RULE_COMMENT" <<<"$(iptables-save -t mangle; ip6tables-save -t mangle)" && left+=" rules"
  grep -q "${RN_POD_SUPERNET%/*}\|${RN_SERVICE_CIDR%/*}" <<<"$(ip route show type unreachable)" && left+=" routes"
  grep -q "dsp-test-" <<<"$(ip netns list)" && left+=" netns"
  if [ -n "$left" ]; then
    echo "FAIL: teardown left:$left" >&2
    exit 1
  fi
}
trap cleanup EXIT

pass() {
  echo "ok - $*"
  passes=$((passes + 1))
}
fail() {
  echo "not ok - $*"
  failures=$((failures + 1))
}

# The drop rule's packet count (iptables-save -c prints [packets:bytes] before each rule).
drop_count() {
  { iptables-save -c -t mangle | grep -- "-A FORWARD -i $RN_BRIDGE ! -o $RN_BRIDGE .*$RN_RULE_COMMENT" ||
    echo "[0:0] (no such rule)"; } | sed -E 's/^\[([0-9]+):.*/\1/'
}
# Packets from the pod range that reached the outside host.
arrived_outside() {
  ip netns exec "$OUT_NS" iptables-save -c -t filter | grep -- "-A INPUT -s $RN_POD_SUPERNET" |
    sed -E 's/^\[([0-9]+):.*/\1/'
}

"$HERE/net.sh" up

# The outside host: a veth that is not the bridge, with a route to it from the host.
ip netns add "$OUT_NS"
ip link add dsp-t-out type veth peer name eth0 netns "$OUT_NS"
ip addr add "$OUT_HOST_IP/24" dev dsp-t-out
ip link set dsp-t-out up
ip -n "$OUT_NS" addr add "$OUT_IP/24" dev eth0
ip -n "$OUT_NS" link set eth0 up
ip -n "$OUT_NS" link set lo up
ip netns exec "$OUT_NS" iptables -A INPUT -s "$RN_POD_SUPERNET"
# It answers the pod range too, so that a leak would show as a reply, not only as a count.
ip -n "$OUT_NS" route add "$RN_POD_SUPERNET" via "$OUT_HOST_IP"

# The pod: as the CNI bridge plugin makes one (veth on the bridge, default route via it).
ip netns add "$POD_NS"
ip link add dsp-t-pod type veth peer name eth0 netns "$POD_NS"
ip link set dsp-t-pod master "$RN_BRIDGE" up
ip -n "$POD_NS" addr add "$POD_IP/24" dev eth0
ip -n "$POD_NS" link set eth0 up
ip -n "$POD_NS" link set lo up
ip -n "$POD_NS" route add default via "$RN_HOST_IP"

# Controls: both hosts are reachable where the rules allow it, so silence below means a drop.
if ip netns exec "$POD_NS" ping -c 1 -W 5 "$RN_HOST_IP" >/dev/null; then
  pass "the pod reaches the bridge's host address"
else
  fail "the pod cannot reach the bridge's host address"
fi
if ping -c 1 -W 5 -I dsp-t-out "$OUT_IP" >/dev/null; then
  pass "the host reaches the outside netns (the path a leak would take exists)"
else
  fail "the host cannot reach the outside netns"
fi

before_drop="$(drop_count)"
before_out="$(arrived_outside)"
if ip netns exec "$POD_NS" ping -c 3 -i 0.2 -W 1 "$OUT_IP" >/dev/null 2>&1; then
  fail "the pod's ping to an outside address was answered"
else
  pass "the pod's ping to an outside address got no answer"
fi
# A TCP connection attempt too (SYN and its retries).
ip netns exec "$POD_NS" timeout 3 bash -c "exec 3<>/dev/tcp/$OUT_IP/80" 2>/dev/null &&
  fail "the pod's TCP connect to an outside address succeeded"
after_drop="$(drop_count)"
after_out="$(arrived_outside)"
dropped=$((after_drop - before_drop))
if [ "$dropped" -ge 4 ]; then
  pass "the FORWARD drop rule counted $dropped packets from the pod to the outside"
else
  fail "the FORWARD drop rule counted $dropped packets (want >= 4: 3 pings and a SYN)"
fi
if [ "$after_out" -eq "$before_out" ]; then
  pass "no packet from the pod range arrived outside ($after_out)"
else
  fail "$((after_out - before_out)) packets from the pod range arrived outside"
fi

# The unreachable routes, from the host and from the pod.
for addr in 10.214.0.1 10.213.7.7; do
  route="$(ip route get "$addr" 2>&1 || true)"
  if grep -q "unreachable\|No route" <<<"$route"; then
    pass "the host has no route to $addr but the unreachable one"
  else
    fail "the host routes $addr: $route"
  fi
  out="$(ip netns exec "$POD_NS" ping -c 1 -W 2 "$addr" 2>&1 || true)"
  if grep -q "Unreachable" <<<"$out"; then
    pass "a pod's packet to $addr is refused by the host"
  else
    fail "a pod's packet to $addr: $out"
  fi
done

"$HERE/net.sh" check && pass "net.sh check finds every rule and route in place" || fail "net.sh check"

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
