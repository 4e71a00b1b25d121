/*
 * plover/peer-table.h — the connection policy both consensus transports
 * (transport-tcp.c, net/rdma/transport-rdma.c) share, so it exists once:
 *
 *   - the peers: id, address, the connection that is theirs, what
 *     peer_link() reports (PlvPeerLinkCell);
 *   - dialing: the lower id dials the higher one, redials with exponential
 *     backoff and ±25 % jitter from a PRNG the table holds;
 *   - the handshake: how long it may take (PLV_HANDSHAKE_TIMEOUT_MS, the
 *     dial limit by default too), which authenticated peer may use a
 *     connection, a fresh connection from a peer replacing its old one;
 *   - the unauthenticated connections: strangers refused, at most
 *     PLV_PEER_MAX_PENDING at once and PLV_PEER_PENDING_PER_ADDR from one
 *     address (plover/pending-slots.h picks who makes room);
 *   - closed connections, freed once the handler cannot hold them any more;
 *   - the counters (PlvTransportStats), the events wait() delivers, and the
 *     epoll set wait() sleeps in, with the eventfd behind wakeup() in it.
 *
 * A transport built on the table begins with it (the table begins with the
 * PlvTransport), so wakeup(), peer_up(), stats() and peer_link() are the
 * table's own functions. The connections are the transport's: its
 * connection type begins with a PlvPeerConn, which is all the table knows
 * of it. The transport tells the table how to dial, stop watching and
 * free one, and takes the events of the fds it added to the epoll set
 * (PlvPeerTableOps). Sockets, rdma_cm, framing and rings stay in the
 * transports.
 *
 * Threading: the transport's (plover/transport.h). The owner thread calls
 * everything except plv_peer_table_wakeup(), plv_peer_table_stats() and
 * plv_peer_table_link(), which any thread may call.
 */
#ifndef PLOVER_PEER_TABLE_H
#define PLOVER_PEER_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "plover/pending-slots.h"
#include "plover/sockutil.h"
#include "plover/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Unauthenticated connections at once, in either transport. On RDMA each
 * one holds a QP, a CQ, a protection domain and 12 KiB of pinned control
 * buffers (docs/rdma.md counts them in the memlock budget); with at most
 * PLV_MAX_REPLICAS - 1 peers dialing and a genuine dial never pushed out
 * by idle connections, 16 is room to spare.
 */
#define PLV_PEER_MAX_PENDING        16u
/* ...from one address: a stranger on a peer's host, or one peer redialing
 * fast, cannot take every slot (all peers share 127.0.0.1 in tests). */
#define PLV_PEER_PENDING_PER_ADDR   4u
/* Frame (TCP) or record (RDMA) type of a transport message. */
#define PLV_PEER_MSG_TYPE           1

typedef enum PlvPeerConnState {
    PLV_PEER_CONN_CONNECTING,   /* the transport's steps before the handshake */
    PLV_PEER_CONN_HANDSHAKE,    /* authenticating */
    PLV_PEER_CONN_UP,           /* authenticated: its peer's connection */
    PLV_PEER_CONN_DEAD,         /* closed; freed after this wait() */
} PlvPeerConnState;

typedef struct PlvPeer PlvPeer;

/* The first member of a transport's connection. */
typedef struct PlvPeerConn {
    PlvPeerConnState state;
    bool dialer;
    PlvPeer *peer;              /* dialer: whom it dials; acceptor: once up */
    int64_t deadline;           /* must be up by then (monotonic µs) */
    PlvPendingSlot slot;        /* acceptor, until up; the transport sets
                                 * slot.heard once the peer sent something */
} PlvPeerConn;

struct PlvPeer {
    uint32_t id;
    char *host;
    uint16_t port;
    PlvPeerConn *conn;          /* the up (or dialing) connection */
    PlvPeerLinkCell link;       /* what peer_link() reports */
    bool was_up;
    int backoff_ms;             /* the next redial's delay */
    int64_t next_dial;
};

typedef struct PlvPeerTable PlvPeerTable;

/* What the table asks of its transport (@tab: the transport's start). */
typedef struct PlvPeerTableOps {
    /*
     * Start a connection to @p, which has none and is due: make one and
     * hand it to plv_peer_table_dialing(), or call
     * plv_peer_table_schedule_dial() to try again later.
     */
    void (*dial)(PlvPeerTable *tab, PlvPeer *p);
    /* @c was just closed (its state is DEAD): stop watching it; no event
     * for it may come any more. */
    void (*release)(PlvPeerTable *tab, PlvPeerConn *c);
    /* Free @c (closed, and no handler runs). */
    void (*free)(PlvPeerTable *tab, PlvPeerConn *c);
    /* One of the transport's fds in the epoll set is ready (@data_ptr:
     * what it was added with). */
    void (*event)(PlvPeerTable *tab, void *data_ptr, uint32_t events);
} PlvPeerTableOps;

typedef struct PlvPeerTableConfig {
    const PlvTransportOps *transport_ops;   /* the transport's, in base */
    const char *name;           /* "tcp", "rdma": in messages; static */
    PlvPeerTableOps ops;
    uint32_t self_id;
    /* Every replica, self included (self's entry is where we listen). */
    const PlvPeerAddr *peers;
    size_t n_peers;
    const uint8_t *secret;      /* copied */
    size_t secret_len;
    int backoff_min_ms;         /* first redial delay; 0: 10 ms */
    int backoff_max_ms;         /* cap of the doubling; 0: 1000 ms */
    /* A dial (whatever the transport does to connect, and the handshake)
     * must be up within this; 0: PLV_HANDSHAKE_TIMEOUT_MS. */
    int dial_timeout_ms;
    uint32_t seed;              /* of the jitter; 0: a random one */
} PlvPeerTableConfig;

/* The table's settings from a transport's config (PlvTcpTransportConfig,
 * PlvRdmaTransportConfig: the fields they share, named alike). */
#define PLV_PEER_TABLE_SETTINGS(cfg) \
    .self_id = (cfg)->self_id, .peers = (cfg)->peers, \
    .n_peers = (cfg)->n_peers, .secret = (cfg)->secret, \
    .secret_len = (cfg)->secret_len, \
    .backoff_min_ms = (cfg)->backoff_min_ms, \
    .backoff_max_ms = (cfg)->backoff_max_ms, \
    .dial_timeout_ms = (cfg)->handshake_timeout_ms

struct PlvPeerTable {
    PlvTransport base;          /* first: the transport's ops are set here */
    /* The transport reads these; the table writes them. */
    const char *name;
    uint32_t self_id;
    PlvPeer *peers;
    size_t n_peers;
    const PlvPeer *self;
    uint8_t *secret;
    size_t secret_len;
    int epfd;                   /* what wait() sleeps in; -1 until started */
    int wake_fd;                /* eventfd in it, data.ptr = &wake_fd */
    GPtrArray *pending;         /* of PlvPeerConn *: accepted, not up yet */
    PlvTransportStats st;       /* PLV_PEER_STAT_ADD(), owner thread */
    int delivered;              /* events in this wait() */
    bool woken;                 /* wakeup() seen in this wait() */

    /* The table's own. */
    PlvPeerTableOps ops;
    int backoff_min_ms, backoff_max_ms, dial_timeout_ms;
    PlvAddrSet *peer_addrs;     /* sources allowed a pending slot */
    GPtrArray *grave;           /* closed during this wait(), freed after */
    GRand *rand;
    PlvTransportHandler h;      /* set while wait() runs */
    void *hop;
};

/* Counters are read by other threads: store them whole. */
#define PLV_PEER_STAT_ADD(tab, f, n) \
    __atomic_store_n(&(tab)->st.f, (tab)->st.f + (n), __ATOMIC_RELAXED)

/*
 * A transport of @size bytes (zeroed) that begins with its table, made
 * from @cfg. NULL with @err (PLV_LINK_ERROR_INVALID) if a peer id is
 * listed twice, self is not among the peers, or the secret is too short.
 */
void *plv_peer_table_new(size_t size, const PlvPeerTableConfig *cfg,
                         GError **err);
/* Resolve the peers' hosts (which sources may take a pending slot), make
 * the epoll set and the wakeup eventfd in it. 0, or -1 with @err. */
int plv_peer_table_start(PlvPeerTable *tab, GError **err);
/* Started: the epoll set exists. */
static inline bool plv_peer_table_started(const PlvPeerTable *tab)
{
    return tab->epfd >= 0;
}
/* Close and free every connection, with no events. */
void plv_peer_table_close_all(PlvPeerTable *tab);
/* Free the table and the transport it begins (connections closed). */
void plv_peer_table_free(PlvPeerTable *tab);

PlvPeer *plv_peer_table_find(PlvPeerTable *tab, uint32_t id);

/* A transport's wakeup(), peer_up(), stats() and peer_link() (@t: a
 * transport that begins with its table). */
void plv_peer_table_wakeup(PlvTransport *t);
bool plv_peer_table_peer_up(PlvTransport *t, uint32_t id);
void plv_peer_table_stats(PlvTransport *t, PlvTransportStats *out);
void plv_peer_table_link(PlvTransport *t, uint32_t id, PlvPeerLinkInfo *out);
/* ...as entries of its PlvTransportOps. */
#define PLV_PEER_TABLE_TRANSPORT_OPS \
    .wakeup = plv_peer_table_wakeup, .peer_up = plv_peer_table_peer_up, \
    .stats = plv_peer_table_stats, .peer_link = plv_peer_table_link

/* The next dial to @p after its backoff (with jitter), doubling it. */
void plv_peer_table_schedule_dial(PlvPeerTable *tab, PlvPeer *p);
/* @c, in @state, is the dial to @p (from ops.dial). */
void plv_peer_table_dialing(PlvPeerTable *tab, PlvPeerConn *c, PlvPeer *p,
                            PlvPeerConnState state);
/*
 * May a connection from @src wait for its handshake? Not if @src is no
 * peer's address (counted in rejected_strangers). Else yes, after closing
 * another unauthenticated connection if @src or the table is at its cap
 * (pending_evicted): a redialing peer always gets through.
 */
bool plv_peer_table_admit(PlvPeerTable *tab, const PlvIpAddr *src);
/* @c, in @state, was accepted from @src (admitted): pending from now on. */
void plv_peer_table_accepted(PlvPeerTable *tab, PlvPeerConn *c,
                             PlvPeerConnState state, const PlvIpAddr *src);
/*
 * @c's handshake authenticated peer @id. If @c is a dial to @id, or
 * accepted from a lower id, it becomes @id's connection (replacing one
 * that was: the peer gave it up) and PEER_UP is delivered; @heard_us, if
 * not 0, is when the peer was last heard. Else it is closed (unknown_peers)
 * and false returned.
 */
bool plv_peer_table_up(PlvPeerTable *tab, PlvPeerConn *c, uint32_t id,
                       int64_t heard_us);
/* Close @c (no-op if closed): PEER_DOWN if it was up, a redial if it was
 * our dial; freed at the end of this wait(). */
void plv_peer_table_close(PlvPeerTable *tab, PlvPeerConn *c);
/* The handshake on @c failed (@why: for the debug log): counted, closed. */
void plv_peer_table_auth_failed(PlvPeerTable *tab, PlvPeerConn *c,
                                const char *why);

/* A valid frame of @type on up @c, heard at @heard_us: a message
 * (PLV_PEER_MSG_TYPE) is delivered, another type counted as malformed. */
void plv_peer_table_frame(PlvPeerTable *tab, PlvPeerConn *c, uint16_t type,
                          const uint8_t *data, size_t len, int64_t heard_us);
/* The up connection a message of @len bytes to @to goes on; NULL if there
 * is none or @len is over PLV_LINK_MAX_PAYLOAD. */
PlvPeerConn *plv_peer_table_send_conn(PlvPeerTable *tab, uint32_t to,
                                      size_t len);
/* What send() returns once it queued @len bytes (0) or dropped them (-1),
 * counted. */
int plv_peer_table_queued(PlvPeerTable *tab, size_t len);
int plv_peer_table_dropped(PlvPeerTable *tab);

/*
 * Start the dials that are due, close connections past their deadline (a
 * timed-out handshake counts in auth_failures). Returns when it wants to
 * run next (PLV_DEADLINE_NONE: nothing pending).
 */
int64_t plv_peer_table_maintain(PlvPeerTable *tab);
/* Free what was closed (nothing may still point at it). */
void plv_peer_table_bury(PlvPeerTable *tab);

/* Around wait(): events go to @h from begin() to end(); begin() returns
 * the deadline @timeout_ms makes, end() how many events were delivered. */
int64_t plv_peer_table_wait_begin(PlvPeerTable *tab, int timeout_ms,
                                  PlvTransportHandler h, void *opaque);
int plv_peer_table_wait_end(PlvPeerTable *tab);
/* wait() may return: an event was delivered or wakeup() was called. */
static inline bool plv_peer_table_wait_done(const PlvPeerTable *tab)
{
    return tab->delivered > 0 || tab->woken;
}
/* Inside wait(), where events can be delivered. */
static inline bool plv_peer_table_in_wait(const PlvPeerTable *tab)
{
    return tab->h != NULL;
}
/*
 * Sleep in the epoll set until something is ready or @deadline: the wake
 * fd is drained here (wait_done() from then on), the transport's fds go to
 * ops.event. 0, or -1 (errno) if epoll failed.
 */
int plv_peer_table_sleep(PlvPeerTable *tab, int64_t deadline);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_PEER_TABLE_H */
