#!/usr/bin/env bash
# One bench-failover run on one group: a quiet baseline, a leadership
# migration, then kill -9 of the leader, each under its own checking load;
# prints "result KEY VALUE" lines (times in ms).
export PLOVER_TRACE=plover_handoff_done
. "$SRCDIR/tests/integration/lib.sh"

gap() { sed -n 's/^load: gap_ms=\([0-9]*\).*/\1/p' "$WORK/load.out"; }

group_up

# Baseline: the longest wait between two replies with no fault at all.
load_start 6
load_check >/dev/null
echo "result base_gap_ms $(gap)"

# Leadership migration (GAIA) in the middle of a load.
load_start 8
sleep 3
old=$LEADER
qmp "r$old" plover-migrate-leader >/dev/null
wait_role "$SECONDARY" leader 10
wait_executing_secondary "$old" 10
load_check >/dev/null
echo "result migrate_gap_ms $(gap)"
us=$(sed -n 's/.*leadership migrated: replica [0-9]* leads, \([0-9]*\) us after the request.*/\1/p' \
     "$WORK/r$old.err" | tail -n 1)
[ -n "$us" ] && echo "result migrate_ms $(( us / 1000 ))"
LEADER=$SECONDARY SECONDARY=$old

# kill -9 of the leader.
load_start 15
sleep 5
t0=$(date +%s%N)
kill_replica "$LEADER"
wait_role "$SECONDARY" leader 30
t1=$(date +%s%N)
wait_executing_secondary "$WITNESS" 60
t2=$(date +%s%N)
load_check >/dev/null
echo "result elect_ms $(( (t1 - t0) / 1000000 ))"
echo "result reprotect_ms $(( (t2 - t0) / 1000000 ))"
echo "result gap_ms $(gap)"
