# bench-failover: service gap and re-protection time after killing the
# leader, over several runs (real QEMU replicas, namespaces, TCG).
.PHONY: bench-failover
bench-failover: qemu guest
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) $(SRCDIR)/bench/failover.sh
