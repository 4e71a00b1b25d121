#!/usr/bin/env bash
# Two replicas lost at once, under a checking load: the secondary is
# killed, and while the leader copies the VM to the witness (capped by
# reprotect-mbps, so that the copy lasts) the witness freezes (SIGSTOP)
# for longer than suspect-ms. The leader is left alone with the only
# copy of the VM:
#  - no output leaves it while it is alone;
#  - it loses its majority and steps down, and keeps its VM, stopped,
#    instead of discarding the only copy (it used to, and the VM was lost
#    for good: the soak's seed 2); it gives its copy up as soon as it is
#    deposed, not at the copy's timeout;
#  - when the witness returns, the two are a majority again, the copy
#    resumes from the kept VM and the witness is protected;
#  - the killed replica restarts and rejoins;
#  - no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

lone_start
lone=$LONE killed=$KILLED frozen=$TARGET
frozen_pid=$(eval echo "\$PID_r$frozen")
thaw() { kill -CONT "$frozen_pid" 2>/dev/null; }
PLV_CLEANUP_HOOKS+=(thaw)
kill -STOP "$frozen_pid"
t_frozen=$(date +%s.%N)
echo "figure: r$frozen frozen $(elapsed "$T_KILL") s after the kill of r$killed, during its copy"

# Alone: it releases nothing, loses its majority, and keeps the VM.
released=$(pinfo "r$lone" "i['net']['outputs-released']")
# Consensus deposes it within suspect-ms; the copy to the frozen witness
# is given up then (it used to wait for the full syncvm's 15 s timeout).
wait_for 30 lone_kept || fail "r$lone did not keep its VM: $(qmp "r$lone" query-plover)"
echo "figure: r$lone kept its VM $(elapsed "$t_frozen") s after r$frozen froze"
assert_eq "$(pinfo "r$lone" "i['syncvm']['abandoned'] >= 1")" True \
    "r$lone gave its copy up when deposed (syncvm 'abandoned')"
grep -q "consensus deposed this leader during the syncvm" "$WORK/r$lone.err" ||
    fail "r$lone did not say why its copy failed: $(grep syncvm "$WORK/r$lone.err" | tail -3)"
assert_eq "$(pinfo "r$lone" "i['role'] != 'leader', i['executing'], i['kept']")" "True False True" \
    "r$lone alone: stepped down, not executing, its VM kept"
sleep 3
assert_eq "$(pinfo "r$lone" "i['net']['outputs-released']")" "$released" \
    "outputs released by r$lone while alone"

# The witness returns: service resumes from the kept copy, as the lone
# leader leads again or the returning witness leads and pulls it. (The
# pair is read from these two only: a query of the killed one's socket
# would wait 10 s for nothing.)
paired() {
    local a b
    a=$(pinfo "r$lone" "i['role'], i['executing'], i['kept']") &&
    b=$(pinfo "r$frozen" "i['role'], i['executing']") || return 1
    case "$a/$b" in
    "leader True False/secondary True") LEADER=$lone SECONDARY=$frozen ;;
    "secondary True False/leader True") LEADER=$frozen SECONDARY=$lone ;;
    *) return 1 ;;
    esac
    # protected: the leader has released what the guest said since
    local before=0
    [ "$LEADER" != "$lone" ] || before=$released
    [ "$(pinfo "r$LEADER" "i['net']['outputs-released']")" -gt "$before" ]
}
t1=$(date +%s.%N)
thaw
wait_for 60 paired || fail "no protected pair after r$frozen returned: $(qmp "r$lone" query-plover)"
echo "figure: protected again (r$LEADER leads, r$SECONDARY secondary) $(elapsed "$t1") s after r$frozen returned"

# The killed replica restarts and rejoins.
replica_start "$killed"
wait_role "$killed" witness 60
load_check
