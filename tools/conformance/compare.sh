#!/usr/bin/env bash
# Runs a prove-style POSIX conformance suite (pjdfstest's layout: a tests/
# directory of .t scripts run as root from inside the filesystem under test)
# on a raidfs RAID 6 mount, on libfuse's passthrough example and on the plain
# backing directory, in one run, and prints each one's summary.
#   tools/conformance/compare.sh SUITE_TESTS_DIR [RAID_LEVEL]
# The suite is not part of this repository: build it yourself and pass its
# tests/ directory. The passthrough is built from the copy of libfuse's
# example that Debian's libfuse3-dev installs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUITE="$(realpath "${1:?usage: $0 SUITE_TESTS_DIR [RAID_LEVEL]}")"
LEVEL="${2:-6}"
[ "$(id -u)" = 0 ] || { echo "$0: the suite switches users: run as root"; exit 64; }
source tools/deps.sh
raidfs_install_deps
command -v prove >/dev/null || { echo "$0: prove (perl) is needed"; exit 1; }
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-conformance.XXXXXX)"
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"; }; done
    rm -rf "$WORK"
}
trap cleanup EXIT

raidfs_build_passthrough "$WORK/passthrough"

mkdir -p "$WORK/raid/mnt" "$WORK/pt/back" "$WORK/pt/mnt" "$WORK/plain"
MEMBERS=$([ "$LEVEL" = 1 ] && echo 2 || echo 6)
DIRS=$(seq -f "$WORK/raid/d%g" 0 $((MEMBERS - 1)))
mkdir -p $DIRS
"$BIN/raidctl" create --level "$LEVEL" $DIRS >/dev/null
"$BIN/raidfs" "$(echo $DIRS | tr ' ' :)" "$WORK/raid/mnt" -o allow_other
MOUNTS+=("$WORK/raid/mnt")
# The passthrough mirrors / ; the suite runs inside its view of pt/back.
"$WORK/passthrough" "$WORK/pt/mnt" -o allow_other
MOUNTS+=("$WORK/pt/mnt")
for _ in $(seq 50); do mountpoint -q "$WORK/raid/mnt" && mountpoint -q "$WORK/pt/mnt" && break; sleep 0.1; done
# The suite acts as other users too: every directory on the way is searchable.
chmod 0755 "$WORK" "$WORK/raid" "$WORK/raid/mnt" "$WORK/pt" "$WORK/pt/back" "$WORK/plain"

run() { # name dir
    echo "== $1 ($2)"
    (cd "$2" && prove -r "$SUITE" > "$WORK/$1.out" 2>&1) || true
    tail -n 2 "$WORK/$1.out" | sed 's/^/   /'
    local failed
    failed=$(sed -n '/^Test Summary Report/,$p' "$WORK/$1.out" | grep -o 'Failed: [0-9]*' | awk '{s += $2} END {print s + 0}')
    echo "   failed subtests: $failed"
    sed -n '/^Test Summary Report/,$p' "$WORK/$1.out" | grep -E '^\S+\.t ' | awk '{print "   " $1, $NF}' | tr -d ')'
}
run raidfs "$WORK/raid/mnt"
run passthrough "$WORK/pt/mnt$WORK/pt/back"
run plain "$WORK/plain"
