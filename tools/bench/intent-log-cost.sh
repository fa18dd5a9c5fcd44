#!/usr/bin/env bash
# What the write-intent log costs: fio sequential (1 MiB) and random (4 KiB)
# writes on a RAID 5 and a RAID 6 mount, with the log on and off, in one run.
#   tools/bench/intent-log-cost.sh [SIZE_MIB] [RUNTIME_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB="${1:-512}"
RUNTIME="${2:-20}"
source tools/bench/array-lib.sh
bench_setup fio

fio_bw() { # name rw bs
    fio --name="$1" --directory="$MNT" --rw="$2" --bs="$3" --size="${SIZE_MIB}M" --runtime="$RUNTIME" \
        --time_based=0 --ioengine=psync --end_fsync=1 --numjobs=1 --output-format=terse --terse-version=3 \
        | awk -F';' '{ printf "%.0f", $48 / 1024 }'   # write bandwidth, KiB/s -> MiB/s
}

printf "%-8s %-9s %14s %14s\n" level log "seq 1M MiB/s" "rand 4K MiB/s"
for spec in "5 5" "6 6"; do
    set -- $spec
    for log in on off; do
        mount_array "$1" "$2" "$log"
        seq=$(fio_bw seq write 1M)
        rm -f "$MNT"/seq*
        rnd=$(fio_bw rnd randwrite 4k)
        unmount_array
        printf "RAID %-3s %-9s %14s %14s\n" "$1" "$log" "$seq" "$rnd"
    done
done
