#!/usr/bin/env bash
# A VM with a disk: each replica writes its own image (r1's in qcow2, the
# others raw), and syncvm carries the divergent disk blocks with RAM and
# devices. Under a durable kvd load (each acknowledged write fsync'ed to
# a log on the disk) with racey running, leader and secondary hold
# byte-identical RAM and disks at every syncvm. Then the leader is killed:
# the new leader serves on, kvd restarts inside the guest and replays its
# log from the disk (the guest's page cache dropped), and no acknowledged
# write is lost; the re-protected witness's disk equals the leader's.
. "$(dirname "$0")/lib.sh"

REPLICA_DISK=virtio-blk DISK_FORMATS="raw qcow2 raw"
group_up "plover.disk=/dev/vda plover.run=kvd-durable,racey:20"
wait_serial "r$LEADER" "kvd listening on .*durable" 30
for n in 0 1 2; do
    assert_eq "$(pinfo "r$n" "[(d['drive'], d['size']) for d in i['disks']]")" \
        "[('disk0', 67108864)]" "r$n's replicated drives"
    qmp "r$n" x-plover-ram-digest '{"record": true}' >/dev/null
done

# Write-heavy: 90% writes, each appended to the log and fsync'ed.
nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 8 --seconds 6 --keys 512 \
    --write-ratio 0.9 --verify --timeout 10 > "$WORK/durable.out" 2>&1 ||
    { cat "$WORK/durable.out" >&2; fail "durable load"; }
grep -E '^(load: (requests|latency)|verify:)' "$WORK/durable.out" | sed 's/^/figure: durable /'
assert_ram_equal "$LEADER" "$SECONDARY" 5 "under a durable write load and racey"
# The first syncvm, a full one, read all 16384 blocks; later ones the
# blocks the guests wrote.
union=$(pinfo "r$LEADER" "i['syncvm']['disk-blocks-union']")
[ "$union" -gt 16384 ] || fail "no disk block written since the first syncvm ($union in unions)"
pinfo "r$SECONDARY" "'figure: disk blocks in unions %d, written on the secondary %d, over %d syncvms' % (i['syncvm']['disk-blocks-union'], i['syncvm']['disk-blocks-written'], i['syncvm']['count'])"

# Failover under the durable load, then kvd restarts from its log.
load_start 30
sleep 5
fail_over_leader
kv_wait 30 || fail "kvd does not answer on the new leader"
nsx cl "$KVCTL" restart "$GUEST_IP" "$KVD_PORT" --timeout 30 ||
    fail "kvd did not come back from RESTART on the new leader"
wait_serial "r$LEADER" "kvd restarted, replayed [1-9]" 10
grep -a "kvd restarted" "$WORK/r$LEADER.serial" | tail -1 | sed 's/^/figure: new leader: /'
load_check

# The witness got the VM in pre-copy rounds while the new leader's guest
# ran on, then one last run with it stopped.
rounds=$(pinfo "r$LEADER" "i['syncvm']['precopy-rounds']")
[ "$rounds" -ge 1 ] || fail "the re-protection went in no pre-copy round"
pinfo "r$LEADER" "'figure: re-protection: %d pre-copy rounds, the last run over %d pages and blocks' % (i['syncvm']['precopy-rounds'], i['syncvm']['precopy-final-pages'])"

# From then on the witness's RAM and disk are the leader's at every syncvm.
qmp "r$SECONDARY" x-plover-ram-digest '{"record": true}' >/dev/null
light_load_recording "$LEADER" "$SECONDARY"
assert_ram_equal "$LEADER" "$SECONDARY" 3 "after re-protection"
