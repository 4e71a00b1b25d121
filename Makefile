# plover-qemu top-level Makefile: the verbs users type.
#
#   make            configure if needed, build plover/core, QEMU with plover, the test guest
#   make check      everything above, then unit, fuzz and integration tests
#   make demo       the main job: boot replicas in network namespaces and drive kvd
#   make bench      every benchmark (bench-consensus, bench-syncvm, ...)
#   make soak-cluster  a seeded fault soak of three replicas under load
#                   (SOAK_MINUTES, default 10; SOAK_SEED replays a run)
#   make install    install qemu-system-x86_64 under the configured prefix
#
# ./configure writes build/config.mk; a fresh clone configures itself on the
# first make, installing missing Debian packages when run as root.

SRCDIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD  := $(SRCDIR)/build

-include $(BUILD)/config.mk

ifeq ($(CONFIGURED),)
# Not configured yet: configure (installing dependencies) and start over.
.DEFAULT_GOAL := all
%:: $(BUILD)/config.mk
	@$(MAKE) --no-print-directory -f $(SRCDIR)/Makefile $@
all: $(BUILD)/config.mk
	@$(MAKE) --no-print-directory -f $(SRCDIR)/Makefile all
$(BUILD)/config.mk:
	cd $(SRCDIR) && ./configure --install-deps
.PHONY: all
else

include $(SRCDIR)/plover/core/core.mk
include $(SRCDIR)/tests/unit/unit.mk
include $(SRCDIR)/bench/bench.mk
include $(SRCDIR)/tests/fuzz/fuzz.mk
include $(SRCDIR)/tests/guest/guest.mk
include $(SRCDIR)/tests/rdma/rdma.mk

QEMU_BUILD := $(BUILD)/qemu
QEMU_BIN   := $(QEMU_BUILD)/qemu-system-x86_64
# Debian's seabios, ipxe-qemu and qemu-system-data (also QEMU's --firmwarepath).
FIRMWARE_DIRS := /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu
export CCACHE_BASEDIR := $(SRCDIR)
export CCACHE_NOHASHDIR := 1

.DEFAULT_GOAL := all
.PHONY: all core qemu guest check check-unit check-fuzz check-integration \
        fuzz soak soak-cluster bench demo install export-patches deps clean distclean

all: core qemu guest

# QEMU: ninja knows what is stale; plover/ is inside its build through
# qemu/plover -> ../plover (made by configure).
qemu: $(QEMU_BUILD)/build.ninja
	$(SRCDIR)/scripts/sync-patches.sh $(QEMU_SRC) $(SRCDIR)/patches $(BUILD)/patches.stamp
	ninja -C $(QEMU_BUILD) qemu-system-x86_64 qemu-img
	@# Run from the build tree, QEMU looks for firmware under qemu-bundle/;
	@# show it the system's firmware directories there too.
	@for d in $(FIRMWARE_DIRS); do \
	    mkdir -p $(QEMU_BUILD)/qemu-bundle$$(dirname $$d); \
	    ln -sfn $$d $(QEMU_BUILD)/qemu-bundle$$d; \
	done
	ln -sf $(QEMU_BIN) $(BUILD)/qemu-system-x86_64

$(QEMU_BUILD)/build.ninja: $(BUILD)/config.mk
	$(SRCDIR)/scripts/configure-qemu.sh $(BUILD)/config.mk

check: all
	$(MAKE) --no-print-directory check-unit
	$(MAKE) --no-print-directory check-fuzz
	$(MAKE) --no-print-directory check-integration
	$(MAKE) --no-print-directory check-rdma

check-integration: qemu guest
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) \
	    $(SRCDIR)/tests/integration/run.sh

soak-cluster: qemu guest tools
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) \
	    bash $(SRCDIR)/tests/integration/soak-cluster.sh

demo: all
	QEMU=$(QEMU_BIN) GUEST_DIR=$(GUEST_OUT) SRCDIR=$(SRCDIR) \
	    $(SRCDIR)/tests/integration/demo.sh

bench: bench-consensus bench-syncvm bench-rdma bench-e2e bench-failover

install: qemu
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(QEMU_BIN) $(DESTDIR)$(PREFIX)/bin/qemu-system-x86_64

# After editing qemu/ and committing there: regenerate patches/ from the
# commits on top of the upstream tag (docs/development.md).
export-patches:
	$(SRCDIR)/scripts/export-patches.sh $(QEMU_SRC) $(SRCDIR)/patches

deps:
	cd $(SRCDIR) && ./configure --install-deps

clean:
	rm -rf $(BUILD)/plover $(BUILD)/tests $(BUILD)/guest $(BUILD)/fuzz $(BUILD)/bench \
	    $(BUILD)/rdma $(BUILD)/tools
	-ninja -C $(QEMU_BUILD) clean

distclean:
	rm -rf $(BUILD)
endif
