#!/usr/bin/env bash
# kill -9 the witness under a checking load: nothing changes for clients.
. "$(dirname "$0")/lib.sh"

net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none"
wait_protected 120
WITNESS=$(( 3 - LEADER - SECONDARY ))
kv_wait 60 || fail "kvd does not answer"
load_start 15
sleep 5
kill_replica "$WITNESS"
load_check
assert_eq "$(pinfo "r$LEADER" "i['role'], i['secondary']")" "leader $SECONDARY" "leader and secondary"
