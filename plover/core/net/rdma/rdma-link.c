/*
 * The bulk link over RDMA (plover/transport-rdma.h): one authenticated
 * connection with blocking calls, for syncvm. Bitmaps, hash lists and pages
 * are RDMA-WRITTEN into the receiver's registered staging ring (rdma-conn.c)
 * in fragments; ring credits are the flow control, so a sender blocks when
 * the receiver has not consumed its staging buffer yet.
 *
 * Like PlvLink, one thread may send while another receives: the connection
 * is only touched under the link's lock, never held while sleeping. Either
 * thread's pump may take what the other waits for (a credit, a message), so
 * sleeps are cut into short slices instead of trusting one fd event.
 */
#include "plover/transport-rdma.h"
#include "plover/sockutil.h"
#include "net/rdma/rdma-conn.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#define RESOLVE_MS 2000
#define STALL_MS   30000        /* a send with no ring credit for this long fails */
#define SLICE_MS   5            /* longest sleep before looking again */

struct PlvRdmaListener {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    uint16_t port;
    PlvAddrSet *allowed;        /* NULL: any source */
    uint64_t strangers;         /* atomic: requests refused by source */
};

typedef struct Msg {
    uint16_t type;
    GByteArray *data;
} Msg;

struct PlvRdmaLink {
    PlvBulkLink bulk;           /* first: an RDMA link is a bulk link */
    GMutex lock;                /* everything below, once the link exists */
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;      /* until rc owns it */
    PlvRdmaConn *rc;
    bool established, drained;
    bool cancelled;             /* link_bulk_cancel: no more I/O at all */
    GError *broken;             /* set once the connection is gone */
    GQueue inbox;               /* Msg* that arrived while nobody was receiving */
    GByteArray *target;         /* recv()'s payload while it waits */
    uint16_t target_type;
    bool target_filled;
};

static void link_close(PlvRdmaLink *l);

static void link_broken(PlvRdmaLink *l, int code, const char *what)
{
    if (!l->broken) {
        l->broken = g_error_new(PLV_LINK_ERROR, code, "rdma link: %s", what);
    }
}

static void on_msg(void *opaque, PlvRdmaConn *rc, uint16_t type,
                   const uint8_t *data, size_t len)
{
    PlvRdmaLink *l = opaque;
    if (l->target && !l->target_filled) {
        g_byte_array_set_size(l->target, 0);
        g_byte_array_append(l->target, data, len);
        l->target_type = type;
        l->target_filled = true;
        return;
    }
    Msg *m = g_new(Msg, 1);
    m->type = type;
    m->data = g_byte_array_sized_new(len);
    g_byte_array_append(m->data, data, len);
    g_queue_push_tail(&l->inbox, m);
}

static void cm_events(PlvRdmaLink *l)
{
    PlvRdmaCmEvent ev;
    GError *err = NULL;
    while (plv_rdma_next_event(l->ec, &ev) == 1) {
        switch (ev.type) {
        case RDMA_CM_EVENT_ADDR_RESOLVED:
            if (rdma_resolve_route(ev.id, RESOLVE_MS)) {
                link_broken(l, PLV_LINK_ERROR_IO, "rdma_resolve_route failed");
            }
            break;
        case RDMA_CM_EVENT_ROUTE_RESOLVED:
            break;              /* connect() acts on it */
        case RDMA_CM_EVENT_ESTABLISHED:
            if (l->rc && !l->established) {
                if (plv_rdma_conn_set_remote(l->rc, ev.pdata, ev.pdata_len,
                                             &err) < 0 ||
                    plv_rdma_conn_established(l->rc) < 0) {
                    link_broken(l, PLV_LINK_ERROR_AUTH,
                                err ? err->message : "QP failed");
                    g_clear_error(&err);
                }
                l->established = true;
            }
            break;
        case RDMA_CM_EVENT_TIMEWAIT_EXIT:
        case RDMA_CM_EVENT_CONNECT_RESPONSE:
            break;
        default:
            link_broken(l, PLV_LINK_ERROR_CLOSED, rdma_event_str(ev.type));
        }
    }
}

/* One round without sleeping: 1 if work was done, 0 if none, -1 broken. */
static int pump_locked(PlvRdmaLink *l, GError **err)
{
    cm_events(l);
    int r = 0;
    if (l->rc && !l->broken) {
        GError *e = NULL;
        r = plv_rdma_conn_poll(l->rc, &e);
        if (r == 0) {
            plv_rdma_conn_arm(l->rc);
            r = plv_rdma_conn_poll(l->rc, &e);
        }
        if (r < 0) {
            l->broken = e;
        }
    }
    if (l->broken) {
        if (l->rc && !l->drained) {
            /* What the peer wrote before it went is still readable. */
            l->drained = true;
            plv_rdma_conn_drain(l->rc);
        }
        if (err) {
            *err = g_error_copy(l->broken);
        }
        return -1;
    }
    return r > 0;
}

/*
 * cm events, completions and ring; if nothing was there, sleep on both
 * channels until something happens, @deadline, or one slice passes.
 * -1 with @err once the link is broken.
 */
static int pump(PlvRdmaLink *l, int64_t deadline, GError **err)
{
    g_mutex_lock(&l->lock);
    int r = pump_locked(l, err);
    struct pollfd pf[2] = { { .fd = l->ec->fd, .events = POLLIN } };
    int n = 1;
    if (l->rc) {
        pf[n++] = (struct pollfd){ .fd = plv_rdma_conn_fd(l->rc), .events = POLLIN };
    }
    g_mutex_unlock(&l->lock);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    poll(pf, n, MIN(plv_deadline_remaining_ms(deadline), SLICE_MS));
    return 0;
}

static int timed_out(GError **err, const char *what)
{
    g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TIMED_OUT,
                "rdma link: timed out %s", what);
    return -1;
}

/* The next cm event on @ec, waiting until @deadline. 0, or -1 with @err. */
static int next_event(struct rdma_event_channel *ec, int64_t deadline,
                      PlvRdmaCmEvent *ev, const char *what, GError **err)
{
    for (;;) {
        int r = plv_rdma_next_event(ec, ev);
        if (r == 1) {
            return 0;
        }
        if (r < 0) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                        "rdma: event channel failed %s", what);
            return -1;
        }
        if (g_get_monotonic_time() >= deadline) {
            return timed_out(err, what);
        }
        struct pollfd pf = { .fd = ec->fd, .events = POLLIN };
        poll(&pf, 1, plv_deadline_remaining_ms(deadline));
    }
}

/* Pump until the handshake is done. */
static int authenticate(PlvRdmaLink *l, int64_t deadline, GError **err)
{
    while (!plv_rdma_conn_authenticated(l->rc)) {
        if (pump(l, deadline, err) < 0) {
            return -1;
        }
        if (g_get_monotonic_time() >= deadline &&
            !plv_rdma_conn_authenticated(l->rc)) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                        "rdma link: handshake timed out");
            return -1;
        }
    }
    return 0;
}

/* Connect or accept with our private data, then authenticate; @l is
 * closed on failure. */
static PlvBulkLink *complete(PlvRdmaLink *l, bool dialer, const uint8_t *pdata,
                             int64_t deadline, GError **err)
{
    struct rdma_conn_param cp;
    struct rdma_cm_id *id = plv_rdma_conn_id(l->rc);
    plv_rdma_conn_param(&cp, pdata);
    if (dialer ? rdma_connect(id, &cp) : rdma_accept(id, &cp)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "%s: %s",
                    dialer ? "rdma_connect" : "rdma_accept", g_strerror(errno));
    } else if (authenticate(l, deadline, err) == 0) {
        return &l->bulk;
    }
    link_close(l);
    return NULL;
}

static const PlvBulkLinkOps rdma_bulk_ops;

static PlvRdmaLink *link_new(struct rdma_event_channel *ec)
{
    PlvRdmaLink *l = g_new0(PlvRdmaLink, 1);

    l->bulk.ops = &rdma_bulk_ops;
    g_mutex_init(&l->lock);
    l->ec = ec;
    g_queue_init(&l->inbox);
    return l;
}

static PlvRdmaConnParams params(PlvRdmaLink *l, uint32_t self_id,
                                uint32_t expect_peer, PlvLinkChannel channel,
                                const uint8_t *secret, size_t secret_len,
                                bool sealed, size_t ring_bytes)
{
    return (PlvRdmaConnParams){
        .self_id = self_id, .channel = channel, .expect_peer = expect_peer,
        .secret = secret, .secret_len = secret_len, .sealed = sealed,
        .ring_bytes = ring_bytes ? ring_bytes : (8u << 20),
        .on_msg = on_msg, .opaque = l,
    };
}

PlvBulkLink *plv_rdma_link_connect(const char *host, uint16_t port,
                                   uint32_t self_id, uint32_t expect_peer,
                                   PlvLinkChannel channel,
                                   const uint8_t *secret, size_t secret_len,
                                   bool sealed, size_t ring_bytes,
                                   int timeout_ms, GError **err)
{
    if (!plv_link_check_secret(secret, secret_len, err)) {
        return NULL;
    }
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    struct sockaddr_storage ss;
    struct rdma_event_channel *ec;
    if (plv_rdma_sockaddr(host, port, &ss, err) < 0 ||
        !(ec = plv_rdma_event_channel(err))) {
        return NULL;
    }
    PlvRdmaLink *l = link_new(ec);
    if (rdma_create_id(ec, &l->id, l, RDMA_PS_TCP) ||
        rdma_resolve_addr(l->id, NULL, (struct sockaddr *)&ss, RESOLVE_MS)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "rdma connect to %s:%u: %s", host, port, g_strerror(errno));
        link_close(l);
        return NULL;
    }
    /* Wait for the route, then make the QP and connect. */
    PlvRdmaCmEvent ev;
    for (;;) {
        if (next_event(ec, deadline, &ev, "resolving the peer", err) < 0) {
            link_close(l);
            return NULL;
        }
        if (ev.type != RDMA_CM_EVENT_ADDR_RESOLVED &&
            ev.type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                        "rdma connect to %s:%u: %s", host, port,
                        rdma_event_str(ev.type));
            link_close(l);
            return NULL;
        }
        if (ev.type == RDMA_CM_EVENT_ROUTE_RESOLVED) {
            break;
        }
        if (rdma_resolve_route(l->id, RESOLVE_MS)) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                        "rdma_resolve_route: %s", g_strerror(errno));
            link_close(l);
            return NULL;
        }
    }
    uint8_t pdata[PLV_RDMA_PDATA_LEN];
    PlvRdmaConnParams p = params(l, self_id, expect_peer, channel, secret,
                                 secret_len, sealed, ring_bytes);
    l->rc = plv_rdma_conn_new(l->id, true, &p, pdata, err);
    if (!l->rc) {
        link_close(l);
        return NULL;
    }
    l->id = NULL;
    return complete(l, true, pdata, deadline, err);
}

PlvRdmaListener *plv_rdma_listen(const char *host, uint16_t port, GError **err)
{
    struct rdma_event_channel *ec = plv_rdma_event_channel(err);
    if (!ec) {
        return NULL;
    }
    struct rdma_cm_id *id = plv_rdma_listen_id(ec, host, port, NULL, err);
    if (!id) {
        rdma_destroy_event_channel(ec);
        return NULL;
    }
    PlvRdmaListener *ls = g_new0(PlvRdmaListener, 1);
    ls->ec = ec;
    ls->id = id;
    ls->port = ntohs(rdma_get_src_port(id));
    return ls;
}

uint16_t plv_rdma_listener_port(const PlvRdmaListener *l)
{
    return l->port;
}

void plv_rdma_listener_allow(PlvRdmaListener *l, PlvAddrSet *allowed)
{
    plv_addr_set_free(l->allowed);
    l->allowed = allowed;
}

uint64_t plv_rdma_listener_strangers(const PlvRdmaListener *l)
{
    return __atomic_load_n(&l->strangers, __ATOMIC_RELAXED);
}

/* A connection request from an address that is no peer's is refused
 * before anything is allocated for it. */
static bool request_allowed(PlvRdmaListener *ls, struct rdma_cm_id *id)
{
    PlvIpAddr src;

    if (!ls->allowed ||
        (plv_ip_addr_from_sockaddr(rdma_get_peer_addr(id), &src) &&
         plv_addr_set_contains(ls->allowed, &src))) {
        return true;
    }
    __atomic_add_fetch(&ls->strangers, 1, __ATOMIC_RELAXED);
    rdma_reject(id, NULL, 0);
    rdma_destroy_id(id);
    return false;
}

void plv_rdma_listener_free(PlvRdmaListener *l)
{
    if (l) {
        plv_addr_set_free(l->allowed);
        rdma_destroy_id(l->id);
        rdma_destroy_event_channel(l->ec);
        g_free(l);
    }
}

PlvBulkLink *plv_rdma_link_accept(PlvRdmaListener *ls, uint32_t self_id,
                                  PlvLinkChannel channel,
                                  const uint8_t *secret, size_t secret_len,
                                  bool sealed, size_t ring_bytes,
                                  int timeout_ms, GError **err)
{
    if (!plv_link_check_secret(secret, secret_len, err)) {
        return NULL;
    }
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    PlvRdmaCmEvent ev;
    do {
        if (next_event(ls->ec, deadline, &ev, "waiting for a connection", err) < 0) {
            return NULL;
        }
    } while (ev.type != RDMA_CM_EVENT_CONNECT_REQUEST || !request_allowed(ls, ev.id));
    GError *local = NULL;
    struct rdma_event_channel *ec = plv_rdma_event_channel(err);
    if (!ec) {
        rdma_reject(ev.id, NULL, 0);
        rdma_destroy_id(ev.id);
        return NULL;
    }
    PlvRdmaLink *l = link_new(ec);
    l->id = ev.id;
    /* The connection gets a channel of its own, apart from the listener's. */
    if (rdma_migrate_id(ev.id, ec)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "rdma_migrate_id: %s",
                    g_strerror(errno));
        link_close(l);
        return NULL;
    }
    uint8_t pdata[PLV_RDMA_PDATA_LEN];
    PlvRdmaConnParams p = params(l, self_id, PLV_LINK_ANY_PEER, channel,
                                 secret, secret_len, sealed, ring_bytes);
    l->rc = plv_rdma_conn_new(ev.id, false, &p, pdata, err);
    if (!l->rc) {
        rdma_reject(ev.id, NULL, 0);
        link_close(l);
        return NULL;
    }
    l->id = NULL;
    if (plv_rdma_conn_set_remote(l->rc, ev.pdata, ev.pdata_len, &local) < 0) {
        rdma_reject(plv_rdma_conn_id(l->rc), NULL, 0);
        g_propagate_error(err, local);
        link_close(l);
        return NULL;
    }
    return complete(l, false, pdata, deadline, err);
}

/* Cancelled links refuse all I/O, even what the ring still holds. */
static bool is_cancelled(PlvRdmaLink *l, GError **err)
{
    g_mutex_lock(&l->lock);
    bool c = l->cancelled;
    g_mutex_unlock(&l->lock);
    if (c) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                    "rdma link: cancelled");
    }
    return c;
}

static int link_send(PlvBulkLink *b, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    PlvRdmaLink *l = (PlvRdmaLink *)b;
    size_t len = 0, done = 0;
    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (len > PLV_RDMA_MAX_MSG) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG,
                    "rdma link: message of %zu bytes", len);
        return -1;
    }
    if (is_cancelled(l, err)) {
        return -1;
    }
    int64_t stall = plv_deadline_from_timeout(STALL_MS);
    for (;;) {
        size_t before = done;
        g_mutex_lock(&l->lock);
        int r = plv_rdma_conn_write(l->rc, type, iov, iovcnt, len, &done);
        if (r >= 0) {
            /* Done, or blocked on ring credit: either way, let the peer
             * know there is data. */
            plv_rdma_conn_doorbell(l->rc);
        }
        g_mutex_unlock(&l->lock);
        if (r < 0) {
            if (pump(l, 0, err) == 0) {
                g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                            "rdma link: connection failed");
            }
            return -1;
        }
        if (r == 1) {
            return 0;
        }
        if (done > before) {
            stall = plv_deadline_from_timeout(STALL_MS);
        }
        if (pump(l, stall, err) < 0) {
            return -1;
        }
        if (g_get_monotonic_time() >= stall) {
            return timed_out(err, "waiting for ring credit");
        }
    }
}

/* A message queued or handed to this receiver; false if none. Locked. */
static bool take_msg(PlvRdmaLink *l, uint16_t *type, GByteArray *payload)
{
    if (l->target == payload && l->target_filled) {
        *type = l->target_type;
        l->target = NULL;
        return true;
    }
    Msg *m = g_queue_pop_head(&l->inbox);
    if (!m) {
        return false;
    }
    *type = m->type;
    g_byte_array_set_size(payload, 0);
    g_byte_array_append(payload, m->data->data, m->data->len);
    g_byte_array_unref(m->data);
    g_free(m);
    return true;
}

static int link_recv(PlvBulkLink *b, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    PlvRdmaLink *l = (PlvRdmaLink *)b;
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    if (is_cancelled(l, err)) {
        return -1;
    }
    for (;;) {
        g_mutex_lock(&l->lock);
        bool got = take_msg(l, type, payload);
        if (!got) {
            /* The next message may go straight into @payload (one copy
             * less), whichever thread's pump finds it. */
            l->target = payload;
            l->target_filled = false;
        }
        g_mutex_unlock(&l->lock);
        if (got) {
            return 0;
        }
        GError *e = NULL;
        int r = pump(l, deadline, &e);
        g_mutex_lock(&l->lock);
        got = take_msg(l, type, payload);
        l->target = NULL;
        g_mutex_unlock(&l->lock);
        if (got) {
            g_clear_error(&e);  /* drained from the ring after the end */
            return 0;
        }
        if (r < 0) {
            g_propagate_error(err, e);
            return -1;
        }
        if (g_get_monotonic_time() >= deadline) {
            return timed_out(err, "waiting for a message");
        }
    }
}

static uint32_t link_peer_id(const PlvBulkLink *b)
{
    return plv_rdma_conn_peer_id(((const PlvRdmaLink *)b)->rc);
}

static const uint8_t *link_session_key(const PlvBulkLink *b)
{
    return plv_rdma_conn_session_key(((const PlvRdmaLink *)b)->rc);
}

static void msg_free(gpointer p)
{
    Msg *m = p;
    g_byte_array_unref(m->data);
    g_free(m);
}

#define CLOSE_DRAIN_MS 5000

static void link_close(PlvRdmaLink *l)
{
    if (!l) {
        return;
    }
    /*
     * Disconnecting flushes the send queue: wait (bounded) until what was
     * sent is placed, so a last message (syncvm's ACK) is not lost the way
     * TCP's close would not lose it.
     */
    int64_t deadline = plv_deadline_from_timeout(CLOSE_DRAIN_MS);
    while (l->rc && !l->broken && plv_rdma_conn_sends_pending(l->rc) &&
           g_get_monotonic_time() < deadline) {
        plv_rdma_conn_doorbell(l->rc);
        if (pump(l, deadline, NULL) < 0) {
            break;
        }
    }
    plv_rdma_conn_free(l->rc);
    if (l->id) {
        rdma_destroy_id(l->id);
    }
    rdma_destroy_event_channel(l->ec);
    g_queue_clear_full(&l->inbox, msg_free);
    if (l->broken) {
        g_error_free(l->broken);
    }
    g_mutex_clear(&l->lock);
    g_free(l);
}

/* ---- the bulk link's calls (plover/bulk-link.h) ---- */

static void link_bulk_close(PlvBulkLink *b)
{
    link_close((PlvRdmaLink *)b);
}

/* A send or receive in another thread sees it within one SLICE_MS. */
static void link_bulk_cancel(PlvBulkLink *b)
{
    PlvRdmaLink *l = (PlvRdmaLink *)b;

    g_mutex_lock(&l->lock);
    l->cancelled = true;
    link_broken(l, PLV_LINK_ERROR_CLOSED, "cancelled");
    g_mutex_unlock(&l->lock);
}

static const PlvBulkLinkOps rdma_bulk_ops = {
    .name = "rdma",
    .send = link_send,
    .recv = link_recv,
    .peer_id = link_peer_id,
    .session_key = link_session_key,
    .cancel = link_bulk_cancel,
    .close = link_bulk_close,
};

