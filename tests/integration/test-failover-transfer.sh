#!/usr/bin/env bash
# The leader dies in the middle of a syncvm transfer (pages sent, device
# state and end not): the secondary discards what it staged, takes over
# from its own consistent state, and no acknowledged write is lost. The
# leader's VM runs on from each cut by then, so it dies after resuming
# and before the ACK: nothing it said after the previous syncvm may have
# left.
. "$(dirname "$0")/lib.sh"

group_up
load_start 20
sleep 5
ran_on=$(pinfo "r$LEADER" "i['syncvm']['snapshot-count']")
[ "$ran_on" -gt 0 ] || fail "the leader's VM never ran on from a syncvm cut"
pid=$(eval echo "\$PID_r$LEADER")
forget_qemu "$pid"
# The next syncvm can come before QMP's reply leaves: the reply may be lost
# with the process; its exit status below is what counts.
qmp "r$LEADER" x-plover-inject-fault '{"fault": "exit-during-syncvm-transfer"}' >/dev/null 2>&1 || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the leader did not die in a syncvm transfer within 10 s"
rc=0
wait "$pid" || rc=$?
assert_eq "$rc" "70" "exit status of the leader killed during a transfer"
wait_role "$SECONDARY" leader 30
load_check
