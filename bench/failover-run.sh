#!/usr/bin/env bash
# One bench-failover run on one group: a quiet baseline, a leadership
# migration, then kill -9 of the leader, each under its own checking load;
# prints "result KEY VALUE" lines (times in ms).
export PLOVER_TRACE=plover_handoff_done
. "$SRCDIR/tests/integration/lib.sh"

gap() { sed -n 's/^load: gap_ms=\([0-9]*\).*/\1/p' "$WORK/load.out"; }

# first_rarp_after NS: when the first announcement of the guest's MAC
# after NS (date +%s%N) reached the client; nothing if none did.
first_rarp_after() {
    awk -v t="$1" '$1 ~ /^[0-9]+$/ && $1 > t { print $1; exit }' "$WORK/rarp.times"
}

group_up

# The announcements of the guest's MAC, timed where the clients are: when
# the segment heard of a new leader.
ip netns exec "${NSP}cl" python3 "$SRCDIR/bench/failover-rarp.py" "$GUEST_MAC" \
    > "$WORK/rarp.times" 2>&1 &
PLV_PIDS+=($!)
wait_for 5 grep -q '^# listening' "$WORK/rarp.times" ||
    fail "the client's RARP watch did not start: $(head -c 300 "$WORK/rarp.times")"

# Baseline: the longest wait between two replies with no fault at all.
load_start 6
load_check >/dev/null
echo "result base_gap_ms $(gap)"

# Leadership migration (GAIA) in the middle of a load.
load_start 8
sleep 3
old=$LEADER
tm=$(date +%s%N)
qmp "r$old" plover-migrate-leader >/dev/null
wait_role "$SECONDARY" leader 10
wait_executing_secondary "$old" 10
load_check >/dev/null
echo "result migrate_gap_ms $(gap)"
us=$(sed -n 's/.*leadership migrated: replica [0-9]* leads, \([0-9]*\) us after the request.*/\1/p' \
     "$WORK/r$old.err" | tail -n 1)
[ -n "$us" ] && echo "result migrate_ms $(( us / 1000 ))"
rarp=$(first_rarp_after "$tm")
[ -n "$rarp" ] && echo "result migrate_rarp_ms $(( (rarp - tm) / 1000000 ))"
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
rarp=$(first_rarp_after "$t0")
[ -n "$rarp" ] && echo "result rarp_ms $(( (rarp - t0) / 1000000 ))"
