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
