/*
 * TCP transport for consensus (see plover/transport.h): epoll, non-blocking
 * sockets, one authenticated connection per peer pair. Handshake and
 * framing are link-proto.c's; which connection is whose, dialing, the
 * pending slots, counters and events are the peer table's
 * (plover/peer-table.h), shared with the RDMA transport.
 *
 * Sends are appended (already framed) to the connection's output buffer and
 * flushed when wait() runs, so the messages one consensus step produces leave
 * in one write.
 */
#include "plover/transport.h"
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "plover/peer-table.h"
#include "plover/tls.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK      (256 * 1024)
#define READS_PER_EVENT 8       /* fairness between busy connections */

typedef struct TcpTransport TcpTransport;

typedef struct Conn {
    PlvPeerConn pc;             /* first: the peer table's view of it */
    TcpTransport *t;
    int fd;
    PlvTlsConn *tls;            /* with the transport's tls: the session */
    PlvHandshake *hs;
    GByteArray *early;          /* frame bytes that came with the handshake */
    PlvLinkSession *s;
    PlvFrameParser *p;
    GByteArray *out;
    size_t out_off;
    bool dirty, epollout;
} Conn;

/*
 * In the table's epoll set, data.ptr is a Conn, &listen_fd, or the table's
 * wake fd.
 */
struct TcpTransport {
    PlvPeerTable tab;           /* first: it begins with the PlvTransport */
    size_t max_queue;
    PlvTls *tls;                /* NULL: plaintext */
    int listen_fd;
    int64_t listen_paused_until;    /* 0: the listening fd is in epoll */
    GPtrArray *dirty;           /* connections with unsent output */
    uint8_t *rbuf;
};

static void conn_epoll(Conn *c, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(c->t->tab.epfd, op, c->fd, &ev);
}

static void set_epollout(Conn *c, bool on)
{
    if (c->epollout != on) {
        c->epollout = on;
        conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN | (on ? EPOLLOUT : 0));
    }
}

static void conn_close(Conn *c)
{
    plv_peer_table_close(&c->t->tab, &c->pc);
}

/* The table closed @c: its socket goes. */
static void conn_release(PlvPeerTable *tab, PlvPeerConn *pc)
{
    TcpTransport *t = (TcpTransport *)tab;
    Conn *c = (Conn *)pc;
    epoll_ctl(t->tab.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    plv_tls_conn_free(c->tls);  /* before the close: it may still send */
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->dirty) {
        /* flush_dirty() clears the flag before flushing, so this never
         * removes from under its iteration. */
        c->dirty = false;
        g_ptr_array_remove_fast(t->dirty, c);
    }
}

static void conn_free(PlvPeerTable *tab, PlvPeerConn *pc)
{
    Conn *c = (Conn *)pc;
    plv_tls_conn_free(c->tls);
    plv_handshake_free(c->hs);
    plv_frame_parser_free(c->p);
    plv_link_session_free(c->s);
    if (c->early) {
        g_byte_array_unref(c->early);
    }
    g_byte_array_unref(c->out);
    g_free(c);
}

static Conn *conn_new(TcpTransport *t, int fd)
{
    Conn *c = g_new0(Conn, 1);
    c->t = t;
    c->fd = fd;
    c->out = g_byte_array_new();
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
        ssize_t n = plv_stream_send(c->fd, c->tls, c->out->data + c->out_off,
                                    c->out->len - c->out_off);
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
        if (!plv_peer_table_in_wait(&c->t->tab)) {
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
        if (c->pc.state == PLV_PEER_CONN_UP) {
            conn_flush(c);
        }
    }
    g_ptr_array_set_size(t->dirty, 0);
}

/* Feed frame bytes; deliver complete messages. -1 if the conn was closed. */
static int conn_feed(Conn *c, const uint8_t *data, size_t len)
{
    TcpTransport *t = c->t;
    while (len > 0 && c->pc.state == PLV_PEER_CONN_UP) {
        size_t used;
        GError *err = NULL;
        int r = plv_frame_parser_feed(c->p, data, len, &used, &err);
        data += used;
        len -= used;
        if (r < 0) {
            g_debug("plover tcp: dropping peer %u: %s", c->pc.peer->id,
                    err->message);
            g_error_free(err);
            PLV_PEER_STAT_ADD(&t->tab, malformed_dropped, 1);
            conn_close(c);
            return -1;
        }
        if (r == 1) {
            GByteArray *pl = plv_frame_parser_payload(c->p);
            plv_peer_table_frame(&t->tab, &c->pc, plv_frame_parser_type(c->p),
                                 pl->data, pl->len, g_get_monotonic_time());
        }
    }
    return c->pc.state == PLV_PEER_CONN_UP ? 0 : -1;
}

/* TLS refused @c: said (once a minute for the same text), counted. */
static void tls_fail(Conn *c, GError *err)
{
    TcpTransport *t = c->t;
    char who[64];
    if (c->pc.dialer) {
        g_snprintf(who, sizeof(who), "to replica %u", c->pc.peer->id);
    } else {
        char addr[48];
        plv_ip_addr_format(&c->pc.slot.src, addr, sizeof(addr));
        g_snprintf(who, sizeof(who), "from %s", addr);
    }
    const char *why = err ? err->message : "TLS failed";
    plv_tls_log_refusal(t->tls, "consensus", who, why);
    PLV_PEER_STAT_ADD(&t->tab, tls_refused, 1);
    plv_peer_table_auth_failed(&t->tab, &c->pc, why);
    g_clear_error(&err);
}

/* The handshake finished: make @c the connection to its peer (if the
 * table agrees it is one) and read what came with the handshake. */
static void conn_up(Conn *c)
{
    uint32_t id = plv_handshake_peer_id(c->hs);
    /* Before PEER_UP: its handler may send at once. */
    c->s = plv_handshake_finish(c->hs);
    plv_handshake_free(c->hs);
    c->hs = NULL;
    c->p = plv_frame_parser_new(c->s);
    set_epollout(c, false);
    if (!plv_peer_table_up(&c->t->tab, &c->pc, id, 0)) {
        return;
    }
    if (c->early && c->pc.state == PLV_PEER_CONN_UP) {
        GByteArray *e = c->early;
        c->early = NULL;
        conn_feed(c, e->data, e->len);
        g_byte_array_unref(e);
    }
}

static void hs_fail(Conn *c, GError *err)
{
    plv_peer_table_auth_failed(&c->t->tab, &c->pc, err ? err->message : NULL);
    g_clear_error(&err);
}

/* Push the handshake (TLS's, then plover's) as far as the socket allows. */
static void conn_handshake(Conn *c)
{
    TcpTransport *t = c->t;
    if (c->tls && !plv_tls_conn_established(c->tls)) {
        GError *err = NULL;
        int r = plv_tls_conn_handshake(c->tls, &err);
        if (r < 0) {
            tls_fail(c, err);
            return;
        }
        set_epollout(c, r == 0 && (plv_tls_conn_events(c->tls) & POLLOUT));
        if (r == 0) {
            return;
        }
    }
    for (;;) {
        const uint8_t *out;
        size_t olen = plv_handshake_output(c->hs, &out);
        if (olen) {
            ssize_t n = plv_stream_send(c->fd, c->tls, out, olen);
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
        ssize_t n = plv_stream_read(c->fd, c->tls, t->rbuf, READ_CHUNK);
        if (n == 0) {
            hs_fail(c, NULL);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EPROTO && c->tls) {
                tls_fail(c, g_error_new(PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                                        "%s", plv_tls_conn_error(c->tls)));
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                hs_fail(c, NULL);
            }
            return;
        }
        size_t used;
        GError *err = NULL;
        int r = plv_handshake_input(c->hs, t->rbuf, n, &used, &err);
        if (r < 0) {
            if (plv_handshake_tls_refused(c->hs)) {
                tls_fail(c, err);
            } else {
                hs_fail(c, err);
            }
            return;
        }
        c->pc.slot.heard = true;    /* a dialer at work: pushed out last */
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
        g_debug("plover tcp: connect to peer %u: %s", c->pc.peer->id,
                g_strerror(e));
        conn_close(c);
        return;
    }
    PlvPeerTable *tab = &c->t->tab;
    GError *err = NULL;
    if (c->t->tls && !(c->tls = plv_tls_conn_new(c->t->tls, c->fd, true, &err))) {
        hs_fail(c, err);
        return;
    }
    c->pc.state = PLV_PEER_CONN_HANDSHAKE;
    c->hs = plv_handshake_new(true, tab->self_id, PLV_LINK_CHANNEL_CONSENSUS,
                              tab->secret, tab->secret_len);
    plv_handshake_bind_tls(c->hs, c->tls);
    /* Someone else answering at the address gets no MAC from us. */
    plv_handshake_expect_peer(c->hs, c->pc.peer->id);
    c->epollout = true;         /* registered with EPOLLOUT while connecting */
    set_epollout(c, false);
    conn_handshake(c);
}

static void conn_readable(Conn *c)
{
    TcpTransport *t = c->t;
    /* TLS reads a record at a time and may hold bytes the socket no longer
     * shows: it reads on while the session holds any, or epoll would not
     * come back for them; what is still in the socket, epoll reports. */
    for (int i = 0; (c->tls || i < READS_PER_EVENT) &&
                    c->pc.state == PLV_PEER_CONN_UP; i++) {
        ssize_t n = plv_stream_read(c->fd, c->tls, t->rbuf, READ_CHUNK);
        if (n > 0) {
            if (conn_feed(c, t->rbuf, n) < 0 ||
                (c->tls ? !plv_tls_conn_pending(c->tls) : n < READ_CHUNK)) {
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
    switch (c->pc.state) {
    case PLV_PEER_CONN_CONNECTING:
        conn_connected(c);
        break;
    case PLV_PEER_CONN_HANDSHAKE:
        conn_handshake(c);
        break;
    case PLV_PEER_CONN_UP:
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
                epoll_ctl(t->tab.epfd, EPOLL_CTL_DEL, t->listen_fd, NULL);
                t->listen_paused_until = g_get_monotonic_time() + 100 * 1000;
            }
            return;
        }
        PlvIpAddr src;
        plv_ip_addr_from_sockaddr((struct sockaddr *)&ss, &src);
        if (!plv_peer_table_admit(&t->tab, &src)) {
            close(fd);
            continue;
        }
        plv_sock_tune(fd);
        Conn *c = conn_new(t, fd);
        c->hs = plv_handshake_new(false, t->tab.self_id,
                                  PLV_LINK_CHANNEL_CONSENSUS, t->tab.secret,
                                  t->tab.secret_len);
        plv_peer_table_accepted(&t->tab, &c->pc, PLV_PEER_CONN_HANDSHAKE, &src);
        GError *err = NULL;
        if (t->tls && !(c->tls = plv_tls_conn_new(t->tls, fd, false, &err))) {
            conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN);
            hs_fail(c, err);
            continue;
        }
        plv_handshake_bind_tls(c->hs, c->tls);
        conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN);
        conn_handshake(c);
    }
}

static void dial(PlvPeerTable *tab, PlvPeer *p)
{
    TcpTransport *t = (TcpTransport *)tab;
    GError *err = NULL;
    int fd = plv_sock_connect_start(p->host, p->port, &err);
    if (fd < 0) {
        g_debug("plover tcp: %s", err->message);
        g_error_free(err);
        plv_peer_table_schedule_dial(&t->tab, p);
        return;
    }
    Conn *c = conn_new(t, fd);
    c->epollout = true;
    plv_peer_table_dialing(&t->tab, &c->pc, p, PLV_PEER_CONN_CONNECTING);
    conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT);
}

/* Resume accepting after a pause, then the table's timers; returns the
 * next timer due. */
static int64_t maintain(TcpTransport *t)
{
    int64_t next = PLV_DEADLINE_NONE;
    if (t->listen_paused_until) {
        if (g_get_monotonic_time() >= t->listen_paused_until) {
            struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->listen_fd };
            epoll_ctl(t->tab.epfd, EPOLL_CTL_ADD, t->listen_fd, &ev);
            t->listen_paused_until = 0;
        } else {
            next = t->listen_paused_until;
        }
    }
    return MIN(next, plv_peer_table_maintain(&t->tab));
}

/* The listening socket or a connection is ready (ops.event). */
static void tcp_event(PlvPeerTable *tab, void *src, uint32_t events)
{
    TcpTransport *t = (TcpTransport *)tab;
    if (src == &t->listen_fd) {
        accept_all(t);
    } else {
        conn_event(src, events);
    }
}

static int tcp_wait(PlvTransport *base, int timeout_ms, PlvTransportHandler h,
                    void *opaque)
{
    TcpTransport *t = (TcpTransport *)base;
    int64_t deadline = plv_peer_table_wait_begin(&t->tab, timeout_ms, h, opaque);

    for (;;) {
        flush_dirty(t);
        int64_t timer = maintain(t);
        if (plv_peer_table_wait_done(&t->tab)) {
            break;
        }
        if (plv_peer_table_sleep(&t->tab, MIN(deadline, timer)) < 0) {
            plv_peer_table_wait_end(&t->tab);
            return -1;
        }
        plv_peer_table_bury(&t->tab);
        if (plv_peer_table_wait_done(&t->tab) ||
            g_get_monotonic_time() >= deadline) {
            break;
        }
    }
    flush_dirty(t);             /* replies the handler queued */
    plv_peer_table_bury(&t->tab);
    return plv_peer_table_wait_end(&t->tab);
}

static int tcp_send(PlvTransport *base, uint32_t to, const void *buf, size_t len)
{
    TcpTransport *t = (TcpTransport *)base;
    Conn *c = (Conn *)plv_peer_table_send_conn(&t->tab, to, len);
    if (!c || c->out->len - c->out_off + len > t->max_queue) {
        return plv_peer_table_dropped(&t->tab);
    }
    plv_frame_append(c->s, PLV_PEER_MSG_TYPE, buf, len, c->out, NULL);
    mark_dirty(c);
    return plv_peer_table_queued(&t->tab, len);
}

static void tcp_flush(PlvTransport *base)
{
    flush_dirty((TcpTransport *)base);
}

static int tcp_start(PlvTransport *base, GError **err)
{
    TcpTransport *t = (TcpTransport *)base;
    if (plv_peer_table_started(&t->tab)) {
        return 0;               /* already started (e.g. probed, then driven) */
    }
    if (t->listen_fd < 0) {
        t->listen_fd = plv_sock_listen(t->tab.self->host, t->tab.self->port, err);
        if (t->listen_fd < 0) {
            return -1;
        }
    }
    if (plv_peer_table_start(&t->tab, err) < 0) {
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->listen_fd };
    epoll_ctl(t->tab.epfd, EPOLL_CTL_ADD, t->listen_fd, &ev);
    return 0;
}

static void tcp_free(PlvTransport *base)
{
    TcpTransport *t = (TcpTransport *)base;
    plv_peer_table_close_all(&t->tab);
    if (t->listen_fd >= 0) {
        close(t->listen_fd);
    }
    g_ptr_array_unref(t->dirty);
    g_free(t->rbuf);
    plv_tls_unref(t->tls);
    plv_peer_table_free(&t->tab);
}

static const PlvTransportOps tcp_ops = {
    .name = "tcp",
    .start = tcp_start,
    .send = tcp_send,
    .wait = tcp_wait,
    .flush = tcp_flush,
    .free = tcp_free,
    PLV_PEER_TABLE_TRANSPORT_OPS,
};

PlvTransport *plv_transport_tcp_new(const PlvTcpTransportConfig *cfg,
                                    GError **err)
{
    PlvPeerTableConfig tc = {
        PLV_PEER_TABLE_SETTINGS(cfg), .transport_ops = &tcp_ops, .name = "tcp",
        .ops = { .dial = dial, .release = conn_release, .free = conn_free,
                 .event = tcp_event },
    };
    TcpTransport *t = plv_peer_table_new(sizeof(TcpTransport), &tc, err);
    if (!t) {
        return NULL;
    }
    t->max_queue = cfg->max_queue_bytes ? cfg->max_queue_bytes : (64u << 20);
    t->tls = plv_tls_ref(cfg->tls);
    t->listen_fd = cfg->listen_fd;
    t->dirty = g_ptr_array_new();
    t->rbuf = g_malloc(READ_CHUNK);
    return &t->tab.base;
}
