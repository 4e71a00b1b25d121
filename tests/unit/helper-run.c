/*
 * Shared libcheck runner for the unit tests.
 */
#include <stdlib.h>
#include <string.h>
#include "helper-run.h"

int plv_test_run(Suite *su)
{
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

uint64_t plv_test_env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);

    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

bool plv_test_soak(void)
{
    const char *v = getenv("PLOVER_SOAK");

    return v && *v && strcmp(v, "0") != 0;
}
