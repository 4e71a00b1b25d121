# plover/core: the QEMU-independent library, built on its own for the unit
# tests and benchmarks. QEMU's meson compiles the same sources.list into
# qemu-system-x86_64 (plover/meson.build).

CORE_SRCS := $(addprefix $(SRCDIR)/plover/core/,$(shell grep -v '^\#' $(SRCDIR)/plover/core/sources.list))
ifeq ($(ENABLE_RDMA),yes)
CORE_SRCS += $(addprefix $(SRCDIR)/plover/core/,$(shell grep -v '^\#' $(SRCDIR)/plover/core/sources-rdma.list))
endif
CORE_OBJS := $(patsubst $(SRCDIR)/%.c,$(BUILD)/%.o,$(CORE_SRCS))
CORE_LIB  := $(BUILD)/plover/libplover-core.a

CORE_PKGS    := glib-2.0 gthread-2.0 libxxhash libzstd gnutls
CORE_CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
                -D_GNU_SOURCE -I$(SRCDIR)/plover/include $(shell pkg-config --cflags $(CORE_PKGS)) $(RDMA_CFLAGS)
CORE_LDLIBS  := $(shell pkg-config --libs $(CORE_PKGS)) $(RDMA_LIBS) -lpthread -lm
# The library's own sources also see its private headers, named from the top
# of plover/core ("util/fail.h", "syncvm/syncvm-int.h"); programs linked with
# the library (tests, benchmarks, QEMU's glue) get only the public ones.
CORE_PRIV_CFLAGS := -I$(SRCDIR)/plover/core
ifeq ($(ENABLE_DEBUG),yes)
CORE_CFLAGS  += -O0 -fsanitize=address,undefined
CORE_LDLIBS  += -fsanitize=address,undefined
endif

core: $(CORE_LIB)

$(CORE_LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# -MT: with CCACHE_BASEDIR, ccache rewrites paths under the source tree
# to relative ones, the default target name included, and make would never
# match it to $@; the headers stay relative, which make resolves from the
# top directory where it runs (make -C included). % spans subfolders
# (consensus/wire, net/rdma/rdma-conn).
$(BUILD)/plover/core/%.o: $(SRCDIR)/plover/core/%.c $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CORE_CFLAGS) $(CORE_PRIV_CFLAGS) -MMD -MP -MT $@ -c -o $@ $<

-include $(CORE_OBJS:.o=.d)
