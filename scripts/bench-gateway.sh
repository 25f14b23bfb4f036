#!/usr/bin/env bash
# Benchmark of the gateway's WebSocket proxy: one run compares the path through
# the gateway with the path straight to the agent and prints ratios:
#   output throughput of live terminal output, `cat` of a 64 MiB file in a
#   session (target >= 0.95x direct); output throughput of a replay of 128 MiB
#   from the agent's output log (an upper bound on the proxy's cost, far above what
#   a terminal produces); added echo latency at p50 (target <= 100 us); gateway
#   RSS per idle proxied WebSocket at 1,000 connections (target <= 32 KiB);
#   CPU seconds of the agent and the gateway per live run.
# Throughput runs go in pairs (16 live, 7 replay), direct then via the gateway;
# the ratio is the median over the pairs (other processes share the machine; a
# pair shares its moment's conditions). The best run of each side is printed too.
# Knobs (env): BENCH_LIVE_BYTES, BENCH_LIVE_ROUNDS, BENCH_THROUGHPUT_BYTES (replay),
# BENCH_ROUNDS (replay), BENCH_ECHOES, BENCH_CONNECTIONS.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
# 1,000 proxied connections hold ~3,000 sockets across client, gateway and agent.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
step "release builds"
cargo build --release --locked -p dispatch-gateway -p dispatch-agent --bins --examples
step "benchmark"
BENCH_BIN_DIR="$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/release/examples/bench_gateway"
