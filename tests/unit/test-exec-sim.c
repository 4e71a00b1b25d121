/*
 * Seeded simulation of the replica's rules (tests/unit/sim with .exec):
 * every node runs PlvPaxos and PlvExec on a model VM whose replicas
 * diverge on purpose, under drops, delays, partitions, crashes, restarts,
 * leadership migrations and failing syncvms; what clients see is checked
 * after every step (sim/sim-exec.c), and the group must serve again
 * after the heal.
 *
 *   check:  PLOVER_SIM_SEEDS (default 10000) seeds, one fault at a time,
 *           and 2000 seeds (from 100000) with two faults at once
 *   soak:   PLOVER_SOAK=1 runs 100000 seeds (or PLOVER_SIM_SEEDS), and
 *           20000 with two faults
 *   replay: PLOVER_SEED=n runs that seed alone with a trace on stderr
 *           (PLOVER_SIM_BROKEN=k with broken variant k; PLOVER_SIM_DOUBLE=1
 *           with two faults at once; PLOVER_SIM_ACTIONS=1 traces every
 *           executor action)
 */
#include <check.h>
#include <stdlib.h>
#include "sim/sim.c"
#include "helper-run.h"

#define CHUNK 500

static uint64_t n_seeds;
static uint64_t first_seed;

static bool double_faults;

static void exec_params(SimParams *prm, uint64_t seed, int broken)
{
    sim_params_default(prm, seed);
    prm->exec = true;
    prm->broken = broken;
    prm->double_faults = double_faults;
    /* elections, a pull or a full syncvm, and a failed attempt or two */
    prm->heal_bound = 400;
}

/* Seeds [lo, hi): no invariant violated, and they exercise the checks. */
static SimResult run_seeds(uint64_t lo, uint64_t hi)
{
    GString *bad = g_string_new(NULL);
    GString *lost = g_string_new(NULL);
    int n_bad = 0, n_lost = 0;
    SimResult sum = { 0 };

    for (uint64_t seed = lo; seed < hi; seed++) {
        SimParams prm;
        SimResult res;

        exec_params(&prm, seed, SIM_BROKEN_NONE);
        sim_run(&prm, &res);
        sum.released += res.released;
        sum.syncvms += res.syncvms;
        sum.sync_failures += res.sync_failures;
        sum.migrations += res.migrations;
        sum.exec_handoffs += res.exec_handoffs;
        sum.crashes += res.crashes;
        sum.boots += res.boots;
        sum.kept += res.kept;
        sum.abandoned += res.abandoned;
        sum.durable_restarts += res.durable_restarts;
        sum.double_crashes += res.double_crashes;
        if (!res.ok && n_bad++ < 5) {
            g_string_append_printf(bad, "\n  seed %" G_GUINT64_FORMAT ": %s (replay: "
                                   "PLOVER_SEED=%" G_GUINT64_FORMAT "%s test-exec-sim)",
                                   seed, res.why, seed,
                                   double_faults ? " PLOVER_SIM_DOUBLE=1" : "");
        }
        if (res.ok && res.vm_lost && n_lost++ < 2) {
            g_string_append_printf(lost, "\n  seed %" G_GUINT64_FORMAT ": %s", seed,
                                   res.vm_lost_why);
        }
    }
    /* Rare with one fault at a time (test-exec has the scenario); the
     * broken variant keep-any shows that only such a copy may be kept. */
    if (sum.kept) {
        fprintf(stderr, "seeds %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT ": %" G_GUINT64_FORMAT
                " lone leaders kept the VM (%" G_GUINT64_FORMAT " syncvms of deposed "
                "leaders given up; %" G_GUINT64_FORMAT " second crashes)\n", lo, hi - 1,
                sum.kept, sum.abandoned, sum.double_crashes);
    }
    /* A known limit of the rules, not hidden: counted and shown (docs/exec.md). */
    if (n_lost) {
        fprintf(stderr, "seeds %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT ": the VM was lost "
                "in %d (every check held):%s\n", lo, hi - 1, n_lost, lost->str);
    }
    g_string_free(lost, TRUE);
    ck_assert_msg(n_bad == 0, "%d of %" G_GUINT64_FORMAT " seeds violated an invariant:%s",
                  n_bad, hi - lo, bad->str);
    /* the seeds do exercise what the checks are about */
    if (hi - lo >= 100) {
        ck_assert_msg(sum.released > 0, "no output released");
        ck_assert_msg(sum.syncvms > 0 && sum.sync_failures > 0,
                      "syncvms %" G_GUINT64_FORMAT " failed %" G_GUINT64_FORMAT,
                      sum.syncvms, sum.sync_failures);
        ck_assert_msg(sum.crashes > 0, "no crash");
        /* a group that lost its VM before it was protected boots it again */
        ck_assert_msg(sum.boots > 0, "no VM booted again");
        ck_assert_msg(sum.exec_handoffs > 0, "no leadership migration completed (%"
                      G_GUINT64_FORMAT " started)", sum.migrations);
    }
    g_string_free(bad, TRUE);
    return sum;
}

START_TEST(test_seeds)
{
    uint64_t lo = first_seed + (uint64_t)_i * CHUNK;

    run_seeds(lo, MIN(lo + CHUNK, first_seed + n_seeds));
}
END_TEST

/*
 * Two faults at once: a partition also while a node is down or the VM
 * unprotected, or a second replica crashing (its consensus state kept)
 * while one is down, so that two replicas are out and a leader is left
 * alone. The VM may then be lost (counted), but no invariant may break, a
 * lone leader with the only copy keeps it, and once the others are back
 * the group serves again.
 */
START_TEST(test_double_faults)
{
    SimResult sum;

    double_faults = true;
    sum = run_seeds(100000 + (uint64_t)_i * CHUNK, 100000 + (uint64_t)(_i + 1) * CHUNK);
    ck_assert_msg(sum.kept > 0, "no lone leader kept the VM");
    ck_assert_msg(sum.abandoned > 0, "no deposed leader's syncvm was given up");
    ck_assert_msg(sum.double_crashes > 0 && sum.durable_restarts > 0,
                  "%" G_GUINT64_FORMAT " second crashes, %" G_GUINT64_FORMAT
                  " restarts with kept state", sum.double_crashes, sum.durable_restarts);
}
END_TEST

/*
 * Each deliberately broken executor is caught within a bounded number of
 * seeds: the checks can fail, and do on the bugs they are for.
 */
static const char *const broken_names[SIM_BROKEN__MAX] = {
    [SIM_BROKEN_RELEASE_AT_CUT] = "release-at-cut",
    [SIM_BROKEN_RELEASE_ON_SECONDARY] = "release-on-secondary",
    [SIM_BROKEN_KEEP_VM] = "keep-vm",
    [SIM_BROKEN_SECOND_KEEPS_VM] = "second-keeps-vm",
    [SIM_BROKEN_BOOT_ANY] = "boot-any",
    [SIM_BROKEN_KEEP_ANY] = "keep-any",
    [SIM_BROKEN_KEEP_UNCHECKED] = "keep-unchecked",
};

START_TEST(test_broken_caught)
{
    int broken = _i;
    uint64_t seed;
    SimResult res = { 0 };

    for (seed = 0; seed < 10000; seed++) {
        SimParams prm;

        exec_params(&prm, seed, broken);
        sim_run(&prm, &res);
        if (!res.ok) {
            break;
        }
    }
    ck_assert_msg(!res.ok, "broken variant %s not caught in %" G_GUINT64_FORMAT " seeds",
                  broken_names[broken], seed);
    fprintf(stderr, "broken variant %s: caught at seed %" G_GUINT64_FORMAT ": %s\n",
            broken_names[broken], seed, res.why);
}
END_TEST

static int replay(uint64_t seed)
{
    SimParams prm;
    SimResult res;

    exec_params(&prm, seed, (int)plv_test_env_u64("PLOVER_SIM_BROKEN", SIM_BROKEN_NONE));
    prm.trace = stderr;
    sim_run(&prm, &res);
    printf("seed %" G_GUINT64_FORMAT ": %s%s\n  ticks %" G_GUINT64_FORMAT " commits %"
           G_GUINT64_FORMAT " crashes %" G_GUINT64_FORMAT " released %" G_GUINT64_FORMAT
           " syncvm ends ok %" G_GUINT64_FORMAT " failed %" G_GUINT64_FORMAT
           " migrations %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
           " heal latency %" G_GUINT64_FORMAT " (release %" G_GUINT64_FORMAT ") kept %"
           G_GUINT64_FORMAT "%s%s\n",
           seed, res.ok ? "ok" : "VIOLATION: ", res.ok ? "" : res.why, res.ticks,
           res.commits, res.crashes, res.released, res.syncvms, res.sync_failures,
           res.exec_handoffs, res.migrations, res.heal_latency, res.release_latency,
           res.kept, res.vm_lost ? "\n  the VM was lost: " : "", res.vm_lost ? res.vm_lost_why : "");
    return res.ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(void)
{
    Suite *s = suite_create("exec-sim");
    TCase *tc = tcase_create("seeds");
    TCase *tb = tcase_create("broken");
    TCase *td = tcase_create("double");
    bool soak = plv_test_soak();

    if (getenv("PLOVER_SEED")) {
        double_faults = plv_test_env_u64("PLOVER_SIM_DOUBLE", 0);
        return replay(plv_test_env_u64("PLOVER_SEED", 0));
    }
    n_seeds = plv_test_env_u64("PLOVER_SIM_SEEDS", soak ? 100000 : 10000);
    first_seed = plv_test_env_u64("PLOVER_SIM_FIRST", 0);
    double_faults = plv_test_env_u64("PLOVER_SIM_DOUBLE", 0);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_seeds, 0, (int)((n_seeds + CHUNK - 1) / CHUNK));
    suite_add_tcase(s, tc);
    tcase_set_timeout(tb, 300);
    tcase_add_loop_test(tb, test_broken_caught, SIM_BROKEN_NONE + 1, SIM_BROKEN__MAX);
    suite_add_tcase(s, tb);
    tcase_set_timeout(td, 300);
    tcase_add_loop_test(td, test_double_faults, 0, soak ? 40 : 4);
    suite_add_tcase(s, td);
    return plv_test_run(s);
}
