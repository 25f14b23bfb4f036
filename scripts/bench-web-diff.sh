#!/usr/bin/env bash
# Diff render time in Chromium (issue 14: a 5,000-line file diff in under 200 ms):
# builds web/bench/ (the real DiffView and diff code) and times it in Debian's
# Chromium; prints the median of 7 runs per case. Run it alone (it measures time).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v chromium >/dev/null || die "chromium is not installed (scripts/setup.d/10-system.sh installs it)"
npm_install "$ROOT/web"
npm_install "$ROOT/tests/browser"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd web && npx vite build --config bench/vite.config.ts --outDir "$out")
node tests/browser/diff.bench.mjs "$out"
