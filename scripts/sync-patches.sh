#!/usr/bin/env bash
# Bring the qemu/ git tree to "upstream + patches/series" when patches/ has
# changed since the last time (STAMP holds their checksum). A developer's
# commits or edits in qemu/ that are not exported yet are never thrown away:
# the script stops and says so.
#
# usage: sync-patches.sh QEMU_SRC PATCHDIR STAMP
set -euo pipefail
qemu=$1
dir=$2
stamp=$3

sum=$(cd "$dir" && cat series $(grep -v '^#' series) | sha256sum | cut -d' ' -f1)
head=$(git -C "$qemu" rev-parse HEAD)
patched=$(git -C "$qemu" rev-parse -q --verify patched 2>/dev/null || true)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && [ "$head" = "$patched" ]; then
    exit 0
fi
if [ -n "$(git -C "$qemu" status --porcelain --untracked-files=no)" ]; then
    echo "sync-patches: $qemu has uncommitted changes; commit them and run 'make export-patches'" >&2
    exit 1
fi
if [ -n "$patched" ] && [ "$head" != "$patched" ] &&
   [ -n "$(git -C "$qemu" rev-list "$patched..HEAD")" ]; then
    echo "sync-patches: $qemu has commits not exported to patches/; run 'make export-patches'" >&2
    exit 1
fi
cd "$qemu"
git checkout -q -B plover upstream
while read -r p; do
    case "$p" in ''|'#'*) continue ;; esac
    git am -q --committer-date-is-author-date "$dir/$p" ||
        { git am --abort; echo "sync-patches: $p does not apply to $qemu" >&2; exit 1; }
done < "$dir/series"
git tag -f patched >/dev/null
echo "$sum" > "$stamp"
echo "sync-patches: applied $(grep -vc '^#' "$dir/series") patch(es) to $qemu"
