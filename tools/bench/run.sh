#!/usr/bin/env bash
# The benchmark suite: raidfs RAID 1, 5 and 6 (healthy, degraded, during a
# rebuild) beside mergerfs pooling the same directories, libfuse's
# passthrough_ll over the same backing, and the backing itself, in one run,
# each filesystem's rounds interleaved. Writes results.tsv, report.md and
# gnuplot PNGs to --out.
#
#   tools/bench/run.sh [--quick] [--backing tmpfs|DIR] [--out DIR]
#                      [--rounds N] [--fs LIST] [--only LIST]
#
# --fs: comma-separated filesystems (backing, passthrough_ll, mergerfs,
#   raid{1,5,6}, raid{1,5,6}-degraded, raid{1,5,6}-rebuilding).
# --only: comma-separated sections (fio, small, programs, pgbench, sweep,
#   maintenance, space, codec). tools/bench/run.sh --only programs --fs backing,passthrough_ll,mergerfs,raid5,raid6
#   is the real-program comparison on its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"

QUICK=0 BACKING=tmpfs OUT="" ROUNDS="" FS_LIST="" ONLY=""
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }
while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --backing) BACKING="${2:?--backing needs tmpfs or a directory}"; shift ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --rounds) ROUNDS="${2:?--rounds needs a number}"; shift ;;
    --fs) FS_LIST="${2:?--fs needs a list}"; shift ;;
    --only) ONLY="${2:?--only needs a list}"; shift ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (tmpfs backing, drop_caches)" >&2; exit 64; }
if [ "$BACKING" != tmpfs ]; then
    [ -d "$BACKING" ] || { echo "run.sh: --backing $BACKING: not a directory" >&2; exit 64; }
    BACKING="$(cd "$BACKING" && pwd)"
fi

# Sizes: --quick is a first look in a few minutes; the full run takes what
# it needs.
if ((QUICK)); then
    : "${ROUNDS:=1}"
    SEQ_MIB=256 RAND_MIB=64 RAND_S=5 SMALL_N=2000 SQL_TX=300 SWEEP="64 256" DATA_MIB=256 PREFILL_MIB=1024
    PG_SCALE=10 PG_SECONDS=10
    TREE=/usr/include/linux DOCS=/usr/share/doc/git GITSRC=/usr/include/linux
    DEFAULT_FS=backing,passthrough_ll,mergerfs,raid5,raid6,raid5-degraded,raid5-rebuilding
else
    : "${ROUNDS:=3}"
    SEQ_MIB=1024 RAND_MIB=256 RAND_S=6 SMALL_N=10000 SQL_TX=2000 SWEEP="64 256 1024 4096" DATA_MIB=2048 PREFILL_MIB=4096
    PG_SCALE=10 PG_SECONDS=30
    TREE=/usr/include DOCS=/usr/share/doc GITSRC=/usr/include/linux
    DEFAULT_FS=backing,passthrough_ll,mergerfs,raid1,raid5,raid6,raid1-degraded,raid5-degraded,raid6-degraded,raid1-rebuilding,raid5-rebuilding,raid6-rebuilding
fi
FS_LIST="${FS_LIST:-$DEFAULT_FS}"
ONLY="${ONLY:-fio,small,programs,pgbench,sweep,maintenance,space,codec}"
IFS=, read -r -a FILESYSTEMS <<<"$FS_LIST"
IFS=, read -r -a SECTIONS <<<"$ONLY"
for fs in "${FILESYSTEMS[@]}"; do
    [[ "$fs" =~ ^(backing|passthrough_ll|mergerfs|raid[156](-degraded|-rebuilding)?)$ ]] ||
        { echo "run.sh: --fs: unknown filesystem '$fs'" >&2; exit 64; }
done
for s in "${SECTIONS[@]}"; do
    [[ "$s" =~ ^(fio|small|programs|pgbench|sweep|maintenance|space|codec)$ ]] ||
        { echo "run.sh: --only: unknown section '$s'" >&2; exit 64; }
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
# The rebuild during the "-rebuilding" runs is held to this rate, as md's
# speed_limit_max holds it, so that it lasts through the workload.
REBUILD_RATE=50

source tools/deps.sh
raidfs_install_deps fio mergerfs gnuplot-nox rsync git sqlite3 gcc python3
if want pgbench; then
    raidfs_install_deps postgresql
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
echo "building raidfs (release)…" >&2
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

# The commit the binaries are built from, taken now: sources may change
# while a long run goes on.
COMMIT="$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- Sources Package.swift || echo ' (with local changes)')"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="${OUT:-$REPO/bench-results/$STAMP}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"
WORK="$(mktemp -d /tmp/raidfs-bench.XXXXXX)"
chmod 755 "$WORK"   # pgbench's server runs as postgres
MNT="$WORK/mnt"
BACK="$WORK/backing"
PID="" FSPID=""
mkdir -p "$MNT" "$BACK" "$WORK/tools"

PG_RUNNING=""   # the data directory of a pgbench server still up
cleanup() {
    set +e
    cd /
    [ -n "$PG_RUNNING" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_RUNNING" -m immediate -w stop >/dev/null 2>&1
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    [ -n "$FSPID" ] && kill "$FSPID" 2>/dev/null
    mountpoint -q "$BACK" && umount "$BACK"
    [ "$BACKING" != tmpfs ] && rm -rf "$BACK"   # its own directory in --backing DIR
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BACKING" = tmpfs ]; then
    mount -t tmpfs -o size=90% raidfs-bench "$BACK"
    BACKING_DESC="tmpfs"
else
    BACK="$(mktemp -d "$BACKING/raidfs-bench.XXXXXX")"
    chmod 755 "$BACK"
    BACKING_DESC="$BACKING ($(stat -f -c %T "$BACKING"))"
fi

echo "building the peers and helpers…" >&2
EX=/usr/share/doc/libfuse3-dev/examples
for f in passthrough_ll.c passthrough_helpers.h; do
    if [ -f "$EX/$f" ]; then cp "$EX/$f" "$WORK/tools/"; else zcat "$EX/$f.gz" >"$WORK/tools/$f"; fi
done
gcc -O2 -Wall -Wno-unused-result "$WORK/tools/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$WORK/tools/passthrough_ll"
gcc -O2 -Wall tools/bench/smallfiles.c -o "$WORK/tools/smallfiles"
gcc -O2 -Wall tools/bench/codec.c -lisal -o "$WORK/tools/codec"
{
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
    for _ in $(seq "$SQL_TX"); do echo "INSERT INTO t(v) VALUES (hex(randomblob(100)));"; done
} >"$WORK/tools/sqlite.sql"

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v mib="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", mib / (b - a) }'; }
record() { # section fs workload round value unit
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

# --- filesystems ----------------------------------------------------------
# fs_up FS leaves FS mounted (or, for backing, ready) and sets TARGET, the
# directory the workload uses; fs_down takes it away with its data.

wait_mount() {
    for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
    echo "run.sh: $1 did not mount at $MNT" >&2; exit 1
}
members() { seq -f "$BACK/d%g" 0 $(($1 - 1)); }
status_json() { "$BIN/raidctl" status "$MNT" --json 2>/dev/null || true; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

fs_up() {
    # allow_other: pgbench's server runs as postgres, not as the mounter.
    local fs="$1" level n opts="auto_unmount,allow_other"
    rm -rf "${BACK:?}"/*
    TARGET="$MNT" PID=""
    case "$fs" in
    backing) mkdir -p "$BACK/plain"; TARGET="$BACK/plain"; return ;;
    passthrough_ll)
        mkdir -p "$BACK/plain"
        "$WORK/tools/passthrough_ll" -f -o source="$BACK/plain",allow_other "$MNT" 2>/dev/null &
        PID=$!; wait_mount "$fs"; return ;;
    mergerfs)
        mkdir -p $(members 6)
        mergerfs -f -o category.create=mfs,fsname=mergerfs-bench,allow_other "$(members 6 | paste -sd:)" "$MNT" 2>/dev/null &
        PID=$!; wait_mount "$fs"; return ;;
    esac
    level="${fs:4:1}"
    case "$level" in 1) n=3 ;; 5) n=4 ;; 6) n=6 ;; esac
    mkdir -p $(members "$n")
    "$BIN/raidctl" create --level "$level" $(members "$n") >/dev/null
    [[ "$fs" == *-rebuilding ]] && opts+=",rebuild_rate=$REBUILD_RATE"
    "$BIN/raidfs" "$(members "$n" | paste -sd:)" "$MNT" -f -o "$opts,scrub_interval=0" 2>/dev/null &
    PID=$!; wait_mount "$fs"
    case "$fs" in
    *-degraded)
        "$BIN/raidctl" fail "$MNT" 1 >/dev/null
        [ "$level" = 6 ] && "$BIN/raidctl" fail "$MNT" 3 >/dev/null ;;
    *-rebuilding)
        # Data for the rebuild to cover, then a member lost and a spare in
        # its place: the workload runs while the rebuild does.
        fio --name=prefill --directory="$MNT" --rw=write --bs=1M --size="${PREFILL_MIB}M" \
            --ioengine=psync --output=/dev/null
        "$BIN/raidctl" fail "$MNT" 1 >/dev/null
        mkdir -p "$BACK/spare"
        "$BIN/raidctl" add "$MNT" "$BACK/spare" >/dev/null ;;
    esac
    return 0
}

# The daemon's peak resident set (VmHWM), and for a rebuilding array whether
# the rebuild was still running when the workload ended.
fs_down() { # fs section round
    local fs="$1" kib
    if [ -n "$PID" ]; then
        kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PID/status" 2>/dev/null || echo 0)
        record rss "$fs" "$2" "$3" "$kib" KiB
        if [[ "$fs" == *-rebuilding ]]; then
            record rebuilding "$fs" "$2" "$3" "$(status_json | json_field 'int(d["rebuild"]["running"])')" running
        fi
        fs_unmount
    fi
    rm -rf "${BACK:?}"/*
}

fs_unmount() {
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
    wait "$PID" 2>/dev/null || true
    PID=""
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# --- workloads ------------------------------------------------------------

fio_run() { # name rw bs size_mib jobs field [extra...]
    local name="$1" rw="$2" bs="$3" size="$4" jobs="$5" field="$6"
    shift 6
    fio --name="$name" --directory="$TARGET" --rw="$rw" --bs="$bs" --size="${size}M" --numjobs="$jobs" \
        --ioengine=psync --group_reporting --output-format=terse --terse-version=3 "$@" |
        awk -F';' -v f="$field" '{ print $f }'
}

# Sequential 1 MiB writes (end_fsync) and reads of one file per job, then
# random 4 KiB writes and reads on one file shared by the jobs, buffered and
# with O_DIRECT (as a database or VM image opens it); reads after dropping
# the page cache (with tmpfs backing, only the FUSE cache drops).
section_fio() { # fs round
    local jobs bw iops
    for jobs in 1 4; do
        bw=$(fio_run seq write 1M $((SEQ_MIB / jobs)) "$jobs" 48 --end_fsync=1)
        record fio "$1" "seq-write-${jobs}j" "$2" "$(echo "$bw" | awk '{ printf "%.1f", $1 / 1024 }')" MiB/s
        drop_caches
        bw=$(fio_run seq read 1M $((SEQ_MIB / jobs)) "$jobs" 7)
        record fio "$1" "seq-read-${jobs}j" "$2" "$(echo "$bw" | awk '{ printf "%.1f", $1 / 1024 }')" MiB/s
        rm -f "$TARGET"/seq.*
        iops=$(fio_run rand randwrite 4k "$RAND_MIB" "$jobs" 49 --filename=rand.dat --time_based --runtime="$RAND_S")
        record fio "$1" "rand-write-${jobs}j" "$2" "$iops" IOPS
        drop_caches
        iops=$(fio_run rand randread 4k "$RAND_MIB" "$jobs" 8 --filename=rand.dat --time_based --runtime="$RAND_S")
        record fio "$1" "rand-read-${jobs}j" "$2" "$iops" IOPS
        iops=$(fio_run rand randwrite 4k "$RAND_MIB" "$jobs" 49 --filename=rand.dat --time_based --runtime="$RAND_S" --direct=1)
        record fio "$1" "rand-write-direct-${jobs}j" "$2" "$iops" IOPS
        iops=$(fio_run rand randread 4k "$RAND_MIB" "$jobs" 8 --filename=rand.dat --time_based --runtime="$RAND_S" --direct=1)
        record fio "$1" "rand-read-direct-${jobs}j" "$2" "$iops" IOPS
        rm -f "$TARGET/rand.dat"
    done
}

section_small() { # fs round
    mkdir -p "$TARGET/small"
    "$WORK/tools/smallfiles" "$TARGET/small" "$SMALL_N" 4096 | while read -r op rate; do
        record small "$1" "$op" "$2" "$rate" ops/s
    done
}

timed() { # fs round workload command...
    local fs="$1" round="$2" name="$3" t0 t1
    shift 3
    t0=$(date +%s.%N)
    "$@" >"$WORK/last.log" 2>&1 || { echo "run.sh: $name failed on $fs: $*" >&2; tail -5 "$WORK/last.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    record programs "$fs" "$name" "$round" "$(elapsed "$t0" "$t1")" s
}

git_round() { # repo clone
    git -C "$1" add -A && git -C "$1" commit -qm bench && git -C "$1" gc -q &&
        git -C "$1" fsck --no-progress && git clone -q --no-hardlinks "$1" "$2"
}

sqlite_round() { sqlite3 "$TARGET/bench.db" <"$WORK/tools/sqlite.sql"; }

# Real programs, timed one by one: rsync of a source tree, cp -al and mv of
# it, a tar round trip, git commit/gc/fsck/clone, SQLite WAL transactions
# (one fsync'ed commit each), and rm -rf of all of it.
section_programs() { # fs round
    local T="$TARGET"
    timed "$1" "$2" rsync rsync -a "$TREE/" "$T/tree/"
    timed "$1" "$2" cp-al-mv sh -c "cp -al '$T/tree' '$T/links' && mv '$T/links' '$T/links-moved'"
    timed "$1" "$2" tar sh -c "tar -C '$DOCS' -cf '$T/doc.tar' . && mkdir '$T/doc' && tar -C '$T/doc' -xf '$T/doc.tar'"
    mkdir -p "$T/repo" && cp -r "$GITSRC/." "$T/repo/" && git -C "$T/repo" init -q &&
        git -C "$T/repo" config user.email bench@raidfs && git -C "$T/repo" config user.name bench
    timed "$1" "$2" git git_round "$T/repo" "$T/clone"
    timed "$1" "$2" sqlite sqlite_round
    timed "$1" "$2" rm-rf rm -rf "$T/tree" "$T/links-moved" "$T/doc" "$T/doc.tar" "$T/repo" "$T/clone" "$T/bench.db"
}

# PostgreSQL's pgbench: a server whose data directory is on the filesystem
# under test (its socket elsewhere), a database of scale PG_SCALE, then 4
# clients for PG_SECONDS (TPC-B-like, every commit fsync'ed); tps without
# the connections' time.
section_pgbench() { # fs round
    local data="$TARGET/pgdata" sock="$WORK/pgsock" tps
    local pg=(runuser -u postgres --)
    mkdir -p "$data" "$sock"
    chown postgres: "$data" "$sock"
    chmod 700 "$data"
    "${pg[@]}" "$PGBIN/initdb" -D "$data" -A trust >"$WORK/last.log" 2>&1 ||
        { echo "run.sh: initdb failed on $1" >&2; tail -5 "$WORK/last.log" >&2; exit 1; }
    "${pg[@]}" "$PGBIN/pg_ctl" -D "$data" -w -l "$sock/pg.log" \
        -o "-k $sock -p 5439 -c listen_addresses=''" start >/dev/null ||
        { echo "run.sh: postgres did not start on $1" >&2; tail -5 "$sock/pg.log" >&2; exit 1; }
    PG_RUNNING="$data"
    "${pg[@]}" "$PGBIN/pgbench" -h "$sock" -p 5439 -i -q -s "$PG_SCALE" postgres >"$WORK/last.log" 2>&1 &&
        tps=$("${pg[@]}" "$PGBIN/pgbench" -h "$sock" -p 5439 -c 4 -j 2 -T "$PG_SECONDS" postgres 2>>"$WORK/last.log" |
            awk '/^tps = / { print $3; exit }')
    "${pg[@]}" "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    PG_RUNNING=""
    [ -n "${tps:-}" ] || { echo "run.sh: pgbench failed on $1" >&2; tail -5 "$WORK/last.log" >&2; exit 1; }
    record pgbench "$1" "tps-4c" "$2" "$tps" tps
    rm -rf "$data"
}

section_sweep() { # fs round
    local mib bw
    for mib in $SWEEP; do
        bw=$(fio_run sweep write 1M "$mib" 1 48 --end_fsync=1)
        record sweep "$1" "write-${mib}M" "$2" "$(echo "$bw" | awk '{ printf "%.1f", $1 / 1024 }')" MiB/s
        drop_caches
        bw=$(fio_run sweep read 1M "$mib" 1 7)
        record sweep "$1" "read-${mib}M" "$2" "$(echo "$bw" | awk '{ printf "%.1f", $1 / 1024 }')" MiB/s
        rm -f "$TARGET"/sweep.*
    done
}

# Scrub and rebuild of DATA_MIB of files, beside cp -r of the same files on
# the same backing: each as data bytes per second.
wait_clean() {
    local deadline=$((SECONDS + 900)) s
    while :; do
        s=$(status_json)
        [ -n "$s" ] && [ "$(echo "$s" | json_field 'd["state"]')" = clean ] && return 0
        kill -0 "$PID" 2>/dev/null || { echo "run.sh: the raidfs daemon at $MNT exited during the rebuild" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "run.sh: the array at $MNT is not clean after 15 minutes" >&2; exit 1; }
        sleep 0.1
    done
}
# Polled here rather than by scrub --wait, whose 200 ms steps are a fifth
# of a scrub of 2 GiB.
wait_scrub() {
    local s
    while :; do
        s=$(status_json)
        [ -n "$s" ] && [ "$(echo "$s" | json_field 'd["scrub"]["running"]')" = False ] && return 0
        kill -0 "$PID" 2>/dev/null || { echo "run.sh: the raidfs daemon at $MNT exited during the scrub" >&2; exit 1; }
        sleep 0.05
    done
}
allocated() { du -s --block-size=1 "$1" | cut -f1; }
section_maintenance() { # round
    local level fs t0 t1
    mkdir -p "$BACK/plain"
    fio --name=data --directory="$BACK/plain" --rw=write --bs=1M --size="$((DATA_MIB / 8))M" --numjobs=8 \
        --ioengine=psync --output=/dev/null
    sync
    t0=$(date +%s.%N); cp -r "$BACK/plain" "$BACK/copy"; sync; t1=$(date +%s.%N)
    record maintenance backing cp-r "$1" "$(rate "$DATA_MIB" "$t0" "$t1")" MiB/s
    rm -rf "${BACK:?}"/*
    for level in 1 5 6; do
        fs="raid$level"
        [[ ",$FS_LIST," == *",$fs"* ]] || continue
        fs_up "$fs"
        fio --name=data --directory="$MNT" --rw=write --bs=1M --size="$((DATA_MIB / 8))M" --numjobs=8 \
            --ioengine=psync --output=/dev/null
        mkdir -p "$BACK/plain"
        fio --name=data --directory="$BACK/plain" --rw=write --bs=1M --size="$((DATA_MIB / 8))M" --numjobs=8 \
            --ioengine=psync --output=/dev/null
        t0=$(date +%s.%N)
        "$BIN/raidctl" scrub "$MNT" >/dev/null
        wait_scrub
        t1=$(date +%s.%N)
        record maintenance "$fs" scrub "$1" "$(rate "$DATA_MIB" "$t0" "$t1")" MiB/s
        "$BIN/raidctl" fail "$MNT" 1 >/dev/null
        # The reference: cp -r of the same files on the same backing, just
        # before the rebuild, its copy kept while the rebuild runs: both
        # then write into memory not in use a moment before. (On a VM that
        # is far slower than writing into recycled memory, and more so the
        # more the backing holds: the backing's cp -r above, on an empty
        # tmpfs, can be several times faster.)
        t0=$(date +%s.%N); cp -r "$BACK/plain" "$BACK/cpref"; sync; t1=$(date +%s.%N)
        record maintenance "$fs" cp-r "$1" "$(rate "$DATA_MIB" "$t0" "$t1")" MiB/s
        mkdir -p "$BACK/spare"
        t0=$(date +%s.%N)
        "$BIN/raidctl" add "$MNT" "$BACK/spare" >/dev/null
        wait_clean
        t1=$(date +%s.%N)
        record maintenance "$fs" rebuild "$1" "$(rate "$DATA_MIB" "$t0" "$t1")" MiB/s
        record maintenance "$fs" rebuild-member "$1" "$(rate "$(($(allocated "$BACK/spare") / 1048576))" "$t0" "$t1")" MiB/s
        fs_down "$fs" maintenance "$1"
    done
}

# Space the members use for a source tree and for large files, beside the
# data's own allocated size on the backing.
section_space() {
    local fs kib
    mkdir -p "$BACK/plain"
    cp -a "$TREE/." "$BACK/plain/"
    record space data tree 1 "$(du -sk "$BACK/plain" | cut -f1)" KiB
    rm -rf "${BACK:?}"/*
    for fs in "${FILESYSTEMS[@]}"; do
        [[ "$fs" =~ ^raid[156]$ ]] || continue
        fs_up "$fs"
        cp -a "$TREE/." "$MNT/"
        fs_unmount
        record space "$fs" tree 1 "$(du -sk "$BACK" | cut -f1)" KiB
        fs_up "$fs"
        fio --name=large --directory="$MNT" --rw=write --bs=1M --size=256M --numjobs=4 --ioengine=psync --output=/dev/null
        fs_unmount
        record space "$fs" large 1 "$(du -sk "$BACK" | cut -f1)" KiB
        rm -rf "${BACK:?}"/*
    done
    record space data large 1 $((1024 * 1024)) KiB
}

section_codec() {
    local r per=$((QUICK ? 256 << 20 : 4 << 30))
    for r in $(seq "$ROUNDS"); do
        "$BIN/raidfs-codec-bench" "$per" | awk -v r="$r" -F'\t' '{ print "codec\t" $1 "\t" $2 "-" $3 "-" $4 "\t" r "\t" $5 "\tGB/s" }' >>"$RESULTS"
        "$WORK/tools/codec" "$per" | awk -v r="$r" -F'\t' '{ print "codec\t" $1 "\t" $2 "-" $3 "-" $4 "\t" r "\t" $5 "\tGB/s" }' >>"$RESULTS"
    done
}

# --- the run --------------------------------------------------------------

say "results in $OUT (backing: $BACKING_DESC, rounds: $ROUNDS)"
for section in fio small programs pgbench sweep; do
    want "$section" || continue
    for round in $(seq "$ROUNDS"); do
        for fs in "${FILESYSTEMS[@]}"; do
            # The sweep is about file size, not redundancy states.
            [ "$section" = sweep ] && [[ "$fs" == *-* && "$fs" != passthrough_ll ]] && continue
            say "$section round $round: $fs"
            fs_up "$fs"
            "section_$section" "$fs" "$round"
            fs_down "$fs" "$section" "$round"
        done
    done
done
if want maintenance; then
    for round in $(seq "$ROUNDS"); do say "maintenance round $round"; section_maintenance "$round"; done
fi
want space && { say "space"; section_space; }
want codec && { say "codec"; section_codec; }

# The machine and the run, for the report.
{
    echo "commit	$COMMIT"
    echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu	$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "cores	$(nproc)"
    echo "memory	$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel	$(uname -r)"
    echo "backing	$BACKING_DESC"
    echo "rounds	$ROUNDS"
    echo "command	tools/bench/run.sh $( ((QUICK)) && echo --quick) --backing $BACKING --fs $FS_LIST --only $ONLY"
    echo "sizes	seq ${SEQ_MIB} MiB, random ${RAND_MIB} MiB file ${RAND_S} s, ${SMALL_N} small files, ${SQL_TX} SQLite transactions, tree $TREE, tar of $DOCS, git of $GITSRC, maintenance ${DATA_MIB} MiB, rebuilding arrays prefilled with ${PREFILL_MIB} MiB and held to ${REBUILD_RATE} MB/s"
} >"$OUT/machine.tsv"
python3 tools/bench/report.py "$OUT"
say "report: $OUT/report.md"
