# The Kubernetes path in Chromium: a real control plane with the chart
# installed by helm, the operator and the gateway run with the chart's
# ServiceAccount tokens, the local node running workspace agents, and
# tests/browser/kubernetes.e2e.mjs driving the web UI (kubectl apply, open,
# terminal echo, kubectl suspend, resume, another user refused).
# Fails, never skips, when Chromium, the kube binaries or the UI build are missing.
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
command -v chromium >/dev/null || die "chromium is not installed (scripts/setup.d/10-system.sh installs it)"
cargo build --locked -p dispatch-gateway -p dispatch-agent -p dispatch-operator --bins
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
(cd web && npm run --silent build)
mkdir -p tests/artifacts/browser
cargo test --locked -p dispatch-gateway --test kubernetes_browser -- --ignored --nocapture
