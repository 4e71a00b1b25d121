#!/bin/bash
# Boot the RDMA test guest under TCG, run one program inside it, report.
#
#   run-guest.sh PROGRAM TAG     environment: QEMU, KERNEL, INITRD, TIMEOUT (s),
#                                ARGS (comma-separated arguments for PROGRAM)
#
# The guest's /init (tests/rdma/init.sh) runs /rdma/PROGRAM and hands its
# exit status to isa-debug-exit, so QEMU exits with (status << 1) | 1:
# 1 means the program succeeded. The lines starting with TAG (the summary)
# are printed here; on failure, the tail of the console. QEMU is killed by
# its PID after TIMEOUT seconds: never a hang.
set -u
prog=$1
tag=$2
: "${QEMU:?}" "${KERNEL:?}" "${INITRD:?}"
timeout=${TIMEOUT:-280}
log=$(mktemp /tmp/plover-rdma.XXXXXX)
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ]; then
        kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
    fi
    rm -f "$log"
}
trap cleanup EXIT

# Someone else builds QEMU; if the binary is being replaced, wait a little.
for _ in $(seq 60); do
    [ -x "$QEMU" ] && break
    sleep 2
done
[ -x "$QEMU" ] || { echo "$tag: $QEMU missing (make qemu)"; exit 1; }

firmware=()
for d in /usr/share/seabios /usr/lib/ipxe/qemu /usr/share/qemu; do
    [ -d "$d" ] && firmware+=(-L "$d")
done

start=$(date +%s)
"$QEMU" -accel tcg -m 1024 -smp 2 -nographic -no-reboot "${firmware[@]}" \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 quiet plover.rdma=$prog ${ARGS:+plover.args=$ARGS}" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    </dev/null >"$log" 2>&1 &
qemu_pid=$!

rc=
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
        echo "$tag: guest timed out after ${timeout}s; killing QEMU (pid $qemu_pid)"
        kill "$qemu_pid" 2>/dev/null
        sleep 1
        kill -9 "$qemu_pid" 2>/dev/null
        rc=timeout
        break
    fi
    sleep 1
done
if [ -z "$rc" ]; then
    wait "$qemu_pid"
    rc=$?
fi
qemu_pid=

tr -d '\r' < "$log" | grep -E "^(PASS|FAIL|  |$tag|bench|PLOVER-RDMA)" || true
echo "$tag: guest ran $(($(date +%s) - start))s"
if [ "$rc" = 1 ]; then
    exit 0
fi
echo "$tag: FAILED (QEMU exit status $rc); last console lines:"
tr -d '\r' < "$log" | tail -n 30
if ! tr -d '\r' < "$log" | grep -q "^$tag: "; then
    echo "$tag: 0 passed, 1 failed (no summary from the guest)"
fi
exit 1
