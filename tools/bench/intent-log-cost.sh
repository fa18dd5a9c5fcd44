#!/usr/bin/env bash
# What the write-intent log costs: fio sequential (1 MiB) and random (4 KiB)
# writes on a RAID 5 and a RAID 6 mount, with the log on and off, in one run.
#   tools/bench/intent-log-cost.sh [SIZE_MIB] [RUNTIME_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB="${1:-512}"
RUNTIME="${2:-20}"
source tools/deps.sh
raidfs_install_deps fio
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-bench.XXXXXX)"
MNT="$WORK/mnt"
PID=""
cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT"

mount_array() { # level members log
    rm -rf "$WORK"/d*; mkdir -p $(seq -f "$WORK/d%g" 0 $(($2 - 1)))
    "$BIN/raidctl" create --level "$1" $(seq -f "$WORK/d%g" 0 $(($2 - 1))) >/dev/null
    "$BIN/raidfs" "$(seq -f "$WORK/d%g" -s: 0 $(($2 - 1)))" "$MNT" -f -o "auto_unmount,intent_log=$3" 2>/dev/null &
    PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && return; sleep 0.1; done
    echo "mount failed"; exit 1
}
unmount_array() { fusermount3 -u "$MNT"; wait "$PID" || true; PID=""; }

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
