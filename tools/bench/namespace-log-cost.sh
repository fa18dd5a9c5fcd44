#!/usr/bin/env bash
# What logging namespace changes in the write-intent log costs: the same
# tree operations on a RAID 5 and a RAID 6 mount with the log on and off,
# in one run. Seconds, lower is better.
#   tools/bench/namespace-log-cost.sh [FILES] [DIRS]
#   FILES files created in one directory; DIRS directories of 4 files each
#   (each new directory is logged once: the worst case per file).
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES="${1:-5000}"
DIRS="${2:-500}"
source tools/bench/array-lib.sh
bench_setup bc

seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); printf "%.2f" "$(echo "$t1 - $t0" | bc)"; }
create_flat() { ( cd "$MNT/flat" && for i in $(seq "$FILES"); do : > "f$i"; done ); }
create_dirs() { ( cd "$MNT/tree" && for i in $(seq "$DIRS"); do mkdir "d$i" && : > "d$i/a" && : > "d$i/b" && : > "d$i/c" && : > "d$i/e"; done ); }
remove_all() { rm -rf "$MNT/flat" "$MNT/tree"; }

printf "%-8s %-4s %16s %18s %10s\n" level log "$FILES in one dir" "$DIRS dirs x 4 files" "rm -rf"
for spec in "5 4" "6 6"; do
    set -- $spec
    for log in on off; do
        mount_array "$1" "$2" "$log"
        mkdir "$MNT/flat" "$MNT/tree"
        a=$(seconds create_flat); b=$(seconds create_dirs); c=$(seconds remove_all)
        unmount_array
        printf "RAID %-3s %-4s %16s %18s %10s\n" "$1" "$log" "$a" "$b" "$c"
    done
done
