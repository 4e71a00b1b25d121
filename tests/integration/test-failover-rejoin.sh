#!/usr/bin/env bash
# Three leader failures in a row under one checking load. Each time the
# killed leader is restarted with its own command line: it comes back as
# a new incarnation, learns the log without voting (recovering), is
# admitted as a witness, and is the replica made secondary by the next
# failover. No acknowledged write may be lost across all of it.
. "$(dirname "$0")/lib.sh"

group_up
load_start 70
sleep 5
for round in 1 2 3; do
    old=$LEADER
    t0=$(date +%s.%N)
    kill_replica "$old"
    wait_role "$SECONDARY" leader 30
    wait_executing_secondary "$WITNESS" 60
    echo "figure: round $round: r$SECONDARY leads, r$WITNESS re-protects $(elapsed "$t0") s after the kill of r$old"
    LEADER=$SECONDARY SECONDARY=$WITNESS WITNESS=$old

    replica_start "$old"
    t1=$(date +%s.%N)
    wait_role "$old" witness 60
    inc=$(pinfo "r$old" "i['incarnation']")
    assert_eq "$inc" 2 "incarnation of r$old after its restart"  # once per replica
    echo "figure: round $round: r$old rejoined as witness (incarnation $inc) after $(elapsed "$t1") s"
    # The group keeps serving with the new member in place.
    assert_eq "$(pinfo "r$LEADER" "i['role'], i['secondary']")" "leader $SECONDARY" \
        "roles after r$old rejoined"
    sleep 3
done
load_check
