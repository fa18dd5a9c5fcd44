#!/usr/bin/env bash
# Installs the Debian packages raidfs needs to build and test, if missing.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail

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
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
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
