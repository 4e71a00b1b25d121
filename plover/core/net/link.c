/*
 * Blocking authenticated link over a TCP socket (see plover/link.h).
 *
 * The socket is non-blocking underneath so that every wait goes through
 * poll() with a deadline; the handshake and framing come from link-proto.c.
 */
#include "plover/link-proto.h"
#include "plover/sockutil.h"
#include "plover/tls.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Small reads go through a buffer; big payloads are read straight in place. */
#define RXBUF_LEN   (64 * 1024)
#define DIRECT_MIN  4096

struct PlvLink {
    PlvBulkLink bulk;           /* first: a PlvLink is a bulk link */
    int fd;
    PlvTlsConn *tls;            /* NULL: plaintext */
    int io_timeout_ms;          /* sends: longest silence (connect/accept's timeout) */
    int broken;                 /* atomic: send and recv may run on two threads */
    int cancelled;              /* atomic: plv_link_cancel, from any thread */
    PlvLinkSession *s;
    PlvFrameParser *p;
    uint8_t *rxbuf;
    size_t rx_off, rx_len;
    uint64_t rejected;
};

static int link_io_error(GError **err, const char *what, int e)
{
    g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "%s: %s", what,
                g_strerror(e));
    return -1;
}

/* A failed send or read: TLS says why itself (EPROTO). */
static int stream_error(GError **err, PlvTlsConn *tls, const char *what, int e)
{
    if (e == EPROTO && tls) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_PROTOCOL, "TLS: %s",
                    plv_tls_conn_error(tls));
        return -1;
    }
    return link_io_error(err, what, e);
}

/* Wait until @fd is ready for @events or the deadline passes. */
static int wait_ready(int fd, short events, int64_t deadline, GError **err)
{
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = events };
        int r = poll(&pfd, 1, plv_deadline_remaining_ms(deadline));
        if (r > 0) {
            return 0;
        }
        if (r == 0) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TIMED_OUT,
                        "link timed out");
            return -1;
        }
        if (errno != EINTR) {
            return link_io_error(err, "poll", errno);
        }
    }
}

/*
 * Timeouts on an established link bound *silence*, not the whole frame:
 * the deadline moves on whenever bytes go through (@progress_ms >= 0). A
 * 1 MiB syncvm frame on a slow or lossy link may take longer than the
 * timeout and still be healthy; a peer that stopped reading or writing is
 * not. The handshake keeps one fixed deadline (@progress_ms < 0).
 */
static int write_all(int fd, PlvTlsConn *tls, struct iovec *iov, int iovcnt,
                     int64_t deadline, int progress_ms, GError **err)
{
    while (iovcnt > 0) {
        ssize_t n = plv_stream_sendv(fd, tls, iov, iovcnt);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* POLLOUT with TLS too: its records leave through a
                 * buffer of its own, which only the socket holds up. */
                if (wait_ready(fd, POLLOUT, deadline, err) < 0) {
                    return -1;
                }
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET) {
                g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                            "peer closed the link");
                return -1;
            }
            return stream_error(err, tls, "send", errno);
        }
        if (progress_ms >= 0) {
            deadline = plv_deadline_from_timeout(progress_ms);
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

/* One read(); 0 on data, -1 on error/EOF/timeout. */
static ssize_t read_some(int fd, PlvTlsConn *tls, void *buf, size_t len,
                         int64_t deadline, GError **err)
{
    for (;;) {
        ssize_t n = plv_stream_read(fd, tls, buf, len);
        if (n > 0) {
            return n;
        }
        if (n == 0) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                        "peer closed the link");
            return -1;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            if (errno == ECONNRESET) {
                g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                            "peer reset the link");
                return -1;
            }
            return stream_error(err, tls, "read", errno);
        }
        /* EAGAIN from TLS: nothing left decrypted in the session either.
         * POLLIN, not the session's last wait: a sender on another thread
         * may have set that to POLLOUT. */
        if (wait_ready(fd, POLLIN, deadline, err) < 0) {
            return -1;
        }
    }
}

/*
 * Run @hs to completion on a connected socket, inside TLS if @tls (its
 * handshake first; @hs checks the peer's certificate against the id it
 * claims); @hs is freed.
 */
static PlvLinkSession *handshake(int fd, PlvTlsConn *tls, PlvHandshake *hs,
                                 int64_t deadline, GError **err)
{
    PlvLinkSession *s = NULL;
    uint8_t in[PLV_LINK_HELLO_LEN];
    int r;

    while (tls && (r = plv_tls_conn_handshake(tls, err)) != 1) {
        if (r < 0 || wait_ready(fd, plv_tls_conn_events(tls), deadline, err) < 0) {
            goto out;
        }
    }
    while (!plv_handshake_done(hs)) {
        const uint8_t *out;
        size_t olen = plv_handshake_output(hs, &out);
        if (olen) {
            struct iovec iov = { .iov_base = (void *)out, .iov_len = olen };
            if (write_all(fd, tls, &iov, 1, deadline, -1, err) < 0) {
                goto out;
            }
            plv_handshake_output_done(hs, olen);
            continue;
        }
        /* Read exactly what the step needs: later bytes are frames. */
        size_t want = plv_handshake_want(hs);
        ssize_t n = read_some(fd, tls, in, want, deadline, err);
        if (n < 0) {
            if (err && *err && (*err)->code == PLV_LINK_ERROR_CLOSED) {
                /* A peer hanging up mid-handshake usually rejected us. */
                (*err)->code = PLV_LINK_ERROR_AUTH;
            }
            goto out;
        }
        size_t used;
        if (plv_handshake_input(hs, in, n, &used, err) < 0) {
            goto out;
        }
    }
    s = plv_handshake_finish(hs);
out:
    plv_handshake_free(hs);
    return s;
}

static const PlvBulkLinkOps link_bulk_ops;

PlvLink *plv_link_new_authenticated(int fd, PlvTlsConn *tls, PlvLinkSession *s,
                                    int io_timeout_ms)
{
    PlvLink *l = g_new0(PlvLink, 1);
    l->bulk.ops = &link_bulk_ops;
    l->fd = fd;
    l->tls = tls;
    l->io_timeout_ms = io_timeout_ms;
    l->s = s;
    l->p = plv_frame_parser_new(s);
    l->rxbuf = g_malloc(RXBUF_LEN);
    return l;
}

PlvLink *plv_link_connect(const char *host, uint16_t port, uint32_t self_id,
                          uint32_t expect_peer, PlvLinkChannel channel,
                          const uint8_t *secret, size_t secret_len,
                          int timeout_ms, GError **err)
{
    return plv_link_connect_tls(host, port, self_id, expect_peer, channel,
                                secret, secret_len, NULL, timeout_ms, err);
}

/* @tls: a session of its own on the new socket, before anything else. */
static PlvLinkSession *secure_handshake(int fd, PlvTls *tls, bool dialer,
                                        PlvTlsConn **conn, PlvHandshake *hs,
                                        int64_t deadline, GError **err)
{
    *conn = NULL;
    if (tls && !(*conn = plv_tls_conn_new(tls, fd, dialer, err))) {
        plv_handshake_free(hs);
        return NULL;
    }
    plv_handshake_bind_tls(hs, *conn);
    PlvLinkSession *s = handshake(fd, *conn, hs, deadline, err);
    if (!s) {
        plv_tls_conn_free(*conn);
        *conn = NULL;
    }
    return s;
}

PlvLink *plv_link_connect_tls(const char *host, uint16_t port, uint32_t self_id,
                              uint32_t expect_peer, PlvLinkChannel channel,
                              const uint8_t *secret, size_t secret_len,
                              PlvTls *tls, int timeout_ms, GError **err)
{
    if (!plv_link_check_secret(secret, secret_len, err)) {
        return NULL;
    }
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    int fd = plv_sock_connect_start(host, port, err);
    if (fd < 0) {
        return NULL;
    }
    if (plv_sock_connect_wait(fd, plv_deadline_remaining_ms(deadline), err) < 0) {
        close(fd);
        return NULL;
    }
    PlvHandshake *hs = plv_handshake_new(true, self_id, channel, secret,
                                         secret_len);
    plv_handshake_expect_peer(hs, expect_peer);
    PlvTlsConn *conn;
    PlvLinkSession *s = secure_handshake(fd, tls, true, &conn, hs, deadline,
                                         err);
    if (!s) {
        close(fd);
        return NULL;
    }
    return plv_link_new_authenticated(fd, conn, s, timeout_ms);
}

int plv_link_listen(const char *host, uint16_t port, GError **err)
{
    return plv_sock_listen(host, port, err);
}

uint16_t plv_link_local_port(int fd)
{
    return plv_sock_local_port(fd);
}

PlvLink *plv_link_accept(int listen_fd, uint32_t self_id, PlvLinkChannel channel,
                         const uint8_t *secret, size_t secret_len,
                         int timeout_ms, GError **err)
{
    return plv_link_accept_tls(listen_fd, self_id, channel, secret, secret_len,
                               NULL, timeout_ms, err);
}

PlvLink *plv_link_accept_tls(int listen_fd, uint32_t self_id,
                             PlvLinkChannel channel, const uint8_t *secret,
                             size_t secret_len, PlvTls *tls, int timeout_ms,
                             GError **err)
{
    if (!plv_link_check_secret(secret, secret_len, err)) {
        return NULL;
    }
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    int fd;
    for (;;) {
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            break;
        }
        if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            link_io_error(err, "accept", errno);
            return NULL;
        }
        if (wait_ready(listen_fd, POLLIN, deadline, err) < 0) {
            return NULL;
        }
    }
    plv_sock_tune(fd);
    PlvHandshake *hs = plv_handshake_new(false, self_id, channel, secret,
                                         secret_len);
    PlvTlsConn *conn;
    PlvLinkSession *s = secure_handshake(fd, tls, false, &conn, hs, deadline,
                                         err);
    if (!s) {
        close(fd);
        return NULL;
    }
    return plv_link_new_authenticated(fd, conn, s, timeout_ms);
}

static int check_usable(PlvLink *l, GError **err)
{
    if (g_atomic_int_get(&l->broken)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED, "%s",
                    g_atomic_int_get(&l->cancelled) ? "link cancelled"
                                                    : "link already failed");
        return -1;
    }
    return 0;
}

/* A send or receive failed: if it was cancelled, that is the reason. */
static int io_failed(PlvLink *l, GError **err)
{
    if (g_atomic_int_get(&l->cancelled) && err && *err) {
        g_clear_error(err);
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED,
                    "link cancelled");
    }
    return -1;
}

void plv_link_cancel(PlvLink *l)
{
    g_atomic_int_set(&l->cancelled, 1);
    g_atomic_int_set(&l->broken, 1);
    /* Wakes a poll() on the socket in another thread; unlike close(), it
     * leaves the descriptor, which the owner's thread may still use. */
    shutdown(l->fd, SHUT_RDWR);
}

int plv_link_send(PlvLink *l, uint16_t type, const struct iovec *iov,
                  int iovcnt, GError **err)
{
    if (check_usable(l, err) < 0) {
        return -1;
    }
    uint8_t hdr[PLV_LINK_HDR_LEN], trl[PLV_LINK_TRAILER_LEN];
    if (plv_frame_seal(l->s, type, iov, iovcnt, hdr, trl, err) < 0) {
        return -1;              /* too big: nothing sent, link still fine */
    }
    struct iovec stackv[18];
    struct iovec *v = iovcnt + 2 <= (int)G_N_ELEMENTS(stackv)
                          ? stackv : g_new(struct iovec, iovcnt + 2);
    v[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    if (iovcnt > 0) {
        memcpy(v + 1, iov, iovcnt * sizeof(*iov));
    }
    v[iovcnt + 1] = (struct iovec){ .iov_base = trl, .iov_len = sizeof(trl) };
    int r = write_all(l->fd, l->tls, v, iovcnt + 2,
                      plv_deadline_from_timeout(l->io_timeout_ms),
                      l->io_timeout_ms, err);
    if (v != stackv) {
        g_free(v);
    }
    if (r < 0) {
        /* A partial frame desynchronises the stream. */
        g_atomic_int_set(&l->broken, 1);
        return io_failed(l, err);
    }
    return r;
}

/* Feed buffered bytes; 1 frame ready, 0 buffer empty, -1 bad frame. */
static int drain_rxbuf(PlvLink *l, GError **err)
{
    while (l->rx_off < l->rx_len) {
        size_t used;
        int r = plv_frame_parser_feed(l->p, l->rxbuf + l->rx_off,
                                      l->rx_len - l->rx_off, &used, err);
        l->rx_off += used;
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

static int recv_frame(PlvLink *l, int timeout_ms, GError **err)
{
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);

    for (;;) {
        int r = drain_rxbuf(l, err);
        if (r != 0) {
            return r;
        }
        uint8_t *buf;
        size_t want = plv_frame_parser_want(l->p, &buf);
        if (want >= DIRECT_MIN) {
            ssize_t n = read_some(l->fd, l->tls, buf, want, deadline, err);
            if (n < 0) {
                return -2;
            }
            deadline = plv_deadline_from_timeout(timeout_ms);
            r = plv_frame_parser_advance(l->p, n, err);
            if (r != 0) {
                return r;
            }
        } else {
            ssize_t n = read_some(l->fd, l->tls, l->rxbuf, RXBUF_LEN, deadline,
                                  err);
            if (n < 0) {
                return -2;
            }
            deadline = plv_deadline_from_timeout(timeout_ms);
            l->rx_off = 0;
            l->rx_len = n;
        }
    }
}

int plv_link_recv(PlvLink *l, uint16_t *type, GByteArray *payload,
                  int timeout_ms, GError **err)
{
    if (check_usable(l, err) < 0) {
        return -1;
    }
    GError *local = NULL;
    plv_frame_parser_set_payload(l->p, payload);
    int r = recv_frame(l, timeout_ms, &local);
    /* Keep a partial frame in the link's own buffer across calls. */
    plv_frame_parser_set_payload(l->p, NULL);
    if (r == 1) {
        *type = plv_frame_parser_type(l->p);
        return 0;
    }
    if (r == -1) {
        l->rejected++;
        g_atomic_int_set(&l->broken, 1);
    } else if (!plv_link_error_is_timeout(local)) {
        g_atomic_int_set(&l->broken, 1);
    }
    g_propagate_error(err, local);
    return io_failed(l, err);
}

uint32_t plv_link_peer_id(const PlvLink *l)
{
    return plv_link_session_peer_id(l->s);
}

const uint8_t *plv_link_session_key(const PlvLink *l)
{
    return plv_link_session_key_bytes(l->s);
}

int plv_link_fd(const PlvLink *l)
{
    return l->fd;
}

const PlvTlsConn *plv_link_tls(const PlvLink *l)
{
    return l->tls;
}

uint64_t plv_link_rejected_frames(const PlvLink *l)
{
    return l->rejected;
}

void plv_link_close(PlvLink *l)
{
    if (!l) {
        return;
    }
    plv_tls_conn_free(l->tls);
    if (l->fd >= 0) {
        close(l->fd);
    }
    plv_frame_parser_free(l->p);
    plv_link_session_free(l->s);
    g_free(l->rxbuf);
    g_free(l);
}

void plv_link_set_send_timeout(PlvLink *l, int timeout_ms)
{
    l->io_timeout_ms = timeout_ms;
}

/* ---- as a bulk link (plover/bulk-link.h) ---- */

static int bulk_send(PlvBulkLink *b, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    return plv_link_send((PlvLink *)b, type, iov, iovcnt, err);
}

static int bulk_recv(PlvBulkLink *b, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    return plv_link_recv((PlvLink *)b, type, payload, timeout_ms, err);
}

static uint32_t bulk_peer_id(const PlvBulkLink *b)
{
    return plv_link_peer_id((const PlvLink *)b);
}

static const uint8_t *bulk_session_key(const PlvBulkLink *b)
{
    return plv_link_session_key((const PlvLink *)b);
}

static void bulk_close(PlvBulkLink *b)
{
    plv_link_close((PlvLink *)b);
}

static void bulk_cancel(PlvBulkLink *b)
{
    plv_link_cancel((PlvLink *)b);
}

static const PlvBulkLinkOps link_bulk_ops = {
    .name = "tcp",
    .send = bulk_send,
    .recv = bulk_recv,
    .peer_id = bulk_peer_id,
    .session_key = bulk_session_key,
    .cancel = bulk_cancel,
    .close = bulk_close,
};

PlvBulkLink *plv_link_bulk(PlvLink *l)
{
    return l ? &l->bulk : NULL;
}
