#!/usr/bin/env bash
# What a small-file copy costs a real disk: flushes and system calls per
# file in the daemon, for raidfs (counted by strace and by its own
# counters, `raidctl iostat`) beside libfuse's passthrough_ll (strace),
# members and backing in one directory of this machine's disk.
#   tools/bench/syscalls.sh [SOURCE_DIR] [LEVEL MEMBERS]
# (default /usr/include/linux, RAID 5 of four). Each filesystem is
# measured with `rsync -a SOURCE_DIR MNT/` under `strace -f` of its daemon;
# the system calls on /dev/fuse (the requests themselves) are left out.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC="${1:-/usr/include/linux}"
LEVEL="${2:-5}"
N="${3:-4}"
source tools/bench/array-lib.sh
bench_setup strace rsync
EX=/usr/share/doc/libfuse3-dev/examples
for f in passthrough_ll.c passthrough_helpers.h; do
    if [ -f "$EX/$f" ]; then cp "$EX/$f" "$WORK/"; else zcat "$EX/$f.gz" >"$WORK/$f"; fi
done
gcc -O2 -Wall -Wno-unused-result "$WORK/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$WORK/passthrough_ll"
FILES=$(find "$SRC" -type f | wc -l)

# strace_counts TRACE: "SYSCALLS FLUSHES", leaving out /dev/fuse and the
# second half of calls strace split across threads.
strace_counts() {
    grep -v -e '/dev/fuse' -e 'resumed>' -e '^[0-9]* +++' -e '^[0-9]* ---' "$1" |
        awk '{ n++ } /(fsync|fdatasync|syncfs)\(/ { f++ } END { printf "%d %d\n", n, f }'
}

# member_counts: "SYSCALLS FLUSHES" over every member, from status --json.
member_counts() {
    "$BIN/raidctl" status --json "$MNT" | python3 -c '
import json, sys
ms = [m["io"] for m in json.load(sys.stdin)["members"] if "io" in m]
ops = sum(m[k] for m in ms for k in ("opens", "reads", "writes", "flushes", "xattrs", "renames", "other"))
print(ops, sum(m["flushes"] for m in ms))'
}

traced_rsync() { # PID -> strace counts of the daemon over the copy
    strace -f -qq -y -o "$WORK/trace" -p "$1" &
    local tracer=$!
    sleep 1
    rsync -a "$SRC" "$MNT/"
    sleep 0.5
    kill -INT "$tracer"; wait "$tracer" || true
    strace_counts "$WORK/trace"
}

per_file() { awk -v n="$1" -v f="$FILES" 'BEGIN { printf "%.2f", n / f }'; }

mkdir -p "$WORK/plain"
"$WORK/passthrough_ll" -f -o source="$WORK/plain" "$MNT" 2>/dev/null &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
read -r pt_calls pt_flushes < <(traced_rsync "$PID")
fusermount3 -u "$MNT"; wait "$PID" || true; PID=""

mount_array "$LEVEL" "$N" on
read -r c0 f0 < <(member_counts)
read -r rf_calls rf_flushes < <(traced_rsync "$PID")
read -r c1 f1 < <(member_counts)
unmount_array

echo "rsync -a $SRC ($FILES files), members and backing on $(stat -f -c %T "$WORK")"
printf "%-34s %14s %14s\n" "" "syscalls/file" "flushes/file"
printf "%-34s %14s %14s\n" "passthrough_ll (strace)" "$(per_file "$pt_calls")" "$(per_file "$pt_flushes")"
printf "%-34s %14s %14s\n" "raidfs RAID $LEVEL x$N (strace)" "$(per_file "$rf_calls")" "$(per_file "$rf_flushes")"
printf "%-34s %14s %14s\n" "raidfs RAID $LEVEL x$N (its counters)" "$(per_file $((c1 - c0)))" "$(per_file $((f1 - f0)))"
