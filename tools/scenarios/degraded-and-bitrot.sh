#!/usr/bin/env bash
# Scenario: a six-member RAID 6 survives (1) two member directories deleted
# with rm -rf while mounted and (2) random bytes flipped in the largest file
# of two members, repaired by the first read. Also times sequential dd
# through the mount beside the same dd on the backing directory.
#   tools/scenarios/degraded-and-bitrot.sh [SIZE_MIB]   (default 256)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/deps.sh
raidfs_install_deps bc
SIZE_MIB="${1:-256}"
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-scenario.XXXXXX)"
MNT="$WORK/mnt"
PIDS=()
cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT"

new_array() {
    rm -rf "$WORK"/d* && mkdir -p "$WORK"/d{0..5}
    "$BIN/raidctl" create --level 6 "$WORK"/d{0..5} >/dev/null
    "$BIN/raidfs" "$WORK/d0:$WORK/d1:$WORK/d2:$WORK/d3:$WORK/d4:$WORK/d5" "$MNT" -f -o auto_unmount 2>"$WORK/log" &
    PIDS+=($!)
    for _ in $(seq 100); do mountpoint -q "$MNT" && return; sleep 0.1; done
    echo "mount failed: $(cat "$WORK/log")"; exit 1
}
stop_array() {
    fusermount3 -u "$MNT"
    wait "${PIDS[-1]}"
}

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/src"
sum="$(sha256sum < "$WORK/src")"

echo "== 1. rm -rf two members while mounted"
new_array
cp "$WORK/src" "$MNT/file"; sync
rm -rf "$WORK/d1" "$WORK/d4"
echo 3 > /proc/sys/vm/drop_caches
[ "$(sha256sum < "$MNT/file")" = "$sum" ] && echo "PASS: ${SIZE_MIB} MiB reads back identical with d1 and d4 deleted"
stop_array

echo "== 2. random bytes flipped in the largest file of two members"
new_array
cp "$WORK/src" "$MNT/file"; sync
python3 - "$WORK/d2/data/file" "$WORK/d5/data/file" <<'PY'
import os, random, sys
random.seed(1)
for path in sys.argv[1:]:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for _ in range(64):
            off = random.randrange(4096, size)
            f.seek(off); b = f.read(1)
            f.seek(off); f.write(bytes([b[0] ^ 0xFF]))
print("flipped 64 random bytes in each of", len(sys.argv) - 1, "member files")
PY
echo 3 > /proc/sys/vm/drop_caches
first_before=$(grep -c "checksum mismatch" "$WORK/log" || true)
[ "$(sha256sum < "$MNT/file")" = "$sum" ] && echo "PASS: first read identical"
first=$(( $(grep -c "checksum mismatch" "$WORK/log" || true) - first_before ))
repaired=$(grep -c "rewrote" "$WORK/log" || true)
echo 3 > /proc/sys/vm/drop_caches
[ "$(sha256sum < "$MNT/file")" = "$sum" ] && echo "PASS: second read identical"
second=$(( $(grep -c "checksum mismatch" "$WORK/log" || true) - first - first_before ))
echo "checksum mismatches: first read $first, chunks rewritten $repaired, second read $second"
[ "$second" -eq 0 ] && echo "PASS: second read found every flipped chunk already repaired"

echo "== 3. sequential throughput (dd bs=1M, conv=fsync; reads after drop_caches)"
dd_rate() { grep -o '[0-9.]* [MG]B/s' | tail -1; }
W=$(dd if=/dev/zero of="$MNT/dd" bs=1M count="$SIZE_MIB" conv=fsync 2>&1 | dd_rate)
echo 3 > /proc/sys/vm/drop_caches
R=$(dd if="$MNT/dd" of=/dev/null bs=1M 2>&1 | dd_rate)
mkdir -p "$WORK/plain"
PW=$(dd if=/dev/zero of="$WORK/plain/dd" bs=1M count="$SIZE_MIB" conv=fsync 2>&1 | dd_rate)
echo 3 > /proc/sys/vm/drop_caches
PR=$(dd if="$WORK/plain/dd" of=/dev/null bs=1M 2>&1 | dd_rate)
echo "raidfs RAID 6 (6 members): write $W, read $R"
echo "backing directory:         write $PW, read $PR"
stop_array
