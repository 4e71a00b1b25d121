#!/usr/bin/env bash
# The leader's held output is bounded (max-held-output-kib). With a 4 KiB
# bound, 64 clients and a secondary with which every syncvm fails (so
# nothing is released until the leader replaces it), the held output
# never passes the bound (its peak, outputs-held-peak-bytes), what arrives past it is dropped and counted
# (outputs-over-cap), and the clients' retransmissions make up for it:
# no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none" ",max-held-output-kib=4"
wait_protected 120
WITNESS=$(( 3 - LEADER - SECONDARY ))
kv_wait 60 || fail "kvd does not answer"
LOAD_CLIENTS=64 load_start 20
sleep 4
over0=$(pinfo "r$LEADER" "i['net']['outputs-over-cap']")
qmp "r$SECONDARY" x-plover-inject-fault '{"fault": "fail-syncvm"}' > /dev/null
wait_executing_secondary "$WITNESS" 20
most=$(pinfo "r$LEADER" "i['net']['outputs-held-peak-bytes']")
over=$(( $(pinfo "r$LEADER" "i['net']['outputs-over-cap']") - over0 ))
echo "figure: most output held while syncvms failed: $most bytes (bound 4096); $over packets dropped at the bound"
[ "$most" -le 4096 ] || fail "the leader held $most bytes of output, over its 4096-byte bound"
[ "$over" -gt 0 ] || fail "nothing reached the bound: the test did not test it"
load_check
