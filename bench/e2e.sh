#!/usr/bin/env bash
# bench-e2e: the test guest's kvd under the same client load, first on one
# unreplicated QEMU (the baseline), then on three VSMR replicas, in the same
# run on the same machine, for each client count of BENCH_CLIENTS (default
# 8 and 64) on a 1-vCPU guest, and for BENCH_SMP_CLIENTS (default 64) on
# each larger vCPU count of BENCH_SMP (default "1 2"; the baseline has
# as many vCPUs). Prints absolute figures and VSMR/baseline ratios, and what the
# syncvms cost: the leader's VM pause and stopped share of wall time, the
# secondary's pause and lag, how long outputs wait for release, and the
# bytes between the replicas (per syncvm, per second, by kind) beside the
# same-page rate and what the divergent pages were. With BENCH_TLS=yes (the
# default), the in-memory 1-vCPU runs are also made with the replica
# links inside TLS (tls-creds), and the TLS/plaintext ratio printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${BENCH_SECONDS:-15}

run() {
    GUEST_SMP=$smp BENCH_KVD=$kvd BENCH_CLIENTS=$2 bash "$here/e2e-run.sh" "$1" 2>"/tmp/plover-bench-$1.err" |
        awk '$1 == "result" { print $2, $3 }' ||
        { cat "/tmp/plover-bench-$1.err" >&2; exit 1; }
}
ratio() { echo "scale=3; $1 / $2" | bc -l; }
mbs() { echo "scale=2; $1 / $seconds / 1000000" | bc -l; }

# BENCH_KVD: kvd in memory, and durable (each write fsync'ed to a log on
# the guest's drive, which syncvm replicates with RAM).
summary=()
tls_summary=()
for kvd in ${BENCH_KVD:-memory durable}; do
for smp in ${BENCH_SMP:-1 2}; do
if [ "$smp" = 1 ]; then counts=${BENCH_CLIENTS:-8 64}; else counts=${BENCH_SMP_CLIENTS:-64}; fi
for clients in $counts; do
    echo "bench-e2e: kvd ($kvd), $smp vCPU(s), $clients clients, ${seconds} s, 50% writes, accel ${PLOVER_ACCEL:-tcg}, $(nproc) cores"
    declare -A plain=() vsmr=()
    while read -r k v; do plain[$k]=$v; done < <(run plain "$clients")
    while read -r k v; do vsmr[$k]=$v; done < <(run vsmr "$clients")
    rm -f /tmp/plover-bench-plain.err /tmp/plover-bench-vsmr.err
    [ -n "${plain[throughput]:-}" ] && [ -n "${vsmr[throughput]:-}" ] || { echo "bench-e2e: a run failed" >&2; exit 1; }

    printf '%-22s %14s %14s %10s\n' "" unreplicated vsmr ratio
    printf '%-22s %14s %14s %10s\n' "throughput (req/s)" "${plain[throughput]}" "${vsmr[throughput]}" "$(ratio "${vsmr[throughput]}" "${plain[throughput]}")"
    printf '%-22s %14s %14s %10s\n' "latency p50 (us)" "${plain[p50_us]}" "${vsmr[p50_us]}" "$(ratio "${vsmr[p50_us]}" "${plain[p50_us]}")"
    printf '%-22s %14s %14s %10s\n' "latency p99 (us)" "${plain[p99_us]}" "${vsmr[p99_us]}" "$(ratio "${vsmr[p99_us]}" "${plain[p99_us]}")"
    if [ "${BENCH_TLS:-yes}" = yes ] && [ "$kvd" = memory ] && [ "$smp" = 1 ]; then
        declare -A tls=()
        while read -r k v; do tls[$k]=$v; done < <(run vsmr-tls "$clients")
        rm -f /tmp/plover-bench-vsmr-tls.err
        [ -n "${tls[throughput]:-}" ] || { echo "bench-e2e: the TLS run failed" >&2; exit 1; }
        printf '%-22s %14s %14s %10s\n' "" vsmr "vsmr+tls" "tls/plain"
        printf '%-22s %14s %14s %10s\n' "throughput (req/s)" "${vsmr[throughput]}" "${tls[throughput]}" "$(ratio "${tls[throughput]}" "${vsmr[throughput]}")"
        printf '%-22s %14s %14s %10s\n' "latency p50 (us)" "${vsmr[p50_us]}" "${tls[p50_us]}" "$(ratio "${tls[p50_us]}" "${vsmr[p50_us]}")"
        printf '%-22s %14s %14s %10s\n' "latency p99 (us)" "${vsmr[p99_us]}" "${tls[p99_us]}" "$(ratio "${tls[p99_us]}" "${vsmr[p99_us]}")"
        printf '%-22s %14s %14s\n' "syncvm pause p50 (us)" "${vsmr[pause_p50_us]}" "${tls[pause_p50_us]}"
        tls_summary+=("$(printf '%8s %14s %14s %10s' "$clients" "${vsmr[throughput]}" "${tls[throughput]}" "$(ratio "${tls[throughput]}" "${vsmr[throughput]}")")")
    fi
    summary+=("$(printf '%-8s %5s %8s %14s %14s %10s' "$kvd" "$smp" "$clients" "${plain[throughput]}" "${vsmr[throughput]}" "$(ratio "${vsmr[throughput]}" "${plain[throughput]}")")")
    echo
    echo "syncvm during the measured load: ${vsmr[syncvms]} syncvms (${vsmr[snapshots]} run on by the leader's VM in all), same-page rate ${vsmr[same_rate]},"
    echo "  leader VM pause per syncvm (us): p50 ${vsmr[pause_p50_us]}, p99 ${vsmr[pause_p99_us]}; leader VM stopped ${vsmr[stopped_share]} of wall time"
    echo "  secondary VM pause (us): p50 ${vsmr[sec_pause_p50_us]}, p99 ${vsmr[sec_pause_p99_us]}, stopped ${vsmr[sec_stopped_share]} of wall time; its lag, cut to reply (us): p50 ${vsmr[lag_p50_us]}, p99 ${vsmr[lag_p99_us]}"
    echo "  output release, cut to release (us): p50 ${vsmr[release_p50_us]}, p99 ${vsmr[release_p99_us]}"
    echo "  mean phases (us): compute ${vsmr[compute_us]}, compare ${vsmr[compare_us]}, transfer ${vsmr[transfer_us]}, apply ${vsmr[apply_us]}, engine total ${vsmr[total_us]}"
    echo "  bytes between replicas: leader->secondary ${vsmr[syncvm_bytes]} ($(mbs "${vsmr[syncvm_bytes]}") MB/s), secondary->leader ${vsmr[back_bytes]} ($(mbs "${vsmr[back_bytes]}") MB/s)"
    echo "  bytes per syncvm: leader->secondary p50 ${vsmr[bytes_p50]}, p90 ${vsmr[bytes_p90]}; both directions p50 ${vsmr[xbytes_p50]}, p90 ${vsmr[xbytes_p90]}"
    echo "  bytes by kind, both directions: ${vsmr[bytes_split]}"
    echo "  divergent pages (the secondary's view): ${vsmr[div_pages]}, mean differing bytes ${vsmr[div_mean_bytes]}, share with 64 or fewer ${vsmr[div_small_share]}; sent as blocks (all syncvms): ${vsmr[delta_pages]}"
    echo "  secondary's cut waited for idle: ${vsmr[idle_waits]} times (${vsmr[idle_wait_bounded]} ended by the bound), p50 ${vsmr[idle_wait_p50_us]} us"
    if [ "$kvd" = durable ]; then
        echo "  drive: $(echo "scale=1; ${vsmr[disk_union]} / ${vsmr[syncvms]}" | bc) blocks of 4 KiB in the union per syncvm," \
             "$(echo "scale=2; ${vsmr[disk_written]} / ${vsmr[syncvms]}" | bc) divergent ones written on the secondary" \
             "($(echo "${vsmr[disk_written]} * 4096 / ${vsmr[syncvms]}" | bc) bytes of block data per syncvm before deltas and compression)"
    fi
    echo
done
done
done
echo "bench-e2e: throughput (req/s), VSMR against the unreplicated guest of as many vCPUs"
printf '%-8s %5s %8s %14s %14s %10s\n' kvd vCPUs clients unreplicated vsmr ratio
printf '%s\n' "${summary[@]}"
if [ ${#tls_summary[@]} -gt 0 ]; then
    echo "bench-e2e: throughput (req/s) with the replica links in TLS, kvd in memory, 1 vCPU"
    printf '%8s %14s %14s %10s\n' clients vsmr "vsmr+tls" ratio
    printf '%s\n' "${tls_summary[@]}"
fi
