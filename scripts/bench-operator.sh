#!/usr/bin/env bash
# Benchmark of dispatch-operator on a real control plane (etcd + kube-apiserver +
# kube-controller-manager from tests/kube, built by scripts/setup.sh):
#   - N Workspaces (default 1000) until all have their five children and a status,
#     against the floor of creating the same objects and status directly;
#     prints the ratio (target <= 1.3x);
#   - the operator's RSS after sync (target <= 40 MiB);
#   - cold start with the local-node harness: apply -> Running, p50 (target <= 1 s).
# Usage: scripts/bench-operator.sh            (BENCH_N, BENCH_CONCURRENCY, BENCH_COLD to change)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
step "building release binaries"
cargo build --release --locked -p dispatch-operator -p dispatch-agent --bins --example bench_operator
export DISPATCH_OPERATOR_BIN="$CARGO_TARGET_DIR/release/dispatch-operator"
export DISPATCH_AGENT_BIN="$CARGO_TARGET_DIR/release/dispatch-agent"
step "benchmark"
"$CARGO_TARGET_DIR/release/examples/bench_operator"
