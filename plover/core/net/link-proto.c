/*
 * Link handshake and framing without sockets (see plover/link-proto.h).
 */
#include "plover/link-proto.h"
#include "plover/bytes.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* Per-direction checksum secret: XXH3 wants >= 136 random-looking bytes. */
#define CSUM_SECRET_LEN XXH3_SECRET_DEFAULT_SIZE

G_DEFINE_QUARK(plv-link-error-quark, plv_link_error)

bool plv_link_error_is_timeout(const GError *err)
{
    return err && g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TIMED_OUT);
}

bool plv_link_check_secret(const uint8_t *secret, size_t secret_len,
                           GError **err)
{
    if (!secret || secret_len < PLV_LINK_MIN_SECRET_LEN) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID,
                    "shared secret must be at least %u bytes",
                    PLV_LINK_MIN_SECRET_LEN);
        return false;
    }
    return true;
}

struct PlvLinkSession {
    uint32_t self_id, peer_id;
    uint8_t key[PLV_LINK_KEY_LEN];
    uint8_t tx_secret[CSUM_SECRET_LEN];
    uint8_t rx_secret[CSUM_SECRET_LEN];
    uint64_t tx_seq, rx_seq;
    XXH3_state_t *tx_state;
};

enum { HS_WAIT_HELLO, HS_WAIT_AUTH, HS_AUTHENTICATED, HS_FAILED };

struct PlvHandshake {
    bool dialer;
    int state;
    PlvLinkChannel channel;
    uint32_t self_id, peer_id;
    uint32_t expect_peer;       /* dialer: whom it dialed, or PLV_LINK_ANY_PEER */
    uint8_t *secret;
    size_t secret_len;
    uint8_t my_nonce[PLV_LINK_NONCE_LEN];
    uint8_t peer_nonce[PLV_LINK_NONCE_LEN];
    uint8_t out[PLV_LINK_HELLO_LEN + PLV_LINK_AUTH_LEN];  /* all we send */
    size_t out_len, out_off;
    uint8_t in[PLV_LINK_HELLO_LEN];
    size_t in_got;
    PlvTlsConn *tls;            /* the certificate must name the peer's id */
    bool tls_refused;           /* ...and did not */
};

/* Compare MACs without leaking the position of the first difference. */
static bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++) {
        d |= a[i] ^ b[i];
    }
    return d == 0;
}

static void fill_random(uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            /* getrandom only fails on EINTR for small requests */
            g_assert(errno == EINTR);
            continue;
        }
        got += r;
    }
}

/* The channel's name as it enters the MACs; NULL if @c is not one. */
static const char *channel_label(PlvLinkChannel c)
{
    switch (c) {
    case PLV_LINK_CHANNEL_CONSENSUS:
        return "consensus";
    case PLV_LINK_CHANNEL_SYNCVM:
        return "syncvm";
    default:
        return NULL;
    }
}

/*
 * HMAC-SHA256(key, label || 0 || channel || 0 || role || nonce_d || nonce_a
 * || id_d || id_a): the one shape every handshake-derived value takes. The
 * channel name keeps a handshake for one channel from being valid on
 * another.
 */
static void hs_mac(const PlvHandshake *hs, const char *label, uint8_t role,
                   uint8_t out[32])
{
    const uint8_t *nd = hs->dialer ? hs->my_nonce : hs->peer_nonce;
    const uint8_t *na = hs->dialer ? hs->peer_nonce : hs->my_nonce;
    uint8_t ids[8];
    plv_put_u32(ids, hs->dialer ? hs->self_id : hs->peer_id);
    plv_put_u32(ids + 4, hs->dialer ? hs->peer_id : hs->self_id);

    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, hs->secret, hs->secret_len);
    const char *chan = channel_label(hs->channel);
    g_hmac_update(h, (const guchar *)label, strlen(label) + 1);
    g_hmac_update(h, (const guchar *)chan, strlen(chan) + 1);
    g_hmac_update(h, &role, 1);
    g_hmac_update(h, nd, PLV_LINK_NONCE_LEN);
    g_hmac_update(h, na, PLV_LINK_NONCE_LEN);
    g_hmac_update(h, ids, sizeof(ids));
    gsize len = 32;
    g_hmac_get_digest(h, out, &len);
    g_hmac_unref(h);
}

/* Stretch the session key into an XXH3 secret for one direction. */
static void derive_csum_secret(const uint8_t key[PLV_LINK_KEY_LEN],
                               const char *dir, uint8_t out[CSUM_SECRET_LEN])
{
    for (size_t off = 0, i = 0; off < CSUM_SECRET_LEN; off += 32, i++) {
        uint8_t blk[32], ctr = i;
        GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, PLV_LINK_KEY_LEN);
        g_hmac_update(h, (const guchar *)dir, strlen(dir));
        g_hmac_update(h, &ctr, 1);
        gsize len = 32;
        g_hmac_get_digest(h, blk, &len);
        g_hmac_unref(h);
        memcpy(out + off, blk, MIN(32, CSUM_SECRET_LEN - off));
    }
}

/* Append our HELLO to the output. */
static void hs_put_hello(PlvHandshake *hs)
{
    uint8_t *p = hs->out + hs->out_len;
    plv_put_u32(p, PLV_LINK_HELLO_MAGIC);
    plv_put_u16(p + 4, PLV_LINK_VERSION);
    plv_put_u16(p + 6, hs->channel);
    plv_put_u32(p + 8, hs->self_id);
    memcpy(p + 12, hs->my_nonce, PLV_LINK_NONCE_LEN);
    hs->out_len += PLV_LINK_HELLO_LEN;
}

/* Append our AUTH (role 'D' or 'A') to the output. */
static void hs_put_auth(PlvHandshake *hs)
{
    hs_mac(hs, "plover-link-auth", hs->dialer ? 'D' : 'A',
           hs->out + hs->out_len);
    hs->out_len += PLV_LINK_AUTH_LEN;
}

PlvHandshake *plv_handshake_new(bool dialer, uint32_t self_id,
                                PlvLinkChannel channel,
                                const uint8_t *secret, size_t secret_len)
{
    g_assert(channel_label(channel));
    PlvHandshake *hs = g_new0(PlvHandshake, 1);
    hs->dialer = dialer;
    hs->channel = channel;
    hs->self_id = self_id;
    hs->expect_peer = PLV_LINK_ANY_PEER;
    hs->secret = g_memdup2(secret, secret_len);
    hs->secret_len = secret_len;
    hs->state = HS_WAIT_HELLO;
    fill_random(hs->my_nonce, sizeof(hs->my_nonce));
    if (dialer) {
        /* The acceptor speaks only once it has heard from us. */
        hs_put_hello(hs);
    }
    return hs;
}

void plv_handshake_expect_peer(PlvHandshake *hs, uint32_t peer_id)
{
    hs->expect_peer = peer_id;
}

void plv_handshake_bind_tls(PlvHandshake *hs, PlvTlsConn *tls)
{
    hs->tls = tls;
}

bool plv_handshake_tls_refused(const PlvHandshake *hs)
{
    return hs->tls_refused;
}

void plv_handshake_free(PlvHandshake *hs)
{
    if (!hs) {
        return;
    }
    if (hs->secret) {
        explicit_bzero(hs->secret, hs->secret_len);
        g_free(hs->secret);
    }
    explicit_bzero(hs, sizeof(*hs));
    g_free(hs);
}

size_t plv_handshake_output(PlvHandshake *hs, const uint8_t **data)
{
    *data = hs->out + hs->out_off;
    return hs->out_len - hs->out_off;
}

void plv_handshake_output_done(PlvHandshake *hs, size_t n)
{
    g_assert(n <= hs->out_len - hs->out_off);
    hs->out_off += n;
}

size_t plv_handshake_want(const PlvHandshake *hs)
{
    switch (hs->state) {
    case HS_WAIT_HELLO:
        return PLV_LINK_HELLO_LEN - hs->in_got;
    case HS_WAIT_AUTH:
        return PLV_LINK_AUTH_LEN - hs->in_got;
    default:
        return 0;
    }
}

static int hs_fail(PlvHandshake *hs, GError **err, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static int hs_fail(PlvHandshake *hs, GError **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    hs->state = HS_FAILED;
    g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                "link handshake failed: %s", why);
    g_free(why);
    return -1;
}

static int hs_got_hello(PlvHandshake *hs, GError **err)
{
    const uint8_t *p = hs->in;
    if (plv_get_u32(p) != PLV_LINK_HELLO_MAGIC) {
        if (p[0] == 0x16 && p[1] == 0x03) {
            /* A TLS record header: a ClientHello or a ServerHello. */
            return hs_fail(hs, err, "the peer speaks TLS (it has tls-creds, "
                           "this end has none)");
        }
        return hs_fail(hs, err, "not a plover link peer (bad magic)");
    }
    if (plv_get_u16(p + 4) != PLV_LINK_VERSION) {
        return hs_fail(hs, err, "unsupported link version");
    }
    uint16_t chan = plv_get_u16(p + 6);
    if (chan != hs->channel) {
        /* The MACs would not match either; this just says why. */
        const char *theirs = channel_label(chan);
        return hs_fail(hs, err, "peer is on the %s channel, this end on %s",
                       theirs ? theirs : "unknown", channel_label(hs->channel));
    }
    hs->peer_id = plv_get_u32(p + 8);
    if (hs->expect_peer != PLV_LINK_ANY_PEER && hs->peer_id != hs->expect_peer) {
        /* Before our AUTH: whoever answered gets no MAC from us. */
        return hs_fail(hs, err, "dialed replica %u, replica %u answered",
                       hs->expect_peer, hs->peer_id);
    }
    GError *why = NULL;
    if (hs->tls && !plv_tls_conn_check_peer(hs->tls, hs->peer_id, &why)) {
        /* Before our AUTH too: a certificate is good for one replica. */
        hs->tls_refused = true;
        int r = hs_fail(hs, err, "%s", why->message);
        g_error_free(why);
        return r;
    }
    memcpy(hs->peer_nonce, p + 12, PLV_LINK_NONCE_LEN);
    if (equal_ct(hs->peer_nonce, hs->my_nonce, PLV_LINK_NONCE_LEN)) {
        /* Our own HELLO reflected back: refuse rather than MAC it. */
        return hs_fail(hs, err, "reflected HELLO");
    }
    /*
     * The dialer proves itself first. The acceptor answers a HELLO with
     * its own nonce only, and MACs nothing until the dialer's AUTH checked
     * out: a stranger gets no MAC to test guesses at the secret against.
     */
    if (hs->dialer) {
        hs_put_auth(hs);
    } else {
        hs_put_hello(hs);
    }
    hs->state = HS_WAIT_AUTH;
    hs->in_got = 0;
    return 0;
}

static int hs_got_auth(PlvHandshake *hs, GError **err)
{
    uint8_t expect[32];
    hs_mac(hs, "plover-link-auth", hs->dialer ? 'A' : 'D', expect);
    bool ok = equal_ct(expect, hs->in, PLV_LINK_AUTH_LEN);
    explicit_bzero(expect, sizeof(expect));
    if (!ok) {
        return hs_fail(hs, err, "peer failed authentication (wrong secret?)");
    }
    if (!hs->dialer) {
        hs_put_auth(hs);        /* only now: the dialer knows the secret */
    }
    hs->state = HS_AUTHENTICATED;
    return 1;
}

int plv_handshake_input(PlvHandshake *hs, const uint8_t *data, size_t len,
                        size_t *consumed, GError **err)
{
    *consumed = 0;
    while (len > 0) {
        size_t want = plv_handshake_want(hs);
        if (hs->state == HS_FAILED) {
            return hs_fail(hs, err, "already failed");
        }
        if (want == 0) {
            return 1;
        }
        size_t n = MIN(want, len);
        memcpy(hs->in + hs->in_got, data, n);
        hs->in_got += n;
        data += n;
        len -= n;
        *consumed += n;
        if (n < want) {
            return 0;
        }
        int r = hs->state == HS_WAIT_HELLO ? hs_got_hello(hs, err)
                                           : hs_got_auth(hs, err);
        if (r != 0) {
            return r;
        }
    }
    return hs->state == HS_AUTHENTICATED ? 1 : 0;
}

bool plv_handshake_done(const PlvHandshake *hs)
{
    return hs->state == HS_AUTHENTICATED && hs->out_off == hs->out_len;
}

uint32_t plv_handshake_peer_id(const PlvHandshake *hs)
{
    return hs->peer_id;
}

PlvLinkSession *plv_handshake_finish(PlvHandshake *hs)
{
    if (!plv_handshake_done(hs)) {
        return NULL;
    }
    PlvLinkSession *s = g_new0(PlvLinkSession, 1);
    s->self_id = hs->self_id;
    s->peer_id = hs->peer_id;
    hs_mac(hs, "plover-link-session", 'S', s->key);
    derive_csum_secret(s->key, hs->dialer ? "d2a" : "a2d", s->tx_secret);
    derive_csum_secret(s->key, hs->dialer ? "a2d" : "d2a", s->rx_secret);
    s->tx_state = XXH3_createState();
    g_assert(s->tx_state);
    return s;
}

void plv_link_session_free(PlvLinkSession *s)
{
    if (!s) {
        return;
    }
    XXH3_freeState(s->tx_state);
    explicit_bzero(s, sizeof(*s));
    g_free(s);
}

uint32_t plv_link_session_peer_id(const PlvLinkSession *s)
{
    return s->peer_id;
}

const uint8_t *plv_link_session_key_bytes(const PlvLinkSession *s)
{
    return s->key;
}

/* ---- frames ---- */

static void frame_header(uint8_t hdr[PLV_LINK_HDR_LEN], uint16_t type,
                         uint32_t len)
{
    plv_put_u32(hdr, PLV_LINK_FRAME_MAGIC);
    hdr[4] = PLV_LINK_VERSION;
    hdr[5] = 0;
    plv_put_u16(hdr + 6, type);
    plv_put_u32(hdr + 8, len);
    plv_put_u32(hdr + 12, 0);
}

/* Start the keyed checksum of one frame: secret, header, frame counter. */
static void csum_begin(XXH3_state_t *st, const uint8_t *secret,
                       const uint8_t hdr[PLV_LINK_HDR_LEN], uint64_t seq)
{
    uint8_t seqb[8];
    plv_put_u64(seqb, seq);
    XXH3_64bits_reset_withSecret(st, secret, CSUM_SECRET_LEN);
    XXH3_64bits_update(st, hdr, PLV_LINK_HDR_LEN);
    XXH3_64bits_update(st, seqb, sizeof(seqb));
}

int plv_frame_seal(PlvLinkSession *s, uint16_t type, const struct iovec *iov,
                   int iovcnt, uint8_t hdr[PLV_LINK_HDR_LEN],
                   uint8_t trailer[PLV_LINK_TRAILER_LEN], GError **err)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (len > PLV_LINK_MAX_PAYLOAD) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG,
                    "frame payload of %zu bytes exceeds the %u byte limit",
                    len, PLV_LINK_MAX_PAYLOAD);
        return -1;
    }
    frame_header(hdr, type, len);
    csum_begin(s->tx_state, s->tx_secret, hdr, s->tx_seq++);
    for (int i = 0; i < iovcnt; i++) {
        XXH3_64bits_update(s->tx_state, iov[i].iov_base, iov[i].iov_len);
    }
    plv_put_u64(trailer, XXH3_64bits_digest(s->tx_state));
    return 0;
}

int plv_frame_append(PlvLinkSession *s, uint16_t type, const void *payload,
                     size_t len, GByteArray *out, GError **err)
{
    uint8_t hdr[PLV_LINK_HDR_LEN], trl[PLV_LINK_TRAILER_LEN];
    struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };
    if (plv_frame_seal(s, type, &iov, 1, hdr, trl, err) < 0) {
        return -1;
    }
    g_byte_array_append(out, hdr, sizeof(hdr));
    g_byte_array_append(out, payload, len);
    g_byte_array_append(out, trl, sizeof(trl));
    return 0;
}

enum { FP_HDR, FP_PAYLOAD, FP_TRAILER, FP_DONE, FP_ERROR };

struct PlvFrameParser {
    PlvLinkSession *s;
    int phase;
    size_t got;                 /* bytes of the current phase received */
    uint8_t hdr[PLV_LINK_HDR_LEN];
    uint8_t trl[PLV_LINK_TRAILER_LEN];
    uint16_t type;
    uint32_t len;
    GByteArray *own;            /* default payload array */
    GByteArray *payload;        /* where payload bytes go (own or borrowed) */
    XXH3_state_t *st;
};

PlvFrameParser *plv_frame_parser_new(PlvLinkSession *s)
{
    PlvFrameParser *p = g_new0(PlvFrameParser, 1);
    p->s = s;
    p->own = g_byte_array_new();
    p->payload = p->own;
    p->st = XXH3_createState();
    g_assert(p->st);
    return p;
}

void plv_frame_parser_free(PlvFrameParser *p)
{
    if (!p) {
        return;
    }
    g_byte_array_unref(p->own);
    XXH3_freeState(p->st);
    g_free(p);
}

size_t plv_frame_parser_want(PlvFrameParser *p, uint8_t **buf)
{
    if (p->phase == FP_DONE) {
        p->phase = FP_HDR;
        p->got = 0;
    }
    switch (p->phase) {
    case FP_HDR:
        *buf = p->hdr + p->got;
        return PLV_LINK_HDR_LEN - p->got;
    case FP_PAYLOAD:
        *buf = p->payload->data + p->got;
        return p->len - p->got;
    case FP_TRAILER:
        *buf = p->trl + p->got;
        return PLV_LINK_TRAILER_LEN - p->got;
    default:
        /* Errored: hand out a scratch area so callers never write wild. */
        *buf = p->trl;
        return sizeof(p->trl);
    }
}

static int fp_fail(PlvFrameParser *p, GError **err, int code, const char *why)
{
    p->phase = FP_ERROR;
    g_set_error(err, PLV_LINK_ERROR, code, "bad frame from peer %u: %s",
                p->s->peer_id, why);
    return -1;
}

static int fp_header_done(PlvFrameParser *p, GError **err)
{
    const uint8_t *h = p->hdr;
    if (plv_get_u32(h) != PLV_LINK_FRAME_MAGIC) {
        return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL, "bad magic");
    }
    if (h[4] != PLV_LINK_VERSION) {
        return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL, "unsupported version");
    }
    if (h[5] != 0 || plv_get_u32(h + 12) != 0) {
        return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL, "reserved bits set");
    }
    p->type = plv_get_u16(h + 6);
    p->len = plv_get_u32(h + 8);
    if (p->len > PLV_LINK_MAX_PAYLOAD) {
        return fp_fail(p, err, PLV_LINK_ERROR_TOO_BIG, "length over the limit");
    }
    csum_begin(p->st, p->s->rx_secret, p->hdr, p->s->rx_seq);
    g_byte_array_set_size(p->payload, p->len);
    p->got = 0;
    p->phase = p->len ? FP_PAYLOAD : FP_TRAILER;
    return 0;
}

static int fp_trailer_done(PlvFrameParser *p, GError **err)
{
    if (XXH3_64bits_digest(p->st) != plv_get_u64(p->trl)) {
        return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL,
                       "checksum mismatch (corrupt, replayed or foreign)");
    }
    p->s->rx_seq++;
    p->phase = FP_DONE;
    return 1;
}

int plv_frame_parser_advance(PlvFrameParser *p, size_t n, GError **err)
{
    switch (p->phase) {
    case FP_HDR:
        g_assert(n <= PLV_LINK_HDR_LEN - p->got);
        p->got += n;
        if (p->got < PLV_LINK_HDR_LEN) {
            return 0;
        }
        if (fp_header_done(p, err) < 0) {
            return -1;
        }
        return 0;
    case FP_PAYLOAD:
        g_assert(n <= p->len - p->got);
        /* Hash as bytes arrive so the bulk path never re-reads the payload. */
        XXH3_64bits_update(p->st, p->payload->data + p->got, n);
        p->got += n;
        if (p->got == p->len) {
            p->phase = FP_TRAILER;
            p->got = 0;
        }
        return 0;
    case FP_TRAILER:
        g_assert(n <= PLV_LINK_TRAILER_LEN - p->got);
        p->got += n;
        if (p->got < PLV_LINK_TRAILER_LEN) {
            return 0;
        }
        return fp_trailer_done(p, err);
    case FP_DONE:
        g_assert(n == 0);
        return 0;
    default:
        return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL, "stream already failed");
    }
}

int plv_frame_parser_feed(PlvFrameParser *p, const uint8_t *data, size_t len,
                          size_t *consumed, GError **err)
{
    *consumed = 0;
    while (len > 0) {
        uint8_t *buf;
        size_t n = MIN(plv_frame_parser_want(p, &buf), len);
        if (p->phase == FP_ERROR) {
            return fp_fail(p, err, PLV_LINK_ERROR_PROTOCOL,
                           "stream already failed");
        }
        memcpy(buf, data, n);
        data += n;
        len -= n;
        *consumed += n;
        int r = plv_frame_parser_advance(p, n, err);
        if (r != 0) {
            return r;
        }
    }
    /* A zero-length payload completes with the trailer; nothing pending. */
    return 0;
}

uint16_t plv_frame_parser_type(const PlvFrameParser *p)
{
    return p->type;
}

GByteArray *plv_frame_parser_payload(PlvFrameParser *p)
{
    return p->payload;
}

bool plv_frame_parser_idle(const PlvFrameParser *p)
{
    return (p->phase == FP_HDR && p->got == 0) || p->phase == FP_DONE;
}

void plv_frame_parser_set_payload(PlvFrameParser *p, GByteArray *payload)
{
    GByteArray *to = payload ? payload : p->own;
    if (to == p->payload) {
        return;
    }
    if (p->phase == FP_PAYLOAD || p->phase == FP_TRAILER) {
        g_byte_array_set_size(to, 0);
        g_byte_array_append(to, p->payload->data, p->len);
    }
    p->payload = to;
}
