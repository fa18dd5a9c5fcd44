#!/usr/bin/env bash
# The whole suite: installs what it needs, builds, runs unit, simulation and
# mount tests, and fails if any failed. Ends with XCTest's summary and a
# plain "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
raidfs_install_deps e2fsprogs util-linux man-db
raidfs_install_python_deps
swift build --build-tests
# The man pages, for ManualTests (generated from raidctl's parser).
export RAIDFS_MAN_DIR="$(mktemp -d)"
raidfs_build_manual "$RAIDFS_MAN_DIR"
# Mount tests find the daemon and raidctl here.
export RAIDFS_BIN_DIR="$(swift build --show-bin-path)"
log="$(mktemp)"
trap 'rm -f "$log"; rm -rf "$RAIDFS_MAN_DIR"' EXIT
set +e
# All tests are XCTest; the Swift Testing runner would only add "0 tests".
swift test --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# A test process that crashed (a trap, a signal) cannot unmount what it
# mounted: stop the daemons this run started and left behind, and fail.
leftover=0
for pid in $(pgrep -f "^$RAIDFS_BIN_DIR/raidfs " || true); do
    age="$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')"
    [ -n "$age" ] && [ "$age" -le $((SECONDS + 1)) ] || continue
    mnt="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 3p)"
    [ -z "$mnt" ] || fusermount3 -uz "$mnt" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    leftover=$((leftover + 1))
done
if [ "$leftover" -gt 0 ]; then
    echo "tests: stopped $leftover raidfs daemon(s) left running by a test"
    [ "$status" -ne 0 ] || status=1
fi
summary="$(grep -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$log" | tail -1 || true)"
if [ -n "$summary" ]; then
    total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
    # XCTest counts failed assertions; count failed test cases instead.
    failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
    echo "tests: $((total - failed)) passed, $failed failed"
    [ "$total" -gt 0 ] || [ "$status" -ne 0 ] || status=1   # a run that executed nothing is a failure
else
    echo "tests: 0 passed, 0 failed"
    [ "$status" -ne 0 ] || status=1   # a run that executed nothing is a failure
fi
exit "$status"
