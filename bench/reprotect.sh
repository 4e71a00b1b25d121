#!/usr/bin/env bash
# bench-reprotect: three replicas of a 1 GiB guest (BENCH_MEM MiB) with a
# 1 GiB drive (BENCH_DISK MiB: the test guest's ext4 file system, then
# pseudo-random data) serve a durable kvd load; the secondary is killed and
# the witness is re-protected by a full syncvm. Two cases:
#   current: the witness's image holds the same data (a replica that
#            rejoins with a mostly current image);
#   fresh:   its image's tail is other data (a new replica);
# each in two modes (BENCH_MODES), in one invocation:
#   rounds:  pre-copy rounds while the leader's VM runs, then a last run
#            with it stopped (reprotect-rounds=8, the default);
#   stopped: one run with the leader's VM stopped (reprotect-rounds=0,
#            the baseline).
# Reported per case and mode: the leader's longest VM pause (during
# re-protection, against its longest before), the full syncvm's duration
# and bytes, the pre-copy rounds, the time from the kill to a protected
# VM, and the clients' throughput in the 10 s before the kill against the
# throughput from the kill until they are served again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mem=${BENCH_MEM:-1024} disk=${BENCH_DISK:-1024}
echo "bench-reprotect: accel ${PLOVER_ACCEL:-tcg}, $(nproc) cores, guest $mem MiB, drive $disk MiB, 8 clients, durable kvd"
printf '%-8s %-8s %9s %9s %9s %9s %7s %10s %8s %9s %6s\n' case mode "pause ms" "before ms" "full ms" "full MB" \
    rounds "protect ms" "tput/s" "during/s" ratio
for case in ${BENCH_CASES:-current fresh}; do
    for mode in ${BENCH_MODES:-rounds stopped}; do
        rounds=8
        [ "$mode" = stopped ] && rounds=0
        out=$(BENCH_CASE=$case BENCH_ROUNDS=$rounds BENCH_MEM=$mem BENCH_DISK=$disk \
              bash "$here/reprotect-run.sh" 2>/tmp/plover-bench-reprotect.err) ||
            { cat /tmp/plover-bench-reprotect.err >&2; echo "bench-reprotect: $case $mode failed" >&2; exit 1; }
        declare -A r=()
        while read -r tag k v; do
            [ "$tag" = result ] && r[$k]=$v
        done <<< "$out"
        printf '%-8s %-8s %9s %9s %9s %9s %7s %10s %8s %9s %6s\n' "$case" "$mode" "${r[pause_ms]}" \
            "${r[pause_before_ms]}" "${r[full_ms]}" "${r[full_mb]}" "${r[rounds]}" "${r[protect_ms]}" \
            "${r[tput_before]}" "${r[tput_during]}" "$(echo "scale=2; ${r[tput_during]} / ${r[tput_before]}" | bc)"
        grep '^figure: ' <<< "$out" | sed "s/^figure: /  $case $mode: /" || true
    done
done
rm -f /tmp/plover-bench-reprotect.err
echo "pause: the leader's longest VM stop from the kill to the end (before: its longest in the minute before);"
echo "full: the full syncvm, cut to end (with rounds: the last run, after them), and what the leader sent in all;"
echo "rounds: pre-copy rounds while the VM ran; tput: kvd replies/s in the 10 s before the kill,"
echo "during: from the kill to 5 s after the VM is protected again. goals: pause <= 100 ms, during/before >= 0.5"
