# Web UI: type-check (svelte-check, no warnings allowed), unit tests of the
# pure logic (frame codec, backoff, offsets, protocol client), production build.
source "$(dirname "$0")/../lib.sh"
npm_install "$ROOT/web"
cd "$ROOT/web"
npm run --silent check
npm run --silent test
npm run --silent build
