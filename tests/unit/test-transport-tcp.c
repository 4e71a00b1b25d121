/*
 * Tests for the TCP transport: three endpoints on 127.0.0.1 ephemeral ports,
 * all pumped from the test thread.
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helper-net.h"
#include "helper-run.h"
#include "helper-tls.h"
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "plover/tls.h"
#include "plover/transport.h"

#define N 3
static const uint8_t SECRET[] = "transport test secret";

typedef struct {
    uint32_t peer;
    int kind;
    GByteArray *data;
} Rec;

typedef struct {
    PlvTransport *t[N];
    GQueue got[N];              /* of Rec* per endpoint */
    int up[N][N];               /* up[i][j]: i saw j come up (count) */
    int down[N][N];
    uint16_t port[N];
    PlvPeerAddr addr[N];
    char host[N][16];
    PlvTls *tls[N];             /* NULL: plaintext */
} Net;

typedef struct {
    Net *net;
    int self;
} Sink;

static void on_event(void *opaque, const PlvTransportEvent *ev)
{
    Sink *s = opaque;
    Net *net = s->net;
    if (ev->kind == PLV_TRANSPORT_PEER_UP) {
        net->up[s->self][ev->peer]++;
    } else if (ev->kind == PLV_TRANSPORT_PEER_DOWN) {
        net->down[s->self][ev->peer]++;
    } else {
        Rec *r = g_new0(Rec, 1);
        r->peer = ev->peer;
        r->kind = ev->kind;
        r->data = g_byte_array_new();
        g_byte_array_append(r->data, ev->data, ev->len);
        g_queue_push_tail(&net->got[s->self], r);
    }
}

static PlvTransport *make_endpoint(Net *net, int i, int lfd, const uint8_t *secret,
                                   size_t secret_len)
{
    PlvTcpTransportConfig cfg = {
        .self_id = i,
        .peers = net->addr,
        .n_peers = N,
        .secret = secret,
        .secret_len = secret_len,
        .listen_fd = lfd,
        .backoff_min_ms = 5,
        .backoff_max_ms = 50,
        .handshake_timeout_ms = 500,
        .tls = net->tls[i],
    };
    GError *err = NULL;
    PlvTransport *t = plv_transport_tcp_new(&cfg, &err);
    ck_assert_msg(t, "%s", err ? err->message : "?");
    ck_assert_int_eq(plv_transport_start(t, &err), 0);
    return t;
}

/* An empty @net whose N endpoints listen on @lfd, ports of 127.0.0.1. */
static void net_listen(Net *net, int lfd[N])
{
    memset(net, 0, sizeof(*net));
    for (int i = 0; i < N; i++) {
        lfd[i] = plv_sock_listen("127.0.0.1", 0, NULL);
        ck_assert_int_ge(lfd[i], 0);
        net->port[i] = plv_sock_local_port(lfd[i]);
        strcpy(net->host[i], "127.0.0.1");
        net->addr[i] = (PlvPeerAddr){ .id = i, .host = net->host[i],
                                      .port = net->port[i] };
        g_queue_init(&net->got[i]);
    }
}

static void net_init(Net *net)
{
    int lfd[N];
    net_listen(net, lfd);
    for (int i = 0; i < N; i++) {
        net->t[i] = make_endpoint(net, i, lfd[i], SECRET, sizeof(SECRET));
    }
}

static void rec_free(gpointer p)
{
    Rec *r = p;
    g_byte_array_unref(r->data);
    g_free(r);
}

static void net_free(Net *net)
{
    for (int i = 0; i < N; i++) {
        plv_transport_free(net->t[i]);
        plv_tls_unref(net->tls[i]);
        g_queue_clear_full(&net->got[i], rec_free);
    }
}

/* Pump every live endpoint once. */
static void pump(Net *net, int timeout_ms)
{
    for (int i = 0; i < N; i++) {
        if (net->t[i]) {
            Sink s = { net, i };
            ck_assert_int_ge(plv_transport_wait(net->t[i], timeout_ms, on_event, &s), 0);
        }
    }
}

/* Pump until cond() holds; fail after @ms. */
#define PUMP_UNTIL(net, cond, ms)                                        \
    do {                                                                 \
        gint64 end_ = g_get_monotonic_time() + (ms) * 1000;              \
        while (!(cond)) {                                                \
            ck_assert_msg(g_get_monotonic_time() < end_, "timeout: %s", #cond); \
            pump(net, 1);                                                \
        }                                                                \
    } while (0)

static bool all_up(Net *net)
{
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            if (i != j && !plv_transport_peer_up(net->t[i], j)) {
                return false;
            }
        }
    }
    return true;
}

START_TEST(tcp_ordering)
{
    Net net;
    net_init(&net);
    /* Before anything is connected, sends are dropped and counted. */
    ck_assert_int_eq(plv_transport_send(net.t[0], 1, "x", 1), -1);
    ck_assert_int_eq(plv_transport_send(net.t[0], 7, "x", 1), -1);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            ck_assert_int_eq(net.up[i][j], i != j);
        }
    }
    const int M = 2000;
    for (int k = 0; k < M; k++) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "m%d", k);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(plv_transport_send(net.t[i], (i + 1) % N, msg, n), 0);
            ck_assert_int_eq(plv_transport_send(net.t[i], (i + 2) % N, msg, n), 0);
        }
    }
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[0]) == 2u * M &&
                     g_queue_get_length(&net.got[1]) == 2u * M &&
                     g_queue_get_length(&net.got[2]) == 2u * M, 10000);
    for (int i = 0; i < N; i++) {
        int next[N] = { 0 };
        for (GList *l = net.got[i].head; l; l = l->next) {
            Rec *r = l->data;
            char msg[32];
            int n = snprintf(msg, sizeof(msg), "m%d", next[r->peer]++);
            ck_assert_uint_ne(r->peer, i);
            ck_assert_uint_eq(r->data->len, n);
            ck_assert_mem_eq(r->data->data, msg, n);
        }
    }
    PlvTransportStats st;
    plv_transport_stats(net.t[0], &st);
    ck_assert_uint_eq(st.frames_out, 2u * M);
    ck_assert_uint_eq(st.frames_in, 2u * M);
    ck_assert_uint_eq(st.send_dropped, 2);
    ck_assert_uint_eq(st.connects, 2);
    ck_assert_uint_eq(st.auth_failures, 0);
    ck_assert_uint_eq(st.malformed_dropped, 0);
    net_free(&net);
}
END_TEST

START_TEST(tcp_large_messages)
{
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    size_t sizes[] = { 0, 1, 65536, 3u << 20, 16u << 20 };
    GByteArray *big = g_byte_array_sized_new(16u << 20);
    g_byte_array_set_size(big, 16u << 20);
    for (guint i = 0; i < big->len; i++) {
        big->data[i] = i * 2654435761u >> 24;
    }
    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        ck_assert_int_eq(plv_transport_send(net.t[2], 0, big->data, sizes[k]), 0);
    }
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[0]) == G_N_ELEMENTS(sizes), 20000);
    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        Rec *r = g_queue_peek_nth(&net.got[0], k);
        ck_assert_uint_eq(r->peer, 2);
        ck_assert_uint_eq(r->data->len, sizes[k]);
        ck_assert(sizes[k] == 0 || memcmp(r->data->data, big->data, sizes[k]) == 0);
    }
    /* Over the frame limit: refused, not sent. */
    ck_assert_int_eq(plv_transport_send(net.t[2], 0, big->data,
                                        PLV_LINK_MAX_PAYLOAD + 1ul), -1);
    g_byte_array_unref(big);
    net_free(&net);
}
END_TEST

START_TEST(tcp_reconnect)
{
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);

    /* Endpoint 1 goes away: both others see it down. */
    plv_transport_free(net.t[1]);
    net.t[1] = NULL;
    PUMP_UNTIL(&net, net.down[0][1] == 1 && net.down[2][1] == 1, 5000);
    ck_assert(!plv_transport_peer_up(net.t[0], 1));
    ck_assert_int_eq(plv_transport_send(net.t[0], 1, "x", 1), -1);
    /* Let endpoint 0 fail a few dials (backoff). */
    for (int i = 0; i < 20; i++) {
        pump(&net, 2);
    }

    /* It restarts on the same port: 0 redials it, it redials 2. */
    int lfd = plv_sock_listen("127.0.0.1", net.port[1], NULL);
    ck_assert_int_ge(lfd, 0);
    net.t[1] = make_endpoint(&net, 1, lfd, SECRET, sizeof(SECRET));
    PUMP_UNTIL(&net, all_up(&net), 5000);
    ck_assert_int_eq(net.up[0][1], 2);
    ck_assert_int_eq(net.up[2][1], 2);
    PlvTransportStats st;
    plv_transport_stats(net.t[0], &st);
    ck_assert_uint_eq(st.reconnects, 1);
    ck_assert_uint_eq(st.disconnects, 1);
    plv_transport_stats(net.t[2], &st);
    ck_assert_uint_eq(st.reconnects, 1);

    /* Traffic flows again, both ways. */
    ck_assert_int_eq(plv_transport_send(net.t[0], 1, "again", 5), 0);
    ck_assert_int_eq(plv_transport_send(net.t[1], 2, "hello", 5), 0);
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[1]) == 1 &&
                     g_queue_get_length(&net.got[2]) == 1, 5000);
    Rec *r = g_queue_peek_head(&net.got[1]);
    ck_assert_mem_eq(r->data->data, "again", 5);
    net_free(&net);
}
END_TEST

typedef struct {
    uint16_t port;
    uint32_t id;
    const uint8_t *secret;
    size_t secret_len;
    PlvLink *link;
    int done;
} DialJob;

static gpointer dial_thread(gpointer opaque)
{
    DialJob *j = opaque;
    j->link = plv_link_connect("127.0.0.1", j->port, j->id, PLV_LINK_ANY_PEER,
                               PLV_LINK_CHANNEL_CONSENSUS, j->secret,
                               j->secret_len, 3000, NULL);
    g_atomic_int_set(&j->done, 1);
    return NULL;
}

/* Dial endpoint @to with plv_link while the test thread pumps. */
static PlvLink *dial_pumped(Net *net, int to, uint32_t id, const uint8_t *secret,
                            size_t len)
{
    DialJob j = { .port = net->port[to], .id = id, .secret = secret,
                  .secret_len = len };
    GThread *th = g_thread_new("dial", dial_thread, &j);
    /* The dial thread finishes (either way) within its 3 s timeout. */
    while (!g_atomic_int_get(&j.done)) {
        pump(net, 1);
    }
    g_thread_join(th);
    return j.link;
}

START_TEST(tcp_garbage_dropped_and_counted)
{
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    PlvTransportStats st;

    /* 1. Garbage bytes from a client that never authenticates. */
    int fd = plv_test_raw_connect(net.port[2]);
    ck_assert_int_ge(fd, 0);
    char junk[4096];
    memset(junk, 0xa5, sizeof(junk));
    ck_assert_int_eq(write(fd, junk, sizeof(junk)), sizeof(junk));
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures == 1),
               5000);
    close(fd);

    /* 2. A silent client is dropped at the handshake deadline. */
    fd = plv_test_raw_connect(net.port[2]);
    ck_assert_int_ge(fd, 0);
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures == 2),
               5000);
    close(fd);

    /* 3. A client with the wrong secret. */
    static const uint8_t wrong[] = "not the right secret";
    PlvLink *l = dial_pumped(&net, 2, 0, wrong, sizeof(wrong));
    ck_assert_ptr_null(l);
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures == 3),
               5000);

    /* 4. Right secret, but an id that is not in the peer list. */
    l = dial_pumped(&net, 2, 99, SECRET, sizeof(SECRET));
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.unknown_peers == 1),
               5000);
    plv_link_close(l);

    /* 5. An authenticated peer sending a malformed frame: dropped, the
     *    connection is closed and the real peer 0 reconnects. */
    l = dial_pumped(&net, 2, 0, SECRET, sizeof(SECRET));
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(write(plv_link_fd(l), junk, 64), 64);
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st),
                      st.malformed_dropped == 1), 5000);
    plv_link_close(l);
    PUMP_UNTIL(&net, all_up(&net), 5000);

    /* Nothing of the above was delivered as a message. */
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(g_queue_get_length(&net.got[i]), 0);
    }
    /* And the real traffic still works. */
    ck_assert_int_eq(plv_transport_send(net.t[0], 2, "ok", 2), 0);
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[2]) == 1, 5000);
    net_free(&net);
}
END_TEST

START_TEST(tcp_wrong_secret_peer_never_up)
{
    Net net;
    int lfd[N];
    net_listen(&net, lfd);
    static const uint8_t other[] = "some other cluster";
    net.t[0] = make_endpoint(&net, 0, lfd[0], SECRET, sizeof(SECRET));
    net.t[1] = make_endpoint(&net, 1, lfd[1], SECRET, sizeof(SECRET));
    net.t[2] = make_endpoint(&net, 2, lfd[2], other, sizeof(other));
    PUMP_UNTIL(&net, plv_transport_peer_up(net.t[0], 1) &&
                     plv_transport_peer_up(net.t[1], 0), 5000);
    PlvTransportStats st;
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures >= 2),
               5000);
    ck_assert(!plv_transport_peer_up(net.t[0], 2));
    ck_assert(!plv_transport_peer_up(net.t[2], 1));
    net_free(&net);
}
END_TEST

/*
 * Inside TLS: 0 and 1 exchange small and large messages in order; 2's
 * certificate comes from a CA nobody trusts, so it never comes up and
 * its dialers count the refusal.
 */
START_TEST(tcp_tls_peers_and_a_rogue)
{
    Net net;
    PlvTestPki *pki = plv_test_pki_new();
    int lfd[N];
    net_listen(&net, lfd);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "replica-%d", i);
        GError *err = NULL;
        net.tls[i] = plv_tls_new_from_dir(
            plv_test_pki_replica(pki, name, i == 2 ? PLV_TEST_CERT_OTHER_CA : 0),
            NULL, &err);
        ck_assert_msg(net.tls[i], "%s", err ? err->message : "?");
        for (int j = 0; j < N; j++) {
            snprintf(name, sizeof(name), "replica-%d", j);
            plv_tls_set_peer_name(net.tls[i], j, name);
        }
    }
    for (int i = 0; i < N; i++) {
        net.t[i] = make_endpoint(&net, i, lfd[i], SECRET, sizeof(SECRET));
    }
    PUMP_UNTIL(&net, plv_transport_peer_up(net.t[0], 1) &&
                     plv_transport_peer_up(net.t[1], 0), 5000);

    GByteArray *big = g_byte_array_sized_new(3u << 20);
    g_byte_array_set_size(big, 3u << 20);
    for (guint i = 0; i < big->len; i++) {
        big->data[i] = i * 2654435761u >> 24;
    }
    const int M = 500;
    for (int k = 0; k < M; k++) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "m%d", k);
        ck_assert_int_eq(plv_transport_send(net.t[0], 1, msg, n), 0);
        ck_assert_int_eq(plv_transport_send(net.t[1], 0, msg, n), 0);
    }
    ck_assert_int_eq(plv_transport_send(net.t[0], 1, big->data, big->len), 0);
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[0]) == (guint)M &&
                     g_queue_get_length(&net.got[1]) == (guint)M + 1, 10000);
    for (int i = 0; i < 2; i++) {
        int k = 0;
        for (GList *l = net.got[i].head; l; l = l->next, k++) {
            Rec *r = l->data;
            ck_assert_uint_eq(r->peer, 1 - i);
            if (k == M) {
                ck_assert_uint_eq(r->data->len, big->len);
                ck_assert_mem_eq(r->data->data, big->data, big->len);
                continue;
            }
            char msg[32];
            int n = snprintf(msg, sizeof(msg), "m%d", k);
            ck_assert_uint_eq(r->data->len, n);
            ck_assert_mem_eq(r->data->data, msg, n);
        }
    }
    g_byte_array_unref(big);

    PlvTransportStats s0, s1;
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[0], &s0),
                      plv_transport_stats(net.t[1], &s1),
                      s0.tls_refused >= 1 && s1.tls_refused >= 1), 5000);
    ck_assert(!plv_transport_peer_up(net.t[0], 2));
    ck_assert(!plv_transport_peer_up(net.t[1], 2));
    ck_assert(!plv_transport_peer_up(net.t[2], 0));
    ck_assert_uint_ge(s0.auth_failures, s0.tls_refused);
    net_free(&net);
    plv_test_pki_free(pki);
}
END_TEST

static PlvPeerLinkInfo link_of(Net *net, int i, uint32_t peer)
{
    PlvPeerLinkInfo li;
    plv_transport_peer_link(net->t[i], peer, &li);
    ck_assert_uint_eq(li.peer, peer);
    return li;
}

START_TEST(tcp_peer_link_state)
{
    Net net;
    net_init(&net);
    /* Nothing dialed before the first wait(). */
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            PlvPeerLinkInfo li = link_of(&net, i, j);
            ck_assert_int_eq(li.state, PLV_PEER_LINK_DOWN);
            ck_assert_int_eq(li.last_heard_us, 0);
        }
    }
    pump(&net, 0);
    /* 0 has started dialing 1 and 2; 2 dials nobody. */
    ck_assert_int_ne(link_of(&net, 0, 2).state, PLV_PEER_LINK_DOWN);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            ck_assert_int_eq(link_of(&net, i, j).state,
                             i == j ? PLV_PEER_LINK_DOWN : PLV_PEER_LINK_UP);
        }
    }
    ck_assert_int_eq(link_of(&net, 0, 99).state, PLV_PEER_LINK_DOWN);
    ck_assert_int_eq(link_of(&net, 0, 99).last_heard_us, 0);

    /* A frame is heard; a later one moves the time on. */
    gint64 t0 = g_get_monotonic_time();
    ck_assert_int_eq(plv_transport_send(net.t[1], 0, "a", 1), 0);
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[0]) == 1, 5000);
    int64_t heard = link_of(&net, 0, 1).last_heard_us;
    ck_assert_int_ge(heard, t0);
    ck_assert_int_le(heard, g_get_monotonic_time());
    g_usleep(2000);
    ck_assert_int_eq(plv_transport_send(net.t[1], 0, "b", 1), 0);
    PUMP_UNTIL(&net, g_queue_get_length(&net.got[0]) == 2, 5000);
    ck_assert_int_gt(link_of(&net, 0, 1).last_heard_us, heard);
    heard = link_of(&net, 0, 1).last_heard_us;

    /* 1 goes away: 0 (its dialer) redials it, 2 (which 1 dialed) waits. */
    plv_transport_free(net.t[1]);
    net.t[1] = NULL;
    PUMP_UNTIL(&net, net.down[0][1] == 1 && net.down[2][1] == 1, 5000);
    ck_assert_int_ne(link_of(&net, 0, 1).state, PLV_PEER_LINK_UP);
    ck_assert_int_eq(link_of(&net, 2, 1).state, PLV_PEER_LINK_DOWN);
    ck_assert_int_eq(link_of(&net, 2, 0).state, PLV_PEER_LINK_UP);
    /* What was heard stays, as when it was heard. */
    ck_assert_int_eq(link_of(&net, 0, 1).last_heard_us, heard);
    net_free(&net);
}
END_TEST

START_TEST(tcp_stranger_closed_at_accept)
{
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    PlvTransportStats st;
    /* 127.0.0.2 is local, but no peer's address: closed before it takes a
     * pending slot, so it is no handshake failure either. */
    int fd = plv_test_raw_connect_from("127.0.0.2", net.port[2]);
    ck_assert_int_ge(fd, 0);
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.rejected_strangers == 1),
               5000);
    char c;
    ck_assert_int_eq(read(fd, &c, 1), 0);
    close(fd);
    plv_transport_stats(net.t[2], &st);
    ck_assert_uint_eq(st.auth_failures, 0);
    ck_assert_uint_eq(st.pending_evicted, 0);
    /* A peer's address still gets its handshake (and fails it). */
    fd = plv_test_raw_connect_from("127.0.0.1", net.port[2]);
    ck_assert_int_ge(fd, 0);
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures == 1),
               5000);
    close(fd);
    ck_assert_uint_eq(st.rejected_strangers, 1);
    net_free(&net);
}
END_TEST

START_TEST(tcp_idle_flood_leaves_room_for_peers)
{
    enum { IDLE = 64 };
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    PlvTransportStats st;
    /* More idle connections than there are pending slots, from the
     * peers' own address: each one past the per-address cap evicts the
     * oldest of them instead of filling the table. */
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = plv_test_raw_connect(net.port[2]);
        ck_assert_int_ge(fds[i], 0);
    }
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st),
                      st.pending_evicted == IDLE - 4), 5000);
    /* A genuine peer still gets in while they are held open. */
    PlvLink *l = dial_pumped(&net, 2, 0, SECRET, sizeof(SECRET));
    ck_assert_ptr_nonnull(l);
    plv_transport_stats(net.t[2], &st);
    ck_assert_uint_eq(st.pending_evicted, IDLE - 4 + 1);
    ck_assert_uint_eq(st.rejected_strangers, 0);
    plv_link_close(l);
    for (int i = 0; i < IDLE; i++) {
        close(fds[i]);
    }
    PUMP_UNTIL(&net, all_up(&net), 5000);
    net_free(&net);
}
END_TEST

START_TEST(tcp_short_secret_refused)
{
    PlvPeerAddr self = { .id = 0, .host = "127.0.0.1", .port = 1 };
    PlvTcpTransportConfig cfg = {
        .self_id = 0, .peers = &self, .n_peers = 1,
        .secret = SECRET, .secret_len = PLV_LINK_MIN_SECRET_LEN - 1,
        .listen_fd = -1,
    };
    GError *err = NULL;
    ck_assert_ptr_null(plv_transport_tcp_new(&cfg, &err));
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID));
    g_clear_error(&err);
}
END_TEST

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

START_TEST(tcp_accept_out_of_fds_does_not_spin)
{
    Net net;
    net_init(&net);
    PUMP_UNTIL(&net, all_up(&net), 5000);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = plv_test_raw_connect(net.port[2]);
        ck_assert_int_ge(fds[i], 0);
    }
    /* No descriptor left for accept(): the pending clients make the
     * listening socket readable for good. */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = open("/dev/null", O_RDONLY);
    close(probe);
    low = old;
    low.rlim_cur = probe;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    double c0 = cpu_seconds();
    gint64 t0 = g_get_monotonic_time();
    Sink s = { &net, 2 };
    while (g_get_monotonic_time() - t0 < 300 * 1000) {
        plv_transport_wait(net.t[2], 50, on_event, &s);
    }
    double used = cpu_seconds() - c0;
    setrlimit(RLIMIT_NOFILE, &old);
    ck_assert_msg(used < 0.15, "wait() burnt %.3f s of CPU in 0.3 s", used);
    /* With descriptors back the clients are taken (and dropped as silent). */
    PlvTransportStats st;
    PUMP_UNTIL(&net, (plv_transport_stats(net.t[2], &st), st.auth_failures == 4),
               5000);
    for (int i = 0; i < 4; i++) {
        close(fds[i]);
    }
    net_free(&net);
}
END_TEST

START_TEST(tcp_wakeup)
{
    Net net;
    net_init(&net);
    plv_transport_wakeup(net.t[0]);
    gint64 t0 = g_get_monotonic_time();
    Sink s = { &net, 0 };
    ck_assert_int_ge(plv_transport_wait(net.t[0], 5000, on_event, &s), 0);
    ck_assert_int_lt(g_get_monotonic_time() - t0, 1000 * 1000);
    net_free(&net);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("transport-tcp");
    TCase *tc = tcase_create("tcp");
    tcase_set_timeout(tc, 40);
    tcase_add_test(tc, tcp_ordering);
    tcase_add_test(tc, tcp_large_messages);
    tcase_add_test(tc, tcp_reconnect);
    tcase_add_test(tc, tcp_garbage_dropped_and_counted);
    tcase_add_test(tc, tcp_wrong_secret_peer_never_up);
    tcase_add_test(tc, tcp_wakeup);
    tcase_add_test(tc, tcp_peer_link_state);
    tcase_add_test(tc, tcp_stranger_closed_at_accept);
    tcase_add_test(tc, tcp_idle_flood_leaves_room_for_peers);
    tcase_add_test(tc, tcp_short_secret_refused);
    tcase_add_test(tc, tcp_tls_peers_and_a_rogue);
    tcase_add_test(tc, tcp_accept_out_of_fds_does_not_spin);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
