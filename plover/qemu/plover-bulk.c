/*
 * syncvm bulk link over TCP or RDMA (see plover-bulk.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "plover-bulk.h"

#ifdef PLOVER_HAVE_RDMA
#include "plover/transport-rdma.h"
#endif

#include <poll.h>

/* The RDMA link's staging buffer: room for a chunk of pages in flight. */
#define PLOVER_BULK_RDMA_RING (8 * 1024 * 1024)

struct PloverBulkListener {
    PlvTransportKind kind;
    int fd;
#ifdef PLOVER_HAVE_RDMA
    PlvRdmaListener *rdma;
#endif
};

struct PloverBulk {
    PlvTransportKind kind;
    PlvLink *tcp;
#ifdef PLOVER_HAVE_RDMA
    PlvRdmaLink *rdma;
#endif
};

#ifdef PLOVER_HAVE_RDMA
#define IF_RDMA(kind, rdma_expr, tcp_expr) \
    ((kind) == PLV_TRANSPORT_RDMA ? (rdma_expr) : (tcp_expr))
#else
#define IF_RDMA(kind, rdma_expr, tcp_expr) (tcp_expr)
#endif

PloverBulkListener *plover_bulk_listen(PlvTransportKind kind, const char *host,
                                       uint16_t port, GError **err)
{
    PloverBulkListener *l = g_new0(PloverBulkListener, 1);

    l->kind = kind;
    l->fd = -1;
#ifdef PLOVER_HAVE_RDMA
    if (kind == PLV_TRANSPORT_RDMA) {
        l->rdma = plv_rdma_listen(host, port, err);
        if (!l->rdma) {
            g_free(l);
            return NULL;
        }
        return l;
    }
#endif
    l->fd = plv_link_listen(host, port, err);
    if (l->fd < 0) {
        g_free(l);
        return NULL;
    }
    return l;
}

bool plover_bulk_pending(PloverBulkListener *l)
{
    struct pollfd pfd = { .fd = l->fd, .events = POLLIN };

    return l->fd >= 0 && poll(&pfd, 1, 0) > 0;
}

PloverBulk *plover_bulk_accept(PloverBulkListener *l, uint32_t self,
                               const uint8_t *secret, size_t secret_len,
                               int timeout_ms, GError **err)
{
    PloverBulk *b = g_new0(PloverBulk, 1);
    bool ok;

    b->kind = l->kind;
#ifdef PLOVER_HAVE_RDMA
    if (l->kind == PLV_TRANSPORT_RDMA) {
        b->rdma = plv_rdma_link_accept(l->rdma, self, PLV_LINK_CHANNEL_SYNCVM,
                                       secret, secret_len,
                                       PLOVER_BULK_RDMA_RING, timeout_ms, err);
        ok = b->rdma;
    } else
#endif
    {
        b->tcp = plv_link_accept(l->fd, self, PLV_LINK_CHANNEL_SYNCVM,
                                 secret, secret_len, timeout_ms, err);
        ok = b->tcp;
    }
    if (!ok) {
        g_free(b);
        return NULL;
    }
    return b;
}

PloverBulk *plover_bulk_connect(PlvTransportKind kind, const char *host,
                                uint16_t port, uint32_t self,
                                uint32_t expect_peer,
                                const uint8_t *secret, size_t secret_len,
                                int timeout_ms, GError **err)
{
    PloverBulk *b = g_new0(PloverBulk, 1);
    bool ok;

    b->kind = kind;
#ifdef PLOVER_HAVE_RDMA
    if (kind == PLV_TRANSPORT_RDMA) {
        b->rdma = plv_rdma_link_connect(host, port, self, expect_peer,
                                        PLV_LINK_CHANNEL_SYNCVM,
                                        secret, secret_len,
                                        PLOVER_BULK_RDMA_RING, timeout_ms, err);
        ok = b->rdma;
    } else
#endif
    {
        b->tcp = plv_link_connect(host, port, self, expect_peer,
                                  PLV_LINK_CHANNEL_SYNCVM, secret, secret_len,
                                  timeout_ms, err);
        ok = b->tcp;
    }
    if (!ok) {
        g_free(b);
        return NULL;
    }
    return b;
}

int plover_bulk_send(PloverBulk *b, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    return IF_RDMA(b->kind, plv_rdma_link_send(b->rdma, type, iov, iovcnt, err),
                   plv_link_send(b->tcp, type, iov, iovcnt, err));
}

int plover_bulk_recv(PloverBulk *b, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    return IF_RDMA(b->kind, plv_rdma_link_recv(b->rdma, type, payload, timeout_ms, err),
                   plv_link_recv(b->tcp, type, payload, timeout_ms, err));
}

uint32_t plover_bulk_peer_id(const PloverBulk *b)
{
    return IF_RDMA(b->kind, plv_rdma_link_peer_id(b->rdma),
                   plv_link_peer_id(b->tcp));
}

const uint8_t *plover_bulk_session_key(const PloverBulk *b)
{
    return IF_RDMA(b->kind, plv_rdma_link_session_key(b->rdma),
                   plv_link_session_key(b->tcp));
}

void plover_bulk_channel(PloverBulk *b, PlvSyncvmChannel *ch)
{
#ifdef PLOVER_HAVE_RDMA
    if (b->kind == PLV_TRANSPORT_RDMA) {
        plv_syncvm_channel_init_rdma(ch, b->rdma);
        return;
    }
#endif
    plv_syncvm_channel_init_link(ch, b->tcp);
}

void plover_bulk_close(PloverBulk *b)
{
    if (!b) {
        return;
    }
#ifdef PLOVER_HAVE_RDMA
    if (b->rdma) {
        plv_rdma_link_close(b->rdma);
    }
#endif
    if (b->tcp) {
        plv_link_close(b->tcp);
    }
    g_free(b);
}
