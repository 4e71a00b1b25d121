#!/usr/bin/env bash
# make demo: three replicas of one VM, each in its own host namespace on a
# bridged segment; the test guest's kvd serves a client load from a client
# namespace while the replicas' figures are printed live; then everything
# is shut down and removed.
. "$(dirname "$0")/lib.sh"

SECONDS_LOAD=${DEMO_SECONDS:-20}

echo "== plover-qemu demo: $("$QEMU" --version | head -n1), accel ${PLOVER_ACCEL:-tcg}"
net_setup
# The replica links run TLS (DEMO_TLS=no: plaintext): a CA and one
# certificate per replica's address, made here with certtool.
links="plaintext, authenticated by the shared secret"
if [ "${DEMO_TLS:-yes}" = yes ]; then
    pki_make "$WORK/pki"
    REPLICA_TLS="$WORK/pki"
    links="TLS 1.3 (tls-creds-x509; certificates from a CA made in $WORK/pki)"
fi
t0=$(date +%s.%N)
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none"
echo "== three replicas: $(host_ip 0), $(host_ip 1), $(host_ip 2) (port 7100), role=auto"
echo "== replica links: $links"
wait_protected 120
echo "== elected: leader r$LEADER, secondary r$SECONDARY (in sync), witness r$(( 3 - LEADER - SECONDARY ))"
kv_wait 90 || fail "kvd does not answer"
echo "== kvd at $GUEST_IP:$KVD_PORT serving after $(echo "$(date +%s.%N) - $t0" | bc -l | cut -c1-4) s"
echo "   SET demo hello -> $(kv SET demo hello)"
echo "   GET demo       -> $(kv GET demo)"

echo "== client load: 8 clients, ${SECONDS_LOAD} s, 50% writes (every answer checked)"
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 8 --seconds "$SECONDS_LOAD" \
    --keys 256 --write-ratio 0.5 > "$WORK/load.out" 2>&1 &
load=$!
PLV_PIDS+=("$load")
printf '   %4s %8s %9s %10s %10s %9s %9s\n' t syncvms same-rate inputs/s outputs/s pause-us MB-sent
prev=$(pinfo "r$LEADER" "i['syncvm']['count'], i['net']['inputs-injected'], i['net']['outputs-released']")
for t in $(seq 1 "$SECONDS_LOAD"); do
    sleep 1
    cur=$(pinfo "r$LEADER" "i['syncvm']['count'], i['net']['inputs-injected'], i['net']['outputs-released'], '%.3f' % i['syncvm']['mean-same-page-rate'], i['syncvm']['last-pause-us'], i['syncvm']['total-bytes-sent'] // 1000000")
    read -r c1 in1 out1 rate pause mb <<< "$cur"
    read -r c0 in0 out0 <<< "$prev"
    printf '   %4s %8s %9s %10s %10s %9s %9s\n' "$t" "$c1" "$rate" $((in1 - in0)) $((out1 - out0)) "$pause" "$mb"
    prev="$c1 $in1 $out1"
done
wait "$load" || { cat "$WORK/load.out"; fail "the load saw wrong answers"; }
sed 's/^/   /' "$WORK/load.out"
echo "== secondary r$SECONDARY: $(pinfo "r$SECONDARY" "'executing %s, inputs injected %d, outputs dropped %d, syncvms %d' % (i['executing'], i['net']['inputs-injected'], i['net']['outputs-dropped'], i['syncvm']['count'])")"
echo "== witness r$(( 3 - LEADER - SECONDARY )): $(pinfo "r$(( 3 - LEADER - SECONDARY ))" "'executing %s, commit index %d' % (i['executing'], i['commit-index'])")"
echo "== shutting down"
for n in 0 1 2; do qmp "r$n" quit >/dev/null 2>&1 || true; done
echo "== demo done"
