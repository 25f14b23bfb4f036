#!/usr/bin/env bash
# Cold start on the real node (tests/kube/real-node), images present: apply -> Running and
# apply -> first shell prompt through the gateway, p50/p90 over BENCH_COLD (20) workspaces
# (tests/browser/real-node.bench.mjs). Starts the node, installs the chart, takes it all
# down at the end. Needs root; run nothing else heavy at the same time.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || die "the real node needs root"
BIN="$(tests/kube/build-tools.sh | tail -n 1)"
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
(cd web && npm run --silent build)
eval "$(DISPATCH_IMAGE_PROFILE="${DISPATCH_IMAGE_PROFILE:-release}" scripts/build-images.sh | tail -n 1)"
forward_pid=""
cleanup() {
  [ -z "$forward_pid" ] || kill "$forward_pid" 2>/dev/null || true
  tests/kube/real-node/node.sh down
}
trap cleanup EXIT
eval "export $(tests/kube/real-node/node.sh up --images "$DISPATCH_IMAGE_DIR" | tail -n 1)"
NS=dispatch-bench
K=("$BIN/kubectl" -n "$NS")
"$BIN/kubectl" create namespace "$NS" >/dev/null
"$BIN/kubectl" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
"$BIN/helm" install dispatch charts/dispatch -n "$NS" --wait --timeout 5m \
  --set image.registry=localhost --set "image.tag=$DISPATCH_IMAGE_TAG" --set workspaces.egress=all >/dev/null
key="$("${K[@]}" get secret dispatch-access -o jsonpath='{.data.access-key}' | base64 -d)"
pf_log="$(dirname "$KUBECONFIG")/port-forward.log"
"${K[@]}" port-forward --address 127.0.0.1 svc/dispatch-gateway 0:80 >"$pf_log" 2>&1 &
forward_pid=$!
port=""
for _ in $(seq 1 600); do # kubectl prints the port once it listens
  port="$(grep -m1 -o '127.0.0.1:[0-9]*' "$pf_log" | cut -d: -f2 || true)"
  [ -n "$port" ] && break
  kill -0 "$forward_pid" 2>/dev/null || die "kubectl port-forward exited: $(cat "$pf_log")"
  sleep 0.1
done
[ -n "$port" ] || die "kubectl port-forward printed no port"
PKI="$(dirname "$KUBECONFIG")/pki"
bench() {
  DISPATCH_BENCH_GATEWAY_URL="http://127.0.0.1:$port" DISPATCH_BENCH_KEY="$key" DISPATCH_BENCH_NAMESPACE="$NS" \
    DISPATCH_BENCH_API="https://10.213.0.1:6443" DISPATCH_BENCH_CA="$PKI/ca.crt" \
    DISPATCH_BENCH_CERT="$PKI/admin.crt" DISPATCH_BENCH_CLIENT_KEY="$PKI/admin.key" \
    DISPATCH_BENCH_STORAGE_CLASS="$1" DISPATCH_BENCH_LABEL="${2:-}" node tests/browser/real-node.bench.mjs |
    tee -a "$summary"
}
summary="$(mktemp)"
# BENCH_VOLUMES picks the passes (a comma-separated list, default all of them):
# provisioned, static, immediate, warm.
passes=",${BENCH_VOLUMES:-provisioned,static,immediate,warm},"
wants() { [[ "$passes" == *",$1,"* ]]; }
if wants provisioned; then
  step "cold start, volumes provisioned on demand (local-path-provisioner)"
  bench ""
fi
# The same with volumes made beforehand (local PVs of a class without a provisioner, as a
# cluster with a pool of volumes has): what the pod itself costs, without provisioning.
# Twice: binding when the pod is scheduled (WaitForFirstConsumer, what local volumes
# normally use), and binding when the claim is made (Immediate), which shows what the
# scheduler's wait for a binding costs.
pool="$(dirname "$KUBECONFIG")/static-volumes"
static_pass() { # class, binding mode
  {
    echo "apiVersion: storage.k8s.io/v1"
    echo "kind: StorageClass"
    echo "metadata: {name: $1}"
    echo "provisioner: kubernetes.io/no-provisioner"
    echo "volumeBindingMode: $2"
    for i in $(seq 0 "${BENCH_COLD:-20}"); do
      mkdir -p -m 0777 "$pool/$1-pv$i"
      echo "---"
      echo "apiVersion: v1"
      echo "kind: PersistentVolume"
      echo "metadata: {name: $1-pv$i}"
      echo "spec:"
      echo "  capacity: {storage: 1Gi}"
      echo "  accessModes: [ReadWriteOnce]"
      echo "  persistentVolumeReclaimPolicy: Retain"
      echo "  storageClassName: $1"
      echo "  local: {path: $pool/$1-pv$i}"
      echo "  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [dispatch-node]}]}]}}"
    done
  } | "$BIN/kubectl" apply -f - >/dev/null
  bench "$1"
}
if wants static; then
  step "cold start, volumes made beforehand, bound when the pod is scheduled"
  static_pass static-local WaitForFirstConsumer
fi
if wants immediate; then
  step "cold start, volumes made beforehand, bound when the claim is made"
  static_pass static-immediate Immediate
fi
# The operator keeps warm volumes (the chart's operator.warmVolumes): claims provisioned
# by local-path-provisioner ahead of the Workspaces, which take them bound.
if wants warm; then
  step "cold start, warm volumes (local-path-provisioner, the operator keeps 3 ready)"
  "$BIN/helm" upgrade dispatch charts/dispatch -n "$NS" --reuse-values --wait --timeout 5m \
    --set operator.warmVolumes=3 --set workspaces.defaults.storageClass=local-path-immediate \
    --set workspaces.defaults.storageSize=1Gi >/dev/null
  for _ in $(seq 1 600); do
    bound="$("${K[@]}" get pvc -l dispatch.dev/warm-volume -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Bound$' || true)"
    [ "$bound" -ge 3 ] && break
    sleep 0.2
  done
  [ "$bound" -ge 3 ] || die "the operator made no 3 bound warm volumes: $("${K[@]}" get pvc 2>&1)"
  bench local-path-immediate "warm volumes (local-path-immediate, 3 kept)"
fi

# Side by side: each pass's apply -> prompt p50, and its ratio to the first pass's.
step "cold start, apply -> prompt p50 of each pass"
awk '/:$/ && !/^cold/ { label = $0; sub(/:$/, "", label) }
     /apply -> prompt/ { for (i = 1; i <= NF; i++) if ($i == "p50") { p50 = $(i + 1); break }
                        if (!first) first = p50
                        printf "%-55s p50 %5d ms  %.2fx the first pass\n", label, p50, p50 / first }' "$summary"
rm -f "$summary"
