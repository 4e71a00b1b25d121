#!/usr/bin/env bash
# make demo: the test guest on the built QEMU, in its own host namespace on
# a bridged segment, with kvd serving a concurrent client load from a client
# namespace; live figures printed; everything torn down at the end.
#
# Replication (-plover across three host namespaces) joins this demo as the
# VSMR path lands; today the demo shows the platform it runs on.
. "$(dirname "$0")/lib.sh"

SECONDS_LOAD=${DEMO_SECONDS:-10}

echo "== plover-qemu demo: $("$QEMU" --version | head -n1)"
net_setup
host_setup 0
echo "== namespaces: ${NSP}lan (segment), ${NSP}h0 (host, tap0), ${NSP}cl (client $CLIENT_IP)"
t0=$(date +%s.%N)
guest_args "plover.ip=$GUEST_IP/24 plover.gw=none"
qemu_start vm 0 "${GUEST_ARGS[@]}"
echo "== booting the test guest (accel ${PLOVER_ACCEL:-tcg}, PID $PID_vm)"
wait_serial vm "PLOVER-GUEST: kvd listening" 90
kv_wait 30 || fail "kvd does not answer"
echo "== kvd at $GUEST_IP:$KVD_PORT serving after $(echo "$(date +%s.%N) - $t0" | bc -l | cut -c1-4) s"
echo "   SET demo hello -> $(kv SET demo hello)"
echo "   GET demo       -> $(kv GET demo)"
echo "== query-plover: $(qmp vm query-plover)"
echo "== client load: 8 clients, ${SECONDS_LOAD} s, 50% writes (every answer checked)"
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 8 --seconds "$SECONDS_LOAD" \
    --keys 256 --write-ratio 0.5
echo "== shutting down"
qmp vm quit >/dev/null || true
echo "== demo done"
