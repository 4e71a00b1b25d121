# Integration-test helpers: network namespaces, bridges, taps, QEMU processes.
#
# Topology (all inside namespaces this test creates; names are unique per
# test process so parallel or leftover runs never collide):
#
#   ${NSP}lan:     bridge "lan", the shared L2 segment
#   ${NSP}hN:      one per QEMU host: bridge "br0" = tap "tap0" + veth to lan;
#                  the host's own address for replica links is on br0
#   ${NSP}cl:      the client, a veth to lan
#
# Addresses: host N = 10.$SUBNET.0.(N+1), guest = 10.$SUBNET.0.100,
# client = 10.$SUBNET.0.200. Traffic never leaves these namespaces.
#
# Everything started is recorded and removed by plv_cleanup, which runs on
# EXIT (also when a test fails or is interrupted).

set -euo pipefail

: "${QEMU:?QEMU must name the built qemu-system-x86_64}"
: "${GUEST_DIR:?GUEST_DIR must name the built test guest}"
: "${SRCDIR:?SRCDIR must name the source tree}"
KVCTL=${KVCTL:-$(dirname "$GUEST_DIR")/tools/kvctl}
QEMU_IMG=${QEMU_IMG:-$(dirname "$QEMU")/qemu-img}
NETDELAY=${NETDELAY:-$(dirname "$GUEST_DIR")/tools/netdelay}
GUEST_MAC=52:54:00:12:34:56
QMP_PY="$SRCDIR/tests/integration/qmp.py"

NSP="plv$$"
SUBNET=$(( ($$ % 200) + 20 ))
GUEST_IP="10.$SUBNET.0.100"
CLIENT_IP="10.$SUBNET.0.200"
KVD_PORT=7000
WORK=$(mktemp -d "/tmp/plover-it.XXXXXX")
PLV_PIDS=()
PLV_QEMU_PIDS=()
PLV_NETNS=()
PLV_CLEANUP_HOOKS=()    # commands plv_cleanup runs first (lib-libvirt.sh)

host_ip() { echo "10.$SUBNET.0.$(( $1 + 1 ))"; }

log() { echo "[$(date +%T)] $*" >&2; }

# elapsed T0: seconds since T0 (a "date +%s.%N" value), for figures.
elapsed() { echo "$(date +%s.%N) - $1" | bc -l | cut -c1-5; }

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# wait_for TIMEOUT_S CMD [ARG...]: until CMD succeeds, polled TIMEOUT_S x 10
# times 0.1 s apart; status 1 if it never did. A slow CMD stretches the
# wait: a QMP query costs a Python start, 0.1-0.2 s here but up to 1.5 s
# on a loaded host, where wait_for 30 then lasts minutes. wait_until
# bounds the time itself.
wait_for() {
    local t=$1
    shift
    for _ in $(seq 1 $(( t * 10 ))); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# wait_until TIMEOUT_S CMD [ARG...]: until CMD succeeds, for at most
# TIMEOUT_S seconds of wall time however long each try takes.
wait_until() {
    local deadline=$(( ${EPOCHREALTIME/./} + $1 * 1000000 ))
    shift
    until "$@"; do
        [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

plv_cleanup() {
    local rc=$? pid ns st q hook
    if [ "$rc" -ne 0 ] && [ -d "$WORK" ]; then
        # How each replica saw it, while they still run.
        for q in "$WORK"/*.qmp; do
            [ -S "$q" ] || continue
            echo "---- $(basename "$q" .qmp): query-plover" >&2
            timeout 5 python3 "$QMP_PY" "$q" query-plover >&2 2>&1 || true
        done
        # Where the segment last saw each MAC (a takeover must move the guest's).
        echo "---- lan: bridge fdb" >&2
        ip netns exec "${NSP}lan" bridge fdb show br lan 2>&1 | grep -v permanent >&2 || true
    fi
    for hook in ${PLV_CLEANUP_HOOKS[@]+"${PLV_CLEANUP_HOOKS[@]}"}; do
        "$hook" "$rc" || true
    done
    for pid in "${PLV_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PLV_PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # A QEMU that crashed on the way out is a failure too.
    for pid in ${PLV_QEMU_PIDS[@]+"${PLV_QEMU_PIDS[@]}"}; do
        st=0
        wait "$pid" 2>/dev/null || st=$?
        case "$st" in
        0|127|143) ;;   # clean exit, already reaped, SIGTERM
        *) echo "FAIL: QEMU $pid ended with status $st on shutdown" >&2; [ "$rc" -ne 0 ] || rc=1 ;;
        esac
    done
    for ns in "${PLV_NETNS[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ -d "$WORK" ]; then
        # Keep the evidence of a failure visible in the runner's output.
        for f in "$WORK"/*.serial "$WORK"/*.err; do
            [ -s "$f" ] || continue
            echo "---- $(basename "$f") (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
    # PLOVER_KEEP_WORK=1 keeps a failed test's logs and traces for study.
    if [ "$rc" -ne 0 ] && [ -n "${PLOVER_KEEP_WORK:-}" ]; then
        echo "kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap plv_cleanup EXIT
trap 'exit 130' INT TERM

need_root() {
    [ "$(id -u)" = 0 ] || fail "integration tests need root (network namespaces, taps)"
}

nsx() {
    local ns=$1
    shift
    ip netns exec "$NSP$ns" "$@"
}

add_netns() {
    ip netns add "$NSP$1"
    PLV_NETNS+=("$NSP$1")
    nsx "$1" ip link set lo up
}

# The shared segment and the client.
net_setup() {
    need_root
    add_netns lan
    nsx lan ip link add lan type bridge
    nsx lan ip link set lan up
    add_netns cl
    ip link add "${NSP}c" netns "${NSP}cl" type veth peer name "cl" netns "${NSP}lan"
    nsx lan ip link set cl master lan up
    nsx cl ip link set "${NSP}c" name eth0
    nsx cl ip addr add "$CLIENT_IP/24" dev eth0
    nsx cl ip link set eth0 up
}

# Host N: its namespace, a tap for QEMU, a bridge joining tap and segment.
host_setup() {
    local n=$1
    add_netns "h$n"
    nsx "h$n" ip tuntap add dev tap0 mode tap
    nsx "h$n" ip link add br0 type bridge
    ip link add "${NSP}u$n" netns "${NSP}h$n" type veth peer name "h$n" netns "${NSP}lan"
    nsx lan ip link set "h$n" master lan up
    nsx "h$n" ip link set "${NSP}u$n" name uplink
    nsx "h$n" ip link set uplink master br0 up
    nsx "h$n" ip link set tap0 master br0 up
    nsx "h$n" ip addr add "$(host_ip "$n")/24" dev br0
    nsx "h$n" ip link set br0 up
}

# qemu_start NAME HOSTNS [QEMU ARGS...]: start QEMU in namespace h$HOSTNS
# (or none: "-"), with a QMP socket $WORK/NAME.qmp and serial log
# $WORK/NAME.serial. Records the PID for cleanup. PLOVER_TRACE=EVENTS
# traces those events, PLOVER_TIMESTAMPS=1 stamps messages and traces
# with the time (for study of a kept failure).
qemu_start() {
    local name=$1 host=$2
    shift 2
    local -a pre=()
    [ "$host" = - ] || pre=(ip netns exec "${NSP}h$host")
    "${pre[@]}" "$QEMU" -accel "${PLOVER_ACCEL:-tcg}" -nodefaults -display none \
        -qmp "unix:$WORK/$name.qmp,server=on,wait=off" \
        -serial "file:$WORK/$name.serial" \
        ${PLOVER_TRACE:+-trace "$PLOVER_TRACE"} ${PLOVER_TIMESTAMPS:+-msg timestamp=on} \
        "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
    PLV_PIDS+=($!)
    PLV_QEMU_PIDS+=($!)
    eval "PID_$name=$!"
}

# guest_args APPEND: sets GUEST_ARGS to the test guest's kernel, initramfs
# and command line, its NIC on netdev "net0" (the host namespace's tap0),
# GUEST_MEM MiB of RAM (256 unless set) and GUEST_SMP vCPUs (1 unless set;
# TCG runs one thread per vCPU, MTTCG).
guest_args() {
    GUEST_ARGS=(-m "${GUEST_MEM:-256}" -smp "${GUEST_SMP:-1}" -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initrd.img"
        -append "console=ttyS0 panic=-1 quiet $1" -no-reboot
        -netdev tap,id=net0,ifname=tap0,script=no,downscript=no
        -device "virtio-net-pci,netdev=net0,mac=$GUEST_MAC")
}

# wait_serial NAME PATTERN TIMEOUT_S
wait_serial() {
    local name=$1 pat=$2 t=$3 pid
    pid=$(eval echo "\$PID_$name")
    for _ in $(seq 1 $(( t * 10 ))); do
        grep -q -- "$pat" "$WORK/$name.serial" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || fail "$name exited before '$pat'"
        sleep 0.1
    done
    fail "$name: no '$pat' on the serial console within ${t}s"
}

qmp() {
    local name=$1
    shift
    python3 "$QMP_PY" "$WORK/$name.qmp" "$@"
}

# kv CMD [ARG...]: one kvd request from the client namespace; prints the reply.
kv() {
    nsx cl "$KVCTL" "$GUEST_IP" "$KVD_PORT" "$@"
}

# kv_wait TIMEOUT_S: until kvd answers PING from the client namespace.
kv_wait() {
    nsx cl "$KVCTL" wait "$GUEST_IP" "$KVD_PORT" --timeout "$1" >/dev/null
}

assert_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

# ---- three replicas ----

SECRET_ARGS=(-object secret,id=plvsec,data=plover-integration-secret)

# replicas_start GUEST_APPEND [EXTRA_PLOVER_FIELDS]: three hosts, one
# replica each (r0, r1, r2), the same command line but for id.
replicas_start() {
    local n
    REPLICA_APPEND=$1 REPLICA_EXTRA=${2:-}
    for n in 0 1 2; do
        host_setup "$n"
        replica_start "$n"
    done
}

# disk_args N: with REPLICA_DISK set (virtio-blk or virtio-scsi), replica
# N's own copy of the test guest's ext4 image (made at its first start
# and kept across restarts, as a host's disk is), in the format
# DISK_FORMATS gives it ("raw qcow2 raw": r1 qcow2), as drive "disk0".
disk_args() {
    local n=$1 fmts fmt img
    DISK_ARGS=()
    [ -n "${REPLICA_DISK:-}" ] || return 0
    read -r -a fmts <<< "${DISK_FORMATS:-raw raw raw}"
    fmt=${fmts[$n]}
    img="$WORK/r$n.$fmt"
    if [ ! -e "$img" ]; then
        "$QEMU_IMG" convert -q -f raw -O "$fmt" "$GUEST_DIR/disk.img" "$img" ||
            fail "cannot make r$n's disk image"
    fi
    DISK_ARGS=(-drive "file=$img,if=none,id=disk0,format=$fmt,cache=writeback")
    case "$REPLICA_DISK" in
    virtio-blk)  DISK_ARGS+=(-device virtio-blk-pci,drive=disk0,id=vdisk0) ;;
    virtio-scsi) DISK_ARGS+=(-device virtio-scsi-pci,id=scsi0
                             -device scsi-hd,drive=disk0,id=vdisk0,bus=scsi0.0) ;;
    *) fail "REPLICA_DISK: $REPLICA_DISK? (virtio-blk or virtio-scsi)" ;;
    esac
}

# ---- TLS ----

# pki_ca DIR: a CA (certtool) in DIR: ca-key.pem, ca-cert.pem.
pki_ca() {
    local dir=$1
    mkdir -p "$dir"
    certtool --generate-privkey --key-type=ecdsa --outfile "$dir/ca-key.pem" 2>/dev/null
    printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 2\n' "plover test CA $dir" > "$dir/ca.info"
    certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" \
        --template "$dir/ca.info" --outfile "$dir/ca-cert.pem" 2>/dev/null ||
        fail "certtool: cannot make the CA in $dir"
}

# pki_replica DIR CA IP TRUST: the files a tls-creds-x509 object reads
# (ca-cert.pem, server-cert.pem, server-key.pem) in DIR, for a replica at
# address IP, signed by the CA in directory CA, trusting TRUST's CA. A
# replica dials and accepts with the one certificate: it is for TLS
# servers and clients both.
pki_replica() {
    local dir=$1 ca=$2 ip=$3 trust=$4
    mkdir -p "$dir"
    certtool --generate-privkey --key-type=ecdsa --outfile "$dir/server-key.pem" 2>/dev/null
    printf 'cn = replica %s\nip_address = %s\ntls_www_server\ntls_www_client\nsigning_key\nexpiration_days = 2\n' \
        "$ip" "$ip" > "$dir/cert.info"
    certtool --generate-certificate --load-privkey "$dir/server-key.pem" \
        --load-ca-certificate "$ca/ca-cert.pem" --load-ca-privkey "$ca/ca-key.pem" \
        --template "$dir/cert.info" --outfile "$dir/server-cert.pem" 2>/dev/null ||
        fail "certtool: cannot make the certificate in $dir"
    cp "$trust/ca-cert.pem" "$dir/ca-cert.pem"
}

# pki_make DIR: a CA in DIR/ca and credentials DIR/rN for the three
# replicas, each certificate naming its host's address (as peers= does).
pki_make() {
    local n
    pki_ca "$1/ca"
    for n in 0 1 2; do
        pki_replica "$1/r$n" "$1/ca" "$(host_ip "$n")" "$1/ca"
    done
}

# tls_args N: with REPLICA_TLS (a pki_make directory) set, TLS_ARGS gets
# replica N's tls-creds-x509 object (its credentials directory:
# $REPLICA_TLS/rN, or $TLS_DIR_RN if set) and TLS_FIELD the -plover
# field naming it.
tls_args() {
    local n=$1 override="TLS_DIR_R$1"
    TLS_ARGS=() TLS_FIELD=
    [ -n "${REPLICA_TLS:-}" ] || return 0
    TLS_ARGS=(-object "tls-creds-x509,id=plvtls,dir=${!override:-$REPLICA_TLS/r$n},endpoint=server,verify-peer=on")
    TLS_FIELD=",tls-creds=plvtls"
}

# replica_start N: start (or restart, after kill_replica) replica N with
# the command line replicas_start gave it; its state file lives in $WORK.
# A restart keeps the former life's logs as rN.*.K.
replica_start() {
    local n=$1 peers f k=1
    peers="$(host_ip 0):7100,$(host_ip 1):7100,$(host_ip 2):7100"
    guest_args "$REPLICA_APPEND"
    disk_args "$n"
    tls_args "$n"
    if [ -e "$WORK/r$n.serial" ]; then
        while [ -e "$WORK/r$n.serial.$k" ]; do k=$((k + 1)); done
        for f in serial err out; do
            mv "$WORK/r$n.$f" "$WORK/r$n.$f.$k" 2>/dev/null || true
        done
    fi
    qemu_start "r$n" "$n" "${GUEST_ARGS[@]}" "${DISK_ARGS[@]}" "${SECRET_ARGS[@]}" \
        "${TLS_ARGS[@]}" \
        -plover "role=auto,id=$n,peers=$peers,netdev=net0,secret=plvsec,state=$WORK/r$n.state$TLS_FIELD$REPLICA_EXTRA"
}

# pinfo NAME EXPR: a Python expression over query-plover's reply "i".
pinfo() {
    qmp "$1" query-plover | python3 -c "import json, sys; i = json.load(sys.stdin); print($2)"
}

# wait_protected TIMEOUT_S: until a leader and an executing secondary
# exist and the first syncvm between them completed. Sets LEADER, SECONDARY.
# qemus_alive: every QEMU the test started and did not stop on purpose
# still runs; otherwise fail at once with its last words (a bad option, a
# crash) rather than wait for a group that cannot form.
qemus_alive() {
    local pid n
    for pid in ${PLV_QEMU_PIDS[@]+"${PLV_QEMU_PIDS[@]}"}; do
        kill -0 "$pid" 2>/dev/null && continue
        for n in 0 1 2; do
            [ "$(eval echo "\${PID_r$n:-}")" = "$pid" ] &&
                fail "r$n exited: $(tail -n 3 "$WORK/r$n.err")"
        done
        fail "QEMU $pid exited"
    done
}

wait_protected() {
    local t=$1 n r
    for _ in $(seq 1 $(( t * 2 ))); do
        qemus_alive
        LEADER= SECONDARY=
        for n in 0 1 2; do
            r=$(pinfo "r$n" "i['role'], i['executing'], i['syncvm']['count']" 2>/dev/null) || continue
            case "$r" in
            "leader True "*) LEADER=$n ;;
            "secondary True "[1-9]*) SECONDARY=$n ;;
            esac
        done
        [ -n "$LEADER" ] && [ -n "$SECONDARY" ] && return 0
        sleep 0.5
    done
    for n in 0 1 2; do
        echo "r$n: $(qmp "r$n" query-plover 2>&1)" >&2
    done
    fail "no protected leader/secondary pair within ${t}s"
}

# ---- faults ----

# load_start SECONDS: the checking client load in the background (8
# clients, or $LOAD_CLIENTS): clients
# reconnect across failovers, and at the end every acknowledged write is
# read back (kvctl --verify).
load_start() {
    # ip netns exec, not nsx: $! must be the client's own PID (ip execs
    # it), not a subshell's, for the cleanup to stop it.
    ip netns exec "${NSP}cl" "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients "${LOAD_CLIENTS:-8}" --seconds "$1" \
        --keys 4096 --write-ratio 0.7 --reconnect --verify --timeout 5 \
        > "$WORK/load.out" 2>&1 &
    LOAD_PID=$!
    PLV_PIDS+=("$LOAD_PID")
}

# load_check: the load passed its checks; prints its figures.
load_check() {
    wait "$LOAD_PID" || { cat "$WORK/load.out" >&2; fail "the checking load failed (lost or wrong acknowledged writes?)"; }
    grep -E '^(verify:|load: (gap_ms|requests|errors))' "$WORK/load.out" | sed 's/^/figure: /'
    grep -q '^verify: .* lost=0 wrong=0' "$WORK/load.out" || fail "no clean verify line"
}

# lone_start [EXTRA_PLOVER_FIELDS]: a protected group under a 60 s
# checking load loses its secondary (killed) and its leader starts
# copying the VM to the witness, capped by reprotect-mbps so that the copy
# lasts: the first half of "two replicas lost" (the tests then take the
# witness out during that copy).
# Sets LONE (the leader), KILLED (the secondary), TARGET (the witness)
# and T_KILL (the time of the kill).
lone_start() {
    net_setup
    replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none" ",reprotect-mbps=400${1:-}"
    wait_protected 120
    kv_wait 60 || fail "kvd does not answer"
    LONE=$LEADER KILLED=$SECONDARY TARGET=$(( 3 - LEADER - SECONDARY ))
    load_start 60
    sleep 4
    T_KILL=$(date +%s.%N)
    kill_replica "$KILLED"
    wait_for 30 lone_copying ||
        fail "r$LONE never began to copy the VM to r$TARGET: $(qmp "r$LONE" query-plover)"
}

lone_copying() {
    [ "$(pinfo "r$LONE" "i['secondary'], i['syncvm'].get('full-progress') is not None")" = "$TARGET True" ]
}

# lone_kept: LONE, alone, said it keeps the only copy of the VM.
lone_kept() { grep -q "holding the only copy of the VM: it keeps it" "$WORK/r$LONE.err"; }

# forget_qemu PID: this QEMU's end is the test's business (killed or made
# to fail on purpose), not a shutdown to check.
forget_qemu() {
    local p keep=()
    for p in "${PLV_QEMU_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PLV_QEMU_PIDS=("${keep[@]}")
}

kill_replica() {
    local pid
    pid=$(eval echo "\$PID_r$1")
    forget_qemu "$pid"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}

# link_delay N DELAY_MS JITTER_MS LOSS_PCT: every packet host N sends on
# its replica links (consensus and syncvm: all it sends from br0; the
# guest's traffic is bridged, not sent by the host) waits DELAY_MS plus
# 0..JITTER_MS, and LOSS_PCT percent are dropped. The kernel has no tc
# netem here: an NFQUEUE rule hands the packets to netdelay, which gives
# the verdicts late. No bypass: if netdelay is gone, the link is cut.
link_delay() {
    local n=$1
    ip netns exec "${NSP}h$n" "$NETDELAY" --queue 0 --delay-ms "$2" --jitter-ms "$3" \
        --loss "$4" --seed "$((n + 1))" > "$WORK/netdelay-h$n.out" 2>&1 &
    PLV_PIDS+=($!)
    eval "NETDELAY_PID_h$n=$!"
    wait_for 5 grep -q '^netdelay: ready' "$WORK/netdelay-h$n.out" ||
        { cat "$WORK/netdelay-h$n.out" >&2; fail "netdelay in h$n"; }
    nsx "h$n" iptables-legacy -A OUTPUT -o br0 -j NFQUEUE --queue-num 0
}

# link_delay_end N: stop delaying host N's links; prints netdelay's counts.
link_delay_end() {
    local n=$1 pid
    pid=$(eval echo "\$NETDELAY_PID_h$n")
    nsx "h$n" iptables-legacy -D OUTPUT -o br0 -j NFQUEUE --queue-num 0
    kill -TERM "$pid"
    # Not "wait": this often runs in a command substitution, a subshell
    # whose wait does not know the process; wait for its last line.
    wait_for 5 grep -q '^netdelay: delayed' "$WORK/netdelay-h$n.out" || true
    sed -n 's/^netdelay: delayed/delayed/p' "$WORK/netdelay-h$n.out"
}

# wait_mac_at N TIMEOUT_S: until the segment's bridge learns the guest's MAC
# behind host N (the replica there announced itself, or spoke).
mac_at() { nsx lan bridge fdb show br lan | grep -q "^$GUEST_MAC dev h$1 "; }
wait_mac_at() {
    local n=$1 t=$2
    wait_for "$t" mac_at "$n" && return 0
    fail "the segment does not know the guest's MAC behind h$n after ${t}s: $(nsx lan bridge fdb show br lan | grep "^$GUEST_MAC")"
}

# assert_virtio_live N: no virtio device of replica N is disabled (a
# disabled device treats every queue as empty: the guest's NIC is dead).
assert_virtio_live() {
    virtio_live "$1" || fail "$VIRTIO_BAD"
}

# virtio_live N: the same as a status; VIRTIO_BAD says what is not live.
virtio_live() {
    local n=$1 path st
    for path in $(qmp "r$n" x-query-virtio | python3 -c \
            "import json, sys; print(' '.join(d['path'] for d in json.load(sys.stdin)))"); do
        st=$(qmp "r$n" x-query-virtio-status "{\"path\": \"$path\"}" | python3 -c \
            "import json, sys; i = json.load(sys.stdin); print(i['disabled'], i['broken'])")
        if [ "$st" != "False False" ]; then
            VIRTIO_BAD="r$n: $path disabled, broken: expected 'False False', got '$st'"
            return 1
        fi
    done
}

# fail_over_leader: kill -9 the leader. The secondary must lead, announce
# the guest's MAC to the segment, and the witness must be re-protected as
# its secondary; prints the times. Afterwards LEADER and SECONDARY name the
# new pair and WITNESS the dead replica.
fail_over_leader() {
    local t0 old=$LEADER rarps
    rarps=$(rarp_count)
    t0=$(date +%s.%N)
    kill_replica "$LEADER"
    wait_role "$SECONDARY" leader 30
    echo "figure: secondary r$SECONDARY leads $(elapsed "$t0") s after the kill"
    wait_rarp_after "$rarps" 5
    wait_executing_secondary "$WITNESS" 60
    echo "figure: witness r$WITNESS re-protects the VM $(elapsed "$t0") s after the kill"
    assert_virtio_live "$SECONDARY"
    assert_virtio_live "$WITNESS"
    LEADER=$SECONDARY SECONDARY=$WITNESS WITNESS=$old
}

# rarp_watch: count, at the client, the RARP frames that announce the
# guest's MAC (qemu_announce_self sends them when a replica takes over).
rarp_watch() {
    nsx cl nft -f - <<EOF
table netdev plvrarp {
    chain in {
        type filter hook ingress device eth0 priority 0;
        ether saddr $GUEST_MAC ether type 0x8035 counter
    }
}
EOF
}

# rarp_count: announcements of the guest's MAC the client has received.
rarp_count() {
    nsx cl nft list chain netdev plvrarp in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'
}

# wait_rarp_after N TIMEOUT_S: until more than N announcements arrived.
rarp_more_than() { [ "$(rarp_count)" -gt "$1" ]; }
wait_rarp_after() {
    local n=$1 t=$2
    wait_for "$t" rarp_more_than "$n" && return 0
    fail "no announcement of the guest's MAC reached the client within ${t}s (still $(rarp_count))"
}

# wait_role N ROLE TIMEOUT_S
wait_role() {
    local n=$1 want=$2 t=$3
    for _ in $(seq 1 $(( t * 4 ))); do
        [ "$(pinfo "r$n" "i['role']" 2>/dev/null)" = "$want" ] && return 0
        sleep 0.25
    done
    fail "r$n is not $want after ${t}s: $(qmp "r$n" query-plover 2>&1)"
}

# wait_executing_secondary N TIMEOUT_S: N became secondary and holds the VM.
wait_executing_secondary() {
    local n=$1 t=$2
    for _ in $(seq 1 $(( t * 4 ))); do
        [ "$(pinfo "r$n" "i['role'], i['executing']" 2>/dev/null)" = "secondary True" ] && return 0
        sleep 0.25
    done
    fail "r$n was not re-protected as secondary within ${t}s: $(qmp "r$n" query-plover 2>&1)"
}

# group_up [GUEST_APPEND]: the segment, three replicas of the test guest
# serving kvd (or what GUEST_APPEND runs), and a protected
# leader/secondary pair. Sets LEADER, SECONDARY, WITNESS.
group_up() {
    net_setup
    replicas_start "plover.ip=$GUEST_IP/24 plover.gw=none${1:+ $1}" "${2:-}"
    wait_protected 120
    rarp_watch
    kv_wait 60 || fail "kvd does not answer"
    # The guest's driver is up: both executing replicas' NICs must be live
    # (the secondary was paired during the guest's boot). The pair may
    # have moved since it was read (a false suspicion while three guests
    # boot on two cores): the pair checked is the one that stands after
    # the check.
    local pair live _
    for _ in 1 2 3; do
        wait_protected 60
        pair="$LEADER $SECONDARY"
        live=1
        { virtio_live "$LEADER" && virtio_live "$SECONDARY"; } || live=0
        wait_protected 60
        [ "$LEADER $SECONDARY" = "$pair" ] || continue
        [ "$live" = 1 ] || fail "$VIRTIO_BAD"
        break
    done
    [ "$LEADER $SECONDARY" = "$pair" ] || fail "the pair keeps changing: $pair, then $LEADER $SECONDARY"
    WITNESS=$(( 3 - LEADER - SECONDARY ))
}

# light_load_recording A B: replicas A and B record a RAM digest at each
# syncvm while a light kvd load runs for 3 s (recording hashes all of RAM
# at every syncvm, which a heavy load would not bear).
light_load_recording() {
    qmp "r$1" x-plover-ram-digest '{"record": true}' >/dev/null
    qmp "r$2" x-plover-ram-digest '{"record": true}' >/dev/null
    nsx cl "$KVCTL" load "$GUEST_IP" "$KVD_PORT" --clients 2 --seconds 3 --keys 64 \
        --write-ratio 0.5 --timeout 5 > "$WORK/light.out" 2>&1 ||
        { cat "$WORK/light.out" >&2; fail "light load"; }
}

# assert_ram_equal A B MIN WHAT: the guest RAM digests replicas A and B
# recorded (x-plover-ram-digest record=true) are equal at every syncvm
# epoch both recorded, and there are at least MIN such epochs; so are
# their drives' digests, when the VM has drives.
assert_ram_equal() {
    local a=$1 b=$2 min=$3 what=$4
    python3 - "$(qmp "r$a" x-plover-ram-digest)" "$(qmp "r$b" x-plover-ram-digest)" "$min" "$what" <<'PY' ||
import json, sys
def recs(s):
    return {d["epoch"]: (d["digest"], d.get("disks"), d["ram-parts"])
            for d in json.loads(s) if d["epoch"]}
def parts_differ(e):
    pa, pb = (dict(p.split("=") for p in r[e][2].split(",")) for r in (a, b))
    return [p for p in pa if pa[p] != pb.get(p)]
a, b = recs(sys.argv[1]), recs(sys.argv[2])
common = sorted(set(a) & set(b))
bad = [e for e in common if a[e][0] != b[e][0]]
for e in bad[:3] + bad[-1:]:
    print(f"RAM at syncvm {e} differs in: {' '.join(parts_differ(e))}")
disks = [e for e in common if a[e][1] or b[e][1]]
bad_disk = [e for e in disks if a[e][1] != b[e][1]]
print(f"figure: RAM digests compared at {len(common)} syncvms {sys.argv[4]}, {len(bad)} differ")
if disks:
    print(f"figure: disk digests compared at {len(disks)} syncvms {sys.argv[4]}, {len(bad_disk)} differ")
assert len(common) >= int(sys.argv[3]), f"only {len(common)} common syncvm epochs"
assert not bad, f"RAM differs at syncvms {bad[:5]}"
assert not bad_disk, f"disks differ at syncvms {bad_disk[:5]}: {[(a[e][1], b[e][1]) for e in bad_disk[:2]]}"
PY
        fail "RAM or disks of r$a and r$b differ $what"
}
