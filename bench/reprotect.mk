# bench-reprotect: re-protection of a 1 GiB guest with a 1 GiB drive under
# a kvd load (real QEMU replicas, namespaces, TCG).
.PHONY: bench-reprotect
bench-reprotect: qemu guest
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) $(SRCDIR)/bench/reprotect.sh
