/*
 * Tests for the syncvm agreement (plover/syncvm-agree.h): the codec, and
 * a simulation of a leader and a secondary executing the same syncvm
 * entries, each at its own pace, over a link with delays. The rules must
 * bring the two ends back in step after any skew; the strict rule they
 * replaced (refuse any HELLO but our own epoch, and drop the link) stays
 * one entry apart for ever in the schedule a healed partition produced.
 */
#include <check.h>
#include <glib.h>
#include <string.h>

#include "helper-run.h"
#include "plover/syncvm-agree.h"

/* ---- codec ---- */

START_TEST(codec_roundtrip)
{
    PlvSyncHello h = { .epoch = 0x0102030405060708ull, .has_vm = true,
                       .full = false, .last = 77 }, h2;
    PlvSyncReply r = { .has_vm = true, .last = 76 }, r2;
    uint8_t b[PLV_SYNC_HELLO_LEN];
    uint64_t e;

    plv_sync_hello_encode(&h, b);
    ck_assert(plv_sync_hello_decode(b, sizeof(b), &h2));
    ck_assert(h2.epoch == h.epoch && h2.has_vm && !h2.full && h2.last == 77);
    ck_assert(!plv_sync_hello_decode(b, sizeof(b) - 1, &h2));
    b[9] = 2;
    ck_assert(!plv_sync_hello_decode(b, sizeof(b), &h2));
    plv_sync_reply_encode(&r, b);
    ck_assert(plv_sync_reply_decode(b, PLV_SYNC_REPLY_LEN, &r2));
    ck_assert(r2.has_vm && r2.last == 76);
    ck_assert(!plv_sync_reply_decode(b, PLV_SYNC_REPLY_LEN + 1, &r2));
    plv_sync_skip_encode(9, b);
    ck_assert(plv_sync_skip_decode(b, PLV_SYNC_SKIP_LEN, &e));
    ck_assert_uint_eq(e, 9);
    ck_assert(!plv_sync_skip_decode(b, 3, &e));
    {
        PlvSyncRound rd = { .round = 3 }, rd2;

        plv_sync_round_encode(&rd, b);
        ck_assert(plv_sync_round_decode(b, PLV_SYNC_ROUND_LEN, 3, &rd2));
        ck_assert(rd2.round == 3 && !rd2.final);
        /* out of order, or a final one that skips rounds */
        ck_assert(!plv_sync_round_decode(b, PLV_SYNC_ROUND_LEN, 2, &rd2));
        rd.final = true;
        plv_sync_round_encode(&rd, b);
        ck_assert(plv_sync_round_decode(b, PLV_SYNC_ROUND_LEN, 4, &rd2));
        ck_assert(rd2.final);
        ck_assert(!plv_sync_round_decode(b, PLV_SYNC_ROUND_LEN, 3, &rd2));
        b[4] = 2;
        ck_assert(!plv_sync_round_decode(b, PLV_SYNC_ROUND_LEN, 4, &rd2));
        ck_assert(!plv_sync_round_decode(b, 4, 4, &rd2));
    }

    /* fresh rides in the flags byte, beside has_vm */
    h.has_vm = false;
    h.fresh = true;
    plv_sync_hello_encode(&h, b);
    ck_assert(plv_sync_hello_decode(b, PLV_SYNC_HELLO_LEN, &h2));
    ck_assert(!h2.has_vm && h2.fresh);
    b[8] = 4;
    ck_assert(!plv_sync_hello_decode(b, PLV_SYNC_HELLO_LEN, &h2));
    r.fresh = true;
    plv_sync_reply_encode(&r, b);
    ck_assert(plv_sync_reply_decode(b, PLV_SYNC_REPLY_LEN, &r2));
    ck_assert(r2.has_vm && r2.fresh);
    b[0] = 4;
    ck_assert(!plv_sync_reply_decode(b, PLV_SYNC_REPLY_LEN, &r2));
}
END_TEST

/* A VM lost before it was ever protected boots again; one that was (by
 * either end, to either end's knowledge) does not. */
START_TEST(fresh_boot_rule)
{
    PlvSyncHello l = { .epoch = 5, .has_vm = false, .fresh = true };
    PlvSyncReply s = { .has_vm = false, .fresh = true };

    ck_assert(plv_sync_fresh_boot(&l, &s));
    s.fresh = false;
    ck_assert(!plv_sync_fresh_boot(&l, &s));
    s.fresh = true;
    l.fresh = false;
    ck_assert(!plv_sync_fresh_boot(&l, &s));
    l.fresh = true;
    s.has_vm = true;            /* the secondary holds it: pull instead */
    ck_assert(!plv_sync_fresh_boot(&l, &s));
}
END_TEST

START_TEST(direction_rules)
{
    PlvSyncHello l = { .epoch = 5, .has_vm = true, .full = false, .last = 4 };
    PlvSyncReply s = { .has_vm = true, .last = 4 };
    bool push, full;

    ck_assert(plv_sync_direction(&l, &s, &push, &full));
    ck_assert(push && !full);
    s.last = 3;                 /* last synced with someone else */
    ck_assert(plv_sync_direction(&l, &s, &push, &full));
    ck_assert(push && full);
    l.has_vm = false;           /* elected without a copy: pull */
    ck_assert(plv_sync_direction(&l, &s, &push, &full));
    ck_assert(!push && full);
    s.has_vm = false;
    ck_assert(!plv_sync_direction(&l, &s, &push, &full));
    ck_assert_int_eq(plv_sync_on_hello(5, 5), PLV_SYNC_HELLO_ACCEPT);
    ck_assert_int_eq(plv_sync_on_hello(5, 4), PLV_SYNC_HELLO_SKIP);
    ck_assert_int_eq(plv_sync_on_hello(5, 6), PLV_SYNC_HELLO_LATER);
    ck_assert(plv_sync_skip_valid(5, 6));
    ck_assert(!plv_sync_skip_valid(5, 5));
}
END_TEST

/* ---- simulation ---- */

enum { M_HELLO, M_REPLY, M_SKIP };

typedef struct Msg {
    int type;
    uint64_t epoch;
    int64_t at;                 /* delivery time */
    unsigned gen;               /* link generation it was sent on */
} Msg;

typedef struct Sim {
    GRand *rng;
    bool strict;                /* the rule this replaced */
    int64_t timeout, engine_ms, lag_max, spike_ms;
    int64_t now;
    unsigned gen;               /* bumped whenever an end drops the link */
    bool link_up;
    GQueue to_sec, to_lead;
    GArray *commit;             /* int64 per epoch, -1: not committed yet */
    GArray *lag;                /* int64 per epoch: when the secondary learns it */
    bool spikes;

    /* leader */
    uint64_t le;
    bool lwait;
    int64_t ldeadline, lbusy_until;
    unsigned lgen;
    unsigned successes, failures, run, longest_run;

    /* secondary */
    uint64_t se;
    bool swait;
    int64_t sdeadline, sfree;
    bool kept;
    uint64_t kept_epoch;
} Sim;

static int64_t commit_at(Sim *s, uint64_t e)
{
    return e < s->commit->len ? g_array_index(s->commit, int64_t, e) : -1;
}

/* Entry @e is committed at @t; the secondary learns it a little later,
 * and, with spikes, now and then after a stall longer than the timeout. */
static void set_commit(Sim *s, uint64_t e, int64_t t)
{
    int64_t none = -1;
    while (s->commit->len <= e) {
        g_array_append_val(s->commit, none);
        g_array_append_val(s->lag, none);
    }
    g_array_index(s->commit, int64_t, e) = t;
    g_array_index(s->lag, int64_t, e) =
        s->spikes && g_rand_int_range(s->rng, 0, 50) == 0 ? 1500
                                                           : g_rand_int_range(s->rng, 1, 15);
}

static void send(Sim *s, GQueue *q, int type, uint64_t epoch)
{
    Msg *m = g_new(Msg, 1);
    Msg *last = g_queue_peek_tail(q);
    m->type = type;
    m->epoch = epoch;
    m->gen = s->gen;
    /* a byte stream: in order, each after a random delay */
    m->at = MAX(last ? last->at : 0, s->now + g_rand_int_range(s->rng, 1, 4));
    g_queue_push_tail(q, m);
}

/* The next message for an end, if one of the current link is due. */
static Msg *deliver(Sim *s, GQueue *q)
{
    Msg *m;
    while ((m = g_queue_peek_head(q)) && m->at <= s->now) {
        g_queue_pop_head(q);
        if (m->gen == s->gen) {
            return m;
        }
        g_free(m);              /* sent on a link dropped since */
    }
    return NULL;
}

static void drop_link(Sim *s)
{
    s->gen++;
    s->link_up = false;
    s->kept = false;            /* the glue forgets a kept HELLO with its link */
}

static void leader_finish(Sim *s, bool ok)
{
    s->lwait = false;
    if (ok) {
        s->successes++;
        s->run = 0;
    } else {
        s->failures++;
        s->run++;
        s->longest_run = MAX(s->longest_run, s->run);
    }
    s->lbusy_until = s->now + (ok ? s->engine_ms : 0);
    /* the idle detector asks for the next syncvm; consensus commits it */
    s->le++;
    if (commit_at(s, s->le) < 0) {
        set_commit(s, s->le, s->lbusy_until + 50 + g_rand_int_range(s->rng, 0, 10));
    }
}

static void leader_step(Sim *s)
{
    if (!s->lwait) {
        if (s->now < commit_at(s, s->le) || s->now < s->lbusy_until) {
            return;
        }
        if (!s->link_up) {
            s->link_up = true;  /* dialed; the secondary takes it */
        }
        send(s, &s->to_sec, M_HELLO, s->le);
        s->lwait = true;
        s->lgen = s->gen;
        s->ldeadline = s->now + s->timeout;
        return;
    }
    if (s->lgen != s->gen) {
        leader_finish(s, false);          /* the secondary closed the link */
        return;
    }
    Msg *m = deliver(s, &s->to_lead);
    if (m) {
        if (m->type == M_REPLY && m->epoch == s->le) {
            leader_finish(s, true);
        } else if (m->type == M_SKIP && plv_sync_skip_valid(s->le, m->epoch)) {
            leader_finish(s, false);      /* skew: the link stays */
        } else {
            drop_link(s);
            leader_finish(s, false);
        }
        g_free(m);
        return;
    }
    if (s->now >= s->ldeadline) {
        drop_link(s);
        leader_finish(s, false);
    }
}

static void secondary_finish(Sim *s, bool ok)
{
    s->swait = false;
    s->sfree = s->now + (ok ? s->engine_ms : 0);
    s->se++;
}

/* A HELLO for @h reaches the secondary waiting in its epoch. */
static void secondary_on_hello(Sim *s, uint64_t h)
{
    if (s->strict) {
        if (h == s->se) {
            send(s, &s->to_lead, M_REPLY, h);
            secondary_finish(s, true);
        } else {
            drop_link(s);               /* "bad or stale direction message" */
            secondary_finish(s, false);
        }
        return;
    }
    switch (plv_sync_on_hello(s->se, h)) {
    case PLV_SYNC_HELLO_ACCEPT:
        s->kept = false;
        send(s, &s->to_lead, M_REPLY, h);
        secondary_finish(s, true);
        break;
    case PLV_SYNC_HELLO_SKIP:
        s->kept = false;
        send(s, &s->to_lead, M_SKIP, s->se);
        break;
    case PLV_SYNC_HELLO_LATER:
        s->kept = true;
        s->kept_epoch = h;
        secondary_finish(s, false);
        break;
    }
}

static void secondary_step(Sim *s)
{
    if (!s->swait) {
        int64_t c = commit_at(s, s->se);
        if (c < 0 || s->now < MAX(c + g_array_index(s->lag, int64_t, s->se), s->sfree)) {
            return;
        }
        s->swait = true;
        s->sdeadline = s->now + s->timeout;
        if (s->kept) {
            secondary_on_hello(s, s->kept_epoch);
        }
        return;
    }
    Msg *m = deliver(s, &s->to_sec);
    if (m) {
        if (m->type == M_HELLO) {
            secondary_on_hello(s, m->epoch);
        }
        g_free(m);
        return;
    }
    if (s->now >= s->sdeadline) {
        if (s->strict) {
            drop_link(s);
        }
        secondary_finish(s, false);
    }
}

/*
 * Run @ms of simulated time. The secondary executes entry @se0 first, the
 * leader @le0: whichever is ahead gave its earlier entries up (a link that
 * broke in a partition, a timeout). Each entry reaches the secondary
 * after a random lag (with @spikes, sometimes after one past the timeout).
 */
static Sim *sim_run(guint32 seed, bool strict, uint64_t se0, uint64_t le0,
                    int64_t ms, bool spikes)
{
    Sim *s = g_new0(Sim, 1);

    s->rng = g_rand_new_with_seed(seed);
    s->strict = strict;
    s->timeout = 1000;
    s->engine_ms = 10;
    s->commit = g_array_new(FALSE, FALSE, sizeof(int64_t));
    s->lag = g_array_new(FALSE, FALSE, sizeof(int64_t));
    s->spikes = spikes;
    g_queue_init(&s->to_sec);
    g_queue_init(&s->to_lead);
    /* Entries up to the later of the two are committed already. */
    for (uint64_t e = MIN(se0, le0); e <= MAX(se0, le0); e++) {
        set_commit(s, e, e == le0 ? 50 : 0);
    }
    s->le = le0;
    s->se = se0;
    for (s->now = 0; s->now < ms; s->now++) {
        leader_step(s);
        secondary_step(s);
    }
    return s;
}

static void sim_free(Sim *s)
{
    g_queue_clear_full(&s->to_sec, g_free);
    g_queue_clear_full(&s->to_lead, g_free);
    g_array_free(s->commit, TRUE);
    g_array_free(s->lag, TRUE);
    g_rand_free(s->rng);
    g_free(s);
}

/* The schedule seen after a healed partition: the secondary waits in an
 * entry the leader has given up. The strict rule never recovers. */
START_TEST(strict_rule_livelocks)
{
    Sim *s = sim_run(1, true, 1, 2, 30000, false);

    ck_assert_uint_eq(s->successes, 0);
    ck_assert_uint_ge(s->failures, 10);
    sim_free(s);
}
END_TEST

START_TEST(rules_recover_from_the_heal)
{
    Sim *s = sim_run(1, false, 1, 2, 30000, false);

    ck_assert_uint_ge(s->successes, 100);
    ck_assert_uint_le(s->longest_run, 2);
    sim_free(s);
}
END_TEST

/* Any skew of either end, random delays and stalls: the pair is back in
 * step within two failed entries, fewer than consensus's n_err threshold
 * (3), so a skew alone never replaces a working secondary. */
START_TEST(rules_recover_from_any_skew)
{
    unsigned seeds = g_getenv("PLOVER_SOAK") ? 2000 : 200;

    for (guint32 seed = 1; seed <= seeds; seed++) {
        GRand *r = g_rand_new_with_seed(seed);
        uint64_t se0 = g_rand_int_range(r, 1, 4), le0 = g_rand_int_range(r, 1, 4);
        Sim *s = sim_run(seed, false, se0, le0, 20000, true);

        if (s->successes < 50 || s->longest_run > 2) {
            ck_abort_msg("seed %u (secondary at %" G_GUINT64_FORMAT ", leader at %"
                         G_GUINT64_FORMAT "): %u successes, %u failures in a row",
                         seed, se0, le0, s->successes, s->longest_run);
        }
        sim_free(s);
        g_rand_free(r);
    }
}
END_TEST

int main(void)
{
    Suite *su = suite_create("syncvm-agree");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, codec_roundtrip);
    tcase_add_test(tc, direction_rules);
    tcase_add_test(tc, fresh_boot_rule);
    suite_add_tcase(su, tc);
    TCase *ts = tcase_create("sim");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, strict_rule_livelocks);
    tcase_add_test(ts, rules_recover_from_the_heal);
    tcase_add_test(ts, rules_recover_from_any_skew);
    suite_add_tcase(su, ts);
    return plv_test_run(su);
}
