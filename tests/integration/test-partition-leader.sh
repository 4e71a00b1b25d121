#!/usr/bin/env bash
# Cut the leader's host off the network under a checking load: it can no
# longer release outputs; the others elect the secondary and serve. When
# the partition heals, the old leader steps down and discards its state;
# no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 30
sleep 5
nsx "h$LEADER" ip link set uplink down
released=$(pinfo "r$LEADER" "i['net']['outputs-released']")
wait_role "$SECONDARY" leader 30
sleep 3
# Cut off, the old leader has released nothing more (no split brain).
assert_eq "$(pinfo "r$LEADER" "i['net']['outputs-released']")" "$released" "outputs released by the cut-off leader"
nsx "h$LEADER" ip link set uplink up
deadline=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    r=$(pinfo "r$LEADER" "i['role'], i['executing']")
    case "$r" in leader*) sleep 0.25 ;; *) break ;; esac
done
case "$r" in
*" False"|"secondary True") echo "figure: old leader r$LEADER after the heal: $r" ;;
*) fail "old leader r$LEADER did not step down after the heal: $r" ;;
esac
load_check
