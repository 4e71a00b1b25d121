/*
 * Consensus engine, targeted scenarios on a tiny in-process network that
 * the test drives by hand (deliver all, cut a node, crash, restart).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plover/paxos.h"
#include "helper-run.h"

#define N 3

typedef struct {
    uint32_t from;
    PlvMsg msg;
} QMsg;

typedef struct {
    PlvPaxosConfig cfg;
    PlvPaxos *px[N];
    uint64_t inc[N];
    bool down[N];
    bool cut[N];                /* node isolated from everyone */
    GQueue q;                   /* QMsg* */
    PlvReady rd;
    GPtrArray *delivered[N];    /* PlvEntry* committed, per node */
    GArray *events[N];          /* PlvEvent, per node */
    uint64_t snap_needed[N];
    PlvDurable disk[N];         /* what each node kept, as a driver would */
} Net;

static void net_collect(Net *t, uint32_t i)
{
    /* on disk before anything leaves */
    if (t->rd.stable.dirty) {
        plv_durable_apply(&t->disk[i], &t->rd.stable);
    }
    for (guint k = 0; k < t->rd.msgs->len; k++) {
        PlvOutMsg *om = g_ptr_array_index(t->rd.msgs, k);
        QMsg *q = g_new0(QMsg, 1);
        q->from = i;
        plv_msg_copy(&q->msg, &om->msg);
        g_queue_push_tail(&t->q, q);
    }
    for (guint k = 0; k < t->rd.committed->len; k++) {
        PlvEntry *e = g_new0(PlvEntry, 1);
        plv_entry_copy(e, &g_array_index(t->rd.committed, PlvEntry, k));
        g_ptr_array_add(t->delivered[i], e);
    }
    for (guint k = 0; k < t->rd.events->len; k++) {
        PlvEvent *ev = &g_array_index(t->rd.events, PlvEvent, k);
        g_array_append_val(t->events[i], *ev);
        if (ev->kind == PLV_EV_NEEDS_SNAPSHOT) {
            t->snap_needed[i] = ev->snap.index;
        }
    }
    plv_ready_clear(&t->rd);
}

static void free_entry(gpointer p)
{
    plv_entry_clear(p);
    g_free(p);
}

static void net_start(Net *t, uint32_t i)
{
    PlvPaxosConfig c = t->cfg;
    c.self = i;
    c.incarnation = t->inc[i];
    c.seed = 100 + i;
    t->px[i] = plv_paxos_new(&c, NULL);
    ck_assert_ptr_nonnull(t->px[i]);
    t->down[i] = false;
    if (t->delivered[i]) {
        g_ptr_array_unref(t->delivered[i]);
        g_array_free(t->events[i], TRUE);
    }
    t->delivered[i] = g_ptr_array_new_with_free_func(free_entry);
    t->events[i] = g_array_new(FALSE, FALSE, sizeof(PlvEvent));
    t->snap_needed[i] = 0;
}

static void net_init(Net *t)
{
    memset(t, 0, sizeof(*t));
    plv_paxos_config_default(&t->cfg);
    t->cfg.n = N;
    t->cfg.heartbeat_ticks = 2;
    t->cfg.suspect_ticks = 8;
    t->cfg.election_ticks = 6;
    g_queue_init(&t->q);
    plv_ready_init(&t->rd);
    for (uint32_t i = 0; i < N; i++) {
        plv_durable_init(&t->disk[i]);
        t->disk[i].voter = true;        /* a new group's nodes vote */
        t->inc[i] = PLV_INC_INITIAL;
        net_start(t, i);
    }
}

static void net_crash(Net *t, uint32_t i)
{
    plv_paxos_free(t->px[i]);
    t->px[i] = NULL;
    t->down[i] = true;
}

static void net_restart(Net *t, uint32_t i)
{
    t->inc[i]++;
    net_start(t, i);
    plv_durable_clear(&t->disk[i]);     /* it kept nothing */
}

/* A restart that kept its consensus state (plv_paxos_restore). */
static void net_restart_durable(Net *t, uint32_t i)
{
    t->inc[i]++;
    net_start(t, i);
    ck_assert_int_eq(plv_paxos_restore(t->px[i], &t->disk[i], &t->rd), 0);
    net_collect(t, i);
}

/* Fresh nodes built from t->cfg (after a test changed it). */
static void net_recreate(Net *t)
{
    for (uint32_t i = 0; i < N; i++) {
        net_crash(t, i);
        net_start(t, i);
    }
}

static void net_free(Net *t)
{
    QMsg *q;
    while ((q = g_queue_pop_head(&t->q))) {
        plv_msg_clear(&q->msg);
        g_free(q);
    }
    for (uint32_t i = 0; i < N; i++) {
        plv_paxos_free(t->px[i]);
        g_ptr_array_unref(t->delivered[i]);
        g_array_free(t->events[i], TRUE);
        plv_durable_destroy(&t->disk[i]);
    }
    plv_ready_destroy(&t->rd);
}

static void net_flush(Net *t)
{
    QMsg *q;
    while ((q = g_queue_pop_head(&t->q))) {
        uint32_t to = q->msg.hdr.to;
        if (!t->down[to] && !t->cut[to] && !t->cut[q->from]) {
            plv_paxos_step(t->px[to], &q->msg, &t->rd);
            net_collect(t, to);
        }
        plv_msg_clear(&q->msg);
        g_free(q);
    }
}

static void net_run(Net *t, int ticks)
{
    for (int k = 0; k < ticks; k++) {
        for (uint32_t i = 0; i < N; i++) {
            if (!t->down[i]) {
                plv_paxos_tick(t->px[i], &t->rd);
                net_collect(t, i);
            }
        }
        net_flush(t);
        for (uint32_t i = 0; i < N; i++) {
            if (!t->down[i] && t->snap_needed[i] && plv_paxos_snapshot_pending(t->px[i])) {
                plv_paxos_install_snapshot(t->px[i], t->snap_needed[i], &t->rd);
                net_collect(t, i);
            }
        }
    }
}

static int count_role(Net *t, PlvRole r)
{
    int c = 0;
    for (uint32_t i = 0; i < N; i++) {
        c += !t->down[i] && plv_paxos_role(t->px[i]) == r;
    }
    return c;
}

static uint32_t find_role(Net *t, PlvRole r)
{
    for (uint32_t i = 0; i < N; i++) {
        if (!t->down[i] && plv_paxos_role(t->px[i]) == r) {
            return i;
        }
    }
    return PLV_NODE_NONE;
}

static bool saw_role(Net *t, uint32_t i, PlvRole r)
{
    for (guint k = 0; k < t->events[i]->len; k++) {
        PlvEvent *ev = &g_array_index(t->events[i], PlvEvent, k);
        if (ev->kind == PLV_EV_ROLE && ev->role == r) {
            return true;
        }
    }
    return false;
}

static bool saw_event(Net *t, uint32_t i, PlvEventKind kind)
{
    for (guint k = 0; k < t->events[i]->len; k++) {
        if (g_array_index(t->events[i], PlvEvent, k).kind == kind) {
            return true;
        }
    }
    return false;
}

/* Up and running with a leader, a secondary and a witness. */
static void net_steady(Net *t, uint32_t *l, uint32_t *s, uint32_t *w)
{
    net_run(t, 60);
    ck_assert_int_eq(count_role(t, PLV_ROLE_LEADER), 1);
    ck_assert_int_eq(count_role(t, PLV_ROLE_SECONDARY), 1);
    ck_assert_int_eq(count_role(t, PLV_ROLE_WITNESS), 1);
    *l = find_role(t, PLV_ROLE_LEADER);
    *s = find_role(t, PLV_ROLE_SECONDARY);
    *w = find_role(t, PLV_ROLE_WITNESS);
}

static void submit(Net *t, uint32_t l, const char *pkt)
{
    ck_assert_int_eq(plv_paxos_submit_input(t->px[l], pkt, strlen(pkt), &t->rd), 0);
    net_collect(t, l);
}

/* All packets of all input entries node i delivered, joined by ','. */
static char *delivered_packets(Net *t, uint32_t i, int *n_entries)
{
    GString *s = g_string_new(NULL);
    *n_entries = 0;
    for (guint k = 0; k < t->delivered[i]->len; k++) {
        PlvEntry *e = g_ptr_array_index(t->delivered[i], k);
        size_t n;
        const uint8_t *p = plv_entry_payload(e, &n);
        PlvBatchIter it;
        const uint8_t *pkt;
        uint32_t len;
        if (e->op != PLV_OP_INPUT) {
            continue;
        }
        (*n_entries)++;
        plv_batch_iter_init(&it, p, n);
        while (plv_batch_next(&it, &pkt, &len)) {
            g_string_append_printf(s, "%s%.*s", s->len ? "," : "", (int)len, pkt);
        }
    }
    return g_string_free(s, FALSE);
}

START_TEST(test_bootstrap_roles)
{
    Net t;
    uint32_t l, s, w;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(plv_paxos_leader(t.px[i]), l);
        ck_assert_uint_eq(plv_paxos_secondary(t.px[i]), s);
        ck_assert_uint_eq(plv_paxos_vid(t.px[i]), plv_paxos_vid(t.px[l]));
        ck_assert_uint_eq(plv_paxos_commit_index(t.px[i]), plv_paxos_commit_index(t.px[l]));
        ck_assert(saw_event(&t, i, PLV_EV_VIEW));
    }
    ck_assert_uint_eq(plv_vid_leader(plv_paxos_vid(t.px[l])), l);
    net_free(&t);
}
END_TEST

START_TEST(test_batching_one_in_flight)
{
    Net t;
    uint32_t l, s, w;
    char *got;
    int n_entries;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    /* the first packet goes out alone; the other nine arrive while it is
     * in flight and form the next entry */
    for (int k = 0; k < 10; k++) {
        char pkt[8];
        snprintf(pkt, sizeof(pkt), "k%d", k);
        submit(&t, l, pkt);
    }
    net_run(&t, 5);
    for (uint32_t i = 0; i < N; i++) {
        got = delivered_packets(&t, i, &n_entries);
        ck_assert_str_eq(got, "k0,k1,k2,k3,k4,k5,k6,k7,k8,k9");
        ck_assert_int_eq(n_entries, 2);
        g_free(got);
    }
    net_free(&t);
}
END_TEST

START_TEST(test_batch_size_bound)
{
    Net t;
    uint32_t l, s, w;
    char pkt[40];
    char *got;
    int n_entries;

    net_init(&t);
    t.cfg.max_batch_bytes = 100;
    net_recreate(&t);
    net_steady(&t, &l, &s, &w);
    memset(pkt, 'x', sizeof(pkt));
    for (int k = 0; k < 7; k++) {
        ck_assert_int_eq(plv_paxos_submit_input(t.px[l], pkt, 30, &t.rd), 0);
        net_collect(&t, l);
    }
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], pkt, 93, &t.rd), -EINVAL);
    net_run(&t, 10);
    got = delivered_packets(&t, s, &n_entries);
    /* 1 alone, then 2 + 2 + 2 (4 + 2 * 34 = 72 <= 100 < 106) */
    ck_assert_int_eq(n_entries, 4);
    for (guint k = 0; k < t.delivered[s]->len; k++) {
        ck_assert_uint_le(plv_entry_payload_len(g_ptr_array_index(t.delivered[s], k)), 100);
    }
    g_free(got);
    net_free(&t);
}
END_TEST

START_TEST(test_submit_errors)
{
    Net t;
    uint32_t l, s, w;
    char big[1000];

    net_init(&t);
    t.cfg.max_queue_bytes = 2000;
    net_recreate(&t);
    net_steady(&t, &l, &s, &w);
    memset(big, 'y', sizeof(big));
    ck_assert_int_eq(plv_paxos_submit_input(t.px[s], "a", 1, &t.rd), -EPERM);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[w], "a", 1, &t.rd), -EPERM);
    ck_assert_int_eq(plv_paxos_propose_syncvm(t.px[w], 1, &t.rd), -EPERM);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], "a", 0, &t.rd), -EINVAL);
    /* the first goes in flight, the queue holds two, the third is refused */
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], big, sizeof(big), &t.rd), 0);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], big, sizeof(big), &t.rd), 0);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], big, sizeof(big), &t.rd), 0);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], big, sizeof(big), &t.rd), -ENOBUFS);
    ck_assert_uint_eq(plv_paxos_queued_bytes(t.px[l]), 2000);
    net_collect(&t, l);
    net_free(&t);
}
END_TEST

START_TEST(test_leader_fails_secondary_takes_over)
{
    Net t;
    uint32_t l, s, w;
    uint64_t before;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    submit(&t, l, "before");
    net_run(&t, 3);
    before = plv_paxos_commit_index(t.px[s]);
    g_array_set_size(t.events[w], 0);
    net_crash(&t, l);
    net_run(&t, 60);
    /* the secondary leads, the witness never even ran, and the new leader
     * made the witness its secondary */
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    ck_assert(!saw_role(&t, w, PLV_ROLE_CANDIDATE));
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_SECONDARY);
    ck_assert_uint_eq(plv_paxos_secondary(t.px[s]), w);
    ck_assert_uint_gt(plv_paxos_commit_index(t.px[w]), before);
    submit(&t, s, "after");
    net_run(&t, 3);
    ck_assert_uint_eq(plv_paxos_commit_index(t.px[w]), plv_paxos_commit_index(t.px[s]));
    net_free(&t);
}
END_TEST

START_TEST(test_secondary_fails_witness_elevated)
{
    Net t;
    uint32_t l, s, w;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    net_crash(&t, s);
    net_run(&t, 40);
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_SECONDARY);
    ck_assert(saw_event(&t, l, PLV_EV_SUSPECT));
    net_free(&t);
}
END_TEST

START_TEST(test_witness_leads_without_fit_secondary)
{
    Net t;
    uint32_t l, s, w;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    /* the secondary restarts (it lost the VM: not fit), then the leader dies */
    net_crash(&t, s);
    net_restart(&t, s);
    net_run(&t, 1);
    net_crash(&t, l);
    net_run(&t, 80);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_LEADER);
    ck_assert(plv_paxos_admitted(t.px[s]));
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_SECONDARY);
    net_free(&t);
}
END_TEST

START_TEST(test_n_err_makes_secondary_suspect)
{
    Net t;
    uint32_t l, s, w;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    for (uint32_t k = 0; k < t.cfg.n_err_threshold - 1; k++) {
        plv_paxos_add_err(t.px[l], s);
    }
    net_run(&t, 10);
    ck_assert_uint_eq(plv_paxos_secondary(t.px[l]), s);
    plv_paxos_add_err(t.px[l], s);
    ck_assert_uint_eq(plv_paxos_n_err(t.px[l], s), t.cfg.n_err_threshold);
    net_run(&t, 10);
    ck_assert_uint_eq(plv_paxos_secondary(t.px[l]), w);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_SECONDARY);
    ck_assert(saw_event(&t, l, PLV_EV_SUSPECT));
    plv_paxos_reset_err(t.px[l], s);
    ck_assert_uint_eq(plv_paxos_n_err(t.px[l], s), 0);
    net_free(&t);
}
END_TEST

START_TEST(test_restart_learns_before_voting)
{
    Net t;
    uint32_t l, s, w;
    PlvMsg prep;
    uint64_t vid;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    submit(&t, l, "x");
    net_run(&t, 3);
    net_crash(&t, w);
    net_restart(&t, w);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_RECOVERING);
    ck_assert(!plv_paxos_admitted(t.px[w]));
    /* a recovering node promises nothing, whatever the view */
    plv_msg_init(&prep, PLV_MSG_PREPARE);
    prep.hdr = (PlvMsgHdr){ .from = s, .to = w, .inc = 1, .flags = PLV_HDR_ADMITTED };
    prep.vid = plv_vid_make(1000, s);
    plv_paxos_step(t.px[w], &prep, &t.rd);
    ck_assert_uint_eq(t.rd.msgs->len, 0);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), 0);
    plv_ready_clear(&t.rd);
    net_run(&t, 20);
    /* admitted by a config entry, with the log learned and a promise no
     * lower than the view that admitted it */
    ck_assert(plv_paxos_admitted(t.px[w]));
    ck_assert(saw_event(&t, w, PLV_EV_ADMITTED));
    ck_assert_uint_eq(plv_paxos_member_inc(t.px[l], w), 2);
    ck_assert_uint_eq(plv_paxos_commit_index(t.px[w]), plv_paxos_commit_index(t.px[l]));
    vid = plv_paxos_vid(t.px[l]);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), vid);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_WITNESS);
    net_free(&t);
}
END_TEST

/*
 * Two replicas lost at once and restarted: without their consensus state
 * they wait for an admission that needs a majority of voters, and the one
 * left is not one; with it they vote at once, and the group commits
 * again with nothing committed lost.
 */
static void two_restarted(bool durable)
{
    Net t;
    uint32_t l, s, w;
    int n;
    g_autofree char *before = NULL, *after = NULL;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    submit(&t, l, "a");
    net_run(&t, 4);
    before = delivered_packets(&t, l, &n);
    ck_assert_str_eq(before, "a");
    net_crash(&t, s);
    net_crash(&t, w);
    net_run(&t, 20);
    if (durable) {
        net_restart_durable(&t, s);
        net_restart_durable(&t, w);
        /* they vote, but for the executor they are restarted replicas
         * until the log admits their new incarnations */
        ck_assert(plv_paxos_voter(t.px[s]) && !plv_paxos_admitted(t.px[s]));
        ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_RECOVERING);
    } else {
        net_restart(&t, s);
        net_restart(&t, w);
    }
    net_run(&t, 80);
    if (!durable) {
        /* the limit of memory-only state: nobody can be admitted */
        ck_assert(!plv_paxos_admitted(t.px[s]) && !plv_paxos_admitted(t.px[w]));
        ck_assert_int_eq(count_role(&t, PLV_ROLE_LEADER), 0);
        net_free(&t);
        return;
    }
    ck_assert(plv_paxos_admitted(t.px[s]) && plv_paxos_admitted(t.px[w]));
    ck_assert_int_eq(count_role(&t, PLV_ROLE_LEADER), 1);
    l = find_role(&t, PLV_ROLE_LEADER);
    ck_assert_uint_eq(plv_paxos_member_inc(t.px[l], s), 2);
    ck_assert_uint_eq(plv_paxos_member_inc(t.px[l], w), 2);
    submit(&t, l, "b");
    net_run(&t, 10);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(plv_paxos_commit_index(t.px[i]), plv_paxos_commit_index(t.px[l]));
    }
    after = delivered_packets(&t, l, &n);
    ck_assert_msg(g_str_has_prefix(after, "a") && g_str_has_suffix(after, "b"), "%s", after);
    net_free(&t);
}

START_TEST(test_two_restarted_durable)
{
    two_restarted(true);
}
END_TEST

START_TEST(test_two_restarted_amnesiac)
{
    two_restarted(false);
}
END_TEST

/* A node restored from its durable state keeps its promise: it refuses a
 * view it promised not to accept before its restart. */
START_TEST(test_restored_promise_binds)
{
    Net t;
    uint32_t l, s, w;
    uint64_t vid;
    PlvMsg prep;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    vid = plv_paxos_vid(t.px[w]);
    ck_assert_uint_eq(t.disk[w].promised, vid);
    net_crash(&t, w);
    net_restart_durable(&t, w);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), vid);
    ck_assert_uint_eq(plv_paxos_promised_inc(t.px[w]), plv_paxos_incarnation(t.px[l]));
    /* the same view again, from its leader's own id: refused */
    plv_msg_init(&prep, PLV_MSG_PREPARE);
    prep.hdr = (PlvMsgHdr){ .from = l, .to = w, .inc = 1, .flags = PLV_HDR_ADMITTED };
    prep.vid = vid;
    plv_paxos_step(t.px[w], &prep, &t.rd);
    ck_assert_uint_eq(t.rd.msgs->len, 1);
    ck_assert(!((PlvOutMsg *)g_ptr_array_index(t.rd.msgs, 0))->msg.ok);
    ck_assert(((PlvOutMsg *)g_ptr_array_index(t.rd.msgs, 0))->msg.hdr.flags & PLV_HDR_VOTER);
    plv_ready_clear(&t.rd);
    /* a newer view from the secondary: refused too, since it has not yet
     * heard the group for a suspicion period (the leader may be at work) */
    prep.hdr.from = s;
    prep.vid = plv_vid_make(plv_vid_round(vid) + 5, s);
    plv_paxos_step(t.px[w], &prep, &t.rd);
    ck_assert_uint_eq(t.rd.msgs->len, 1);
    ck_assert(!((PlvOutMsg *)g_ptr_array_index(t.rd.msgs, 0))->msg.ok);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), vid);
    plv_ready_clear(&t.rd);
    /* its log came back too: it reports what it accepted */
    ck_assert_uint_eq(plv_paxos_last_index(t.px[w]), plv_paxos_last_index(t.px[l]));
    /* and the log admits its new incarnation */
    net_run(&t, 30);
    ck_assert(plv_paxos_admitted(t.px[w]));
    ck_assert_int_eq(count_role(&t, PLV_ROLE_LEADER), 1);
    net_free(&t);
}
END_TEST

START_TEST(test_restart_of_phase1_voter_needs_new_view)
{
    Net t;
    uint32_t l, q;
    uint64_t vid;

    net_init(&t);
    net_run(&t, 60);
    l = find_role(&t, PLV_ROLE_LEADER);
    vid = plv_paxos_vid(t.px[l]);
    /* this network delivers in order, so the leader's phase 1 completed
     * with the promise of the lowest-numbered other node */
    q = l == 0 ? 1 : 0;
    net_crash(&t, q);
    net_restart(&t, q);
    net_run(&t, 40);
    /* admitted, but only from a newer view of the same leader whose
     * phase 1 did not count it */
    ck_assert(plv_paxos_admitted(t.px[q]));
    ck_assert_uint_eq(plv_paxos_member_inc(t.px[l], q), 2);
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    ck_assert(saw_role(&t, l, PLV_ROLE_CANDIDATE));
    ck_assert_uint_gt(plv_paxos_vid(t.px[l]), vid);
    ck_assert_uint_eq(plv_vid_leader(plv_paxos_vid(t.px[l])), l);
    net_free(&t);
}
END_TEST

/* An acceptor refuses an accept for the view it promised when it comes
 * from another incarnation of that view's leader. */
START_TEST(test_accept_from_other_incarnation_refused)
{
    Net t;
    uint32_t l, s, w;
    PlvMsg m;
    PlvEntry e = { .op = PLV_OP_NOOP };
    PlvOutMsg *om;
    uint64_t last;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    last = plv_paxos_last_index(t.px[w]);
    plv_msg_init(&m, PLV_MSG_ACCEPT);
    m.hdr = (PlvMsgHdr){ .from = l, .to = w, .inc = 2, .vid = plv_paxos_vid(t.px[l]),
                         .flags = PLV_HDR_ADMITTED | PLV_HDR_LEADER };
    m.vid = plv_paxos_vid(t.px[l]);
    e.index = last + 1;
    e.vid = m.vid;
    plv_msg_add_entry(&m, &e);
    plv_paxos_step(t.px[w], &m, &t.rd);
    plv_msg_clear(&m);
    ck_assert_uint_eq(t.rd.msgs->len, 1);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert_int_eq(om->msg.type, PLV_MSG_ACCEPTED);
    ck_assert(!om->msg.ok);
    ck_assert_uint_eq(plv_paxos_last_index(t.px[w]), last);
    plv_ready_clear(&t.rd);
    net_free(&t);
}
END_TEST

/*
 * Node 0 of a 5-node group, alone, becomes a candidate: its pre-vote goes
 * out, nothing changes until a majority would promise (nodes 1 and 2 say
 * so), then phase 1 starts for the view it asked about.
 */
static void stand_for_election(PlvPaxos *p, PlvReady *rd)
{
    uint64_t probe = 0, v0 = plv_paxos_vid(p);
    PlvMsg m;

    for (int k = 0; k < 100 && !probe; k++) {
        plv_paxos_tick(p, rd);
        for (guint i = 0; i < rd->msgs->len; i++) {
            PlvOutMsg *om = g_ptr_array_index(rd->msgs, i);
            if (om->msg.type == PLV_MSG_PREPARE) {
                ck_assert(om->msg.hdr.flags & PLV_HDR_PROBE);
                probe = om->msg.vid;
            }
        }
        plv_ready_clear(rd);
    }
    ck_assert_uint_gt(probe, v0);
    ck_assert_uint_eq(plv_paxos_vid(p), v0);
    for (uint32_t from = 1; from <= 2; from++) {
        ck_assert_int_ne(plv_paxos_role(p), PLV_ROLE_CANDIDATE);
        plv_msg_init(&m, PLV_MSG_PROMISE);
        m.hdr = (PlvMsgHdr){ .from = from, .to = 0, .inc = 1, .vid = v0, .to_inc = 1,
                             .flags = PLV_HDR_ADMITTED | PLV_HDR_PROBE };
        m.vid = probe;
        m.ok = true;
        plv_paxos_step(p, &m, rd);
        plv_msg_clear(&m);
    }
    ck_assert_int_eq(plv_paxos_role(p), PLV_ROLE_CANDIDATE);
    ck_assert_uint_eq(plv_paxos_vid(p), probe);
    plv_ready_clear(rd);
}

/* A candidate does not count a promise from an incarnation that another
 * promise shows was replaced by a config entry. */
START_TEST(test_promise_of_replaced_incarnation_dropped)
{
    PlvPaxosConfig c;
    PlvPaxos *p;
    PlvReady rd;
    PlvMsg m;
    PlvEntry e = { .index = 1, .op = PLV_OP_CONFIG };
    PlvPaxosStats st;
    uint64_t v;

    plv_paxos_config_default(&c);
    c.n = 5;
    plv_ready_init(&rd);
    p = plv_paxos_new(&c, NULL);
    stand_for_election(p, &rd);
    v = plv_paxos_vid(p);
    /* node 1 promises and holds an accepted config admitting node 2's
     * incarnation 5 */
    plv_msg_init(&m, PLV_MSG_PROMISE);
    m.hdr = (PlvMsgHdr){ .from = 1, .to = 0, .inc = 1, .vid = v, .to_inc = 1,
                         .flags = PLV_HDR_ADMITTED };
    m.vid = v;
    m.ok = true;
    e.vid = plv_vid_make(1, 1);
    e.payload = plv_op_config_payload(2, 5);
    plv_msg_add_entry(&m, &e);
    plv_entry_clear(&e);
    plv_paxos_step(p, &m, &rd);
    plv_msg_clear(&m);
    ck_assert_int_eq(plv_paxos_role(p), PLV_ROLE_CANDIDATE);
    /* node 2's former incarnation promises: three of five, but it must
     * not count */
    plv_msg_init(&m, PLV_MSG_PROMISE);
    m.hdr = (PlvMsgHdr){ .from = 2, .to = 0, .inc = 1, .vid = v, .to_inc = 1,
                         .flags = PLV_HDR_ADMITTED };
    m.vid = v;
    m.ok = true;
    plv_paxos_step(p, &m, &rd);
    ck_assert_int_eq(plv_paxos_role(p), PLV_ROLE_CANDIDATE);
    plv_paxos_stats(p, &st);
    ck_assert_uint_eq(st.msgs_stale, 1);
    /* a third current voter completes phase 1 */
    m.hdr.from = 3;
    plv_paxos_step(p, &m, &rd);
    plv_msg_clear(&m);
    ck_assert_int_eq(plv_paxos_role(p), PLV_ROLE_LEADER);
    plv_ready_destroy(&rd);
    plv_paxos_free(p);
}
END_TEST

START_TEST(test_truncation_and_snapshot)
{
    Net t;
    uint32_t l, s, w;
    uint64_t sv;

    net_init(&t);
    t.cfg.log_capacity = 8;
    net_recreate(&t);
    net_steady(&t, &l, &s, &w);
    net_crash(&t, w);
    for (int k = 0; k < 6; k++) {
        submit(&t, l, "pkt");
        net_run(&t, 2);
    }
    ck_assert_int_eq(plv_paxos_propose_syncvm(t.px[l], 1, &t.rd), 0);
    net_collect(&t, l);
    net_run(&t, 2);
    sv = plv_paxos_commit_index(t.px[l]);
    ck_assert_int_eq(((PlvEntry *)g_ptr_array_index(t.delivered[s], t.delivered[s]->len - 1))->op,
                     PLV_OP_SYNCVM);
    ck_assert_uint_eq(plv_paxos_epoch(t.px[s]), 1);
    /* only after both executors applied it does the log shrink */
    net_run(&t, 4);
    ck_assert_uint_eq(plv_paxos_snap_index(t.px[l]), 0);
    plv_paxos_applied_syncvm(t.px[l], sv);
    net_run(&t, 4);
    ck_assert_uint_eq(plv_paxos_snap_index(t.px[l]), 0);
    plv_paxos_applied_syncvm(t.px[s], sv);
    net_run(&t, 6);
    ck_assert_uint_eq(plv_paxos_snap_index(t.px[l]), sv);
    ck_assert_uint_eq(plv_paxos_snap_index(t.px[s]), sv);
    ck_assert_uint_eq(plv_paxos_log_len(t.px[l]), plv_paxos_last_index(t.px[l]) - sv);
    /* a node coming back needs the state at sv: it is told so, and
     * delivery resumes after the install */
    net_restart(&t, w);
    t.snap_needed[w] = 0;
    {
        /* hold the install back to check the refusal first */
        for (int k = 0; k < 10 && !t.snap_needed[w]; k++) {
            for (uint32_t i = 0; i < N; i++) {
                plv_paxos_tick(t.px[i], &t.rd);
                net_collect(&t, i);
            }
            net_flush(&t);
        }
    }
    ck_assert_uint_eq(t.snap_needed[w], sv);
    ck_assert(plv_paxos_snapshot_pending(t.px[w]));
    ck_assert_int_eq(plv_paxos_install_snapshot(t.px[w], sv + 1, &t.rd), -EINVAL);
    ck_assert_int_eq(plv_paxos_install_snapshot(t.px[w], sv, &t.rd), 0);
    net_collect(&t, w);
    submit(&t, l, "later");
    net_run(&t, 20);
    ck_assert(plv_paxos_admitted(t.px[w]));
    ck_assert_uint_eq(plv_paxos_commit_index(t.px[w]), plv_paxos_commit_index(t.px[l]));
    ck_assert_uint_gt(t.delivered[w]->len, 0);
    ck_assert_uint_eq(((PlvEntry *)g_ptr_array_index(t.delivered[w], 0))->index, sv + 1);
    net_free(&t);
}
END_TEST

/*
 * A leader cut off steps down; the others elect the secondary. Pre-vote:
 * however long the cut lasts, the isolated node asks and never raises its
 * view, so when it is back it follows the new leader, whose view stands.
 */
START_TEST(test_isolated_leader_steps_down)
{
    Net t;
    uint32_t l, s, w;
    uint64_t v_new;
    PlvPaxosStats before, after;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    t.cut[l] = true;
    net_run(&t, 40);
    ck_assert_int_ne(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], "a", 1, &t.rd), -EPERM);
    v_new = plv_paxos_vid(t.px[s]);
    plv_paxos_stats(t.px[l], &before);
    net_run(&t, 300);
    plv_paxos_stats(t.px[l], &after);
    ck_assert_uint_gt(after.probes, before.probes);
    ck_assert_uint_eq(after.elections, before.elections);
    ck_assert_uint_lt(plv_paxos_vid(t.px[l]), v_new);
    /* back: the new leader's view stands, everyone follows it, commits flow */
    t.cut[l] = false;
    net_run(&t, 40);
    ck_assert_int_eq(count_role(&t, PLV_ROLE_LEADER), 1);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(plv_paxos_leader(t.px[i]), s);
        ck_assert_uint_eq(plv_paxos_vid(t.px[i]), v_new);
    }
    submit(&t, s, "back");
    net_run(&t, 3);
    ck_assert_uint_eq(plv_paxos_commit_index(t.px[l]), plv_paxos_commit_index(t.px[s]));
    net_free(&t);
}
END_TEST

/* other_vid of node i's last ROLE event to leader (the view must be led). */
static uint64_t led_with_other(Net *t, uint32_t i)
{
    for (guint k = t->events[i]->len; k-- > 0;) {
        PlvEvent *ev = &g_array_index(t->events[i], PlvEvent, k);
        if (ev->kind == PLV_EV_ROLE && ev->role == PLV_ROLE_LEADER) {
            return ev->other_vid;
        }
    }
    ck_abort_msg("node %u never led", i);
    return 0;
}

/*
 * The leader left alone by a double crash, back with one restarted
 * (durable) replica: its phase 1 tells the executor whether another node
 * was promised a view newer than the one it led (PlvEvent.other_vid), so
 * a VM it kept from that view is the replicated one, or is not. Before
 * its promise is replaced, an acceptor's newest promise to another node
 * survives a later promise to the lone leader (promised_other).
 */
START_TEST(test_phase1_sees_views_promised_to_others)
{
    Net t;
    uint32_t l, s, w;
    uint64_t v1, v2;

    /* the secondary and the witness crash while l leads: nothing newer */
    net_init(&t);
    net_steady(&t, &l, &s, &w);
    v1 = plv_paxos_vid(t.px[l]);
    net_crash(&t, s);
    net_crash(&t, w);
    net_run(&t, 40);
    ck_assert_int_ne(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    plv_paxos_set_kept(t.px[l], v1);
    g_array_set_size(t.events[l], 0);
    net_restart_durable(&t, w);
    net_run(&t, 80);
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    ck_assert_uint_le(led_with_other(&t, l), v1);
    net_free(&t);

    /* l cut off: s takes over in v2 with w; then s and w crash, l is back
     * and w restarts: w's promise to s is reported though w promised l
     * since */
    net_init(&t);
    net_steady(&t, &l, &s, &w);
    v1 = plv_paxos_vid(t.px[l]);
    t.cut[l] = true;
    net_run(&t, 40);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    v2 = plv_paxos_vid(t.px[s]);
    ck_assert_uint_gt(v2, v1);
    net_crash(&t, s);
    net_crash(&t, w);
    t.cut[l] = false;
    plv_paxos_set_kept(t.px[l], v1);
    g_array_set_size(t.events[l], 0);
    net_restart_durable(&t, w);
    ck_assert_uint_eq(t.disk[w].promised, v2);
    net_run(&t, 80);
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    ck_assert_uint_eq(led_with_other(&t, l), v2);
    ck_assert_uint_eq(t.disk[w].promised_other, v2);
    net_free(&t);
}
END_TEST

/* What node i answers a probe from node c standing for a view above
 * everything, whose PREPARE says it keeps a VM of view kept_vid. */
static bool probe_answer(Net *t, uint32_t i, uint32_t c, uint64_t kept_vid)
{
    PlvMsg m;
    bool ok = false, answered = false;

    plv_msg_init(&m, PLV_MSG_PREPARE);
    m.hdr = (PlvMsgHdr){ .from = c, .to = i, .inc = t->inc[c],
                         .vid = plv_vid_make(50, c), .commit = plv_paxos_commit_index(t->px[i]),
                         .last = plv_paxos_commit_index(t->px[i]),
                         .flags = PLV_HDR_ADMITTED | PLV_HDR_PROBE };
    m.vid = plv_vid_make(60, c);
    m.kept_vid = kept_vid;
    plv_paxos_step(t->px[i], &m, &t->rd);
    for (guint k = 0; k < t->rd.msgs->len; k++) {
        PlvOutMsg *om = g_ptr_array_index(t->rd.msgs, k);
        if (om->to == c && om->msg.type == PLV_MSG_PROMISE) {
            answered = true;
            ok = om->msg.ok;
        }
    }
    plv_msg_clear(&m);
    plv_ready_clear(&t->rd);
    ck_assert(answered);
    return ok;
}

/*
 * A node that keeps a VM (plv_paxos_set_kept) is preferred: it refuses a
 * candidate that keeps none or an older one, and stands although the
 * log's secondary is fit; other acceptors waive their preference for the
 * secondary for a candidate that keeps one.
 */
START_TEST(test_kept_vm_preferred)
{
    Net t;
    uint32_t l, s, w;
    uint64_t v;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    net_crash(&t, s);
    net_crash(&t, w);
    net_run(&t, 40);
    /* l alone, stepped down: it answers a probe as any acceptor would,
     * until it keeps a VM */
    ck_assert_int_ne(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    v = plv_paxos_vid(t.px[l]);
    ck_assert(probe_answer(&t, l, w, 0));
    plv_paxos_set_kept(t.px[l], v);
    ck_assert(!probe_answer(&t, l, w, 0));
    ck_assert(!probe_answer(&t, l, w, v - 1));
    ck_assert(probe_answer(&t, l, w, v + 1));
    plv_paxos_set_kept(t.px[l], 0);
    ck_assert(probe_answer(&t, l, w, 0));
    net_free(&t);

    /* The secondary, fit, cut off with no leader heard for longer than
     * suspect_ticks, refuses the witness, unless the witness keeps a VM. */
    net_init(&t);
    net_steady(&t, &l, &s, &w);
    t.cut[s] = true;
    net_run(&t, 20);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_SECONDARY);
    ck_assert(!probe_answer(&t, s, w, 0));
    ck_assert(probe_answer(&t, s, w, 1));
    net_free(&t);
}
END_TEST

/* Handoff: the secondary takes over without waiting for a timeout, the
 * former leader becomes its secondary, nothing committed is lost. */
START_TEST(test_leadership_handoff)
{
    Net t;
    uint32_t l, s, w;
    uint64_t v0, c0;
    int n0, n1;
    g_autofree char *at_w = NULL, *after_l = NULL, *after_s = NULL;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    /* only the established leader, only to its secondary */
    ck_assert_int_eq(plv_paxos_transfer_leadership(t.px[s], l, &t.rd), -EPERM);
    ck_assert_int_eq(plv_paxos_transfer_leadership(t.px[l], w, &t.rd), -EINVAL);
    ck_assert_int_eq(plv_paxos_transfer_leadership(t.px[l], l, &t.rd), -EINVAL);
    submit(&t, l, "x1");
    submit(&t, l, "x2");
    v0 = plv_paxos_vid(t.px[l]);
    ck_assert_int_eq(plv_paxos_transfer_leadership(t.px[l], s, &t.rd), 0);
    net_collect(&t, l);
    ck_assert(plv_paxos_transferring(t.px[l]));
    /* queued inputs still go out; new ones wait for the new leader, to
     * which they are forwarded */
    ck_assert_int_eq(plv_paxos_submit_input(t.px[l], "x3", 2, &t.rd), -EBUSY);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[l], "x3", 2, &t.rd), 0);
    net_collect(&t, l);
    ck_assert_int_eq(plv_paxos_propose_syncvm(t.px[l], 9, &t.rd), -EBUSY);
    /* well within one suspect timeout (10 ticks): no failure detection */
    net_run(&t, 6);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    ck_assert_uint_gt(plv_paxos_vid(t.px[s]), v0);
    net_run(&t, 4);
    ck_assert_int_eq(count_role(&t, PLV_ROLE_LEADER), 1);
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_SECONDARY);
    ck_assert_int_eq(plv_paxos_role(t.px[w]), PLV_ROLE_WITNESS);
    ck_assert(!plv_paxos_transferring(t.px[l]));
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(plv_paxos_leader(t.px[i]), s);
    }
    c0 = plv_paxos_commit_index(t.px[s]);
    submit(&t, s, "y1");
    net_run(&t, 3);
    ck_assert_uint_gt(plv_paxos_commit_index(t.px[l]), c0);
    at_w = delivered_packets(&t, w, &n0);
    after_l = delivered_packets(&t, l, &n1);
    after_s = delivered_packets(&t, s, &n1);
    ck_assert_str_eq(after_l, "x1,x2,x3,y1");
    ck_assert_str_eq(after_s, after_l);
    ck_assert_str_eq(at_w, after_l);
    net_free(&t);
}
END_TEST

/* A packet reaching a follower's forwarding path is proposed by the
 * leader; one held while no leader is known waits for the next leader. */
START_TEST(test_forwarding)
{
    Net t;
    uint32_t l, s, w;
    int n;
    PlvPaxosStats st;
    g_autofree char *got = NULL, *got2 = NULL;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[w], "f1", 2, &t.rd), 0);
    net_collect(&t, w);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[s], "f2", 2, &t.rd), 0);
    net_collect(&t, s);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[w], "", 0, &t.rd), -EINVAL);
    net_run(&t, 4);
    got = delivered_packets(&t, l, &n);
    ck_assert_str_eq(got, "f1,f2");
    plv_paxos_stats(t.px[w], &st);
    ck_assert_uint_eq(st.fwd_sent, 1);
    plv_paxos_stats(t.px[l], &st);
    ck_assert_uint_eq(st.fwd_taken, 2);
    /* the leader dies; once the witness no longer follows it, a packet is
     * held until the secondary leads, then forwarded there; what the
     * secondary held itself it submits once it leads, duplicates included
     * (two equal packets are two inputs) */
    net_crash(&t, l);
    t.cut[s] = true;
    net_run(&t, 12);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[w], "f3", 2, &t.rd), 0);
    net_collect(&t, w);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[s], "f4", 2, &t.rd), 0);
    ck_assert_int_eq(plv_paxos_forward_input(t.px[s], "f4", 2, &t.rd), 0);
    net_collect(&t, s);
    plv_paxos_stats(t.px[w], &st);
    ck_assert_uint_eq(st.fwd_sent, 1);
    t.cut[s] = false;
    net_run(&t, 40);
    ck_assert_int_eq(plv_paxos_role(t.px[s]), PLV_ROLE_LEADER);
    got2 = delivered_packets(&t, w, &n);
    ck_assert_str_eq(got2, "f1,f2,f4,f4,f3");
    net_free(&t);
}
END_TEST

/* A handoff to a secondary that cannot answer is given up: the leader
 * stays and takes inputs again. */
START_TEST(test_handoff_given_up)
{
    Net t;
    uint32_t l, s, w;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    ck_assert_int_eq(plv_paxos_transfer_leadership(t.px[l], s, &t.rd), 0);
    net_collect(&t, l);
    t.cut[s] = true;
    net_run(&t, 40);
    ck_assert(!plv_paxos_transferring(t.px[l]));
    ck_assert_int_eq(plv_paxos_role(t.px[l]), PLV_ROLE_LEADER);
    submit(&t, l, "z");
    net_free(&t);
}
END_TEST

START_TEST(test_promise_rules)
{
    Net t;
    uint32_t l, s, w;
    PlvMsg m;
    PlvOutMsg *om;
    PlvPaxosStats st;
    uint64_t v;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    v = plv_paxos_vid(t.px[w]);
    /* a lower or equal view is refused */
    plv_msg_init(&m, PLV_MSG_PREPARE);
    m.hdr = (PlvMsgHdr){ .from = s, .to = w, .inc = 1, .flags = PLV_HDR_ADMITTED };
    m.vid = plv_vid_make(plv_vid_round(v) - 1, s);
    plv_paxos_step(t.px[w], &m, &t.rd);
    ck_assert_uint_eq(t.rd.msgs->len, 1);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert_int_eq(om->msg.type, PLV_MSG_PROMISE);
    ck_assert(!om->msg.ok);
    plv_ready_clear(&t.rd);
    /* a higher one from the secondary is refused while the leader is heard */
    m.vid = plv_vid_make(plv_vid_round(v) + 5, s);
    plv_paxos_step(t.px[w], &m, &t.rd);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert(!om->msg.ok);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), v);
    plv_ready_clear(&t.rd);
    /* a pre-vote gets the same answer, marked as one */
    m.hdr.flags |= PLV_HDR_PROBE;
    plv_paxos_step(t.px[w], &m, &t.rd);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert(!om->msg.ok && (om->msg.hdr.flags & PLV_HDR_PROBE));
    plv_ready_clear(&t.rd);
    /* once the leader is silent past suspicion, the pre-vote would be
     * granted, and answering it changes nothing; the real PREPARE does */
    for (int k = 0; k < 20; k++) {
        plv_paxos_tick(t.px[w], &t.rd);
        plv_ready_clear(&t.rd);
    }
    plv_paxos_step(t.px[w], &m, &t.rd);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert(om->msg.ok && (om->msg.hdr.flags & PLV_HDR_PROBE) && !om->msg.entries);
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), v);
    plv_ready_clear(&t.rd);
    m.hdr.flags &= ~PLV_HDR_PROBE;
    plv_paxos_step(t.px[w], &m, &t.rd);
    om = g_ptr_array_index(t.rd.msgs, 0);
    ck_assert(om->msg.ok && !(om->msg.hdr.flags & PLV_HDR_PROBE));
    ck_assert_uint_eq(plv_paxos_vid(t.px[w]), m.vid);
    plv_ready_clear(&t.rd);
    /* a vid that does not name its sender is dropped */
    m.vid = plv_vid_make(plv_vid_round(v) + 5, l);
    plv_paxos_step(t.px[w], &m, &t.rd);
    ck_assert_uint_eq(t.rd.msgs->len, 0);
    /* malformed and stale messages are counted, not processed */
    plv_paxos_stats(t.px[w], &st);
    m.hdr.to = s;
    plv_paxos_step(t.px[w], &m, &t.rd);
    m.hdr.to = w;
    m.hdr.from = 7;
    plv_paxos_step(t.px[w], &m, &t.rd);
    {
        PlvPaxosStats st2;
        plv_paxos_stats(t.px[w], &st2);
        ck_assert_uint_eq(st2.msgs_bad, st.msgs_bad + 2);
    }
    ck_assert_uint_eq(t.rd.msgs->len, 0);
    net_free(&t);
}
END_TEST

START_TEST(test_stale_incarnation_dropped)
{
    Net t;
    uint32_t l, s, w;
    PlvMsg m;
    PlvPaxosStats a, b;

    net_init(&t);
    net_steady(&t, &l, &s, &w);
    net_crash(&t, w);
    net_restart(&t, w);
    net_run(&t, 20);
    ck_assert_uint_eq(plv_paxos_member_inc(t.px[l], w), 2);
    /* an accepted from the node's former incarnation no longer counts */
    plv_paxos_stats(t.px[l], &a);
    plv_msg_init(&m, PLV_MSG_ACCEPTED);
    m.hdr = (PlvMsgHdr){ .from = w, .to = l, .inc = 1, .flags = PLV_HDR_ADMITTED };
    m.vid = plv_paxos_vid(t.px[l]);
    m.ok = true;
    m.index = 1000;
    plv_paxos_step(t.px[l], &m, &t.rd);
    /* and an answer meant for an earlier incarnation of the receiver */
    plv_msg_init(&m, PLV_MSG_PROMISE);
    m.hdr = (PlvMsgHdr){ .from = l, .to = w, .inc = 1, .to_inc = 1,
                         .flags = PLV_HDR_ADMITTED };
    plv_paxos_step(t.px[w], &m, &t.rd);
    plv_paxos_stats(t.px[l], &b);
    ck_assert_uint_eq(b.msgs_stale, a.msgs_stale + 1);
    plv_paxos_stats(t.px[w], &b);
    ck_assert_uint_ge(b.msgs_stale, 1);
    net_collect(&t, l);
    net_free(&t);
}
END_TEST

START_TEST(test_config_validation)
{
    PlvPaxosConfig c;
    GError *err = NULL;

    plv_paxos_config_default(&c);
    c.self = 3;
    ck_assert_ptr_null(plv_paxos_new(&c, &err));
    ck_assert_ptr_nonnull(err);
    g_clear_error(&err);
    c.self = 0;
    c.incarnation = 0;
    ck_assert_ptr_null(plv_paxos_new(&c, NULL));
    c.incarnation = 1;
    c.suspect_ticks = c.heartbeat_ticks;
    ck_assert_ptr_null(plv_paxos_new(&c, NULL));
}
END_TEST

int main(void)
{
    Suite *su = suite_create("paxos");
    TCase *tc = tcase_create("scenarios");

    tcase_add_test(tc, test_bootstrap_roles);
    tcase_add_test(tc, test_batching_one_in_flight);
    tcase_add_test(tc, test_batch_size_bound);
    tcase_add_test(tc, test_submit_errors);
    tcase_add_test(tc, test_leader_fails_secondary_takes_over);
    tcase_add_test(tc, test_secondary_fails_witness_elevated);
    tcase_add_test(tc, test_witness_leads_without_fit_secondary);
    tcase_add_test(tc, test_n_err_makes_secondary_suspect);
    tcase_add_test(tc, test_restart_learns_before_voting);
    tcase_add_test(tc, test_restart_of_phase1_voter_needs_new_view);
    tcase_add_test(tc, test_two_restarted_durable);
    tcase_add_test(tc, test_two_restarted_amnesiac);
    tcase_add_test(tc, test_restored_promise_binds);
    tcase_add_test(tc, test_accept_from_other_incarnation_refused);
    tcase_add_test(tc, test_promise_of_replaced_incarnation_dropped);
    tcase_add_test(tc, test_truncation_and_snapshot);
    tcase_add_test(tc, test_isolated_leader_steps_down);
    tcase_add_test(tc, test_phase1_sees_views_promised_to_others);
    tcase_add_test(tc, test_kept_vm_preferred);
    tcase_add_test(tc, test_promise_rules);
    tcase_add_test(tc, test_leadership_handoff);
    tcase_add_test(tc, test_handoff_given_up);
    tcase_add_test(tc, test_forwarding);
    tcase_add_test(tc, test_stale_incarnation_dropped);
    tcase_add_test(tc, test_config_validation);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
