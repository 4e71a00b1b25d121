/*
 * Tests for the consensus driver: three drivers in one process over the TCP
 * transport on 127.0.0.1 elect a leader and commit submitted inputs in the
 * same order everywhere; commits go on after one driver is killed, or
 * after one whose disk fails falls silent.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helper-run.h"
#include "plover/driver.h"
#include "plover/sockutil.h"

#define N 3
static const uint8_t SECRET[] = "driver test secret";

typedef struct {
    pthread_mutex_t lock;       /* inline callbacks fill it from driver threads */
    PlvDriver *d;
    int resubmit;               /* inline: submit a new packet per commit, up to */
    int submitted;
    GPtrArray *entries;         /* of GBytes: op byte + payload, log order */
    GPtrArray *packets;         /* of char*: input packets in commit order */
    uint64_t last_index;
    int role_events;
    bool order_ok;
    uint64_t hold_at;           /* dispatch: hold delivery at this index once */
    int holds;
} Collector;

typedef struct {
    PlvDriver *d[N];
    Collector c[N];
    PlvPeerAddr addr[N];
    char *store_dir;            /* set: each driver keeps its state there */
    bool restored[N];           /* its last start restored it */
} Cluster;

static void on_commit(void *opaque, const PlvEntry *e)
{
    Collector *c = opaque;
    if (c->hold_at && e->index == c->hold_at) {
        /* Not taken now: it must come again, first, after the release. */
        c->hold_at = 0;
        c->holds++;
        plv_driver_dispatch_hold(c->d);
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (e->index != c->last_index + 1) {
        c->order_ok = false;
    }
    c->last_index = e->index;
    size_t len;
    const uint8_t *p = plv_entry_payload(e, &len);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, &e->op, 1);
    if (len) {
        g_byte_array_append(b, p, len);
    }
    g_ptr_array_add(c->entries, g_byte_array_free_to_bytes(b));
    if (e->op == PLV_OP_INPUT) {
        PlvBatchIter it;
        const uint8_t *pkt;
        uint32_t plen;
        plv_batch_iter_init(&it, p, len);
        while (plv_batch_next(&it, &pkt, &plen)) {
            g_ptr_array_add(c->packets, g_strndup((const char *)pkt, plen));
        }
        /* Closed loop on the driver thread: each commit submits the next. */
        while (c->submitted < c->resubmit &&
               c->submitted < (int)c->packets->len + 4) {
            char next[32];
            int n = snprintf(next, sizeof(next), "i%d", c->submitted);
            if (plv_driver_submit(c->d, next, n) != 0) {
                break;
            }
            c->submitted++;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static guint packets_len(Collector *c)
{
    pthread_mutex_lock(&c->lock);
    guint n = c->packets->len;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void on_event(void *opaque, const PlvEvent *ev)
{
    Collector *c = opaque;
    if (ev->kind == PLV_EV_ROLE) {
        c->role_events++;
    }
}

static const PlvDriverCallbacks CB = { .committed = on_commit, .event = on_event };

static void collector_init(Collector *c)
{
    c->entries = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    c->packets = g_ptr_array_new_with_free_func(g_free);
    c->order_ok = true;
    c->last_index = 0;
    pthread_mutex_init(&c->lock, NULL);
}

static void collector_clear(Collector *c)
{
    g_ptr_array_unref(c->entries);
    g_ptr_array_unref(c->packets);
    pthread_mutex_destroy(&c->lock);
}

/* Driver @i on listening socket @lfd (incarnation @inc: > 1 after a restart). */
static void driver_start(Cluster *cl, int i, int lfd, uint64_t inc,
                         size_t max_pending, bool inline_cb)
{
    PlvTcpTransportConfig tc = {
        .self_id = i, .peers = cl->addr, .n_peers = N,
        .secret = SECRET, .secret_len = sizeof(SECRET),
        .listen_fd = lfd, .backoff_min_ms = 5, .backoff_max_ms = 100,
    };
    GError *err = NULL;
    PlvTransport *t = plv_transport_tcp_new(&tc, &err);
    ck_assert_msg(t, "%s", err ? err->message : "?");
    PlvDriverConfig dc;
    plv_driver_config_default(&dc);
    dc.paxos.self = i;
    dc.paxos.n = N;
    dc.paxos.incarnation = inc;
    dc.paxos.seed = 1000 + i + 10 * inc;
    dc.tick_ms = 2;
    /* 100 ms of silence before suspecting a peer: short enough for the kill
     * tests, long enough that a loaded machine does not start elections. */
    dc.paxos.suspect_ticks = 50;
    dc.paxos.election_ticks = 50;
    dc.max_pending_bytes = max_pending;
    PlvDurable img;
    plv_durable_init(&img);
    cl->restored[i] = false;
    if (cl->store_dir) {
        g_autofree char *path = g_strdup_printf("%s/r%d.paxos", cl->store_dir, i);
        g_autofree char *why = NULL;
        dc.store = plv_paxos_store_open(path, i, N, inc, &img, &cl->restored[i], &why, &err);
        ck_assert_msg(dc.store, "%s", err ? err->message : "?");
    }
    cl->d[i] = plv_driver_new(&dc, t, &err);
    ck_assert_msg(cl->d[i], "%s", err ? err->message : "?");
    if (cl->restored[i]) {
        ck_assert_int_eq(plv_driver_restore(cl->d[i], &img), 0);
    }
    plv_durable_destroy(&img);
    cl->c[i].d = cl->d[i];
    if (inline_cb) {
        plv_driver_set_inline_callbacks(cl->d[i], &CB, &cl->c[i]);
    }
    ck_assert_int_eq(plv_driver_start(cl->d[i], &err), 0);
}

static void cluster_start_opts(Cluster *cl, size_t max_pending, bool inline_cb)
{
    char *store_dir = cl->store_dir;

    memset(cl, 0, sizeof(*cl));
    cl->store_dir = store_dir;
    int lfd[N];
    for (int i = 0; i < N; i++) {
        lfd[i] = plv_sock_listen("127.0.0.1", 0, NULL);
        ck_assert_int_ge(lfd[i], 0);
        cl->addr[i] = (PlvPeerAddr){ .id = i, .host = "127.0.0.1",
                                     .port = plv_sock_local_port(lfd[i]) };
        collector_init(&cl->c[i]);
    }
    for (int i = 0; i < N; i++) {
        driver_start(cl, i, lfd[i], PLV_INC_INITIAL, max_pending, inline_cb);
    }
}

/* Driver @f dies: its outputs so far are forgotten with it. */
static void driver_kill(Cluster *cl, int f)
{
    plv_driver_free(cl->d[f]);
    cl->d[f] = NULL;
    collector_clear(&cl->c[f]);
    memset(&cl->c[f], 0, sizeof(cl->c[f]));
    collector_init(&cl->c[f]);
}

/* ... and comes back on its port as incarnation @inc. */
static void driver_restart(Cluster *cl, int f, uint64_t inc)
{
    int lfd = plv_sock_listen("127.0.0.1", cl->addr[f].port, NULL);
    ck_assert_int_ge(lfd, 0);
    driver_start(cl, f, lfd, inc, 0, false);
}

static void cluster_start(Cluster *cl)
{
    cluster_start_opts(cl, 0, false);
}

static void cluster_free(Cluster *cl)
{
    for (int i = 0; i < N; i++) {
        plv_driver_free(cl->d[i]);
        collector_clear(&cl->c[i]);
    }
}

/* Drain every live driver's outputs, waiting up to @ms for some. */
static void drain(Cluster *cl, int ms)
{
    struct pollfd pfd[N];
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (cl->d[i]) {
            pfd[n++] = (struct pollfd){ .fd = plv_driver_event_fd(cl->d[i]),
                                        .events = POLLIN };
        }
    }
    poll(pfd, n, ms);
    for (int i = 0; i < N; i++) {
        if (cl->d[i]) {
            plv_driver_dispatch(cl->d[i], &CB, &cl->c[i]);
        }
    }
}

#define DRAIN_UNTIL(cl, cond, ms)                                          \
    do {                                                                   \
        gint64 end_ = g_get_monotonic_time() + (int64_t)(ms) * 1000;       \
        while (!(cond)) {                                                  \
            ck_assert_msg(g_get_monotonic_time() < end_, "timeout: %s", #cond); \
            drain(cl, 5);                                                  \
        }                                                                  \
    } while (0)

/* The leader all live drivers agree on, or -1. */
static int agreed_leader(Cluster *cl)
{
    int leader = -1;
    for (int i = 0; i < N; i++) {
        if (cl->d[i] && plv_driver_role(cl->d[i]) == PLV_ROLE_LEADER) {
            leader = i;
        }
    }
    if (leader < 0) {
        return -1;
    }
    for (int i = 0; i < N; i++) {
        if (cl->d[i] && plv_driver_leader(cl->d[i]) != (uint32_t)leader) {
            return -1;
        }
    }
    return leader;
}

/* Submit packets "<tag><k>" for k in [from, to) to @leader. */
static void submit_range(Cluster *cl, int leader, const char *tag, int from, int to)
{
    for (int k = from; k < to; k++) {
        char pkt[32];
        int len = snprintf(pkt, sizeof(pkt), "%s%d", tag, k);
        int r;
        while ((r = plv_driver_submit(cl->d[leader], pkt, len)) == -ENOBUFS) {
            drain(cl, 1);
        }
        ck_assert_int_eq(r, 0);
    }
}

static bool have_packets(Cluster *cl, guint n)
{
    for (int i = 0; i < N; i++) {
        if (cl->d[i] && packets_len(&cl->c[i]) < n) {
            return false;
        }
    }
    return true;
}

/* Every live replica committed the same entries (a common prefix). */
static void assert_same_logs(Cluster *cl)
{
    int ref = -1;
    for (int i = 0; i < N; i++) {
        if (!cl->d[i]) {
            continue;
        }
        ck_assert(cl->c[i].order_ok);
        if (ref < 0) {
            ref = i;
            continue;
        }
        GPtrArray *a = cl->c[ref].entries, *b = cl->c[i].entries;
        guint n = MIN(a->len, b->len);
        for (guint k = 0; k < n; k++) {
            ck_assert_msg(g_bytes_equal(a->pdata[k], b->pdata[k]),
                          "replicas %d and %d differ at entry %u", ref, i, k + 1);
        }
        GPtrArray *pa = cl->c[ref].packets, *pb = cl->c[i].packets;
        n = MIN(pa->len, pb->len);
        for (guint k = 0; k < n; k++) {
            ck_assert_str_eq(pa->pdata[k], pb->pdata[k]);
        }
    }
}

START_TEST(driver_elect_commit_and_survive_a_kill)
{
    Cluster cl = { 0 };
    cluster_start(&cl);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);

    /* Only the leader takes packets. */
    int other = (leader + 1) % N;
    ck_assert_int_eq(plv_driver_submit(cl.d[other], "x", 1), -EPERM);
    ck_assert_int_eq(plv_driver_submit(cl.d[leader], "", 0), -EINVAL);

    const int M = 500;
    submit_range(&cl, leader, "a", 0, M);
    DRAIN_UNTIL(&cl, have_packets(&cl, M), 10000);
    assert_same_logs(&cl);
    /* Nothing lost, nothing duplicated, submission order kept. */
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(cl.c[i].packets->len, M);
        for (int k = 0; k < M; k++) {
            char pkt[32];
            snprintf(pkt, sizeof(pkt), "a%d", k);
            ck_assert_str_eq(cl.c[i].packets->pdata[k], pkt);
        }
    }
    PlvDriverStats st;
    plv_driver_stats(cl.d[leader], &st);
    ck_assert_uint_eq(st.submitted, M);
    ck_assert_uint_eq(st.msgs_bad, 0);
    ck_assert_uint_eq(st.transport.auth_failures, 0);
    ck_assert_uint_ge(st.committed, 1);

    /* Read from this thread while the driver threads run: every link of
     * the leader is up and has carried consensus traffic. */
    PlvPeerLinkInfo links[N];
    plv_driver_peer_links(cl.d[leader], links, N);
    gint64 now = g_get_monotonic_time();
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(links[i].peer, i);
        if (i == leader) {
            ck_assert_int_eq(links[i].state, PLV_PEER_LINK_DOWN);
            ck_assert_int_eq(links[i].last_heard_us, 0);
        } else {
            ck_assert_int_eq(links[i].state, PLV_PEER_LINK_UP);
            ck_assert_int_gt(links[i].last_heard_us, 0);
            ck_assert_int_le(links[i].last_heard_us, now);
        }
    }

    /* Kill the leader: the other two elect one and keep committing. */
    plv_driver_free(cl.d[leader]);
    cl.d[leader] = NULL;
    int leader2;
    DRAIN_UNTIL(&cl, (leader2 = agreed_leader(&cl)) >= 0, 15000);
    /* ...and no longer see the old leader's link up. */
    for (int i = 0; i < N; i++) {
        if (cl.d[i]) {
            DRAIN_UNTIL(&cl, (plv_driver_peer_links(cl.d[i], links, N),
                              links[leader].state != PLV_PEER_LINK_UP), 5000);
        }
    }
    ck_assert_int_ne(leader2, leader);
    submit_range(&cl, leader2, "b", 0, M);
    DRAIN_UNTIL(&cl, have_packets(&cl, 2 * M), 10000);
    assert_same_logs(&cl);
    for (int i = 0; i < N; i++) {
        if (!cl.d[i]) {
            continue;
        }
        GPtrArray *p = cl.c[i].packets;
        ck_assert_uint_eq(p->len, 2 * M);
        ck_assert_str_eq(p->pdata[M], "b0");
        ck_assert_str_eq(p->pdata[2 * M - 1], "b499");
    }
    cluster_free(&cl);
}
END_TEST

/*
 * A dispatcher that holds delivery (a QEMU replica whose syncvm runs in the
 * background) gets the held entry again first, and everything in order,
 * once it releases; nothing is delivered while it holds.
 */
START_TEST(driver_dispatch_hold_keeps_order)
{
    Cluster cl = { 0 };
    cluster_start(&cl);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);

    int held_rounds = 0, m = 0;
    Collector *c = &cl.c[(leader + 1) % N];
    PlvDriver *d = cl.d[(leader + 1) % N];
    gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    c->hold_at = c->last_index + 1;
    while (held_rounds < 5) {
        ck_assert_msg(g_get_monotonic_time() < end, "timeout: %d holds", held_rounds);
        submit_range(&cl, leader, "h", m, m + 10);
        m += 10;
        drain(&cl, 5);
        if (plv_driver_dispatch_held(d)) {
            uint64_t before = c->last_index;

            /* Held: more dispatching delivers nothing. */
            drain(&cl, 5);
            ck_assert_uint_eq(c->last_index, before);
            held_rounds++;
            plv_driver_dispatch_release(d);
            c->hold_at = c->last_index + 1 + held_rounds % 2;
        }
    }
    c->hold_at = 0;
    DRAIN_UNTIL(&cl, have_packets(&cl, m), 10000);
    ck_assert_int_eq(c->holds, held_rounds);
    assert_same_logs(&cl);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(cl.c[i].packets->len, m);
    }
    cluster_free(&cl);
}
END_TEST

START_TEST(driver_witness_kill_and_glib_dispatch)
{
    Cluster cl = { 0 };
    cluster_start(&cl);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);

    /* Kill a follower instead: the majority still commits. */
    int victim = (leader + 2) % N;
    plv_driver_free(cl.d[victim]);
    cl.d[victim] = NULL;
    submit_range(&cl, leader, "w", 0, 100);

    /* Drain the leader through a GMainContext this time. */
    GMainContext *ctx = g_main_context_new();
    guint id = plv_driver_attach(cl.d[leader], ctx, &CB, &cl.c[leader]);
    ck_assert_uint_ne(id, 0);
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (cl.c[leader].packets->len < 100) {
        ck_assert(g_get_monotonic_time() < end);
        g_main_context_iteration(ctx, FALSE);
        g_usleep(1000);
    }
    g_source_destroy(g_main_context_find_source_by_id(ctx, id));
    g_main_context_unref(ctx);
    DRAIN_UNTIL(&cl, have_packets(&cl, 100), 10000);
    assert_same_logs(&cl);
    cluster_free(&cl);
}
END_TEST

START_TEST(driver_backpressure_without_majority)
{
    Cluster cl = { 0 };
    cluster_start_opts(&cl, 4096, false);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);
    submit_range(&cl, leader, "c", 0, 10);
    DRAIN_UNTIL(&cl, cl.c[leader].packets->len == 10, 10000);

    /* Both followers gone: nothing commits, so the queue must push back. */
    for (int i = 0; i < N; i++) {
        if (i != leader) {
            plv_driver_free(cl.d[i]);
            cl.d[i] = NULL;
        }
    }
    int r = 0, taken = 0;
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (g_get_monotonic_time() < end) {
        char pkt[64] = "d";
        r = plv_driver_submit(cl.d[leader], pkt, sizeof(pkt));
        if (r == -ENOBUFS || r == -EPERM) {
            break;
        }
        ck_assert_int_eq(r, 0);
        if (++taken % 16 == 0) {
            g_usleep(1000);     /* let the driver move them along */
        }
    }
    /* -EPERM is fine too: the lone leader may have stepped down already. */
    ck_assert_msg(r == -ENOBUFS || r == -EPERM, "submit never pushed back");
    /* Bounded: what is queued plus the one batch already in flight. */
    ck_assert_int_le(taken, 2 * 4096 / 64);
    drain(&cl, 50);
    ck_assert_uint_eq(cl.c[leader].packets->len, 10);
    PlvDriverStats st;
    plv_driver_stats(cl.d[leader], &st);
    ck_assert_uint_ge(st.refused, 1);
    ck_assert_uint_eq(st.dropped_lost, 0);
    cluster_free(&cl);
}
END_TEST

START_TEST(driver_inline_callbacks_closed_loop)
{
    Cluster cl = { 0 };
    cluster_start_opts(&cl, 0, true);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);
    /* Nothing is queued for the caller: callbacks ran on the driver threads. */
    ck_assert(!plv_driver_wait(cl.d[leader], 0));

    const int M = 2000;
    pthread_mutex_lock(&cl.c[leader].lock);
    cl.c[leader].resubmit = M;
    pthread_mutex_unlock(&cl.c[leader].lock);
    /* Start the loop; from here on the leader's callback submits. */
    ck_assert_int_eq(plv_driver_submit(cl.d[leader], "start", 5), 0);
    DRAIN_UNTIL(&cl, have_packets(&cl, M + 1), 20000);
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&cl.c[i].lock);
    }
    assert_same_logs(&cl);
    for (int i = 0; i < N; i++) {
        GPtrArray *p = cl.c[i].packets;
        ck_assert_uint_eq(p->len, M + 1);
        ck_assert_str_eq(p->pdata[0], "start");
        ck_assert_str_eq(p->pdata[M], "i1999");
    }
    for (int i = 0; i < N; i++) {
        pthread_mutex_unlock(&cl.c[i].lock);
    }
    cluster_free(&cl);
}
END_TEST

START_TEST(driver_restarted_follower_rejoins)
{
    Cluster cl = { 0 };
    cluster_start(&cl);
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);
    submit_range(&cl, leader, "r", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 100), 10000);

    /* A follower dies and comes back as a new incarnation, memory lost. */
    int f = (leader + 1) % N;
    driver_kill(&cl, f);
    submit_range(&cl, leader, "s", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 200), 10000);
    driver_restart(&cl, f, PLV_INC_INITIAL + 1);

    /* It learns the whole log again (through the reconnected transport)
     * and then follows new commits. */
    DRAIN_UNTIL(&cl, have_packets(&cl, 200), 15000);
    leader = agreed_leader(&cl);
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 15000);
    submit_range(&cl, leader, "t", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 300), 15000);
    assert_same_logs(&cl);
    ck_assert_str_eq(cl.c[f].packets->pdata[0], "r0");
    ck_assert_str_eq(cl.c[f].packets->pdata[299], "t99");
    PlvDriverStats st;
    plv_driver_stats(cl.d[leader], &st);
    ck_assert_uint_ge(st.transport.reconnects, 1);
    cluster_free(&cl);
}
END_TEST

/*
 * Each driver keeps its consensus state. Two followers are killed, the
 * leader alone commits nothing, both come back as new incarnations with
 * their state: they vote at once, and the three commit again, with every
 * packet committed before in its place.
 */
START_TEST(driver_two_restarted_with_kept_state)
{
    Cluster cl = { .store_dir = g_dir_make_tmp("plv-driver-XXXXXX", NULL) };
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", cl.store_dir);
    int leader, a, b;
    PlvDriverStats st;

    cluster_start(&cl);
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);
    submit_range(&cl, leader, "r", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 100), 10000);
    plv_driver_stats(cl.d[leader], &st);
    ck_assert_uint_gt(st.store.appends, 0);
    ck_assert(!st.store_failed);

    a = (leader + 1) % N;
    b = (leader + 2) % N;
    driver_kill(&cl, a);
    driver_kill(&cl, b);
    drain(&cl, 300);
    driver_restart(&cl, a, PLV_INC_INITIAL + 1);
    driver_restart(&cl, b, PLV_INC_INITIAL + 1);
    ck_assert(cl.restored[a] && cl.restored[b]);
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 15000);
    submit_range(&cl, leader, "s", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 200), 15000);
    assert_same_logs(&cl);
    ck_assert_str_eq(cl.c[a].packets->pdata[0], "r0");
    ck_assert_str_eq(cl.c[b].packets->pdata[199], "s99");
    cluster_free(&cl);
    ck_assert_int_eq(system(cmd), 0);
    g_free(cl.store_dir);
}
END_TEST

/*
 * The disk under a driver's consensus state fails: the file it keeps it
 * in is made /dev/full under it (the same descriptor, so the next write
 * gets ENOSPC from the kernel). That replica may have promised what it
 * cannot keep, so it must fall silent: it is the leader here, and the two
 * others elect one of them and commit on, every earlier packet in place.
 */
static void make_disk_full(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    int done = 0;

    ck_assert_int_ge(full, 0);
    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *link = g_strdup_printf("/proc/self/fd/%s", name);
        g_autofree char *target = g_file_read_link(link, NULL);

        if (target && !strcmp(target, path)) {
            ck_assert_int_ge(dup3(full, atoi(name), O_CLOEXEC), 0);
            done++;
        }
    }
    close(full);
    ck_assert_int_eq(done, 1);
}

START_TEST(driver_store_failure_silences_the_replica)
{
    Cluster cl = { .store_dir = g_dir_make_tmp("plv-driver-XXXXXX", NULL) };
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", cl.store_dir);
    g_autofree char *path = NULL;
    int leader, a, b, next = -1;
    PlvDriverStats st;

    cluster_start(&cl);
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 10000);
    submit_range(&cl, leader, "r", 0, 100);
    DRAIN_UNTIL(&cl, have_packets(&cl, 100), 10000);

    path = g_strdup_printf("%s/r%d.paxos", cl.store_dir, leader);
    make_disk_full(path);
    a = (leader + 1) % N;
    b = (leader + 2) % N;
    /* Its next step writes, fails, and it says nothing from then on. */
    ck_assert_int_eq(plv_driver_submit(cl.d[leader], "lost", 4), 0);
    DRAIN_UNTIL(&cl, (plv_driver_stats(cl.d[leader], &st), st.store_failed), 10000);
    DRAIN_UNTIL(&cl, (next = plv_driver_role(cl.d[a]) == PLV_ROLE_LEADER ? a :
                      plv_driver_role(cl.d[b]) == PLV_ROLE_LEADER ? b : -1) >= 0 &&
                     plv_driver_leader(cl.d[a]) == (uint32_t)next &&
                     plv_driver_leader(cl.d[b]) == (uint32_t)next, 15000);
    submit_range(&cl, next, "s", 0, 100);
    DRAIN_UNTIL(&cl, packets_len(&cl.c[a]) >= 200 && packets_len(&cl.c[b]) >= 200, 15000);
    assert_same_logs(&cl);
    ck_assert_str_eq(cl.c[a].packets->pdata[0], "r0");
    ck_assert_str_eq(cl.c[b].packets->pdata[99], "r99");
    ck_assert_str_eq(cl.c[b].packets->pdata[packets_len(&cl.c[b]) - 1], "s99");
    /* The silent one learned nothing after its disk failed. */
    ck_assert_uint_le(packets_len(&cl.c[leader]), 101);
    plv_driver_stats(cl.d[leader], &st);
    ck_assert(st.store_failed);
    cluster_free(&cl);
    ck_assert_int_eq(system(cmd), 0);
    g_free(cl.store_dir);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("driver");
    TCase *tc = tcase_create("driver");
    tcase_set_timeout(tc, 50);
    tcase_add_test(tc, driver_elect_commit_and_survive_a_kill);
    tcase_add_test(tc, driver_witness_kill_and_glib_dispatch);
    tcase_add_test(tc, driver_dispatch_hold_keeps_order);
    tcase_add_test(tc, driver_backpressure_without_majority);
    tcase_add_test(tc, driver_inline_callbacks_closed_loop);
    tcase_add_test(tc, driver_restarted_follower_rejoins);
    tcase_add_test(tc, driver_two_restarted_with_kept_state);
    tcase_add_test(tc, driver_store_failure_silences_the_replica);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
