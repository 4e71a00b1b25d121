# bench-syncvm: table (d) runs syncvms over TLS, with the unit tests'
# throwaway CA (tests/unit/helper-tls.c).
BENCH_CFLAGS_syncvm := -I$(SRCDIR)/tests/unit
$(BUILD)/bench/syncvm: $(SRCDIR)/tests/unit/helper-tls.c
