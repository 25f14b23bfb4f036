#!/usr/bin/env bash
# The README's first command: installs the web UI's dependencies, builds the UI
# and the binaries, and runs Dispatch in local mode on 127.0.0.1 (port 8787
# unless --listen says otherwise). The gateway prints the URL to open.
# Arguments pass through to dispatch-gateway (see `dispatch-gateway --help`),
# e.g. ./scripts/run-local.sh --listen 127.0.0.1:9000 --data-dir /tmp/dispatch
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
command -v npm >/dev/null || die "Node.js with npm is needed"

step "web UI: dependencies and build"
npm_install web
npm --prefix web run build

step "binaries: dispatch-gateway and dispatch-agent (release)"
cargo build --release --locked -p dispatch-gateway -p dispatch-agent

step "starting the gateway (Ctrl-C stops it and its workspaces' agents)"
exec "$CARGO_TARGET_DIR/release/dispatch-gateway" \
  --listen "${DISPATCH_LISTEN:-127.0.0.1:8787}" \
  --web-dir "$ROOT/web/dist" \
  --agent-bin "$CARGO_TARGET_DIR/release/dispatch-agent" \
  "$@"
