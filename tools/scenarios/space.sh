#!/usr/bin/env bash
# Scenario: where a tree's bytes land. Copies TREE (default /usr/include)
# into an array of directories under BASE (default /var/tmp, so the
# members' filesystem is the machine's disk, not tmpfs), prints each
# member's du beside the tree's own du, then fails the last member, lets a
# spare rebuild it and prints the spare's du beside the lost member's: a
# rebuild must leave a member the shape the write path gave it. Checks
# every byte with diff -r at the end.
#   tools/scenarios/space.sh [--level 1|5|6] [--tree DIR] [--base DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/array-lib.sh
LEVEL=6; TREE=/usr/include; BASE=/var/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --level) LEVEL="$2"; shift 2 ;;
        --tree) TREE="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        *) echo "usage: $0 [--level 1|5|6] [--tree DIR] [--base DIR]" >&2; exit 64 ;;
    esac
done
case "$LEVEL" in
    6) N=6 ;; 5) N=4 ;; 1) N=3 ;;
    *) echo "space.sh: --level must be 1, 5 or 6" >&2; exit 64 ;;
esac
RAIDFS_WORK_BASE="$BASE" bench_setup bc
kib() { du -s --block-size=1K "$@" | awk '{ s += $1 } END { print s }'; }

mount_array "$LEVEL" "$N" on 2>/dev/null
cp -r "$TREE" "$MNT/tree"
sync

tree=$(kib "$TREE")
echo "== RAID $LEVEL of $N on $(df --output=fstype "$WORK" | tail -1) ($BASE): $TREE, du $tree KiB"
total=0
for i in $(seq 0 $((N - 1))); do
    k=$(kib "$WORK/d$i/data"); total=$((total + k))
    echo "member $i: $k KiB"
done
echo "all members: $total KiB = $(echo "scale=2; $total / $tree" | bc) times the tree"

LAST=$((N - 1))
lost=$(kib "$WORK/d$LAST/data")
mkdir "$WORK/spare"
"$BIN/raidctl" fail "$MNT" "$LAST" >/dev/null
"$BIN/raidctl" add "$MNT" "$WORK/spare" >/dev/null
for _ in $(seq 1200); do "$BIN/raidctl" status "$MNT" >/dev/null 2>&1 && break; sleep 0.5; done
"$BIN/raidctl" status "$MNT" >/dev/null || { echo "space.sh: the rebuild did not finish" >&2; exit 1; }
sync
spare=$(kib "$WORK/spare/data")
echo "== member $LAST failed, a spare rebuilt it: spare $spare KiB, the lost member held $lost KiB"
diff -r "$TREE" "$MNT/tree" >/dev/null && echo "contents identical after the rebuild"
