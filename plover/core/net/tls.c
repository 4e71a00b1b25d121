/*
 * TLS 1.3 sessions for the TCP replica links (see plover/tls.h).
 */
#include "plover/tls.h"
#include "plover/iov.h"
#include "plover/link.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* Largest TLS 1.3 record payload. */
#define TLS_RECORD_MAX  16384u
/* Records sealed per send call, and leaving in one send() (with their
 * headers and tags, well under TX_BUF): a syscall per record would cost
 * more than the cipher does. */
#define TX_RECORDS      4u
#define TX_BUF          (TX_RECORDS * (TLS_RECORD_MAX + 512u))
/* What one recv() asks the socket for: several records at once. */
#define RX_BUF          (64u * 1024u)
/* A peer that hung up in the handshake: it may say why in its own log. */
static const char PEER_HUNG_UP[] =
    "the peer closed the connection in the TLS handshake "
    "(it has no tls-creds, or refused our certificate)";
/* How long the same refusal stays out of the log. */
#define REFUSAL_QUIET_US (60 * G_USEC_PER_SEC)

struct PlvTls {
    gint ref;
    gnutls_certificate_credentials_t creds;
    bool own_creds;
    gnutls_priority_t prio;
    GPtrArray *names;           /* index: replica id; NULL: not checked */
    GMutex log_lock;
    char *last_refusal;
    int64_t last_refusal_us;
};

struct PlvTlsConn {
    PlvTls *t;
    gnutls_session_t s;
    int fd;
    short events;
    bool handshaken;            /* gnutls_handshake() done (tx may wait) */
    /*
     * Sealed records go to tx (the push function) and leave in one send()
     * per call; tx_pending is what the caller handed over in records that
     * an EAGAIN left there. tx_lock: a bulk link's receiving thread may
     * push too (an alert).
     */
    GMutex tx_lock;
    uint8_t *tx;
    size_t tx_off, tx_len;
    size_t tx_pending;
    /* Bytes read from the socket that GnuTLS has not taken yet. */
    uint8_t *rx;
    size_t rx_off, rx_len;
    uint8_t first[4];           /* the peer's first bytes: plaintext? */
    size_t first_len;
    char *error;
    uint8_t stage[TLS_RECORD_MAX];  /* small iovecs gathered into a record */
};

static PlvTls *tls_new(gnutls_certificate_credentials_t creds, bool own,
                       const char *priority, GError **err)
{
    char *prio = g_strdup_printf("%s:-VERS-ALL:+VERS-TLS1.3",
                                 priority ? priority : PLV_TLS_DEFAULT_PRIORITY);
    const char *where = NULL;
    gnutls_priority_t cache;
    int r = gnutls_priority_init(&cache, prio, &where);
    if (r < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "TLS priority '%s': %s (at '%s')", prio, gnutls_strerror(r),
                    where ? where : "?");
        g_free(prio);
        return NULL;
    }
    g_free(prio);
    PlvTls *t = g_new0(PlvTls, 1);
    t->ref = 1;
    t->creds = creds;
    t->own_creds = own;
    t->prio = cache;
    t->names = g_ptr_array_new_with_free_func(g_free);
    g_mutex_init(&t->log_lock);
    return t;
}

PlvTls *plv_tls_new(void *gnutls_certificate_credentials, const char *priority,
                    GError **err)
{
    if (!gnutls_certificate_credentials) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "TLS: no certificate credentials");
        return NULL;
    }
    return tls_new(gnutls_certificate_credentials, false, priority, err);
}

PlvTls *plv_tls_new_from_dir(const char *dir, const char *priority,
                             GError **err)
{
    gnutls_certificate_credentials_t c;
    char *ca = g_build_filename(dir, "ca-cert.pem", NULL);
    char *crl = g_build_filename(dir, "ca-crl.pem", NULL);
    char *cert = g_build_filename(dir, "server-cert.pem", NULL);
    char *key = g_build_filename(dir, "server-key.pem", NULL);
    PlvTls *t = NULL;
    int r;

    gnutls_certificate_allocate_credentials(&c);
    r = gnutls_certificate_set_x509_trust_file(c, ca, GNUTLS_X509_FMT_PEM);
    if (r <= 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "TLS: %s: %s", ca, r < 0 ? gnutls_strerror(r) : "no certificate");
        goto out;
    }
    if (g_file_test(crl, G_FILE_TEST_EXISTS) &&
        (r = gnutls_certificate_set_x509_crl_file(c, crl, GNUTLS_X509_FMT_PEM)) < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "TLS: %s: %s", crl, gnutls_strerror(r));
        goto out;
    }
    r = gnutls_certificate_set_x509_key_file(c, cert, key, GNUTLS_X509_FMT_PEM);
    if (r < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "TLS: %s with %s: %s", cert, key, gnutls_strerror(r));
        goto out;
    }
    t = tls_new(c, true, priority, err);
out:
    if (!t) {
        gnutls_certificate_free_credentials(c);
    }
    g_free(ca);
    g_free(crl);
    g_free(cert);
    g_free(key);
    return t;
}

void plv_tls_set_peer_name(PlvTls *t, uint32_t id, const char *name)
{
    if (t->names->len <= id) {
        g_ptr_array_set_size(t->names, id + 1);
    }
    g_free(g_ptr_array_index(t->names, id));
    g_ptr_array_index(t->names, id) = g_strdup(name);
}

PlvTls *plv_tls_ref(PlvTls *t)
{
    if (t) {
        g_atomic_int_inc(&t->ref);
    }
    return t;
}

void plv_tls_unref(PlvTls *t)
{
    if (!t || !g_atomic_int_dec_and_test(&t->ref)) {
        return;
    }
    gnutls_priority_deinit(t->prio);
    if (t->own_creds) {
        gnutls_certificate_free_credentials(t->creds);
    }
    g_ptr_array_unref(t->names);
    g_mutex_clear(&t->log_lock);
    g_free(t->last_refusal);
    g_free(t);
}

void plv_tls_log_refusal(PlvTls *t, const char *link, const char *who,
                         const char *why)
{
    int64_t now = g_get_monotonic_time();
    char *what = g_strdup_printf("%s link %s refused: %s", link, who, why);
    bool say;

    g_mutex_lock(&t->log_lock);
    say = !t->last_refusal || strcmp(t->last_refusal, what) ||
          now - t->last_refusal_us >= REFUSAL_QUIET_US;
    if (say) {
        g_free(t->last_refusal);
        t->last_refusal = g_strdup(what);
        t->last_refusal_us = now;
    }
    g_mutex_unlock(&t->log_lock);
    if (say) {
        g_warning("plover: %s", what);
    }
    g_free(what);
}

/* ---- one connection ---- */

/* GnuTLS reads a record header, then its body: serve both from one
 * recv() of up to RX_BUF. */
static ssize_t conn_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    PlvTlsConn *c = p;
    if (c->rx_off == c->rx_len) {
        ssize_t n = recv(c->fd, c->rx, RX_BUF, 0);
        if (n <= 0) {
            if (n < 0) {
                gnutls_transport_set_errno(c->s, errno);
            }
            return n;
        }
        if (c->first_len < sizeof(c->first)) {
            size_t k = MIN((size_t)n, sizeof(c->first) - c->first_len);
            memcpy(c->first + c->first_len, c->rx, k);
            c->first_len += k;
        }
        c->rx_off = 0;
        c->rx_len = n;
    }
    size_t k = MIN(len, c->rx_len - c->rx_off);
    memcpy(buf, c->rx + c->rx_off, k);
    c->rx_off += k;
    return k;
}

/* Send what tx holds: 0 when it is empty, -1 with errno (EAGAIN: the
 * rest waits for POLLOUT). */
static int tx_flush(PlvTlsConn *c)
{
    int r = 0;
    g_mutex_lock(&c->tx_lock);
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->events = POLLOUT;
            }
            r = -1;
            break;
        }
        c->tx_off += n;
    }
    if (c->tx_off == c->tx_len) {
        c->tx_off = c->tx_len = 0;
    }
    g_mutex_unlock(&c->tx_lock);
    return r;
}

/* A sealed record (or an alert, a handshake message) goes to tx; it is
 * sent by tx_flush. Only if tx is full (a batch never fills it) does the
 * push wait for the socket. */
static ssize_t conn_push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
    PlvTlsConn *c = p;
    if (len > TX_BUF - c->tx_len && tx_flush(c) < 0 && len > TX_BUF - c->tx_len) {
        gnutls_transport_set_errno(c->s, errno);
        return -1;
    }
    g_mutex_lock(&c->tx_lock);
    len = MIN(len, TX_BUF - c->tx_len);
    memcpy(c->tx + c->tx_len, buf, len);
    c->tx_len += len;
    g_mutex_unlock(&c->tx_lock);
    return len;
}

PlvTlsConn *plv_tls_conn_new(PlvTls *t, int fd, bool dialer, GError **err)
{
    PlvTlsConn *c = g_new0(PlvTlsConn, 1);
    unsigned flags = (dialer ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NONBLOCK |
                     GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
    int r = gnutls_init(&c->s, flags);
    if (r < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "TLS: %s",
                    gnutls_strerror(r));
        g_free(c);
        return NULL;
    }
    c->t = plv_tls_ref(t);
    c->fd = fd;
    c->events = POLLIN;
    g_mutex_init(&c->tx_lock);
    c->tx = g_malloc(TX_BUF);
    c->rx = g_malloc(RX_BUF);
    if ((r = gnutls_priority_set(c->s, t->prio)) < 0 ||
        (r = gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, t->creds)) < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "TLS: %s",
                    gnutls_strerror(r));
        plv_tls_conn_free(c);
        return NULL;
    }
    if (!dialer) {
        gnutls_certificate_server_set_request(c->s, GNUTLS_CERT_REQUIRE);
        /* No list of acceptable CAs: a dialer whose certificate another CA
         * signed sends it anyway, and is told "issuer unknown" rather than
         * "no certificate". */
        gnutls_certificate_send_x509_rdn_sequence(c->s, 1);
    }
    /* The chain is checked in the handshake, which fails (with an alert
     * to the peer) on a certificate the CA did not sign or that expired;
     * the name is the replica's, checked once its id is known. */
    gnutls_session_set_verify_cert(c->s, NULL, 0);
    gnutls_transport_set_ptr(c->s, c);
    gnutls_transport_set_pull_function(c->s, conn_pull);
    gnutls_transport_set_push_function(c->s, conn_push);
    return c;
}

void plv_tls_conn_free(PlvTlsConn *c)
{
    if (!c) {
        return;
    }
    tx_flush(c);                /* an alert saying why, if the socket takes it */
    gnutls_deinit(c->s);
    plv_tls_unref(c->t);
    g_mutex_clear(&c->tx_lock);
    g_free(c->tx);
    g_free(c->rx);
    g_free(c->error);
    g_free(c);
}

static void set_wait(PlvTlsConn *c)
{
    c->events = gnutls_record_get_direction(c->s) ? POLLOUT : POLLIN;
}

short plv_tls_conn_events(const PlvTlsConn *c)
{
    return c->events;
}

bool plv_tls_conn_established(const PlvTlsConn *c)
{
    return c->handshaken && !c->tx_len;
}

/* Why a handshake failed, in words an operator can act on. */
static char *handshake_failure(PlvTlsConn *c, int r)
{
    if (c->first_len == sizeof(c->first) && !memcmp(c->first, "PLVH", 4)) {
        return g_strdup("the peer sent plaintext (it has no tls-creds)");
    }
    switch (r) {
    case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: {
        gnutls_datum_t out = { 0 };
        unsigned status = gnutls_session_get_verify_cert_status(c->s);
        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                     &out, 0);
        char *s = g_strdup_printf("the peer's certificate is refused: %s",
                                  out.data ? g_strstrip((char *)out.data)
                                           : "not trusted");
        gnutls_free(out.data);
        return s;
    }
    case GNUTLS_E_FATAL_ALERT_RECEIVED:
        return g_strdup_printf("the peer refused us: %s",
                               gnutls_alert_get_name(gnutls_alert_get(c->s)));
    case GNUTLS_E_PREMATURE_TERMINATION:
    case GNUTLS_E_PULL_ERROR:
    case GNUTLS_E_PUSH_ERROR:
        return g_strdup(PEER_HUNG_UP);
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        return g_strdup("the peer sent no certificate");
    default:
        return g_strdup_printf("TLS handshake: %s", gnutls_strerror(r));
    }
}

/* After a handshake step: 0 if tx went out, else 0 to wait for POLLOUT,
 * or -1 if the socket failed. */
static int handshake_flush(PlvTlsConn *c, GError **err)
{
    if (tx_flush(c) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        g_set_error_literal(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                            PEER_HUNG_UP);
        return -1;
    }
    return 0;
}

int plv_tls_conn_handshake(PlvTlsConn *c, GError **err)
{
    for (;;) {
        int r = c->handshaken ? 0 : gnutls_handshake(c->s);
        if (r == 0) {
            c->handshaken = true;
            if (handshake_flush(c, err) < 0) {
                return -1;
            }
            return c->tx_len ? 0 : 1;
        }
        if (r == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (r == GNUTLS_E_AGAIN) {
            set_wait(c);
            if (handshake_flush(c, err) < 0) {
                return -1;
            }
            return 0;
        }
        if (!gnutls_error_is_fatal(r)) {
            continue;           /* a warning alert */
        }
        char *why = handshake_failure(c, r);
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH, "%s", why);
        g_free(why);
        return -1;
    }
}

bool plv_tls_conn_check_peer(PlvTlsConn *c, uint32_t id, GError **err)
{
    const char *name = id < c->t->names->len
                           ? g_ptr_array_index(c->t->names, id) : NULL;
    unsigned n = 0;
    const gnutls_datum_t *list;
    gnutls_x509_crt_t crt;
    bool ok;

    if (!name) {
        return true;
    }
    list = gnutls_certificate_get_peers(c->s, &n);
    if (!list || !n) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                    "the peer sent no certificate");
        return false;
    }
    gnutls_x509_crt_init(&crt);
    ok = gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) == 0 &&
         gnutls_x509_crt_check_hostname2(crt, name, 0);
    if (!ok) {
        gnutls_datum_t dn = { 0 };
        gnutls_x509_crt_get_dn3(crt, &dn, 0);
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                    "the peer claims to be replica %u, but its certificate "
                    "(%s) is not for '%s'", id,
                    dn.data ? (char *)dn.data : "?", name);
        gnutls_free(dn.data);
    }
    gnutls_x509_crt_deinit(crt);
    return ok;
}

static ssize_t record_failed(PlvTlsConn *c, ssize_t r)
{
    if (r == GNUTLS_E_AGAIN) {
        set_wait(c);
        errno = EAGAIN;
        return -1;
    }
    if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PUSH_ERROR ||
        r == GNUTLS_E_PULL_ERROR) {
        errno = ECONNRESET;
        return -1;
    }
    g_free(c->error);
    c->error = g_strdup(r == GNUTLS_E_FATAL_ALERT_RECEIVED
                        ? gnutls_alert_get_name(gnutls_alert_get(c->s))
                        : gnutls_strerror(r));
    errno = EPROTO;
    return -1;
}

ssize_t plv_tls_conn_sendv(PlvTlsConn *c, const struct iovec *iov, int iovcnt)
{
    size_t avail = 0, done = 0;

    if (c->tx_pending) {
        /* Records holding the first tx_pending bytes wait in tx: the
         * caller's data begins with those bytes again. */
        if (tx_flush(c) < 0) {
            return -1;
        }
        done = c->tx_pending;
        c->tx_pending = 0;
        return done;
    }
    if (tx_flush(c) < 0) {
        return -1;              /* an alert still waiting: nothing taken */
    }
    for (int i = 0; i < iovcnt; i++) {
        avail += iov[i].iov_len;
    }
    for (unsigned k = 0; k < TX_RECORDS && done < avail; k++) {
        size_t len = MIN(avail - done, TLS_RECORD_MAX);
        ssize_t r;
        do {
            r = gnutls_record_send(c->s, plv_iov_span(iov, iovcnt, done, len,
                                                      c->stage), len);
        } while (r == GNUTLS_E_INTERRUPTED);
        if (r < 0) {
            if (done) {
                break;          /* send what was sealed; the error comes next */
            }
            return record_failed(c, r);
        }
        done += r;
    }
    if (tx_flush(c) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->tx_pending = done;
        }
        return -1;
    }
    return done;
}

ssize_t plv_tls_conn_send(PlvTlsConn *c, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    if (c->tx_pending > len) {
        errno = EINVAL;         /* not the bytes of the queued records */
        return -1;
    }
    return plv_tls_conn_sendv(c, &iov, 1);
}

ssize_t plv_tls_conn_recv(PlvTlsConn *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(c->s, buf, len);
        if (r >= 0) {
            return r;
        }
        if (r == GNUTLS_E_AGAIN) {
            tx_flush(c);        /* what the read made GnuTLS send, if any */
        } else if (!gnutls_error_is_fatal(r)) {
            continue;           /* interrupted, or a warning alert */
        }
        return record_failed(c, r);
    }
}

bool plv_tls_conn_pending(const PlvTlsConn *c)
{
    return gnutls_record_check_pending(c->s) > 0 || c->rx_off < c->rx_len;
}

const char *plv_tls_conn_error(const PlvTlsConn *c)
{
    return c->error ? c->error : "TLS error";
}

char *plv_tls_conn_describe(const PlvTlsConn *c)
{
    char *d = gnutls_session_get_desc(c->s);
    char *out = g_strdup(d ? d : "?");
    gnutls_free(d);
    return out;
}

/* ---- with or without TLS ---- */

ssize_t plv_stream_send(int fd, PlvTlsConn *tls, const void *buf, size_t len)
{
    return tls ? plv_tls_conn_send(tls, buf, len)
               : send(fd, buf, len, MSG_NOSIGNAL);
}

ssize_t plv_stream_sendv(int fd, PlvTlsConn *tls, const struct iovec *iov,
                         int iovcnt)
{
    if (tls) {
        return plv_tls_conn_sendv(tls, iov, iovcnt);
    }
    struct msghdr mh = {
        .msg_iov = (struct iovec *)iov,
        .msg_iovlen = MIN(iovcnt, IOV_MAX),
    };
    return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

ssize_t plv_stream_read(int fd, PlvTlsConn *tls, void *buf, size_t len)
{
    return tls ? plv_tls_conn_recv(tls, buf, len) : read(fd, buf, len);
}
