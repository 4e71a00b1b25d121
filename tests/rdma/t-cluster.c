/*
 * Three consensus drivers in one process, each on its own RDMA transport
 * over rxe: a leader is elected, inputs submitted to it commit in the same
 * order on all three, and after one replica is stopped the other two go
 * on committing.
 */
#include "harness.h"
#include "suites.h"
#include "plover/driver.h"
#include "plover/transport-rdma.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#define N 3
static const uint8_t SECRET[] = "rdma cluster secret";

typedef struct Col {
    GPtrArray *packets;         /* of char*, commit order */
    uint64_t last_index;
    bool order_ok;
} Col;

typedef struct Cluster {
    PlvDriver *d[N];
    Col c[N];
    PlvPeerAddr addr[N];
} Cluster;

static void on_commit(void *opaque, const PlvEntry *e)
{
    Col *c = opaque;
    if (e->index != c->last_index + 1) {
        c->order_ok = false;
    }
    c->last_index = e->index;
    if (e->op == PLV_OP_INPUT) {
        PlvBatchIter it;
        const uint8_t *pkt;
        uint32_t plen;
        plv_batch_iter_entry(&it, e);
        while (plv_batch_next(&it, &pkt, &plen)) {
            g_ptr_array_add(c->packets, g_strndup((const char *)pkt, plen));
        }
    }
}

static void on_event(void *opaque, const PlvEvent *ev)
{
}

static const PlvDriverCallbacks CB = { .committed = on_commit, .event = on_event };

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

#define DRAIN_UNTIL(cl, cond, ms)                                         \
    do {                                                                  \
        gint64 end_ = g_get_monotonic_time() + (gint64)(ms) * 1000;       \
        while (!(cond)) {                                                 \
            CHECKF(g_get_monotonic_time() < end_, "timeout: %s", #cond);  \
            drain(cl, 10);                                                \
        }                                                                 \
    } while (0)

static int agreed_leader(Cluster *cl)
{
    int leader = -1;
    for (int i = 0; i < N; i++) {
        if (cl->d[i] && plv_driver_role(cl->d[i]) == PLV_ROLE_LEADER) {
            leader = i;
        }
    }
    for (int i = 0; leader >= 0 && i < N; i++) {
        if (cl->d[i] && plv_driver_leader(cl->d[i]) != (uint32_t)leader) {
            return -1;
        }
    }
    return leader;
}

static bool have_packets(Cluster *cl, guint n)
{
    for (int i = 0; i < N; i++) {
        if (cl->d[i] && cl->c[i].packets->len < n) {
            return false;
        }
    }
    return true;
}

static void submit_range(Cluster *cl, int leader, int from, int to)
{
    for (int k = from; k < to; k++) {
        char pkt[32];
        int len = snprintf(pkt, sizeof(pkt), "pkt-%d", k);
        int r;
        while ((r = plv_driver_submit(cl->d[leader], pkt, len)) == -ENOBUFS) {
            drain(cl, 1);
        }
        CHECKF(r == 0, "submit: %d", r);
    }
}

static void same_logs(Cluster *cl, guint n)
{
    for (int i = 0; i < N; i++) {
        if (!cl->d[i]) {
            continue;
        }
        CHECK(cl->c[i].order_ok);
        for (guint k = 0; k < n; k++) {
            char want[32];
            snprintf(want, sizeof(want), "pkt-%u", k);
            CHECKF(!strcmp(g_ptr_array_index(cl->c[i].packets, k), want),
                   "replica %d: packet %u is %s", i, k,
                   (char *)g_ptr_array_index(cl->c[i].packets, k));
        }
    }
}

static void t_three_replicas(void)
{
    Cluster cl;
    memset(&cl, 0, sizeof(cl));
    for (int i = 0; i < N; i++) {
        cl.addr[i] = (PlvPeerAddr){ .id = i, .host = plv_rdma_test_addr(),
                                    .port = 18400 + i };
        cl.c[i].packets = g_ptr_array_new_with_free_func(g_free);
        cl.c[i].order_ok = true;
    }
    for (int i = 0; i < N; i++) {
        PlvRdmaTransportConfig tc = {
            .self_id = i, .peers = cl.addr, .n_peers = N,
            .secret = SECRET, .secret_len = sizeof(SECRET),
            .ring_bytes = 1u << 20, .backoff_min_ms = 20, .backoff_max_ms = 200,
            .peer_timeout_ms = 4000, .sealed = plv_rdma_test_sealed(),
        };
        GError *err = NULL;
        PlvTransport *t = plv_transport_rdma_new(&tc, &err);
        CHECKF(t, "%s", err ? err->message : "?");
        PlvDriverConfig dc;
        plv_driver_config_default(&dc);
        dc.paxos.self = i;
        dc.paxos.n = N;
        dc.paxos.seed = 500 + i;
        /* Ticks long enough that TCG + rxe latency does not look like a
         * dead leader. */
        dc.tick_ms = 20;
        cl.d[i] = plv_driver_new(&dc, t, &err);
        CHECKF(cl.d[i], "%s", err ? err->message : "?");
        CHECKF(plv_driver_start(cl.d[i], &err) == 0, "%s", err ? err->message : "?");
    }
    int leader;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 60000);
    gint64 t0 = g_get_monotonic_time();
    submit_range(&cl, leader, 0, 200);
    DRAIN_UNTIL(&cl, have_packets(&cl, 200), 60000);
    printf("  leader %d; 200 inputs committed on 3 replicas over rxe in %.0f ms\n",
           leader, (g_get_monotonic_time() - t0) / 1000.0);
    same_logs(&cl, 200);

    /* Stop one replica that is not the leader: a majority remains. */
    int victim = (leader + 1) % N;
    plv_driver_free(cl.d[victim]);
    cl.d[victim] = NULL;
    DRAIN_UNTIL(&cl, (leader = agreed_leader(&cl)) >= 0, 60000);
    submit_range(&cl, leader, 200, 250);
    DRAIN_UNTIL(&cl, have_packets(&cl, 250), 60000);
    same_logs(&cl, 250);
    PlvDriverStats st;
    plv_driver_stats(cl.d[leader], &st);
    CHECK(st.transport.disconnects >= 1 && st.msgs_bad == 0);
    for (int i = 0; i < N; i++) {
        plv_driver_free(cl.d[i]);
        g_ptr_array_unref(cl.c[i].packets);
    }
}

const PlvRdmaTest plv_rdma_cluster_tests[] = {
    { "cluster_three_replicas", t_three_replicas, 180 },
};
const size_t plv_rdma_cluster_n = G_N_ELEMENTS(plv_rdma_cluster_tests);
