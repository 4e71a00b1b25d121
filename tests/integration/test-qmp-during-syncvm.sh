#!/usr/bin/env bash
# QMP answers while a syncvm runs: the engine and the syncvm link run on a
# thread of their own, without the BQL, so QEMU's main loop goes on. Three
# replicas of a 1 GiB guest; the first syncvm of the pair is a full one
# (the secondary joins with no copy of the VM). query-plover on each
# replica, from the first reply that shows a syncvm in flight until the
# leader reports that full syncvm complete, must answer within 50 ms.
. "$(dirname "$0")/lib.sh"

net_setup
GUEST_MEM=1024
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none"
python3 "$SRCDIR/tests/integration/qmp-latency.py" --max-ms 50 --min-samples 5 \
    "$WORK/r0.qmp" "$WORK/r1.qmp" "$WORK/r2.qmp" > "$WORK/latency.out" 2>&1 ||
    { cat "$WORK/latency.out" >&2; fail "query-plover was slow or never saw the full syncvm"; }
cat "$WORK/latency.out"
wait_protected 60
full=$(pinfo "r$LEADER" "i['syncvm']['full-count']")
echo "figure: leader r$LEADER, full syncvms: $full, pre-copy rounds: $(pinfo "r$LEADER" "i['syncvm']['precopy-rounds']")"
