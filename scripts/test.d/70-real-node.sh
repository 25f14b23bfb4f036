# The real node (tests/kube/real-node): its network rules proven with packets, the three
# images built from docker/ without Docker (scripts/build-images.sh), a single-node cluster
# with kubelet, containerd, runc, CNI, kube-proxy, kube-router and local-path-provisioner,
# and tests/browser/real-node.e2e.mjs driving the chart's images to Chromium. Tears the node
# down at the end, also on failure. Fails, never skips, when anything it needs is missing.
source "$(dirname "$0")/../../tests/kube/real-node/lib.sh"
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || die "the real node needs root (network namespaces, iptables, containerd)"
command -v chromium >/dev/null || die "chromium is not installed (scripts/setup.d/10-system.sh installs it)"
BIN="$("$ROOT/tests/kube/build-tools.sh")"
BIN="$(tail -n 1 <<<"$BIN")"

step "real node: network rules, proven with packets"
tests/kube/real-node/net-test.sh

step "real node: images"
cargo build --locked -p dispatch-agent -p dispatch-gateway -p dispatch-operator -p dispatch-model-server --bins
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
(cd web && npm run --silent build)
eval "$(DISPATCH_IMAGE_NO_CARGO=1 scripts/build-images.sh | tail -n 1)"

step "real node: up"
trap 'tests/kube/real-node/node.sh down' EXIT
tests/kube/real-node/node.sh up --images "$DISPATCH_IMAGE_DIR" | tail -n 1 >/tmp/real-node.env.$$
eval "export $(cat /tmp/real-node.env.$$)"
rm -f /tmp/real-node.env.$$

step "real node: the chart's images end to end"
mkdir -p tests/artifacts/browser
DISPATCH_E2E_KUBECTL="$BIN/kubectl" DISPATCH_E2E_HELM="$BIN/helm" DISPATCH_E2E_IMAGE_TAG="$DISPATCH_IMAGE_TAG" \
  DISPATCH_E2E_CHART="$ROOT/charts/dispatch" DISPATCH_E2E_MODEL_SERVER="$CARGO_TARGET_DIR/debug/dispatch-model-server" \
  node --test --test-concurrency=1 --test-reporter=spec tests/browser/real-node.e2e.mjs

step "real node: down, and nothing of it left"
trap - EXIT
tests/kube/real-node/node.sh down
left=""
grep -qE "KUBE-|$RN_RULE_COMMENT" <<<"$(iptables-save; ip6tables-save)" && left+=" iptables-rules"
[ -z "$(ipset list -n)" ] || left+=" ipsets"
ip link show dispatch0 >/dev/null 2>&1 && left+=" bridge"
grep -q "unreachable 10.21[34]" <<<"$(ip route)" && left+=" routes"
grep -q "^cni-" <<<"$(ip netns list)" && left+=" netns"
grep -q "dispatch-real-node" /proc/self/mounts && left+=" mounts"
ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && left+=" cgroups"
[ -z "$left" ] || die "the real node left:$left"
echo "the real node left nothing behind"
