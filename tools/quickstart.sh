#!/usr/bin/env bash
# Builds raidfs (release), creates a six-member RAID 6 array under ./demo and
# mounts it at ./demo/mnt.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
raidfs_install_deps man-db bash-completion
swift build -c release
BIN="$(swift build -c release --show-bin-path)"
DEMO="$PWD/demo"
MNT="$DEMO/mnt"
if mountpoint -q "$MNT" 2>/dev/null; then
    echo "unmounting the previous demo at $MNT"
    fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"
    # The daemon writes its clean superblocks after the unmount; let it finish.
    for _ in $(seq 50); do pgrep -f "raidfs .* $MNT" >/dev/null || break; sleep 0.1; done
fi
rm -rf "$DEMO"
mkdir -p "$MNT"
DISKS=()
for i in 0 1 2 3 4 5; do mkdir -p "$DEMO/disk$i"; DISKS+=("$DEMO/disk$i"); done
# mount -t fuse.raidfs and /etc/fstab find the daemon on mount(8)'s PATH.
ln -sf "$BIN/raidfs" /usr/local/bin/raidfs 2>/dev/null || true
ln -sf "$BIN/raidctl" /usr/local/bin/raidctl 2>/dev/null || true
# man raidfs, man raidctl; raidctl's completions for bash, zsh and fish
# (system directories: as root).
if [ "$(id -u)" -eq 0 ]; then
    tools/man/build.sh /usr/local/share/man/man8 --configuration release
    # mandb only indexes for apropos; man finds the pages without it.
    if command -v mandb >/dev/null; then mandb -q; fi
    mkdir -p /usr/share/bash-completion/completions /usr/local/share/zsh/site-functions /usr/share/fish/vendor_completions.d
    "$BIN/raidctl" --generate-completion-script bash > /usr/share/bash-completion/completions/raidctl
    "$BIN/raidctl" --generate-completion-script zsh > /usr/local/share/zsh/site-functions/_raidctl
    "$BIN/raidctl" --generate-completion-script fish > /usr/share/fish/vendor_completions.d/raidctl.fish
else
    echo "not root: the man pages and completions are not installed (tools/man/build.sh DIR writes the pages)" >&2
fi
"$BIN/raidctl" create --level 6 --chunk 128K "${DISKS[@]}"
MEMBERS="$(IFS=:; echo "${DISKS[*]}")"
"$BIN/raidfs" "$MEMBERS" "$MNT"
cat <<MSG

raidfs demo: RAID 6 over six member directories ($DEMO/disk0 … disk5),
mounted at $MNT. Try:

  cp -r /usr/share/common-licenses $MNT/ && ls $MNT
  df -h $MNT                                   # usable capacity: the six share one disk, so 4/6 of its space
  $BIN/raidctl status $MNT                     # md/zpool-style state; --watch to follow
  $BIN/raidctl examine $DEMO/disk0
  rm -rf $DEMO/disk1 $DEMO/disk4                # lose two members…
  diff -r /usr/share/common-licenses $MNT/common-licenses && echo intact   # …every byte still reads back
  mkdir $DEMO/new1 $DEMO/new2 && $BIN/raidctl add $MNT $DEMO/new1 && $BIN/raidctl add $MNT $DEMO/new2
                                               # …and rebuilds onto new members by itself

man raidctl and man raidfs describe every command and option; raidctl's tab
completion works in new zsh and fish shells, and in bash where it loads
bash-completion (Debian's default ~/.bashrc does).

Unmount with: fusermount3 -u $MNT
MSG
