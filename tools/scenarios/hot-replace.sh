#!/usr/bin/env bash
# Scenario: a member of a RAID 5 of four (or RAID 6 of six) starts failing
# its reads, passes its error budget and is degraded, not failed; a spare
# is added and replaces it by hot replace while the member keeps serving.
# Prints how long the hot replace of SIZE_MIB took beside the raw copy rate
# of the backing directories, then checks every byte and that the member
# was never failed.
#   tools/scenarios/hot-replace.sh [SIZE_MIB] [--level 5|6]   (default 1024, 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/deps.sh
raidfs_install_deps bc
SIZE_MIB=1024; LEVEL=5
while [ $# -gt 0 ]; do
    case "$1" in
        --level) LEVEL="$2"; shift 2 ;;
        [0-9]*) SIZE_MIB="$1"; shift ;;
        *) echo "usage: $0 [SIZE_MIB] [--level 5|6]" >&2; exit 64 ;;
    esac
done
case "$LEVEL" in
    6) N=6 ;;
    5) N=4 ;;
    *) echo "hot-replace.sh: --level must be 5 or 6" >&2; exit 64 ;;
esac
BIN="$(raidfs_release_bin)"
raidfs_scenario_work hot-replace
MEMBERS=(); for i in $(seq 0 $((N - 1))); do MEMBERS+=("$WORK/d$i"); done
mkdir -p "$MNT" "$WORK/src" "$WORK/spare" "${MEMBERS[@]}"
raidfs_random_files "$WORK" "$SIZE_MIB"

raidfs_raw_copy_rate "$WORK" "$SIZE_MIB"
raw="$RAW_MIBS"

"$BIN/raidctl" create --level "$LEVEL" "${MEMBERS[@]}" >/dev/null
"$BIN/raidfs" "$(IFS=:; echo "${MEMBERS[*]}")" "$MNT" -f -o auto_unmount,max_read_errors=5 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
cp -r "$WORK/src/." "$MNT/"
sync

echo "== member 1 fails its reads (budget 5 per hour): degraded, still serving"
"$BIN/raidctl" inject "$MNT" 1 eio-read --count 20 >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches
(cd "$MNT" && sha256sum -c --quiet "$WORK/sums")
status=$("$BIN/raidctl" status --json "$MNT" || true)   # exit 1: degraded
state=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["members"][1]["state"])' "$status")
echo "member 1: $state"
[ "$state" = degraded ] || { echo "FAIL: member 1 is $state, not degraded"; exit 1; }

echo "== a spare replaces it by hot replace (caches dropped)"
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s.%N)
"$BIN/raidctl" add "$MNT" "$WORK/spare"
for _ in $(seq 36000); do
    if "$BIN/raidctl" events "$MNT" | grep -q "member-replaced member 1"; then break; fi
    sleep 0.1
done
t1=$(date +%s.%N)
"$BIN/raidctl" events "$MNT" | grep -q "member-replaced member 1" || { echo "FAIL: no hot replace"; exit 1; }
secs=$(echo "$t1 - $t0" | bc -l)
printf "hot replace of %d MiB: %.1f s = %.0f MiB/s of array data (raw copy: %.0f MiB/s)\n" \
    "$SIZE_MIB" "$secs" "$(echo "$SIZE_MIB / $secs" | bc -l)" "$raw"
if "$BIN/raidctl" events "$MNT" | grep -q "member-failed"; then echo "FAIL: a member was failed"; exit 1; fi
"$BIN/raidctl" status "$MNT" | sed -n '1,12p' || true
sync; echo 3 > /proc/sys/vm/drop_caches
(cd "$MNT" && sha256sum -c --quiet "$WORK/sums") && echo "every byte right after the hot replace"
