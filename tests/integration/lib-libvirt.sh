# libvirt for the integration tests (sourced after lib.sh).
#
# Host N of lib.sh's topology gets a libvirtd of its own, started by the
# test in the host's network namespace and in a private mount namespace
# whose /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt
# and /var/log/libvirt are directories under $WORK/lvN: its configuration,
# socket, domain state and logs belong to the test, and no system libvirt
# service needs to run (or is disturbed if one does). virsh reaches it
# through its socket, $WORK/lvN/run/libvirt-sock.
#
# Replica N runs as domain "vm-rN", made from docs/examples/plover-domain.xml.
# lib.sh's qmp (and with it pinfo, wait_protected, wait_role, ...) goes
# through "virsh qemu-monitor-command", libvirt owning the monitor.

LIBVIRT_MOUNTS="etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt"
LIBVIRT_HOSTS=()
PLV_CLEANUP_HOOKS+=(libvirt_cleanup)

libvirt_need() {
    command -v libvirtd >/dev/null && command -v virsh >/dev/null ||
        fail "libvirtd and virsh are missing: run ./configure --install-deps"
    # libvirt's QEMU driver resolves its compiled-in user even when
    # qemu.conf runs QEMU as root; configure --install-deps creates it.
    getent passwd libvirt-qemu >/dev/null ||
        fail "no user libvirt-qemu: run ./configure --install-deps"
}

# virsh_n N ARGS...: virsh against host N's libvirtd.
libvirt_uri() { echo "qemu:///system?socket=$WORK/lv$1/run/libvirt-sock"; }
virsh_n() {
    local n=$1
    shift
    virsh -q -c "$(libvirt_uri "$n")" "$@"
}

# libvirtd_start N: host N's own libvirtd (host_setup N first).
libvirtd_start() {
    local n=$1 d="$WORK/lv$n" m mounts=""
    libvirt_need
    for m in $LIBVIRT_MOUNTS; do
        mkdir -p "$d/${m%%:*}" "${m#*:}"
        mounts="$mounts mount --bind $d/${m%%:*} ${m#*:} &&"
    done
    cat > "$d/etc/libvirtd.conf" <<EOF
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    # QEMU as root, with no cgroups, namespaces or security labels, which a
    # test host may not have; QEMU's stderr to a file, without virtlogd.
    # libvirt's seccomp sandbox stays on, as in production.
    cat > "$d/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
    # ip, unshare and sh all exec: $! is libvirtd's PID.
    ip netns exec "${NSP}h$n" unshare -m --propagation private \
        sh -c "$mounts exec libvirtd -f /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid" \
        > "$d/libvirtd.out" 2>&1 &
    eval "LIBVIRTD_PID_$n=$!"
    PLV_PIDS+=($!)
    LIBVIRT_HOSTS+=("$n")
    wait_for 30 virsh_n "$n" uri >/dev/null 2>&1 ||
        { cat "$d/libvirtd.out" "$d/log/libvirtd.log" >&2; fail "libvirtd of h$n does not answer"; }
    # Every domain event, for the record of a failure.
    virsh -q -c "$(libvirt_uri "$n")" event --all --loop --timestamp > "$d/events.log" 2>&1 &
    PLV_PIDS+=($!)
}

# domain_define N GUEST_APPEND: domain vm-rN for replica N from the example.
domain_define() {
    local n=$1 peers
    peers="$(host_ip 0):7100,$(host_ip 1):7100,$(host_ip 2):7100"
    [ -e "$WORK/plover.secret" ] ||
        printf '%s' plover-integration-secret > "$WORK/plover.secret"
    python3 "$SRCDIR/tests/integration/libvirt-domain.py" \
        "$SRCDIR/docs/examples/plover-domain.xml" \
        --name "vm-r$n" --id "$n" --peers "$peers" --state "$WORK/r$n.state" \
        --secret-file "$WORK/plover.secret" --emulator "$(realpath "$QEMU")" \
        --kernel "$(realpath "$GUEST_DIR/vmlinuz")" --initrd "$(realpath "$GUEST_DIR/initrd.img")" \
        --cmdline "console=ttyS0 panic=-1 quiet $2" --serial "$WORK/r$n.serial" \
        --memory "${GUEST_MEM:-256}" --mac "$GUEST_MAC" --no-disk \
        > "$WORK/vm-r$n.xml"
    virsh_n "$n" define "$WORK/vm-r$n.xml" >/dev/null ||
        fail "virsh define vm-r$n failed"
}

# domain_start N: virsh start; PID_rN names its QEMU (wait_serial).
domain_start() {
    local n=$1 out
    out=$(virsh_n "$n" start "vm-r$n" 2>&1) ||
        { libvirt_log_tail "$n"; fail "virsh start vm-r$n: $out"; }
    eval "PID_r$n=$(cat "$WORK/lv$n/run/qemu/vm-r$n.pid")"
}

# domstate N: "running", "paused", "shut off", ...
domstate() {
    virsh_n "$1" domstate "vm-r$1" 2>/dev/null | head -n 1
}

domstate_is() { [ "$(domstate "$1")" = "$2" ]; }
wait_domstate() {
    local n=$1 want=$2 t=$3
    wait_for "$t" domstate_is "$n" "$want" && return 0
    fail "vm-r$n is '$(domstate "$n")', not '$want', after ${t}s"
}

# qmp rN COMMAND [JSON-ARGUMENTS]: as lib.sh's, through libvirt.
qmp() {
    local n=${1#r} req
    req="{\"execute\": \"$2\"${3:+, \"arguments\": $3}}"
    virsh_n "$n" qemu-monitor-command "vm-r$n" "$req" | python3 -c '
import json, sys
r = json.load(sys.stdin)
if "error" in r:
    print("qmp: %s: %s" % (sys.argv[1], r["error"].get("desc")), file=sys.stderr)
    sys.exit(1)
print(json.dumps(r["return"]))' "$2"
}

libvirt_log_tail() {
    local f
    for f in "$WORK/lv$1/log/qemu/vm-r$1.log" "$WORK/lv$1/log/libvirtd.log" "$WORK/lv$1/events.log"; do
        [ -s "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

# Every domain destroyed, every QEMU libvirt started stopped, every
# libvirtd stopped, failed test or not.
libvirt_cleanup() {
    local rc=$1 n pid f dom
    for n in ${LIBVIRT_HOSTS[@]+"${LIBVIRT_HOSTS[@]}"}; do
        [ "$rc" -eq 0 ] || libvirt_log_tail "$n"
        for dom in $(timeout 10 virsh -q -c "$(libvirt_uri "$n")" list --name 2>/dev/null); do
            timeout 20 virsh -q -c "$(libvirt_uri "$n")" destroy "$dom" >/dev/null 2>&1 || true
        done
        for f in "$WORK/lv$n"/run/qemu/vm-r*.pid; do
            [ -s "$f" ] || continue
            pid=$(cat "$f")
            kill -KILL "$pid" 2>/dev/null || true
        done
        pid=$(eval echo "\${LIBVIRTD_PID_$n:-}")
        [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    done
}
