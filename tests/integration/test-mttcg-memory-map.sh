#!/usr/bin/env bash
# Memory map changes while other vCPUs do MMIO, under MTTCG (QEMU patch
# 0011). A 4-vCPU guest turns a virtio-rng's memory decoding off and on
# in a loop while three loops read a pci-testdev's BAR: each change
# rebuilds the address space's section table while the other vCPUs still
# hold TLB entries made from the old one. QEMU 10.0 resolved those in the
# new table and aborted ("iotlb_to_section: Assertion section_index <
# d->map.sections_nb", found by CI in test-vsmr-smp4 while a guest
# booted); unpatched, it aborts within seconds of this load. QEMU must
# survive it, and the guest must have done both kinds of access.
. "$(dirname "$0")/lib.sh"

secs=20
GUEST_SMP=4
t0=$(date +%s.%N)
qemu_start vm - -m 256 -smp "$GUEST_SMP" -kernel "$GUEST_DIR/vmlinuz" \
    -initrd "$GUEST_DIR/initrd.img" -no-reboot \
    -append "console=ttyS0 panic=-1 quiet plover.ip=none plover.run=mapstress:$secs" \
    -device virtio-rng-pci -device pci-testdev
wait_serial vm "PLOVER-GUEST: mapstress" $(( secs + 120 ))
line=$(grep -a "PLOVER-GUEST: mapstress" "$WORK/vm.serial")
echo "figure: ${line#*PLOVER-GUEST: }; boot and stress took $(elapsed "$t0") s"
case "$line" in
*"mapstress failed"*) fail "$line" ;;
esac
set -- $(echo "$line" | sed -n 's/.*mapstress: \([0-9]*\) memory map toggles and \([0-9]*\) MMIO reads.*/\1 \2/p')
[ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ] || fail "the guest did not stress both: $line"
kill -0 "$PID_vm" || fail "QEMU died: $(tail -3 "$WORK/vm.err")"
assert_eq "$(qmp vm query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" \
    running "the guest after the stress"
