/*
 * RDMA transport for consensus (plover/transport-rdma.h): rdma_cm to
 * connect, one RC connection per peer pair (rdma-conn.c) carrying messages
 * as one-sided RDMA WRITEs into the receiver's ring, heartbeats over the
 * same QP. Connection rules are the TCP transport's, from the same peer
 * table (plover/peer-table.h): the lower id dials, backoff with jitter, a
 * fresh authenticated connection replaces the old, the same pending slots.
 *
 * One thread (the caller of wait) does everything; it sleeps in epoll on
 * the rdma_cm channel, every connection's completion channel and an
 * eventfd for wakeup(), so an idle replica costs no CPU (with one vCPU,
 * spinning would starve soft-RoCE's kernel work).
 */
#include "plover/transport-rdma.h"
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "plover/peer-table.h"
#include "net/rdma/rdma-conn.h"

#include <sys/epoll.h>
#include <unistd.h>

#define RESOLVE_MS  2000

typedef struct RdmaTransport RdmaTransport;

typedef struct Conn {
    PlvPeerConn pc;             /* first: the peer table's view of it */
    RdmaTransport *t;
    struct rdma_cm_id *id;      /* owned here until rc exists, then by rc */
    PlvRdmaConn *rc;
    bool in_epoll;
    bool doomed;                /* failed before ESTABLISHED; see poll_all */
    int64_t next_hb;
    GQueue q;                   /* GBytes waiting for ring space */
    size_t q_bytes, head_done;
} Conn;

/*
 * In the table's epoll set, data.ptr is a Conn (its completion channel),
 * &ec (the rdma_cm channel), or the table's wake fd.
 */
struct RdmaTransport {
    PlvPeerTable tab;           /* first: it begins with the PlvTransport */
    size_t ring_bytes, max_queue;
    unsigned signal_every, spin_us;
    bool sealed;                /* records sealed (AES-256-GCM) */
    int hb_ms, dead_ms;
    uint16_t bound_port;
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listen_id;
};

static void conn_close(Conn *c)
{
    plv_peer_table_close(&c->t->tab, &c->pc);
}

/* The table closed @c: stop listening to its completion channel. */
static void conn_release(PlvPeerTable *tab, PlvPeerConn *pc)
{
    RdmaTransport *t = (RdmaTransport *)tab;
    Conn *c = (Conn *)pc;
    if (c->in_epoll) {
        epoll_ctl(t->tab.epfd, EPOLL_CTL_DEL, plv_rdma_conn_fd(c->rc), NULL);
        c->in_epoll = false;
    }
}

static void conn_free(PlvPeerTable *tab, PlvPeerConn *pc)
{
    Conn *c = (Conn *)pc;
    if (c->rc) {
        plv_rdma_conn_free(c->rc);
    } else if (c->id) {
        rdma_destroy_id(c->id);
    }
    g_queue_clear_full(&c->q, (GDestroyNotify)g_bytes_unref);
    g_free(c);
}

/* The handshake finished: make @c the connection to its peer (if the
 * table agrees it is one), heard last with its AUTH. */
static void conn_up(Conn *c)
{
    plv_peer_table_up(&c->t->tab, &c->pc, plv_rdma_conn_peer_id(c->rc),
                      plv_rdma_conn_last_rx(c->rc));
}

static bool conn_opening(const Conn *c)
{
    return c->pc.state != PLV_PEER_CONN_UP && c->pc.state != PLV_PEER_CONN_DEAD;
}

static void on_msg(void *opaque, PlvRdmaConn *rc, uint16_t type,
                   const uint8_t *data, size_t len)
{
    Conn *c = opaque;
    if (conn_opening(c)) {
        conn_up(c);             /* first record in the same poll as the AUTH */
    }
    if (c->pc.state == PLV_PEER_CONN_UP) {
        plv_peer_table_frame(&c->t->tab, &c->pc, type, data, len,
                             plv_rdma_conn_last_rx(rc));
    }
}

static PlvRdmaConn *make_rc(Conn *c, uint8_t *pdata)
{
    RdmaTransport *t = c->t;
    PlvRdmaConnParams p = {
        .self_id = t->tab.self_id, .channel = PLV_LINK_CHANNEL_CONSENSUS,
        /* a dialer knows whom it dials; anyone else answering gets no MAC */
        .expect_peer = c->pc.dialer ? c->pc.peer->id : PLV_LINK_ANY_PEER,
        .secret = t->tab.secret, .secret_len = t->tab.secret_len,
        .ring_bytes = t->ring_bytes, .signal_every = t->signal_every,
        .sealed = t->sealed, .on_msg = on_msg, .opaque = c,
    };
    GError *err = NULL;
    PlvRdmaConn *rc = plv_rdma_conn_new(c->id, c->pc.dialer, &p, pdata, &err);
    if (!rc) {
        g_debug("plover rdma: %s", err->message);
        g_error_free(err);
        return NULL;
    }
    c->rc = rc;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(t->tab.epfd, EPOLL_CTL_ADD, plv_rdma_conn_fd(rc), &ev);
    c->in_epoll = true;
    return rc;
}

static Conn *conn_new(RdmaTransport *t, struct rdma_cm_id *id)
{
    Conn *c = g_new0(Conn, 1);
    c->t = t;
    c->id = id;
    g_queue_init(&c->q);
    id->context = c;
    return c;
}

static void auth_failed(Conn *c, const char *why)
{
    plv_peer_table_auth_failed(&c->t->tab, &c->pc, why);
}

/*
 * A request from a peer's address is never refused for want of a slot: it
 * pushes out another unauthenticated connection (plv_peer_table_admit()),
 * as on TCP, so neither transport stops accepting at the cap. (TCP pauses
 * accepting only when accept() itself fails, EMFILE and the like, not to
 * spin on a listening socket that stays readable. rdma_cm has no such
 * failure: the request is an event whose id already exists, read from the
 * channel that also carries our own connections' events, so it can be
 * neither left unread nor paused without stalling those; one we cannot
 * serve is rejected on its own, below.)
 */
static void on_connect_request(RdmaTransport *t, const PlvRdmaCmEvent *ev)
{
    uint8_t pdata[PLV_RDMA_PDATA_LEN];
    struct rdma_conn_param cp;
    GError *err = NULL;
    PlvIpAddr src;
    plv_ip_addr_from_sockaddr(rdma_get_peer_addr(ev->id), &src);
    if (!plv_peer_table_admit(&t->tab, &src)) {
        rdma_reject(ev->id, NULL, 0);
        rdma_destroy_id(ev->id);
        return;
    }
    Conn *c = conn_new(t, ev->id);
    plv_peer_table_accepted(&t->tab, &c->pc, PLV_PEER_CONN_CONNECTING, &src);
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
    }
}

static void on_established(Conn *c, const PlvRdmaCmEvent *ev)
{
    GError *err = NULL;
    if (c->doomed) {
        auth_failed(c, "failed before it was established");
        return;
    }
    if (c->pc.dialer &&
        plv_rdma_conn_set_remote(c->rc, ev->pdata, ev->pdata_len, &err) < 0) {
        auth_failed(c, err->message);
        g_error_free(err);
        return;
    }
    c->pc.state = PLV_PEER_CONN_HANDSHAKE;
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
    if (!c || ev->id == t->listen_id || c->pc.state == PLV_PEER_CONN_DEAD) {
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
        if (c->pc.state == PLV_PEER_CONN_HANDSHAKE || c->doomed) {
            /* The other end gave up on our handshake, as TCP's EOF would. */
            auth_failed(c, rdma_event_str(ev->type));
        } else {
            if (c->pc.state == PLV_PEER_CONN_UP) {
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

static void dial(PlvPeerTable *tab, PlvPeer *p)
{
    RdmaTransport *t = (RdmaTransport *)tab;
    struct sockaddr_storage ss;
    struct rdma_cm_id *id;
    GError *err = NULL;
    if (plv_rdma_sockaddr(p->host, p->port, &ss, &err) < 0) {
        g_debug("plover rdma: %s", err->message);
        g_error_free(err);
        plv_peer_table_schedule_dial(&t->tab, p);
        return;
    }
    if (rdma_create_id(t->ec, &id, NULL, RDMA_PS_TCP)) {
        plv_peer_table_schedule_dial(&t->tab, p);
        return;
    }
    Conn *c = conn_new(t, id);
    /* resolving the address and the route, then connecting */
    plv_peer_table_dialing(&t->tab, &c->pc, p, PLV_PEER_CONN_CONNECTING);
    if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&ss, RESOLVE_MS)) {
        conn_close(c);
    }
}

/* Write what is queued, then ring the doorbell once per connection. */
static void conn_flush(Conn *c)
{
    GBytes *b;
    while (c->pc.state == PLV_PEER_CONN_UP && (b = g_queue_peek_head(&c->q))) {
        size_t len;
        const void *data = g_bytes_get_data(b, &len);
        struct iovec iov = { (void *)data, len };
        int r = plv_rdma_conn_write(c->rc, PLV_PEER_MSG_TYPE, &iov, 1, len,
                                    &c->head_done);
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
    if (c->pc.state == PLV_PEER_CONN_UP) {
        plv_rdma_conn_doorbell(c->rc);
    }
}

static void flush_all(RdmaTransport *t)
{
    for (size_t i = 0; i < t->tab.n_peers; i++) {
        PlvPeerConn *pc = t->tab.peers[i].conn;
        if (pc && pc->state == PLV_PEER_CONN_UP) {
            conn_flush((Conn *)pc);
        }
    }
}

/* Every connection with a QP, including unauthenticated ones. */
static GPtrArray *live_conns(RdmaTransport *t)
{
    GPtrArray *a = g_ptr_array_new();
    for (size_t i = 0; i < t->tab.n_peers; i++) {
        Conn *c = (Conn *)t->tab.peers[i].conn;
        if (c && c->rc) {
            g_ptr_array_add(a, c);
        }
    }
    for (guint i = 0; i < t->tab.pending->len; i++) {
        Conn *c = g_ptr_array_index(t->tab.pending, i);
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
        if (c->pc.state == PLV_PEER_CONN_DEAD || c->doomed) {
            continue;           /* closed by an earlier one's conn_up */
        }
        GError *err = NULL;
        int r = plv_rdma_conn_poll(c->rc, &err);
        if (r < 0) {
            if (c->pc.state != PLV_PEER_CONN_UP &&
                plv_rdma_conn_handshake_passed(c->rc)) {
                /* Authenticated, then broke in the same poll: it was up. */
                conn_up(c);
            }
            if (c->pc.state == PLV_PEER_CONN_DEAD) {
                /* conn_up refused it */
            } else if (c->pc.state == PLV_PEER_CONN_UP) {
                plv_rdma_conn_drain(c->rc);     /* what it sent before */
                g_debug("plover rdma: peer %u: %s", c->pc.peer->id, err->message);
                if (g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_PROTOCOL) ||
                    g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG)) {
                    PLV_PEER_STAT_ADD(&t->tab, malformed_dropped, 1);
                }
                conn_close(c);
            } else if (c->pc.state == PLV_PEER_CONN_CONNECTING && !c->pc.dialer) {
                /*
                 * Failed before rdma_cm told us the connection is
                 * established (the peer's first SENDs can overtake that
                 * event): a disconnect now would not reach the peer, so
                 * close once ESTABLISHED arrives (or at the deadline).
                 */
                g_debug("plover rdma: client failed early: %s", err->message);
                c->doomed = true;
                /* Its channel may stay readable: stop listening to it. */
                epoll_ctl(t->tab.epfd, EPOLL_CTL_DEL, plv_rdma_conn_fd(c->rc), NULL);
                c->in_epoll = false;
            } else {
                auth_failed(c, err->message);
            }
            g_error_free(err);
            continue;
        }
        work += r;
        if (r > 0 && !c->pc.dialer) {
            /* An acceptor sends nothing before the dialer's HELLO: its
             * peer spoke, so it is pushed out of its slot last. */
            c->pc.slot.heard = true;
        }
        if (conn_opening(c) && plv_rdma_conn_authenticated(c->rc)) {
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

/* Heartbeats and silent peers, then the table's dials and deadlines;
 * returns the next timer due. */
static int64_t maintain(RdmaTransport *t)
{
    int64_t now = g_get_monotonic_time(), next = PLV_DEADLINE_NONE;
    for (size_t i = 0; i < t->tab.n_peers; i++) {
        PlvPeer *p = &t->tab.peers[i];
        Conn *c = (Conn *)p->conn;
        if (!c || c->pc.state != PLV_PEER_CONN_UP) {
            continue;
        }
        if (now - plv_rdma_conn_last_rx(c->rc) > (int64_t)t->dead_ms * 1000) {
            g_debug("plover rdma: peer %u silent for %d ms", p->id, t->dead_ms);
            conn_close(c);      /* before the table's turn: it redials */
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
    return MIN(next, plv_peer_table_maintain(&t->tab));
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

/* The rdma_cm channel or a completion channel is ready (ops.event). */
static void rdma_event(PlvPeerTable *tab, void *src, uint32_t events)
{
    RdmaTransport *t = (RdmaTransport *)tab;
    if (src == &t->ec) {
        cm_events(t);
    }
    /* a Conn: the next poll_all() drains its channel */
}

static int rdma_wait(PlvTransport *base, int timeout_ms, PlvTransportHandler h,
                     void *opaque)
{
    RdmaTransport *t = (RdmaTransport *)base;
    int64_t deadline = plv_peer_table_wait_begin(&t->tab, timeout_ms, h, opaque);

    for (;;) {
        flush_all(t);
        int64_t timer = maintain(t);
        poll_all(t);
        flush_all(t);           /* credits that came in, replies queued */
        plv_peer_table_bury(&t->tab);
        if (plv_peer_table_wait_done(&t->tab)) {
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
        if (plv_peer_table_sleep(&t->tab, MIN(deadline, timer)) < 0) {
            plv_peer_table_wait_end(&t->tab);
            return -1;
        }
        if (t->tab.woken || g_get_monotonic_time() >= deadline) {
            poll_all(t);
            break;
        }
    }
    flush_all(t);
    plv_peer_table_bury(&t->tab);
    return plv_peer_table_wait_end(&t->tab);
}

static int rdma_send(PlvTransport *base, uint32_t to, const void *buf,
                     size_t len)
{
    RdmaTransport *t = (RdmaTransport *)base;
    Conn *c = (Conn *)plv_peer_table_send_conn(&t->tab, to, len);
    if (!c || c->q_bytes + len > t->max_queue) {
        return plv_peer_table_dropped(&t->tab);
    }
    g_queue_push_tail(&c->q, g_bytes_new(buf, len));
    c->q_bytes += len;
    return plv_peer_table_queued(&t->tab, len);
}

static void rdma_flush(PlvTransport *base)
{
    flush_all((RdmaTransport *)base);
}

static int rdma_start(PlvTransport *base, GError **err)
{
    RdmaTransport *t = (RdmaTransport *)base;
    if (plv_peer_table_started(&t->tab)) {
        return 0;
    }
    if (!(t->ec = plv_rdma_event_channel(err))) {
        return -1;
    }
    t->listen_id = plv_rdma_listen_id(t->ec, t->tab.self->host,
                                      t->tab.self->port, NULL, err);
    if (!t->listen_id) {
        return -1;
    }
    t->bound_port = ntohs(rdma_get_src_port(t->listen_id));
    if (plv_peer_table_start(&t->tab, err) < 0) {
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->ec };
    epoll_ctl(t->tab.epfd, EPOLL_CTL_ADD, t->ec->fd, &ev);
    return 0;
}

uint16_t plv_transport_rdma_port(PlvTransport *base)
{
    return ((RdmaTransport *)base)->bound_port;
}

static void rdma_free(PlvTransport *base)
{
    RdmaTransport *t = (RdmaTransport *)base;
    plv_peer_table_close_all(&t->tab);  /* their ids go before the channel */
    if (t->listen_id) {
        rdma_destroy_id(t->listen_id);
    }
    if (t->ec) {
        rdma_destroy_event_channel(t->ec);
    }
    plv_peer_table_free(&t->tab);
}

static const PlvTransportOps rdma_ops = {
    .name = "rdma",
    .start = rdma_start,
    .send = rdma_send,
    .wait = rdma_wait,
    .flush = rdma_flush,
    .free = rdma_free,
    PLV_PEER_TABLE_TRANSPORT_OPS,
};

static int or_default(int v, int d)
{
    return v > 0 ? v : d;
}

PlvTransport *plv_transport_rdma_new(const PlvRdmaTransportConfig *cfg,
                                     GError **err)
{
    PlvPeerTableConfig tc = {
        PLV_PEER_TABLE_SETTINGS(cfg), .transport_ops = &rdma_ops,
        .name = "rdma",
        .ops = { .dial = dial, .release = conn_release, .free = conn_free,
                 .event = rdma_event },
    };
    RdmaTransport *t = plv_peer_table_new(sizeof(RdmaTransport), &tc, err);
    if (!t) {
        return NULL;
    }
    t->ring_bytes = cfg->ring_bytes ? cfg->ring_bytes : (4u << 20);
    t->signal_every = cfg->signal_every ? cfg->signal_every : 16;
    t->sealed = cfg->sealed;
    t->spin_us = cfg->spin_us;
    t->hb_ms = or_default(cfg->heartbeat_ms, 100);
    t->dead_ms = MAX(or_default(cfg->peer_timeout_ms, 3000), 2 * t->hb_ms);
    t->max_queue = cfg->max_queue_bytes ? cfg->max_queue_bytes : (64u << 20);
    return &t->tab.base;
}
