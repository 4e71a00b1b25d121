/*
 * plover/transport.h — multi-peer message transport for consensus.
 *
 * An abstract interface (a vtable) so the TCP implementation here and an RDMA
 * one later are interchangeable under the driver. Messages are whole byte
 * strings; a transport is allowed to drop them (the consensus protocol
 * retransmits) but never to reorder, corrupt or duplicate them on one
 * connection, and it only delivers bytes from authenticated peers.
 *
 * Threading: one thread (the driver's) calls everything except wakeup(),
 * stats() and peer_link(), which any thread may call.
 */
#ifndef PLOVER_TRANSPORT_H
#define PLOVER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvTransport PlvTransport;

typedef enum PlvTransportEventKind {
    PLV_TRANSPORT_MESSAGE,      /* a message from @peer: data/len */
    PLV_TRANSPORT_PEER_UP,      /* an authenticated connection to @peer is up */
    PLV_TRANSPORT_PEER_DOWN,    /* it went away; messages to it are dropped */
} PlvTransportEventKind;

typedef struct PlvTransportEvent {
    PlvTransportEventKind kind;
    uint32_t peer;
    const uint8_t *data;        /* MESSAGE: valid only during the callback */
    size_t len;
} PlvTransportEvent;

typedef void (*PlvTransportHandler)(void *opaque, const PlvTransportEvent *ev);

typedef struct PlvTransportStats {
    uint64_t frames_in, frames_out;
    uint64_t bytes_in, bytes_out;       /* payload bytes */
    uint64_t auth_failures;     /* connections that failed the handshake */
    uint64_t malformed_dropped; /* bad frames from authenticated peers */
    uint64_t unknown_peers;     /* authenticated but not in our peer list */
    uint64_t connects;          /* connections that came up */
    uint64_t reconnects;        /* ...of which to a peer that was up before */
    uint64_t disconnects;
    uint64_t send_dropped;      /* messages dropped: peer down or queue full */
    uint64_t rejected_strangers;    /* closed at accept: not from a peer's address */
    uint64_t pending_evicted;   /* unauthenticated, closed to free a slot */
    uint64_t tls_refused;       /* auth_failures of TLS: certificate, plaintext */
} PlvTransportStats;

/*
 * How long an accepted connection may take to authenticate, in both
 * transports (their peer table, plover/peer-table.h) and the syncvm port,
 * before its slot goes back. Authenticating is two round trips once
 * connected (HELLOs cross, then AUTHs): milliseconds on a LAN, and well
 * under a second on a loaded host or over soft-RoCE, whose completion
 * events can come a scheduler tick late. 2 s leaves that slack many times
 * over while bounding how long a connection that never authenticates holds
 * a slot. A dial (connect and, for RDMA, address and route resolution, then
 * the handshake) gets the same by default; its limit is configurable.
 */
#define PLV_HANDSHAKE_TIMEOUT_MS 2000

typedef enum PlvPeerLinkState {
    PLV_PEER_LINK_DOWN,         /* no connection, and none being made now */
    PLV_PEER_LINK_CONNECTING,   /* dialing, or the handshake is under way */
    PLV_PEER_LINK_UP,           /* an authenticated connection is up */
} PlvPeerLinkState;

typedef struct PlvPeerLinkInfo {
    uint32_t peer;
    PlvPeerLinkState state;
    /* g_get_monotonic_time() (us) when the last valid frame from the peer
     * arrived; 0: never. Kept across reconnects. */
    int64_t last_heard_us;
} PlvPeerLinkInfo;

typedef struct PlvTransportOps {
    const char *name;
    /* Start listening/connecting. 0 or -1 with @err; again: no-op. */
    int (*start)(PlvTransport *t, GError **err);
    /*
     * Queue @len bytes to peer @to; never blocks. Returns 0 if queued, -1 if
     * dropped (peer unknown or down, queue full, message too big).
     */
    int (*send)(PlvTransport *t, uint32_t to, const void *buf, size_t len);
    /*
     * Flush queued sends, wait up to @timeout_ms (< 0: forever) for traffic
     * and deliver what arrived through @h. Returns when at least one event
     * was delivered, wakeup() was called, or the timeout passed. Returns the
     * number of events delivered, -1 on a fatal error.
     */
    int (*wait)(PlvTransport *t, int timeout_ms, PlvTransportHandler h,
                void *opaque);
    /* Write queued sends now, without waiting for anything. */
    void (*flush)(PlvTransport *t);
    /* Make a concurrent or the next wait() return early. Thread-safe. */
    void (*wakeup)(PlvTransport *t);
    /* True if an authenticated connection to @peer is up. */
    bool (*peer_up)(PlvTransport *t, uint32_t peer);
    /* Snapshot of the counters. Thread-safe. */
    void (*stats)(PlvTransport *t, PlvTransportStats *out);
    /* The link to @peer (unknown peers and self: DOWN, never heard).
     * Thread-safe. */
    void (*peer_link)(PlvTransport *t, uint32_t peer, PlvPeerLinkInfo *out);
    void (*free)(PlvTransport *t);
} PlvTransportOps;

/* Implementations embed this as their first member. */
struct PlvTransport {
    const PlvTransportOps *ops;
};

static inline int plv_transport_start(PlvTransport *t, GError **err)
{
    return t->ops->start(t, err);
}

static inline int plv_transport_send(PlvTransport *t, uint32_t to,
                                     const void *buf, size_t len)
{
    return t->ops->send(t, to, buf, len);
}

static inline int plv_transport_wait(PlvTransport *t, int timeout_ms,
                                     PlvTransportHandler h, void *opaque)
{
    return t->ops->wait(t, timeout_ms, h, opaque);
}

static inline void plv_transport_flush(PlvTransport *t)
{
    t->ops->flush(t);
}

static inline void plv_transport_wakeup(PlvTransport *t)
{
    t->ops->wakeup(t);
}

static inline bool plv_transport_peer_up(PlvTransport *t, uint32_t peer)
{
    return t->ops->peer_up(t, peer);
}

static inline void plv_transport_stats(PlvTransport *t, PlvTransportStats *out)
{
    t->ops->stats(t, out);
}

static inline void plv_transport_peer_link(PlvTransport *t, uint32_t peer,
                                           PlvPeerLinkInfo *out)
{
    t->ops->peer_link(t, peer, out);
}

/*
 * For implementations: one peer's link as peer_link() reports it, written
 * by the owner thread and read by any (each field is stored whole).
 */
typedef struct PlvPeerLinkCell {
    int state;                  /* PlvPeerLinkState */
    int64_t last_heard_us;
} PlvPeerLinkCell;

static inline void plv_peer_link_set_state(PlvPeerLinkCell *c, PlvPeerLinkState s)
{
    __atomic_store_n(&c->state, (int)s, __ATOMIC_RELAXED);
}

static inline void plv_peer_link_heard(PlvPeerLinkCell *c, int64_t when_us)
{
    __atomic_store_n(&c->last_heard_us, when_us, __ATOMIC_RELAXED);
}

/* @c NULL: a peer the transport does not know. */
static inline void plv_peer_link_read(const PlvPeerLinkCell *c, uint32_t peer,
                                      PlvPeerLinkInfo *out)
{
    out->peer = peer;
    out->state = c ? (PlvPeerLinkState)__atomic_load_n(&c->state, __ATOMIC_RELAXED)
                   : PLV_PEER_LINK_DOWN;
    out->last_heard_us = c ? __atomic_load_n(&c->last_heard_us, __ATOMIC_RELAXED) : 0;
}

static inline void plv_transport_free(PlvTransport *t)
{
    if (t) {
        t->ops->free(t);
    }
}

/* ---- TCP implementation ---- */

typedef struct PlvPeerAddr {
    uint32_t id;
    const char *host;           /* numeric address or name */
    uint16_t port;
} PlvPeerAddr;

typedef struct PlvTcpTransportConfig {
    uint32_t self_id;
    /* Every replica, self included (self's entry is where we listen). */
    const PlvPeerAddr *peers;
    size_t n_peers;
    const uint8_t *secret;
    size_t secret_len;
    /* An already listening socket to use instead of binding self's address
     * (lets callers pick ephemeral ports first); -1 for none. Taken over. */
    int listen_fd;
    int backoff_min_ms;         /* first reconnect delay; 0: 10 ms */
    int backoff_max_ms;         /* cap of the doubling; 0: 1000 ms */
    int handshake_timeout_ms;   /* dial: connect + handshake;
                                 * 0: PLV_HANDSHAKE_TIMEOUT_MS */
    size_t max_queue_bytes;     /* per peer unsent bytes; 0: 64 MiB */
    /* Every connection inside TLS (plover/tls.h; a reference is taken);
     * NULL: plaintext. */
    struct PlvTls *tls;
} PlvTcpTransportConfig;

/*
 * One authenticated TCP connection per peer pair: the lower id dials the
 * higher one and redials with exponential backoff; the higher id accepts
 * (a fresh connection from a peer replaces its old one). TCP_NODELAY,
 * epoll, non-blocking sockets. Only connections from the peers' addresses
 * (resolved at start) are accepted, and one address holds at most a few of
 * the slots for connections still authenticating.
 */
PlvTransport *plv_transport_tcp_new(const PlvTcpTransportConfig *cfg,
                                    GError **err);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_TRANSPORT_H */
