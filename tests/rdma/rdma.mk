# RDMA tests and benchmark on soft-RoCE (tests/rdma, docs/rdma.md).
#
#   make check-rdma   boot the RDMA test guest under TCG, run the suite inside
#   make bench-rdma   (bench/rdma.mk) the same guest, the benchmark inside
#
# The guest is the test guest's kernel with soft-RoCE modules, made by the
# same tests/guest/mkinitramfs.sh from GUEST_MODULES plus RDMA_MODULES, with
# the test programs, the libraries ldd names for them, the rxe provider and
# the rdma tool. Everything runs inside one guest over rxe0 on eth0.

RDMA_SRC := $(SRCDIR)/tests/rdma
RDMA_OUT := $(BUILD)/rdma
RDMA_IMG := $(RDMA_OUT)/initrd.img
# crc32_generic: rxe needs it but does not declare it (shared/notes/soft-roce.md)
RDMA_MODULES := crc32_generic rdma_rxe ib_uverbs rdma_ucm
RDMA_TIMEOUT ?= 280
# e.g. RDMA_ARGS=garbage,20: only tests whose name contains "garbage", 20 times
RDMA_ARGS ?=

ifeq ($(ENABLE_RDMA),yes)

RDMA_PROGS := $(RDMA_OUT)/test-rdma $(RDMA_OUT)/bench-rdma
RDMA_TEST_SRCS := $(filter-out $(RDMA_SRC)/bench-rdma.c,$(wildcard $(RDMA_SRC)/*.c))
RDMA_CFLAGS_T := $(CORE_CFLAGS) -I$(RDMA_SRC) -I$(SRCDIR)/plover/core

# Files from the host that the guest's dynamic programs need besides what
# ldd lists: glibc loads libgcc_s at run time; libibverbs loads the rxe
# provider named by its driver file.
RDMA_TOOL     := $(shell command -v rdma 2>/dev/null || echo /usr/bin/rdma)
RDMA_PROVIDER := /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
RDMA_EXTRA    := /lib/x86_64-linux-gnu/libgcc_s.so.1 $(RDMA_PROVIDER) \
                 /etc/libibverbs.d/rxe.driver

$(RDMA_OUT)/test-rdma: $(RDMA_TEST_SRCS) $(wildcard $(RDMA_SRC)/*.h) $(CORE_LIB)
	@mkdir -p $(@D)
	$(HOST_CC) $(RDMA_CFLAGS_T) -o $@ $(filter %.c,$^) $(CORE_LIB) $(CORE_LDLIBS)

$(RDMA_OUT)/bench-rdma: $(RDMA_SRC)/bench-rdma.c $(RDMA_SRC)/harness.c $(wildcard $(RDMA_SRC)/*.h) $(CORE_LIB)
	@mkdir -p $(@D)
	$(HOST_CC) $(RDMA_CFLAGS_T) -o $@ $(filter %.c,$^) $(CORE_LIB) $(CORE_LDLIBS)

$(RDMA_IMG): $(RDMA_PROGS) $(RDMA_SRC)/init.sh $(GUEST_KDIR)/version \
             $(GUEST_SRC)/mkinitramfs.sh $(RDMA_SRC)/rdma.mk $(BUSYBOX)
	@libs=$$(for f in $(RDMA_PROGS) $(RDMA_TOOL) $(RDMA_PROVIDER); do \
	    ldd $$f | awk '$$2 == "=>" && $$3 ~ /^\// { print $$3 } $$1 ~ /^\// { print $$1 }'; \
	    done | sort -u); \
	add=; for l in $$libs $(RDMA_EXTRA); do add="$$add -a $$l:$$l"; done; \
	for p in $(RDMA_PROGS); do add="$$add -a $$p:/rdma/$$(basename $$p)"; done; \
	$(GUEST_SRC)/mkinitramfs.sh -k $(GUEST_KDIR) -o $@ -b $(BUSYBOX) \
	    -i $(RDMA_SRC)/init.sh -m "$(GUEST_MODULES) $(RDMA_MODULES)" \
	    -a $(RDMA_TOOL):/bin/rdma $$add

.PHONY: rdma-guest check-rdma rdma-bench
rdma-guest: $(RDMA_IMG) $(GUEST_OUT)/vmlinuz

check-rdma: rdma-guest
	QEMU=$(QEMU_BIN) KERNEL=$(GUEST_OUT)/vmlinuz INITRD=$(RDMA_IMG) \
	    TIMEOUT=$(RDMA_TIMEOUT) ARGS=$(RDMA_ARGS) $(RDMA_SRC)/run-guest.sh test-rdma rdma

rdma-bench: rdma-guest
	QEMU=$(QEMU_BIN) KERNEL=$(GUEST_OUT)/vmlinuz INITRD=$(RDMA_IMG) \
	    TIMEOUT=$(RDMA_TIMEOUT) $(RDMA_SRC)/run-guest.sh bench-rdma bench-rdma

else

.PHONY: check-rdma rdma-bench
check-rdma rdma-bench:
	@echo "$@: RDMA is disabled in this build (configure found no rdma-core); nothing to run"

endif
