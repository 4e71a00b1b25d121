# bench-rdma: commit latency and bulk throughput over soft-RoCE against TCP,
# measured in the same run inside the RDMA test guest (tests/rdma/rdma.mk
# builds the guest; the program is tests/rdma/bench-rdma.c, kept out of
# bench/*.c because it only builds where rdma-core is present).
.PHONY: bench-rdma
bench-rdma:
	@$(MAKE) --no-print-directory rdma-bench
