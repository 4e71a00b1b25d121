#!/usr/bin/env bash
# kill -9 the leader under a checking load: the secondary (never the
# witness) takes over from its own state, the witness is made secondary,
# and no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 25
sleep 6
t0=$(date +%s.%N)
kill_replica "$LEADER"
wait_role "$SECONDARY" leader 30
echo "figure: secondary r$SECONDARY leads $(elapsed "$t0") s after the kill"
wait_executing_secondary "$WITNESS" 60
echo "figure: witness r$WITNESS re-protects the VM $(elapsed "$t0") s after the kill"
load_check
