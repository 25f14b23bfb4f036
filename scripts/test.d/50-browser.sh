# Browser tests: the web UI in Debian's Chromium (playwright-core, never a
# downloaded browser) against the real dispatch-gateway and dispatch-agent.
# Fails, never skips, when a binary, the UI build, Chromium or (for the Claude
# pane) the Claude Code CLI in tools/claude is missing.
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
command -v chromium >/dev/null || die "chromium is not installed (scripts/setup.d/10-system.sh installs it)"
cargo build --locked -p dispatch-gateway -p dispatch-agent -p dispatch-model-server
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
(cd web && npm run --silent build)
mkdir -p tests/artifacts/browser
cd tests/browser
node --test --test-concurrency=1 --test-timeout=900000 --test-reporter=spec ./*.test.mjs
