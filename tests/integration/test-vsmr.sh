#!/usr/bin/env bash
# Three replicas serve one VM: a leader is elected, the secondary is
# brought to its state, every kvd answer to concurrent clients is correct,
# and at every syncvm the guest RAM of leader and secondary is identical,
# also while racey (interleaving-dependent) runs in the guest.
# GUEST_SMP=N runs the same checks on an N-vCPU guest (test-vsmr-smp2,
# test-vsmr-smp4): MTTCG runs the vCPUs in parallel, racey's 4 threads
# and kvd's connections on all of them.
. "$(dirname "$0")/lib.sh"

net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none plover.run=kvd,racey:40"
for n in 0 1 2; do
    qmp "r$n" x-plover-ram-digest '{"record": true}' >/dev/null
done
wait_protected 120
WITNESS=$(( 3 - LEADER - SECONDARY ))
echo "figure: leader r$LEADER, secondary r$SECONDARY, witness r$WITNESS"
kv_wait 60 || fail "kvd does not answer through the replicated NIC"
smp=${GUEST_SMP:-1}
wait_for 30 grep -q "ready, $smp cpus" "$WORK/r0.serial" "$WORK/r1.serial" "$WORK/r2.serial" ||
    fail "the guest did not come up with $smp vCPUs: $(grep -h 'ready' "$WORK"/r*.serial)"
for n in "$LEADER" "$SECONDARY"; do
    assert_eq "$(qmp "r$n" query-cpus-fast | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" \
        "$smp" "r$n's vCPUs"
done
echo "figure: $smp vCPU(s)"

# Concurrent clients; kvctl checks every value it wrote.
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 4 --seconds 5 --keys 128 \
    > "$WORK/load.out" || { cat "$WORK/load.out" >&2; fail "wrong answers under load"; }
grep -E '^load: (throughput|requests|latency|errors)' "$WORK/load.out" | sed 's/^/figure: /' || true
assert_eq "$(kv SET final yes)" "OK" "SET after load"
assert_eq "$(kv GET final)" "VALUE yes" "GET after load"

# The witness never runs the VM and never speaks.
assert_eq "$(pinfo "r$WITNESS" "i['executing'], i['net']['inputs-injected'], i['net']['outputs-released']")" \
    "False 0 0" "witness execution"
# The secondary executes the same inputs and drops its outputs.
[ "$(pinfo "r$SECONDARY" "i['net']['inputs-injected']")" -gt 0 ] || fail "secondary injected no input"
assert_eq "$(pinfo "r$SECONDARY" "i['net']['outputs-released']")" "0" "secondary released outputs"

# RAM digests recorded at the same syncvm epochs must be equal: the
# leader's taken at its cut, the secondary's once it applied. The leader's
# VM ran on from those cuts (the engine read its copy-on-write snapshot).
assert_ram_equal "$LEADER" "$SECONDARY" 5 "under load and racey"
[ "$(pinfo "r$LEADER" "i['syncvm']['snapshot-count']")" -gt 0 ] ||
    fail "the leader's VM never ran on from a syncvm cut"
# Those digests were equal with the pages sent as their differing blocks
# and the device state as a delta against the last one: both in use.
[ "$(pinfo "r$LEADER" "i['syncvm']['delta-pages']")" -gt 0 ] ||
    fail "no divergent page went as a sub-page delta"
# The ~60 KB blob costs about 2.3 KB a syncvm compressed on its own, and
# about 500 bytes as a delta against the last one (measured here, with
# the first syncvm, a full one, sending it compressed).
dev=$(pinfo "r$LEADER" "i['syncvm']['bytes-by-kind']['device-state'] // max(i['syncvm']['count'], 1)")
[ "$dev" -lt 1500 ] || fail "device state costs $dev bytes a syncvm: not sent as a delta"
echo "figure: device state per syncvm $dev bytes (both ways), $(pinfo "r$LEADER" "i['syncvm']['delta-pages']") pages sent as deltas"

pinfo "r$LEADER" "'figure: syncvms %d, failures %d, mean same-page rate %.3f, ran on %d, leader pause p50 %d us (compute %d, compare %d, transfer %d, apply %d), bytes sent %d' % (i['syncvm']['count'], i['syncvm']['failures'], i['syncvm']['mean-same-page-rate'], i['syncvm']['snapshot-count'], i['syncvm']['pause-p50-us'], i['syncvm']['mean-compute-us'], i['syncvm']['mean-compare-us'], i['syncvm']['mean-transfer-us'], i['syncvm']['mean-apply-us'], i['syncvm']['total-bytes-sent'])"
