/*
 * RDMA transport for consensus (plover/transport-rdma.h): rdma_cm to
 * connect, one RC connection per peer pair (rdma-conn.c) carrying messages
 * as one-sided RDMA WRITEs into the receiver's ring, heartbeats over the
 * same QP. Connection rules mirror transport-tcp.c: the lower id dials,
 * backoff with jitter, a fresh authenticated connection replaces the old.
 *
 * One thread (the caller of wait) does everything; it sleeps in epoll on
 * the rdma_cm channel, every connection's completion channel and an
 * eventfd for wakeup(), so an idle replica costs no CPU (with one vCPU,
 * spinning would starve soft-RoCE's kernel work).
 */
#include "plover/transport-rdma.h"
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "net/rdma/rdma-conn.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS  64
#define MAX_PENDING 16          /* unauthenticated connections at once */
#define MSG_TYPE    1           /* record type of a transport message */
#define RESOLVE_MS  2000

enum { SRC_CM = 1, SRC_WAKE, SRC_CONN };
enum { C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_UP, C_DEAD };

typedef struct RdmaTransport RdmaTransport;
typedef struct Peer Peer;

typedef struct Conn {
    int kind;                   /* SRC_CONN; first, read through epoll data */
    RdmaTransport *t;
    struct rdma_cm_id *id;      /* owned here until rc exists, then by rc */
    PlvRdmaConn *rc;
    int state;
    bool dialer, in_epoll;
    bool doomed;                /* failed before ESTABLISHED; see poll_all */
    Peer *peer;                 /* dialer: whom we dial; acceptor: once up */
    int64_t deadline;           /* must be up by then */
    int64_t next_hb;
    GQueue q;                   /* GBytes waiting for ring space */
    size_t q_bytes, head_done;
} Conn;

struct Peer {
    uint32_t id;
    char *host;
    uint16_t port;
    Conn *conn;
    PlvPeerLinkCell link;       /* what peer_link() reports */
    bool was_up;
    int backoff_ms;
    int64_t next_dial;
};

struct RdmaTransport {
    PlvTransport base;
    uint32_t self_id;
    uint8_t *secret;
    size_t secret_len;
    size_t ring_bytes, max_queue;
    unsigned signal_every, spin_us;
    int backoff_min_ms, backoff_max_ms, hs_timeout_ms, hb_ms, dead_ms;
    Peer *peers;
    size_t n_peers;
    char *listen_host;
    uint16_t listen_port, bound_port;
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listen_id;
    int epfd, wake_fd;
    int tag_cm, tag_wake;
    GPtrArray *pending;         /* accepted, not yet authenticated */
    PlvAddrSet *peer_addrs;     /* sources allowed a pending slot */
    GPtrArray *grave;           /* closed during this wait(), freed after */
    GRand *rand;
    PlvTransportStats st;       /* written by the owner thread only */
    PlvTransportHandler h;
    void *hop;
    int delivered;
    bool woken;
};

#define STAT_ADD(t, f, n) \
    __atomic_store_n(&(t)->st.f, (t)->st.f + (n), __ATOMIC_RELAXED)

static void emit(RdmaTransport *t, PlvTransportEventKind kind, uint32_t peer,
                 const uint8_t *data, size_t len)
{
    if (!t->h) {
        return;
    }
    PlvTransportEvent ev = { .kind = kind, .peer = peer, .data = data,
                             .len = len };
    t->delivered++;
    t->h(t->hop, &ev);
}

static Peer *find_peer(RdmaTransport *t, uint32_t id)
{
    for (size_t i = 0; i < t->n_peers; i++) {
        if (t->peers[i].id == id) {
            return &t->peers[i];
        }
    }
    return NULL;
}

/* Call whenever p->conn or its state changes. */
static void peer_publish(Peer *p)
{
    plv_peer_link_set_state(&p->link, !p->conn ? PLV_PEER_LINK_DOWN
                                      : p->conn->state == C_UP ? PLV_PEER_LINK_UP
                                      : PLV_PEER_LINK_CONNECTING);
}

static void schedule_dial(RdmaTransport *t, Peer *p)
{
    int j = p->backoff_ms / 4;
    int delay = p->backoff_ms + (j ? g_rand_int_range(t->rand, -j, j + 1) : 0);
    p->next_dial = g_get_monotonic_time() + (int64_t)delay * 1000;
    p->backoff_ms = MIN(p->backoff_ms * 2, t->backoff_max_ms);
}

static void conn_close(Conn *c)
{
    RdmaTransport *t = c->t;
    if (c->state == C_DEAD) {
        return;
    }
    int was = c->state;
    c->state = C_DEAD;
    if (c->in_epoll) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, plv_rdma_conn_fd(c->rc), NULL);
        c->in_epoll = false;
    }
    g_ptr_array_add(t->grave, c);
    if (c->peer && c->peer->conn == c) {
        Peer *p = c->peer;
        p->conn = NULL;
        peer_publish(p);
        if (c->dialer) {
            schedule_dial(t, p);
        }
        if (was == C_UP) {
            STAT_ADD(t, disconnects, 1);
            emit(t, PLV_TRANSPORT_PEER_DOWN, p->id, NULL, 0);
        }
    } else {
        g_ptr_array_remove_fast(t->pending, c);
    }
}

static void conn_free(Conn *c)
{
    if (c->rc) {
        plv_rdma_conn_free(c->rc);
    } else if (c->id) {
        rdma_destroy_id(c->id);
    }
    g_queue_clear_full(&c->q, (GDestroyNotify)g_bytes_unref);
    g_free(c);
}

static void bury(RdmaTransport *t)
{
    for (guint i = 0; i < t->grave->len; i++) {
        conn_free(g_ptr_array_index(t->grave, i));
    }
    g_ptr_array_set_size(t->grave, 0);
}

/* The handshake finished: make @c the connection to its peer. */
static void conn_up(Conn *c)
{
    RdmaTransport *t = c->t;
    uint32_t id = plv_rdma_conn_peer_id(c->rc);
    Peer *p = find_peer(t, id);
    bool ok = c->dialer ? (p == c->peer)
                        : (p && id != t->self_id && id < t->self_id);
    if (!ok) {
        g_debug("plover rdma: authenticated peer %u is not expected here", id);
        STAT_ADD(t, unknown_peers, 1);
        conn_close(c);
        return;
    }
    if (!c->dialer) {
        g_ptr_array_remove_fast(t->pending, c);
        if (p->conn) {
            conn_close(p->conn);    /* the peer dialed again: old one is gone */
        }
        c->peer = p;
        p->conn = c;
    }
    c->state = C_UP;
    peer_publish(p);
    plv_peer_link_heard(&p->link, plv_rdma_conn_last_rx(c->rc));    /* its AUTH */
    p->backoff_ms = t->backoff_min_ms;
    STAT_ADD(t, connects, 1);
    if (p->was_up) {
        STAT_ADD(t, reconnects, 1);
    }
    p->was_up = true;
    emit(t, PLV_TRANSPORT_PEER_UP, id, NULL, 0);
}

static void on_msg(void *opaque, PlvRdmaConn *rc, uint16_t type,
                   const uint8_t *data, size_t len)
{
    Conn *c = opaque;
    if (c->state != C_UP && c->state != C_DEAD) {
        conn_up(c);             /* first record in the same poll as the AUTH */
    }
    if (c->state != C_UP) {
        return;
    }
    plv_peer_link_heard(&c->peer->link, plv_rdma_conn_last_rx(rc));
    if (type != MSG_TYPE) {
        STAT_ADD(c->t, malformed_dropped, 1);
        return;
    }
    STAT_ADD(c->t, frames_in, 1);
    STAT_ADD(c->t, bytes_in, len);
    emit(c->t, PLV_TRANSPORT_MESSAGE, c->peer->id, data, len);
}

static PlvRdmaConn *make_rc(Conn *c, uint8_t *pdata)
{
    RdmaTransport *t = c->t;
    PlvRdmaConnParams p = {
        .self_id = t->self_id, .channel = PLV_LINK_CHANNEL_CONSENSUS,
        /* a dialer knows whom it dials; anyone else answering gets no MAC */
        .expect_peer = c->dialer ? c->peer->id : PLV_LINK_ANY_PEER,
        .secret = t->secret, .secret_len = t->secret_len,
        .ring_bytes = t->ring_bytes, .signal_every = t->signal_every,
        .on_msg = on_msg, .opaque = c,
    };
    GError *err = NULL;
    PlvRdmaConn *rc = plv_rdma_conn_new(c->id, c->dialer, &p, pdata, &err);
    if (!rc) {
        g_debug("plover rdma: %s", err->message);
        g_error_free(err);
        return NULL;
    }
    c->rc = rc;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, plv_rdma_conn_fd(rc), &ev);
    c->in_epoll = true;
    return rc;
}

static Conn *conn_new(RdmaTransport *t, struct rdma_cm_id *id, bool dialer,
                      int state)
{
    Conn *c = g_new0(Conn, 1);
    c->kind = SRC_CONN;
    c->t = t;
    c->id = id;
    c->dialer = dialer;
    c->state = state;
    g_queue_init(&c->q);
    c->deadline = plv_deadline_from_timeout(dialer ? t->hs_timeout_ms
                                                    : PLV_HANDSHAKE_TIMEOUT_MS);
    id->context = c;
    return c;
}

static void auth_failed(Conn *c, const char *why)
{
    g_debug("plover rdma: connection %s peer failed: %s",
            c->dialer ? "to" : "from", why);
    STAT_ADD(c->t, auth_failures, 1);
    conn_close(c);
}

static void on_connect_request(RdmaTransport *t, const PlvRdmaCmEvent *ev)
{
    uint8_t pdata[PLV_RDMA_PDATA_LEN];
    struct rdma_conn_param cp;
    GError *err = NULL;
    PlvIpAddr src;
    plv_ip_addr_from_sockaddr(rdma_get_peer_addr(ev->id), &src);
    if (!plv_addr_set_contains(t->peer_addrs, &src)) {
        rdma_reject(ev->id, NULL, 0);
        rdma_destroy_id(ev->id);
        STAT_ADD(t, rejected_strangers, 1);
        return;
    }
    if (t->pending->len >= MAX_PENDING) {
        /* Too many strangers mid-handshake: refuse rather than grow. */
        rdma_reject(ev->id, NULL, 0);
        rdma_destroy_id(ev->id);
        STAT_ADD(t, auth_failures, 1);
        return;
    }
    Conn *c = conn_new(t, ev->id, false, C_CONNECTING);
    g_ptr_array_add(t->pending, c);
    if (!make_rc(c, pdata)) {
        rdma_reject(ev->id, NULL, 0);
        auth_failed(c, "no resources");
        return;
    }
    if (plv_rdma_conn_set_remote(c->rc, ev->pdata, ev->pdata_len, &err) < 0) {
        rdma_reject(ev->id, NULL, 0);
        auth_failed(c, err->message);
        g_error_free(err);
        return;
    }
    plv_rdma_conn_param(&cp, pdata);
    if (rdma_accept(ev->id, &cp)) {
        auth_failed(c, "rdma_accept failed");
    }
}

static void on_route_resolved(Conn *c)
{
    uint8_t pdata[PLV_RDMA_PDATA_LEN];
    struct rdma_conn_param cp;
    if (!make_rc(c, pdata)) {
        conn_close(c);
        return;
    }
    plv_rdma_conn_param(&cp, pdata);
    if (rdma_connect(c->id, &cp)) {
        conn_close(c);
        return;
    }
    c->state = C_CONNECTING;
}

static void on_established(Conn *c, const PlvRdmaCmEvent *ev)
{
    GError *err = NULL;
    if (c->doomed) {
        auth_failed(c, "failed before it was established");
        return;
    }
    if (c->dialer &&
        plv_rdma_conn_set_remote(c->rc, ev->pdata, ev->pdata_len, &err) < 0) {
        auth_failed(c, err->message);
        g_error_free(err);
        return;
    }
    c->state = C_HANDSHAKE;
    if (plv_rdma_conn_established(c->rc) < 0) {
        conn_close(c);
    }
}

static void cm_event(RdmaTransport *t, const PlvRdmaCmEvent *ev)
{
    if (ev->type == RDMA_CM_EVENT_CONNECT_REQUEST) {
        on_connect_request(t, ev);
        return;
    }
    Conn *c = ev->id->context;
    if (!c || ev->id == t->listen_id || c->state == C_DEAD) {
        return;                 /* stale: its connection was closed meanwhile */
    }
    switch (ev->type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(c->id, RESOLVE_MS)) {
            conn_close(c);
        }
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        on_route_resolved(c);
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        on_established(c, ev);
        break;
    case RDMA_CM_EVENT_TIMEWAIT_EXIT:
    case RDMA_CM_EVENT_CONNECT_RESPONSE:
        break;
    default:
        /* DISCONNECTED, REJECTED, UNREACHABLE, *_ERROR, DEVICE_REMOVAL:
         * the QP is (or will be) broken; PEER_DOWN if it was up. */
        g_debug("plover rdma: %s (status %d)", rdma_event_str(ev->type),
                ev->status);
        if (c->state == C_HANDSHAKE || c->doomed) {
            /* The other end gave up on our handshake, as TCP's EOF would. */
            auth_failed(c, rdma_event_str(ev->type));
        } else {
            if (c->state == C_UP) {
                plv_rdma_conn_drain(c->rc);     /* what it sent before */
            }
            conn_close(c);
        }
    }
}

static void cm_events(RdmaTransport *t)
{
    PlvRdmaCmEvent ev;
    while (plv_rdma_next_event(t->ec, &ev) == 1) {
        cm_event(t, &ev);
    }
}

static void dial(RdmaTransport *t, Peer *p)
{
    struct sockaddr_storage ss;
    struct rdma_cm_id *id;
    GError *err = NULL;
    if (plv_rdma_sockaddr(p->host, p->port, &ss, &err) < 0) {
        g_debug("plover rdma: %s", err->message);
        g_error_free(err);
        schedule_dial(t, p);
        return;
    }
    if (rdma_create_id(t->ec, &id, NULL, RDMA_PS_TCP)) {
        schedule_dial(t, p);
        return;
    }
    Conn *c = conn_new(t, id, true, C_RESOLVING);
    c->peer = p;
    p->conn = c;
    peer_publish(p);
    if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&ss, RESOLVE_MS)) {
        conn_close(c);
    }
}

/* Write what is queued, then ring the doorbell once per connection. */
static void conn_flush(Conn *c)
{
    GBytes *b;
    while (c->state == C_UP && (b = g_queue_peek_head(&c->q))) {
        size_t len;
        const void *data = g_bytes_get_data(b, &len);
        struct iovec iov = { (void *)data, len };
        int r = plv_rdma_conn_write(c->rc, MSG_TYPE, &iov, 1, len, &c->head_done);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0) {
            break;              /* no ring credit yet: a credit wakes us */
        }
        g_queue_pop_head(&c->q);
        c->q_bytes -= len;
        c->head_done = 0;
        g_bytes_unref(b);
    }
    if (c->state == C_UP) {
        plv_rdma_conn_doorbell(c->rc);
    }
}

static void flush_all(RdmaTransport *t)
{
    for (size_t i = 0; i < t->n_peers; i++) {
        if (t->peers[i].conn && t->peers[i].conn->state == C_UP) {
            conn_flush(t->peers[i].conn);
        }
    }
}

/* Every connection with a QP, including unauthenticated ones. */
static GPtrArray *live_conns(RdmaTransport *t)
{
    GPtrArray *a = g_ptr_array_new();
    for (size_t i = 0; i < t->n_peers; i++) {
        if (t->peers[i].conn && t->peers[i].conn->rc) {
            g_ptr_array_add(a, t->peers[i].conn);
        }
    }
    for (guint i = 0; i < t->pending->len; i++) {
        Conn *c = g_ptr_array_index(t->pending, i);
        if (c->rc) {
            g_ptr_array_add(a, c);
        }
    }
    return a;
}

/* Poll every connection; returns how much work was found. */
static int poll_all(RdmaTransport *t)
{
    GPtrArray *a = live_conns(t);
    int work = 0;
    for (guint i = 0; i < a->len; i++) {
        Conn *c = g_ptr_array_index(a, i);
        if (c->state == C_DEAD || c->doomed) {
            continue;           /* closed by an earlier one's conn_up */
        }
        GError *err = NULL;
        int r = plv_rdma_conn_poll(c->rc, &err);
        if (r < 0) {
            if (c->state != C_UP && plv_rdma_conn_handshake_passed(c->rc)) {
                /* Authenticated, then broke in the same poll: it was up. */
                conn_up(c);
            }
            if (c->state == C_DEAD) {
                /* conn_up refused it */
            } else if (c->state == C_UP) {
                plv_rdma_conn_drain(c->rc);     /* what it sent before */
                g_debug("plover rdma: peer %u: %s", c->peer->id, err->message);
                if (g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_PROTOCOL) ||
                    g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG)) {
                    STAT_ADD(t, malformed_dropped, 1);
                }
                conn_close(c);
            } else if (c->state == C_CONNECTING && !c->dialer) {
                /*
                 * Failed before rdma_cm told us the connection is
                 * established (the peer's first SENDs can overtake that
                 * event): a disconnect now would not reach the peer, so
                 * close once ESTABLISHED arrives (or at the deadline).
                 */
                g_debug("plover rdma: client failed early: %s", err->message);
                c->doomed = true;
                /* Its channel may stay readable: stop listening to it. */
                epoll_ctl(t->epfd, EPOLL_CTL_DEL, plv_rdma_conn_fd(c->rc), NULL);
                c->in_epoll = false;
            } else {
                auth_failed(c, err->message);
            }
            g_error_free(err);
            continue;
        }
        work += r;
        if (c->state != C_UP && c->state != C_DEAD &&
            plv_rdma_conn_authenticated(c->rc)) {
            conn_up(c);
        }
    }
    g_ptr_array_unref(a);
    return work;
}

/* Re-arm every completion channel; true if one of them is broken. */
static void arm_all(RdmaTransport *t)
{
    GPtrArray *a = live_conns(t);
    for (guint i = 0; i < a->len; i++) {
        Conn *c = g_ptr_array_index(a, i);
        if (!c->doomed) {
            plv_rdma_conn_arm(c->rc);   /* a failure shows in the next poll */
        }
    }
    g_ptr_array_unref(a);
}

/* Dials, deadlines, heartbeats, silent peers; returns the next timer due. */
static int64_t maintain(RdmaTransport *t)
{
    int64_t now = g_get_monotonic_time(), next = PLV_DEADLINE_NONE;
    for (size_t i = 0; i < t->n_peers; i++) {
        Peer *p = &t->peers[i];
        if (p->id > t->self_id && !p->conn && now >= p->next_dial) {
            dial(t, p);
        }
        Conn *c = p->conn;
        if (c && c->state != C_UP) {
            if (now >= c->deadline) {
                auth_failed(c, "handshake timed out");
            } else {
                next = MIN(next, c->deadline);
            }
        } else if (c) {
            if (now - plv_rdma_conn_last_rx(c->rc) > (int64_t)t->dead_ms * 1000) {
                g_debug("plover rdma: peer %u silent for %d ms", p->id, t->dead_ms);
                conn_close(c);
            } else {
                /* Heartbeats count: they arrive only on an authenticated QP. */
                plv_peer_link_heard(&p->link, plv_rdma_conn_last_rx(c->rc));
                if (now >= c->next_hb && plv_rdma_conn_heartbeat(c->rc)) {
                    c->next_hb = now + (int64_t)t->hb_ms * 1000;
                }
                next = MIN(next, MAX(c->next_hb, now + 1000));
                next = MIN(next, plv_rdma_conn_last_rx(c->rc) +
                                 (int64_t)t->dead_ms * 1000 + 1000);
            }
        }
        if (p->id > t->self_id && !p->conn) {
            next = MIN(next, p->next_dial);
        }
    }
    for (guint i = 0; i < t->pending->len;) {
        Conn *c = g_ptr_array_index(t->pending, i);
        if (now >= c->deadline) {
            auth_failed(c, "handshake timed out");  /* leaves pending */
        } else {
            next = MIN(next, c->deadline);
            i++;
        }
    }
    return next;
}

/* Poll for up to spin_us; true if something arrived. */
static bool spin(RdmaTransport *t)
{
    int64_t until = g_get_monotonic_time() + t->spin_us;
    do {
        if (poll_all(t) > 0) {
            return true;
        }
    } while (g_get_monotonic_time() < until);
    return false;
}

static int rdma_wait(PlvTransport *base, int timeout_ms, PlvTransportHandler h,
                     void *opaque)
{
    RdmaTransport *t = (RdmaTransport *)base;
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    struct epoll_event evs[MAX_EVENTS];

    t->h = h;
    t->hop = opaque;
    t->delivered = 0;
    for (;;) {
        flush_all(t);
        int64_t timer = maintain(t);
        poll_all(t);
        flush_all(t);           /* credits that came in, replies queued */
        bury(t);
        if (t->delivered > 0 || t->woken) {
            break;
        }
        if (t->spin_us && spin(t)) {
            continue;
        }
        /* Arm, then look once more: work that raced the arming has no
         * event coming. */
        arm_all(t);
        if (poll_all(t) > 0) {
            continue;
        }
        int ms = plv_deadline_remaining_ms(MIN(deadline, timer));
        int n = epoll_wait(t->epfd, evs, MAX_EVENTS, ms);
        if (n < 0 && errno != EINTR) {
            t->h = NULL;
            return -1;
        }
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            if (kind == SRC_WAKE) {
                uint64_t v;
                if (read(t->wake_fd, &v, sizeof(v)) < 0) {
                    /* EAGAIN: someone else drained it; still woken */
                }
                t->woken = true;
            } else if (kind == SRC_CM) {
                cm_events(t);
            }
            /* SRC_CONN: the next poll_all() drains the channel */
        }
        if (t->woken || g_get_monotonic_time() >= deadline) {
            poll_all(t);
            break;
        }
    }
    flush_all(t);
    bury(t);
    t->woken = false;
    t->h = NULL;
    return t->delivered;
}

static int rdma_send(PlvTransport *base, uint32_t to, const void *buf,
                     size_t len)
{
    RdmaTransport *t = (RdmaTransport *)base;
    Peer *p = find_peer(t, to);
    Conn *c = p ? p->conn : NULL;
    if (!c || c->state != C_UP || len > PLV_RDMA_MAX_MSG ||
        c->q_bytes + len > t->max_queue) {
        STAT_ADD(t, send_dropped, 1);
        return -1;
    }
    g_queue_push_tail(&c->q, g_bytes_new(buf, len));
    c->q_bytes += len;
    STAT_ADD(t, frames_out, 1);
    STAT_ADD(t, bytes_out, len);
    return 0;
}

static void rdma_flush(PlvTransport *base)
{
    flush_all((RdmaTransport *)base);
}

static void rdma_wakeup(PlvTransport *base)
{
    RdmaTransport *t = (RdmaTransport *)base;
    uint64_t one = 1;
    if (write(t->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN only when the counter is saturated: already woken */
    }
}

static bool rdma_peer_up(PlvTransport *base, uint32_t peer)
{
    Peer *p = find_peer((RdmaTransport *)base, peer);
    return p && p->conn && p->conn->state == C_UP;
}

static void rdma_peer_link(PlvTransport *base, uint32_t peer, PlvPeerLinkInfo *out)
{
    Peer *p = find_peer((RdmaTransport *)base, peer);
    plv_peer_link_read(p ? &p->link : NULL, peer, out);
}

static void rdma_stats(PlvTransport *base, PlvTransportStats *out)
{
    RdmaTransport *t = (RdmaTransport *)base;
    G_STATIC_ASSERT(sizeof(PlvTransportStats) % sizeof(uint64_t) == 0);
    const uint64_t *src = (const uint64_t *)&t->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
}

static int rdma_start(PlvTransport *base, GError **err)
{
    RdmaTransport *t = (RdmaTransport *)base;
    if (t->epfd >= 0) {
        return 0;
    }
    if (!(t->ec = plv_rdma_event_channel(err))) {
        return -1;
    }
    t->listen_id = plv_rdma_listen_id(t->ec, t->listen_host, t->listen_port,
                                      NULL, err);
    if (!t->listen_id) {
        return -1;
    }
    t->bound_port = ntohs(rdma_get_src_port(t->listen_id));
    plv_addr_set_resolve(t->peer_addrs);
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->epfd < 0 || t->wake_fd < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "epoll/eventfd: %s", g_strerror(errno));
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->tag_cm };
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->ec->fd, &ev);
    ev.data.ptr = &t->tag_wake;
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wake_fd, &ev);
    return 0;
}

uint16_t plv_transport_rdma_port(PlvTransport *base)
{
    return ((RdmaTransport *)base)->bound_port;
}

static void rdma_free(PlvTransport *base)
{
    RdmaTransport *t = (RdmaTransport *)base;
    t->h = NULL;
    for (size_t i = 0; i < t->n_peers; i++) {
        if (t->peers[i].conn) {
            conn_close(t->peers[i].conn);
        }
        g_free(t->peers[i].host);
    }
    while (t->pending->len) {
        conn_close(g_ptr_array_index(t->pending, 0));
    }
    bury(t);
    if (t->listen_id) {
        rdma_destroy_id(t->listen_id);
    }
    if (t->ec) {
        rdma_destroy_event_channel(t->ec);
    }
    if (t->epfd >= 0) {
        close(t->epfd);
    }
    if (t->wake_fd >= 0) {
        close(t->wake_fd);
    }
    g_ptr_array_unref(t->pending);
    plv_addr_set_free(t->peer_addrs);
    g_ptr_array_unref(t->grave);
    g_rand_free(t->rand);
    explicit_bzero(t->secret, t->secret_len);
    g_free(t->secret);
    g_free(t->peers);
    g_free(t->listen_host);
    g_free(t);
}

static const PlvTransportOps rdma_ops = {
    .name = "rdma",
    .start = rdma_start,
    .send = rdma_send,
    .wait = rdma_wait,
    .flush = rdma_flush,
    .wakeup = rdma_wakeup,
    .peer_up = rdma_peer_up,
    .stats = rdma_stats,
    .peer_link = rdma_peer_link,
    .free = rdma_free,
};

static int or_default(int v, int d)
{
    return v > 0 ? v : d;
}

PlvTransport *plv_transport_rdma_new(const PlvRdmaTransportConfig *cfg,
                                     GError **err)
{
    const PlvPeerAddr *self = NULL;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        for (size_t j = 0; j < i; j++) {
            if (cfg->peers[j].id == cfg->peers[i].id) {
                g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                            "peer id %u listed twice", cfg->peers[i].id);
                return NULL;
            }
        }
        if (cfg->peers[i].id == cfg->self_id) {
            self = &cfg->peers[i];
        }
    }
    if (!self) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "rdma transport needs its own address among the peers");
        return NULL;
    }
    if (!plv_link_check_secret(cfg->secret, cfg->secret_len, err)) {
        return NULL;
    }
    RdmaTransport *t = g_new0(RdmaTransport, 1);
    t->base.ops = &rdma_ops;
    t->self_id = cfg->self_id;
    t->secret = g_memdup2(cfg->secret, cfg->secret_len);
    t->secret_len = cfg->secret_len;
    t->ring_bytes = cfg->ring_bytes ? cfg->ring_bytes : (4u << 20);
    t->signal_every = cfg->signal_every ? cfg->signal_every : 16;
    t->spin_us = cfg->spin_us;
    t->backoff_min_ms = or_default(cfg->backoff_min_ms, 10);
    t->backoff_max_ms = MAX(or_default(cfg->backoff_max_ms, 1000),
                            t->backoff_min_ms);
    t->hs_timeout_ms = or_default(cfg->handshake_timeout_ms, 5000);
    t->hb_ms = or_default(cfg->heartbeat_ms, 100);
    t->dead_ms = MAX(or_default(cfg->peer_timeout_ms, 3000), 2 * t->hb_ms);
    t->max_queue = cfg->max_queue_bytes ? cfg->max_queue_bytes : (64u << 20);
    t->n_peers = cfg->n_peers;
    t->peers = g_new0(Peer, cfg->n_peers);
    t->peer_addrs = plv_addr_set_new();
    for (size_t i = 0; i < cfg->n_peers; i++) {
        t->peers[i].id = cfg->peers[i].id;
        t->peers[i].host = g_strdup(cfg->peers[i].host);
        t->peers[i].port = cfg->peers[i].port;
        t->peers[i].backoff_ms = t->backoff_min_ms;
        if (cfg->peers[i].id != cfg->self_id) {
            plv_addr_set_add_host(t->peer_addrs, cfg->peers[i].host);
        }
    }
    t->listen_host = g_strdup(self->host);
    t->listen_port = self->port;
    t->epfd = t->wake_fd = -1;
    t->tag_cm = SRC_CM;
    t->tag_wake = SRC_WAKE;
    t->pending = g_ptr_array_new();
    t->grave = g_ptr_array_new();
    t->rand = g_rand_new();
    return &t->base;
}
