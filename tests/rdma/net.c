/*
 * Three-endpoint RDMA transport fixture (see net.h).
 */
#include "net.h"
#include "harness.h"

#include <string.h>

const uint8_t NET_SECRET[24] = "rdma transport secret!!";

static void on_event(void *opaque, const PlvTransportEvent *ev)
{
    Net *net = ((void **)opaque)[0];
    int self = GPOINTER_TO_INT(((void **)opaque)[1]);
    if (ev->kind == PLV_TRANSPORT_PEER_UP) {
        net->up[self][ev->peer]++;
    } else if (ev->kind == PLV_TRANSPORT_PEER_DOWN) {
        net->down[self][ev->peer]++;
    } else {
        NetRec *r = g_new0(NetRec, 1);
        r->peer = ev->peer;
        r->data = g_byte_array_new();
        g_byte_array_append(r->data, ev->data, ev->len);
        g_queue_push_tail(&net->got[self], r);
    }
}

PlvTransport *net_endpoint(Net *net, int i, const uint8_t *secret, size_t len)
{
    PlvRdmaTransportConfig cfg = {
        .self_id = i, .peers = net->addr, .n_peers = NET_N,
        .secret = secret, .secret_len = len,
        .ring_bytes = net->ring_bytes,
        .backoff_min_ms = 20, .backoff_max_ms = 200,
        /* rxe under TCG retransmits: generous, never asserted on */
        .handshake_timeout_ms = 5000, .heartbeat_ms = 100,
        .peer_timeout_ms = 4000, .sealed = plv_rdma_test_sealed(),
    };
    GError *err = NULL;
    PlvTransport *t = plv_transport_rdma_new(&cfg, &err);
    CHECKF(t, "new: %s", err ? err->message : "?");
    CHECKF(plv_transport_start(t, &err) == 0, "start: %s", err ? err->message : "?");
    return t;
}

void net_prepare(Net *net, uint16_t base_port, size_t ring_bytes)
{
    memset(net, 0, sizeof(*net));
    net->ring_bytes = ring_bytes;
    for (int i = 0; i < NET_N; i++) {
        net->addr[i] = (PlvPeerAddr){ .id = i, .host = plv_rdma_test_addr(),
                                      .port = base_port + i };
        g_queue_init(&net->got[i]);
    }
}

void net_init(Net *net, uint16_t base_port, size_t ring_bytes)
{
    net_prepare(net, base_port, ring_bytes);
    for (int i = 0; i < NET_N; i++) {
        net->t[i] = net_endpoint(net, i, NET_SECRET, sizeof(NET_SECRET));
    }
}

void net_rec_free(NetRec *r)
{
    g_byte_array_unref(r->data);
    g_free(r);
}

void net_free(Net *net)
{
    for (int i = 0; i < NET_N; i++) {
        plv_transport_free(net->t[i]);
        net->t[i] = NULL;
        g_queue_clear_full(&net->got[i], (GDestroyNotify)net_rec_free);
    }
}

void net_pump(Net *net, int timeout_ms)
{
    for (int i = 0; i < NET_N; i++) {
        if (net->t[i]) {
            void *op[2] = { net, GINT_TO_POINTER(i) };
            CHECK(plv_transport_wait(net->t[i], timeout_ms, on_event, op) >= 0);
        }
    }
}

bool net_all_up(Net *net)
{
    for (int i = 0; i < NET_N; i++) {
        for (int j = 0; j < NET_N; j++) {
            if (i != j && !plv_transport_peer_up(net->t[i], j)) {
                return false;
            }
        }
    }
    return true;
}

NetRec *net_pop(Net *net, int i)
{
    return g_queue_pop_head(&net->got[i]);
}
