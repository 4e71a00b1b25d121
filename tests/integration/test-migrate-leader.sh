#!/usr/bin/env bash
# plover-migrate-leader under a checking load: leadership goes to the
# secondary and back, three times; each time the new leader announces the
# guest's MAC, the old leader becomes the secondary without a full copy
# (the pair stays at the same syncvm), the witness stays out of it, both
# VMs stay identical, and no acknowledged write is lost. Also: the
# command's refusals, and the replicas' figures in QEMU's query-stats.
. "$(dirname "$0")/lib.sh"

# The same figures through QEMU's query-stats (provider "plover"). The
# migrations move role, view and the syncvms: before and after them,
# each replica's stats must be query-plover's.
STATS_VM='"target": "vm", "providers": [{"provider": "plover"'

# plover_stat N NAME: one stat of replica N, read through the names filter.
plover_stat() {
    qmp "r$1" query-stats "{$STATS_VM, \"names\": [\"$2\"]}]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert len(r) == 1 and [s["name"] for s in r[0]["stats"]] == [sys.argv[1]], r
print(r[0]["stats"][0]["value"])' "$2"
}

# assert_stats N: replica N's query-stats figures lie between those of
# the query-plover calls made just before and after it, and
# query-stats-schemas describes exactly those stats, with their types
# and units.
assert_stats() {
    local n=$1 before stats after schemas
    before=$(qmp "r$n" query-plover)
    stats=$(qmp "r$n" query-stats "{$STATS_VM}]}")
    after=$(qmp "r$n" query-plover)
    schemas=$(qmp "r$n" query-stats-schemas '{"provider": "plover"}')
    python3 - "$before" "$stats" "$after" "$schemas" <<'PY' || fail "r$n: query-stats disagrees with query-plover: $stats"
import json, sys
b, stats, a, schemas = map(json.loads, sys.argv[1:])
ROLE = {"none": 0, "leader": 1, "secondary": 2, "witness": 3, "recovering": 4}
US = ("seconds", -6)
want = {  # name: (type, unit, exponent), and query-plover's field
    "role": ("instant", None, 0, lambda i: ROLE[i["role"]]),
    "executing": ("instant", "boolean", 0, lambda i: i["executing"]),
    "view": ("cumulative", None, 0, lambda i: i["vid"]),
    "commit-index": ("cumulative", None, 0, lambda i: i["commit-index"]),
    "n-err": ("instant", None, 0, lambda i: i["n-err"]),
    "syncvm-count": ("cumulative", None, 0, lambda i: i["syncvm"]["count"]),
    "syncvm-full-count": ("cumulative", None, 0, lambda i: i["syncvm"]["full-count"]),
    "syncvm-failures": ("cumulative", None, 0, lambda i: i["syncvm"]["failures"]),
    "syncvm-last-pause": ("instant", *US, None),
    "syncvm-max-pause": ("peak", *US, lambda i: i["syncvm"]["pause-max-us"]),
    "syncvm-paused": ("cumulative", *US, lambda i: i["syncvm"]["paused-us"]),
    "syncvm-max-bql-hold": ("peak", *US, lambda i: i["syncvm"]["bql-hold-max-us"]),
    "syncvm-bytes-sent": ("cumulative", "bytes", 0, lambda i: i["syncvm"]["total-bytes-sent"]),
    "syncvm-bytes-received": ("cumulative", "bytes", 0,
                              lambda i: i["syncvm"]["total-bytes-received"]),
}
for p in b["peers"]:
    if p["state"] != "local":
        want[f"link-up-{p['id']}"] = ("instant", "boolean", 0,
            lambda i, k=p["id"]: i["peers"][k]["state"] == "up")
errs = []
assert len(stats) == 1 and stats[0]["provider"] == "plover" and "qom-path" not in stats[0], stats
got = {s["name"]: s["value"] for s in stats[0]["stats"]}
assert [s["target"] for s in schemas] == ["vm"], schemas
schema = {s["name"]: s for s in schemas[0]["stats"]}
if set(got) != set(want) or set(schema) != set(want):
    errs.append(f"names: stats {sorted(got)}, schema {sorted(schema)}, want {sorted(want)}")
for name, (typ, unit, exp, field) in want.items():
    s, v = schema.get(name, {}), got.get(name)
    if (s.get("type"), s.get("unit"), s.get("exponent"), s.get("base")) != \
            (typ, unit, exp, 10 if exp else None):
        errs.append(f"{name}: schema {s}")
    if isinstance(v, bool) != (unit == "boolean"):
        errs.append(f"{name}: {v!r} is not a {unit or 'number'}")
    if field is None:
        continue
    lo, hi = sorted([field(b), field(a)])
    if not lo <= v <= hi:
        errs.append(f"{name}: {v}, query-plover {field(b)} then {field(a)}")
if not got.get("syncvm-last-pause", 0) <= a["syncvm"]["pause-max-us"]:
    errs.append(f"syncvm-last-pause {got['syncvm-last-pause']} above the longest pause")
print("\n".join(errs), file=sys.stderr)
sys.exit(1 if errs else 0)
PY
}

# assert_roles_stats: each replica's stats agree with its query-plover,
# and "role" is 1, 2, 3 on leader, secondary, witness, whose links are
# all up. Sets VIEW[n] and SYNCVMS[n], replica n's view and syncvm count.
declare -A VIEW=() SYNCVMS=()
assert_roles_stats() {
    local n p
    for n in 0 1 2; do
        assert_stats "$n"
        for p in 0 1 2; do
            [ "$p" = "$n" ] || assert_eq "$(plover_stat "$n" "link-up-$p")" True "r$n link-up-$p"
        done
        VIEW[$n]=$(plover_stat "$n" view)
        SYNCVMS[$n]=$(plover_stat "$n" syncvm-count)
    done
    assert_eq "$(plover_stat "$LEADER" role) $(plover_stat "$SECONDARY" role) $(plover_stat "$WITNESS" role)" \
        "1 2 3" "the role stat of leader, secondary, witness"
    assert_eq "$(plover_stat "$WITNESS" executing)" False "the witness's executing stat"
}

# The roles must stay as the migrations leave them, so a replica that the
# host takes the CPU from for longer than suspect-ms must not be deposed:
# with the default 100 ms it was, now and then (traced: a QEMU whose
# threads did not run for ~100 ms, its peers' still running, then a
# failover right after a handoff, or its replacement as secondary). This
# test is about migration; failover has tests of its own.
group_up "" ",suspect-ms=500"
assert_eq "$(pinfo r0 "i['timeouts']['suspect-ms']")" 500 "suspect-ms"
assert_roles_stats
declare -A VIEW0 SYNCVMS0
for n in 0 1 2; do VIEW0[$n]=${VIEW[$n]} SYNCVMS0[$n]=${SYNCVMS[$n]}; done
assert_eq "$(qmp "r$LEADER" query-stats "{$STATS_VM, \"names\": []}]}")" "[]" "query-stats names: []"
assert_eq "$(qmp "r$LEADER" query-stats "{$STATS_VM, \"names\": [\"no-such-stat\"]}]}")" "[]" \
    "query-stats for a name plover does not have"
assert_eq "$(qmp "r$LEADER" query-stats "{$STATS_VM, \"names\": [\"view\", \"role\"]}]}" |
    python3 -c 'import json, sys; print(*[s["name"] for s in json.load(sys.stdin)[0]["stats"]])')" \
    "role view" "query-stats for two names"

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
# The stats saw it: each replica's view moved on, the pair's syncvms too.
assert_roles_stats
for n in 0 1 2; do
    [ "${VIEW[$n]}" -gt "${VIEW0[$n]}" ] ||
        fail "r$n's view stat did not move on through 4 migrations: ${VIEW0[$n]}, then ${VIEW[$n]}"
    echo "figure: r$n stats across the migrations: view ${VIEW0[$n]} -> ${VIEW[$n]}," \
        "syncvm-count ${SYNCVMS0[$n]} -> ${SYNCVMS[$n]}"
done
for n in "$LEADER" "$SECONDARY"; do
    [ "${SYNCVMS[$n]}" -gt "${SYNCVMS0[$n]}" ] ||
        fail "r$n's syncvm-count stat did not move on: ${SYNCVMS0[$n]}, then ${SYNCVMS[$n]}"
done
# Traffic that still reached a former leader went on to the new one.
echo "figure: inputs forwarded by former leaders:" \
    "$(for n in 0 1 2; do echo -n "r$n $(pinfo "r$n" "i['net']['inputs-forwarded']") "; done)"

# The pair made by the handoffs holds identical RAM at every syncvm
# (recording a digest hashes all of RAM, so only now, with a light load).
light_load_recording "$LEADER" "$SECONDARY"
assert_ram_equal "$LEADER" "$SECONDARY" 10 "after the migrations"
