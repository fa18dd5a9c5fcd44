#!/usr/bin/env bash
# raidfs beside its peers, in one run, on the same backing directories:
# mergerfs pooling the same directories (no redundancy) and libfuse's
# passthrough example over one of them (a plain FUSE filesystem). fio with
# psync: sequential 1 MiB writes (end_fsync) and reads, random 4 KiB writes
# and reads; reads after dropping the page cache. Prints MiB/s.
#   tools/bench/fio-compare.sh [SIZE_MIB] [RUNTIME_S] [LEVEL] [MEMBERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB="${1:-512}"
RUNTIME="${2:-20}"
LEVEL="${3:-6}"
MEMBERS="${4:-6}"
[ "$(id -u)" = 0 ] || { echo "$0: dropping the page cache needs root"; exit 64; }
source tools/deps.sh
raidfs_install_deps fio mergerfs
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-fio.XXXXXX)"
MNT="$WORK/mnt"
cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT"

raidfs_build_passthrough "$WORK/passthrough"

DIRS=$(seq -f "$WORK/d%g" 0 $((MEMBERS - 1)))
fresh_dirs() { rm -rf $DIRS; mkdir -p $DIRS; }
wait_mount() { for _ in $(seq 100); do mountpoint -q "$MNT" && return; sleep 0.1; done; echo "mount failed"; exit 1; }
unmount() { fusermount3 -u "$MNT"; for _ in $(seq 100); do mountpoint -q "$MNT" || return 0; sleep 0.1; done; }

# Each mount_X leaves the filesystem under test mounted at $MNT and sets
# TARGET to the directory fio works in.
mount_raidfs() {
    fresh_dirs
    "$BIN/raidctl" create --level "$LEVEL" $DIRS >/dev/null
    "$BIN/raidfs" "$(echo $DIRS | tr ' ' :)" "$MNT"
    wait_mount; TARGET="$MNT"
}
mount_mergerfs() {
    fresh_dirs
    mergerfs -o cache.files=off,category.create=mfs,fsname=bench "$(echo $DIRS | tr ' ' :)" "$MNT"
    wait_mount; TARGET="$MNT"
}
mount_passthrough() {
    fresh_dirs
    "$WORK/passthrough" "$MNT"
    wait_mount; TARGET="$MNT$WORK/d0"
}

fio_mib() { # rw bs field(48 write bw, 7 read bw)
    sync; echo 3 > /proc/sys/vm/drop_caches
    fio --name=bench --directory="$TARGET" --filename=bench.dat --rw="$1" --bs="$2" --size="${SIZE_MIB}M" \
        --runtime="$RUNTIME" --ioengine=psync --end_fsync=1 --numjobs=1 --output-format=terse --terse-version=3 \
        | awk -F';' -v f="$3" '{ printf "%.0f", $f / 1024 }'
}

printf "%-22s %12s %12s %12s %12s\n" "filesystem" "seq write" "seq read" "rand write" "rand read"
for fs in raidfs mergerfs passthrough; do
    "mount_$fs"
    sw=$(fio_mib write 1M 48)
    sr=$(fio_mib read 1M 7)
    rw=$(fio_mib randwrite 4k 48)
    rr=$(fio_mib randread 4k 7)
    unmount
    label=$fs
    [ "$fs" = raidfs ] && label="raidfs RAID $LEVEL x$MEMBERS"
    [ "$fs" = mergerfs ] && label="mergerfs x$MEMBERS"
    printf "%-22s %12s %12s %12s %12s\n" "$label" "$sw" "$sr" "$rw" "$rr"
done
echo "(MiB/s; ${SIZE_MIB} MiB file, at most ${RUNTIME} s per cell, fio psync, reads after drop_caches)"
