# Test guest (tests/guest): Debian's kernel and a busybox initramfs that runs
# our static workload programs (kvd, racey).  See tests/guest/README.md.
#
#   make guest   ->  $(GUEST_OUT)/vmlinuz, $(GUEST_OUT)/initrd.img,
#                    $(GUEST_OUT)/vmlinux (the same kernel unpacked, boots
#                    faster under TCG), $(GUEST_OUT)/disk.img (the pristine
#                    data disk, copied per replica), and the host tool
#                    $(BUILD)/tools/kvctl
#
# The kernel .deb is cached in $(GUEST_CACHE) (survives make clean).  The
# kernel is resolved from linux-image-amd64 once; remove $(GUEST_OUT)/kernel
# to pick up a newer Debian kernel.

GUEST_OUT   := $(BUILD)/guest
GUEST_SRC   := $(SRCDIR)/tests/guest
GUEST_CACHE := $(SRCDIR)/.cache/guest
GUEST_KDIR  := $(GUEST_OUT)/kernel
BUSYBOX     ?= /bin/busybox

GUEST_CC     := $(or $(HOST_CC),gcc)
GUEST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -static -pthread

# Kernel modules the guest loads; their dependencies are found and ordered
# by mkinitramfs.sh.  This is the one list to extend: an RDMA guest appends
# crc32_generic rdma_rxe rdma_ucm (shared/notes/soft-roce.md; crc32_generic
# is needed by rxe but is not a declared dependency, so name it).
# The data disk: virtio_blk, or virtio_scsi with sd_mod (its disks are
# /dev/sdX), and ext4 (which brings jbd2, mbcache, crc16).
# ext4's metadata checksums need the crc32c hash, a soft dependency
# ("softdep pre: crypto-crc32c") that mkinitramfs.sh does not follow, and
# TCG's default CPU (qemu64) has no SSE4.2 for crc32c-intel: name
# crc32c_generic, before ext4.
GUEST_MODULES := virtio_pci virtio_net virtio_blk virtio_scsi sd_mod crc32c_generic ext4 \
	button evdev

# The data disk image (mkdisk.sh): size, label and a fixed UUID, which also
# seeds the directory hash, so that a rebuild gives the same image.
GUEST_DISK_MB    := 64
GUEST_DISK_LABEL := plover-data
GUEST_DISK_UUID  := 5d1c7a3e-9b0f-4c6e-8a52-1f0e7c3d9b64

GUEST_PROGS := $(GUEST_OUT)/bin/kvd $(GUEST_OUT)/bin/racey

guest: $(GUEST_OUT)/vmlinuz $(GUEST_OUT)/vmlinux $(GUEST_OUT)/initrd.img \
       $(GUEST_OUT)/disk.img tools

$(GUEST_KDIR)/version: $(GUEST_SRC)/fetch-kernel.sh
	$(GUEST_SRC)/fetch-kernel.sh $(GUEST_CACHE) $(GUEST_KDIR)

$(GUEST_OUT)/vmlinuz: $(GUEST_KDIR)/version
	cp $(GUEST_KDIR)/root/boot/vmlinuz-$$(cat $<) $@.tmp && mv $@.tmp $@

$(GUEST_OUT)/vmlinux: $(GUEST_OUT)/vmlinuz $(GUEST_SRC)/extract-vmlinux.sh
	$(GUEST_SRC)/extract-vmlinux.sh $< $@

$(GUEST_PROGS): $(GUEST_OUT)/bin/%: $(GUEST_SRC)/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

$(GUEST_OUT)/initrd.img: $(GUEST_KDIR)/version $(GUEST_SRC)/init \
                         $(GUEST_SRC)/mkinitramfs.sh $(GUEST_SRC)/guest.mk \
                         $(GUEST_PROGS) $(BUSYBOX)
	$(GUEST_SRC)/mkinitramfs.sh -k $(GUEST_KDIR) -o $@ -b $(BUSYBOX) \
	    -i $(GUEST_SRC)/init -m "$(GUEST_MODULES)" \
	    $(foreach p,$(GUEST_PROGS),-a $(p):/bin/$(notdir $(p)))

$(GUEST_OUT)/disk.img: $(GUEST_SRC)/mkdisk.sh $(GUEST_SRC)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_SRC)/mkdisk.sh -o $@ -s $(GUEST_DISK_MB) -L $(GUEST_DISK_LABEL) \
	    -U $(GUEST_DISK_UUID)

# Only runs when busybox is missing: say which package brings it.
$(BUSYBOX):
	@echo "guest: $(BUSYBOX) not found: install the busybox-static package" >&2; exit 1

# kvd's protocol, tested on the host over 127.0.0.1 (no QEMU needed).
.PHONY: guest-test guest-smoke
guest-test: $(GUEST_OUT)/bin/kvd tools
	KVD=$(GUEST_OUT)/bin/kvd KVCTL=$(BUILD)/tools/kvctl SRCDIR=$(SRCDIR) \
	    $(GUEST_SRC)/test-kvd.sh

# Boot the guest under TCG and check kvd and racey (tests/guest/smoke.sh).
guest-smoke: guest
	QEMU=$(BUILD)/qemu/qemu-system-x86_64 GUEST_DIR=$(GUEST_OUT) \
	    KVCTL=$(BUILD)/tools/kvctl SRCDIR=$(SRCDIR) $(GUEST_SRC)/smoke.sh 3

include $(SRCDIR)/tests/tools/tools.mk
