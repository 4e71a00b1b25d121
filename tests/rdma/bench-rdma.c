/*
 * bench-rdma (make bench-rdma): inside the soft-RoCE test guest, the same
 * measurements over the RDMA transport/link and over TCP in one run:
 *   - transport ping-pong of small messages (round trip),
 *   - commit latency of one input with three drivers (consensus round),
 *   - bulk throughput of the syncvm link (4 MiB messages).
 * Soft-RoCE is RDMA in software inside an emulated guest: the ratios show
 * that the RDMA code path works end to end, not what an RDMA NIC does.
 */
#include "harness.h"
#include "plover/driver.h"
#include "plover/link.h"
#include "plover/sockutil.h"
#include "plover/transport-rdma.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N 3
static const uint8_t SECRET[] = "rdma bench secret";

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    return v[MIN(n - 1, (size_t)(p * n))];
}

/* Transport kinds compared: TCP, RDMA sleeping at once, RDMA spinning. */
enum { K_TCP, K_RDMA, K_RDMA_SPIN };
#define SPIN_US 1000

static PlvTransport *make_transport(int kind, uint32_t self, PlvPeerAddr *a,
                                    size_t n)
{
    GError *err = NULL;
    PlvTransport *t;
    if (kind != K_TCP) {
        PlvRdmaTransportConfig c = { .self_id = self, .peers = a, .n_peers = n,
                                     .secret = SECRET, .secret_len = sizeof(SECRET),
                                     .peer_timeout_ms = 5000,
                                     .sealed = plv_rdma_test_sealed(),
                                     .spin_us = kind == K_RDMA_SPIN ? SPIN_US : 0 };
        t = plv_transport_rdma_new(&c, &err);
    } else {
        PlvTcpTransportConfig c = { .self_id = self, .peers = a, .n_peers = n,
                                    .secret = SECRET, .secret_len = sizeof(SECRET),
                                    .listen_fd = -1 };
        t = plv_transport_tcp_new(&c, &err);
    }
    CHECKF(t, "%s", err ? err->message : "?");
    return t;
}

/* ---- ping-pong: two transports, each on its own thread ---- */

typedef struct Pong {
    PlvTransport *t;
    volatile bool stop;
} Pong;

static void echo_ev(void *opaque, const PlvTransportEvent *ev)
{
    Pong *p = opaque;
    if (ev->kind == PLV_TRANSPORT_MESSAGE) {
        plv_transport_send(p->t, ev->peer, ev->data, ev->len);
    }
}

static gpointer pong_thread(gpointer opaque)
{
    Pong *p = opaque;
    while (!p->stop) {
        plv_transport_wait(p->t, 50, echo_ev, p);
    }
    return NULL;
}

typedef struct Ping {
    int got;
} Ping;

static void ping_ev(void *opaque, const PlvTransportEvent *ev)
{
    if (ev->kind == PLV_TRANSPORT_MESSAGE) {
        ((Ping *)opaque)->got++;
    }
}

static int64_t pingpong_us(int kind, uint16_t port, int rounds)
{
    PlvPeerAddr a[2] = {
        { .id = 0, .host = plv_rdma_test_addr(), .port = port },
        { .id = 1, .host = plv_rdma_test_addr(), .port = port + 1 },
    };
    PlvTransport *t0 = make_transport(kind, 0, a, 2);
    Pong pong = { .t = make_transport(kind, 1, a, 2) };
    CHECK(plv_transport_start(t0, NULL) == 0 && plv_transport_start(pong.t, NULL) == 0);
    GThread *th = g_thread_new("pong", pong_thread, &pong);
    Ping ping = { 0 };
    gint64 end = g_get_monotonic_time() + 30 * 1000000ll;
    while (!plv_transport_peer_up(t0, 1)) {
        CHECK(g_get_monotonic_time() < end);
        plv_transport_wait(t0, 10, ping_ev, &ping);
    }
    int64_t *lat = g_new(int64_t, rounds);
    uint8_t msg[64] = { 0 };
    for (int i = -20; i < rounds; i++) {        /* 20 warm-up rounds */
        int want = ping.got + 1;
        gint64 t = g_get_monotonic_time();
        CHECK(plv_transport_send(t0, 1, msg, sizeof(msg)) == 0);
        while (ping.got < want) {
            CHECK(g_get_monotonic_time() < end + 60 * 1000000ll);
            plv_transport_wait(t0, 100, ping_ev, &ping);
        }
        if (i >= 0) {
            lat[i] = g_get_monotonic_time() - t;
        }
    }
    pong.stop = true;
    plv_transport_wakeup(pong.t);
    g_thread_join(th);
    int64_t med = pct(lat, rounds, 0.5);
    g_free(lat);
    plv_transport_free(t0);
    plv_transport_free(pong.t);
    return med;
}

/* ---- commit latency: three drivers ---- */

typedef struct Count {
    uint64_t inputs;
} Count;

static void on_commit(void *opaque, const PlvEntry *e)
{
    if (e->op == PLV_OP_INPUT) {
        ((Count *)opaque)->inputs++;
    }
}

static void on_event(void *opaque, const PlvEvent *ev)
{
}

static const PlvDriverCallbacks CB = { .committed = on_commit, .event = on_event };

static void commit_us(int kind, uint16_t port, int rounds, int64_t *med,
                      int64_t *p99)
{
    PlvPeerAddr a[N];
    PlvDriver *d[N];
    Count cnt[N] = { { 0 } };
    for (int i = 0; i < N; i++) {
        a[i] = (PlvPeerAddr){ .id = i, .host = plv_rdma_test_addr(), .port = port + i };
    }
    for (int i = 0; i < N; i++) {
        PlvDriverConfig dc;
        plv_driver_config_default(&dc);
        dc.paxos.self = i;
        dc.paxos.n = N;
        dc.paxos.seed = 77 + i;
        dc.tick_ms = 20;
        GError *err = NULL;
        d[i] = plv_driver_new(&dc, make_transport(kind, i, a, N), &err);
        CHECKF(d[i] && plv_driver_start(d[i], &err) == 0, "%s",
               err ? err->message : "?");
    }
    int leader = -1;
    gint64 end = g_get_monotonic_time() + 60 * 1000000ll;
    while (leader < 0) {
        CHECKF(g_get_monotonic_time() < end, "no leader");
        g_usleep(10000);
        for (int i = 0; i < N; i++) {
            plv_driver_dispatch(d[i], &CB, &cnt[i]);
            if (plv_driver_role(d[i]) == PLV_ROLE_LEADER) {
                leader = i;
            }
        }
    }
    int64_t *lat = g_new(int64_t, rounds);
    for (int k = -10; k < rounds; k++) {
        uint64_t want = cnt[leader].inputs + 1;
        gint64 t = g_get_monotonic_time();
        char pkt[16];
        int len = snprintf(pkt, sizeof(pkt), "p%d", k);
        CHECK(plv_driver_submit(d[leader], pkt, len) == 0);
        while (cnt[leader].inputs < want) {
            CHECKF(g_get_monotonic_time() < end + 120 * 1000000ll, "commit stalled");
            plv_driver_wait(d[leader], 100);
            plv_driver_dispatch(d[leader], &CB, &cnt[leader]);
        }
        if (k >= 0) {
            lat[k] = g_get_monotonic_time() - t;
        }
    }
    *med = pct(lat, rounds, 0.5);
    *p99 = pct(lat, rounds, 0.99);
    g_free(lat);
    for (int i = 0; i < N; i++) {
        plv_driver_free(d[i]);
    }
}

/* ---- bulk throughput ---- */

#define BULK_MSG (4u << 20)
#define BULK_N 16

typedef struct Sink {
    bool rdma;
    PlvRdmaListener *rls;
    int tfd;
    bool ok;
} Sink;

static gpointer sink_thread(gpointer opaque)
{
    Sink *s = opaque;
    GByteArray *b = g_byte_array_new();
    uint16_t type;
    GError *err = NULL;
    s->ok = true;
    if (s->rdma) {
        PlvBulkLink *l = plv_rdma_link_accept(s->rls, 1, PLV_LINK_CHANNEL_SYNCVM,
                                              SECRET, sizeof(SECRET), plv_rdma_test_sealed(), 0, 30000,
                                              &err);
        for (int i = 0; l && i < BULK_N; i++) {
            s->ok &= plv_bulk_recv(l, &type, b, 60000, NULL) == 0;
        }
        s->ok &= l != NULL;
        struct iovec iov = { "done", 4 };
        if (l) {
            plv_bulk_send(l, 2, &iov, 1, NULL);
        }
        plv_bulk_close(l);
    } else {
        PlvLink *l = plv_link_accept(s->tfd, 1, PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                     sizeof(SECRET), 30000, &err);
        for (int i = 0; l && i < BULK_N; i++) {
            s->ok &= plv_link_recv(l, &type, b, 60000, NULL) == 0;
        }
        s->ok &= l != NULL;
        struct iovec iov = { "done", 4 };
        if (l) {
            plv_link_send(l, 2, &iov, 1, NULL);
            plv_link_close(l);
        }
    }
    g_clear_error(&err);
    g_byte_array_unref(b);
    return NULL;
}

static double bulk_mib_s(bool rdma, uint16_t port)
{
    Sink s = { .rdma = rdma, .tfd = -1 };
    GError *err = NULL;
    if (rdma) {
        s.rls = plv_rdma_listen(plv_rdma_test_addr(), port, &err);
        CHECKF(s.rls, "%s", err ? err->message : "?");
    } else {
        s.tfd = plv_link_listen(plv_rdma_test_addr(), port, &err);
        CHECKF(s.tfd >= 0, "%s", err ? err->message : "?");
    }
    GThread *th = g_thread_new("sink", sink_thread, &s);
    uint8_t *data = g_malloc(BULK_MSG);
    memset(data, 0x5a, BULK_MSG);
    struct iovec iov = { data, BULK_MSG };
    GByteArray *b = g_byte_array_new();
    uint16_t type;
    gint64 t0;
    if (rdma) {
        PlvBulkLink *l = plv_rdma_link_connect(plv_rdma_test_addr(), port, 0, 1,
                                               PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                               sizeof(SECRET), plv_rdma_test_sealed(), 0, 30000, &err);
        CHECKF(l, "%s", err ? err->message : "?");
        t0 = g_get_monotonic_time();
        for (int i = 0; i < BULK_N; i++) {
            CHECK(plv_bulk_send(l, 1, &iov, 1, NULL) == 0);
        }
        CHECK(plv_bulk_recv(l, &type, b, 60000, NULL) == 0);
        plv_bulk_close(l);
    } else {
        PlvLink *l = plv_link_connect(plv_rdma_test_addr(), port, 0, 1,
                                      PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                      sizeof(SECRET), 30000, &err);
        CHECKF(l, "%s", err ? err->message : "?");
        t0 = g_get_monotonic_time();
        for (int i = 0; i < BULK_N; i++) {
            CHECK(plv_link_send(l, 1, &iov, 1, NULL) == 0);
        }
        CHECK(plv_link_recv(l, &type, b, 60000, NULL) == 0);
        plv_link_close(l);
    }
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    g_thread_join(th);
    CHECK(s.ok);
    if (rdma) {
        plv_rdma_listener_free(s.rls);
    } else {
        close(s.tfd);
    }
    g_free(data);
    g_byte_array_unref(b);
    return (double)BULK_N * BULK_MSG / 1048576.0 / secs;
}

static void run(void)
{
    printf("bench-rdma: soft-RoCE (rdma_rxe) inside a TCG guest is RDMA done in "
           "software on an emulated CPU; these figures prove the code path, "
           "not RDMA hardware speed.\n");
    /* Two rounds in alternating order; the better median of each kind is
     * reported, so a burst of load on the shared host or TCG translating
     * new code does not decide the comparison. */
    int64_t pp[3] = { INT64_MAX, INT64_MAX, INT64_MAX };
    int64_t cm[3] = { INT64_MAX, INT64_MAX, INT64_MAX }, c99[3] = { 0 };
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) {
            int k = round ? 2 - i : i;
            pp[k] = MIN(pp[k], pingpong_us(k, 19000 + 100 * round + 10 * k, 300));
            int64_t m, p99;
            commit_us(k, 19200 + 100 * round + 10 * k, 100, &m, &p99);
            if (m < cm[k]) {
                cm[k] = m;
                c99[k] = p99;
            }
        }
    }
    printf("bench-rdma: transport ping-pong 64 B, median round trip: tcp %" G_GINT64_FORMAT
           " us, rdma %" G_GINT64_FORMAT " us (rdma/tcp %.2f), rdma+spin %d us: %"
           G_GINT64_FORMAT " us (rdma+spin/tcp %.2f)\n", pp[K_TCP], pp[K_RDMA],
           (double)pp[K_RDMA] / pp[K_TCP], SPIN_US, pp[K_RDMA_SPIN],
           (double)pp[K_RDMA_SPIN] / pp[K_TCP]);
    printf("bench-rdma: commit latency, 3 replicas, 1 input: tcp median %" G_GINT64_FORMAT
           " us (p99 %" G_GINT64_FORMAT "), rdma %" G_GINT64_FORMAT " us (p99 %"
           G_GINT64_FORMAT ", rdma/tcp %.2f), rdma+spin %" G_GINT64_FORMAT
           " us (p99 %" G_GINT64_FORMAT ", rdma+spin/tcp %.2f)\n",
           cm[K_TCP], c99[K_TCP], cm[K_RDMA], c99[K_RDMA],
           (double)cm[K_RDMA] / cm[K_TCP], cm[K_RDMA_SPIN], c99[K_RDMA_SPIN],
           (double)cm[K_RDMA_SPIN] / cm[K_TCP]);
    double bt = bulk_mib_s(false, 19041);
    double br = bulk_mib_s(true, 19040);
    bt = MAX(bt, bulk_mib_s(false, 19043));
    br = MAX(br, bulk_mib_s(true, 19042));
    printf("bench-rdma: bulk link, %d x %u MiB: rdma %.1f MiB/s, tcp %.1f MiB/s, "
           "rdma/tcp %.2f\n", BULK_N, BULK_MSG >> 20, br, bt, br / bt);
}

int main(void)
{
    static const PlvRdmaTest b[] = { { "bench", run, 250 } };
    return plv_rdma_run_tests("bench-rdma", b, 1, NULL);
}
