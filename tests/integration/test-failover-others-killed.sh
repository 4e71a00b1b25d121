#!/usr/bin/env bash
# The secondary and the witness killed at once (kill -9) while the pair
# is protected, under a checking load; the replicas keep their consensus
# state (durable=on). The leader is left alone, and its secondary held a
# copy of the VM when it died:
#  - no output leaves the lone leader;
#  - it keeps its VM, stopped, provisionally (the secondary might have
#    been alive and gone on without it; it is not, but the leader cannot
#    know that). It used to discard it, and the VM was lost for good;
#  - the witness comes back alone: with the leader it is a majority. The
#    leader is preferred as candidate, its phase 1 finds no view newer
#    than its own promised to another replica, so it runs its VM again:
#    service resumes, the witness becomes its secondary by a full copy;
#  - the killed secondary comes back and rejoins as the witness;
#  - no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none" ",durable=on"
wait_protected 120
kv_wait 60 || fail "kvd does not answer"
lone=$LEADER sec=$SECONDARY wit=$(( 3 - LEADER - SECONDARY ))
load_start 60
sleep 4

released=$(pinfo "r$lone" "i['net']['outputs-released']")
t_kill=$(date +%s.%N)
pids=("$(eval echo "\$PID_r$sec")" "$(eval echo "\$PID_r$wit")")
forget_qemu "${pids[0]}"
forget_qemu "${pids[1]}"
kill -KILL "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
echo "figure: r$sec (secondary) and r$wit (witness) killed; r$lone led"

# Alone: it releases nothing after the kill and keeps its VM, provisionally.
kept_provisional() {
    [ "$(pinfo "r$lone" "i['role'] != 'leader', i['executing'], i['kept'], i['kept-provisional']")" = \
        "True False True True" ]
}
wait_for 30 kept_provisional || fail "r$lone did not keep its VM: $(qmp "r$lone" query-plover)"
echo "figure: r$lone kept its VM $(elapsed "$t_kill") s after the kill"
grep -q "keeps its VM, stopped, in case the other replicas are gone too" "$WORK/r$lone.err" ||
    fail "r$lone did not say that it keeps its VM: $(grep plover "$WORK/r$lone.err" | tail -3)"
alone=$(pinfo "r$lone" "i['net']['outputs-released']")
sleep 3
assert_eq "$(pinfo "r$lone" "i['net']['outputs-released']")" "$alone" \
    "outputs released by r$lone while alone"

# The witness comes back, with what it promised: the two are a majority.
t_back=$(date +%s.%N)
replica_start "$wit"
wait_for 10 grep -q "replica $wit restarted as incarnation 2 with its consensus state" \
    "$WORK/r$wit.err" || fail "r$wit did not restore its consensus state"
resumed() {
    [ "$(pinfo "r$lone" "i['role'], i['executing'], i['kept'], i['secondary']")" = \
        "leader True False $wit" ] &&
        [ "$(pinfo "r$wit" "i['role'], i['executing']")" = "secondary True" ] &&
        [ "$(pinfo "r$lone" "i['net']['outputs-released']")" -gt "$alone" ]
}
wait_until 90 resumed || fail "r$lone did not resume its VM with r$wit: $(qmp "r$lone" query-plover)"
echo "figure: service resumed from r$lone's kept VM, r$wit protecting it," \
    "$(elapsed "$t_back") s after r$wit restarted"
assert_eq "$(pinfo "r$lone" "i['kept-stale'], i['syncvm']['full-count'] >= 1")" "0 True" \
    "r$lone's kept VM used (not found stale), r$wit given a full copy"

# The secondary comes back too, and is the witness.
replica_start "$sec"
wait_role "$sec" witness 60
assert_eq "$(pinfo "r$sec" "i['incarnation'], i['executing']")" "2 False" \
    "r$sec restarted, not executing"
load_check
echo "figure: $(pinfo "r$lone" "'%d outputs released in all, %d before the kill' % (i['net']['outputs-released'], $released)")"
