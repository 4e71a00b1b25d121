#!/usr/bin/env bash
# The replicated drive on virtio-scsi (a scsi-hd on a virtio-scsi HBA,
# r0's image in qcow2): under a durable kvd load, leader and secondary
# hold identical RAM and drives at every syncvm; the secondary is killed
# and the witness, re-protected while the leader's VM runs on, holds the
# leader's drive at every syncvm after; no acknowledged write is lost.
# The re-protection is capped (reprotect-mbps=400) and query-plover
# shows its progress meanwhile.
. "$(dirname "$0")/lib.sh"

REPLICA_DISK=virtio-scsi DISK_FORMATS="qcow2 raw raw"
net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none plover.disk=/dev/sda plover.run=kvd-durable" \
    ",reprotect-mbps=400"
wait_protected 120
WITNESS=$(( 3 - LEADER - SECONDARY ))
kv_wait 60 || fail "kvd does not answer"
wait_serial "r$LEADER" "kvd listening on .*durable" 30
for n in 0 1 2; do
    qmp "r$n" x-plover-ram-digest '{"record": true}' >/dev/null
done
load_start 20
sleep 6
assert_ram_equal "$LEADER" "$SECONDARY" 5 "on virtio-scsi under a durable load"
t0=$(date +%s.%N)
old=$SECONDARY
kill_replica "$SECONDARY"
# The leader's progress while it sends the full syncvm.
seen=""
for _ in $(seq 1 600); do
    p=$(pinfo "r$LEADER" "i['syncvm'].get('full-progress')")
    [ "$p" != None ] && seen=$p
    [ "$(pinfo "r$WITNESS" "i['role'], i['executing']")" = "secondary True" ] && break
    sleep 0.1
done
wait_executing_secondary "$WITNESS" 60
[ -n "$seen" ] || fail "query-plover never showed the full syncvm's progress"
echo "figure: last progress seen: $seen"
python3 - "$seen" <<'PY' || fail "the full syncvm went past reprotect-mbps=400: $seen"
import ast, sys
p = ast.literal_eval(sys.argv[1])
assert p["bytes-bound"] >= (256 + 64) << 20, p
assert "eta-max-ms" in p, p
# paced to 400 Mbit/s = 50 MB/s, from its start (one message of slack)
assert p["bytes-sent"] <= 50e6 * p["elapsed-ms"] / 1000 + (4 << 20), p
PY
echo "figure: witness r$WITNESS re-protects the VM $(elapsed "$t0") s after the kill of the secondary"
pinfo "r$LEADER" "'figure: leader pause max %d us, p99 %d us over %d syncvms (%d full)' % (i['syncvm']['pause-max-us'], i['syncvm']['pause-p99-us'], i['syncvm']['count'], i['syncvm']['full-count'])"
load_check
SECONDARY=$WITNESS WITNESS=$old
qmp "r$SECONDARY" x-plover-ram-digest '{"record": true}' >/dev/null
light_load_recording "$LEADER" "$SECONDARY"
assert_ram_equal "$LEADER" "$SECONDARY" 3 "after re-protection, on virtio-scsi"
