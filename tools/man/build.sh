#!/usr/bin/env bash
# Writes raidfs.8 and raidctl.8 into OUTDIR. raidctl's page is generated
# from its argument parser (swift-argument-parser's generate-manual
# plugin: one section per subcommand) and completed by hand
# (raidctl.8.tail: exit status, files, examples); raidfs's, whose
# options are libfuse's -o list, is written by hand.
#   tools/man/build.sh OUTDIR [--configuration debug|release]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:?usage: tools/man/build.sh OUTDIR [--configuration debug|release]}"
shift
mkdir -p "$OUT"
swift package plugin generate-manual --section 8 "$@" >/dev/null
GENERATED="$(find .build/plugins -path '*GenerateManual*' -name raidctl.8 -newer Package.swift | head -1)"
[ -n "$GENERATED" ] || { echo "tools/man/build.sh: generate-manual wrote no raidctl.8" >&2; exit 1; }
# The generator ends with a standard EXIT STATUS section: ours replaces it.
sed '/^\.Sh "EXIT STATUS"/,$d' "$GENERATED" > "$OUT/raidctl.8"
cat tools/man/raidctl.8.tail >> "$OUT/raidctl.8"
cp tools/man/raidfs.8 "$OUT/raidfs.8"
