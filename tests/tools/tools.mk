# Host-side tools for tests, the demo and benchmarks (tests/tools).
#
#   make tools   ->  $(BUILD)/tools/kvctl     (client of the guest's kvd)
#                    $(BUILD)/tools/netdelay  (NFQUEUE delay and loss for tests)

TOOLS_OUT    := $(BUILD)/tools
TOOLS_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -pthread

.PHONY: tools
tools: $(TOOLS_OUT)/kvctl $(TOOLS_OUT)/netdelay

$(TOOLS_OUT)/kvctl: $(SRCDIR)/tests/tools/kvctl.c
	@mkdir -p $(@D)
	$(or $(HOST_CC),gcc) $(TOOLS_CFLAGS) -o $@ $< -lm

$(TOOLS_OUT)/netdelay: $(SRCDIR)/tests/tools/netdelay.c
	@mkdir -p $(@D)
	$(or $(HOST_CC),gcc) $(TOOLS_CFLAGS) -o $@ $< -lnetfilter_queue -lnfnetlink
