#!/usr/bin/env bash
# bench-e2e: the test guest's kvd under the same client load, first on one
# unreplicated QEMU (the baseline), then on three VSMR replicas, in the same
# run on the same machine. Prints absolute figures and VSMR/baseline ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clients=${BENCH_CLIENTS:-8}
seconds=${BENCH_SECONDS:-15}

run() {
    bash "$here/e2e-run.sh" "$1" 2>"/tmp/plover-bench-$1.err" | awk '$1 == "result" { print $2, $3 }' ||
        { cat "/tmp/plover-bench-$1.err" >&2; exit 1; }
}
echo "bench-e2e: kvd, $clients clients, ${seconds} s, 50% writes, accel ${PLOVER_ACCEL:-tcg}, $(nproc) cores"
declare -A plain vsmr
while read -r k v; do plain[$k]=$v; done < <(run plain)
while read -r k v; do vsmr[$k]=$v; done < <(run vsmr)
rm -f /tmp/plover-bench-plain.err /tmp/plover-bench-vsmr.err
[ -n "${plain[throughput]:-}" ] && [ -n "${vsmr[throughput]:-}" ] || { echo "bench-e2e: a run failed" >&2; exit 1; }

ratio() { echo "scale=3; $1 / $2" | bc -l; }
printf '%-22s %14s %14s %10s\n' "" unreplicated vsmr ratio
printf '%-22s %14s %14s %10s\n' "throughput (req/s)" "${plain[throughput]}" "${vsmr[throughput]}" "$(ratio "${vsmr[throughput]}" "${plain[throughput]}")"
printf '%-22s %14s %14s %10s\n' "latency p50 (us)" "${plain[p50_us]}" "${vsmr[p50_us]}" "$(ratio "${vsmr[p50_us]}" "${plain[p50_us]}")"
printf '%-22s %14s %14s %10s\n' "latency p99 (us)" "${plain[p99_us]}" "${vsmr[p99_us]}" "$(ratio "${vsmr[p99_us]}" "${plain[p99_us]}")"
echo
echo "syncvm during the measured load: ${vsmr[syncvms]} syncvms, same-page rate ${vsmr[same_rate]},"
echo "  mean phases (us): compute ${vsmr[compute_us]}, compare ${vsmr[compare_us]}, transfer ${vsmr[transfer_us]}, apply ${vsmr[apply_us]}, engine total ${vsmr[total_us]}"
echo "  bytes between replicas: leader->secondary ${vsmr[syncvm_bytes]} ($(( ${vsmr[syncvm_bytes]} / seconds / 1024 )) KiB/s), secondary->leader (all syncvms) ${vsmr[secondary_bytes]}"
