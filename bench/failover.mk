# bench-failover: service gap and re-protection time after killing the
# leader, over several runs (real QEMU replicas, namespaces, TCG); the last
# run's timelines as SVG in build/bench/failover (gnuplot).
.PHONY: bench-failover
bench-failover: qemu guest
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) BENCH_OUT=$(BUILD)/bench/failover \
	    $(SRCDIR)/bench/failover.sh
