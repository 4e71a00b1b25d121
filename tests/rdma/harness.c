/*
 * Test runner for the in-guest RDMA suites (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void plv_rdma_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    _exit(1);
}

const char *plv_rdma_test_addr(void)
{
    const char *a = getenv("PLOVER_RDMA_ADDR");
    return a && *a ? a : "10.0.2.15";
}

bool plv_rdma_test_sealed(void)
{
    const char *s = getenv("PLOVER_RDMA_SEALED");
    return s && !strcmp(s, "1");
}

static bool run_one(const PlvRdmaTest *t)
{
    fflush(stdout);
    gint64 t0 = g_get_monotonic_time();
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s: fork: %s\n", t->name, g_strerror(errno));
        return false;
    }
    if (pid == 0) {
        /* The default SIGALRM action kills the child: a hang is a failure. */
        alarm(t->timeout_s ? t->timeout_s : 60);
        t->fn();
        fflush(stdout);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        /* EINTR */
    }
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("PASS %s (%.1f s)\n", t->name, secs);
        return true;
    }
    if (WIFSIGNALED(st)) {
        printf("FAIL %s: %s after %.1f s\n", t->name,
               WTERMSIG(st) == SIGALRM ? "timed out" : strsignal(WTERMSIG(st)),
               secs);
    } else {
        printf("FAIL %s (%.1f s)\n", t->name, secs);
    }
    return false;
}

int plv_rdma_run_tests(const char *suite, const PlvRdmaTest *tests, size_t n,
                       const char *filter)
{
    unsigned pass = 0, fail = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++) {
        if (filter && !strstr(tests[i].name, filter)) {
            continue;
        }
        if (run_one(&tests[i])) {
            pass++;
        } else {
            fail++;
        }
    }
    printf("%s: %u passed, %u failed\n", suite, pass, fail);
    return fail ? 1 : 0;
}
