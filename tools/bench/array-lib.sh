# Shared by the benchmark scripts: a scratch array in $WORK mounted at $MNT
# with the release binaries in $BIN, always unmounted and removed on exit.
# Source after setting nothing; call bench_setup first. The scratch
# directory is made under $RAIDFS_WORK_BASE (default /tmp).
bench_setup() {
    source tools/deps.sh
    raidfs_install_deps "$@"
    BIN="$(raidfs_release_bin)"
    WORK="$(mktemp -d "${RAIDFS_WORK_BASE:-/tmp}/raidfs-bench.XXXXXX")"
    MNT="$WORK/mnt"
    PID=""
    trap bench_cleanup EXIT
    mkdir -p "$MNT"
}

bench_cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}

mount_array() { # level members intent_log(on|off)
    rm -rf "$WORK"/d*; mkdir -p $(seq -f "$WORK/d%g" 0 $(($2 - 1)))
    "$BIN/raidctl" create --level "$1" $(seq -f "$WORK/d%g" 0 $(($2 - 1))) >/dev/null
    "$BIN/raidfs" "$(seq -f "$WORK/d%g" -s: 0 $(($2 - 1)))" "$MNT" -f -o "auto_unmount,intent_log=$3" 2>/dev/null &
    PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && return; sleep 0.1; done
    echo "mount failed"; exit 1
}

unmount_array() { fusermount3 -u "$MNT"; wait "$PID" || true; PID=""; }
