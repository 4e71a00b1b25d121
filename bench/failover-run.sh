#!/usr/bin/env bash
# One bench-failover run on one group: a quiet baseline, a leadership
# migration, then kill -9 of the leader, each under its own checking load;
# prints "result KEY VALUE" lines (times in ms). With BENCH_OUT set, also
# a timeline picture of each fault there (bench/failover-plot.py: BENCH_OUT/
# migration.svg and kill.svg), and a "picture ..." line for each.
export PLOVER_TRACE=plover_handoff_done
. "$SRCDIR/tests/integration/lib.sh"

gap() { sed -n 's/^load: gap_ms=\([0-9]*\).*/\1/p' "$WORK/load.out"; }

# first_rarp_after NS: when the first announcement of the guest's MAC
# after NS (date +%s%N) reached the client; nothing if none did.
first_rarp_after() {
    awk -v t="$1" '$1 ~ /^[0-9]+$/ && $1 > t { print $1; exit }' "$WORK/rarp.times"
}

# picture NAME TITLE [LABEL=NS...]: the timeline of load NAME (its reply
# log, $WORK/NAME.replies, kept beside it) with its marks; never fails the
# run.
picture() {
    [ -n "${BENCH_OUT:-}" ] || return 0
    mkdir -p "$BENCH_OUT"
    cp "$WORK/$1.replies" "$BENCH_OUT/" 2>/dev/null || true
    python3 "$SRCDIR/bench/failover-plot.py" "$BENCH_OUT/$1.replies" "$BENCH_OUT/$1" "${@:2}" 2>&1 |
        sed 's/^/picture /' || true
}

group_up
title="${PLOVER_ACCEL:-tcg}, ${LOAD_CLIENTS:-8} kvd clients"

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
KVCTL_REPLY_LOG=$WORK/migration.replies load_start 8
sleep 3
old=$LEADER
tm=$(date +%s%N)
qmp "r$old" plover-migrate-leader >/dev/null
wait_role "$SECONDARY" leader 10
wait_executing_secondary "$old" 10
tp=$(date +%s%N)
load_check >/dev/null
echo "result migrate_gap_ms $(gap)"
us=$(sed -n 's/.*leadership migrated: replica [0-9]* leads, \([0-9]*\) us after the request.*/\1/p' \
     "$WORK/r$old.err" | tail -n 1)
[ -n "$us" ] && echo "result migrate_ms $(( us / 1000 ))"
rarp=$(first_rarp_after "$tm")
[ -n "$rarp" ] && echo "result migrate_rarp_ms $(( (rarp - tm) / 1000000 ))"
# The new pair runs when the old leader's trace says so (the request's
# time there is a few ms after tm, when qmp.py reached QEMU); else when
# the polling saw it.
picture migration "leadership migration r$old -> r$SECONDARY under load ($title)" \
    "migration request=$tm" ${rarp:+"RARP from r$SECONDARY (new leader) at the client=$rarp"} \
    "$([ -n "$us" ] && echo "new pair running=$(( tm + us * 1000 ))" || echo "new pair running, polled=$tp")"
LEADER=$SECONDARY SECONDARY=$old

# kill -9 of the leader.
KVCTL_REPLY_LOG=$WORK/kill.replies load_start 15
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
# t1 and t2 are when the polling (every 0.25 s, through QMP) saw the
# change: up to about 0.3 s late.
picture kill "kill -9 of the leader r$LEADER under load ($title)" \
    "kill -9 r$LEADER=$t0" \
    "$([ -n "$rarp" ] && echo "RARP from r$SECONDARY (new leader) at the client=$rarp" ||
       echo "r$SECONDARY leads, polled=$t1")" \
    "r$WITNESS re-protects the VM, polled=$t2"
