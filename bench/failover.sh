#!/usr/bin/env bash
# bench-failover: RUNS times, three replicas of the 256 MiB test guest under
# a checking kvd load; the leader is killed with SIGKILL. Reports the
# service gap seen by the clients (longest time without a reply), the time
# until the secondary leads, and the time until the witness, made
# secondary, holds the VM again (re-protection by a full syncvm), as
# medians with all samples.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${BENCH_RUNS:-3}
declare -A samples
for i in $(seq 1 "$runs"); do
    out=$(bash "$here/failover-run.sh" 2>/tmp/plover-bench-failover.err) ||
        { cat /tmp/plover-bench-failover.err >&2; echo "bench-failover: run $i failed" >&2; exit 1; }
    while read -r tag k v; do
        [ "$tag" = result ] && samples[$k]="${samples[$k]:-} $v"
    done <<< "$out"
done
rm -f /tmp/plover-bench-failover.err
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "bench-failover: $runs runs, kill -9 of the leader, accel ${PLOVER_ACCEL:-tcg}, $(nproc) cores, guest 256 MiB"
printf '%-36s %10s   %s\n' "" median samples
printf '%-36s %10s   %s\n' "service gap seen by clients (ms)" "$(echo "${samples[gap_ms]}" | median)" "${samples[gap_ms]}"
printf '%-36s %10s   %s\n' "secondary leads after (ms)" "$(echo "${samples[elect_ms]}" | median)" "${samples[elect_ms]}"
printf '%-36s %10s   %s\n' "re-protected after (ms)" "$(echo "${samples[reprotect_ms]}" | median)" "${samples[reprotect_ms]}"
echo "goals: gap < 300 ms, re-protection < 5000 ms (PLOVER: 100 ms detection, ~2.8 s re-protection)"
