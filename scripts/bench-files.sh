#!/usr/bin/env bash
# Benchmark of the files API: upload (PUT files/content) and download (GET
# files/content) of one file through the gateway to a workspace's agent, with a
# bearer key and curl, against a plain local `cp` of the same file on the same
# disk. Prints MiB/s of each (median of the rounds) and the ratios.
#   Upload writes and fsyncs the file before it answers, so it is compared with
#   `cp` + `sync FILE` too (the fair pair); download writes curl's copy to disk.
# Usage: scripts/bench-files.sh [SIZE_MIB (1024)] [ROUNDS (3)]
# Needs about 4x SIZE of free disk (source, workspace copy, download, cp copy).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
SIZE_MIB="${1:-1024}"
ROUNDS="${2:-3}"
command -v curl >/dev/null || die "curl is needed"

step "release builds"
cargo build --release --locked -p dispatch-gateway -p dispatch-agent --bins
BIN="$CARGO_TARGET_DIR/release"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-files.XXXXXX")"
GW_PID=""
cleanup() {
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "a $SIZE_MIB MiB file of random bytes"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/src.bin"

step "gateway (local mode)"
KEY="bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkfifo "$WORK/out"
DISPATCH_KEY="$KEY" RUST_LOG=warn "$BIN/dispatch-gateway" --listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --agent-bin "$BIN/dispatch-agent" >"$WORK/out" 2>"$WORK/gateway.log" &
GW_PID=$!
read -r line <"$WORK/out"
GW="${line#DISPATCH_GATEWAY_LISTENING }"
[ "$GW" != "$line" ] || die "unexpected gateway line: $line"
AUTH="Authorization: Bearer $KEY"
curl -fsS -H "$AUTH" -H 'content-type: application/json' -d '{"name":"bench"}' "$GW/api/workspaces" >/dev/null
F="$GW/api/workspaces/bench/files/content"
curl -fsS -H "$AUTH" -T /dev/null "$F?path=warm" >/dev/null
WS_DIR="$WORK/data/workspaces/me/bench"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mibs() { awk -v s="$SIZE_MIB" -v t="$1" 'BEGIN {printf "%.0f", s / t}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }

cp_only=(); cp_sync=(); up=(); down=()
for r in $(seq "$ROUNDS"); do
  step "round $r of $ROUNDS"
  cp_only+=("$(secs cp "$WORK/src.bin" "$WORK/cp.bin")"); rm -f "$WORK/cp.bin"
  cp_sync+=("$(secs sh -c "cp '$WORK/src.bin' '$WORK/cp.bin' && sync '$WORK/cp.bin'")"); rm -f "$WORK/cp.bin"
  up+=("$(curl -fsS -H "$AUTH" -T "$WORK/src.bin" -o /dev/null -w '%{time_total}' "$F?path=big.bin")")
  down+=("$(curl -fsS -H "$AUTH" -o "$WORK/down.bin" -w '%{time_total}' "$F?path=big.bin")")
  cmp -s "$WORK/src.bin" "$WORK/down.bin" || die "the downloaded file differs"
  cmp -s "$WORK/src.bin" "$WS_DIR/big.bin" || die "the uploaded file differs"
  rm -f "$WORK/down.bin"
done

t_cp=$(printf '%s\n' "${cp_only[@]}" | median)
t_cps=$(printf '%s\n' "${cp_sync[@]}" | median)
t_up=$(printf '%s\n' "${up[@]}" | median)
t_down=$(printf '%s\n' "${down[@]}" | median)
step "results ($SIZE_MIB MiB, median of $ROUNDS)"
printf '%-40s %8s MiB/s\n' "cp (local)" "$(mibs "$t_cp")" \
  "cp + sync (local)" "$(mibs "$t_cps")" \
  "upload through the gateway (fsynced)" "$(mibs "$t_up")" \
  "download through the gateway" "$(mibs "$t_down")"
awk -v c="$t_cp" -v cs="$t_cps" -v u="$t_up" -v d="$t_down" 'BEGIN {
  printf "upload / (cp + sync)   %.2fx\nupload / cp            %.2fx\ndownload / cp          %.2fx\n", cs / u, c / u, c / d }'
