#!/usr/bin/env bash
# Cut the leader's host off the network under a checking load: it can no
# longer release outputs (no split brain); the others elect the secondary,
# which announces the guest's MAC and serves. When the partition heals, the
# old leader, whose view never moved while it was alone (pre-vote), follows
# the new leader without forcing an election, has discarded its VM, and no
# acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 30
sleep 5
old=$LEADER
rarps=$(rarp_count)
t0=$(date +%s.%N)
nsx "h$old" ip link set uplink down
released=$(pinfo "r$old" "i['net']['outputs-released']")
wait_role "$SECONDARY" leader 30
echo "figure: secondary r$SECONDARY leads $(elapsed "$t0") s after the cut"
wait_rarp_after "$rarps" 5
new=$SECONDARY
sleep 3
# Cut off, the old leader has released nothing more.
assert_eq "$(pinfo "r$old" "i['net']['outputs-released']")" "$released" "outputs released by the cut-off leader"
assert_eq "$(pinfo "r$old" "i['role'] != 'leader', i['executing']")" "True False" "the cut-off leader (not leading, VM discarded)"
vid=$(pinfo "r$new" "i['vid']")
assert_eq "$(pinfo "r$old" "i['vid'] <= $vid")" "True" "the cut-off leader's view against the group's"
sleep 2
nsx "h$old" ip link set uplink up
t1=$(date +%s.%N)
for _ in $(seq 1 40); do
    [ "$(pinfo "r$old" "i['leader'], i['vid']")" = "$new $vid" ] && break
    sleep 0.25
done
assert_eq "$(pinfo "r$old" "i['leader'], i['vid']")" "$new $vid" "the old leader's view after the heal"
echo "figure: old leader r$old follows r$new $(elapsed "$t1") s after the heal"
sleep 3
# The returning node forced no election: the new leader's view stands.
assert_eq "$(pinfo "r$new" "i['role'], i['vid']")" "leader $vid" "the new leader after the heal"
echo "figure: old leader r$old after the heal: $(pinfo "r$old" "i['role'], i['executing']")"
load_check
