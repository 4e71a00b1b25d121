/*
 * Shared libcheck runner for the unit tests.
 */
#ifndef PLOVER_TEST_HELPER_RUN_H
#define PLOVER_TEST_HELPER_RUN_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

/* Run @su with CK_NORMAL output; the exit status for main() (0: all passed). */
int plv_test_run(Suite *su);

/* A number from the environment (@dflt when unset or empty). */
uint64_t plv_test_env_u64(const char *name, uint64_t dflt);

/* PLOVER_SOAK is set (and not 0): the randomized suites run long. */
bool plv_test_soak(void);

#endif
