#!/usr/bin/env bash
# Configure QEMU (x86_64-softmmu only) into build/qemu from build/config.mk.
# Run by make when config.mk is newer than build/qemu/build.ninja.
#
# usage: configure-qemu.sh BUILD/config.mk
set -euo pipefail
config=$1
build=$(dirname "$(realpath "$config")")

# config.mk is "NAME := value" lines.
eval "$(sed -n 's/^\([A-Z_]*\) := \(.*\)$/\1="\2"/p' "$config")"

case "$QEMU_CC" in
*clang*) cxx=${QEMU_CC/clang/clang++} ;;
*) cxx=${QEMU_CC/gcc/g++} ;;
esac
opts=(
    --python=/usr/bin/python3          # its venv must see the system meson
    --target-list=x86_64-softmmu
    --prefix="$PREFIX"
    --cc="$QEMU_CC" --cxx="$cxx"
    --disable-docs --disable-rust
    --disable-install-blobs            # Debian's +ds source carries no firmware
    --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
    --enable-slirp --enable-kvm
    --enable-gnutls                    # tls-creds for the replica links
    --disable-gtk --disable-sdl --disable-vnc --disable-spice --disable-opengl --disable-xen
)
if [ "$ENABLE_RDMA" = yes ]; then opts+=(--enable-rdma); else opts+=(--disable-rdma); fi
[ "$ENABLE_DEBUG" = yes ] && opts+=(--enable-debug)

rm -rf "$build/qemu"
mkdir -p "$build/qemu"
cd "$build/qemu"
"$QEMU_SRC/configure" "${opts[@]}"
