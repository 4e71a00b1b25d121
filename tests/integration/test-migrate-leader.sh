#!/usr/bin/env bash
# plover-migrate-leader under a checking load: leadership goes to the
# secondary and back, three times; each time the new leader announces the
# guest's MAC, the old leader becomes the secondary without a full copy
# (the pair stays at the same syncvm), the witness stays out of it, both
# VMs stay identical, and no acknowledged write is lost. Also: the
# command's refusals.
. "$(dirname "$0")/lib.sh"

group_up

# Only the leader hands over.
err=$(qmp "r$WITNESS" plover-migrate-leader 2>&1) && fail "a witness accepted plover-migrate-leader"
assert_eq "$err" "qmp: plover-migrate-leader: plover-migrate-leader: this replica is the witness; replica $LEADER leads" \
    "plover-migrate-leader on the witness"
err=$(qmp "r$SECONDARY" plover-migrate-leader 2>&1) && fail "the secondary accepted plover-migrate-leader"
case "$err" in *"this replica is the secondary; replica $LEADER leads") ;; *) fail "on the secondary: $err" ;; esac

declare -A handed=()
# With no client traffic: the new leader announces the guest's MAC (a
# well-formed RARP reaches the client), the segment moves the MAC to its
# port, and a write goes through it at once. (The secondary was paired at
# the first syncvm, during the guest's boot: its NIC must not have kept
# the disabled state of the guest's PCI probe.)
old=$LEADER new=$SECONDARY
wait_mac_at "$old" 10
rarps=$(rarp_count)
t0=$(date +%s.%N)
qmp "r$old" plover-migrate-leader >/dev/null || fail "plover-migrate-leader refused on the idle leader r$old"
wait_role "$new" leader 10
wait_rarp_after "$rarps" 2
wait_mac_at "$new" 2
echo "figure: idle migration: the segment sends to r$new $(elapsed "$t0") s after the request"
wait_executing_secondary "$old" 10
assert_virtio_live "$new"
assert_virtio_live "$old"
handed[$old]=1
LEADER=$new SECONDARY=$old
t0=$(date +%s.%N)
assert_eq "$(nsx cl "$KVCTL" --timeout 10 "$GUEST_IP" "$KVD_PORT" SET idle-migration 1)" "OK" \
    "a write right after the idle migration"
echo "figure: idle migration: a write through the new leader took $(elapsed "$t0") s"

load_start 40
sleep 5
for round in 1 2 3; do
    old=$LEADER new=$SECONDARY
    full_before="$(pinfo "r$old" "i['syncvm']['full-count']") $(pinfo "r$new" "i['syncvm']['full-count']")"
    t0=$(date +%s.%N)
    rarps=$(rarp_count)
    qmp "r$old" plover-migrate-leader >/dev/null || fail "plover-migrate-leader refused on the leader r$old"
    # A second request is refused: one is in progress, or it is done and
    # r$old no longer leads.
    err=$(qmp "r$old" plover-migrate-leader 2>&1) && fail "a second migration request was accepted"
    case "$err" in
    *"a migration to replica $new is in progress"|*"this replica is the "*) ;;
    *) fail "second request: $err" ;;
    esac
    wait_role "$new" leader 10
    # The new leader announces the guest's MAC: a well-formed RARP.
    wait_rarp_after "$rarps" 2
    wait_executing_secondary "$old" 10
    assert_virtio_live "$new"
    echo "figure: round $round: r$new leads, r$old is its secondary $(elapsed "$t0") s after the request"
    assert_eq "$(pinfo "r$WITNESS" "i['role'], i['executing']")" "witness False" "the witness during migration"
    handed[$old]=$(( ${handed[$old]:-0} + 1 ))
    assert_eq "$(pinfo "r$old" "i['handoffs']")" "${handed[$old]}" "handoffs completed by r$old"
    LEADER=$new SECONDARY=$old
    sleep 4
    # Protected again by incremental syncvms only: the new pair never
    # compared every page.
    assert_eq "$(pinfo "r$old" "i['syncvm']['full-count']") $(pinfo "r$new" "i['syncvm']['full-count']")" \
        "$full_before" "full syncvms of r$old and r$new across the migration"
done
load_check
# Traffic that still reached a former leader went on to the new one.
echo "figure: inputs forwarded by former leaders:" \
    "$(for n in 0 1 2; do echo -n "r$n $(pinfo "r$n" "i['net']['inputs-forwarded']") "; done)"

# The pair made by the handoffs holds identical RAM at every syncvm
# (recording a digest hashes all of RAM, so only now, with a light load).
light_load_recording "$LEADER" "$SECONDARY"
assert_ram_equal "$LEADER" "$SECONDARY" 10 "after the migrations"
