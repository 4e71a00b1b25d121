#!/bin/sh
# Unpack the ELF kernel inside a bzImage: extract-vmlinux.sh BZIMAGE OUT
#
# QEMU boots such an ELF through its PVH entry point (Debian's kernel has
# CONFIG_PVH), which skips the kernel decompressing itself.  Under TCG that
# decompression is a few seconds of every boot.  The payload is found by
# its compression magic, as the kernel's own scripts/extract-vmlinux does.
set -eu

img=$1
out=$2
tmp=$out.tmp

try() {    # try MAGIC DECOMPRESSOR...
    magic=$1
    shift
    for pos in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
        # Trailing bytes after the stream make the decompressor complain;
        # the ELF check below is what decides.
        tail -c +$((pos + 1)) "$img" | "$@" > "$tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
            mv "$tmp" "$out"
            exit 0
        fi
    done
}

try '\xfd7zXZ\x00' xz -dc
try '\x28\xb5\x2f\xfd' zstd -qdc
try '\x1f\x8b\x08' gzip -dc
rm -f "$tmp"
echo "extract-vmlinux: no ELF kernel found in $img" >&2
exit 1
