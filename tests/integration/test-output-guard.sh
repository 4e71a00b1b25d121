#!/usr/bin/env bash
# The output guard: a reply from the guest exists (held by the leader)
# while the client still waits, and reaches the client only after the
# syncvm counter advanced. Syncvms are made rare (every ~4 s) so that the
# held reply can be observed.
. "$(dirname "$0")/lib.sh"

net_setup
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none" \
    ",idle-window-us=4000000,idle-threshold-us=1,max-sync-interval-ms=4000"
wait_protected 120
kv_wait 90 || fail "kvd does not answer"

# Start right after a syncvm, so the next one is seconds away.
e=$(pinfo "r$LEADER" "i['epoch']")
for _ in $(seq 1 100); do
    [ "$(pinfo "r$LEADER" "i['epoch']")" != "$e" ] && break
    sleep 0.1
done
e0=$(pinfo "r$LEADER" "i['epoch']")
ip netns exec "${NSP}cl" "$KVCTL" --timeout 30 "$GUEST_IP" "$KVD_PORT" SET guarded 1 > "$WORK/reply" &
client=$!
PLV_PIDS+=("$client")

# The reply is produced and held while the client waits, in the same epoch.
seen=no
for _ in $(seq 1 60); do
    r=$(pinfo "r$LEADER" "i['epoch'], i['net']['outputs-held']")
    if [ "${r% *}" = "$e0" ] && [ "${r#* }" -gt 0 ] && kill -0 "$client" 2>/dev/null; then
        seen=yes
        break
    fi
    sleep 0.05
done
[ "$seen" = yes ] || fail "never saw output held while the client waited (epoch $e0)"
echo "figure: output held at epoch $e0 while the client waited"

wait "$client" || fail "the client got no reply"
assert_eq "$(cat "$WORK/reply")" "OK" "reply"
e1=$(pinfo "r$LEADER" "i['epoch']")
[ "$e1" -gt "$e0" ] || fail "reply arrived without a syncvm (epoch $e0 -> $e1)"
echo "figure: reply released after syncvm epoch $e0 -> $e1"
