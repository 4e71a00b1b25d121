/*
 * Seeded simulation of the consensus engine (tests/unit/sim): many seeds,
 * each a cluster under drops, delays, reordering, duplication, partitions,
 * crashes and restarts, with the invariants checked after every step.
 *
 *   check:  PLOVER_SIM_SEEDS (default 10000) seeds
 *   soak:   PLOVER_SOAK=1 runs 100000 seeds (or PLOVER_SIM_SEEDS)
 *   replay: PLOVER_SEED=n runs that seed alone with a trace on stderr
 *   PLOVER_SIM_N: cluster size (default 3)
 */
#include <check.h>
#include <stdlib.h>
#include "sim/sim.c"
#include "helper-run.h"

#define CHUNK 500

static uint64_t n_seeds;
static uint64_t first_seed;

START_TEST(test_seeds)
{
    uint64_t lo = first_seed + (uint64_t)_i * CHUNK;
    uint64_t hi = MIN(lo + CHUNK, first_seed + n_seeds);
    GString *bad = g_string_new(NULL);
    int n_bad = 0;
    uint64_t handoffs = 0, forwarded = 0, durable = 0, doubles = 0;

    for (uint64_t seed = lo; seed < hi; seed++) {
        SimParams prm;
        SimResult res;
        sim_params_default(&prm, seed);
        prm.n = (uint32_t)plv_test_env_u64("PLOVER_SIM_N", prm.n);
        sim_run(&prm, &res);
        handoffs += res.handoffs;
        forwarded += res.forwarded;
        durable += res.durable_restarts;
        doubles += res.double_crashes;
        if (!res.ok) {
            if (n_bad++ < 5) {
                g_string_append_printf(bad, "\n  seed %" G_GUINT64_FORMAT ": %s (replay: "
                                       "PLOVER_SEED=%" G_GUINT64_FORMAT " PLOVER_SIM_N=%u "
                                       "test-paxos-sim)", seed, res.why, seed, prm.n);
            }
        }
    }
    ck_assert_msg(n_bad == 0, "%d of %" G_GUINT64_FORMAT " seeds violated an invariant:%s",
                  n_bad, hi - lo, bad->str);
    /* the seeds do exercise leadership handoffs (nodes that crash lose
     * their counts, so this is a lower bound) */
    ck_assert_msg(hi - lo < 100 || handoffs > 0, "no handoff in %" G_GUINT64_FORMAT " seeds",
                  hi - lo);
    ck_assert_msg(hi - lo < 100 || forwarded > 0, "no forwarded input in %" G_GUINT64_FORMAT
                  " seeds", hi - lo);
    /* and restarts that kept their consensus state, two nodes down at once
     * among them; the heal check then requires the group to commit again */
    ck_assert_msg(hi - lo < 100 || (durable > 0 && doubles > 0),
                  "%" G_GUINT64_FORMAT " restarts with kept state, %" G_GUINT64_FORMAT
                  " second crashes in %" G_GUINT64_FORMAT " seeds", durable, doubles, hi - lo);
    g_string_free(bad, TRUE);
}
END_TEST

/* The simulator must be able to fail: a cluster whose network never
 * heals cannot commit the marker, and that is reported. */
START_TEST(test_sim_detects_stall)
{
    SimParams prm;
    SimResult res;
    sim_params_default(&prm, 1);
    prm.heal_bound = 1;
    sim_run(&prm, &res);
    ck_assert(!res.ok);
    ck_assert(strstr(res.why, "within 1 ticks") != NULL);
}
END_TEST

static int replay(uint64_t seed)
{
    SimParams prm;
    SimResult res;

    sim_params_default(&prm, seed);
    prm.n = (uint32_t)plv_test_env_u64("PLOVER_SIM_N", prm.n);
    prm.trace = stderr;
    sim_run(&prm, &res);
    printf("seed %" G_GUINT64_FORMAT ": %s%s\n  ticks %" G_GUINT64_FORMAT " commits %"
           G_GUINT64_FORMAT " elections %" G_GUINT64_FORMAT " handoffs %" G_GUINT64_FORMAT " crashes %" G_GUINT64_FORMAT
           " snapshots %" G_GUINT64_FORMAT " non-secondary leads %" G_GUINT64_FORMAT
           " heal latency %" G_GUINT64_FORMAT "\n",
           seed, res.ok ? "ok" : "VIOLATION: ", res.ok ? "" : res.why, res.ticks, res.commits,
           res.elections, res.handoffs, res.crashes, res.snapshots, res.witness_leads, res.heal_latency);
    return res.ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(void)
{
    Suite *s = suite_create("paxos-sim");
    TCase *tc = tcase_create("seeds");
    bool soak = plv_test_soak();

    if (getenv("PLOVER_SEED")) {
        return replay(plv_test_env_u64("PLOVER_SEED", 0));
    }
    n_seeds = plv_test_env_u64("PLOVER_SIM_SEEDS", soak ? 100000 : 10000);
    first_seed = plv_test_env_u64("PLOVER_SIM_FIRST", 0);
    /* a chunk of seeds per check test: bounded time each, parallel-safe */
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_seeds, 0, (int)((n_seeds + CHUNK - 1) / CHUNK));
    tcase_add_test(tc, test_sim_detects_stall);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
