/*
 * The connection policy of the consensus transports (plover/peer-table.h).
 */
#include "plover/peer-table.h"
#include "plover/link-proto.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 64

void *plv_peer_table_new(size_t size, const PlvPeerTableConfig *cfg,
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
                    "%s transport needs its own address among the peers",
                    cfg->name);
        return NULL;
    }
    if (!plv_link_check_secret(cfg->secret, cfg->secret_len, err)) {
        return NULL;
    }
    g_assert(size >= sizeof(PlvPeerTable));
    PlvPeerTable *tab = g_malloc0(size);
    tab->base.ops = cfg->transport_ops;
    tab->name = cfg->name;
    tab->self_id = cfg->self_id;
    tab->secret = g_memdup2(cfg->secret, cfg->secret_len);
    tab->secret_len = cfg->secret_len;
    tab->ops = cfg->ops;
    tab->backoff_min_ms = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : 10;
    tab->backoff_max_ms = MAX(cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 1000,
                              tab->backoff_min_ms);
    tab->dial_timeout_ms = cfg->dial_timeout_ms > 0 ? cfg->dial_timeout_ms
                                                    : PLV_HANDSHAKE_TIMEOUT_MS;
    tab->n_peers = cfg->n_peers;
    tab->peers = g_new0(PlvPeer, cfg->n_peers);
    tab->peer_addrs = plv_addr_set_new();
    for (size_t i = 0; i < cfg->n_peers; i++) {
        PlvPeer *p = &tab->peers[i];
        p->id = cfg->peers[i].id;
        p->host = g_strdup(cfg->peers[i].host);
        p->port = cfg->peers[i].port;
        p->backoff_ms = tab->backoff_min_ms;
        if (p->id == cfg->self_id) {
            tab->self = p;
        } else {
            plv_addr_set_add_host(tab->peer_addrs, p->host);
        }
    }
    tab->epfd = tab->wake_fd = -1;
    tab->pending = g_ptr_array_new();
    tab->grave = g_ptr_array_new();
    tab->rand = cfg->seed ? g_rand_new_with_seed(cfg->seed) : g_rand_new();
    return tab;
}

int plv_peer_table_start(PlvPeerTable *tab, GError **err)
{
    plv_addr_set_resolve(tab->peer_addrs);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || wake_fd < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "epoll/eventfd: %s", g_strerror(errno));
        if (epfd >= 0) {
            close(epfd);
        }
        if (wake_fd >= 0) {
            close(wake_fd);
        }
        return -1;
    }
    tab->epfd = epfd;
    tab->wake_fd = wake_fd;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tab->wake_fd };
    epoll_ctl(tab->epfd, EPOLL_CTL_ADD, tab->wake_fd, &ev);
    return 0;
}

void plv_peer_table_close_all(PlvPeerTable *tab)
{
    tab->h = NULL;
    for (size_t i = 0; i < tab->n_peers; i++) {
        if (tab->peers[i].conn) {
            plv_peer_table_close(tab, tab->peers[i].conn);
        }
    }
    while (tab->pending->len) {
        plv_peer_table_close(tab, g_ptr_array_index(tab->pending, 0));
    }
    plv_peer_table_bury(tab);
}

void plv_peer_table_free(PlvPeerTable *tab)
{
    plv_peer_table_close_all(tab);      /* no-op if done already */
    for (size_t i = 0; i < tab->n_peers; i++) {
        g_free(tab->peers[i].host);
    }
    if (tab->wake_fd >= 0) {
        close(tab->wake_fd);
    }
    if (tab->epfd >= 0) {
        close(tab->epfd);
    }
    g_ptr_array_unref(tab->pending);
    g_ptr_array_unref(tab->grave);
    plv_addr_set_free(tab->peer_addrs);
    g_rand_free(tab->rand);
    explicit_bzero(tab->secret, tab->secret_len);
    g_free(tab->secret);
    g_free(tab->peers);
    g_free(tab);
}

PlvPeer *plv_peer_table_find(PlvPeerTable *tab, uint32_t id)
{
    for (size_t i = 0; i < tab->n_peers; i++) {
        if (tab->peers[i].id == id) {
            return &tab->peers[i];
        }
    }
    return NULL;
}

void plv_peer_table_wakeup(PlvTransport *t)
{
    uint64_t one = 1;
    if (write(((PlvPeerTable *)t)->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN only when the counter is saturated: already woken */
    }
}

bool plv_peer_table_peer_up(PlvTransport *t, uint32_t id)
{
    PlvPeer *p = plv_peer_table_find((PlvPeerTable *)t, id);
    return p && p->conn && p->conn->state == PLV_PEER_CONN_UP;
}

void plv_peer_table_link(PlvTransport *t, uint32_t id, PlvPeerLinkInfo *out)
{
    PlvPeer *p = plv_peer_table_find((PlvPeerTable *)t, id);
    plv_peer_link_read(p ? &p->link : NULL, id, out);
}

void plv_peer_table_stats(PlvTransport *t, PlvTransportStats *out)
{
    G_STATIC_ASSERT(sizeof(PlvTransportStats) % sizeof(uint64_t) == 0);
    const uint64_t *src = (const uint64_t *)&((PlvPeerTable *)t)->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
}

static void emit(PlvPeerTable *tab, PlvTransportEventKind kind, uint32_t peer,
                 const uint8_t *data, size_t len)
{
    if (!tab->h) {
        return;                 /* outside wait(): nobody to tell */
    }
    PlvTransportEvent ev = { .kind = kind, .peer = peer, .data = data,
                             .len = len };
    tab->delivered++;
    tab->h(tab->hop, &ev);
}

/* Call whenever p->conn or its state changes. */
static void publish(PlvPeer *p)
{
    plv_peer_link_set_state(&p->link,
                            !p->conn ? PLV_PEER_LINK_DOWN
                            : p->conn->state == PLV_PEER_CONN_UP ? PLV_PEER_LINK_UP
                            : PLV_PEER_LINK_CONNECTING);
}

void plv_peer_table_schedule_dial(PlvPeerTable *tab, PlvPeer *p)
{
    /* +-25% jitter so two replicas restarting together do not stay in step */
    int j = p->backoff_ms / 4;
    int delay = p->backoff_ms + (j ? g_rand_int_range(tab->rand, -j, j + 1) : 0);
    p->next_dial = g_get_monotonic_time() + (int64_t)delay * 1000;
    p->backoff_ms = MIN(p->backoff_ms * 2, tab->backoff_max_ms);
}

static void conn_init(PlvPeerTable *tab, PlvPeerConn *c, bool dialer,
                      PlvPeerConnState state)
{
    c->state = state;
    c->dialer = dialer;
    c->deadline = plv_deadline_from_timeout(dialer ? tab->dial_timeout_ms
                                                   : PLV_HANDSHAKE_TIMEOUT_MS);
}

void plv_peer_table_dialing(PlvPeerTable *tab, PlvPeerConn *c, PlvPeer *p,
                            PlvPeerConnState state)
{
    conn_init(tab, c, true, state);
    c->peer = p;
    p->conn = c;
    publish(p);
}

bool plv_peer_table_admit(PlvPeerTable *tab, const PlvIpAddr *src)
{
    if (!plv_addr_set_contains(tab->peer_addrs, src)) {
        PLV_PEER_STAT_ADD(tab, rejected_strangers, 1);
        return false;
    }
    PlvPendingSlot *used[PLV_PEER_MAX_PENDING];
    unsigned n = MIN(tab->pending->len, PLV_PEER_MAX_PENDING);
    for (unsigned i = 0; i < n; i++) {
        used[i] = &((PlvPeerConn *)g_ptr_array_index(tab->pending, i))->slot;
    }
    int v = plv_pending_victim(used, n, PLV_PEER_MAX_PENDING,
                               PLV_PEER_PENDING_PER_ADDR, src);
    if (v >= 0) {
        PLV_PEER_STAT_ADD(tab, pending_evicted, 1);
        /* freed after this wait() */
        plv_peer_table_close(tab, g_ptr_array_index(tab->pending, v));
    }
    return true;
}

void plv_peer_table_accepted(PlvPeerTable *tab, PlvPeerConn *c,
                             PlvPeerConnState state, const PlvIpAddr *src)
{
    conn_init(tab, c, false, state);
    /* plv_peer_table_admit() weighs it from here on */
    c->slot = (PlvPendingSlot){ .src = *src, .since = g_get_monotonic_time() };
    g_ptr_array_add(tab->pending, c);
}

bool plv_peer_table_up(PlvPeerTable *tab, PlvPeerConn *c, uint32_t id,
                       int64_t heard_us)
{
    PlvPeer *p = plv_peer_table_find(tab, id);
    bool ok = c->dialer ? (p == c->peer) : (p && id < tab->self_id);
    if (!ok) {
        g_debug("plover %s: authenticated peer %u is not expected here",
                tab->name, id);
        PLV_PEER_STAT_ADD(tab, unknown_peers, 1);
        plv_peer_table_close(tab, c);
        return false;
    }
    if (!c->dialer) {
        g_ptr_array_remove_fast(tab->pending, c);
        if (p->conn) {
            /* The peer dialed again, so it has given the old one up. */
            plv_peer_table_close(tab, p->conn);
        }
        c->peer = p;
        p->conn = c;
    }
    c->state = PLV_PEER_CONN_UP;
    publish(p);
    if (heard_us) {
        plv_peer_link_heard(&p->link, heard_us);
    }
    p->backoff_ms = tab->backoff_min_ms;
    PLV_PEER_STAT_ADD(tab, connects, 1);
    if (p->was_up) {
        PLV_PEER_STAT_ADD(tab, reconnects, 1);
    }
    p->was_up = true;
    emit(tab, PLV_TRANSPORT_PEER_UP, id, NULL, 0);
    return true;
}

void plv_peer_table_close(PlvPeerTable *tab, PlvPeerConn *c)
{
    if (c->state == PLV_PEER_CONN_DEAD) {
        return;
    }
    PlvPeerConnState was = c->state;
    c->state = PLV_PEER_CONN_DEAD;
    tab->ops.release(tab, c);
    g_ptr_array_add(tab->grave, c);
    if (c->peer && c->peer->conn == c) {
        PlvPeer *p = c->peer;
        p->conn = NULL;
        publish(p);
        if (c->dialer) {
            plv_peer_table_schedule_dial(tab, p);
        }
        if (was == PLV_PEER_CONN_UP) {
            PLV_PEER_STAT_ADD(tab, disconnects, 1);
            emit(tab, PLV_TRANSPORT_PEER_DOWN, p->id, NULL, 0);
        }
    } else {
        g_ptr_array_remove_fast(tab->pending, c);
    }
}

void plv_peer_table_auth_failed(PlvPeerTable *tab, PlvPeerConn *c,
                                const char *why)
{
    g_debug("plover %s: handshake %s peer failed: %s", tab->name,
            c->dialer ? "with" : "from", why ? why : "closed");
    PLV_PEER_STAT_ADD(tab, auth_failures, 1);
    plv_peer_table_close(tab, c);
}

void plv_peer_table_frame(PlvPeerTable *tab, PlvPeerConn *c, uint16_t type,
                          const uint8_t *data, size_t len, int64_t heard_us)
{
    plv_peer_link_heard(&c->peer->link, heard_us);
    if (type != PLV_PEER_MSG_TYPE) {
        /* Authenticated but not ours to read: skip it, count it. */
        PLV_PEER_STAT_ADD(tab, malformed_dropped, 1);
        return;
    }
    PLV_PEER_STAT_ADD(tab, frames_in, 1);
    PLV_PEER_STAT_ADD(tab, bytes_in, len);
    emit(tab, PLV_TRANSPORT_MESSAGE, c->peer->id, data, len);
}

PlvPeerConn *plv_peer_table_send_conn(PlvPeerTable *tab, uint32_t to,
                                      size_t len)
{
    PlvPeer *p = plv_peer_table_find(tab, to);
    PlvPeerConn *c = p ? p->conn : NULL;
    if (!c || c->state != PLV_PEER_CONN_UP || len > PLV_LINK_MAX_PAYLOAD) {
        return NULL;
    }
    return c;
}

int plv_peer_table_queued(PlvPeerTable *tab, size_t len)
{
    PLV_PEER_STAT_ADD(tab, frames_out, 1);
    PLV_PEER_STAT_ADD(tab, bytes_out, len);
    return 0;
}

int plv_peer_table_dropped(PlvPeerTable *tab)
{
    PLV_PEER_STAT_ADD(tab, send_dropped, 1);
    return -1;
}

/* @c is past its deadline: close it; only a handshake under way failed
 * one (a dial still connecting did not get that far). */
static void expire(PlvPeerTable *tab, PlvPeerConn *c)
{
    if (c->state == PLV_PEER_CONN_HANDSHAKE || !c->dialer) {
        plv_peer_table_auth_failed(tab, c, "timed out");
    } else {
        g_debug("plover %s: dial to peer %u timed out", tab->name, c->peer->id);
        plv_peer_table_close(tab, c);
    }
}

int64_t plv_peer_table_maintain(PlvPeerTable *tab)
{
    int64_t now = g_get_monotonic_time(), next = PLV_DEADLINE_NONE;
    for (size_t i = 0; i < tab->n_peers; i++) {
        PlvPeer *p = &tab->peers[i];
        if (p->id <= tab->self_id) {
            continue;           /* the lower id dials */
        }
        if (!p->conn && now >= p->next_dial) {
            tab->ops.dial(tab, p);
        }
        if (p->conn && p->conn->state != PLV_PEER_CONN_UP) {
            if (now >= p->conn->deadline) {
                expire(tab, p->conn);
            } else {
                next = MIN(next, p->conn->deadline);
            }
        }
        if (!p->conn) {
            next = MIN(next, p->next_dial);
        }
    }
    for (guint i = 0; i < tab->pending->len;) {
        PlvPeerConn *c = g_ptr_array_index(tab->pending, i);
        if (now >= c->deadline) {
            expire(tab, c);     /* removes it from pending */
        } else {
            next = MIN(next, c->deadline);
            i++;
        }
    }
    return next;
}

void plv_peer_table_bury(PlvPeerTable *tab)
{
    for (guint i = 0; i < tab->grave->len; i++) {
        tab->ops.free(tab, g_ptr_array_index(tab->grave, i));
    }
    g_ptr_array_set_size(tab->grave, 0);
}

int64_t plv_peer_table_wait_begin(PlvPeerTable *tab, int timeout_ms,
                                  PlvTransportHandler h, void *opaque)
{
    tab->h = h;
    tab->hop = opaque;
    tab->delivered = 0;
    return plv_deadline_from_timeout(timeout_ms);
}

int plv_peer_table_wait_end(PlvPeerTable *tab)
{
    tab->woken = false;
    tab->h = NULL;
    return tab->delivered;
}

int plv_peer_table_sleep(PlvPeerTable *tab, int64_t deadline)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(tab->epfd, evs, MAX_EVENTS,
                       plv_deadline_remaining_ms(deadline));
    if (n < 0) {
        return errno == EINTR ? 0 : -1;
    }
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == &tab->wake_fd) {
            uint64_t v;
            if (read(tab->wake_fd, &v, sizeof(v)) < 0) {
                /* EAGAIN: someone else drained it; still woken */
            }
            tab->woken = true;
        } else {
            tab->ops.event(tab, evs[i].data.ptr, evs[i].events);
        }
    }
    return 0;
}
