/*
 * TCP transport for consensus (see plover/transport.h): epoll, non-blocking
 * sockets, one authenticated connection per peer pair, reconnect with
 * exponential backoff. Handshake and framing are link-proto.c's.
 *
 * Sends are appended (already framed) to the connection's output buffer and
 * flushed when wait() runs, so the messages one consensus step produces leave
 * in one write.
 */
#include "plover/transport.h"
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "plover/pending-slots.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK      (256 * 1024)
#define READS_PER_EVENT 8       /* fairness between busy connections */
#define MAX_EVENTS      64
#define MAX_PENDING     64      /* unauthenticated connections at once */
/* ...from one address: a stranger on a peer's host, or one peer redialing
 * fast, cannot take every slot (all peers share 127.0.0.1 in tests). */
#define PENDING_PER_ADDR 4
#define FRAME_MSG       1       /* frame type of a transport message */

enum { SRC_LISTEN = 1, SRC_WAKE, SRC_CONN };
enum { C_CONNECTING, C_HANDSHAKE, C_UP, C_DEAD };

typedef struct TcpTransport TcpTransport;
typedef struct Peer Peer;

typedef struct Conn {
    int kind;                   /* SRC_CONN; first, read through epoll data */
    TcpTransport *t;
    int fd;
    int state;
    bool dialer;
    Peer *peer;                 /* dialer: whom we dial; acceptor: once up */
    PlvHandshake *hs;
    GByteArray *early;          /* frame bytes that came with the handshake */
    PlvLinkSession *s;
    PlvFrameParser *p;
    GByteArray *out;
    size_t out_off;
    bool dirty, epollout;
    int64_t deadline;           /* connect + handshake must finish by then */
    PlvPendingSlot slot;        /* acceptor, until authenticated */
} Conn;

struct Peer {
    uint32_t id;
    char *host;
    uint16_t port;
    Conn *conn;                 /* the up (or dialing) connection */
    PlvPeerLinkCell link;       /* what peer_link() reports */
    bool was_up;
    int backoff_ms;
    int64_t next_dial;
};

struct TcpTransport {
    PlvTransport base;
    uint32_t self_id;
    uint8_t *secret;
    size_t secret_len;
    int backoff_min_ms, backoff_max_ms, hs_timeout_ms;
    size_t max_queue;
    Peer *peers;
    size_t n_peers;
    char *listen_host;
    uint16_t listen_port;
    int listen_fd, epfd, wake_fd;
    int64_t listen_paused_until;    /* 0: the listening fd is in epoll */
    int tag_listen, tag_wake;   /* epoll data for the two special fds */
    GPtrArray *pending;         /* accepted, not yet authenticated */
    PlvAddrSet *peer_addrs;     /* sources allowed a pending slot */
    GPtrArray *dirty;           /* connections with unsent output */
    GPtrArray *grave;           /* closed during this wait(), freed after */
    GRand *rand;
    uint8_t *rbuf;
    PlvTransportStats st;       /* written by the owner thread only */
    PlvTransportHandler h;      /* set while wait() runs */
    void *hop;
    int delivered;
    bool woken;
};

/* Counters are read by other threads: store them whole. */
#define STAT_ADD(t, f, n) \
    __atomic_store_n(&(t)->st.f, (t)->st.f + (n), __ATOMIC_RELAXED)

static void emit(TcpTransport *t, PlvTransportEventKind kind, uint32_t peer,
                 const uint8_t *data, size_t len)
{
    if (!t->h) {
        return;                 /* outside wait(): nobody to tell */
    }
    PlvTransportEvent ev = { .kind = kind, .peer = peer, .data = data,
                             .len = len };
    t->delivered++;
    t->h(t->hop, &ev);
}

static Peer *find_peer(TcpTransport *t, uint32_t id)
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

static void conn_epoll(Conn *c, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(c->t->epfd, op, c->fd, &ev);
}

static void set_epollout(Conn *c, bool on)
{
    if (c->epollout != on) {
        c->epollout = on;
        conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN | (on ? EPOLLOUT : 0));
    }
}

static void schedule_dial(TcpTransport *t, Peer *p)
{
    /* +-25% jitter so two replicas restarting together do not stay in step */
    int j = p->backoff_ms / 4;
    int delay = p->backoff_ms + (j ? g_rand_int_range(t->rand, -j, j + 1) : 0);
    p->next_dial = g_get_monotonic_time() + (int64_t)delay * 1000;
    p->backoff_ms = MIN(p->backoff_ms * 2, t->backoff_max_ms);
}

static void conn_close(Conn *c)
{
    TcpTransport *t = c->t;
    if (c->state == C_DEAD) {
        return;
    }
    int was = c->state;
    c->state = C_DEAD;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->dirty) {
        /* flush_dirty() clears the flag before flushing, so this never
         * removes from under its iteration. */
        c->dirty = false;
        g_ptr_array_remove_fast(t->dirty, c);
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
    plv_handshake_free(c->hs);
    plv_frame_parser_free(c->p);
    plv_link_session_free(c->s);
    if (c->early) {
        g_byte_array_unref(c->early);
    }
    g_byte_array_unref(c->out);
    g_free(c);
}

static Conn *conn_new(TcpTransport *t, int fd, bool dialer, int state)
{
    Conn *c = g_new0(Conn, 1);
    c->kind = SRC_CONN;
    c->t = t;
    c->fd = fd;
    c->dialer = dialer;
    c->state = state;
    c->out = g_byte_array_new();
    c->deadline = plv_deadline_from_timeout(dialer ? t->hs_timeout_ms
                                                    : PLV_HANDSHAKE_TIMEOUT_MS);
    return c;
}

static void mark_dirty(Conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        g_ptr_array_add(c->t->dirty, c);
    }
}

/* Write out what is queued; -1 if the connection died. */
static int conn_flush(Conn *c)
{
    while (c->out_off < c->out->len) {
        ssize_t n = send(c->fd, c->out->data + c->out_off,
                         c->out->len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_epollout(c, true);
            /* Do not let the sent prefix pile up in front of new frames. */
            if (c->out_off >= (1u << 20) && c->out_off * 2 >= c->out->len) {
                g_byte_array_remove_range(c->out, 0, c->out_off);
                c->out_off = 0;
            }
            return 0;
        }
        if (!c->t->h) {
            /* Outside wait() nobody could hear PEER_DOWN: drop the output
             * and let wait() find the dead socket (it polls readable). */
            g_byte_array_set_size(c->out, 0);
            c->out_off = 0;
            return -1;
        }
        conn_close(c);
        return -1;
    }
    g_byte_array_set_size(c->out, 0);
    c->out_off = 0;
    set_epollout(c, false);
    return 0;
}

static void flush_dirty(TcpTransport *t)
{
    for (guint i = 0; i < t->dirty->len; i++) {
        Conn *c = g_ptr_array_index(t->dirty, i);
        c->dirty = false;
        if (c->state == C_UP) {
            conn_flush(c);
        }
    }
    g_ptr_array_set_size(t->dirty, 0);
}

/* Feed frame bytes; deliver complete messages. -1 if the conn was closed. */
static int conn_feed(Conn *c, const uint8_t *data, size_t len)
{
    TcpTransport *t = c->t;
    while (len > 0 && c->state == C_UP) {
        size_t used;
        GError *err = NULL;
        int r = plv_frame_parser_feed(c->p, data, len, &used, &err);
        data += used;
        len -= used;
        if (r < 0) {
            g_debug("plover tcp: dropping peer %u: %s", c->peer->id, err->message);
            g_error_free(err);
            STAT_ADD(t, malformed_dropped, 1);
            conn_close(c);
            return -1;
        }
        if (r == 1) {
            plv_peer_link_heard(&c->peer->link, g_get_monotonic_time());
            if (plv_frame_parser_type(c->p) != FRAME_MSG) {
                /* Authenticated but not ours to read: skip it, count it. */
                STAT_ADD(t, malformed_dropped, 1);
                continue;
            }
            GByteArray *pl = plv_frame_parser_payload(c->p);
            STAT_ADD(t, frames_in, 1);
            STAT_ADD(t, bytes_in, pl->len);
            emit(t, PLV_TRANSPORT_MESSAGE, c->peer->id, pl->data, pl->len);
        }
    }
    return c->state == C_UP ? 0 : -1;
}

/* The handshake finished: make @c the connection to its peer. */
static void conn_up(Conn *c)
{
    TcpTransport *t = c->t;
    uint32_t id = plv_handshake_peer_id(c->hs);
    Peer *p = find_peer(t, id);
    bool ok = c->dialer ? (p == c->peer)
                        : (p && id != t->self_id && id < t->self_id);
    if (!ok) {
        g_debug("plover tcp: authenticated peer %u is not expected here", id);
        STAT_ADD(t, unknown_peers, 1);
        conn_close(c);
        return;
    }
    c->s = plv_handshake_finish(c->hs);
    plv_handshake_free(c->hs);
    c->hs = NULL;
    c->p = plv_frame_parser_new(c->s);
    if (!c->dialer) {
        g_ptr_array_remove_fast(t->pending, c);
        if (p->conn) {
            /* The peer dialed again, so it has given the old one up. */
            conn_close(p->conn);
        }
        c->peer = p;
        p->conn = c;
    }
    c->state = C_UP;
    peer_publish(p);
    p->backoff_ms = t->backoff_min_ms;
    STAT_ADD(t, connects, 1);
    if (p->was_up) {
        STAT_ADD(t, reconnects, 1);
    }
    p->was_up = true;
    set_epollout(c, false);
    emit(t, PLV_TRANSPORT_PEER_UP, id, NULL, 0);
    if (c->early && c->state == C_UP) {
        GByteArray *e = c->early;
        c->early = NULL;
        conn_feed(c, e->data, e->len);
        g_byte_array_unref(e);
    }
}

static void hs_fail(Conn *c, GError *err)
{
    g_debug("plover tcp: handshake with %s failed: %s",
            c->dialer ? "peer" : "client", err ? err->message : "closed");
    g_clear_error(&err);
    STAT_ADD(c->t, auth_failures, 1);
    conn_close(c);
}

/* Push the handshake as far as the socket allows. */
static void conn_handshake(Conn *c)
{
    TcpTransport *t = c->t;
    for (;;) {
        const uint8_t *out;
        size_t olen = plv_handshake_output(c->hs, &out);
        if (olen) {
            ssize_t n = send(c->fd, out, olen, MSG_NOSIGNAL);
            if (n > 0) {
                plv_handshake_output_done(c->hs, n);
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                set_epollout(c, true);
                return;
            }
            conn_close(c);
            return;
        }
        if (plv_handshake_done(c->hs)) {
            conn_up(c);
            return;
        }
        if (plv_handshake_want(c->hs) == 0) {
            /* Peer authenticated; our output is drained above. */
            continue;
        }
        ssize_t n = read(c->fd, t->rbuf, READ_CHUNK);
        if (n == 0) {
            hs_fail(c, NULL);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                hs_fail(c, NULL);
            }
            return;
        }
        size_t used;
        GError *err = NULL;
        int r = plv_handshake_input(c->hs, t->rbuf, n, &used, &err);
        if (r < 0) {
            hs_fail(c, err);
            return;
        }
        c->slot.heard = true;   /* a dialer at work: pushed out last */
        if (used < (size_t)n) {
            if (r != 1) {
                hs_fail(c, NULL);
                return;
            }
            if (!c->early) {
                c->early = g_byte_array_new();
            }
            g_byte_array_append(c->early, t->rbuf + used, n - used);
        }
    }
}

static void conn_connected(Conn *c)
{
    int e = plv_sock_connect_result(c->fd);
    if (e) {
        g_debug("plover tcp: connect to peer %u: %s", c->peer->id, g_strerror(e));
        conn_close(c);
        return;
    }
    c->state = C_HANDSHAKE;
    c->hs = plv_handshake_new(true, c->t->self_id, PLV_LINK_CHANNEL_CONSENSUS,
                              c->t->secret, c->t->secret_len);
    /* Someone else answering at the address gets no MAC from us. */
    plv_handshake_expect_peer(c->hs, c->peer->id);
    c->epollout = true;         /* registered with EPOLLOUT while connecting */
    set_epollout(c, false);
    conn_handshake(c);
}

static void conn_readable(Conn *c)
{
    TcpTransport *t = c->t;
    for (int i = 0; i < READS_PER_EVENT && c->state == C_UP; i++) {
        ssize_t n = read(c->fd, t->rbuf, READ_CHUNK);
        if (n > 0) {
            if (conn_feed(c, t->rbuf, n) < 0 || n < READ_CHUNK) {
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        conn_close(c);          /* EOF or error */
        return;
    }
}

static void conn_event(Conn *c, uint32_t events)
{
    switch (c->state) {
    case C_CONNECTING:
        conn_connected(c);
        break;
    case C_HANDSHAKE:
        conn_handshake(c);
        break;
    case C_UP:
        if (events & EPOLLOUT) {
            if (conn_flush(c) < 0) {
                return;
            }
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            conn_readable(c);
        }
        break;
    default:
        break;
    }
}

/*
 * May a connection from @src take a pending slot? Strangers may not. A
 * peer's address may, pushing out another unauthenticated connection if
 * need be (plover/pending-slots.h).
 */
static bool take_slot(TcpTransport *t, const PlvIpAddr *src)
{
    if (!plv_addr_set_contains(t->peer_addrs, src)) {
        STAT_ADD(t, rejected_strangers, 1);
        return false;
    }
    PlvPendingSlot *used[MAX_PENDING];
    unsigned n = MIN(t->pending->len, MAX_PENDING);
    for (unsigned i = 0; i < n; i++) {
        used[i] = &((Conn *)g_ptr_array_index(t->pending, i))->slot;
    }
    int v = plv_pending_victim(used, n, MAX_PENDING, PENDING_PER_ADDR, src);
    if (v >= 0) {
        STAT_ADD(t, pending_evicted, 1);
        conn_close(g_ptr_array_index(t->pending, v));   /* freed after this wait() */
    }
    return true;
}

static void accept_all(TcpTransport *t)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        int fd = accept4(t->listen_fd, (struct sockaddr *)&ss, &sslen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE & co: the socket stays readable, so stop watching
                 * it for a while rather than spin on it. */
                g_debug("plover tcp: accept: %s", g_strerror(errno));
                epoll_ctl(t->epfd, EPOLL_CTL_DEL, t->listen_fd, NULL);
                t->listen_paused_until = g_get_monotonic_time() + 100 * 1000;
            }
            return;
        }
        PlvIpAddr src;
        plv_ip_addr_from_sockaddr((struct sockaddr *)&ss, &src);
        if (!take_slot(t, &src)) {
            close(fd);
            continue;
        }
        plv_sock_tune(fd);
        Conn *c = conn_new(t, fd, false, C_HANDSHAKE);
        c->hs = plv_handshake_new(false, t->self_id, PLV_LINK_CHANNEL_CONSENSUS,
                                  t->secret, t->secret_len);
        g_ptr_array_add(t->pending, c);
        /* take_slot() weighs it from here on */
        c->slot = (PlvPendingSlot){ .src = src, .since = g_get_monotonic_time() };
        conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN);
        conn_handshake(c);
    }
}

static void dial(TcpTransport *t, Peer *p)
{
    GError *err = NULL;
    int fd = plv_sock_connect_start(p->host, p->port, &err);
    if (fd < 0) {
        g_debug("plover tcp: %s", err->message);
        g_error_free(err);
        schedule_dial(t, p);
        return;
    }
    Conn *c = conn_new(t, fd, true, C_CONNECTING);
    c->peer = p;
    c->epollout = true;
    p->conn = c;
    peer_publish(p);
    conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT);
}

/* Start due dials, expire slow handshakes; returns the next timer due. */
static int64_t maintain(TcpTransport *t)
{
    int64_t now = g_get_monotonic_time(), next = PLV_DEADLINE_NONE;
    if (t->listen_paused_until) {
        if (now >= t->listen_paused_until) {
            struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->tag_listen };
            epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->listen_fd, &ev);
            t->listen_paused_until = 0;
        } else {
            next = t->listen_paused_until;
        }
    }
    for (size_t i = 0; i < t->n_peers; i++) {
        Peer *p = &t->peers[i];
        if (p->id <= t->self_id) {
            continue;           /* the lower id dials */
        }
        if (!p->conn && now >= p->next_dial) {
            dial(t, p);
        }
        if (p->conn && p->conn->state != C_UP) {
            if (now >= p->conn->deadline) {
                if (p->conn->state == C_HANDSHAKE) {
                    STAT_ADD(t, auth_failures, 1);
                }
                conn_close(p->conn);
            } else {
                next = MIN(next, p->conn->deadline);
            }
        }
        if (!p->conn) {
            next = MIN(next, p->next_dial);
        }
    }
    for (guint i = 0; i < t->pending->len;) {
        Conn *c = g_ptr_array_index(t->pending, i);
        if (now >= c->deadline) {
            STAT_ADD(t, auth_failures, 1);
            conn_close(c);      /* removes it from pending */
        } else {
            next = MIN(next, c->deadline);
            i++;
        }
    }
    return next;
}

static void bury(TcpTransport *t)
{
    for (guint i = 0; i < t->grave->len; i++) {
        conn_free(g_ptr_array_index(t->grave, i));
    }
    g_ptr_array_set_size(t->grave, 0);
}

static int tcp_wait(PlvTransport *base, int timeout_ms, PlvTransportHandler h,
                    void *opaque)
{
    TcpTransport *t = (TcpTransport *)base;
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    struct epoll_event evs[MAX_EVENTS];

    t->h = h;
    t->hop = opaque;
    t->delivered = 0;
    for (;;) {
        flush_dirty(t);
        int64_t timer = maintain(t);
        if (t->delivered > 0 || t->woken) {
            break;
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
            } else if (kind == SRC_LISTEN) {
                accept_all(t);
            } else {
                conn_event(evs[i].data.ptr, evs[i].events);
            }
        }
        bury(t);
        if (t->delivered > 0 || t->woken ||
            g_get_monotonic_time() >= deadline) {
            break;
        }
    }
    flush_dirty(t);             /* replies the handler queued */
    bury(t);
    t->woken = false;
    t->h = NULL;
    return t->delivered;
}

static int tcp_send(PlvTransport *base, uint32_t to, const void *buf, size_t len)
{
    TcpTransport *t = (TcpTransport *)base;
    Peer *p = find_peer(t, to);
    Conn *c = p ? p->conn : NULL;
    if (!c || c->state != C_UP || len > PLV_LINK_MAX_PAYLOAD ||
        c->out->len - c->out_off + len > t->max_queue) {
        STAT_ADD(t, send_dropped, 1);
        return -1;
    }
    plv_frame_append(c->s, FRAME_MSG, buf, len, c->out, NULL);
    STAT_ADD(t, frames_out, 1);
    STAT_ADD(t, bytes_out, len);
    mark_dirty(c);
    return 0;
}

static void tcp_flush(PlvTransport *base)
{
    flush_dirty((TcpTransport *)base);
}

static void tcp_wakeup(PlvTransport *base)
{
    TcpTransport *t = (TcpTransport *)base;
    uint64_t one = 1;
    if (write(t->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN only when the counter is saturated: already woken */
    }
}

static bool tcp_peer_up(PlvTransport *base, uint32_t peer)
{
    TcpTransport *t = (TcpTransport *)base;
    Peer *p = find_peer(t, peer);
    return p && p->conn && p->conn->state == C_UP;
}

static void tcp_peer_link(PlvTransport *base, uint32_t peer, PlvPeerLinkInfo *out)
{
    Peer *p = find_peer((TcpTransport *)base, peer);
    plv_peer_link_read(p ? &p->link : NULL, peer, out);
}

static void tcp_stats(PlvTransport *base, PlvTransportStats *out)
{
    TcpTransport *t = (TcpTransport *)base;
    G_STATIC_ASSERT(sizeof(PlvTransportStats) % sizeof(uint64_t) == 0);
    const uint64_t *src = (const uint64_t *)&t->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
}

static int tcp_start(PlvTransport *base, GError **err)
{
    TcpTransport *t = (TcpTransport *)base;
    if (t->epfd >= 0) {
        return 0;               /* already started (e.g. probed, then driven) */
    }
    plv_addr_set_resolve(t->peer_addrs);
    if (t->listen_fd < 0) {
        t->listen_fd = plv_sock_listen(t->listen_host, t->listen_port, err);
        if (t->listen_fd < 0) {
            return -1;
        }
    }
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->epfd < 0 || t->wake_fd < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "epoll/eventfd: %s", g_strerror(errno));
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->tag_listen };
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->listen_fd, &ev);
    ev.data.ptr = &t->tag_wake;
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wake_fd, &ev);
    return 0;
}

static void tcp_free(PlvTransport *base)
{
    TcpTransport *t = (TcpTransport *)base;
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
    if (t->listen_fd >= 0) {
        close(t->listen_fd);
    }
    if (t->epfd >= 0) {
        close(t->epfd);
    }
    if (t->wake_fd >= 0) {
        close(t->wake_fd);
    }
    g_ptr_array_unref(t->pending);
    plv_addr_set_free(t->peer_addrs);
    g_ptr_array_unref(t->dirty);
    g_ptr_array_unref(t->grave);
    g_rand_free(t->rand);
    explicit_bzero(t->secret, t->secret_len);
    g_free(t->secret);
    g_free(t->peers);
    g_free(t->listen_host);
    g_free(t->rbuf);
    g_free(t);
}

static const PlvTransportOps tcp_ops = {
    .name = "tcp",
    .start = tcp_start,
    .send = tcp_send,
    .wait = tcp_wait,
    .flush = tcp_flush,
    .wakeup = tcp_wakeup,
    .peer_up = tcp_peer_up,
    .stats = tcp_stats,
    .peer_link = tcp_peer_link,
    .free = tcp_free,
};

PlvTransport *plv_transport_tcp_new(const PlvTcpTransportConfig *cfg,
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
                    "tcp transport needs its own address among the peers");
        return NULL;
    }
    if (!plv_link_check_secret(cfg->secret, cfg->secret_len, err)) {
        return NULL;
    }
    TcpTransport *t = g_new0(TcpTransport, 1);
    t->base.ops = &tcp_ops;
    t->self_id = cfg->self_id;
    t->secret = g_memdup2(cfg->secret, cfg->secret_len);
    t->secret_len = cfg->secret_len;
    t->backoff_min_ms = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : 10;
    t->backoff_max_ms = MAX(cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 1000,
                            t->backoff_min_ms);
    t->hs_timeout_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms
                                                     : PLV_HANDSHAKE_TIMEOUT_MS;
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
    t->listen_fd = cfg->listen_fd;
    t->epfd = t->wake_fd = -1;
    t->tag_listen = SRC_LISTEN;
    t->tag_wake = SRC_WAKE;
    t->pending = g_ptr_array_new();
    t->dirty = g_ptr_array_new();
    t->grave = g_ptr_array_new();
    t->rand = g_rand_new();
    t->rbuf = g_malloc(READ_CHUNK);
    return &t->base;
}
