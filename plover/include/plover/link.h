/*
 * plover/link.h — an authenticated, framed, point-to-point connection over a
 * stream socket.
 *
 * Used by the consensus transport (through the non-blocking pieces in
 * link-proto.h) and by the syncvm engine for bulk transfer (through the
 * blocking calls below).
 *
 * Connection setup: the dialer sends a HELLO (id + 32-byte random nonce), the
 * acceptor answers with its HELLO, the dialer sends an HMAC-SHA256 over both
 * nonces, both ids and its role, keyed with the shared secret, and the
 * acceptor sends its own MAC only after verifying the dialer's (so it never
 * hands a stranger a MAC to guess the secret against). Each end checks the
 * other's MAC before accepting a single frame, so a peer without the secret
 * never gets a frame through. Both MACs and the session key also cover the
 * channel (consensus or syncvm), so a connection is good for one service
 * only. The session key is HMAC(secret, channel || nonces || ids): unique
 * per connection.
 *
 * Frames: 16-byte header (magic, version, flags, type, payload length),
 * payload (at most PLV_LINK_MAX_PAYLOAD bytes), 8-byte trailer holding an
 * XXH3-64 keyed with a per-direction secret derived from the session key,
 * over header, an implicit per-direction frame counter and payload. Corrupt,
 * replayed, reordered or foreign frames fail that check. (The checksum
 * detects corruption and foreign traffic; it is not a cryptographic MAC
 * against an active on-path attacker — that is for TLS later.)
 *
 * Errors are reported in the PLV_LINK_ERROR domain (codes below); the blocking
 * calls are not thread-safe on one link, but one thread may send while
 * another receives.
 */
#ifndef PLOVER_LINK_H
#define PLOVER_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>
#include "plover/bulk-link.h"
#include "plover/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLV_LINK_KEY_LEN      32u            /* session key bytes */
#define PLV_LINK_MAX_PAYLOAD  (64u << 20)    /* largest frame payload: 64 MiB */
/* Shortest shared secret accepted: an offline guess at the secret from a
 * recorded handshake must not be cheap. */
#define PLV_LINK_MIN_SECRET_LEN 16u

#define PLV_LINK_ERROR plv_link_error_quark()
GQuark plv_link_error_quark(void);

typedef enum PlvLinkErrorCode {
    PLV_LINK_ERROR_TIMED_OUT = 1, /* deadline passed; the link stays usable */
    PLV_LINK_ERROR_CLOSED,        /* peer closed the connection */
    PLV_LINK_ERROR_AUTH,          /* handshake failed: wrong secret, bad HELLO */
    PLV_LINK_ERROR_PROTOCOL,      /* bad magic/version/length/checksum */
    PLV_LINK_ERROR_TOO_BIG,       /* payload over PLV_LINK_MAX_PAYLOAD */
    PLV_LINK_ERROR_IO,            /* socket error (errno in the message) */
    PLV_LINK_ERROR_INVALID,       /* bad argument */
} PlvLinkErrorCode;

/* True if @err is a PLV_LINK_ERROR_TIMED_OUT (the only non-fatal error). */
bool plv_link_error_is_timeout(const GError *err);

/*
 * Which service a connection is for. The channel's name enters both MACs
 * and the session key, so a connection made for one is refused by the
 * other (PLV_LINK_ERROR_AUTH) even under the same secret.
 */
typedef enum PlvLinkChannel {
    PLV_LINK_CHANNEL_CONSENSUS = 1,     /* "consensus": the transports */
    PLV_LINK_CHANNEL_SYNCVM = 2,        /* "syncvm": the bulk links */
} PlvLinkChannel;

/* expect_peer of a dialer that takes whoever answers. */
#define PLV_LINK_ANY_PEER UINT32_MAX

/* True if @secret can key links (at least PLV_LINK_MIN_SECRET_LEN bytes);
 * otherwise false with PLV_LINK_ERROR_INVALID. */
bool plv_link_check_secret(const uint8_t *secret, size_t secret_len,
                           GError **err);

typedef struct PlvLink PlvLink;

/*
 * Connect to host:port (numeric or resolvable; IPv4/IPv6) and authenticate
 * on @channel. If the acceptor's HELLO names another id than @expect_peer
 * (PLV_LINK_ANY_PEER: any), fail with PLV_LINK_ERROR_AUTH before sending our
 * MAC. @timeout_ms bounds connect + handshake (< 0: no limit), and later the
 * silence a send tolerates (the peer not reading) before it fails.
 */
PlvLink *plv_link_connect(const char *host, uint16_t port, uint32_t self_id,
                          uint32_t expect_peer, PlvLinkChannel channel,
                          const uint8_t *secret, size_t secret_len,
                          int timeout_ms, GError **err);

/*
 * Listening socket on host:port (port 0: ephemeral; read it back with
 * plv_link_local_port()). Returns the fd (close it with close()), -1 on error.
 */
int plv_link_listen(const char *host, uint16_t port, GError **err);

/* Port a bound socket listens on (host order), 0 on error. */
uint16_t plv_link_local_port(int fd);

/*
 * Accept one connection on @listen_fd and authenticate it on @channel (a
 * dialer on another channel fails it). @timeout_ms bounds
 * the wait for a connection plus the handshake, and later the silence a send
 * tolerates, as for plv_link_connect(). A client failing the handshake
 * is closed and reported as PLV_LINK_ERROR_AUTH; call again to keep listening.
 */
PlvLink *plv_link_accept(int listen_fd, uint32_t self_id, PlvLinkChannel channel,
                         const uint8_t *secret, size_t secret_len,
                         int timeout_ms, GError **err);

/*
 * plv_link_connect and plv_link_accept inside TLS when @tls is not NULL
 * (plover/tls.h): the TLS handshake first, then the plover one through
 * it, then the peer's certificate checked against the replica id it
 * claimed. A refusal is PLV_LINK_ERROR_AUTH with the reason.
 */
PlvLink *plv_link_connect_tls(const char *host, uint16_t port, uint32_t self_id,
                              uint32_t expect_peer, PlvLinkChannel channel,
                              const uint8_t *secret, size_t secret_len,
                              PlvTls *tls, int timeout_ms, GError **err);
PlvLink *plv_link_accept_tls(int listen_fd, uint32_t self_id,
                             PlvLinkChannel channel, const uint8_t *secret,
                             size_t secret_len, PlvTls *tls, int timeout_ms,
                             GError **err);

/* Send one frame with the concatenation of @iov as payload. Blocking, and
 * failing (PLV_LINK_ERROR_TIMED_OUT; the link is then unusable) if nothing
 * goes out for the link's timeout. 0 / -1. */
int plv_link_send(PlvLink *l, uint16_t type, const struct iovec *iov,
                  int iovcnt, GError **err);

/*
 * Receive one frame: its type and payload (replacing @payload's contents).
 * Waits until @timeout_ms pass with no byte received (< 0: forever); a
 * frame still arriving keeps the wait going. 0 on success, -1 on error or
 * timeout (PLV_LINK_ERROR_TIMED_OUT; a partly received frame is kept and the
 * next call resumes it). Any other error leaves the link unusable.
 */
int plv_link_recv(PlvLink *l, uint16_t *type, GByteArray *payload,
                  int timeout_ms, GError **err);

uint32_t plv_link_peer_id(const PlvLink *l);

/* PLV_LINK_KEY_LEN bytes, unique per connection, derived from the handshake. */
const uint8_t *plv_link_session_key(const PlvLink *l);

int plv_link_fd(const PlvLink *l);
/* The TLS session the link runs in; NULL: plaintext. */
const PlvTlsConn *plv_link_tls(const PlvLink *l);

/* Frames rejected on this link so far (checksum, header) — for diagnostics. */
uint64_t plv_link_rejected_frames(const PlvLink *l);

void plv_link_close(PlvLink *l);
/*
 * Any thread: the link fails now. A send or receive waiting in another
 * thread returns at once, and every later one, with "link cancelled"
 * (PLV_LINK_ERROR_CLOSED). The owner still closes it.
 */
void plv_link_cancel(PlvLink *l);
/* How long a send may wait while the peer reads nothing (the connect's
 * or accept's timeout until set). */
void plv_link_set_send_timeout(PlvLink *l, int timeout_ms);

/* The link as a bulk link (plover/bulk-link.h): the same object, closed
 * by plv_bulk_close or plv_link_close. */
PlvBulkLink *plv_link_bulk(PlvLink *l);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_LINK_H */
