#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the tests and for people:
#
#   node.sh up [--images DIR]   starts it (network rules first), imports the image archives
#                               in DIR (scripts/build-images.sh) into the node's containerd,
#                               waits until the node is Ready and prints KUBECONFIG=<path>
#   node.sh down                stops every process and removes everything it made: pods'
#                               sandboxes and netns, mounts, iptables chains, the bridge,
#                               routes, state (idempotent; also after a crash)
#
# The parts, all real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (from
# tests/kube/tools), containerd 1.6 and runc (Debian), the CNI bridge and host-local plugins
# (Debian), the kubelet (v1.37, cgroup v1 with the cgroupfs driver: failCgroupV1=false),
# kube-proxy (iptables mode), kube-router (NetworkPolicy only) and local-path-provisioner
# (the default StorageClass). Every process runs on the host as root, listens on loopback or
# on the bridge's host address, and keeps its state under $RN_STATE.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

RN_STATE="${RN_STATE:-/var/tmp/dispatch-real-node}"
ETCD_PORT=12379
APISERVER="https://$RN_HOST_IP:6443"

pid_alive() { [ -f "$RN_STATE/pids/$1" ] && kill -0 "$(cat "$RN_STATE/pids/$1")" 2>/dev/null; }

# start NAME CMD...: runs CMD in its own session (so `down` can end its whole group), logs
# to $RN_STATE/logs/NAME.log.
start() {
  local name="$1"
  shift
  # fd 8 is the node's lock: the daemons must not keep it, or `down` would wait forever.
  setsid "$@" >"$RN_STATE/logs/$name.log" 2>&1 </dev/null 8>&- &
  echo $! >"$RN_STATE/pids/$name"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; on timeout shows the logs.
wait_for() {
  local what="$1" secs="$2" deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      rn_log "$what not ready after ${secs}s"
      local f
      for f in "$RN_STATE"/logs/*.log; do
        echo "--- $(basename "$f") (last lines)" >&2
        tail -n 15 "$f" >&2
      done
      return 1
    fi
    sleep 0.5
  done
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$RN_STATE/admin.kubeconfig" "$@"; }

# --- PKI ---------------------------------------------------------------------------------
cert() { # NAME CN [O] [SANs]: a key and a certificate signed by the cluster CA
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subj="/CN=$2"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  echo "basicConstraints=CA:FALSE" >"$ext"
  echo "keyUsage=critical,digitalSignature,keyEncipherment" >>"$ext"
  if [ -n "$sans" ]; then
    echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
    echo "subjectAltName=$sans" >>"$ext"
  else
    echo "extendedKeyUsage=clientAuth" >>"$ext"
  fi
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
}

kubeconfig() { # NAME: a kubeconfig for the client certificate NAME
  cat >"$RN_STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dispatch-real-node
  cluster: {server: "$APISERVER", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: dispatch-real-node
  context: {cluster: dispatch-real-node, user: $1}
current-context: dispatch-real-node
EOF
}

make_pki() {
  PKI="$RN_STATE/pki"
  mkdir -p "$PKI"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -days 30 \
    -subj "/CN=dispatch-real-node-ca" -out "$PKI/ca.crt" 2>/dev/null
  local svc_ip="${RN_SERVICE_CIDR%.*/*}.1"
  cert apiserver kube-apiserver "" \
    "IP:$RN_HOST_IP,IP:127.0.0.1,IP:$svc_ip,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin dispatch-admin system:masters
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kubelet "system:node:$RN_NODE_NAME" system:nodes
  cert kubelet-serving "system:node:$RN_NODE_NAME" system:nodes "IP:$RN_HOST_IP,DNS:$RN_NODE_NAME"
  cert kube-proxy system:kube-proxy
  cert kube-router dispatch-kube-router system:masters
  cert local-path dispatch-local-path system:masters
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  local n
  for n in admin controller-manager scheduler kubelet kube-proxy kube-router local-path; do kubeconfig "$n"; done
}

# --- configs -----------------------------------------------------------------------------
write_configs() {
  mkdir -p "$RN_STATE/cni/net.d" "$RN_STATE/cni/ipam" "$RN_STATE/containerd" "$RN_STATE/kubelet" \
    "$RN_STATE/local-path" "$RN_STATE/local-path-immediate"
  cat >"$RN_STATE/cni/net.d/10-dispatch.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dispatch",
  "plugins": [{
    "type": "bridge",
    "bridge": "$RN_BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$RN_STATE/cni/ipam",
      "ranges": [[{"subnet": "$RN_POD_CIDR", "rangeStart": "${RN_POD_CIDR%.*/*}.10", "gateway": "$RN_HOST_IP"}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
EOF
  # containerd: its own root, state and socket (no clash with a system containerd), the
  # pause image built from the base, runc with the cgroupfs driver (cgroup v1 here).
  cat >"$RN_STATE/containerd/config.toml" <<EOF
version = 2
root = "$RN_STATE/containerd/root"
state = "$RN_STATE/containerd/state"
[grpc]
  address = "$RN_STATE/containerd/containerd.sock"
[ttrpc]
  address = "$RN_STATE/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$DISPATCH_PAUSE_IMAGE"
  enable_selinux = false
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine lacks: runc would
  # fail to start any sandbox ("can't get final child's PID"). Clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RN_STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
  # Pods resolve names against the bridge's host address, where nothing answers: a lookup
  # fails at once on this machine instead of reaching for a real resolver.
  echo "nameserver $RN_HOST_IP" >"$RN_STATE/kubelet/resolv.conf"
  cat >"$RN_STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 only on this machine: the kubelet >= 1.35 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RN_STATE/containerd/containerd.sock
# The hard limit of open files here is 20000 and CAP_SYS_RESOURCE is missing.
maxOpenFiles: 20000
address: $RN_HOST_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $RN_STATE/kubelet/resolv.conf
failSwapOn: false
podCIDR: $RN_POD_CIDR
serializeImagePulls: false
# Test node on a shared disk: never evict for disk, never collect the imported images.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
protectKernelDefaults: false
makeIPTablesUtilChains: false
EOF
  cat >"$RN_STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $RN_STATE/kube-proxy.kubeconfig}
hostnameOverride: $RN_NODE_NAME
clusterCIDR: $RN_POD_CIDR
bindAddress: $RN_HOST_IP
healthzBindAddress: $RN_HOST_IP:10256
metricsBindAddress: $RN_HOST_IP:10249
nodePortAddresses: ["$RN_HOST_IP/32"]
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

local_path_manifests() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
# The same provisioner binding a claim when it is made (one node: its directory is "shared"
# by every node there is), for warm volumes (the operator's --warm-volumes).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-path-immediate}
provisioner: rancher.io/local-path
volumeBindingMode: Immediate
reclaimPolicy: Delete
---
kind: ConfigMap
apiVersion: v1
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  config.json: |-
    {"storageClassConfigs": {
      "local-path": {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$RN_STATE/local-path"]}]},
      "local-path-immediate": {"sharedFileSystemPath": "$RN_STATE/local-path-immediate"}}}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata: {name: helper-pod}
    spec:
      containers:
      - name: helper-pod
        image: $DISPATCH_BASE_IMAGE
        imagePullPolicy: Never
EOF
}

# --- up ----------------------------------------------------------------------------------
up() {
  local images=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --images) images="$2"; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [ "$(id -u)" -eq 0 ] || die "the real node needs root"
  local tool
  for tool in containerd containerd-shim-runc-v2 runc ctr iptables ipset conntrack openssl; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.d/50-real-node.sh installs it)"
  done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] ||
    die "the CNI plugins are not installed (containernetworking-plugins)"
  BIN="$("$ROOT/tests/kube/build-tools.sh" --print-bin-dir)"
  for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router local-path-provisioner kubectl; do
    [ -x "$BIN/$tool" ] || die "$BIN/$tool is missing: run tests/kube/build-tools.sh"
  done
  [ -n "$images" ] || images="${DISPATCH_IMAGE_DIR:-}"
  [ -n "$images" ] && [ -f "$images/dispatch-pause.tar" ] ||
    die "no image archives: give --images DIR (the DISPATCH_IMAGE_DIR that scripts/build-images.sh prints)"
  DISPATCH_BASE_IMAGE="$(tar -xOf "$images/dispatch-base.tar" manifest.json | sed -E 's/.*"RepoTags":\["([^"]+)".*/\1/')"
  DISPATCH_PAUSE_IMAGE="$(tar -xOf "$images/dispatch-pause.tar" manifest.json | sed -E 's/.*"RepoTags":\["([^"]+)".*/\1/')"

  exec 8>"$RN_LOCK"
  flock 8
  if pid_alive kube-apiserver; then die "a real node is already up (state in $RN_STATE): node.sh down first"; fi
  down_locked >/dev/null 2>&1 || true # leftovers of a crashed run
  mkdir -p "$RN_STATE/logs" "$RN_STATE/pids"
  local started=$SECONDS

  "$HERE/net.sh" up
  make_pki
  write_configs

  start etcd "$BIN/etcd" --name=dispatch-real-node --data-dir="$RN_STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls=http://127.0.0.1:12380 --initial-advertise-peer-urls=http://127.0.0.1:12380 \
    --initial-cluster=dispatch-real-node=http://127.0.0.1:12380 --unsafe-no-fsync --log-level=warn
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$RN_HOST_IP" --advertise-address="$RN_HOST_IP" --secure-port=6443 \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$RN_SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction,PodSecurity --allow-privileged=false \
    --profiling=false --v=1
  wait_for "kube-apiserver" 120 kubectl_ get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$RN_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RN_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RN_STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$RN_SERVICE_CIDR" --allocate-node-cidrs=false --v=1
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$RN_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$RN_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$RN_STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1

  start containerd containerd --config "$RN_STATE/containerd/config.toml"
  wait_for containerd 60 ctr -a "$RN_STATE/containerd/containerd.sock" version
  local archive t0=$SECONDS
  for archive in "$images"/*.tar; do
    ctr -a "$RN_STATE/containerd/containerd.sock" -n k8s.io images import --no-unpack=false \
      "$archive" >/dev/null
  done
  rn_log "images imported into the node's containerd in $((SECONDS - t0)) s"

  start kubelet "$BIN/kubelet" --config="$RN_STATE/kubelet/config.yaml" \
    --kubeconfig="$RN_STATE/kubelet.kubeconfig" --root-dir="$RN_STATE/kubelet/root" \
    --hostname-override="$RN_NODE_NAME" --node-ip="$RN_HOST_IP" --v=1
  start kube-proxy "$BIN/kube-proxy" --config="$RN_STATE/kube-proxy.yaml" --v=1

  wait_for "node $RN_NODE_NAME Ready" 180 \
    kubectl_ wait --for=condition=Ready "node/$RN_NODE_NAME" --timeout=2s
  # kube-router finds its node by name: only once the kubelet has registered it.
  start kube-router "$BIN/kube-router" --kubeconfig="$RN_STATE/kube-router.kubeconfig" \
    --hostname-override="$RN_NODE_NAME" --run-firewall=true --run-router=false \
    --run-service-proxy=false --enable-cni=false --health-port=0 --metrics-port=0 \
    --service-cluster-ip-range="$RN_SERVICE_CIDR" -v=1
  wait_for "kube-router's NetworkPolicy rules" 60 iptables -S KUBE-ROUTER-FORWARD
  local_path_manifests | kubectl_ apply -f - >/dev/null
  start local-path-provisioner env POD_NAMESPACE=local-path-storage "$BIN/local-path-provisioner" \
    start --kubeconfig "$RN_STATE/local-path.kubeconfig" --namespace local-path-storage \
    --configmap-name local-path-config --helper-image "$DISPATCH_BASE_IMAGE" \
    --service-account-name local-path-provisioner-service-account
  wait_for "the kubernetes Service's endpoint" 60 \
    bash -c "'$BIN/kubectl' --kubeconfig '$RN_STATE/admin.kubeconfig' get endpointslices -n default -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}' | grep -q ."
  cp "$RN_STATE/admin.kubeconfig" "$RN_STATE/kubeconfig"
  rn_log "node up in $((SECONDS - started)) s; logs in $RN_STATE/logs"
  echo "KUBECONFIG=$RN_STATE/admin.kubeconfig"
}

# --- down --------------------------------------------------------------------------------
down_locked() {
  local name
  # Components first (the kubelet would restart what we stop), then the pods' containers
  # with their shims, then containerd.
  for name in local-path-provisioner kube-router kube-proxy kubelet kube-scheduler kube-controller-manager; do
    stop_proc "$name"
  done
  # Every process of every pod (containers and sandboxes live in the kubelet's kubepods
  # cgroups), then the shims, which outlive containerd by design (ours are the ones that
  # name our socket).
  local pid round
  for round in 1 2 3 4 5; do
    local pids
    pids="$(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs \
      /sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs 2>/dev/null || true)"
    [ -n "$pids" ] || break
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.2
  done
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $RN_STATE/containerd/" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
  stop_proc containerd
  stop_proc kube-apiserver
  stop_proc etcd
  # kube-proxy's rules (its own --cleanup), and kube-router's chains and sets: its
  # --cleanup-config panics in v2.1.0, so they go by their names here.
  if [ -n "${BIN:-}" ] && [ -x "$BIN/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  drop_chains 'KUBE-(ROUTER|POD-FW|NWPLCY|SRC|DST)-'
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-(SRC|DST|NWPLCY|POD)-|kube-router-)' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
  # The kubelet's own chain (it drops martian packets to 127/8 from elsewhere).
  local tool
  for tool in iptables ip6tables; do
    while $tool -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while $tool -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    $tool -F KUBE-FIREWALL 2>/dev/null && $tool -X KUBE-FIREWALL 2>/dev/null || true
  done
  # Pod network namespaces made by our CNI config: those holding an address of our range.
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
    if ip -n "$ns" -4 addr 2>/dev/null | grep -q "inet ${RN_POD_CIDR%.*}\."; then
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  # Mounts under the state dir (pods' volumes and secrets, containerd's rootfs), deepest first.
  local m
  for m in $(awk -v s="$RN_STATE" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # cgroups the kubelet made (cgroupfs driver, cgroup v1).
  local ctl
  for ctl in /sys/fs/cgroup/*/kubepods; do
    [ -d "$ctl" ] && find "$ctl" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  "$HERE/net.sh" down
  rm -rf "$RN_STATE"
}

# drop_chains REGEX: removes, from every table of iptables and ip6tables, the jumps to the
# chains whose names match REGEX, then the chains themselves.
drop_chains() {
  local re="$1" tool table rule chain
  for tool in iptables ip6tables; do
    for table in filter nat mangle raw; do
      while read -r rule; do
        # eval: the rule as iptables -S prints it, quoted comments and all.
        [ -n "$rule" ] && eval "$tool -t $table ${rule/-A /-D }" 2>/dev/null || true
      done < <($tool -t "$table" -S 2>/dev/null | grep -E "^-A [A-Z]+ .*-j ($re)" || true)
      local chains
      chains="$($tool -t "$table" -S 2>/dev/null | grep -E "^-N ($re)" | cut -d' ' -f2 || true)"
      for chain in $chains; do $tool -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do $tool -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}

stop_proc() {
  local name="$1" pid
  [ -f "$RN_STATE/pids/$name" ] || return 0
  pid="$(cat "$RN_STATE/pids/$name")"
  kill -TERM -- "-$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$RN_STATE/pids/$name"
}

down() {
  exec 8>"$RN_LOCK"
  flock 8
  BIN="$("$ROOT/tests/kube/build-tools.sh" --print-bin-dir)"
  down_locked
  rn_log "node down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) die "usage: $0 up [--images DIR] | down" ;;
esac
