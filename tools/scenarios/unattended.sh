#!/usr/bin/env bash
# Scenario: a RAID 6 of six members with SIZE_MIB of files, two hot spares
# (given at create time), a short scrub interval and an event program. After
# the mount nothing is typed but the faults themselves; each phase waits for
# the array to come back to clean by itself:
#   1. bytes flipped in data and parity chunks of two members while idle:
#      the scheduled scrub repairs every one, and the next scrub finds nothing;
#   2. one member's reads fail at a rate (raidctl inject --rate): it is failed
#      once its read-error budget is spent, and the first spare is rebuilt;
#   3. another member's directory is deleted while idle: the monitor fails it,
#      and the second spare is rebuilt.
# Then every file is checked, the status and the event program's log are
# shown, and what a running scrub costs a concurrent fio read is measured.
#   tools/scenarios/unattended.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/deps.sh
raidfs_install_deps bc fio
SIZE_MIB="${1:-1024}"
INTERVAL=20
BIN="$(raidfs_release_bin)"
WORK="$(mktemp -d /tmp/raidfs-unattended.XXXXXX)"
MNT="$WORK/mnt"
PID=""
cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
MEMBERS=(); for i in 0 1 2 3 4 5; do MEMBERS+=("$WORK/d$i"); done
mkdir -p "$MNT" "$WORK/src" "${MEMBERS[@]}" "$WORK/spare0" "$WORK/spare1"
FILES=16
for i in $(seq -w 1 $FILES); do head -c $(((SIZE_MIB / FILES) << 20)) /dev/urandom > "$WORK/src/f$i"; done
(cd "$WORK/src" && sha256sum f* > ../sums)

"$BIN/raidctl" create --level 6 --chunk 128K --spare "$WORK/spare0" --spare "$WORK/spare1" "${MEMBERS[@]}" >/dev/null
EVENTS="$WORK/events.jsonl"
# Spares are named to the mount with the members (roles come from the superblocks).
"$BIN/raidfs" "$(IFS=:; echo "${MEMBERS[*]}"):$WORK/spare0:$WORK/spare1" "$MNT" -f \
    -o "auto_unmount,scrub_interval=${INTERVAL}s,event_program=cat >> $EVENTS" 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
cp -r "$WORK/src/." "$MNT/"
sync

status() { "$BIN/raidctl" status --json "$MNT"; }
field() { python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
# Waits until the Python expression over the status `s` is true; prints seconds waited.
wait_for() {
    local t0; t0=$(date +%s.%N)
    for _ in $(seq 3000); do
        [ "$(status | field "$1")" = True ] && { echo "$(date +%s.%N) - $t0" | bc; return; }
        sleep 0.2
    done
    echo "timed out waiting for: $1" >&2; exit 1
}

echo "== phase 1: flip bytes in data and parity chunks of members 1 and 4 while idle"
flips=$(python3 - "$WORK" <<'EOF'
import os, sys
work = sys.argv[1]
n, chunk, header, table = 6, 128 << 10, 4096, 4096
group = table + 512 * chunk
flips = 0
for f in ["f01", "f05", "f09", "f13"]:
    size = os.path.getsize(os.path.join(work, "src", f))
    stripes = size // (4 * chunk)
    for role in (1, 4):
        done = set()
        for s in range(stripes):
            p = (n - 1) - s % n
            kind = "parity" if role in (p, (p + 1) % n) else "data"
            if kind in done:
                continue
            done.add(kind)
            off = header + (s // 512) * group + table + (s % 512) * chunk + 4000
            with open(os.path.join(work, f"d{role}", "data", f), "r+b") as fh:
                fh.seek(off); b = fh.read(1); fh.seek(off); fh.write(bytes([b[0] ^ 0x42]))
            flips += 1
print(flips)
EOF
)
t_flip=$(date +%s)
echo "$flips chunks damaged (a data and a parity chunk of four files on each of two members)"
p1=$(wait_for "(s['scrub'].get('lastFinishedAt') or 0) > $t_flip and s['scrub']['lastResult']['repaired'] == $flips")
first=$(status | field "s['scrub']['lastFinishedAt']")
p1b=$(wait_for "(s['scrub'].get('lastFinishedAt') or 0) > $first and not s['scrub']['running']")
echo "scheduled scrub repaired $flips of $flips; the next found $(status | field "s['scrub']['lastResult']['problems']") problems"
printf "phase 1: %.0f s until the scheduled scrub repaired everything, %.0f s more until the next came up clean\n" "$p1" "$p1b"
grep -o '"kind":"scrub-finished","message":"[^"]*' "$EVENTS" | tail -2 | sed 's/.*message":"/  /'

echo "== phase 2: member 2's reads fail at a rate of 0.5"
"$BIN/raidctl" inject --rate 0.5 "$MNT" 2 eio-read
p2=$(wait_for "s['state'] == 'clean' and s['members'][2]['path'] == '$WORK/spare0'")
printf "phase 2: %.0f s until member 2 spent its read-error budget and spare0 was rebuilt (by the next scheduled scrub's reads)\n" "$p2"

echo "== phase 3: member 3's directory is deleted while idle"
for _ in $(seq 20); do rm -rf "${MEMBERS[3]}" 2>/dev/null && break; sleep 0.05; done
p3=$(wait_for "s['state'] == 'clean' and s['members'][3]['path'] == '$WORK/spare1'")
printf "phase 3: %.0f s until the monitor failed it and spare1 was rebuilt\n" "$p3"

echo "== every byte"
sync; echo 3 > /proc/sys/vm/drop_caches
(cd "$MNT" && sha256sum -c --quiet "$WORK/sums") && echo "PASS: all $FILES files identical"
"$BIN/raidctl" status "$MNT" || true
echo "== the event program received:"
python3 - "$EVENTS" <<'EOF'
import collections, json, sys
kinds = collections.Counter(json.loads(l)["kind"] for l in open(sys.argv[1]) if l.strip())
for k, v in sorted(kinds.items()):
    print(f"  {v:4d} {k}")
need = ["scrub-repaired", "member-failed", "spare-activated", "rebuild-finished", "scrub-finished"]
missing = [k for k in need if kinds[k] == 0]
print("PASS: every failure, repair and rebuild reached the event program" if not missing and kinds["member-failed"] >= 2 and kinds["rebuild-finished"] >= 2 else f"FAIL: missing {missing}")
EOF

echo "== what a running scrub costs a concurrent reader (fio 1M sequential reads of one file, 15 s)"
fio_read() {
    echo 3 > /proc/sys/vm/drop_caches
    fio --name=r --filename="$MNT/f01" --rw=read --bs=1M --ioengine=psync --runtime=15 --time_based \
        --output-format=terse --terse-version=3 | awk -F';' '{ printf "%.0f", $7 / 1024 }'
}
alone=$(fio_read)
# Measurement only: keep a scrub running for the whole fio run.
( while :; do "$BIN/raidctl" scrub "$MNT" >/dev/null 2>&1 || true; sleep 0.1; done ) &
SPID=$!
during=$(fio_read)
kill "$SPID"; wait "$SPID" 2>/dev/null || true
"$BIN/raidctl" scrub --stop "$MNT" >/dev/null 2>&1 || true
scrubs=$(grep -c '"kind":"scrub-finished"\|"kind":"scrub-stopped"' "$EVENTS")
echo "fio read: ${alone} MiB/s alone, ${during} MiB/s with scrubs running throughout ($scrubs scrubs ended so far; a scrub pauses while users read)"
