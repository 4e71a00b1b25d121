#!/usr/bin/env bash
# One part of bench-e2e: MODE=plain (one QEMU, no -plover), vsmr (three
# replicas) or vsmr-tls (three replicas whose links run TLS, certificates
# made by certtool). Prints "result KEY VALUE" lines for bench/e2e.sh.
. "$SRCDIR/tests/integration/lib.sh"

mode=$1
if [ "$mode" = vsmr-tls ]; then
    pki_make "$WORK/pki"
    REPLICA_TLS="$WORK/pki"
    mode=vsmr
fi
clients=${BENCH_CLIENTS:-8}
seconds=${BENCH_SECONDS:-15}

# BENCH_KVD=durable: kvd logs every write to the guest's drive and
# fsyncs it before replying; the drive is virtio-blk, its own on each
# replica (and on the unreplicated QEMU).
kvd_args=
if [ "${BENCH_KVD:-memory}" = durable ]; then
    REPLICA_DISK=virtio-blk
    kvd_args="plover.disk=/dev/vda plover.run=kvd-durable"
fi
net_setup
if [ "$mode" = plain ]; then
    host_setup 0
    guest_args "plover.ip=$GUEST_IP/24 plover.gw=none $kvd_args"
    disk_args 0
    qemu_start vm 0 "${GUEST_ARGS[@]}" "${DISK_ARGS[@]}"
else
    replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none $kvd_args ${BENCH_GUEST_ARGS:-}" "${BENCH_PLOVER_FIELDS:-}"
    wait_protected 120
fi
kv_wait 90 || fail "kvd does not answer"
# Warm up (guest page cache, ARP, TCG translations), then measure.
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients "$clients" --seconds 3 --keys 512 >/dev/null
if [ "$mode" = vsmr ]; then
    before=$(pinfo "r$LEADER" "i['syncvm']['count'], i['syncvm']['total-bytes-sent'], i['syncvm']['paused-us'], i['syncvm']['total-bytes-received'], ' '.join(str(v) for v in i['syncvm']['bytes-by-kind'].values())")
    disk_before=$(pinfo "r$SECONDARY" "i['syncvm']['disk-blocks-union'], i['syncvm']['disk-blocks-written']")
    before_sec=$(pinfo "r$SECONDARY" "i['syncvm']['paused-us']")
    qmp "r$SECONDARY" x-query-plover-divergence '{"reset": true}' >/dev/null
fi
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients "$clients" --seconds "$seconds" \
    --keys 512 --write-ratio 0.5 > "$WORK/load.out" || { cat "$WORK/load.out" >&2; fail "load failed"; }
sed -n 's/.*throughput=\([0-9.]*\).*/result throughput \1/p' "$WORK/load.out"
sed -n 's/.*p50=\([0-9]*\) p90=[0-9]* p99=\([0-9]*\).*/result p50_us \1\nresult p99_us \2/p' "$WORK/load.out"
if [ "$mode" = vsmr ]; then
    read -r c0 b0 p0 r0 k0 <<< "$before"
    pinfo "r$LEADER" "'\n'.join(['result syncvms %d' % (i['syncvm']['count'] - $c0),
        'result pause_p50_us %d' % i['syncvm']['pause-p50-us'],
        'result pause_p99_us %d' % i['syncvm']['pause-p99-us'],
        'result stopped_share %.3f' % ((i['syncvm']['paused-us'] - $p0) / ($seconds * 1e6)),
        'result release_p50_us %d' % i['syncvm']['release-p50-us'],
        'result release_p99_us %d' % i['syncvm']['release-p99-us'],
        'result lag_p50_us %d' % i['syncvm']['secondary-lag-p50-us'],
        'result lag_p99_us %d' % i['syncvm']['secondary-lag-p99-us'],
        'result snapshots %d' % i['syncvm']['snapshot-count'],
        'result syncvm_bytes %d' % (i['syncvm']['total-bytes-sent'] - $b0),
        'result back_bytes %d' % (i['syncvm']['total-bytes-received'] - $r0),
        'result bytes_p50 %d' % i['syncvm']['bytes-p50'],
        'result bytes_p90 %d' % i['syncvm']['bytes-p90'],
        'result xbytes_p50 %d' % i['syncvm']['exchange-bytes-p50'],
        'result xbytes_p90 %d' % i['syncvm']['exchange-bytes-p90'],
        'result delta_pages %d' % i['syncvm']['delta-pages'],
        'result bytes_split %s' % ','.join('%s=%d' % (k, v - int(k0))
            for (k, v), k0 in zip(i['syncvm']['bytes-by-kind'].items(), '$k0'.split())),
        'result same_rate %.3f' % i['syncvm']['mean-same-page-rate'],
        'result compute_us %d' % i['syncvm']['mean-compute-us'],
        'result compare_us %d' % i['syncvm']['mean-compare-us'],
        'result transfer_us %d' % i['syncvm']['mean-transfer-us'],
        'result apply_us %d' % i['syncvm']['mean-apply-us'],
        'result total_us %d' % i['syncvm']['mean-total-us']])"
    pinfo "r$SECONDARY" "'\n'.join(['result secondary_bytes %d' % i['syncvm']['total-bytes-sent'],
        'result sec_pause_p50_us %d' % i['syncvm']['pause-p50-us'],
        'result sec_pause_p99_us %d' % i['syncvm']['pause-p99-us'],
        'result sec_stopped_share %.3f' % ((i['syncvm']['paused-us'] - $before_sec) / ($seconds * 1e6)),
        'result idle_waits %d' % i['syncvm']['secondary-idle-waits'],
        'result idle_wait_bounded %d' % i['syncvm']['secondary-idle-wait-bounded'],
        'result idle_wait_p50_us %d' % i['syncvm']['secondary-idle-wait-p50-us'],
        'result disk_union %d' % (i['syncvm']['disk-blocks-union'] - ${disk_before%% *}),
        'result disk_written %d' % (i['syncvm']['disk-blocks-written'] - ${disk_before##* })])"
    # What the divergent pages of the measured load were (the secondary
    # compares its version of each with the leader's).
    qmp "r$SECONDARY" x-query-plover-divergence > "$WORK/divergence.json"
    python3 - "$WORK/divergence.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n = max(d["pages"], 1)
small = sum(b["pages"] for b in d["histogram"] if b["max-bytes"] <= 64)
print("result div_pages %d" % d["pages"])
print("result div_mean_bytes %d" % (d["bytes"] / n))
print("result div_small_share %.3f" % (small / n))
for c in d["block-cost"]:
    print("result div_block%d_share %.3f" % (c["block-size"], c["blocks"] * c["block-size"] / (n * 4096)))
PY
    [ -z "${BENCH_DIVERGENCE_OUT:-}" ] ||
        python3 "$SRCDIR/scripts/plover-divergence.py" "$WORK/r$SECONDARY.qmp" \
            --system-map "$(ls "$GUEST_DIR"/kernel/root/boot/System.map-* | head -n 1)" \
            > "$BENCH_DIVERGENCE_OUT"
fi
