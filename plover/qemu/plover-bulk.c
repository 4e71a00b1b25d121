/*
 * Where syncvm bulk links come from, over TCP or RDMA (see plover-bulk.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "plover-bulk.h"
#include "plover/transport.h"
#include "plover/peer-mailbox.h"

#ifdef PLOVER_HAVE_RDMA
#include "plover/transport-rdma.h"
#endif

/* The RDMA link's staging buffer: room for a chunk of pages in flight. */
#define PLOVER_BULK_RDMA_RING (8 * 1024 * 1024)

#ifdef PLOVER_HAVE_RDMA
/*
 * rdma_cm has no accept queue we could filter or poll as a socket: one
 * thread accepts connection after connection, each bounded by the
 * handshake timeout, and leaves the newest link of each peer in a slot.
 * Requests from addresses that are no peer's are refused before any of
 * that; one that stalls its handshake from a peer's own address delays
 * the next dial by up to the handshake timeout (2 s), which may fail one
 * syncvm.
 */
typedef struct PloverRdmaAcceptor {
    PlvRdmaListener *listener;
    uint32_t self, n_peers;
    uint8_t *secret;
    bool sealed;                /* tls-creds: records sealed (AES-256-GCM) */
    size_t secret_len;
    QemuThread thread;
    PlvPeerMailbox *mailbox;    /* PlvBulkLink*, newest per peer */
    QemuMutex lock;             /* st */
    PlvLinkAcceptorStats st;
} PloverRdmaAcceptor;
#endif

struct PloverBulkListener {
    PlvTransportKind kind;
    PlvLinkAcceptor *tcp;
#ifdef PLOVER_HAVE_RDMA
    PloverRdmaAcceptor *rdma;
#endif
};

/* Only the other replicas ever dial a bulk port. */
/*
 * A TCP bulk link's send waits while the peer reads nothing for at most
 * this long: in a full syncvm the peer may be hashing all of memory
 * before it reads again (receives keep syncvm-timeout-ms, or the full
 * syncvm's own). The RDMA link has its own stall bound.
 */
static int plover_bulk_send_timeout(const PlvConfig *cfg)
{
    return MAX(cfg->syncvm_timeout_ms, PLOVER_FULL_SYNC_TIMEOUT_MS);
}

static PlvAddrSet *plover_bulk_peer_addrs(const PlvConfig *cfg)
{
    PlvAddrSet *set = plv_addr_set_new();

    for (unsigned i = 0; i < cfg->n_peers; i++) {
        if (i != cfg->id) {
            plv_addr_set_add_host(set, cfg->peers[i].host);
        }
    }
    plv_addr_set_resolve(set);
    return set;
}

#ifdef PLOVER_HAVE_RDMA
static void plover_rdma_count(PloverRdmaAcceptor *a, uint64_t *field)
{
    qemu_mutex_lock(&a->lock);
    (*field)++;
    qemu_mutex_unlock(&a->lock);
}

static void *plover_rdma_accept_thread(void *opaque)
{
    PloverRdmaAcceptor *a = opaque;

    for (;;) {
        g_autoptr(GError) err = NULL;
        PlvBulkLink *rl = plv_rdma_link_accept(a->listener, a->self,
                                               PLV_LINK_CHANNEL_SYNCVM, a->secret,
                                               a->secret_len, a->sealed,
                                               PLOVER_BULK_RDMA_RING,
                                               PLV_HANDSHAKE_TIMEOUT_MS, &err);
        uint32_t peer;

        if (!rl) {
            if (!plv_link_error_is_timeout(err)) {
                plover_rdma_count(a, &a->st.failed);
                g_usleep(10 * 1000);    /* a lasting error must not spin */
            }
            continue;
        }
        peer = plv_bulk_peer_id(rl);
        if (peer >= a->n_peers || peer == a->self) {
            plv_bulk_close(rl);
            plover_rdma_count(a, &a->st.failed);
            continue;
        }
        plover_rdma_count(a, &a->st.accepted);
        if (plv_peer_mailbox_put(a->mailbox, peer, rl)) {
            plover_rdma_count(a, &a->st.replaced);
        }
    }
    return NULL;
}

static PloverRdmaAcceptor *plover_rdma_acceptor_new(const PlvConfig *cfg,
                                                    const uint8_t *secret,
                                                    size_t secret_len,
                                                    bool sealed,
                                                    GError **err)
{
    const PlvConfigPeer *self = &cfg->peers[cfg->id];
    PloverRdmaAcceptor *a;
    PlvRdmaListener *rl = plv_rdma_listen(self->host, self->port + 1, err);

    if (!rl) {
        return NULL;
    }
    plv_rdma_listener_allow(rl, plover_bulk_peer_addrs(cfg));
    a = g_new0(PloverRdmaAcceptor, 1);
    a->listener = rl;
    a->self = cfg->id;
    a->n_peers = cfg->n_peers;
    a->secret = g_memdup2(secret, secret_len);
    a->secret_len = secret_len;
    a->sealed = sealed;
    a->mailbox = plv_peer_mailbox_new(cfg->n_peers, (GDestroyNotify)plv_bulk_close);
    qemu_mutex_init(&a->lock);
    /* Lives as long as the process, like the replica. */
    qemu_thread_create(&a->thread, "plover-bulk-acc", plover_rdma_accept_thread,
                       a, QEMU_THREAD_DETACHED);
    return a;
}

#endif

PloverBulkListener *plover_bulk_listen(const PlvConfig *cfg,
                                       const uint8_t *secret, size_t secret_len,
                                       PlvTls *tls, GError **err)
{
    const PlvConfigPeer *self = &cfg->peers[cfg->id];
    PloverBulkListener *l = g_new0(PloverBulkListener, 1);
    PlvLinkAcceptorConfig acfg = {
        .self_id = cfg->id,
        .channel = PLV_LINK_CHANNEL_SYNCVM,
        .n_peers = cfg->n_peers,
        .secret = secret,
        .secret_len = secret_len,
        .tls = tls,
        .handshake_timeout_ms = PLV_HANDSHAKE_TIMEOUT_MS,
        .io_timeout_ms = plover_bulk_send_timeout(cfg),
    };

    l->kind = cfg->transport;
#ifdef PLOVER_HAVE_RDMA
    if (cfg->transport == PLV_TRANSPORT_RDMA) {
        l->rdma = plover_rdma_acceptor_new(cfg, secret, secret_len, tls != NULL,
                                           err);
        if (!l->rdma) {
            g_free(l);
            return NULL;
        }
        return l;
    }
#endif
    acfg.listen_fd = plv_link_listen(self->host, self->port + 1, err);
    if (acfg.listen_fd < 0) {
        g_free(l);
        return NULL;
    }
    acfg.allowed = plover_bulk_peer_addrs(cfg);
    l->tcp = plv_link_acceptor_new(&acfg, err);
    if (!l->tcp) {
        close(acfg.listen_fd);
        g_free(l);
        return NULL;
    }
    return l;
}

PlvBulkLink *plover_bulk_take(PloverBulkListener *l, uint32_t peer, int timeout_ms)
{
#ifdef PLOVER_HAVE_RDMA
    if (l->kind == PLV_TRANSPORT_RDMA) {
        return plv_peer_mailbox_take(l->rdma->mailbox, peer, timeout_ms);
    }
#endif
    return plv_link_bulk(plv_link_acceptor_take(l->tcp, peer, timeout_ms));
}

bool plover_bulk_ready(PloverBulkListener *l, uint32_t peer)
{
#ifdef PLOVER_HAVE_RDMA
    if (l->kind == PLV_TRANSPORT_RDMA) {
        return plv_peer_mailbox_ready(l->rdma->mailbox, peer);
    }
#endif
    return plv_link_acceptor_ready(l->tcp, peer);
}

void plover_bulk_listener_stats(PloverBulkListener *l, PlvLinkAcceptorStats *st)
{
#ifdef PLOVER_HAVE_RDMA
    if (l->kind == PLV_TRANSPORT_RDMA) {
        qemu_mutex_lock(&l->rdma->lock);
        *st = l->rdma->st;
        qemu_mutex_unlock(&l->rdma->lock);
        st->strangers = plv_rdma_listener_strangers(l->rdma->listener);
        return;
    }
#endif
    plv_link_acceptor_get_stats(l->tcp, st);
}

PlvBulkLink *plover_bulk_connect(const PlvConfig *cfg, uint32_t peer,
                                 const uint8_t *secret, size_t secret_len,
                                 PlvTls *tls, int timeout_ms, GError **err)
{
    const PlvConfigPeer *p = &cfg->peers[peer];
    PlvLink *l;

#ifdef PLOVER_HAVE_RDMA
    if (cfg->transport == PLV_TRANSPORT_RDMA) {
        return plv_rdma_link_connect(p->host, p->port + 1, cfg->id, peer,
                                     PLV_LINK_CHANNEL_SYNCVM, secret, secret_len,
                                     tls != NULL, PLOVER_BULK_RDMA_RING,
                                     timeout_ms, err);
    }
#endif
    l = plv_link_connect_tls(p->host, p->port + 1, cfg->id, peer,
                             PLV_LINK_CHANNEL_SYNCVM, secret, secret_len, tls,
                             timeout_ms, err);
    if (l) {
        plv_link_set_send_timeout(l, plover_bulk_send_timeout(cfg));
    }
    return plv_link_bulk(l);
}
