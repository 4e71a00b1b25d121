#!/usr/bin/env bash
# One bench-reprotect case (BENCH_CASE current|fresh); prints "result KEY
# VALUE" lines. See reprotect.sh.
export PLOVER_TRACE=plover_syncvm_pause
. "$SRCDIR/tests/integration/lib.sh"

GUEST_MEM=$BENCH_MEM
REPLICA_DISK=virtio-blk
# The drives: the ext4 image, then BENCH_DISK MiB of data; the same on
# every replica ("current"), or other data on each ("fresh").
for n in 0 1 2; do
    seed=1
    [ "$BENCH_CASE" = fresh ] && seed=$(( n + 2 ))
    cp --sparse=always "$GUEST_DIR/disk.img" "$WORK/r$n.raw"
    python3 - "$WORK/r$n.raw" "$BENCH_DISK" "$seed" <<'PY'
import random, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
with open(path, "r+b") as f:
    f.seek(64 << 20)
    for _ in range(mib - 64):
        f.write(rnd.randbytes(1 << 20))
PY
done
group_up "plover.disk=/dev/vda plover.run=kvd-durable" ",reprotect-rounds=$BENCH_ROUNDS"

# kvd replies per second over a window, from a load of that length.
tput() {
    nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 8 --seconds "$1" --keys 4096 \
        --write-ratio 0.5 --reconnect --timeout 30 > "$WORK/$2.out" 2>&1 || true
    sed -n 's/.*requests=\([0-9]*\).*elapsed=\([0-9.]*\)s.*/\1 \2/p' "$WORK/$2.out" |
        awk '{ printf "%.1f\n", $1 / $2 }'
}
pauses() {   # epoch pause_us of the leader's syncvms so far
    sed -n 's/.*plover_syncvm_pause epoch \([0-9]*\) vm stopped \([0-9]*\) us.*/\1 \2/p' "$WORK/r$LEADER.err"
}

sleep 20                      # past the start-up's full syncvm
pinfo "r$LEADER" "'figure: start-up full syncvm: leader pause max %d ms' % (i['syncvm']['pause-max-us'] // 1000)"
b0=$(pauses | wc -l)
echo "result tput_before $(tput 10 before)"
b1=$(pauses | wc -l)
pause_before=$(pauses | sed -n "$((b0 + 1)),${b1}p" | awk '{ if ($2 > m) m = $2 } END { print int(m / 1000) }')
sent0=$(pinfo "r$LEADER" "i['syncvm']['total-bytes-sent']")
full0=$(pinfo "r$LEADER" "i['syncvm']['full-count']")
rounds0=$(pinfo "r$LEADER" "i['syncvm']['precopy-rounds']")

# Clients in 1 s slices from before the kill until 5 s after the VM is
# protected again: the replies of the slices in that window over its
# length (a slice waits for its replies, however long they are held).
slices() {
    while [ ! -e "$WORK/stop-slices" ]; do
        local t=$(date +%s%N)
        ip netns exec "${NSP}cl" "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 8 --seconds 1 --keys 4096 \
            --write-ratio 0.5 --reconnect --timeout 60 2>&1 |
            sed -n "s/.*requests=\\([0-9]*\\).*/$t \\1/p" >> "$WORK/slices"
    done
}
slices &
PLV_PIDS+=($!)
slicer=$!
sleep 2
t0=$(date +%s%N)
kill_replica "$SECONDARY"
wait_executing_secondary "$WITNESS" 300
t1=$(date +%s%N)
sleep 5
touch "$WORK/stop-slices"
wait "$slicer" 2>/dev/null || true
t2=$(date +%s%N)
req=$(awk -v a="$t0" '$1 >= a - 1000000000 { s += $2 } END { print s + 0 }' "$WORK/slices")
echo "result tput_during $(echo "scale=1; $req / (($t2 - $t0) / 1000000000 + 1)" | bc)"
echo "result protect_ms $(( (t1 - t0) / 1000000 ))"
echo "result pause_before_ms $pause_before"
echo "result pause_ms $(pauses | tail -n +"$((b1 + 1))" | awk '{ if ($2 > m) m = $2 } END { print int(m / 1000) }')"
sent1=$(pinfo "r$LEADER" "i['syncvm']['total-bytes-sent']")
full1=$(pinfo "r$LEADER" "i['syncvm']['full-count']")
[ "$full1" -gt "$full0" ] || fail "no full syncvm after the kill"
echo "result full_mb $(echo "scale=1; ($sent1 - $sent0) / 1048576" | bc)"
full_us=$(sed -n 's/.*plover_syncvm_pause epoch [0-9]* vm stopped [0-9]* us, cut to end \([0-9]*\) us.*/\1/p' \
          "$WORK/r$LEADER.err" | tail -n +"$((b1 + 1))" | sort -n | tail -n 1)
echo "result full_ms $(( full_us / 1000 ))"
echo "result rounds $(( $(pinfo "r$LEADER" "i['syncvm']['precopy-rounds']") - rounds0 ))"
# The new secondary's drive equals the leader's at the first syncvm after.
# (Recording hashes all of RAM and the drive at each syncvm: seconds here.)
qmp "r$LEADER" x-plover-ram-digest '{"record": true}' >/dev/null
qmp "r$WITNESS" x-plover-ram-digest '{"record": true}' >/dev/null
common() {
    python3 - "$(qmp "r$LEADER" x-plover-ram-digest)" "$(qmp "r$WITNESS" x-plover-ram-digest)" <<'PY'
import json, sys
a = {d["epoch"] for d in json.loads(sys.argv[1]) if d["epoch"]}
b = {d["epoch"] for d in json.loads(sys.argv[2]) if d["epoch"]}
sys.exit(0 if a & b else 1)
PY
}
wait_for 120 common || fail "no syncvm recorded at both ends"
assert_ram_equal "$LEADER" "$WITNESS" 1 "after re-protection"
