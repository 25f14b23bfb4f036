#!/usr/bin/env bash
# Installs what a fresh machine lacks, step by step (scripts/setup.d/*, in order).
# Each step is idempotent and fast when there is nothing to do.
source "$(dirname "$0")/lib.sh"
for s in "$ROOT"/scripts/setup.d/*.sh; do
  [ -e "$s" ] || continue
  step "setup: $(basename "$s" .sh)"
  bash "$s"
done
