#!/usr/bin/env bash
# The README's first command: installs the web UI's dependencies, builds the UI
# and the binaries, and runs Dispatch in local mode on 127.0.0.1 (port 8787
# unless --listen says otherwise). The gateway prints the URL to open.
# Arguments pass through to dispatch-gateway (see `dispatch-gateway --help`),
# e.g. ./scripts/run-local.sh --listen 127.0.0.1:9000 --data-dir /tmp/dispatch
# It also installs the pinned Claude Code CLI (tools/claude) for Claude panes
# and says when no Claude credential is set (README: "Claude in local mode").
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
command -v npm >/dev/null || die "Node.js with npm is needed"

step "web UI: dependencies and build"
npm_install web
npm --prefix web run build

step "binaries: dispatch-gateway and dispatch-agent (release)"
cargo build --release --locked -p dispatch-gateway -p dispatch-agent

step "Claude Code CLI"
# The agents drive this CLI for Claude panes; workspace terminals get it on
# their PATH, with the pane's CLAUDE_CONFIG_DIR, so `claude` there shares the
# pane's login and history.
if [ -n "${DISPATCH_CLAUDE_BIN:-}" ]; then
  [ -x "$DISPATCH_CLAUDE_BIN" ] || die "DISPATCH_CLAUDE_BIN=$DISPATCH_CLAUDE_BIN is not an executable file"
elif npm_install "$ROOT/tools/claude" && [ -x "$ROOT/tools/claude/node_modules/.bin/claude" ]; then
  # The version the tests pin (tools/claude/package.json), as scripts/setup.d/30-claude.sh installs it.
  export DISPATCH_CLAUDE_BIN="$ROOT/tools/claude/node_modules/.bin/claude"
elif command -v claude >/dev/null; then
  export DISPATCH_CLAUDE_BIN="$(command -v claude)"
  printf 'note: could not install the pinned Claude Code CLI; using %s\n' "$DISPATCH_CLAUDE_BIN" >&2
else
  printf 'warning: no Claude Code CLI (npm could not install tools/claude, and none is on PATH):\n' >&2
  printf '         terminals work, Claude panes will say the CLI is missing.\n' >&2
fi
if [ -n "${DISPATCH_CLAUDE_BIN:-}" ]; then
  export PATH="$(dirname "$DISPATCH_CLAUDE_BIN"):$PATH"
  printf 'Claude Code CLI: %s (%s)\n' "$DISPATCH_CLAUDE_BIN" "$("$DISPATCH_CLAUDE_BIN" --version 2>/dev/null || echo 'version unknown')" >&2
fi
if [ -z "${ANTHROPIC_API_KEY:-}${CLAUDE_CODE_OAUTH_TOKEN:-}${ANTHROPIC_AUTH_TOKEN:-}" ]; then
  cat >&2 <<'EOF_NOTE'
No Claude credential is set: neither ANTHROPIC_API_KEY nor CLAUDE_CODE_OAUTH_TOKEN.
  Terminals work. For Claude panes, either
  - stop here and start again with one of them exported, e.g.
      ANTHROPIC_API_KEY=sk-ant-... ./scripts/run-local.sh
    (a Claude subscription: run `claude setup-token` once, then export
    CLAUDE_CODE_OAUTH_TOKEN=<the token it prints>), or
  - log in per workspace: open a terminal in the workspace and run `claude`
    (its /login); the login is kept in <workspace>/.dispatch/claude, which the
    workspace's Claude panes share.
EOF_NOTE
fi

step "starting the gateway (Ctrl-C stops it and its workspaces' agents)"
exec "$CARGO_TARGET_DIR/release/dispatch-gateway" \
  --listen "${DISPATCH_LISTEN:-127.0.0.1:8787}" \
  --web-dir "$ROOT/web/dist" \
  --agent-bin "$CARGO_TARGET_DIR/release/dispatch-agent" \
  "$@"
