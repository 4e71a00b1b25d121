#!/usr/bin/env bash
# The first leader is lost before the group was ever protected: it booted
# the VM, but no syncvm with a secondary completed (the syncvm ports are
# blocked), so its VM was the only copy and nothing it said ever left.
# Killed, it takes the VM with it. The other two elect a leader that has
# no copy, and its secondary has none either: the leader boots the VM
# again (once the syncvm ports open) and the group serves. Before, the
# pair answered "neither leader nor secondary holds the VM" for ever (seen
# when the first leader was deposed by a false suspicion while the three
# guests booted).
. "$(dirname "$0")/lib.sh"

net_setup
for n in 0 1 2; do
    host_setup "$n"
    # The syncvm link (the consensus port + 1) is cut: no syncvm completes.
    nsx "h$n" iptables-legacy -A INPUT -p tcp --dport 7101 -j DROP
done
REPLICA_APPEND="plover.ip=$GUEST_IP/24 plover.gw=none"
REPLICA_EXTRA=""
for n in 0 1 2; do
    replica_start "$n"
done

first_leader() {
    local n r
    for n in 0 1 2; do
        r=$(pinfo "r$n" "i['role'], i['executing'], i['syncvm']['count']" 2>/dev/null) || continue
        [ "$r" = "leader True 0" ] && { FIRST=$n; return 0; }
    done
    return 1
}
# At once: with no syncvm possible, the pair cannot survive a false
# suspicion meanwhile either (the VM would be lost before the kill).
wait_for 60 first_leader || fail "no first leader running the VM within 60s"
assert_eq "$(pinfo "r$FIRST" "i['role'], i['executing'], i['net']['outputs-released']")" \
    "leader True 0" "the first leader, unprotected"
kill_replica "$FIRST"
echo "figure: first leader r$FIRST killed before any syncvm completed"
t0=$(date +%s.%N)
for n in 0 1 2; do
    [ "$n" = "$FIRST" ] && continue
    nsx "h$n" iptables-legacy -D INPUT -p tcp --dport 7101 -j DROP
done

wait_protected 120
echo "figure: r$LEADER leads a protected VM again $(elapsed "$t0") s after the kill"
grep -q "it boots the VM again" "$WORK/r$LEADER.err" ||
    fail "r$LEADER did not boot the VM again: $(grep plover "$WORK/r$LEADER.err" | tail -n 5)"
kv_wait 60 || fail "kvd does not answer after the VM booted again"
assert_eq "$(kv SET k v)" OK "a write to the VM booted again"
assert_eq "$(kv GET k)" "VALUE v" "the write read back"

# The killed replica comes back as a new incarnation and joins.
nsx "h$FIRST" iptables-legacy -D INPUT -p tcp --dport 7101 -j DROP
replica_start "$FIRST"
wait_role "$FIRST" witness 60
echo "figure: r$FIRST rejoined as the witness"
