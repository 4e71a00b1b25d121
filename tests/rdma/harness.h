/*
 * A small test runner for the RDMA suites that run inside the test guest:
 * every test runs in a child process with an alarm, so a crash or a hang is
 * that test's failure and the suite always ends with its summary line
 * ("<suite>: N passed, N failed").
 */
#ifndef PLOVER_RDMA_HARNESS_H
#define PLOVER_RDMA_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <glib.h>

typedef struct PlvRdmaTest {
    const char *name;
    void (*fn)(void);
    unsigned timeout_s;
} PlvRdmaTest;

/* Runs @tests (all, or those whose name contains @filter); 0 if all passed. */
int plv_rdma_run_tests(const char *suite, const PlvRdmaTest *tests, size_t n,
                       const char *filter);

/* Fails the current test (exits its process). */
void plv_rdma_fail(const char *file, int line, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4) G_GNUC_NORETURN;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            plv_rdma_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
        }                                                                 \
    } while (0)

#define CHECKF(cond, ...)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            plv_rdma_fail(__FILE__, __LINE__, __VA_ARGS__);               \
        }                                                                 \
    } while (0)

/* The guest's address on the rxe netdev (PLOVER_RDMA_ADDR, 10.0.2.15). */
const char *plv_rdma_test_addr(void);
/* PLOVER_RDMA_SEALED=1: transports and links seal their ring records
 * (AES-256-GCM): init.sh runs the suite both ways. */
bool plv_rdma_test_sealed(void);

#endif
