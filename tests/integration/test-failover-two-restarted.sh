#!/usr/bin/env bash
# Two replicas killed (kill -9) and restarted while the third runs on,
# under a checking load. The secondary is killed; while the leader copies
# the VM to the witness (capped by reprotect-mbps, so that the copy
# lasts) the witness is killed too. The leader is left alone with the
# only copy of the VM, and both others come back as new processes:
#  - no output leaves the lone leader while it is alone, and it keeps its
#    VM, stopped;
#  - each restarted replica kept its consensus state (durable=on:
#    state=FILE.paxos), so it votes at once: the lone leader and a restarted one are a
#    majority again. (Without that state, a restarted replica waits for an
#    admission that needs two voters besides it: two restarted replicas
#    never brought the group back.)
#  - service resumes from the kept VM, both restarted replicas are
#    admitted, a pair is protected, and no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

lone_start ",durable=on"
lone=$LONE first=$KILLED second=$TARGET
kill_replica "$second"
t_killed=$(date +%s.%N)
echo "figure: r$second killed $(elapsed "$T_KILL") s after r$first, during its copy"

# Alone: it releases nothing and keeps the VM.
released=$(pinfo "r$lone" "i['net']['outputs-released']")
wait_for 30 lone_kept || fail "r$lone did not keep its VM: $(qmp "r$lone" query-plover)"
echo "figure: r$lone kept its VM $(elapsed "$t_killed") s after r$second was killed"
assert_eq "$(pinfo "r$lone" "i['role'] != 'leader', i['executing'], i['kept']")" "True False True" \
    "r$lone alone: stepped down, not executing, its VM kept"
sleep 2
assert_eq "$(pinfo "r$lone" "i['net']['outputs-released']")" "$released" \
    "outputs released by r$lone while alone"

# Both come back as new processes, with what they promised and accepted.
t1=$(date +%s.%N)
replica_start "$first"
replica_start "$second"
restored() { grep -q "replica $1 restarted as incarnation 2 with its consensus state" "$WORK/r$1.err"; }
for n in "$first" "$second"; do
    wait_for 10 restored "$n" ||
        fail "r$n did not restore its consensus state: $(grep -i plover "$WORK/r$n.err" | tail -3)"
done

# The lone leader leads again (the restarted replicas vote but do not
# stand before the log admits them), admits both, and protects its VM.
protected() {
    local a
    a=$(pinfo "r$lone" "i['role'], i['executing'], i['kept'], i['secondary']") || return 1
    case "$a" in
    "leader True False $first"|"leader True False $second") ;;
    *) return 1 ;;
    esac
    SECONDARY=${a##* }
    [ "$(pinfo "r$SECONDARY" "i['role'], i['executing']")" = "secondary True" ] &&
        [ "$(pinfo "r$lone" "i['net']['outputs-released']")" -gt "$released" ]
}
wait_until 90 protected || fail "no protected pair after both restarted: $(qmp "r$lone" query-plover)"
echo "figure: protected again (r$lone leads, r$SECONDARY secondary) $(elapsed "$t1") s after both restarted"
other=$(( 3 - lone - SECONDARY ))
wait_role "$other" witness 60
for n in "$first" "$second"; do
    assert_eq "$(pinfo "r$n" "i['incarnation'], i['consensus-state']['restored']")" "2 True" \
        "r$n incarnation, consensus state restored"
done
assert_eq "$(pinfo "r$lone" "i['consensus-state']['writes'] > 0, i['consensus-state']['failed']")" \
    "True False" "r$lone keeps its consensus state"
echo "figure: r$lone consensus state: $(pinfo "r$lone" "'%d writes, %d bytes, fdatasync mean %d us, max %d us, %d of 20 ms or more' % tuple(i['consensus-state'][k] for k in ('writes', 'bytes', 'sync-mean-us', 'sync-max-us', 'slow-syncs'))")"
load_check
