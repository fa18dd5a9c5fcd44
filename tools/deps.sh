#!/usr/bin/env bash
# Installs the Debian packages raidfs needs to build and test, if missing.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail

# Runs an apt-get command, waiting (up to ten minutes, saying so) while
# another apt or dpkg process holds its lock, as on a fresh machine running
# its own updates. install waits inside apt (DPkg::Lock::Timeout); update
# takes the lists lock, which that option does not cover, so it is retried.
raidfs_apt() {
    local deadline=$((SECONDS + 600)) said="" out rc
    while :; do
        rc=0
        out="$("$@" -o DPkg::Lock::Timeout=600 2>&1 >/dev/null)" || rc=$?
        ((rc == 0)) && return 0
        if grep -q "Could not get lock\|Unable to lock" <<<"$out" && ((SECONDS < deadline)); then
            [ -n "$said" ] || { echo "waiting for another apt process to release its lock (up to 10 minutes)…" >&2; said=1; }
            sleep 5
            continue
        fi
        echo "$out" >&2
        return "$rc"
    done
}

raidfs_install_deps() {
    local want=(fuse3 libfuse3-dev libisal-dev pkg-config "$@")
    local missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        raidfs_apt $sudo apt-get update -qq
        raidfs_apt $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    if ! command -v swift >/dev/null; then
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
            [ -x "$d/swift" ] && export PATH="$d:$PATH"
        done
    fi
    command -v swift >/dev/null || { echo "swift toolchain not found on PATH" >&2; return 1; }
    [ -e /dev/fuse ] || { echo "/dev/fuse is missing: FUSE cannot mount here" >&2; return 1; }
}

# Installs the PyPI packages the tests use, if missing: prometheus_client,
# whose parser reads `raidctl metrics` as Prometheus would.
raidfs_install_python_deps() {
    python3 -c 'import prometheus_client' 2>/dev/null && return 0
    echo "installing from PyPI: prometheus_client" >&2
    python3 -m pip install -q prometheus_client 2>/dev/null \
        || python3 -m pip install -q --break-system-packages prometheus_client
}

# Writes raidfs.8 and raidctl.8 into $1 (tools/man/build.sh) from the
# debug build.
raidfs_build_manual() {
    tools/man/build.sh "$1" --configuration debug
}

# Builds the release binaries and prints the directory that holds them.
raidfs_release_bin() {
    swift build -c release >/dev/null
    swift build -c release --show-bin-path
}

# Builds libfuse's passthrough example (the copy Debian's libfuse3-dev
# installs) as $1, with the feature macros libfuse's own build defines on
# Linux (utimens, fallocate, xattrs, copy_file_range...).
raidfs_build_passthrough() {
    local out="$1" src ex=/usr/share/doc/libfuse3-dev/examples
    src="$(mktemp -d)"
    for f in passthrough.c passthrough_helpers.h; do
        if [ -f "$ex/$f" ]; then cp "$ex/$f" "$src/"; else zcat "$ex/$f.gz" > "$src/$f"; fi
    done
    gcc -Wall -O2 -DHAVE_UTIMENSAT -DHAVE_POSIX_FALLOCATE -DHAVE_FALLOCATE -DHAVE_SETXATTR -DHAVE_COPY_FILE_RANGE \
        -DHAVE_FDATASYNC -DHAVE_FSTATAT "$src/passthrough.c" $(pkg-config fuse3 --cflags --libs) -o "$out"
    rm -rf "$src"
}

# 16 random files of $2 MiB in all under $1/src, their sums in $1/sums.
raidfs_random_files() {
    local work="$1" size="$2" i
    mkdir -p "$work/src"
    for i in $(seq -w 1 16); do head -c $(((size / 16) << 20)) /dev/urandom > "$work/src/f$i"; done
    (cd "$work/src" && sha256sum f* > ../sums)
}

# The backing filesystem's raw copy rate (cp -r of $1/src, $2 MiB, caches
# dropped): printed, and in RAW_MIBS (MiB/s).
raidfs_raw_copy_rate() {
    local work="$1" size="$2" t0 t1
    echo "== raw copy rate of the backing directories (cp -r, caches dropped)"
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(date +%s.%N); cp -r "$work/src" "$work/copy"; sync; t1=$(date +%s.%N)
    RAW_MIBS=$(echo "$size / ($t1 - $t0)" | bc -l)
    rm -rf "$work/copy"
    printf "cp -r: %d MiB in %.1f s = %.0f MiB/s\n" "$size" "$(echo "$t1 - $t0" | bc -l)" "$RAW_MIBS"
}

# A scenario's work directory: sets WORK (a fresh directory under /tmp
# named after $1), MNT (its mount point) and PID (the daemon's, for the
# caller to set); on exit the mount is undone, the daemon stopped and WORK
# removed.
raidfs_scenario_work() {
    WORK="$(mktemp -d "/tmp/raidfs-$1.XXXXXX")"
    MNT="$WORK/mnt"
    PID=""
    trap raidfs_scenario_cleanup EXIT
}
raidfs_scenario_cleanup() {
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
