#!/usr/bin/env bash
# Scenario: a six-member RAID 6 (or four-member RAID 5) holding SIZE_MIB of
# random files while a writer keeps writing; lose two members (one on RAID
# 5), wait for the array to return to clean by itself, then check every
# byte. Prints the rebuild rate beside the raw copy rate of the backing
# directories (cp -r).
#   tools/scenarios/rebuild.sh [SIZE_MIB] [--level 5|6] [--failover]
# Default: fail the members, then add empty directories (add starts the
# rebuild). --failover: hot spares are attached first; the first member is
# failed with raidctl fail, the second one's directory is deleted while the
# array serves, and nothing else is typed: the spares take over by themselves.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/deps.sh
raidfs_install_deps bc
SIZE_MIB=1024; LEVEL=6; FAILOVER=0
while [ $# -gt 0 ]; do
    case "$1" in
        --level) LEVEL="$2"; shift 2 ;;
        --failover) FAILOVER=1; shift ;;
        [0-9]*) SIZE_MIB="$1"; shift ;;
        *) echo "usage: $0 [SIZE_MIB] [--level 5|6] [--failover]" >&2; exit 64 ;;
    esac
done
case "$LEVEL" in
    6) N=6; LOST=(1 4) ;;
    5) N=4; LOST=(1) ;;
    *) echo "rebuild.sh: --level must be 5 or 6" >&2; exit 64 ;;
esac
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
MEMBERS=(); for i in $(seq 0 $((N - 1))); do MEMBERS+=("$WORK/d$i"); done
SPARES=(); for i in "${!LOST[@]}"; do SPARES+=("$WORK/spare$i"); done
mkdir -p "$MNT" "$WORK/src" "${MEMBERS[@]}" "${SPARES[@]}"
raidfs_random_files "$WORK" "$SIZE_MIB"

raidfs_raw_copy_rate "$WORK" "$SIZE_MIB"
raw="$RAW_MIBS"

"$BIN/raidctl" create --level "$LEVEL" "${MEMBERS[@]}" >/dev/null
"$BIN/raidfs" "$(IFS=:; echo "${MEMBERS[*]}")" "$MNT" -f -o auto_unmount 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
cp -r "$WORK/src/." "$MNT/"
sync

# The writer: appends 1 MiB blocks of a known stream until stopped.
head -c $((64 << 20)) /dev/urandom > "$WORK/stream"
( i=0; while :; do dd if="$WORK/stream" of="$MNT/live" bs=1M skip=$((i % 64)) seek=$i count=1 conv=notrunc,fsync status=none || exit 1; i=$((i + 1)); done ) &
WPID=$!
sleep 1

if [ $FAILOVER = 1 ]; then
    echo "== ${#SPARES[@]} hot spare(s) attached; lose ${#LOST[@]} member(s) (caches dropped first, as for cp -r)"
    for s in "${SPARES[@]}"; do "$BIN/raidctl" add "$MNT" "$s"; done
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(date +%s.%N)
    "$BIN/raidctl" fail "$MNT" "${LOST[0]}"
    # The second member dies: its directory is deleted; no command follows.
    if [ ${#LOST[@]} -gt 1 ]; then
        # (the daemon may still append to it while it goes: try again)
        for _ in $(seq 20); do rm -rf "${MEMBERS[${LOST[1]}]}" 2>/dev/null && break; sleep 0.05; done
    fi
else
    echo "== fail ${#LOST[@]} member(s), add as many empty directories (caches dropped first, as for cp -r)"
    sync; echo 3 > /proc/sys/vm/drop_caches
    for r in "${LOST[@]}"; do "$BIN/raidctl" fail "$MNT" "$r"; done
    "$BIN/raidctl" status "$MNT" || true
    t0=$(date +%s.%N)
    for s in "${SPARES[@]}"; do "$BIN/raidctl" add "$MNT" "$s"; done
fi
rates=()
while :; do
    st=$("$BIN/raidctl" status --json "$MNT" || true)
    # Done when clean with every spare in a role (the health monitor may
    # not have noticed a deleted member yet).
    state=$(python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["state"] + ("" if not s["spares"] else "+spares"))' <<<"$st")
    [ "$state" = clean ] && break
    r=$(python3 -c 'import json,sys; s=json.load(sys.stdin)["rebuild"]; print(s["bytesPerSecond"] if s["running"] else "")' <<<"$st")
    [ -n "$r" ] && rates+=("$r")
    sleep 0.1
done
t1=$(date +%s.%N)
kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=""
"$BIN/raidctl" status "$MNT"
elapsed=$(echo "$t1 - $t0" | bc -l)
printf "from the failure to clean: %d role(s) of %d MiB of files rebuilt in %.1f s, %.0f MiB/s per role (the roles in one pass)\n" \
    "${#LOST[@]}" "$SIZE_MIB" "$elapsed" "$(echo "${#LOST[@]} * $SIZE_MIB / $elapsed" | bc -l)"
"$BIN/raidctl" events "$MNT" | grep -E "member-failed|spare-activated|rebuild-finished"

echo "== every byte"
echo 3 > /proc/sys/vm/drop_caches
(cd "$MNT" && sha256sum -c --quiet "$WORK/sums") && echo "PASS: all 16 files identical"
blocks=$(( $(stat -c %s "$MNT/live") >> 20 ))
ok=1
for b in $(seq 0 $((blocks - 1))); do
    cmp -s <(dd if="$MNT/live" bs=1M skip=$b count=1 status=none) <(dd if="$WORK/stream" bs=1M skip=$((b % 64)) count=1 status=none) || { ok=0; echo "live block $b differs"; break; }
done
[ $ok = 1 ] && echo "PASS: the writer's $blocks MiB written during the rebuild are intact"
