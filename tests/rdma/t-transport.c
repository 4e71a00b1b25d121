/*
 * The RDMA transport against the same cases the TCP transport passes
 * (tests/unit/test-transport-tcp.c), for real over soft-RoCE: ordering,
 * large and fragmented messages, ring wrap-around, a peer that dies and
 * comes back, a peer killed mid-stream, wrong secrets, wakeup.
 */
#include "harness.h"
#include "net.h"
#include "suites.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define UP_MS 30000             /* rxe under TCG: generous, never asserted */

/* Message k from @from to @to: a header and a deterministic body. */
static GByteArray *make_msg(int from, int to, unsigned k, size_t len)
{
    GByteArray *b = g_byte_array_sized_new(len);
    g_byte_array_set_size(b, len);
    uint32_t x = from * 7919u + to * 104729u + k * 2654435761u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        b->data[i] = x >> 24;
    }
    if (len >= 12) {
        uint32_t h[3] = { from, to, k };
        memcpy(b->data, h, sizeof(h));
    }
    return b;
}

static void expect_msg(Net *net, int at, int from, unsigned k, size_t len)
{
    NetRec *r = net_pop(net, at);
    CHECKF(r, "endpoint %d: message %u from %d missing", at, k, from);
    CHECKF(r->peer == (uint32_t)from, "endpoint %d: message from %u, want %d",
           at, r->peer, from);
    GByteArray *want = make_msg(from, at, k, len);
    CHECKF(r->data->len == want->len && !memcmp(r->data->data, want->data, len),
           "endpoint %d: message %u from %d: %u bytes, want %zu (or content)",
           at, k, from, r->data->len, len);
    g_byte_array_unref(want);
    net_rec_free(r);
}

static size_t queued(Net *net, int i)
{
    return g_queue_get_length(&net->got[i]);
}

static void send_msg(Net *net, int from, int to, unsigned k, size_t len)
{
    GByteArray *m = make_msg(from, to, k, len);
    CHECKF(plv_transport_send(net->t[from], to, m->data, m->len) == 0,
           "send %d->%d #%u refused", from, to, k);
    g_byte_array_unref(m);
}

static void t_ordering(void)
{
    Net net;
    enum { K = 300 };
    net_init(&net, 18100, 256 * 1024);
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    for (unsigned k = 0; k < K; k++) {
        for (int i = 0; i < NET_N; i++) {
            send_msg(&net, i, (i + 1) % NET_N, k, 16 + k % 200);
        }
        if (k % 50 == 0) {
            net_pump(&net, 0);
        }
    }
    NET_PUMP_UNTIL(&net, queued(&net, 0) == K && queued(&net, 1) == K &&
                   queued(&net, 2) == K, 60000);
    for (int i = 0; i < NET_N; i++) {
        int from = (i + NET_N - 1) % NET_N;
        for (unsigned k = 0; k < K; k++) {
            expect_msg(&net, i, from, k, 16 + k % 200);
        }
    }
    PlvTransportStats st;
    plv_transport_stats(net.t[0], &st);
    CHECK(st.frames_out == K && st.frames_in == K);
    CHECK(st.malformed_dropped == 0 && st.auth_failures == 0);
    net_free(&net);
}

static void t_large_messages(void)
{
    static const size_t sizes[] = { 0, 1, 7, 8, 4096, 100000, 131040, 131072,
                                    300000, 1u << 20, 3u << 20 };
    enum { NS = G_N_ELEMENTS(sizes) };
    Net net;
    net_init(&net, 18110, 256 * 1024);
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    for (unsigned k = 0; k < NS; k++) {
        send_msg(&net, 0, 1, k, sizes[k]);
        send_msg(&net, 2, 1, k, sizes[NS - 1 - k]);
    }
    NET_PUMP_UNTIL(&net, queued(&net, 1) == 2 * NS, 120000);
    /* Interleaved between senders, in order per sender. */
    unsigned next[NET_N] = { 0 };
    for (unsigned n = 0; n < 2 * NS; n++) {
        NetRec *r = g_queue_peek_head(&net.got[1]);
        int from = r->peer;
        unsigned k = next[from]++;
        size_t len = from == 0 ? sizes[k] : sizes[NS - 1 - k];
        GByteArray *want = make_msg(from, 1, k, len);
        CHECKF(XXH64(r->data->data, r->data->len, 0) ==
               XXH64(want->data, want->len, 0) && r->data->len == len,
               "message %u from %d: %u bytes, want %zu", k, from, r->data->len, len);
        g_byte_array_unref(want);
        net_rec_free(net_pop(&net, 1));
    }
    net_free(&net);
}

static void t_ring_wrap(void)
{
    enum { K = 2000 };
    Net net;
    GRand *rnd = g_rand_new_with_seed(7);
    size_t len[K], total = 0;
    for (unsigned k = 0; k < K; k++) {
        len[k] = g_rand_int_range(rnd, 1, 5000);
        total += len[k];
    }
    g_rand_free(rnd);
    net_init(&net, 18120, 64 * 1024);    /* the smallest ring */
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    unsigned sent = 0;
    /* Send in bursts bigger than the ring so the writer waits for credit. */
    while (sent < K) {
        for (unsigned b = 0; b < 100 && sent < K; b++, sent++) {
            send_msg(&net, 0, 2, sent, len[sent]);
        }
        net_pump(&net, 0);
    }
    NET_PUMP_UNTIL(&net, queued(&net, 2) == K, 120000);
    for (unsigned k = 0; k < K; k++) {
        expect_msg(&net, 2, 0, k, len[k]);
    }
    printf("  %zu bytes through a 64 KiB ring (%zu laps)\n", total,
           total / (64 * 1024));
    net_free(&net);
}

static void t_reconnect(void)
{
    Net net;
    net_init(&net, 18130, 256 * 1024);
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    send_msg(&net, 0, 2, 0, 100);
    NET_PUMP_UNTIL(&net, queued(&net, 2) == 1, 30000);
    expect_msg(&net, 2, 0, 0, 100);

    /* Endpoint 2 dies: the others are told, sends to it are refused. */
    plv_transport_free(net.t[2]);
    net.t[2] = NULL;
    NET_PUMP_UNTIL(&net, net.down[0][2] == 1 && net.down[1][2] == 1, 30000);
    CHECK(!plv_transport_peer_up(net.t[0], 2));
    CHECK(plv_transport_send(net.t[0], 2, "x", 1) < 0);

    /* It comes back on the same port: both reconnect, traffic flows. */
    net.t[2] = net_endpoint(&net, 2, NET_SECRET, sizeof(NET_SECRET));
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    CHECK(net.up[0][2] == 2 && net.up[1][2] == 2);
    send_msg(&net, 0, 2, 1, 1000);
    send_msg(&net, 2, 1, 2, 2000);
    NET_PUMP_UNTIL(&net, queued(&net, 2) == 1 && queued(&net, 1) == 1, 30000);
    expect_msg(&net, 2, 0, 1, 1000);
    expect_msg(&net, 1, 2, 2, 2000);
    PlvTransportStats st;
    plv_transport_stats(net.t[0], &st);
    CHECK(st.reconnects >= 1 && st.disconnects >= 1);

    /* The same for endpoint 0, which dials the others: they accept its
     * new connections. */
    plv_transport_free(net.t[0]);
    net.t[0] = NULL;
    NET_PUMP_UNTIL(&net, net.down[1][0] == 1 && net.down[2][0] == 1, 30000);
    net.t[0] = net_endpoint(&net, 0, NET_SECRET, sizeof(NET_SECRET));
    NET_PUMP_UNTIL(&net, net_all_up(&net), UP_MS);
    send_msg(&net, 1, 0, 3, 300);
    NET_PUMP_UNTIL(&net, queued(&net, 0) == 1, 30000);
    expect_msg(&net, 0, 1, 3, 300);
    net_free(&net);
}

/*
 * Endpoint 1 in a child process that only receives, until killed, and
 * endpoint 0 here, connected to it. The fork comes before this process
 * touches RDMA: verbs contexts do not cross fork. Returns the child's pid.
 */
static pid_t fork_receiver(Net *net, uint16_t base_port)
{
    net_prepare(net, base_port, 64 * 1024);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        net->t[1] = net_endpoint(net, 1, NET_SECRET, sizeof(NET_SECRET));
        for (;;) {
            net_pump(net, 100);
            g_queue_clear_full(&net->got[1], (GDestroyNotify)net_rec_free);
        }
    }
    net->t[0] = net_endpoint(net, 0, NET_SECRET, sizeof(NET_SECRET));
    NET_PUMP_UNTIL(net, plv_transport_peer_up(net->t[0], 1), UP_MS);
    return pid;
}

static void t_peer_killed_midstream(void)
{
    Net net;
    pid_t pid = fork_receiver(&net, 18140);
    /* Stream; kill the receiver in the middle of it. */
    unsigned k = 0;
    gint64 end = g_get_monotonic_time() + 60 * 1000000ll;
    while (net.down[0][1] == 0) {
        CHECKF(g_get_monotonic_time() < end, "peer death not reported");
        if (plv_transport_peer_up(net.t[0], 1)) {
            send_msg(&net, 0, 1, k++, 3000);
        }
        if (k == 300) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            printf("  killed the receiver after %u messages\n", k);
            k++;
        }
        net_pump(&net, 1);
    }
    CHECK(k > 300);
    CHECK(!plv_transport_peer_up(net.t[0], 1));
    CHECK(plv_transport_send(net.t[0], 1, "x", 1) < 0);
    PlvTransportStats st;
    plv_transport_stats(net.t[0], &st);
    CHECK(st.disconnects == 1);
    net_free(&net);
}

/* A peer whose process stops (its QP stays up in the kernel) is declared
 * down when its heartbeats stop. */
static void t_stopped_peer_times_out(void)
{
    Net net;
    pid_t pid = fork_receiver(&net, 18170);
    kill(pid, SIGSTOP);
    gint64 t0 = g_get_monotonic_time();
    for (unsigned k = 0; net.down[0][1] == 0; k++) {
        CHECKF(g_get_monotonic_time() - t0 < 60 * 1000000ll,
               "stopped peer never reported down");
        if (plv_transport_peer_up(net.t[0], 1) && k < 100) {
            send_msg(&net, 0, 1, k, 500);
        }
        net_pump(&net, 10);
    }
    printf("  stopped peer reported down after %.1f s (peer_timeout 4 s)\n",
           (g_get_monotonic_time() - t0) / 1e6);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    net_free(&net);
}

static void t_wrong_secret(void)
{
    static const uint8_t bad[] = "not the right secret";
    Net net;
    net_prepare(&net, 18150, 64 * 1024);
    net.t[0] = net_endpoint(&net, 0, NET_SECRET, sizeof(NET_SECRET));
    net.t[1] = net_endpoint(&net, 1, NET_SECRET, sizeof(NET_SECRET));
    net.t[2] = net_endpoint(&net, 2, bad, sizeof(bad));
    NET_PUMP_UNTIL(&net, plv_transport_peer_up(net.t[0], 1), UP_MS);
    PlvTransportStats st0, st2;
    gint64 end = g_get_monotonic_time() + 60 * 1000000ll;
    do {
        net_pump(&net, 5);
        plv_transport_stats(net.t[0], &st0);
        plv_transport_stats(net.t[2], &st2);
        CHECKF(g_get_monotonic_time() < end, "auth failures: %" G_GUINT64_FORMAT
               " at 0, %" G_GUINT64_FORMAT " at 2", st0.auth_failures,
               st2.auth_failures);
    } while (st0.auth_failures < 2 || st2.auth_failures < 2);
    for (int i = 0; i < NET_N; i++) {
        CHECK(net.up[i][2] == 0 && net.up[2][i] == 0);
    }
    CHECK(queued(&net, 2) == 0);
    net_free(&net);
}

static gpointer wake_later(gpointer t)
{
    g_usleep(200000);
    plv_transport_wakeup(t);
    return NULL;
}

static void ignore_event(void *opaque, const PlvTransportEvent *ev)
{
}

static void t_wakeup(void)
{
    PlvPeerAddr a[1] = { { .id = 0, .host = plv_rdma_test_addr(), .port = 18160 } };
    PlvRdmaTransportConfig cfg = {
        .self_id = 0, .peers = a, .n_peers = 1,
        .secret = NET_SECRET, .secret_len = sizeof(NET_SECRET),
        .sealed = plv_rdma_test_sealed(),
    };
    GError *err = NULL;
    PlvTransport *t = plv_transport_rdma_new(&cfg, &err);
    CHECK(t && plv_transport_start(t, &err) == 0);
    GThread *th = g_thread_new("wake", wake_later, t);
    CHECK(plv_transport_wait(t, -1, ignore_event, NULL) == 0);
    g_thread_join(th);
    plv_transport_free(t);
}

const PlvRdmaTest plv_rdma_transport_tests[] = {
    { "transport_ordering", t_ordering, 120 },
    { "transport_large_messages", t_large_messages, 180 },
    { "transport_ring_wrap", t_ring_wrap, 180 },
    { "transport_reconnect", t_reconnect, 120 },
    { "transport_peer_killed_midstream", t_peer_killed_midstream, 120 },
    { "transport_stopped_peer_times_out", t_stopped_peer_times_out, 120 },
    { "transport_wrong_secret", t_wrong_secret, 120 },
    { "transport_wakeup", t_wakeup, 30 },
};
const size_t plv_rdma_transport_n = G_N_ELEMENTS(plv_rdma_transport_tests);
