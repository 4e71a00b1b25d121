#!/usr/bin/env bash
# A secondary with which every syncvm fails (x-plover-inject-fault
# fail-syncvm) under a checking load: the leader counts each failure in
# n_err and, at the consensus layer's threshold (3), replaces it with the
# witness. Within the bound (docs/operations.md, "When syncvms keep
# failing") the leader has a new executing secondary and releases output
# again, and no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 25
sleep 4
bad=$SECONDARY
released=$(pinfo "r$LEADER" "i['net']['outputs-released']")
t0=$(date +%s.%N)
qmp "r$bad" x-plover-inject-fault '{"fault": "fail-syncvm"}' > /dev/null
wait_executing_secondary "$WITNESS" 20
echo "figure: witness r$WITNESS replaces the failing secondary $(elapsed "$t0") s after the fault"
assert_eq "$(pinfo "r$LEADER" "i['role'], i['secondary']")" "leader $WITNESS" "the leader and its secondary"
demoted() { [ "$(pinfo "r$bad" "i['role'], i['executing']")" = "witness False" ]; }
wait_for 5 demoted || fail "the failing replica r$bad: $(pinfo "r$bad" "i['role'], i['executing']"), expected a witness without its VM"
n_err=$(pinfo "r$LEADER" "i['n-err']")
[ "$n_err" -ge 3 ] || fail "the leader counted $n_err syncvm errors, expected at least 3"
echo "figure: leader n-err $n_err, failures $(pinfo "r$LEADER" "i['syncvm']['failures']")"
# Outputs flow again once the new secondary holds the VM.
released_more() { [ "$(pinfo "r$LEADER" "i['net']['outputs-released'] > $1")" = True ]; }
wait_for 10 released_more "$(pinfo "r$LEADER" "i['net']['outputs-released']")" ||
    fail "the leader released no output after the replacement"
load_check
