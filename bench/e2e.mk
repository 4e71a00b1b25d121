# bench-e2e: kvd throughput and latency on the test guest, unreplicated vs.
# three VSMR replicas, in the same run (real QEMU, namespaces, TCG).
.PHONY: bench-e2e
bench-e2e: qemu guest
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) $(SRCDIR)/bench/e2e.sh
