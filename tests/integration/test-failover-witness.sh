#!/usr/bin/env bash
# kill -9 the witness under a checking load: nothing changes for clients.
. "$(dirname "$0")/lib.sh"

group_up
load_start 15
sleep 5
kill_replica "$WITNESS"
load_check
assert_eq "$(pinfo "r$LEADER" "i['role'], i['secondary']")" "leader $SECONDARY" "leader and secondary"
