# The real control plane for the tests: kube-apiserver, kube-controller-manager, kubectl,
# etcd and helm, built from the pinned Go module in tests/kube/tools (cached per version).
source "$(dirname "$0")/../lib.sh"
"$ROOT/tests/kube/build-tools.sh" >/dev/null
