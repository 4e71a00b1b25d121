/*
 * Shared libcheck runner for the unit tests.
 */
#ifndef PLOVER_TEST_HELPER_RUN_H
#define PLOVER_TEST_HELPER_RUN_H

#include <check.h>

/* Run @su with CK_NORMAL output; the exit status for main() (0: all passed). */
int plv_test_run(Suite *su);

#endif
