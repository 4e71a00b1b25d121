#!/usr/bin/env bash
# Run every tests/integration/test-*.sh (or those named on the command line),
# each in its own process so its namespaces and QEMUs are cleaned up by its
# own trap. Prints one line per test and the closing "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=("$here"/test-*.sh)
pass=0
failed=0
failures=()
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    start=$(date +%s)
    if bash "$t" > "/tmp/plover-$name.log" 2>&1; then
        pass=$((pass + 1))
        echo "PASS $name ($(( $(date +%s) - start ))s)"
        grep '^figure: ' "/tmp/plover-$name.log" | sed 's/^/    /' || true
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL $name ($(( $(date +%s) - start ))s); output:"
        sed 's/^/    /' "/tmp/plover-$name.log"
    fi
    rm -f "/tmp/plover-$name.log"
done
echo "integration: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
