#!/usr/bin/env bash
# Builds the pinned Kubernetes tools from Go modules into $DISPATCH_CACHE/kube/<hash>/bin,
# where <hash> covers both go.mod/go.sum pairs, this recipe and the Go version: a second run
# finds them and returns in a second. Only the Go module proxy is contacted.
# - tests/kube/tools/go.mod: the control plane (kube-apiserver, kube-controller-manager,
#   kube-scheduler, etcd), the node (kubelet, kube-proxy), kubectl and helm, in one `go build`
#   so that the packages they share compile once;
# - the real node's kube-router (NetworkPolicy) and local-path-provisioner (volumes), each
#   by `go install <module>@<version>` with its own go.mod (verified against the checksum
#   database): they pin client-go versions of their own, and together they collide
#   (Sirupsen/logrus and sirupsen/logrus).
#
#   tests/kube/build-tools.sh                 build if needed; last line of stdout is the bin dir
#   tests/kube/build-tools.sh --print-bin-dir print where the binaries are (or would be); no build
source "$(dirname "$0")/../../scripts/lib.sh"

TOOLS_DIR="$ROOT/tests/kube/tools"
KUBE_VERSION="v1.37.2"
HELM_VERSION="v4.3.1"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd helm
  kube-router local-path-provisioner)
PACKAGES=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubelet
  k8s.io/kubernetes/cmd/kube-proxy
  k8s.io/kubernetes/cmd/kubectl
  go.etcd.io/etcd/server/v3
  helm.sh/helm/v4/cmd/helm
)
NODE_PACKAGES=(
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v2.1.0
  github.com/rancher/local-path-provisioner@v0.0.30
)
# Version stamps as upstream's release builds set them (hack/lib/version.sh, helm's Makefile),
# so that /version and `kubectl version` report the pinned release. An -X for a package a
# binary does not link is ignored, so one set serves every binary.
KUBE_MINOR="${KUBE_VERSION#v1.}"; KUBE_MINOR="${KUBE_MINOR%%.*}"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
LDFLAGS+=" -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
LDFLAGS+=" -X helm.sh/helm/v4/internal/version.gitTreeState=archive"

command -v go >/dev/null 2>&1 || die "go is not on PATH: the kube tools are built from Go modules (Go >= 1.26)"
export GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0

hash="$({
  cat "$TOOLS_DIR/go.mod" "$TOOLS_DIR/go.sum"
  printf '%s\n' "$LDFLAGS" "${PACKAGES[@]}" "${NODE_PACKAGES[@]}" "$GOFLAGS" "$CGO_ENABLED"
  go env GOVERSION GOOS GOARCH
} | sha256sum | cut -c1-16)"
BASE="$DISPATCH_CACHE/kube/$hash"
BIN="$BASE/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then
  echo "$BIN"
  exit 0
fi

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

mkdir -p "$DISPATCH_CACHE/kube"
# Two setups at once (two clones, CI and a human) must not build into the same place.
exec 9>"$DISPATCH_CACHE/kube/.build.lock"
flock 9

if have_all; then
  echo "kube tools up to date ($KUBE_VERSION, etcd, helm $HELM_VERSION) in $BIN" >&2
  echo "$BIN"
  exit 0
fi

step "building kube tools ($KUBE_VERSION, etcd, helm $HELM_VERSION, kube-router, local-path-provisioner) into $BIN"
echo "a cold build compiles ~3000 packages and takes a while on few cores; progress below" >&2
tmp="$BASE/bin.tmp.$$"
log="$BASE/build.log"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$SECONDS
(
  cd "$TOOLS_DIR"
  go mod download
  # nice: the machine is shared; -v lists each package as it is compiled, counted below.
  nice -n 10 go build -v -ldflags "$LDFLAGS" -o "$tmp/" "${PACKAGES[@]}"
  for p in "${NODE_PACKAGES[@]}"; do
    GOBIN="$tmp" nice -n 10 go install -v -ldflags "-s -w" "$p"
  done
) >"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  printf '  ... %4ds, %5d packages compiled\n' "$((SECONDS - start))" "$(wc -l <"$log")" >&2
done
if ! wait "$pid"; then
  tail -n 40 "$log" >&2
  die "kube tools build failed (full log: $log)"
fi
# go names the etcd binary after its module path's element before /v3.
[ -x "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd"
for b in "${BINARIES[@]}"; do [ -x "$tmp/$b" ] || die "build produced no $b (log: $log)"; done
rm -rf "$BIN"
mv "$tmp" "$BIN"
echo "built kube tools in $((SECONDS - start))s:" >&2
"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version | sed -n 1p >&2   # sed reads to the end: head would close the pipe, and pipefail takes the SIGPIPE as a failure
"$BIN/helm" version --short >&2
echo "$BIN"
