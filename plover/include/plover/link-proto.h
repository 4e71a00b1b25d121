/*
 * plover/link-proto.h — the socket-free half of plover/link.h: the
 * authentication handshake as a byte-in/byte-out state machine, and the frame
 * sealer and incremental frame parser. The blocking PlvLink and the epoll TCP
 * transport both drive these, so framing and authentication exist once.
 *
 * Wire format (all integers little-endian):
 *   HELLO  (44 B): magic "PLVH" u32, version u16, channel u16 (PlvLinkChannel),
 *                  id u32, nonce[32]
 *   AUTH   (32 B): HMAC-SHA256(secret, "plover-link-auth" 0 || channel name 0
 *                  || role || nonce_dialer || nonce_acceptor || id_dialer ||
 *                  id_acceptor), the channel name "consensus" or "syncvm",
 *                  role 'D' for the dialer's MAC, 'A' for the acceptor's.
 *   session key:   the same HMAC with label "plover-link-session", role 'S'.
 *   FRAME: header (16 B): magic "PLVF" u32, version u8, flags u8 (0), type u16,
 *                  length u32, reserved u32 (0);
 *          payload (length B, <= PLV_LINK_MAX_PAYLOAD);
 *          trailer (8 B): XXH3-64 with a per-direction secret over
 *                  header || frame counter (u64) || payload.
 * Order: dialer HELLO; acceptor HELLO; dialer AUTH (role 'D'); the acceptor
 * verifies it and only then sends its AUTH (role 'A'); the dialer verifies
 * that. An acceptor thus emits no MAC before the dialer proved it knows the
 * secret, so a stranger cannot collect MACs over nonces of its choosing to
 * guess the secret offline. Either end accepts frames only after verifying
 * the peer's AUTH. A HELLO on another channel fails at once (so does one
 * from another id than a dialer expects, before the dialer's AUTH).
 */
#ifndef PLOVER_LINK_PROTO_H
#define PLOVER_LINK_PROTO_H

#include "plover/link.h"
#include "plover/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLV_LINK_VERSION      2u
#define PLV_LINK_HELLO_MAGIC  0x48564c50u   /* bytes "PLVH" */
#define PLV_LINK_FRAME_MAGIC  0x46564c50u   /* bytes "PLVF" */
#define PLV_LINK_NONCE_LEN    32u
#define PLV_LINK_HELLO_LEN    (12u + PLV_LINK_NONCE_LEN)
#define PLV_LINK_AUTH_LEN     32u
#define PLV_LINK_HDR_LEN      16u
#define PLV_LINK_TRAILER_LEN  8u
#define PLV_LINK_FRAME_OVERHEAD (PLV_LINK_HDR_LEN + PLV_LINK_TRAILER_LEN)

/* ---- session: the keys and counters of one authenticated connection ---- */

typedef struct PlvLinkSession PlvLinkSession;

void plv_link_session_free(PlvLinkSession *s);
uint32_t plv_link_session_peer_id(const PlvLinkSession *s);
const uint8_t *plv_link_session_key_bytes(const PlvLinkSession *s);

/*
 * A blocking PlvLink (plover/link.h) over @fd, whose handshake someone else
 * drove to its end (a background acceptor). Takes @fd, @s and @tls (the
 * TLS session the handshake ran in; NULL: plaintext).
 */
PlvLink *plv_link_new_authenticated(int fd, PlvTlsConn *tls, PlvLinkSession *s,
                                    int io_timeout_ms);

/* ---- handshake ---- */

typedef struct PlvHandshake PlvHandshake;

/*
 * @dialer: true on the end that connected. The secret is copied; callers
 * check it with plv_link_check_secret() first.
 */
PlvHandshake *plv_handshake_new(bool dialer, uint32_t self_id,
                                PlvLinkChannel channel,
                                const uint8_t *secret, size_t secret_len);
/* Dialer: fail unless the acceptor's HELLO carries @peer_id (default
 * PLV_LINK_ANY_PEER). Call before feeding input. */
void plv_handshake_expect_peer(PlvHandshake *hs, uint32_t peer_id);
/*
 * The handshake runs inside @tls (plover/tls.h; not taken): the peer's
 * certificate must name the replica its HELLO says it is, checked before
 * this end sends a MAC. plv_handshake_tls_refused() then tells a refusal
 * for that reason (counted as a TLS one) from the others.
 */
void plv_handshake_bind_tls(PlvHandshake *hs, PlvTlsConn *tls);
bool plv_handshake_tls_refused(const PlvHandshake *hs);
void plv_handshake_free(PlvHandshake *hs);

/* Bytes waiting to be sent (points into @hs); 0 if none right now (an
 * acceptor has none before the dialer's HELLO). */
size_t plv_handshake_output(PlvHandshake *hs, const uint8_t **data);
/* @n bytes of the output were written to the peer. */
void plv_handshake_output_done(PlvHandshake *hs, size_t n);

/* How many more input bytes the current step needs (0 once done/failed). */
size_t plv_handshake_want(const PlvHandshake *hs);

/*
 * Feed received bytes. Consumes only what the handshake needs (*consumed);
 * bytes after the peer's AUTH belong to the frame stream. Returns 1 when the
 * peer is authenticated, 0 if more input is needed, -1 on failure
 * (PLV_LINK_ERROR_AUTH; the connection must be dropped).
 */
int plv_handshake_input(PlvHandshake *hs, const uint8_t *data, size_t len,
                        size_t *consumed, GError **err);

/* True once the peer is authenticated and all our output was written. */
bool plv_handshake_done(const PlvHandshake *hs);

/* Peer id from its HELLO (valid once the HELLO was received). */
uint32_t plv_handshake_peer_id(const PlvHandshake *hs);

/* After plv_handshake_done(): the session; NULL otherwise. Caller owns it. */
PlvLinkSession *plv_handshake_finish(PlvHandshake *hs);

/* ---- frames: sending ---- */

/*
 * Header and trailer for one frame whose payload is the concatenation of @iov
 * (send hdr, iov..., trailer in that order). Consumes one tx counter value, so
 * frames must be sent in the order they were sealed. -1 if too big.
 */
int plv_frame_seal(PlvLinkSession *s, uint16_t type, const struct iovec *iov,
                   int iovcnt, uint8_t hdr[PLV_LINK_HDR_LEN],
                   uint8_t trailer[PLV_LINK_TRAILER_LEN], GError **err);

/* Append a whole sealed frame to @out. */
int plv_frame_append(PlvLinkSession *s, uint16_t type, const void *payload,
                     size_t len, GByteArray *out, GError **err);

/* ---- frames: incremental parser ---- */

typedef struct PlvFrameParser PlvFrameParser;

/* @s is borrowed and must outlive the parser. */
PlvFrameParser *plv_frame_parser_new(PlvLinkSession *s);
void plv_frame_parser_free(PlvFrameParser *p);

/*
 * Pull interface (lets a reader put bulk payload straight into place):
 * where the next bytes go and how many the parser takes at most (> 0).
 */
size_t plv_frame_parser_want(PlvFrameParser *p, uint8_t **buf);
/*
 * @n (<= want) bytes were stored at the buffer returned by want(). Returns 1
 * when a frame is complete, 0 if more is needed, -1 on a bad frame
 * (PLV_LINK_ERROR_PROTOCOL / _TOO_BIG). After -1 the stream cannot be
 * resynchronised: drop the connection.
 */
int plv_frame_parser_advance(PlvFrameParser *p, size_t n, GError **err);

/*
 * Push interface: copy from @data until one frame is complete (returns 1,
 * *consumed tells how far it got) or @data is used up (0); -1 as above.
 */
int plv_frame_parser_feed(PlvFrameParser *p, const uint8_t *data, size_t len,
                          size_t *consumed, GError **err);

/* The completed frame; valid until the next want/advance/feed. */
uint16_t plv_frame_parser_type(const PlvFrameParser *p);
GByteArray *plv_frame_parser_payload(PlvFrameParser *p);

/* True between frames (no partial frame buffered). */
bool plv_frame_parser_idle(const PlvFrameParser *p);

/*
 * Collect payloads into @payload from now on (NULL: the parser's own array).
 * A partly received payload is moved over.
 */
void plv_frame_parser_set_payload(PlvFrameParser *p, GByteArray *payload);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_LINK_PROTO_H */
