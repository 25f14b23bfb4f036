#!/usr/bin/env bash
# Runs every test suite (scripts/test.d/*, in order) and prints a summary.
# Assumes scripts/setup.sh has run (.ci/run does both).
source "$(dirname "$0")/lib.sh"
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
