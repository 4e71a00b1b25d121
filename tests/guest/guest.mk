# Test guest (tests/guest): filled in by the guest build.
GUEST_OUT := $(BUILD)/guest
