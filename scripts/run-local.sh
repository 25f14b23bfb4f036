#!/usr/bin/env bash
# Builds Dispatch and runs it in local mode. Filled in by the local-mode work;
# until then it runs the agent alone on a scratch workspace.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
cargo build --release -p dispatch-agent
die "local mode is not built yet"
