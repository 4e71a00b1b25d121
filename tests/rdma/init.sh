#!/bin/sh
# /init of the RDMA test guest (built by tests/rdma/rdma.mk with
# tests/guest/mkinitramfs.sh): loads soft-RoCE, brings up rxe0 on eth0 and
# runs the program named by plover.rdma= (default: the test suite), then
# reports its exit status through isa-debug-exit (QEMU exits with
# (status << 1) | 1). Never returns: PID 1 must not exit.

export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp
exec </dev/console >/dev/console 2>&1
echo 4 > /proc/sys/kernel/printk

say() { echo "PLOVER-RDMA: $*"; }

# Status byte to port 0xf4; QEMU quits at once.
finish() {
    say "exit $1"
    printf "\\$(printf '%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    poweroff -f
    while true; do sleep 3600; done
}

prog=/rdma/test-rdma
args=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        plover.rdma=*) prog=/rdma/${arg#plover.rdma=} ;;
        plover.args=*) args=$(echo "${arg#plover.args=}" | tr , ' ') ;;
    esac
done

while read -r mod; do
    insmod "/lib/modules/$mod.ko" || say "insmod $mod failed"
done < /lib/modules/load.order

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do
    sleep 0.1
    n=$((n + 1))
done
[ -e /sys/class/net/eth0 ] || { say "no eth0"; finish 2; }
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
rdma link add rxe0 type rxe netdev eth0 || { say "rdma link add failed"; finish 2; }
# Registered memory counts against RLIMIT_MEMLOCK.
ulimit -l unlimited
say "rxe0 up on 10.0.2.15"

export PLOVER_RDMA_ADDR=10.0.2.15
# The suite runs twice: plain records, then sealed (AES-256-GCM, as with
# tls-creds). Another program (the benchmark) runs as asked.
if [ "$prog" = /rdma/test-rdma ]; then
    say "records checksummed"
    PLOVER_RDMA_SEALED=0 $prog $args
    rc=$?
    say "records sealed (AES-256-GCM)"
    PLOVER_RDMA_SEALED=1 $prog $args || rc=1
    finish $rc
fi
$prog $args
finish $?
