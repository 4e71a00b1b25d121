#!/usr/bin/env bash
# The secondary loads the device state before it ACKs a syncvm. Make that
# load fail once after the divergent pages were written into its RAM
# (x-plover-inject-fault fail-device-state-load), under a checking load:
# the leader must not release that syncvm's output, the secondary must
# stop its VM (never run new RAM with old devices) and be rebuilt by a
# full syncvm, after which both RAMs are identical at every syncvm and no
# acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 20
sleep 4
full0=$(pinfo "r$LEADER" "i['syncvm']['full-count']")
fail0=$(pinfo "r$LEADER" "i['syncvm']['failures']")
qmp "r$SECONDARY" x-plover-inject-fault '{"fault": "fail-device-state-load"}' > /dev/null
commit_failed() { [ "$(pinfo "r$SECONDARY" "i['syncvm']['commit-failures']")" = 1 ]; }
wait_for 10 commit_failed || fail "the injected device-state load failure did not happen"
full_more() { [ "$(pinfo "r$LEADER" "i['syncvm']['full-count'] > $full0")" = True ]; }
wait_for 20 full_more || fail "no full syncvm rebuilt the secondary"
# Rebuilt (normally the same replica: one failure does not reach the
# n_err threshold; under this load the leader may also replace it).
SECONDARY=$(pinfo "r$LEADER" "i['secondary']")
wait_executing_secondary "$SECONDARY" 20
echo "figure: leader failures $fail0 -> $(pinfo "r$LEADER" "i['syncvm']['failures']"), full syncvms $full0 -> $(pinfo "r$LEADER" "i['syncvm']['full-count']"), secondary r$SECONDARY"
grep -q "failed to commit" "$WORK/r$LEADER.err" || fail "the leader did not see the commit failure"
load_check
light_load_recording "$LEADER" "$SECONDARY"
assert_ram_equal "$LEADER" "$SECONDARY" 5 "after the full syncvm"
