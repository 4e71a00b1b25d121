# Fuzzing the wire decoder with libFuzzer (clang). The codec sources are
# compiled directly with the fuzzer and sanitizers, not taken from the
# gcc-built library.
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
                  $(SRCDIR)/plover/core/wire.c $(SRCDIR)/plover/core/wire-entry.c
FUZZ_PKGS   := glib-2.0 libxxhash
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -D_GNU_SOURCE \
               -I$(SRCDIR)/plover/include $(shell pkg-config --cflags $(FUZZ_PKGS))
FUZZ_LDLIBS := $(shell pkg-config --libs $(FUZZ_PKGS))

.PHONY: check-fuzz fuzz fuzz-build

fuzz-build: $(FUZZ_WIRE) $(FUZZ_GEN)

$(FUZZ_WIRE): $(FUZZ_WIRE_SRCS) $(wildcard $(SRCDIR)/plover/include/plover/*.h) $(SRCDIR)/plover/core/wire-int.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_WIRE_SRCS) $(FUZZ_LDLIBS)

$(FUZZ_GEN): $(SRCDIR)/tests/fuzz/gen-corpus-wire.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CORE_CFLAGS) -o $@ $< $(CORE_LIB) $(CORE_LDLIBS)

# The seed corpus is regenerated from the codec each run; libFuzzer adds
# what it finds to the same build directory, never to the source tree.
$(FUZZ_CORPUS)/.seeded: $(FUZZ_GEN)
	$(FUZZ_GEN) $(FUZZ_CORPUS)
	@touch $@

define fuzz_run
	@echo "== fuzz-wire ($(1) s)"; \
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_WIRE) -max_total_time=$(1) -max_len=4096 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_CORPUS) \
	    > $(FUZZ_DIR)/fuzz-wire.log 2>&1; rc=$$?; \
	grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::new_units_added)' $(FUZZ_DIR)/fuzz-wire.log; \
	if [ $$rc != 0 ]; then tail -40 $(FUZZ_DIR)/fuzz-wire.log; echo "fuzz-wire FAILED (log: $(FUZZ_DIR)/fuzz-wire.log)"; fi; \
	exit $$rc
endef

check-fuzz: $(FUZZ_WIRE) $(FUZZ_CORPUS)/.seeded
	$(call fuzz_run,$(FUZZ_SHORT))

fuzz: $(FUZZ_WIRE) $(FUZZ_CORPUS)/.seeded
	$(call fuzz_run,$(FUZZ_LONG))
