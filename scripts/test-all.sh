#!/usr/bin/env bash
# Runs every test suite (scripts/test.d/*, in order) and prints a summary.
# Installs what the suites need first (scripts/setup.sh: idempotent, seconds
# when nothing is missing); DISPATCH_SKIP_SETUP=1 skips that.
source "$(dirname "$0")/lib.sh"
if [ "${DISPATCH_SKIP_SETUP:-0}" != 1 ]; then
  "$ROOT/scripts/setup.sh"
fi
passed=0 failed=0 failures=()
for s in "$ROOT"/scripts/test.d/*.sh; do
  [ -e "$s" ] || continue
  name="$(basename "$s" .sh)"
  step "test: $name"
  start=$SECONDS
  if bash "$s"; then
    passed=$((passed + 1))
    echo "-- $name passed in $((SECONDS - start)) s" >&2
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "-- $name FAILED in $((SECONDS - start)) s" >&2
  fi
done
[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
