# Benchmarks: every bench/<name>.c is one program linked with plover/core,
# built as build/bench/<name> and run by `make bench-<name>`. Nothing to
# register: adding bench/<name>.c is enough. A benchmark that needs more puts
# it in its own bench/<name>.mk (included below):
#   BENCH_CFLAGS_<name> := ...          extra compile flags
#   BENCH_LDLIBS_<name> := ...          extra libraries
#   BENCH_ARGS_<name>   := ...          arguments `make bench-<name>` passes
#   $(BUILD)/bench/<name>: $(SRCDIR)/bench/<name>-util.c
#                                       more sources (every .c prerequisite
#                                       is compiled into the program)
# Benchmarks are not part of `make check`.

BENCH_SRCS := $(wildcard $(SRCDIR)/bench/*.c)
BENCH_MAIN := $(filter-out $(foreach m,$(BENCH_SRCS),$(if $(filter %-util.c,$(m)),$(m))),$(BENCH_SRCS))
BENCH_BINS := $(patsubst $(SRCDIR)/bench/%.c,$(BUILD)/bench/%,$(BENCH_MAIN))

-include $(filter-out $(SRCDIR)/bench/bench.mk,$(wildcard $(SRCDIR)/bench/*.mk))

.PHONY: bench-build
bench-build: $(BENCH_BINS)

$(BUILD)/bench/%: $(SRCDIR)/bench/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CORE_CFLAGS) $(BENCH_CFLAGS_$*) -MMD -MP -MT $@ -o $@ \
	    $(filter %.c,$^) $(CORE_LIB) $(CORE_LDLIBS) $(BENCH_LDLIBS_$*)

-include $(BENCH_BINS:=.d)

bench-%: $(BUILD)/bench/%
	$< $(BENCH_ARGS_$*)
