#!/bin/sh
# Fetch Debian's guest kernel package without installing it on the host.
#
#   fetch-kernel.sh CACHE_DIR OUT_DIR
#
# Resolves the real image package behind the linux-image-amd64 metapackage,
# downloads its .deb into CACHE_DIR (kept across clean builds) unless it is
# there already, and unpacks it into OUT_DIR/root.  Writes OUT_DIR/version
# (the kernel release, e.g. 6.1.0-56-amd64) last, so a half-done run is
# never taken for a finished one.
set -eu

cache=$1
out=$2
meta=linux-image-amd64

die() { echo "fetch-kernel: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (a Debian host is needed)"
done
mkdir -p "$cache"

pkg=$(apt-cache depends "$meta" 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
if [ -n "$pkg" ]; then
    ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no candidate version for $pkg"
    # apt-get download spells an epoch's ':' as %3a in the file name.
    deb="$cache/${pkg}_$(echo "$ver" | sed 's/:/%3a/')_amd64.deb"
    if [ ! -f "$deb" ]; then
        echo "fetch-kernel: downloading $pkg $ver"
        # As root apt drops to its _apt user, which cannot write our cache
        # directory; it then warns and downloads as root anyway.
        sandbox=
        [ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
        (cd "$cache" && apt-get $sandbox download "$pkg=$ver") ||
            die "apt-get download $pkg=$ver failed"
        [ -f "$deb" ] || die "apt-get download did not produce $deb"
    fi
else
    # No package lists (apt-get update never ran): use a cached package.
    deb=$(ls -t "$cache"/linux-image-[0-9]*_amd64.deb 2>/dev/null | head -n 1 || true)
    [ -n "$deb" ] || die "cannot resolve $meta: run 'apt-get update' first"
    echo "fetch-kernel: no apt lists, using cached $(basename "$deb")"
fi

rm -rf "$out"
mkdir -p "$out/root"
dpkg-deb -x "$deb" "$out/root"
release=$(ls "$out/root/lib/modules" | head -n 1)
[ -n "$release" ] && [ -f "$out/root/boot/vmlinuz-$release" ] ||
    die "$deb has no vmlinuz or modules"
echo "$(basename "$deb")" > "$out/package"
echo "$release" > "$out/version"
echo "fetch-kernel: $release from $(basename "$deb")"
