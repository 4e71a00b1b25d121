#!/usr/bin/env bash
# -plover on the real binary: help, every class of invalid value (one-line
# error naming the field, exit status 1), the checks that need QEMU (netdev,
# secret), and query-plover reporting a valid configuration.
. "$(dirname "$0")/lib.sh"

# expect_reject WANT_MESSAGE QEMU_ARGS...: QEMU exits 1 with exactly one
# error line on stderr (QEMU's own "warning:" lines aside), and that line
# ends with WANT_MESSAGE.
expect_reject() {
    local want=$1 out rc
    shift
    rc=0
    out=$(nsx h0 "$QEMU" -accel tcg -nodefaults -display none -S "$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" = 1 ] || fail "exit status $rc (want 1) for: $*"
    out=$(printf '%s\n' "$out" | grep -v '^qemu-system-x86_64: warning: ' || true)
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "more than one line for: $*: $out"
    case "$out" in
    *"$want") ;;
    *) fail "for: $*
  want: ...$want
  got:  $out" ;;
    esac
}

help=$("$QEMU" -plover help) || fail "-plover help exited non-zero"
for f in role= id= peers= netdev= transport= secret= state= heartbeat-ms= suspect-ms= \
         election-ms= syncvm-timeout-ms= idle-threshold-us= idle-window-us= max-sync-interval-ms=; do
    case "$help" in *"$f"*) ;; *) fail "-plover help does not list $f" ;; esac
done
"$QEMU" -help | grep -q -- '^-plover ' || fail "-help does not document -plover"

need_root
add_netns h0
nsx h0 ip tuntap add dev tap0 mode tap

SECRET=(-object secret,id=s0,data=correct-horse-battery)
NET=(-netdev tap,id=net0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=net0)
PEERS="peers=10.1.0.1:7100,10.1.0.2:7100,10.1.0.3:7100"
ST=$WORK/replica.state
OK="id=0,$PEERS,netdev=net0,secret=s0,state=$ST"

expect_reject "role: invalid value 'boss' (expected auto, leader, secondary or witness)" \
    "${NET[@]}" "${SECRET[@]}" -plover "role=boss,$OK"
expect_reject "id: 3 is out of range (0..2, an index into peers)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=3,$PEERS,netdev=net0,secret=s0,state=$ST"
expect_reject "id: 'one' is not a replica index (0..6)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=one,$PEERS,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: 'nohost' has no port (expected host:port)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=nohost,b:1,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: 'a:70000' has an invalid port (expected 1..65535)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=a:70000,b:1,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: a:1 is given twice" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=a:1,b:1,a:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: replica 2's port 65535 leaves no port for its syncvm link (port+1)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=a:1,b:1,c:65535,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: replicas 0 and 1 on 10.1.0.1 use ports 7100/7101 and 7101/7102, which overlap" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=10.1.0.1:7100,10.1.0.1:7101,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: replicas 0 and 1 on localhost use ports 7100/7101 and 7100/7101, which overlap" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=localhost:7100,127.0.0.1:7100,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: '[abc]:1' has an invalid IPv6 address" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=[abc]:1,b:1,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "peers: 'a:0' has an invalid port (expected 1..65535)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=a:0,b:1,c:1,netdev=net0,secret=s0,state=$ST"
expect_reject "suspect-ms: '0' is not a number in 2..600000" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK,suspect-ms=0"
expect_reject "peers: 2 given, exactly 3 required (this replica included)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,peers=a:1,b:1,netdev=net0,secret=s0,state=$ST"
expect_reject "transport: invalid value 'ib' (expected tcp or rdma)" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK,transport=ib"
expect_reject "unknown field 'mode' (-plover help lists the fields)" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK,mode=fast"
expect_reject "netdev: required (id of the -netdev whose traffic is replicated)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,$PEERS,secret=s0,state=$ST"
expect_reject "state: required (file where this replica keeps its incarnation across restarts)" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,$PEERS,netdev=net0,secret=s0"
expect_reject "-plover may be given only once" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK" -plover "$OK"
expect_reject "-plover: netdev: no -netdev with id 'nosuch'; the netdevs are 'net0' (tap), 'u1' (user)" \
    "${NET[@]}" -netdev user,id=u1 "${SECRET[@]}" -plover "id=0,$PEERS,netdev=nosuch,secret=s0,state=$ST"
expect_reject "-plover: netdev: no -netdev with id 'net0'; there is no netdev" \
    "${SECRET[@]}" -plover "$OK"
expect_reject "-plover: netdev: 'u0' is a user netdev; a tap netdev is required" \
    -netdev user,id=u0 -device virtio-net-pci,netdev=u0 "${SECRET[@]}" \
    -plover "id=0,$PEERS,netdev=u0,secret=s0,state=$ST"
expect_reject "-plover: netdev: 'net0' is not connected to a guest NIC" \
    -netdev tap,id=net0,ifname=tap0,script=no,downscript=no "${SECRET[@]}" -plover "$OK"
expect_reject "-plover: secret: no -object secret with id 's0'" \
    "${NET[@]}" -plover "$OK"
expect_reject "-plover: secret: 's0' is 3 bytes; at least 16 are required" \
    "${NET[@]}" -object secret,id=s0,data=abc -plover "$OK"
# tls-creds: an object that exists, of the x509 kind, for a server
# endpoint, verifying its peers.
pki_ca "$WORK/pki/ca"
pki_replica "$WORK/pki/r0" "$WORK/pki/ca" 10.1.0.1 "$WORK/pki/ca"
TLSDIR="dir=$WORK/pki/r0"
expect_reject "-plover: tls-creds: no -object tls-creds-x509 with id 't0'" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK,tls-creds=t0"
expect_reject "-plover: tls-creds: no -object tls-creds-x509 with id 't0'" \
    "${NET[@]}" "${SECRET[@]}" -object tls-creds-anon,id=t0,endpoint=server \
    -plover "$OK,tls-creds=t0"
expect_reject "-plover: tls-creds: 't0' must have endpoint=server (a replica accepts links, and dials with the same certificate)" \
    "${NET[@]}" "${SECRET[@]}" -object "tls-creds-x509,id=t0,$TLSDIR,endpoint=client" \
    -plover "$OK,tls-creds=t0"
expect_reject "-plover: tls-creds: 't0' has verify-peer=off; the replicas must verify each other's certificates" \
    "${NET[@]}" "${SECRET[@]}" -object "tls-creds-x509,id=t0,$TLSDIR,endpoint=server,verify-peer=off" \
    -plover "$OK,tls-creds=t0"
if grep -q '^ENABLE_RDMA := no' "$SRCDIR/build/config.mk"; then
    expect_reject "transport: rdma is not available in this build (built with --disable-rdma)" \
        "${NET[@]}" "${SECRET[@]}" -plover "$OK,transport=rdma"
fi

# The state file: unreadable content, another replica's file and a
# directory that does not exist are refused before any link opens.
printf 'garbage\n' > "$ST"
expect_reject "-plover: state: '$ST' is not a plover state file (expected 'plover-state 1', 'id N', 'incarnation N')" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK"
printf 'plover-state 1\nid 2\nincarnation 4\n' > "$ST"
expect_reject "-plover: state: '$ST' belongs to replica 2, not to replica 0" \
    "${NET[@]}" "${SECRET[@]}" -plover "$OK"
expect_reject "-plover: state: cannot create '$WORK/none/r.state.tmp': No such file or directory" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=0,$PEERS,netdev=net0,secret=s0,state=$WORK/none/r.state"
rm -f "$ST"

# This replica must be able to listen on its own peers entry.
expect_reject "plover: syncvm link on 10.1.0.2:7101: listen on 10.1.0.2:7101: Cannot assign requested address" \
    "${NET[@]}" "${SECRET[@]}" -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST"

nsx h0 ip addr add 10.1.0.2/32 dev lo
# transport=rdma on a host without an RDMA device: a clear error, exit 1.
# (The RDMA transport itself is tested on soft-RoCE: make check-rdma.)
if grep -q '^ENABLE_RDMA := yes' "$SRCDIR/build/config.mk" && [ ! -d /sys/class/infiniband ]; then
    expect_reject "plover: syncvm link on 10.1.0.2:7101: rdma_create_event_channel: No such device (no RDMA device or rdma_ucm not loaded?)" \
        "${NET[@]}" "${SECRET[@]}" -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST,transport=rdma"
fi

# Drives that syncvm cannot replicate, each refused in one line.
IMG=$WORK/disk.raw
"$QEMU_IMG" create -q -f raw "$IMG" 16M
BLK=(-device virtio-blk-pci,drive=d0,id=vd0)
expect_reject "-plover: disks: drive 'd0' is read-only; a replicated drive must be writable" \
    "${NET[@]}" "${SECRET[@]}" -drive "file=$IMG,if=none,id=d0,format=raw,read-only=on" "${BLK[@]}" \
    -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST,disks=d0"
expect_reject "-plover: disks: drive 'd0' has cache=unsafe (cache.no-flush=on), which drops the guest's flushes: a write the guest saw as durable could be lost with the hosts' power" \
    "${NET[@]}" "${SECRET[@]}" -drive "file=$IMG,if=none,id=d0,format=raw,cache=unsafe" "${BLK[@]}" \
    -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST"
expect_reject "-plover: disks: no drive 'vd9' attached to a device (name a -drive id, a device id or a node name)" \
    "${NET[@]}" "${SECRET[@]}" -drive "file=$IMG,if=none,id=d0,format=raw" "${BLK[@]}" \
    -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST,disks=vd9"
"$QEMU_IMG" create -q -f raw "$WORK/odd.raw" 10000
expect_reject "-plover: disks: drive 'd0' has a size that is not a multiple of 4096 bytes" \
    "${NET[@]}" "${SECRET[@]}" -drive "file=$WORK/odd.raw,if=none,id=d0,format=raw" "${BLK[@]}" \
    -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$ST"
rm -f "$ST"

# A valid configuration: QEMU stays up and query-plover reports it. The
# group is new (no state file): incarnation 1, kept in the file.
rm -f "$ST"
qemu_start vm 0 -S "${NET[@]}" "${SECRET[@]}" \
    -drive "file.filename=$IMG,file.driver=file,file.locking=off,if=none,id=d0,format=raw" "${BLK[@]}" \
    -plover "role=auto,id=1,$PEERS,netdev=net0,secret=s0,state=$ST,suspect-ms=150"
info=$(qmp vm query-plover) || fail "query-plover failed"
python3 - "$info" <<'PY' || fail "query-plover: unexpected reply: $info"
import json, sys
i = json.loads(sys.argv[1])
assert i["enabled"] is True, i
assert i["id"] == 1 and i["configured-role"] == "auto", i
assert i["netdev"] == "net0" and i["secret"] == "s0" and i["transport"] == "tcp", i
assert [(p["host"], p["port"]) for p in i["peers"]] == \
    [("10.1.0.1", 7100), ("10.1.0.2", 7100), ("10.1.0.3", 7100)], i
assert [p["state"] for p in i["peers"]][1] == "local", i
assert i["timeouts"]["suspect-ms"] == 150 and i["timeouts"]["heartbeat-ms"] == 5, i
assert i["timeouts"]["election-ms"] == 100, i
assert i["incarnation"] == 1 and i["state"].endswith("/replica.state"), i
assert i["role"] in ("witness", "none"), i
PY
assert_eq "$(cat "$ST")" "$(printf 'plover-state 1\nid 1\nincarnation 1')" "state file of a new replica"

# Its drive is replicated; a second replica on this host given the same
# image is refused, even with QEMU's own image locking off.
assert_eq "$(pinfo vm "[(d['drive'], d['size']) for d in i['disks']]")" "[('d0', 16777216)]" "replicated drives"
nsx h0 ip tuntap add dev tap1 mode tap
expect_reject "-plover: disks: drive 'd0': image $IMG is in use by another process (another replica on this host?); each replica needs an image of its own" \
    -netdev tap,id=net0,ifname=tap1,script=no,downscript=no -device virtio-net-pci,netdev=net0 \
    "${SECRET[@]}" -drive "file.filename=$IMG,file.driver=file,file.locking=off,if=none,id=d0,format=raw" "${BLK[@]}" \
    -plover "id=1,$PEERS,netdev=net0,secret=s0,state=$WORK/other.state"

# The same command line again is a restart: the next incarnation, which
# does not vote until the group admits it.
pid=$PID_vm
forget_qemu "$pid"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
qemu_start vm 0 -S "${NET[@]}" "${SECRET[@]}" -plover "role=auto,id=1,$PEERS,netdev=net0,secret=s0,state=$ST,suspect-ms=150"
assert_eq "$(pinfo vm "i['incarnation'], i['role']")" "2 recovering" "a restarted replica"
assert_eq "$(cat "$ST")" "$(printf 'plover-state 1\nid 1\nincarnation 2')" "state file after a restart"
