/*
 * Idle detector (PLOVER §5.1): the moment the guest has drained its work
 * is the cheapest moment for a syncvm — few pages are still changing and
 * the outputs it produced are waiting for it.
 *
 * A thread samples the CPU time of the vCPU threads every idle-window-us;
 * a window with less than idle-threshold-us of vCPU time means idle. The
 * leader proposes syncvm(epoch) when outputs are held and the guest is
 * idle, or when they have been held for max-sync-interval-ms whatever the
 * guest does (the output guard's size limit triggers one too, in
 * plover-net.c). On every replica it also notes when it last saw an idle
 * window: a secondary about to cut waits for one (plover-replica.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "hw/core/cpu.h"
#include "plover-state.h"

#include <pthread.h>
#include <time.h>

#define PLOVER_MAX_VCPUS 256

typedef struct PloverIdle {
    PloverState *s;
    unsigned n;
    clockid_t clocks[PLOVER_MAX_VCPUS];
} PloverIdle;

static int64_t plover_vcpu_time_ns(const PloverIdle *idle)
{
    int64_t sum = 0;

    for (unsigned i = 0; i < idle->n; i++) {
        struct timespec ts;

        if (clock_gettime(idle->clocks[i], &ts) == 0) {
            sum += ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
        }
    }
    return sum;
}

static void *plover_idle_thread(void *opaque)
{
    PloverIdle *idle = opaque;
    PloverState *s = idle->s;
    int64_t threshold_ns = (int64_t)s->cfg.idle_threshold_us * 1000;
    int64_t bound_ns = (int64_t)s->cfg.max_sync_interval_ms * SCALE_MS;
    int64_t prev = plover_vcpu_time_ns(idle);
    int64_t held_since = 0;

    while (!qatomic_read(&s->idle_stop)) {
        int64_t now_cpu, now;
        bool pending;

        g_usleep(s->cfg.idle_window_us);
        now_cpu = plover_vcpu_time_ns(idle);
        now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
        pending = qatomic_read(&s->net.outputs_bytes) > 0 ||
                  qatomic_read(&s->exec_full_sync_pending);
        if (now_cpu - prev < threshold_ns) {
            /* A secondary waiting to cut looks at this (plover-replica.c). */
            qatomic_set(&s->idle_seen_ns, now);
        }
        if (!pending || !qatomic_read(&s->exec_leads)) {
            held_since = 0;
        } else {
            if (!held_since) {
                held_since = now;
            }
            if (now_cpu - prev < threshold_ns) {
                s->idle_triggers += plover_request_syncvm(s, "idle");
            } else if (now - held_since >= bound_ns) {
                s->bound_triggers += plover_request_syncvm(s, "bound");
                held_since = now;
            }
        }
        prev = now_cpu;
    }
    g_free(idle);
    return NULL;
}

/* Called once the vCPU threads exist (machine init done). */
void plover_idle_start(PloverState *s)
{
    PloverIdle *idle = g_new0(PloverIdle, 1);
    CPUState *cpu;

    idle->s = s;
    CPU_FOREACH(cpu) {
        bool seen = false;

        /* Round-robin TCG runs every vCPU on one thread: count it once. */
        for (CPUState *c = first_cpu; c != cpu; c = CPU_NEXT(c)) {
            seen |= c->thread && cpu->thread &&
                    pthread_equal(c->thread->thread, cpu->thread->thread);
        }
        if (!seen && idle->n < PLOVER_MAX_VCPUS && cpu->thread &&
            pthread_getcpuclockid(cpu->thread->thread, &idle->clocks[idle->n]) == 0) {
            idle->n++;
        }
    }
    qemu_thread_create(&s->idle_thread, "plover-idle", plover_idle_thread,
                       idle, QEMU_THREAD_JOINABLE);
    s->idle_running = true;
}
