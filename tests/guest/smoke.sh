#!/bin/bash
# Boot the test guest under TCG and check it serves: time from QEMU start to
# a PONG from kvd, a short checking load, then durable kvd on a copy of the
# data disk (RESTART replays the log from the disk; a QEMU killed during a
# load loses no acknowledged write), then a racey run that powers the guest
# off by itself.  Traffic stays on 127.0.0.1 (QEMU user networking with a
# host forward).
#
#   smoke.sh [RUNS]       environment: QEMU, GUEST_DIR, GUEST_KERNEL, KVCTL, SRCDIR
#
# Exits non-zero on the first failure; kills only the QEMUs it started.
set -u

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
QEMU=${QEMU:-$SRCDIR/build/qemu/qemu-system-x86_64}
GUEST_DIR=${GUEST_DIR:-$SRCDIR/build/guest}
KVCTL=${KVCTL:-$SRCDIR/build/tools/kvctl}
GUEST_KERNEL=${GUEST_KERNEL:-$GUEST_DIR/vmlinuz}
runs=${1:-1}
work=$(mktemp -d /tmp/plover-guest-smoke.XXXXXX)
qemu_pid=

# A QEMU run from its build tree looks for firmware in the build tree
# only; Debian's seabios/ipxe/qemu-system-data packages hold it.
firmware=()
for d in /usr/share/seabios /usr/lib/ipxe/qemu /usr/share/qemu; do
    [ -d "$d" ] && firmware+=(-L "$d")
done

cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
    qemu_pid=
}
trap 'cleanup; rm -rf "$work"' EXIT

fail() {
    echo "smoke: FAIL: $*" >&2
    [ -f "$work/console.log" ] && tail -n 20 "$work/console.log" >&2
    exit 1
}

for f in "$QEMU" "$GUEST_KERNEL" "$GUEST_DIR/initrd.img" "$GUEST_DIR/disk.img" "$KVCTL"; do
    [ -e "$f" ] || fail "$f missing (make qemu guest)"
done

# A loopback port nobody listens on; bounded search.
free_port() {
    local p base=$((20000 + RANDOM % 20000))
    for p in $(seq "$base" $((base + 200))); do
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# boot PORT APPEND [QEMU ARGS...]: starts QEMU in the background, sets
# qemu_pid.
boot() {
    local port=$1 append=$2
    shift 2
    "$QEMU" -accel tcg -m 256 -nographic -no-reboot "${firmware[@]}" \
        -kernel "$GUEST_KERNEL" -initrd "$GUEST_DIR/initrd.img" \
        -append "console=ttyS0 panic=-1 $append" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:7000" \
        -device virtio-net-pci,netdev=n0 "$@" \
        < /dev/null > "$work/console.log" 2>&1 &
    qemu_pid=$!
}

times=()
for i in $(seq 1 "$runs"); do
    port=$(free_port) || fail "no free loopback port"
    t0=$(date +%s.%N)
    boot "$port" "plover.run=kvd"
    "$KVCTL" wait 127.0.0.1 "$port" --timeout 60 > /dev/null ||
        fail "kvd not serving within 60 s"
    t=$(echo "$(date +%s.%N) - $t0" | bc)
    times+=("$t")
    grep -q "PLOVER-GUEST: kvd listening on" "$work/console.log" ||
        fail "no listening marker on the console"
    echo "smoke: run $i: boot to serving $(printf %.2f "$t") s"
    if [ "$i" = 1 ]; then
        [ "$("$KVCTL" 127.0.0.1 "$port" SET smoke ok)" = OK ] || fail "SET"
        [ "$("$KVCTL" 127.0.0.1 "$port" GET smoke)" = "VALUE ok" ] || fail "GET"
        "$KVCTL" load 127.0.0.1 "$port" --clients 4 --seconds 3 --keys 64 \
            --write-ratio 0.5 --timeout 10 || fail "load"
    fi
    cleanup
done
echo "smoke: boot to serving (s): ${times[*]}"

# Durable kvd on a copy of the pristine data disk.
cp --sparse=always "$GUEST_DIR/disk.img" "$work/disk.img"
disk=(-drive "file=$work/disk.img,if=virtio,format=raw,cache=writeback")
durable="plover.disk=/dev/vda plover.run=kvd-durable"
port=$(free_port) || fail "no free loopback port"
boot "$port" "$durable" "${disk[@]}"
"$KVCTL" wait 127.0.0.1 "$port" --timeout 60 > /dev/null ||
    fail "durable kvd not serving within 60 s"
grep -q "PLOVER-GUEST: disk /dev/vda mounted on /data" "$work/console.log" ||
    fail "no disk marker on the console"
grep -q "PLOVER-GUEST: kvd listening on .*, durable, .*replayed 0 records" \
    "$work/console.log" || fail "no durable listening marker on the console"
for i in 1 2 3; do
    [ "$("$KVCTL" 127.0.0.1 "$port" SET "d$i" "v$i")" = OK ] || fail "durable SET"
done
[ "$("$KVCTL" 127.0.0.1 "$port" DEL d2)" = OK ] || fail "durable DEL"
# RESTART: kvd drops the guest's page cache and exits; the next one reads
# the log back from the disk.
"$KVCTL" restart 127.0.0.1 "$port" --timeout 60 || fail "RESTART"
grep -q "PLOVER-GUEST: kvd restarted, replayed 4 records" "$work/console.log" ||
    fail "no restart marker with 4 records on the console"
[ "$("$KVCTL" 127.0.0.1 "$port" GET d3)" = "VALUE v3" ] || fail "GET after RESTART"
[ "$("$KVCTL" 127.0.0.1 "$port" GET d2)" = NOTFOUND ] || fail "DEL after RESTART"
# Kill QEMU during a load and boot again on the same disk: the load
# reconnects, and --verify finds every acknowledged write.  The long
# --timeout is needed: the new QEMU's user network accepts a connection
# before the guest listens and delivers its request once the guest does,
# even when the client gave up on it, so a request abandoned during the
# boot could land seconds later and undo newer writes of its key.
"$KVCTL" load 127.0.0.1 "$port" --clients 4 --seconds 10 --keys 200 \
    --write-ratio 0.8 --timeout 60 --reconnect --verify --verify-timeout 120 \
    > "$work/load.out" 2>&1 &
load_pid=$!
sleep 3
kill -9 "$qemu_pid"
wait "$qemu_pid" 2>/dev/null
boot "$port" "$durable" "${disk[@]}"
wait "$load_pid" || { cat "$work/load.out" >&2; fail "load across a killed QEMU"; }
grep "^verify:" "$work/load.out"
grep "PLOVER-GUEST: kvd listening" "$work/console.log" | tr -d '\r'
[ "$("$KVCTL" 127.0.0.1 "$port" GET d3)" = "VALUE v3" ] || fail "GET after the reboot"
cleanup

# racey: three runs, then the guest powers itself off (QEMU exits).
boot "$(free_port)" "plover.run=racey:3,poweroff plover.ip=none"
for _ in $(seq 1 600); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$qemu_pid" 2>/dev/null && fail "guest did not power off within 60 s"
wait "$qemu_pid" 2>/dev/null
qemu_pid=
n=$(grep -c "PLOVER-GUEST: racey [0-9]/3: racey threads=" "$work/console.log")
[ "$n" = 3 ] || fail "expected 3 racey lines, saw $n"
grep "PLOVER-GUEST: racey" "$work/console.log" | tr -d '\r'
echo "smoke: 3 passed, 0 failed"
