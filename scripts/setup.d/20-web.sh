# Web UI: install its dependencies (npm ci from the lockfile) and build it to
# web/dist, which the gateway serves (--web-dir). Also the browser tests' deps.
source "$(dirname "$0")/../lib.sh"
command -v node >/dev/null || die "node is not installed (the web UI needs Node.js >= 20.19)"
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
(cd "$ROOT/web" && npm run --silent build)
