# Sourced by the scripts here: where things live and small helpers.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DISPATCH_CACHE="${DISPATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dispatch}"
# Build outputs live outside the clone so that a fresh clone on the same machine
# (CI's case) reuses them; cargo rebuilds whatever changed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DISPATCH_CACHE/target}"
mkdir -p "$DISPATCH_CACHE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# npm ci only when package-lock.json changed since the last install.
npm_install() {
  local dir="$1"
  local stamp="$dir/node_modules/.dispatch-lock-sha"
  local sum
  sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$sum" >"$stamp"
  fi
}
