#!/usr/bin/env bash
# A stranger on the network holds idle connections to every replica's
# consensus and syncvm ports, re-opening them every 0.5 s, from before
# the replicas start until the end of a checking load. The group must
# form from a cold start, no syncvm may fail while it is there, and the
# service must stay within noise of the same run's load without it.
. "$(dirname "$0")/lib.sh"

net_setup
targets=()
for n in 0 1 2; do
    targets+=("$(host_ip "$n"):7100" "$(host_ip "$n"):7101")
done
ip netns exec "${NSP}cl" python3 "$SRCDIR/tests/integration/stranger.py" 240 0.5 32 \
    "${targets[@]}" > "$WORK/stranger.out" 2>&1 &
STRANGER_PID=$!
PLV_PIDS+=("$STRANGER_PID")

t0=$(date +%s.%N)
replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none"
wait_protected 120
WITNESS=$(( 3 - LEADER - SECONDARY ))
kv_wait 60 || fail "kvd does not answer"
echo "figure: protected and serving $(elapsed "$t0") s after a cold start beside the stranger"

failures() {
    local n sum=0
    for n in 0 1 2; do
        sum=$(( sum + $(pinfo "r$n" "i['syncvm']['failures']") ))
    done
    echo "$sum"
}
# load_for SECONDS: a checking load; prints its throughput (req/s).
load_for() {
    load_start "$1"
    load_check > "$WORK/load.figures"
    sed -n 's/.*throughput=\([0-9.]*\) req\/s.*/\1/p' "$WORK/load.out"
}

f0=$(failures)
with=$(load_for 12)
f1=$(failures)
assert_eq "$(( f1 - f0 ))" 0 "syncvm failures while the stranger held its connections"
kill -TERM "$STRANGER_PID"
wait "$STRANGER_PID" 2>/dev/null || true
grep '^stranger:' "$WORK/stranger.out" | sed 's/^/figure: /'
without=$(load_for 12)
echo "figure: throughput with the stranger $with req/s, without $without req/s"
for n in 0 1 2; do
    echo "figure: r$n links: $(pinfo "r$n" "i['links']")"
done
# Two TCG guests share two cores: the noise is large; a wedged link
# shows as a collapse (the issue saw 602 -> 11.7 req/s), not a few %.
ok=$(python3 -c "print($with >= 0.6 * $without)")
assert_eq "$ok" True "throughput with the stranger against without ($with vs $without)"
