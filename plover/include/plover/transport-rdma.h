/*
 * plover/transport-rdma.h — the consensus transport (plover/transport.h) over
 * RDMA, and a point-to-point bulk link over RDMA for syncvm.
 *
 * Built only where rdma-core's headers were found (PLOVER_HAVE_RDMA); this
 * header itself needs none of them. How it works, how to run it on real
 * NICs and why a reader never sees half a message: docs/rdma.md.
 */
#ifndef PLOVER_TRANSPORT_RDMA_H
#define PLOVER_TRANSPORT_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>

#include "plover/link.h"
#include "plover/sockutil.h"
#include "plover/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvRdmaTransportConfig {
    uint32_t self_id;
    /* Every replica, self included; addresses of RDMA-capable netdevs
     * (RoCE) or IPoIB interfaces; rdma_cm picks the device and port. */
    const PlvPeerAddr *peers;
    size_t n_peers;
    const uint8_t *secret;
    size_t secret_len;
    size_t ring_bytes;          /* receive ring per peer; 0: 4 MiB */
    unsigned signal_every;      /* completion every k writes; 0: 16 */
    int backoff_min_ms;         /* first reconnect delay; 0: 10 ms */
    int backoff_max_ms;         /* cap of the doubling; 0: 1000 ms */
    int handshake_timeout_ms;   /* dial: resolve + connect + auth;
                                 * 0: PLV_HANDSHAKE_TIMEOUT_MS (accepted
                                 * connections always get that) */
    int heartbeat_ms;           /* idle interval between heartbeats; 0: 100 */
    int peer_timeout_ms;        /* silence that declares a peer down; 0: 3000 */
    size_t max_queue_bytes;     /* per peer unsent bytes; 0: 64 MiB */
    /*
     * Poll the rings and CQs for this long before sleeping on the
     * completion channels (APUS-style polling for a core of its own);
     * 0: sleep at once. Soft-RoCE may deliver completion events up to a
     * kernel tick late, which a short spin hides.
     */
    unsigned spin_us;
    /* Seal every ring record with AES-256-GCM keyed from the handshake
     * (docs/rdma.md, "Sealed records"); every replica must. */
    bool sealed;
} PlvRdmaTransportConfig;

/*
 * Same connection rules as TCP: the lower id dials the higher one and
 * redials with backoff; a fresh connection from a peer replaces its old
 * one. Messages are RDMA-WRITten into the peer's ring; see docs/rdma.md.
 * Connection requests from addresses that are no peer's are rejected.
 */
PlvTransport *plv_transport_rdma_new(const PlvRdmaTransportConfig *cfg,
                                     GError **err);

/* rdma_cm port we listen on (useful with port 0), 0 before start(). */
uint16_t plv_transport_rdma_port(PlvTransport *t);

/* ---- bulk link: one authenticated RDMA connection, blocking calls ---- */

typedef struct PlvRdmaLink PlvRdmaLink;
typedef struct PlvRdmaListener PlvRdmaListener;

/* Errors are in the PLV_LINK_ERROR domain, like PlvLink's. As with
 * PlvLink, one thread may send while another receives on one link. */
PlvRdmaListener *plv_rdma_listen(const char *host, uint16_t port,
                                 GError **err);
uint16_t plv_rdma_listener_port(const PlvRdmaListener *l);
/* From now on refuse connection requests whose source is not in @allowed
 * (taken over; NULL: any), before anything is allocated for them. */
void plv_rdma_listener_allow(PlvRdmaListener *l, PlvAddrSet *allowed);
/* Requests refused so far by that rule (any thread). */
uint64_t plv_rdma_listener_strangers(const PlvRdmaListener *l);
void plv_rdma_listener_free(PlvRdmaListener *l);

/*
 * An RDMA bulk link: a PlvBulkLink (plover/bulk-link.h), used through its
 * calls (plv_bulk_send, plv_bulk_recv, ..., plv_bulk_close). Sends block
 * for ring credits; a receive timeout keeps the link usable.
 *
 * @ring_bytes: the staging buffer the peer writes into (0: 8 MiB); it is
 * allocated only once the peer passed the handshake. @channel and
 * @expect_peer as for plv_link_accept() / plv_link_connect(). @sealed:
 * records sealed with AES-256-GCM, as the transport's.
 */
PlvBulkLink *plv_rdma_link_accept(PlvRdmaListener *l, uint32_t self_id,
                                  PlvLinkChannel channel,
                                  const uint8_t *secret, size_t secret_len,
                                  bool sealed, size_t ring_bytes,
                                  int timeout_ms, GError **err);
PlvBulkLink *plv_rdma_link_connect(const char *host, uint16_t port,
                                   uint32_t self_id, uint32_t expect_peer,
                                   PlvLinkChannel channel,
                                   const uint8_t *secret, size_t secret_len,
                                   bool sealed, size_t ring_bytes,
                                   int timeout_ms, GError **err);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_TRANSPORT_RDMA_H */
