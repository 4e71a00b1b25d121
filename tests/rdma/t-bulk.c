/*
 * The bulk link over soft-RoCE: messages far larger than the staging ring
 * arrive intact (checksums both ways), the syncvm engine runs unchanged
 * over the RDMA channel and leaves the secondary's memory equal to the
 * leader's, and a receiver that dies mid-transfer fails the sender's send
 * instead of hanging it.
 */
#include "harness.h"
#include "suites.h"
#include "plover/transport-rdma.h"
#include "plover/syncvm.h"
#include "plover/link.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static const uint8_t SECRET[] = "rdma bulk secret";
#define RING (1u << 20)

static PlvRdmaListener *listen_on(uint16_t port)
{
    GError *err = NULL;
    PlvRdmaListener *ls = plv_rdma_listen(plv_rdma_test_addr(), port, &err);
    CHECKF(ls, "listen: %s", err ? err->message : "?");
    return ls;
}

static PlvBulkLink *accept_one(PlvRdmaListener *ls)
{
    GError *err = NULL;
    PlvBulkLink *l = plv_rdma_link_accept(ls, 1, PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                          sizeof(SECRET), plv_rdma_test_sealed(), RING, 30000, &err);
    CHECKF(l, "accept: %s", err ? err->message : "?");
    return l;
}

static PlvBulkLink *connect_to(uint16_t port)
{
    GError *err = NULL;
    PlvBulkLink *l = plv_rdma_link_connect(plv_rdma_test_addr(), port, 0, 1,
                                           PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                           sizeof(SECRET), plv_rdma_test_sealed(), RING, 30000, &err);
    CHECKF(l, "connect: %s", err ? err->message : "?");
    return l;
}

/* ---- integrity ---- */

static const size_t SIZES[] = { 0, 1, 4095, 4096, 65536, RING / 2 - 32,
                                RING / 2, RING, 5u << 20, 16u << 20 };
#define N_SMALL 200
#define N_MSGS (G_N_ELEMENTS(SIZES) + N_SMALL)

static size_t msg_size(unsigned k)
{
    return k < G_N_ELEMENTS(SIZES) ? SIZES[k] : 1 + k * 37 % 3000;
}

typedef struct Echo {
    PlvRdmaListener *ls;
    bool ok;
} Echo;

/* Receiver: answer every message with its type, length and XXH64. */
static gpointer echo_thread(gpointer opaque)
{
    Echo *e = opaque;
    PlvBulkLink *l = accept_one(e->ls);
    GByteArray *buf = g_byte_array_new();
    e->ok = true;
    for (unsigned k = 0; k < N_MSGS; k++) {
        uint16_t type;
        GError *err = NULL;
        if (plv_bulk_recv(l, &type, buf, 60000, &err) < 0) {
            printf("  receiver: %s\n", err->message);
            e->ok = false;
            break;
        }
        uint64_t sum[3] = { type, buf->len, XXH64(buf->data, buf->len, 0) };
        struct iovec iov = { sum, sizeof(sum) };
        if (plv_bulk_send(l, 2, &iov, 1, &err) < 0) {
            e->ok = false;
            break;
        }
    }
    g_byte_array_unref(buf);
    plv_bulk_close(l);
    return NULL;
}

static void t_integrity(void)
{
    Echo e = { .ls = listen_on(18300) };
    GThread *th = g_thread_new("echo", echo_thread, &e);
    PlvBulkLink *l = connect_to(18300);
    CHECK(plv_bulk_peer_id(l) == 1);
    GByteArray *reply = g_byte_array_new();
    uint8_t *data = g_malloc(16u << 20);
    GRand *rnd = g_rand_new_with_seed(3);
    uint64_t bytes = 0;
    gint64 t0 = g_get_monotonic_time();
    for (unsigned k = 0; k < N_MSGS; k++) {
        size_t len = msg_size(k);
        for (size_t i = 0; i < len; i += 4) {
            uint32_t v = g_rand_int(rnd);
            memcpy(data + i, &v, MIN(4, len - i));
        }
        /* Two iovecs, split unevenly, to exercise the gather. */
        struct iovec iov[2] = { { data, len / 3 }, { data + len / 3, len - len / 3 } };
        GError *err = NULL;
        CHECKF(plv_bulk_send(l, 100 + k, iov, 2, &err) == 0, "send %u: %s",
               k, err->message);
        uint16_t type;
        CHECKF(plv_bulk_recv(l, &type, reply, 60000, &err) == 0, "reply %u: %s",
               k, err->message);
        uint64_t sum[3];
        CHECK(type == 2 && reply->len == sizeof(sum));
        memcpy(sum, reply->data, sizeof(sum));
        CHECKF(sum[0] == 100 + k && sum[1] == len && sum[2] == XXH64(data, len, 0),
               "message %u (%zu bytes) arrived changed", k, len);
        bytes += len;
    }
    double s = (g_get_monotonic_time() - t0) / 1e6;
    printf("  %u messages, %.1f MiB verified (%.1f MiB/s over soft-RoCE)\n",
           (unsigned)N_MSGS, bytes / 1048576.0, bytes / 1048576.0 / s);
    g_thread_join(th);
    CHECK(e.ok);
    g_rand_free(rnd);
    g_free(data);
    g_byte_array_unref(reply);
    plv_bulk_close(l);
    plv_rdma_listener_free(e.ls);
}

/* ---- syncvm over RDMA ---- */

#define PAGES 2048
#define PAGE 4096

typedef struct Side {
    PlvMemView *mv;
    uint8_t *mem;
    PlvHashKey key;
    PlvSyncvmConfig cfg;
    PlvSyncvmStats st;
    PlvBulkLink *link;
    int rc;
    char *error;
} Side;

static void side_init(Side *s, const uint8_t *image, PlvBulkLink *l)
{
    memset(s, 0, sizeof(*s));
    s->mem = g_malloc(PAGES * PAGE);
    memcpy(s->mem, image, PAGES * PAGE);
    s->mv = plv_memview_new();
    CHECK(plv_memview_add_region(s->mv, 1, PAGE, PAGES, s->mem, NULL) == 0);
    s->link = l;
    plv_hash_key_derive(&s->key, plv_bulk_session_key(l), PLV_LINK_KEY_LEN);
    s->cfg.vid = 2;
    s->cfg.epoch = 9;
    s->cfg.key = &s->key;
    s->cfg.hash_threads = 1;
    s->cfg.timeout_ms = 30000;  /* rxe under TCG */
    s->cfg.max_attempts = 1;
}

/* Change @n pages starting at @first (stride 3) and mark them dirty. */
static void scribble(Side *s, unsigned first, unsigned n, uint8_t v)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned p = (first + 3 * i) % PAGES;
        memset(s->mem + (size_t)p * PAGE + (i % 7) * 64, v + i, 64);
        plv_memview_mark_dirty(s->mv, 0, (uint64_t)p * PAGE, PAGE);
    }
}

static gpointer secondary_thread(gpointer opaque)
{
    Side *s = opaque;
    PlvSyncvmChannel ch;
    GError *err = NULL;
    plv_syncvm_channel_init_bulk(&ch, s->link);
    s->rc = plv_syncvm_secondary_run(&s->cfg, &ch, s->mv, &s->st, &err);
    if (err) {
        s->error = g_strdup(err->message);
        g_error_free(err);
    }
    return NULL;
}

static void run_syncvm(bool overlap, bool deltas, uint16_t port);

static void t_syncvm(void)
{
    run_syncvm(false, false, 18310);
}

/* The leader sends pages from a second thread while it still receives. */
static void t_syncvm_overlap(void)
{
    run_syncvm(true, false, 18311);
}

/*
 * Sub-page deltas and compression, as the QEMU glue runs every ordinary
 * syncvm: BLOCKREQ and BLOCKHASHES go back and forth on the one link.
 */
static void t_syncvm_deltas(void)
{
    run_syncvm(false, true, 18312);
}

static void run_syncvm(bool overlap, bool deltas, uint16_t port)
{
    PlvRdmaListener *ls = listen_on(port);
    /* Accept on a thread while connecting here. */
    GThread *ath = g_thread_new("accept", (GThreadFunc)accept_one, ls);
    PlvBulkLink *ll = connect_to(port);
    PlvBulkLink *sl = g_thread_join(ath);

    uint8_t *image = g_malloc(PAGES * PAGE);
    GRand *rnd = g_rand_new_with_seed(11);
    for (size_t i = 0; i < PAGES * PAGE / 4; i++) {
        ((uint32_t *)image)[i] = g_rand_int(rnd);
    }
    Side L, S;
    side_init(&L, image, ll);
    side_init(&S, image, sl);
    L.cfg.overlap_send = overlap;
    L.cfg.page_deltas = L.cfg.compress = deltas;
    scribble(&L, 0, 300, 1);    /* the leader ran ahead ... */
    scribble(&S, 150, 200, 2);  /* ... and the secondary diverged */
    /* Pages both touched but left equal: hashed, compared, not sent. */
    for (unsigned p = 1000; p < 1200; p++) {
        plv_memview_mark_dirty(L.mv, 0, (uint64_t)p * PAGE, PAGE);
        plv_memview_mark_dirty(S.mv, 0, (uint64_t)p * PAGE, PAGE);
    }
    GThread *th = g_thread_new("secondary", secondary_thread, &S);
    PlvSyncvmChannel ch;
    GError *err = NULL;
    plv_syncvm_channel_init_bulk(&ch, ll);
    int rc = plv_syncvm_leader_run(&L.cfg, &ch, L.mv, &L.st, &err);
    g_thread_join(th);
    CHECKF(rc == 0, "leader: %s", err ? err->message : "?");
    CHECKF(S.rc == 0, "secondary: %s", S.error ? S.error : "?");
    CHECK(memcmp(L.mem, S.mem, PAGES * PAGE) == 0);
    CHECKF(L.st.divergent_pages == 300 && L.st.dirty_union == 500,
           "divergent %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
           L.st.divergent_pages, L.st.dirty_union);
    /* 64 changed bytes a page: each goes as one or two blocks. */
    CHECKF(!deltas || (L.st.delta_pages == 300 &&
                       L.st.page_bytes < 300 * 2 * 64),
           "deltas: %" G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT
           " bytes", L.st.delta_pages, L.st.page_bytes);
    printf("  syncvm over RDMA%s: union %" G_GUINT64_FORMAT " pages, %"
           G_GUINT64_FORMAT " divergent sent (%" G_GUINT64_FORMAT
           " page bytes), %.1f ms\n",
           overlap ? " (overlapped send)" : deltas ? " (page deltas)" : "",
           L.st.dirty_union, L.st.divergent_pages, L.st.page_bytes,
           L.st.t_total_us / 1000.0);
    plv_memview_free(L.mv);
    plv_memview_free(S.mv);
    g_free(L.mem);
    g_free(S.mem);
    g_free(image);
    g_rand_free(rnd);
    plv_bulk_close(ll);
    plv_bulk_close(sl);
    plv_rdma_listener_free(ls);
}

/* ---- one thread sends while another receives, on both ends ---- */

#define DUPLEX_N 60
#define DUPLEX_LEN (700 * 1024)

typedef struct Duplex {
    PlvBulkLink *l;
    uint32_t seed;
    bool ok;
} Duplex;

static void duplex_fill(uint8_t *b, uint32_t seed, unsigned k)
{
    uint32_t x = seed * 2654435761u + k;
    for (size_t i = 0; i < DUPLEX_LEN; i += 4) {
        x = x * 1103515245u + 12345u;
        memcpy(b + i, &x, 4);
    }
}

static gpointer duplex_send(gpointer opaque)
{
    Duplex *d = opaque;
    uint8_t *b = g_malloc(DUPLEX_LEN);
    d->ok = true;
    for (unsigned k = 0; k < DUPLEX_N && d->ok; k++) {
        duplex_fill(b, d->seed, k);
        struct iovec iov = { b, DUPLEX_LEN };
        d->ok = plv_bulk_send(d->l, 7, &iov, 1, NULL) == 0;
    }
    g_free(b);
    return NULL;
}

static gpointer duplex_recv(gpointer opaque)
{
    Duplex *d = opaque;
    uint8_t *want = g_malloc(DUPLEX_LEN);
    GByteArray *got = g_byte_array_new();
    d->ok = true;
    for (unsigned k = 0; k < DUPLEX_N && d->ok; k++) {
        uint16_t type;
        duplex_fill(want, d->seed, k);
        d->ok = plv_bulk_recv(d->l, &type, got, 60000, NULL) == 0 &&
                type == 7 && got->len == DUPLEX_LEN &&
                !memcmp(got->data, want, DUPLEX_LEN);
    }
    g_byte_array_unref(got);
    g_free(want);
    return NULL;
}

static void t_duplex(void)
{
    PlvRdmaListener *ls = listen_on(18340);
    GThread *ath = g_thread_new("accept", (GThreadFunc)accept_one, ls);
    PlvBulkLink *a = connect_to(18340);
    PlvBulkLink *b = g_thread_join(ath);
    /* a's sender pairs with b's receiver (seed 1), and the other way. */
    Duplex d[4] = {
        { .l = a, .seed = 1 }, { .l = b, .seed = 1 },
        { .l = b, .seed = 2 }, { .l = a, .seed = 2 },
    };
    GThread *th[4] = {
        g_thread_new("a-send", duplex_send, &d[0]),
        g_thread_new("b-recv", duplex_recv, &d[1]),
        g_thread_new("b-send", duplex_send, &d[2]),
        g_thread_new("a-recv", duplex_recv, &d[3]),
    };
    for (int i = 0; i < 4; i++) {
        g_thread_join(th[i]);
        CHECKF(d[i].ok, "thread %d failed", i);
    }
    printf("  %d x %d KiB each way at once, one sending and one receiving "
           "thread per end\n", DUPLEX_N, DUPLEX_LEN / 1024);
    plv_bulk_close(a);
    plv_bulk_close(b);
    plv_rdma_listener_free(ls);
}

/* ---- a receiver that dies ---- */

static void t_receiver_dies(void)
{
    /* Fork before this process touches RDMA (verbs contexts do not cross
     * fork); the child says when it listens. */
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(go[0]);
        PlvRdmaListener *ls = listen_on(18320);
        CHECK(write(go[1], "g", 1) == 1);
        PlvBulkLink *l = accept_one(ls);
        GByteArray *b = g_byte_array_new();
        uint16_t type;
        plv_bulk_recv(l, &type, b, 60000, NULL);
        raise(SIGKILL);         /* mid-transfer, without a goodbye */
    }
    char c;
    close(go[1]);
    CHECK(read(go[0], &c, 1) == 1);
    close(go[0]);
    PlvBulkLink *l = connect_to(18320);
    size_t len = 4u << 20;
    uint8_t *data = g_malloc0(len);
    struct iovec iov = { data, len };
    GError *err = NULL;
    int rc = 0;
    gint64 t0 = g_get_monotonic_time();
    for (int k = 0; k < 64 && rc == 0; k++) {
        rc = plv_bulk_send(l, 1, &iov, 1, &err);
    }
    waitpid(pid, NULL, 0);
    CHECKF(rc < 0, "sends to a dead receiver all succeeded");
    printf("  send failed after %.1f s: %s\n",
           (g_get_monotonic_time() - t0) / 1e6, err->message);
    g_error_free(err);
    g_free(data);
    plv_bulk_close(l);
}

/* ---- closing right after sending loses nothing ---- */

static gpointer send_and_close(gpointer opaque)
{
    PlvBulkLink *l = accept_one(opaque);
    static uint8_t big[2u << 20];
    struct iovec iov[3] = { { "one", 3 }, { "two", 3 }, { big, sizeof(big) } };
    for (int i = 0; i < 3; i++) {
        CHECK(plv_bulk_send(l, 10 + i, &iov[i], 1, NULL) == 0);
    }
    plv_bulk_close(l);     /* at once, like a secondary after its ACK */
    return NULL;
}

static void t_close_after_send(void)
{
    for (int round = 0; round < 5; round++) {
        PlvRdmaListener *ls = listen_on(18330 + round);
        GThread *th = g_thread_new("sender", send_and_close, ls);
        PlvBulkLink *l = connect_to(18330 + round);
        GByteArray *b = g_byte_array_new();
        for (int i = 0; i < 3; i++) {
            uint16_t type;
            GError *err = NULL;
            CHECKF(plv_bulk_recv(l, &type, b, 30000, &err) == 0,
                   "round %d, message %d: %s", round, i, err->message);
            CHECK(type == 10 + i && b->len == (i < 2 ? 3u : 2u << 20));
        }
        g_thread_join(th);
        g_byte_array_unref(b);
        plv_bulk_close(l);
        plv_rdma_listener_free(ls);
    }
}

/* ---- cancelled from another thread ---- */

typedef struct CancelLater {
    PlvBulkLink *l;
    int ms;
} CancelLater;

static gpointer cancel_later(gpointer opaque)
{
    CancelLater *c = opaque;

    g_usleep(c->ms * 1000);
    plv_bulk_cancel(c->l);
    return NULL;
}

static gpointer accept_link(gpointer opaque)
{
    return accept_one(opaque);
}

/* A call that began at @t0 ended, long before its timeout, cancelled. */
static void check_cancelled(int rc, GError *err, gint64 t0, const char *what)
{
    CHECKF(rc < 0, "%s: went through on a cancelled link", what);
    CHECKF(strstr(err->message, "cancelled"), "%s: %s", what, err->message);
    CHECKF(g_get_monotonic_time() - t0 < 5 * G_USEC_PER_SEC, "%s: ended after %.1f s",
           what, (g_get_monotonic_time() - t0) / 1e6);
    g_error_free(err);
}

/* A pair on @port: *l dialed, *peer accepted. */
static PlvRdmaListener *pair_on(uint16_t port, PlvBulkLink **l, PlvBulkLink **peer)
{
    PlvRdmaListener *ls = listen_on(port);
    GThread *th = g_thread_new("accept", accept_link, ls);

    *l = connect_to(port);
    *peer = g_thread_join(th);
    return ls;
}

/*
 * plv_bulk_cancel from another thread ends a send waiting for ring
 * credit (its stall bound is 30 s) and a receive waiting for a message,
 * at once, and refuses every later call.
 */
static void t_cancel(void)
{
    PlvBulkLink *l, *peer;
    PlvRdmaListener *ls = pair_on(18340, &l, &peer);
    size_t len = 4u << 20;
    uint8_t *data = g_malloc0(len);
    struct iovec iov = { data, len };
    GByteArray *b = g_byte_array_new();
    CancelLater c = { .l = l, .ms = 200 };
    GError *err = NULL;
    uint16_t type;
    gint64 t0 = g_get_monotonic_time();
    GThread *th = g_thread_new("cancel", cancel_later, &c);
    int rc = 0;

    /* The sender: the peer reads nothing, so the ring fills. */
    for (int k = 0; k < 64 && rc == 0; k++) {
        rc = plv_bulk_send(l, 1, &iov, 1, &err);
    }
    g_thread_join(th);
    check_cancelled(rc, err, t0, "send");
    err = NULL;
    rc = plv_bulk_send(l, 1, &iov, 1, &err);
    check_cancelled(rc, err, t0, "a later send");
    plv_bulk_close(l);
    plv_bulk_close(peer);
    plv_rdma_listener_free(ls);

    /* The receiver, on a pair whose dialer sends nothing. */
    ls = pair_on(18341, &l, &peer);
    c.l = peer;
    err = NULL;
    t0 = g_get_monotonic_time();
    th = g_thread_new("cancel", cancel_later, &c);
    rc = plv_bulk_recv(peer, &type, b, 30000, &err);
    g_thread_join(th);
    check_cancelled(rc, err, t0, "receive");
    g_byte_array_unref(b);
    g_free(data);
    plv_bulk_close(l);
    plv_bulk_close(peer);
    plv_rdma_listener_free(ls);
}

/* ---- strangers ---- */

typedef struct Accept {
    PlvRdmaListener *ls;
    bool sealed;
    PlvBulkLink *l;
    GError *err;
} Accept;

static gpointer accept_quietly(gpointer opaque)
{
    Accept *a = opaque;
    a->l = plv_rdma_link_accept(a->ls, 1, PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                sizeof(SECRET), a->sealed, RING, 3000, &a->err);
    return NULL;
}

/* An end that seals its records and one that does not never connect (a
 * record's size depends on it), and both say why. */
static void t_sealing_must_match(void)
{
    PlvRdmaListener *ls = listen_on(18350);
    Accept a = { .ls = ls, .sealed = !plv_rdma_test_sealed() };
    GError *err = NULL;
    GThread *th = g_thread_new("acceptor", accept_quietly, &a);
    PlvBulkLink *c = plv_rdma_link_connect(plv_rdma_test_addr(), 18350, 0, 1,
                                           PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                           sizeof(SECRET), plv_rdma_test_sealed(),
                                           RING, 3000, &err);
    g_thread_join(th);
    CHECK(!c && !a.l);
    CHECKF(a.err && strstr(a.err->message, "seal"), "acceptor: %s",
           a.err ? a.err->message : "no error");
    printf("  acceptor: %s\n", a.err->message);
    g_clear_error(&err);
    g_clear_error(&a.err);
    plv_rdma_listener_free(ls);
}

/* A listener that allows only another address refuses our request before
 * it allocates anything; allowing ours, the same dial gets through. */
static void t_stranger_refused(void)
{
    PlvRdmaListener *ls = listen_on(18340);
    PlvAddrSet *only = plv_addr_set_new();
    Accept a = { .ls = ls, .sealed = plv_rdma_test_sealed() };
    GError *err = NULL;

    plv_addr_set_add_host(only, "192.0.2.1");   /* TEST-NET-1: never ours */
    plv_addr_set_resolve(only);
    plv_rdma_listener_allow(ls, only);
    GThread *th = g_thread_new("acceptor", accept_quietly, &a);
    PlvBulkLink *c = plv_rdma_link_connect(plv_rdma_test_addr(), 18340, 0, 1,
                                           PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                           sizeof(SECRET), plv_rdma_test_sealed(), RING, 3000, &err);
    g_thread_join(th);
    CHECK(!c && !a.l);
    g_clear_error(&err);
    g_clear_error(&a.err);
    CHECKF(plv_rdma_listener_strangers(ls) == 1, "strangers %" G_GUINT64_FORMAT,
           plv_rdma_listener_strangers(ls));

    PlvAddrSet *ours = plv_addr_set_new();
    plv_addr_set_add_host(ours, plv_rdma_test_addr());
    plv_addr_set_resolve(ours);
    plv_rdma_listener_allow(ls, ours);
    a.l = NULL;
    th = g_thread_new("acceptor", accept_quietly, &a);
    c = connect_to(18340);
    g_thread_join(th);
    CHECK(a.l != NULL);
    plv_bulk_close(a.l);
    plv_bulk_close(c);
    plv_rdma_listener_free(ls);
}

const PlvRdmaTest plv_rdma_bulk_tests[] = {
    { "bulk_stranger_refused_before_allocation", t_stranger_refused, 60 },
    { "bulk_sealing_must_match", t_sealing_must_match, 60 },
    { "bulk_integrity", t_integrity, 180 },
    { "bulk_syncvm", t_syncvm, 180 },
    { "bulk_syncvm_overlapped_send", t_syncvm_overlap, 180 },
    { "bulk_syncvm_page_deltas", t_syncvm_deltas, 180 },
    { "bulk_duplex_threads", t_duplex, 180 },
    { "bulk_receiver_dies", t_receiver_dies, 120 },
    { "bulk_close_after_send_loses_nothing", t_close_after_send, 120 },
    { "bulk_cancel_from_another_thread", t_cancel, 120 },
};
const size_t plv_rdma_bulk_n = G_N_ELEMENTS(plv_rdma_bulk_tests);
