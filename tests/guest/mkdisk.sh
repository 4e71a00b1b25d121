#!/bin/sh
# Build the test guest's data disk: a raw ext4 image, formatted straight
# from a directory with mke2fs -d (no mount, no loop device, no root).
#
#   mkdisk.sh -o OUT.img -s SIZE_MIB -L LABEL -U UUID
#
# The image is the pristine copy: tests boot copies of it, one per replica,
# never the image itself.  A fixed UUID, directory hash seed and time, 4 KiB
# blocks, and every inode owned by 0:0: the same inputs and e2fsprogs give
# the same bytes.  The inode tables and the journal are written out
# here (lazy_*_init=0), so the guest's kernel has no background zeroing to
# do on first mount.
set -eu

die() { echo "mkdisk: $*" >&2; exit 1; }

out= size= label= uuid=
while getopts o:s:L:U: opt; do
    case $opt in
        o) out=$OPTARG ;;
        s) size=$OPTARG ;;
        L) label=$OPTARG ;;
        U) uuid=$OPTARG ;;
        *) die "bad option" ;;
    esac
done
[ -n "$out" ] && [ -n "$size" ] && [ -n "$label" ] && [ -n "$uuid" ] ||
    die "usage: mkdisk.sh -o OUT -s SIZE_MIB -L LABEL -U UUID"
# mke2fs lives in /sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
for tool in mke2fs debugfs; do
    command -v $tool >/dev/null 2>&1 ||
        die "$tool not found: install the e2fsprogs package"
done
# Every time stamp in the image; 0 would mean "now" to E2FSPROGS_FAKE_TIME.
epoch=1
export E2FSPROGS_FAKE_TIME=$epoch

stage=$out.d
rm -rf "$stage"
mkdir -p "$stage"
cat > "$stage/README" <<'TXT'
The plover test guest's data disk, mounted on /data by plover.disk=DEV.
kvd's durable log is kvd.log (kvd -d).  See tests/guest/README.md.
TXT
find "$stage" -exec touch -h -d "@$epoch" {} +

rm -f "$out.tmp"
truncate -s "${size}M" "$out.tmp"
mke2fs -q -F -t ext4 -b 4096 -L "$label" -U "$uuid" \
    -E "root_owner=0:0,hash_seed=$uuid,lazy_itable_init=0,lazy_journal_init=0" \
    -d "$stage" "$out.tmp"
# mke2fs -d copies each file's owner and change time, which touch cannot
# set: fix them in the image.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort) | while read -r f; do
    for field in "ctime @$epoch" "uid 0" "gid 0"; do
        echo "set_inode_field /${f#./} $field"
    done
done > "$out.debugfs"
debugfs -w -f "$out.debugfs" "$out.tmp" > /dev/null 2>&1 ||
    die "debugfs could not set the owners and times in $out.tmp"
rm -f "$out.debugfs"
mv "$out.tmp" "$out"
echo "mkdisk: $out ($size MiB ext4, label $label, UUID $uuid)"
