# Unit tests: every tests/unit/test-*.c is one libcheck runner linked with
# plover/core. check-unit runs them all; each prints libcheck's summary line.

UNIT_SRCS := $(wildcard $(SRCDIR)/tests/unit/test-*.c)
UNIT_BINS := $(patsubst $(SRCDIR)/tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
UNIT_HELPERS := $(wildcard $(SRCDIR)/tests/unit/helper-*.c)
UNIT_CFLAGS := $(CORE_CFLAGS) -I$(SRCDIR)/tests/unit $(shell pkg-config --cflags check)
UNIT_LDLIBS := $(CORE_LIB) $(CORE_LDLIBS) $(shell pkg-config --libs check)

.PHONY: unit-build check-unit soak
unit-build: $(UNIT_BINS)

# A runner is compiled from several sources in one gcc call, where -MMD
# records the headers of only one of them: depend on every header (and the
# simulator) the tests can include instead.
UNIT_HEADERS := $(wildcard $(SRCDIR)/plover/include/plover/*.h $(SRCDIR)/tests/unit/*.h \
                           $(SRCDIR)/tests/unit/sim/*)

$(BUILD)/tests/unit/%: $(SRCDIR)/tests/unit/%.c $(UNIT_HELPERS) $(UNIT_HEADERS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(UNIT_CFLAGS) -o $@ $< $(UNIT_HELPERS) $(UNIT_LDLIBS)

# CK_FORK=yes: a crash in one test is reported as that test's error.
check-unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
	    echo "== $$(basename $$t)"; \
	    CK_FORK=yes PLOVER_SRCDIR=$(SRCDIR) $$t || rc=1; \
	done; exit $$rc

# Long runs of the randomized suites (seed counts scaled up by PLOVER_SOAK).
soak: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
	    echo "== $$(basename $$t) (soak)"; \
	    CK_FORK=yes CK_DEFAULT_TIMEOUT=0 PLOVER_SOAK=1 PLOVER_SRCDIR=$(SRCDIR) $$t || rc=1; \
	done; exit $$rc
