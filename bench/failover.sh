#!/usr/bin/env bash
# bench-failover: RUNS times, three replicas of the 256 MiB test guest under
# a checking kvd load: a leadership migration (plover-migrate-leader), then
# the leader killed with SIGKILL. Reports the service gap seen by the
# clients (longest time without a reply) against the same load's longest
# gap without any fault (the baseline, measured in the same run), the time
# until the secondary leads and until its announcement of the guest's MAC
# (RARP) reaches the client, the time until the witness, made secondary,
# holds the VM again (re-protection by a full syncvm), and the migration's
# duration, as medians with all samples. The last run's timelines of the
# two faults (throughput and p99 latency per 100 ms, the events marked) are
# left in BENCH_OUT (default build/bench/failover): migration.svg, kill.svg,
# with their figures (.dat), gnuplot scripts (.gp) and the loads' reply
# logs (.replies).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${BENCH_RUNS:-3}
export BENCH_OUT=${BENCH_OUT:-$(dirname "$here")/build/bench/failover}
mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/{migration,kill}.{svg,dat,gp,replies}
declare -A samples
for i in $(seq 1 "$runs"); do
    out=$(bash "$here/failover-run.sh" 2>/tmp/plover-bench-failover.err) ||
        { cat /tmp/plover-bench-failover.err >&2; echo "bench-failover: run $i failed" >&2; exit 1; }
    pictures=
    while read -r tag k v; do
        [ "$tag" = result ] && samples[$k]="${samples[$k]:-} $v"
        [ "$tag" = picture ] && pictures+="  $k${v:+ $v}"$'\n'
    done <<< "$out"
done
rm -f /tmp/plover-bench-failover.err
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
row() {
    printf '%-44s %10s   %s\n' "$1" "$(echo "${samples[$2]:-}" | median)" "${samples[$2]:-}"
}
echo "bench-failover: $runs runs, accel ${PLOVER_ACCEL:-tcg}, $(nproc) cores, guest 256 MiB, 8 clients"
printf '%-44s %10s   %s\n' "" median samples
row "baseline: longest gap, no fault (ms)" base_gap_ms
row "kill -9 leader: service gap (ms)" gap_ms
row "kill -9 leader: secondary leads after (ms)" elect_ms
row "kill -9 leader: its RARP at the client (ms)" rarp_ms
row "kill -9 leader: re-protected after (ms)" reprotect_ms
row "migration: service gap (ms)" migrate_gap_ms
row "migration: request to new pair running (ms)" migrate_ms
row "migration: request to RARP at the client (ms)" migrate_rarp_ms
b=$(echo "${samples[base_gap_ms]}" | median)
[ "${b:-0}" -gt 0 ] && echo "ratios to the baseline gap: kill $(echo "scale=1; $(echo "${samples[gap_ms]}" | median) / $b" | bc)x," \
    "migration $(echo "scale=1; $(echo "${samples[migrate_gap_ms]}" | median) / $b" | bc)x"
echo "goals: kill gap < 300 ms, re-protection < 5000 ms, migration gap comparable to one syncvm"
echo "(PLOVER: 100 ms detection, ~2.8 s re-protection)"
echo "timelines of the last run (throughput and p99 latency per 100 ms):"
printf '%s' "$pictures"
