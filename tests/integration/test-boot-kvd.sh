#!/usr/bin/env bash
# The test guest boots on the built QEMU without -plover, on a tap in its
# own host namespace, and kvd answers a client in another namespace.
. "$(dirname "$0")/lib.sh"

net_setup
host_setup 0
t0=$(date +%s.%N)
guest_args "plover.ip=$GUEST_IP/24 plover.gw=none"
qemu_start vm 0 "${GUEST_ARGS[@]}"
wait_serial vm "PLOVER-GUEST: kvd listening on $GUEST_IP:$KVD_PORT" 90
kv_wait 30 || fail "kvd does not answer PING from the client namespace"
t1=$(date +%s.%N)
echo "figure: boot to serving kvd (tcg): $(echo "$t1 - $t0" | bc -l | cut -c1-5) s"

assert_eq "$(kv SET answer 42)" "OK" "SET"
assert_eq "$(kv GET answer)" "VALUE 42" "GET"
assert_eq "$(kv INCR answer)" "VALUE 43" "INCR"
assert_eq "$(kv DEL answer)" "OK" "DEL"
assert_eq "$(kv GET answer)" "NOTFOUND" "GET after DEL"

# Several concurrent clients; kvctl checks every value it wrote.
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 4 --seconds 3 --keys 64 \
    || fail "concurrent load saw wrong answers or errors"

# Without -plover, query-plover says so and nothing else.
assert_eq "$(qmp vm query-plover)" '{"enabled": false}' "query-plover without -plover"
# ... and QEMU's query-stats has no plover provider to report.
assert_eq "$(qmp vm query-stats '{"target": "vm", "providers": [{"provider": "plover"}]}')" '[]' \
    "query-stats (plover) without -plover"
assert_eq "$(qmp vm query-stats-schemas '{"provider": "plover"}')" '[]' \
    "query-stats-schemas (plover) without -plover"
