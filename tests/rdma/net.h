/*
 * Three RDMA transports in one process, pumped from the test thread (the
 * in-guest counterpart of tests/unit/test-transport-tcp.c's set-up).
 */
#ifndef PLOVER_RDMA_TEST_NET_H
#define PLOVER_RDMA_TEST_NET_H

#include "plover/transport-rdma.h"

#define NET_N 3

typedef struct NetRec {
    uint32_t peer;
    GByteArray *data;
} NetRec;

typedef struct Net {
    PlvTransport *t[NET_N];
    GQueue got[NET_N];          /* of NetRec* per endpoint */
    int up[NET_N][NET_N];       /* up[i][j]: i saw j come up (count) */
    int down[NET_N][NET_N];
    PlvPeerAddr addr[NET_N];
    size_t ring_bytes;
} Net;

extern const uint8_t NET_SECRET[24];

/* Addresses base, base+1, base+2 on the guest's rxe address; no endpoints
 * yet (net_endpoint makes them, e.g. after a fork). */
void net_prepare(Net *net, uint16_t base_port, size_t ring_bytes);
/* net_prepare, then all three endpoints. */
void net_init(Net *net, uint16_t base_port, size_t ring_bytes);
PlvTransport *net_endpoint(Net *net, int i, const uint8_t *secret, size_t len);
void net_free(Net *net);
void net_pump(Net *net, int timeout_ms);
bool net_all_up(Net *net);
NetRec *net_pop(Net *net, int i);
void net_rec_free(NetRec *r);

#define NET_PUMP_UNTIL(net, cond, ms)                                     \
    do {                                                                  \
        gint64 end_ = g_get_monotonic_time() + (gint64)(ms) * 1000;       \
        while (!(cond)) {                                                 \
            CHECKF(g_get_monotonic_time() < end_, "timeout: %s", #cond);  \
            net_pump(net, 5);                                             \
        }                                                                 \
    } while (0)

#endif
