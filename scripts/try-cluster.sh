#!/usr/bin/env bash
# Try the Kubernetes mode on this one machine: builds what is missing (the Kubernetes tools
# from Go modules, the UI, the three images from docker/ without Docker), starts a real
# single-node cluster (tests/kube/real-node/node.sh), installs the chart with those images
# into the namespace `dispatch` (restricted Pod Security), forwards the gateway to loopback
# and prints the URL to open. Ctrl-C uninstalls and takes the whole node down.
#
#   sudo ./scripts/try-cluster.sh            (root: network namespaces, iptables, containerd)
#   DISPATCH_TRY_PORT=9000 ./scripts/try-cluster.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || die "the real node needs root (network namespaces, iptables, containerd)"
PORT="${DISPATCH_TRY_PORT:-8787}"

"$ROOT/scripts/setup.d/50-real-node.sh" >/dev/null
BIN="$(tests/kube/build-tools.sh | tail -n 1)"
npm_install "$ROOT/web"
(cd web && npm run --silent build)
eval "$(scripts/build-images.sh | tail -n 1)"

forward_pid=""
cleanup() {
  [ -z "$forward_pid" ] || kill "$forward_pid" 2>/dev/null || true
  tests/kube/real-node/node.sh down
}
trap cleanup EXIT
trap 'exit 130' INT TERM
eval "export $(tests/kube/real-node/node.sh up --images "$DISPATCH_IMAGE_DIR" | tail -n 1)"
K=("$BIN/kubectl" -n dispatch)
"${K[@]}" create namespace dispatch >/dev/null
"$BIN/kubectl" label namespace dispatch pod-security.kubernetes.io/enforce=restricted >/dev/null
step "helm install dispatch (images localhost/dispatch-*:$DISPATCH_IMAGE_TAG)"
"$BIN/helm" install dispatch charts/dispatch -n dispatch --wait --timeout 5m \
  --set image.registry=localhost --set "image.tag=$DISPATCH_IMAGE_TAG" --set workspaces.egress=all \
  --set operator.warmVolumes=2 --set workspaces.defaults.storageClass=local-path-immediate >/dev/null
key="$("${K[@]}" get secret dispatch-access -o jsonpath='{.data.access-key}' | base64 -d)"
"${K[@]}" port-forward --address 127.0.0.1 svc/dispatch-gateway "$PORT:80" >/dev/null &
forward_pid=$!
echo "KUBECONFIG=$KUBECONFIG"
echo "kubectl: $BIN/kubectl   (e.g. $BIN/kubectl -n dispatch get ws)"
echo "Open http://127.0.0.1:$PORT/login?key=$key"
echo "Ctrl-C stops the cluster."
wait "$forward_pid"
