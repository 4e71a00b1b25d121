#!/usr/bin/env bash
# Regenerate patches/ from the commits on top of the pinned upstream tree in
# qemu/ (tag "upstream"). Run after committing an edit inside qemu/.
#
# usage: export-patches.sh QEMU_SRC PATCHDIR
set -euo pipefail
qemu=$1
out=$2
cd "$qemu"
git rev-parse -q --verify upstream >/dev/null ||
    { echo "export-patches: $qemu has no 'upstream' tag (not made by configure?)" >&2; exit 1; }
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
    { echo "export-patches: uncommitted changes in $qemu; commit them first" >&2; exit 1; }
rm -f "$out"/*.patch
# Stable output: no commit hashes, dates or tool signature that would change
# the patches on every export.
git format-patch -q -N --zero-commit --no-signature --no-stat --full-index \
    -o "$out" upstream..HEAD
(cd "$out" && ls -1 *.patch 2>/dev/null || true) > "$out/series"
# qemu/ now matches patches/: the next sync (make qemu) re-applies them
# instead of refusing to overwrite unexported commits.
git tag -f patched >/dev/null
echo "export-patches: $(wc -l < "$out/series") patch(es) in $out"
