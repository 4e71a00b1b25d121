/*
 * TLS 1.3 on the TCP replica links (consensus and bulk), with GnuTLS.
 *
 * A PlvTls holds what every connection of a replica shares: the X.509
 * credentials (this replica's certificate and key, the CA that signs every
 * replica's), the priority string, and the name each replica's certificate
 * must carry. A PlvTlsConn is one connection's session over a non-blocking
 * socket. The plover handshake (link-proto.h) then runs inside it, so the
 * shared secret, the channel and the session key work as without TLS; the
 * certificate adds the encryption and ties the replica id a peer claims to
 * the name its certificate was issued for (plv_tls_conn_check_peer).
 *
 * Both ends present a certificate and verify the other's (mutual
 * authentication): a replica dials and accepts with the same credentials.
 *
 * The I/O functions have the semantics of send() and read() on a
 * non-blocking socket (errno EAGAIN, a 0 read at the end), so that the
 * links' loops need no TLS cases beyond one: data may wait decrypted in
 * the session (plv_tls_conn_pending) while the socket polls empty, so a
 * reader reads until EAGAIN before it polls.
 */
#ifndef PLOVER_TLS_H
#define PLOVER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvTls PlvTls;
typedef struct PlvTlsConn PlvTlsConn;

/* The priority string without one: GnuTLS's defaults, TLS 1.3 only. */
#define PLV_TLS_DEFAULT_PRIORITY "NORMAL"

/*
 * Credentials loaded elsewhere (QEMU's tls-creds-x509 object: a
 * gnutls_certificate_credentials_t, passed as void * so that this header
 * needs no GnuTLS). They are borrowed and must outlive the PlvTls.
 * @priority: a GnuTLS priority string (NULL: PLV_TLS_DEFAULT_PRIORITY);
 * versions below TLS 1.3 are always disabled. NULL with @err if the
 * priority string is not valid.
 */
PlvTls *plv_tls_new(void *gnutls_certificate_credentials, const char *priority,
                    GError **err);

/*
 * Credentials from a directory named as QEMU's tls-creds-x509 names them:
 * ca-cert.pem, server-cert.pem, server-key.pem, and ca-crl.pem if present.
 * For the tests and benchmarks; QEMU passes its object's.
 */
PlvTls *plv_tls_new_from_dir(const char *dir, const char *priority,
                             GError **err);

/*
 * The name replica @id's certificate must carry (a DNS name or an IP
 * address, matched as HTTPS matches a host: subjectAltName, else CN).
 * A replica with no name set is not checked: the glue sets every one.
 */
void plv_tls_set_peer_name(PlvTls *t, uint32_t id, const char *name);

PlvTls *plv_tls_ref(PlvTls *t);
void plv_tls_unref(PlvTls *t);

/*
 * Log "@link link @who refused: @why" (e.g. "consensus", "from 10.1.0.3",
 * "the peer's certificate is refused: ..."), at most once a minute for
 * the same text (a peer with a wrong certificate redials every second or
 * so).
 */
void plv_tls_log_refusal(PlvTls *t, const char *link, const char *who,
                         const char *why);

/* A session on connected non-blocking socket @fd (not owned: the caller
 * closes it after plv_tls_conn_free, which sends what is still queued,
 * an alert saying why for one, if the socket takes it at once). */
PlvTlsConn *plv_tls_conn_new(PlvTls *t, int fd, bool dialer, GError **err);
void plv_tls_conn_free(PlvTlsConn *c);

/*
 * Drive the TLS handshake: 1 done and the peer's certificate chain
 * verified, 0 to be called again once the socket is ready for
 * plv_tls_conn_events(), -1 with @err (PLV_LINK_ERROR_AUTH: the reason,
 * e.g. "certificate issuer unknown", "peer sent plaintext").
 */
int plv_tls_conn_handshake(PlvTlsConn *c, GError **err);
/* POLLIN or POLLOUT: what the handshake's last EAGAIN waits for. (After
 * it, a send's EAGAIN waits for POLLOUT and a read's for POLLIN.) */
short plv_tls_conn_events(const PlvTlsConn *c);
/* The handshake is done and all it had to send is sent:
 * plv_tls_conn_handshake() would return 1. */
bool plv_tls_conn_established(const PlvTlsConn *c);

/* True if the peer's certificate names replica @id (see set_peer_name);
 * else false with @err (PLV_LINK_ERROR_AUTH) saying whose it is. */
bool plv_tls_conn_check_peer(PlvTlsConn *c, uint32_t id, GError **err);

/*
 * send()/sendmsg()/read() through the session. At most one record
 * (16 KiB) goes per call. After EAGAIN the caller calls again with data
 * that begins with the same bytes (a stream's unsent tail does). A TLS
 * failure is -1 with errno EPROTO; plv_tls_conn_error() says why.
 */
ssize_t plv_tls_conn_send(PlvTlsConn *c, const void *buf, size_t len);
ssize_t plv_tls_conn_sendv(PlvTlsConn *c, const struct iovec *iov, int iovcnt);
ssize_t plv_tls_conn_recv(PlvTlsConn *c, void *buf, size_t len);
/* Decrypted bytes waiting in the session: read before polling. */
bool plv_tls_conn_pending(const PlvTlsConn *c);
const char *plv_tls_conn_error(const PlvTlsConn *c);
/* "(TLS1.3)-(ECDHE-...)-(...)-(AES-256-GCM)" once the handshake is done;
 * g_free() it. */
char *plv_tls_conn_describe(const PlvTlsConn *c);

/*
 * A stream's I/O, with or without TLS: send(MSG_NOSIGNAL), sendmsg and
 * read() on @fd when @tls is NULL, else through @tls.
 */
ssize_t plv_stream_send(int fd, PlvTlsConn *tls, const void *buf, size_t len);
ssize_t plv_stream_sendv(int fd, PlvTlsConn *tls, const struct iovec *iov,
                         int iovcnt);
ssize_t plv_stream_read(int fd, PlvTlsConn *tls, void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_TLS_H */
