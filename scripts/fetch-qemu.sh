#!/usr/bin/env bash
# Fetch the pinned QEMU source (Debian's qemu source package, see qemu.pin),
# check every file against its pinned SHA-256, unpack it with Debian's patch
# series applied, and make DEST a git repository whose first commit is that
# tree. The patches in patches/ are applied on top by scripts/apply-patches.sh.
#
# usage: fetch-qemu.sh SRCDIR DEST CACHEDIR
set -euo pipefail

srcdir=$1
dest=$2
cache=$3

. "$srcdir/qemu.pin"

log() { echo "fetch-qemu: $*" >&2; }
die() { echo "fetch-qemu: error: $*" >&2; exit 1; }

verify() {
    local file=$1 want=$2 got
    got=$(sha256sum "$cache/$file" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "$file: sha256 $got, pinned $want"
}

have_all() {
    [ -f "$cache/$QEMU_DSC" ] && [ -f "$cache/$QEMU_ORIG" ] && [ -f "$cache/$QEMU_DEBIAN" ]
}

mkdir -p "$cache"
if ! have_all; then
    mirror=$("$srcdir/scripts/debian-mirror.sh") || die "no Debian bookworm mirror found in /etc/apt"
    log "downloading qemu=$QEMU_DEB_VERSION ($QEMU_DEB_SUITE source) from the system's mirror"
    apt=$cache/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $QEMU_DEB_SUITE main" \
        > "$apt/sources.list"
    opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    apt-get -q "${opts[@]}" update >&2
    (cd "$cache" && apt-get -q "${opts[@]}" source --download-only "qemu=$QEMU_DEB_VERSION" >&2)
    have_all || die "apt-get source did not produce the pinned files"
fi
verify "$QEMU_DSC" "$QEMU_DSC_SHA256"
verify "$QEMU_ORIG" "$QEMU_ORIG_SHA256"
verify "$QEMU_DEBIAN" "$QEMU_DEBIAN_SHA256"

tmp=$(mktemp -d "$(dirname "$dest")/.qemu-unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "unpacking with Debian's patch series applied"
dpkg-source --no-check -x "$cache/$QEMU_DSC" "$tmp/src" >&2

cd "$tmp/src"
git init -q -b plover
git config user.name "plover configure"
git config user.email "configure@plover.invalid"
git config core.autocrlf false
# The tree's own .gitignore files would hide parts of the pinned source.
git add -A -f .
git commit -q -m "upstream: QEMU $QEMU_DEB_VERSION (Debian source package, Debian patches applied)"
git tag upstream
cd - >/dev/null

rm -rf "$dest"
mv "$tmp/src" "$dest"
log "qemu source ready in $dest"
