#!/usr/bin/env bash
# TLS on the replica links (-plover tls-creds, certificates made here with
# certtool):
#  1. a capture of the replica links (consensus and syncvm ports, on every
#     port of the segment) while clients write a marker holds no trace of
#     it, and a checking load loses nothing;
#  2. a replica restarted with a certificate another CA signed (a replica
#     of another group), then with another replica's certificate, cannot
#     join: the others refuse it with the reason, count it, and serve on.
#     With its own it rejoins;
#  3. the same capture of a group without TLS finds the marker, so the
#     check of 1 can fail.
. "$(dirname "$0")/lib.sh"

MARK="plovermark$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

# capture_start NAME: every replica-link packet through the segment.
capture_start() {
    ip netns exec "${NSP}lan" tcpdump -i any -U -s 0 -w "$WORK/$1.pcap" \
        'tcp and (port 7100 or port 7101)' > "$WORK/$1.tcpdump" 2>&1 &
    CAP_PID=$!
    PLV_PIDS+=("$CAP_PID")
    wait_for 10 grep -q 'listening on' "$WORK/$1.tcpdump" || fail "tcpdump did not start"
}

capture_stop() {
    sleep 1         # the syncvms after the last write
    kill -INT "$CAP_PID"
    wait "$CAP_PID" 2>/dev/null || true
}

# write_marks: 40 writes whose values carry the marker; the guest keeps
# them in its memory, and the inputs go through consensus.
write_marks() {
    local i
    for i in $(seq 1 40); do
        assert_eq "$(kv SET "mk$i" "$MARK-$i")" "OK" "SET mk$i"
    done
    assert_eq "$(kv GET mk40)" "VALUE $MARK-40" "GET mk40"
}

# marks_in NAME: packets of capture NAME that hold the marker.
marks_in() { grep -a -c -- "$MARK" "$WORK/$1.pcap" || true; }

# tls_refused: TLS refusals the replicas other than $1 counted.
tls_refused() {
    local n sum=0 c
    for n in 0 1 2; do
        [ "$n" = "$1" ] && continue
        c=$(pinfo "r$n" "i['links']['consensus-tls-refused'] + i['links']['syncvm']['tls-refused']")
        sum=$((sum + c))
    done
    echo "$sum"
}
# refused_since N BEFORE: more refusals counted than BEFORE (read anew at
# each call: wait_for's arguments are expanded once).
refused_since() { [ "$(tls_refused "$1")" -gt "$2" ]; }

refused_logged() { grep -q -- "plover: .* refused: .*\($1\)" "$WORK/r$LEADER.err" "$WORK/r$SECONDARY.err"; }

# ---- 1. with TLS ----
pki_make "$WORK/pki"
REPLICA_TLS="$WORK/pki"
group_up
assert_eq "$(pinfo "r$LEADER" "i['tls-creds']")" "plvtls" "query-plover tls-creds"
capture_start tls
write_marks
load_start 8
load_check
capture_stop tls
size=$(stat -c %s "$WORK/tls.pcap")
echo "figure: TLS capture: $size bytes of replica links, $(marks_in tls) packets with the marker"
[ "$size" -gt 200000 ] || fail "the capture holds only $size bytes: it saw no replica traffic?"
assert_eq "$(marks_in tls)" "0" "packets with the marker on TLS links"

# ---- 2. a replica with the wrong certificate ----
pki_ca "$WORK/pki/other-ca"
pki_replica "$WORK/pki/rogue" "$WORK/pki/other-ca" "$(host_ip "$WITNESS")" "$WORK/pki/other-ca"
pki_replica "$WORK/pki/impostor" "$WORK/pki/ca" "$(host_ip "$LEADER")" "$WORK/pki/ca"
before=$(tls_refused "$WITNESS")
for bad in rogue impostor; do
    kill_replica "$WITNESS"
    eval "TLS_DIR_R$WITNESS=\$WORK/pki/\$bad"
    replica_start "$WITNESS"
    wait_for 20 refused_since "$WITNESS" "$before" ||
        fail "no TLS refusal counted for the $bad replica"
    before=$(tls_refused "$WITNESS")
    sleep 2
    role=$(pinfo "r$WITNESS" "i['role']")
    [ "$role" = recovering ] || fail "the $bad replica got in: it is $role"
    assert_eq "$(kv SET during-$bad yes)" "OK" "service with the $bad replica about"
    echo "figure: $bad replica refused ($before refusals counted so far)"
done
# The end that verifies the rogue's certificate says why; a rogue that
# dials refuses ours first (it trusts its own CA), and we say that.
refused_logged "certificate is refused: The certificate is NOT trusted\|refused our certificate" ||
    fail "no one-line reason for the rogue certificate in the logs"
refused_logged "claims to be replica $WITNESS, but its certificate" ||
    fail "no one-line reason for the impostor certificate in the logs"
kill_replica "$WITNESS"
unset "TLS_DIR_R$WITNESS"
replica_start "$WITNESS"
wait_role "$WITNESS" witness 30
assert_eq "$(kv GET during-impostor)" "VALUE yes" "GET after the rejoin"

# ---- 3. the same capture without TLS ----
REPLICA_TLS=
for n in 0 1 2; do
    kill_replica "$n"
    rm -f "$WORK/r$n.state"
done
for n in 0 1 2; do
    replica_start "$n"
done
wait_protected 120
kv_wait 60 || fail "kvd does not answer without TLS"
capture_start plain
write_marks
capture_stop plain
echo "figure: plaintext capture: $(stat -c %s "$WORK/plain.pcap") bytes, $(marks_in plain) packets with the marker"
[ "$(marks_in plain)" -gt 0 ] || fail "the marker is not in the plaintext capture: the check cannot fail"
