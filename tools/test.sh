#!/usr/bin/env bash
# The whole suite: installs what it needs, builds, runs unit, simulation and
# mount tests, and fails if any failed. Ends with XCTest's summary and a
# plain "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
raidfs_install_deps e2fsprogs util-linux
swift build --build-tests
# Mount tests find the daemon and raidctl here.
export RAIDFS_BIN_DIR="$(swift build --show-bin-path)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# All tests are XCTest; the Swift Testing runner would only add "0 tests".
swift test --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$log" | tail -1 || true)"
if [ -n "$summary" ]; then
    total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
    # XCTest counts failed assertions; count failed test cases instead.
    failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
    echo "tests: $((total - failed)) passed, $failed failed"
else
    echo "tests: 0 passed, 0 failed"
    [ "$status" -ne 0 ] || status=1   # a run that executed nothing is a failure
fi
exit "$status"
