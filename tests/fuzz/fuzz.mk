# Fuzzing the consensus wire decoder and the syncvm message decoders (the
# agreement's HELLO, REPLY, SKIP and ROUND among them) with
# libFuzzer (clang). The codec sources are compiled directly with the
# fuzzer and sanitizers, not taken from the gcc-built library.
#
#   make check-fuzz   short run (FUZZ_SHORT seconds) from the seed corpus
#   make fuzz         long run (FUZZ_LONG seconds), corpus kept in build/fuzz

FUZZ_CC     ?= clang
FUZZ_SHORT  ?= 15
FUZZ_LONG   ?= 600
FUZZ_DIR    := $(BUILD)/fuzz
FUZZ_WIRE   := $(FUZZ_DIR)/fuzz-wire
FUZZ_GEN    := $(FUZZ_DIR)/gen-corpus-wire
FUZZ_CORPUS := $(FUZZ_DIR)/corpus-wire
FUZZ_WIRE_SRCS := $(SRCDIR)/tests/fuzz/fuzz-wire.c \
                  $(addprefix $(SRCDIR)/plover/core/consensus/,wire.c wire-entry.c)
FUZZ_SYNCVM := $(FUZZ_DIR)/fuzz-syncvm
FUZZ_SGEN   := $(FUZZ_DIR)/gen-corpus-syncvm
FUZZ_SCORPUS := $(FUZZ_DIR)/corpus-syncvm
FUZZ_SYNCVM_SRCS := $(SRCDIR)/tests/fuzz/fuzz-syncvm.c \
                  $(addprefix $(SRCDIR)/plover/core/syncvm/,syncvm-msg.c syncvm-agree.c zstd-codec.c \
                      pagehash.c hashpool.c memview.c)
FUZZ_PKGS   := glib-2.0 libxxhash libzstd
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -D_GNU_SOURCE \
               -I$(SRCDIR)/plover/include $(CORE_PRIV_CFLAGS) $(shell pkg-config --cflags $(FUZZ_PKGS))
FUZZ_LDLIBS := $(shell pkg-config --libs $(FUZZ_PKGS))

.PHONY: check-fuzz fuzz fuzz-build

fuzz-build: $(FUZZ_WIRE) $(FUZZ_GEN) $(FUZZ_SYNCVM) $(FUZZ_SGEN)

$(FUZZ_WIRE): $(FUZZ_WIRE_SRCS) $(wildcard $(SRCDIR)/plover/include/plover/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_WIRE_SRCS) $(FUZZ_LDLIBS)

$(FUZZ_GEN): $(SRCDIR)/tests/fuzz/gen-corpus-wire.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CORE_CFLAGS) -o $@ $< $(CORE_LIB) $(CORE_LDLIBS)

$(FUZZ_SYNCVM): $(FUZZ_SYNCVM_SRCS) $(SRCDIR)/tests/fuzz/fuzz-syncvm.h $(wildcard $(SRCDIR)/plover/include/plover/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(SRCDIR)/tests/fuzz -o $@ $(FUZZ_SYNCVM_SRCS) $(FUZZ_LDLIBS) -lpthread

$(FUZZ_SGEN): $(SRCDIR)/tests/fuzz/gen-corpus-syncvm.c $(SRCDIR)/tests/fuzz/fuzz-syncvm.h $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CORE_CFLAGS) -I$(SRCDIR)/tests/fuzz -o $@ $< $(CORE_LIB) $(CORE_LDLIBS)

$(FUZZ_SCORPUS)/.seeded: $(FUZZ_SGEN)
	$(FUZZ_SGEN) $(FUZZ_SCORPUS)
	@touch $@

# The seed corpus is regenerated from the codec each run; libFuzzer adds
# what it finds to the same build directory, never to the source tree.
$(FUZZ_CORPUS)/.seeded: $(FUZZ_GEN)
	$(FUZZ_GEN) $(FUZZ_CORPUS)
	@touch $@

# $(1): seconds, $(2): target name, $(3): binary, $(4): corpus
define fuzz_run
	@echo "== $(2) ($(1) s)"; \
	ASAN_OPTIONS=detect_leaks=1 $(3) -max_total_time=$(1) -max_len=8192 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$(2)- $(4) \
	    > $(FUZZ_DIR)/$(2).log 2>&1; rc=$$?; \
	grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::new_units_added)' $(FUZZ_DIR)/$(2).log; \
	if [ $$rc != 0 ]; then tail -40 $(FUZZ_DIR)/$(2).log; echo "$(2) FAILED (log: $(FUZZ_DIR)/$(2).log)"; fi; \
	exit $$rc
endef

check-fuzz: $(FUZZ_WIRE) $(FUZZ_CORPUS)/.seeded $(FUZZ_SYNCVM) $(FUZZ_SCORPUS)/.seeded
	$(call fuzz_run,$(FUZZ_SHORT),fuzz-wire,$(FUZZ_WIRE),$(FUZZ_CORPUS))
	$(call fuzz_run,$(FUZZ_SHORT),fuzz-syncvm,$(FUZZ_SYNCVM),$(FUZZ_SCORPUS))

fuzz: $(FUZZ_WIRE) $(FUZZ_CORPUS)/.seeded $(FUZZ_SYNCVM) $(FUZZ_SCORPUS)/.seeded
	$(call fuzz_run,$(FUZZ_LONG),fuzz-wire,$(FUZZ_WIRE),$(FUZZ_CORPUS))
	$(call fuzz_run,$(FUZZ_LONG),fuzz-syncvm,$(FUZZ_SYNCVM),$(FUZZ_SCORPUS))
