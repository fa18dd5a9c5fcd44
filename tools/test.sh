#!/usr/bin/env bash
# The whole suite: installs what it needs, builds, runs unit, simulation and
# mount tests (swift test prints the summary), and fails if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
raidfs_install_deps e2fsprogs
swift build --build-tests
# Mount tests find the daemon and raidctl here.
export RAIDFS_BIN_DIR="$(swift build --show-bin-path)"
swift test --skip-build "$@"
