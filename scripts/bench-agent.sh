#!/usr/bin/env bash
# Benchmark of dispatch-agent against the raw PTY, in one run (not part of the
# tests): throughput of `cat` of a 256 MiB file (PTY floor vs the agent's
# WebSocket), keystroke echo latency p50/p99 (PTY's own echo vs the agent, idle
# and under a flood in another session), idle RSS, and exec-to-/readyz time.
# Usage: scripts/bench-agent.sh [--size-mib N] [--rounds N] [--hold]  (--hold: under the holder, as local mode runs it)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
step "building dispatch-agent and the bench client (release)"
cargo build --release --locked -p dispatch-agent --bin dispatch-agent --example bench
step "running"
"$CARGO_TARGET_DIR/release/examples/bench" --agent-bin "$CARGO_TARGET_DIR/release/dispatch-agent" "$@"
