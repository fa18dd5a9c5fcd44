#!/usr/bin/env bash
# Scenario: a six-member RAID 6 holding SIZE_MIB of random files while a
# writer keeps writing; fail two members, add two empty directories, wait for
# the array to return to clean by itself, then check every byte. Prints the
# rebuild rate beside the raw copy rate of the backing directories (cp -r).
#   tools/scenarios/rebuild.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/deps.sh
raidfs_install_deps bc
SIZE_MIB="${1:-1024}"
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-rebuild.XXXXXX)"
MNT="$WORK/mnt"
PID=""; WPID=""
cleanup() {
    [ -n "$WPID" ] && { kill "$WPID" 2>/dev/null || true; wait "$WPID" 2>/dev/null || true; }
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT" "$WORK/src" "$WORK"/d{0..5} "$WORK/spare0" "$WORK/spare1"
FILES=16
PER=$((SIZE_MIB / FILES))
for i in $(seq -w 1 $FILES); do head -c $((PER << 20)) /dev/urandom > "$WORK/src/f$i"; done
(cd "$WORK/src" && sha256sum f* > ../sums)

echo "== raw copy rate of the backing directories (cp -r, caches dropped)"
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s.%N); cp -r "$WORK/src" "$WORK/copy"; sync; t1=$(date +%s.%N)
raw=$(echo "$SIZE_MIB / ($t1 - $t0)" | bc -l)
rm -rf "$WORK/copy"
printf "cp -r: %d MiB in %.1f s = %.0f MiB/s\n" "$SIZE_MIB" "$(echo "$t1 - $t0" | bc -l)" "$raw"

"$BIN/raidctl" create --level 6 "$WORK"/d{0..5} >/dev/null
"$BIN/raidfs" "$WORK/d0:$WORK/d1:$WORK/d2:$WORK/d3:$WORK/d4:$WORK/d5" "$MNT" -f -o auto_unmount 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
cp -r "$WORK/src/." "$MNT/"
sync

# The writer: appends 1 MiB blocks of a known stream until stopped.
head -c $((64 << 20)) /dev/urandom > "$WORK/stream"
( i=0; while :; do dd if="$WORK/stream" of="$MNT/live" bs=1M skip=$((i % 64)) seek=$i count=1 conv=notrunc,fsync status=none || exit 1; i=$((i + 1)); done ) &
WPID=$!
sleep 1

echo "== fail two members, add two empty directories (caches dropped first, as for cp -r)"
sync; echo 3 > /proc/sys/vm/drop_caches
"$BIN/raidctl" fail "$MNT" 1
"$BIN/raidctl" fail "$MNT" 4
"$BIN/raidctl" status "$MNT" || true
t0=$(date +%s.%N)
"$BIN/raidctl" add "$MNT" "$WORK/spare0"
"$BIN/raidctl" add "$MNT" "$WORK/spare1"
rates=()
while :; do
    st=$("$BIN/raidctl" status --json "$MNT" || true)
    state=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' <<<"$st")
    [ "$state" = clean ] && break
    r=$(python3 -c 'import json,sys; s=json.load(sys.stdin)["rebuild"]; print(s["bytesPerSecond"] if s["running"] else "")' <<<"$st")
    [ -n "$r" ] && rates+=("$r")
    sleep 0.5
done
t1=$(date +%s.%N)
kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=""
"$BIN/raidctl" status "$MNT"
elapsed=$(echo "$t1 - $t0" | bc -l)
printf "rebuilt 2 roles of %d MiB of files in %.1f s: %.0f MiB/s per role (the two roles are rebuilt one after the other)\n" \
    "$SIZE_MIB" "$elapsed" "$(echo "2 * $SIZE_MIB / $elapsed" | bc -l)"
"$BIN/raidctl" events "$MNT" | grep rebuild-finished

echo "== every byte"
echo 3 > /proc/sys/vm/drop_caches
(cd "$MNT" && sha256sum -c --quiet "$WORK/sums") && echo "PASS: all $FILES files identical"
blocks=$(( $(stat -c %s "$MNT/live") >> 20 ))
ok=1
for b in $(seq 0 $((blocks - 1))); do
    cmp -s <(dd if="$MNT/live" bs=1M skip=$b count=1 status=none) <(dd if="$WORK/stream" bs=1M skip=$((b % 64)) count=1 status=none) || { ok=0; echo "live block $b differs"; break; }
done
[ $ok = 1 ] && echo "PASS: the writer's $blocks MiB written during the rebuild are intact"
