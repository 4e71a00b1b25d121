#!/usr/bin/env bash
# kill -9 the secondary under a checking load: the leader goes on, the
# witness is made secondary, no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 20
sleep 5
t0=$(date +%s.%N)
kill_replica "$SECONDARY"
wait_executing_secondary "$WITNESS" 60
echo "figure: witness r$WITNESS re-protects the VM $(elapsed "$t0") s after the kill"
assert_eq "$(pinfo "r$LEADER" "i['role']")" "leader" "leader after the secondary died"
load_check
