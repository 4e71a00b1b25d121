#!/usr/bin/env bash
# One bench-failover run: kill -9 the leader under a checking load; prints
# "result KEY VALUE" lines (times in ms).
. "$SRCDIR/tests/integration/lib.sh"

group_up
load_start 15
sleep 5
t0=$(date +%s%N)
kill_replica "$LEADER"
wait_role "$SECONDARY" leader 30
t1=$(date +%s%N)
wait_executing_secondary "$WITNESS" 60
t2=$(date +%s%N)
load_check >/dev/null
echo "result elect_ms $(( (t1 - t0) / 1000000 ))"
echo "result reprotect_ms $(( (t2 - t0) / 1000000 ))"
sed -n 's/^load: gap_ms=\([0-9]*\).*/result gap_ms \1/p' "$WORK/load.out"
pinfo "r$WITNESS" "'result full_sync_pages %d' % i['syncvm']['dirty-pages']" 2>/dev/null || true
