#!/bin/sh
# Build the test guest's initramfs (gzip'ed newc cpio).
#
#   mkinitramfs.sh -k KERNEL_DIR -o OUT.img -b BUSYBOX -i INIT
#                  [-m "MODULE ..."] [-a SRC:DEST ...]
#
# KERNEL_DIR is what fetch-kernel.sh made (root/ and version).  Each module
# named with -m is packed together with everything it depends on; /init
# loads them in the order written to /lib/modules/load.order, dependencies
# first.  Compressed modules are unpacked here because busybox insmod is
# not guaranteed to read them.  -a copies extra files (the workload
# programs) into the image; DEST is an absolute path inside it.
set -eu

die() { echo "mkinitramfs: $*" >&2; exit 1; }

kdir= out= busybox= init= modules= adds=
while getopts k:o:b:i:m:a: opt; do
    case $opt in
        k) kdir=$OPTARG ;;
        o) out=$OPTARG ;;
        b) busybox=$OPTARG ;;
        i) init=$OPTARG ;;
        m) modules="$modules $OPTARG" ;;
        a) adds="$adds $OPTARG" ;;
        *) die "bad option" ;;
    esac
done
[ -n "$kdir" ] && [ -n "$out" ] && [ -n "$busybox" ] && [ -n "$init" ] ||
    die "usage: mkinitramfs.sh -k KERNEL_DIR -o OUT -b BUSYBOX -i INIT [-m MODS] [-a SRC:DEST]"
[ -x "$busybox" ] ||
    die "$busybox not found: install the busybox-static package (apt-get install busybox-static)"
for tool in cpio gzip; do
    command -v $tool >/dev/null 2>&1 || die "$tool not found: install the $tool package"
done

release=$(cat "$kdir/version")
moddir=$kdir/root/lib/modules/$release

stage=$out.d
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/sbin" "$stage/dev" "$stage/proc" "$stage/sys" \
         "$stage/run" "$stage/tmp" "$stage/etc" "$stage/root" "$stage/lib/modules"
cp "$busybox" "$stage/bin/busybox"
# The kernel runs /init through its #! line before /init can install the
# other applet links.
ln -s busybox "$stage/bin/sh"
cp "$init" "$stage/init"
chmod 755 "$stage/init"

# Module file for a name: names may use '-' or '_' interchangeably.
modfile() {
    find "$moddir/kernel" \( -name "$1.ko*" -o -name "$(echo "$1" | tr _ -).ko*" \
         -o -name "$(echo "$1" | tr - _).ko*" \) | head -n 1
}

# Unpack one module into the image; prints nothing, fails loudly.
unpack() {
    case $1 in
        *.ko)     cp "$1" "$2" ;;
        *.ko.xz)  xz -dc "$1" > "$2" ;;
        *.ko.zst) zstd -qdc "$1" > "$2" ;;
        *.ko.gz)  gzip -dc "$1" > "$2" ;;
        *)        die "unknown module format: $1" ;;
    esac
}

order=$stage/lib/modules/load.order
: > "$order"
# Depth-first, dependencies before dependents.  The "depends=" string in
# the module's .modinfo section is what modules.dep is made from; reading
# it directly needs no depmod and works on the unpacked .ko.
add_module() {
    # local: the function recurses.
    local name src dst deps dep
    name=$(echo "$1" | tr - _)
    grep -qx "$name" "$order" && return 0
    case " $visiting " in *" $name "*) die "dependency cycle at $name" ;; esac
    visiting="$visiting $name"
    src=$(modfile "$name")
    [ -n "$src" ] || die "module $name not found in $release"
    dst=$stage/lib/modules/$name.ko
    unpack "$src" "$dst"
    deps=$(tr '\0' '\n' < "$dst" | sed -n 's/^depends=//p' | head -n 1 | tr , ' ')
    for dep in $deps; do
        add_module "$dep"
    done
    echo "$name" >> "$order"
}
visiting=
for m in $modules; do
    add_module "$m"
done

for pair in $adds; do
    src=${pair%%:*}
    dest=${pair#*:}
    mkdir -p "$stage$(dirname "$dest")"
    cp "$src" "$stage$dest"
done

# Sorted names, fixed times and --reproducible: the same inputs give the
# same bytes.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > "$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs: $out ($(wc -c < "$out") bytes), modules: $(tr '\n' ' ' < "$order")"
