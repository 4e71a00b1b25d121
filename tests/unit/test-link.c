/*
 * Tests for the authenticated link (plover/link.h) and its socket-free
 * handshake and framing (plover/link-proto.h). Loopback only.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helper-net.h"
#include "helper-run.h"
#include "plover/link-proto.h"

static const uint8_t SECRET[] = "correct horse battery staple";
static const uint8_t OTHER[] = "incorrect horse battery staple";
#define CHAN PLV_LINK_CHANNEL_SYNCVM

/* ---- socket-free pieces ---- */

/* Run two handshakes against each other in memory: a dials (id 1), b
 * accepts (id 2). *b_sent: how many bytes b emitted (NULL: not wanted). */
static void hs_pair_sent(const uint8_t *sa, size_t la, const uint8_t *sb,
                         size_t lb, int *ra, int *rb, PlvLinkSession **out_a,
                         PlvLinkSession **out_b, size_t *b_sent)
{
    PlvHandshake *a = plv_handshake_new(true, 1, CHAN, sa, la);
    PlvHandshake *b = plv_handshake_new(false, 2, CHAN, sb, lb);
    size_t sent = 0;
    *ra = *rb = 0;
    for (int round = 0; round < 4; round++) {
        const uint8_t *d;
        size_t n, used;
        n = plv_handshake_output(a, &d);
        if (n && *rb >= 0) {
            *rb = plv_handshake_input(b, d, n, &used, NULL);
            plv_handshake_output_done(a, n);
        }
        n = plv_handshake_output(b, &d);
        sent += n;
        if (n && *ra >= 0) {
            *ra = plv_handshake_input(a, d, n, &used, NULL);
            plv_handshake_output_done(b, n);
        }
    }
    if (b_sent) {
        *b_sent = sent;
    }
    if (out_a) {
        *out_a = plv_handshake_finish(a);
        *out_b = plv_handshake_finish(b);
    }
    plv_handshake_free(a);
    plv_handshake_free(b);
}

static void hs_pair(const uint8_t *sa, size_t la, const uint8_t *sb, size_t lb,
                    int *ra, int *rb, PlvLinkSession **out_a,
                    PlvLinkSession **out_b)
{
    hs_pair_sent(sa, la, sb, lb, ra, rb, out_a, out_b, NULL);
}

START_TEST(proto_handshake_ok)
{
    PlvLinkSession *a, *b;
    int ra, rb;
    hs_pair(SECRET, sizeof(SECRET), SECRET, sizeof(SECRET), &ra, &rb, &a, &b);
    ck_assert_int_eq(ra, 1);
    ck_assert_int_eq(rb, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(plv_link_session_peer_id(a), 2);
    ck_assert_uint_eq(plv_link_session_peer_id(b), 1);
    ck_assert_mem_eq(plv_link_session_key_bytes(a),
                     plv_link_session_key_bytes(b), PLV_LINK_KEY_LEN);

    /* A second connection gets a different key. */
    PlvLinkSession *c, *d;
    hs_pair(SECRET, sizeof(SECRET), SECRET, sizeof(SECRET), &ra, &rb, &c, &d);
    ck_assert(memcmp(plv_link_session_key_bytes(a),
                     plv_link_session_key_bytes(c), PLV_LINK_KEY_LEN) != 0);
    plv_link_session_free(a);
    plv_link_session_free(b);
    plv_link_session_free(c);
    plv_link_session_free(d);
}
END_TEST

/* A dialer without the secret is refused, and the acceptor never sent it
 * anything but its HELLO: no MAC to test guesses against. */
START_TEST(proto_handshake_wrong_secret)
{
    PlvLinkSession *a, *b;
    int ra, rb;
    size_t b_sent;
    hs_pair_sent(OTHER, sizeof(OTHER), SECRET, sizeof(SECRET), &ra, &rb, &a, &b,
                 &b_sent);
    ck_assert_int_eq(rb, -1);
    ck_assert_int_eq(ra, 0);            /* still waiting for an AUTH */
    ck_assert_uint_eq(b_sent, PLV_LINK_HELLO_LEN);
    ck_assert_ptr_null(a);
    ck_assert_ptr_null(b);

    /* The other way round the acceptor's AUTH is never reached either. */
    hs_pair_sent(SECRET, sizeof(SECRET), OTHER, sizeof(OTHER), &ra, &rb, &a, &b,
                 &b_sent);
    ck_assert_int_eq(rb, -1);
    ck_assert_uint_eq(b_sent, PLV_LINK_HELLO_LEN);
    ck_assert_ptr_null(a);
}
END_TEST

/* The acceptor stays silent until the dialer's HELLO, answers it with its
 * HELLO alone, and MACs only after a valid AUTH from the dialer. */
START_TEST(proto_acceptor_macs_last)
{
    PlvHandshake *a = plv_handshake_new(true, 1, CHAN, SECRET, sizeof(SECRET));
    PlvHandshake *b = plv_handshake_new(false, 2, CHAN, SECRET, sizeof(SECRET));
    const uint8_t *d;
    size_t n, used;

    ck_assert_uint_eq(plv_handshake_output(b, &d), 0);
    n = plv_handshake_output(a, &d);
    ck_assert_uint_eq(n, PLV_LINK_HELLO_LEN);
    ck_assert_int_eq(plv_handshake_input(b, d, n, &used, NULL), 0);
    plv_handshake_output_done(a, n);
    ck_assert_uint_eq(plv_handshake_output(a, &d), 0);

    n = plv_handshake_output(b, &d);
    ck_assert_uint_eq(n, PLV_LINK_HELLO_LEN);
    ck_assert_int_eq(plv_handshake_input(a, d, n, &used, NULL), 0);
    plv_handshake_output_done(b, n);
    ck_assert_uint_eq(plv_handshake_output(b, &d), 0);

    n = plv_handshake_output(a, &d);
    ck_assert_uint_eq(n, PLV_LINK_AUTH_LEN);
    ck_assert_int_eq(plv_handshake_input(b, d, n, &used, NULL), 1);
    plv_handshake_output_done(a, n);
    ck_assert(!plv_handshake_done(b));  /* its AUTH is not out yet */

    n = plv_handshake_output(b, &d);
    ck_assert_uint_eq(n, PLV_LINK_AUTH_LEN);
    ck_assert_int_eq(plv_handshake_input(a, d, n, &used, NULL), 1);
    plv_handshake_output_done(b, n);
    ck_assert(plv_handshake_done(a));
    ck_assert(plv_handshake_done(b));
    plv_handshake_free(a);
    plv_handshake_free(b);
}
END_TEST

START_TEST(proto_handshake_bad_hello)
{
    PlvHandshake *b = plv_handshake_new(false, 2, CHAN, SECRET, sizeof(SECRET));
    uint8_t junk[PLV_LINK_HELLO_LEN];
    memset(junk, 'G', sizeof(junk));
    size_t used;
    GError *err = NULL;
    ck_assert_int_eq(plv_handshake_input(b, junk, sizeof(junk), &used, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    g_clear_error(&err);

    /* A peer echoing the dialer's own HELLO back is refused. */
    PlvHandshake *c = plv_handshake_new(true, 1, CHAN, SECRET, sizeof(SECRET));
    const uint8_t *own;
    size_t n = plv_handshake_output(c, &own);
    uint8_t copy[PLV_LINK_HELLO_LEN];
    memcpy(copy, own, n);
    ck_assert_int_eq(plv_handshake_input(c, copy, n, &used, &err), -1);
    g_clear_error(&err);
    plv_handshake_free(b);
    plv_handshake_free(c);
}
END_TEST

/* Move everything @from has to send into @to; @to's input result. */
static int hs_relay(PlvHandshake *from, PlvHandshake *to, size_t *n_out,
                    GError **err)
{
    const uint8_t *d;
    size_t n = plv_handshake_output(from, &d), used;
    uint8_t buf[PLV_LINK_HELLO_LEN + PLV_LINK_AUTH_LEN];
    memcpy(buf, d, n);
    plv_handshake_output_done(from, n);
    *n_out = n;
    return n ? plv_handshake_input(to, buf, n, &used, err) : 0;
}

/* Ends on different channels refuse each other at the HELLO. */
START_TEST(proto_channel_mismatch)
{
    PlvHandshake *a = plv_handshake_new(true, 1, PLV_LINK_CHANNEL_SYNCVM,
                                        SECRET, sizeof(SECRET));
    PlvHandshake *b = plv_handshake_new(false, 2, PLV_LINK_CHANNEL_CONSENSUS,
                                        SECRET, sizeof(SECRET));
    GError *err = NULL;
    size_t n;
    ck_assert_int_eq(hs_relay(a, b, &n, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    ck_assert_msg(strstr(err->message, "syncvm"), "%s", err->message);
    g_clear_error(&err);
    const uint8_t *d;
    ck_assert_uint_eq(plv_handshake_output(b, &d), 0);
    plv_handshake_free(a);
    plv_handshake_free(b);
}
END_TEST

/* With the HELLOs' channel fields rewritten in transit the ends get as far
 * as the dialer's AUTH, which fails: the channel is in the MAC too. */
START_TEST(proto_channel_in_mac)
{
    PlvHandshake *a = plv_handshake_new(true, 1, PLV_LINK_CHANNEL_SYNCVM,
                                        SECRET, sizeof(SECRET));
    PlvHandshake *b = plv_handshake_new(false, 2, PLV_LINK_CHANNEL_CONSENSUS,
                                        SECRET, sizeof(SECRET));
    uint8_t hello[PLV_LINK_HELLO_LEN];
    const uint8_t *d;
    size_t used, n;
    GError *err = NULL;

    memcpy(hello, (plv_handshake_output(a, &d), d), sizeof(hello));
    plv_handshake_output_done(a, sizeof(hello));
    hello[6] = PLV_LINK_CHANNEL_CONSENSUS;
    ck_assert_int_eq(plv_handshake_input(b, hello, sizeof(hello), &used, NULL), 0);
    memcpy(hello, (plv_handshake_output(b, &d), d), sizeof(hello));
    plv_handshake_output_done(b, sizeof(hello));
    hello[6] = PLV_LINK_CHANNEL_SYNCVM;
    ck_assert_int_eq(plv_handshake_input(a, hello, sizeof(hello), &used, NULL), 0);

    ck_assert_int_eq(hs_relay(a, b, &n, &err), -1);
    ck_assert_uint_eq(n, PLV_LINK_AUTH_LEN);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    g_clear_error(&err);
    ck_assert_uint_eq(plv_handshake_output(b, &d), 0);
    plv_handshake_free(a);
    plv_handshake_free(b);
}
END_TEST

/* A dialer expecting another replica fails at the HELLO and sends no AUTH. */
START_TEST(proto_expect_peer)
{
    PlvHandshake *a = plv_handshake_new(true, 1, CHAN, SECRET, sizeof(SECRET));
    PlvHandshake *b = plv_handshake_new(false, 2, CHAN, SECRET, sizeof(SECRET));
    plv_handshake_expect_peer(a, 5);
    GError *err = NULL;
    size_t n;
    ck_assert_int_eq(hs_relay(a, b, &n, NULL), 0);
    ck_assert_int_eq(hs_relay(b, a, &n, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    ck_assert_msg(strstr(err->message, "dialed replica 5, replica 2 answered"),
                  "%s", err->message);
    g_clear_error(&err);
    ck_assert_uint_eq(hs_relay(a, b, &n, NULL), 0);
    ck_assert_uint_eq(n, 0);
    plv_handshake_free(a);
    plv_handshake_free(b);

    /* The right one passes. */
    a = plv_handshake_new(true, 1, CHAN, SECRET, sizeof(SECRET));
    b = plv_handshake_new(false, 2, CHAN, SECRET, sizeof(SECRET));
    plv_handshake_expect_peer(a, 2);
    ck_assert_int_eq(hs_relay(a, b, &n, NULL), 0);
    ck_assert_int_eq(hs_relay(b, a, &n, NULL), 0);
    ck_assert_int_eq(hs_relay(a, b, &n, NULL), 1);
    ck_assert_int_eq(hs_relay(b, a, &n, NULL), 1);
    plv_handshake_free(a);
    plv_handshake_free(b);
}
END_TEST

static void session_pair(PlvLinkSession **a, PlvLinkSession **b)
{
    int ra, rb;
    hs_pair(SECRET, sizeof(SECRET), SECRET, sizeof(SECRET), &ra, &rb, a, b);
    ck_assert_ptr_nonnull(*a);
}

START_TEST(proto_frames_roundtrip_and_split)
{
    PlvLinkSession *a, *b;
    session_pair(&a, &b);
    GByteArray *wire = g_byte_array_new();
    ck_assert_int_eq(plv_frame_append(a, 7, "hello", 5, wire, NULL), 0);
    ck_assert_int_eq(plv_frame_append(a, 8, NULL, 0, wire, NULL), 0);
    ck_assert_int_eq(plv_frame_append(a, 9, "world!", 6, wire, NULL), 0);

    /* Feed one byte at a time: the parser must cope with any split. */
    PlvFrameParser *p = plv_frame_parser_new(b);
    int frames = 0;
    for (guint i = 0; i < wire->len; i++) {
        size_t used;
        int r = plv_frame_parser_feed(p, wire->data + i, 1, &used, NULL);
        ck_assert_int_ge(r, 0);
        ck_assert_uint_eq(used, 1);
        if (r == 1) {
            GByteArray *pl = plv_frame_parser_payload(p);
            frames++;
            if (frames == 1) {
                ck_assert_uint_eq(plv_frame_parser_type(p), 7);
                ck_assert_uint_eq(pl->len, 5);
                ck_assert_mem_eq(pl->data, "hello", 5);
            } else if (frames == 2) {
                ck_assert_uint_eq(plv_frame_parser_type(p), 8);
                ck_assert_uint_eq(pl->len, 0);
            } else {
                ck_assert_uint_eq(plv_frame_parser_type(p), 9);
                ck_assert_mem_eq(pl->data, "world!", 6);
            }
        }
    }
    ck_assert_int_eq(frames, 3);
    ck_assert(plv_frame_parser_idle(p));
    plv_frame_parser_free(p);
    g_byte_array_unref(wire);
    plv_link_session_free(a);
    plv_link_session_free(b);
}
END_TEST

/* Feed a whole buffer; return the last parser result. */
static int feed_all(PlvFrameParser *p, const GByteArray *wire, GError **err)
{
    size_t off = 0;
    int r = 0;
    while (off < wire->len) {
        size_t used;
        r = plv_frame_parser_feed(p, wire->data + off, wire->len - off, &used, err);
        off += used;
        if (r < 0) {
            return r;
        }
    }
    return r;
}

START_TEST(proto_corruption_rejected)
{
    PlvLinkSession *a, *b;
    session_pair(&a, &b);
    GByteArray *wire = g_byte_array_new();
    plv_frame_append(a, 1, "payload-bytes", 13, wire, NULL);
    for (guint bit = 0; bit < wire->len * 8; bit += 7) {
        /* Fresh receiver each time: its frame counter must still be 0. */
        PlvLinkSession *a2, *b2;
        session_pair(&a2, &b2);
        GByteArray *w2 = g_byte_array_new();
        plv_frame_append(a2, 1, "payload-bytes", 13, w2, NULL);
        w2->data[bit / 8] ^= 1u << (bit % 8);
        PlvFrameParser *p = plv_frame_parser_new(b2);
        GError *err = NULL;
        int r = feed_all(p, w2, &err);
        /* A flipped length bit may leave the parser waiting: never accepts. */
        ck_assert_int_ne(r, 1);
        if (r < 0) {
            ck_assert(err != NULL);
        }
        g_clear_error(&err);
        plv_frame_parser_free(p);
        g_byte_array_unref(w2);
        plv_link_session_free(a2);
        plv_link_session_free(b2);
    }
    g_byte_array_unref(wire);
    plv_link_session_free(a);
    plv_link_session_free(b);
}
END_TEST

START_TEST(proto_replay_and_foreign_rejected)
{
    PlvLinkSession *a, *b, *c, *d;
    session_pair(&a, &b);
    session_pair(&c, &d);
    GByteArray *f1 = g_byte_array_new();
    plv_frame_append(a, 1, "x", 1, f1, NULL);
    PlvFrameParser *p = plv_frame_parser_new(b);
    ck_assert_int_eq(feed_all(p, f1, NULL), 1);
    /* Same bytes again: the frame counter moved on, so it must fail. */
    GError *err = NULL;
    ck_assert_int_eq(feed_all(p, f1, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_PROTOCOL));
    g_clear_error(&err);
    plv_frame_parser_free(p);

    /* A frame from another connection (other session key) fails too. */
    GByteArray *f2 = g_byte_array_new();
    plv_frame_append(c, 1, "x", 1, f2, NULL);
    p = plv_frame_parser_new(b);
    ck_assert_int_eq(feed_all(p, f2, &err), -1);
    g_clear_error(&err);
    plv_frame_parser_free(p);

    /* Our own frame reflected back fails (per-direction secrets). */
    GByteArray *f3 = g_byte_array_new();
    plv_frame_append(b, 1, "x", 1, f3, NULL);
    p = plv_frame_parser_new(b);
    ck_assert_int_eq(feed_all(p, f3, &err), -1);
    g_clear_error(&err);
    plv_frame_parser_free(p);

    g_byte_array_unref(f1);
    g_byte_array_unref(f2);
    g_byte_array_unref(f3);
    plv_link_session_free(a);
    plv_link_session_free(b);
    plv_link_session_free(c);
    plv_link_session_free(d);
}
END_TEST

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);           /* test host is little-endian like the wire */
}

START_TEST(proto_oversize_rejected)
{
    PlvLinkSession *a, *b;
    session_pair(&a, &b);
    uint8_t hdr[PLV_LINK_HDR_LEN] = { 0 };
    put32(hdr, PLV_LINK_FRAME_MAGIC);
    hdr[4] = PLV_LINK_VERSION;
    put32(hdr + 8, PLV_LINK_MAX_PAYLOAD + 1);
    PlvFrameParser *p = plv_frame_parser_new(b);
    size_t used;
    GError *err = NULL;
    ck_assert_int_eq(plv_frame_parser_feed(p, hdr, sizeof(hdr), &used, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG));
    g_clear_error(&err);
    /* The stream stays failed. */
    ck_assert_int_eq(plv_frame_parser_feed(p, hdr, 1, &used, &err), -1);
    g_clear_error(&err);
    plv_frame_parser_free(p);

    /* And the sender refuses to build one (the length check comes first). */
    uint8_t h[PLV_LINK_HDR_LEN], t[PLV_LINK_TRAILER_LEN], one = 0;
    struct iovec iov = { .iov_base = &one, .iov_len = PLV_LINK_MAX_PAYLOAD + 1ul };
    ck_assert_int_eq(plv_frame_seal(a, 1, &iov, 1, h, t, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG));
    g_clear_error(&err);
    plv_link_session_free(a);
    plv_link_session_free(b);
}
END_TEST

/* ---- over sockets ---- */

typedef struct {
    int lfd;
    PlvLinkChannel channel;     /* 0: CHAN */
    const uint8_t *secret;
    size_t secret_len;
    int timeout_ms;
    PlvLink *link;
    GError *err;
} AcceptJob;

static gpointer accept_thread(gpointer opaque)
{
    AcceptJob *j = opaque;
    j->link = plv_link_accept(j->lfd, 20, j->channel ? j->channel : CHAN,
                              j->secret, j->secret_len,
                              j->timeout_ms, &j->err);
    return NULL;
}

static int listen_any(uint16_t *port)
{
    GError *err = NULL;
    int lfd = plv_link_listen("127.0.0.1", 0, &err);
    ck_assert_msg(lfd >= 0, "%s", err ? err->message : "?");
    *port = plv_link_local_port(lfd);
    ck_assert_uint_ne(*port, 0);
    return lfd;
}

/* A connected, authenticated pair keyed with @secret: *c dialed (id 10),
 * *s accepted (id 20), both with @timeout_ms as connect and send timeout. */
static void link_pair_full(PlvLink **c, PlvLink **s, int timeout_ms,
                           const uint8_t *secret, size_t secret_len)
{
    uint16_t port;
    AcceptJob j = { .secret = secret, .secret_len = secret_len,
                    .timeout_ms = timeout_ms };
    j.lfd = listen_any(&port);
    GThread *t = g_thread_new("accept", accept_thread, &j);
    GError *err = NULL;
    *c = plv_link_connect("127.0.0.1", port, 10, 20, CHAN, secret, secret_len,
                          timeout_ms, &err);
    g_thread_join(t);
    ck_assert_msg(*c, "%s", err ? err->message : "?");
    ck_assert_msg(j.link, "%s", j.err ? j.err->message : "?");
    *s = j.link;
    close(j.lfd);
}

static void link_pair_timeout(PlvLink **c, PlvLink **s, int timeout_ms)
{
    link_pair_full(c, s, timeout_ms, SECRET, sizeof(SECRET));
}

static void link_pair(PlvLink **c, PlvLink **s)
{
    link_pair_timeout(c, s, 5000);
}

/*
 * Dial an acceptor of @channel (id 20, SECRET) as id 10 expecting @expect,
 * on @dial_channel with @secret: both ends must fail with
 * PLV_LINK_ERROR_AUTH. Returns the dialer's error message (free it).
 */
static char *dial_refused(PlvLinkChannel channel, uint32_t expect,
                          PlvLinkChannel dial_channel,
                          const uint8_t *secret, size_t secret_len)
{
    uint16_t port;
    AcceptJob j = { .channel = channel, .secret = SECRET,
                    .secret_len = sizeof(SECRET), .timeout_ms = 5000 };
    j.lfd = listen_any(&port);
    GThread *t = g_thread_new("accept", accept_thread, &j);
    GError *err = NULL;
    PlvLink *c = plv_link_connect("127.0.0.1", port, 10, expect, dial_channel,
                                  secret, secret_len, 5000, &err);
    g_thread_join(t);
    ck_assert_ptr_null(c);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    ck_assert_ptr_null(j.link);
    ck_assert(g_error_matches(j.err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    char *msg = g_strdup(err->message);
    g_clear_error(&err);
    g_clear_error(&j.err);
    close(j.lfd);
    return msg;
}

START_TEST(link_handshake_and_frames)
{
    PlvLink *c, *s;
    link_pair(&c, &s);
    ck_assert_uint_eq(plv_link_peer_id(c), 20);
    ck_assert_uint_eq(plv_link_peer_id(s), 10);
    ck_assert_mem_eq(plv_link_session_key(c), plv_link_session_key(s),
                     PLV_LINK_KEY_LEN);
    ck_assert_int_ge(plv_link_fd(c), 0);

    plv_test_link_exchange(c, s, 100, 1000);
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    /* Empty payload. */
    ck_assert_int_eq(plv_link_send(c, 3, NULL, 0, NULL), 0);
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 1000, NULL), 0);
    ck_assert_uint_eq(pl->len, 0);
    g_byte_array_unref(pl);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

START_TEST(link_wrong_secret_rejected)
{
    g_free(dial_refused(CHAN, 20, CHAN, OTHER, sizeof(OTHER)));
}
END_TEST

/*
 * Everything the server sends a raw client until it hangs up or @ms pass
 * without a byte; the count of bytes, the first @cap kept in @buf.
 */
static size_t read_until_quiet(int fd, uint8_t *buf, size_t cap, int ms)
{
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, ms) <= 0) {
            return got;
        }
        uint8_t tmp[256];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0) {
            return got;
        }
        if (got < cap) {
            memcpy(buf + got, tmp, MIN((size_t)n, cap - got));
        }
        got += n;
    }
}

/*
 * A raw client playing the dialer with @secret against plv_link_accept:
 * sends its HELLO, takes the acceptor's HELLO, sends AUTH_D if @send_auth.
 * Returns how many bytes the acceptor sent after its HELLO.
 */
static size_t raw_dialer(AcceptJob *j, uint16_t port, const uint8_t *secret,
                         size_t secret_len, bool send_auth)
{
    GThread *t = g_thread_new("accept", accept_thread, j);
    int fd = plv_test_raw_connect(port);
    ck_assert_int_ge(fd, 0);
    PlvHandshake *hs = plv_handshake_new(true, 10, CHAN, secret, secret_len);
    const uint8_t *out;
    size_t n = plv_handshake_output(hs, &out), used;
    ck_assert_int_eq(write(fd, out, n), n);
    plv_handshake_output_done(hs, n);

    uint8_t in[PLV_LINK_HELLO_LEN + 64];
    size_t got = read_until_quiet(fd, in, sizeof(in), 2000);
    if (send_auth) {
        ck_assert_uint_eq(got, PLV_LINK_HELLO_LEN);
        ck_assert_int_eq(plv_handshake_input(hs, in, got, &used, NULL), 0);
        n = plv_handshake_output(hs, &out);
        ck_assert_uint_eq(n, PLV_LINK_AUTH_LEN);
        ck_assert_int_eq(write(fd, out, n), n);
        got += read_until_quiet(fd, in, 0, 300);
    }
    g_thread_join(t);
    plv_handshake_free(hs);
    close(fd);
    ck_assert_uint_ge(got, PLV_LINK_HELLO_LEN);
    return got - PLV_LINK_HELLO_LEN;
}

/* A client that sends a valid HELLO and then nothing gets the acceptor's
 * HELLO and not a byte more until the acceptor gives up on it. */
START_TEST(link_acceptor_sends_no_mac_before_auth)
{
    uint16_t port;
    AcceptJob j = { .secret = SECRET, .secret_len = sizeof(SECRET),
                    .timeout_ms = 300 };
    j.lfd = listen_any(&port);
    ck_assert_uint_eq(raw_dialer(&j, port, SECRET, sizeof(SECRET), false), 0);
    ck_assert_ptr_null(j.link);
    ck_assert(plv_link_error_is_timeout(j.err));
    g_clear_error(&j.err);
    close(j.lfd);
}
END_TEST

/* A dialer with the wrong secret gets the acceptor's HELLO, then the door:
 * its AUTH fails and the acceptor never sends a MAC of its own. */
START_TEST(link_wrong_secret_dialer_gets_no_mac)
{
    uint16_t port;
    AcceptJob j = { .secret = SECRET, .secret_len = sizeof(SECRET),
                    .timeout_ms = 5000 };
    j.lfd = listen_any(&port);
    ck_assert_uint_eq(raw_dialer(&j, port, OTHER, sizeof(OTHER), true), 0);
    ck_assert_ptr_null(j.link);
    ck_assert(g_error_matches(j.err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    g_clear_error(&j.err);

    /* The same client with the right secret gets exactly one AUTH back. */
    ck_assert_uint_eq(raw_dialer(&j, port, SECRET, sizeof(SECRET), true),
                      PLV_LINK_AUTH_LEN);
    ck_assert_ptr_nonnull(j.link);
    plv_link_close(j.link);
    close(j.lfd);
}
END_TEST

/* A consensus acceptor refuses a syncvm dialer, and the dialer learns. */
START_TEST(link_channel_mismatch_fails_both_ends)
{
    g_free(dial_refused(PLV_LINK_CHANNEL_CONSENSUS, 20, PLV_LINK_CHANNEL_SYNCVM,
                        SECRET, sizeof(SECRET)));
}
END_TEST

/* A dialer that reaches another replica than it meant to gives up before
 * its AUTH, so the acceptor sees the connection dropped. */
START_TEST(link_expect_peer_mismatch)
{
    g_autofree char *msg = dial_refused(CHAN, 99, CHAN, SECRET, sizeof(SECRET));
    ck_assert_msg(strstr(msg, "dialed replica 99, replica 20 answered"), "%s", msg);
}
END_TEST

START_TEST(link_garbage_client_rejected)
{
    uint16_t port;
    AcceptJob j = { .secret = SECRET, .secret_len = sizeof(SECRET),
                    .timeout_ms = 5000 };
    j.lfd = listen_any(&port);
    int fd = plv_test_raw_connect(port);
    ck_assert_int_ge(fd, 0);
    char junk[200];
    memset(junk, 0x5a, sizeof(junk));
    ck_assert_int_eq(write(fd, junk, sizeof(junk)), sizeof(junk));
    accept_thread(&j);
    ck_assert_ptr_null(j.link);
    ck_assert(g_error_matches(j.err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH));
    g_clear_error(&j.err);
    close(fd);

    /* A silent client runs into the handshake deadline. */
    fd = plv_test_raw_connect(port);
    ck_assert_int_ge(fd, 0);
    j.timeout_ms = 100;
    accept_thread(&j);
    ck_assert_ptr_null(j.link);
    ck_assert(plv_link_error_is_timeout(j.err));
    g_clear_error(&j.err);
    close(fd);
    close(j.lfd);
}
END_TEST

START_TEST(link_corrupt_frame_rejected)
{
    PlvLink *c, *s;
    link_pair(&c, &s);
    /* A well-formed header with a payload whose checksum cannot match. */
    uint8_t f[PLV_LINK_HDR_LEN + 4 + PLV_LINK_TRAILER_LEN] = { 0 };
    put32(f, PLV_LINK_FRAME_MAGIC);
    f[4] = PLV_LINK_VERSION;
    f[6] = 1;
    put32(f + 8, 4);
    memcpy(f + PLV_LINK_HDR_LEN, "evil", 4);
    ck_assert_int_eq(write(plv_link_fd(c), f, sizeof(f)), sizeof(f));
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    GError *err = NULL;
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 1000, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_PROTOCOL));
    ck_assert_uint_eq(plv_link_rejected_frames(s), 1);
    g_clear_error(&err);
    /* The link is dead after that: no resynchronisation on a byte stream. */
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 10, &err), -1);
    ck_assert(!plv_link_error_is_timeout(err));
    g_clear_error(&err);
    g_byte_array_unref(pl);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

START_TEST(link_oversize_rejected)
{
    PlvLink *c, *s;
    link_pair(&c, &s);
    uint8_t hdr[PLV_LINK_HDR_LEN] = { 0 };
    put32(hdr, PLV_LINK_FRAME_MAGIC);
    hdr[4] = PLV_LINK_VERSION;
    put32(hdr + 8, 0xffffffffu);
    ck_assert_int_eq(write(plv_link_fd(c), hdr, sizeof(hdr)), sizeof(hdr));
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    GError *err = NULL;
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 1000, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG));
    ck_assert_uint_eq(plv_link_rejected_frames(s), 1);
    g_clear_error(&err);

    /* Sending one is refused up front and the link stays usable. */
    uint8_t one = 0;
    struct iovec iov = { .iov_base = &one, .iov_len = PLV_LINK_MAX_PAYLOAD + 1ul };
    ck_assert_int_eq(plv_link_send(c, 1, &iov, 1, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TOO_BIG));
    g_clear_error(&err);
    struct iovec small = { "ok", 2 };
    ck_assert_int_eq(plv_link_send(c, 1, &small, 1, NULL), 0);
    g_byte_array_unref(pl);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

typedef struct {
    PlvLink *l;
    GByteArray *data;
    int frames;
} SendJob;

static gpointer send_thread(gpointer opaque)
{
    SendJob *j = opaque;
    for (int i = 0; i < j->frames; i++) {
        struct iovec iov = { j->data->data, j->data->len };
        ck_assert_int_eq(plv_link_send(j->l, 42, &iov, 1, NULL), 0);
    }
    return NULL;
}

START_TEST(link_large_frames_with_timeouts)
{
    PlvLink *c, *s;
    link_pair(&c, &s);
    SendJob j = { .l = c, .data = g_byte_array_sized_new(PLV_LINK_MAX_PAYLOAD),
                  .frames = 2 };
    g_byte_array_set_size(j.data, PLV_LINK_MAX_PAYLOAD);
    for (guint i = 0; i < j.data->len; i += 4096) {
        j.data->data[i] = i / 4096;
        j.data->data[i + 17] = ~(i / 4096);
    }
    GThread *t = g_thread_new("send", send_thread, &j);
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    for (int f = 0; f < j.frames; f++) {
        /* Tiny timeouts: recv must resume a half-received frame. */
        int timeouts = 0;
        for (;;) {
            GError *err = NULL;
            if (plv_link_recv(s, &type, pl, 1, &err) == 0) {
                break;
            }
            ck_assert_msg(plv_link_error_is_timeout(err), "%s", err->message);
            g_clear_error(&err);
            timeouts++;
        }
        ck_assert_uint_eq(type, 42);
        ck_assert_uint_eq(pl->len, j.data->len);
        ck_assert(memcmp(pl->data, j.data->data, pl->len) == 0);
    }
    g_thread_join(t);
    g_byte_array_unref(pl);
    g_byte_array_unref(j.data);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

START_TEST(link_timeouts)
{
    PlvLink *c, *s;
    link_pair(&c, &s);
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    GError *err = NULL;
    gint64 t0 = g_get_monotonic_time();
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 50, &err), -1);
    ck_assert(plv_link_error_is_timeout(err));
    ck_assert_int_ge(g_get_monotonic_time() - t0, 45000);
    g_clear_error(&err);
    /* Still usable after a timeout. */
    struct iovec iov = { "ok", 2 };
    ck_assert_int_eq(plv_link_send(c, 5, &iov, 1, NULL), 0);
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 1000, NULL), 0);
    ck_assert_uint_eq(type, 5);

    /* Peer closes: CLOSED, not a timeout. */
    plv_link_close(c);
    ck_assert_int_eq(plv_link_recv(s, &type, pl, 1000, &err), -1);
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED));
    g_clear_error(&err);

    /* accept with nobody connecting times out. */
    uint16_t port;
    int lfd = listen_any(&port);
    ck_assert_ptr_null(plv_link_accept(lfd, 1, CHAN, SECRET, sizeof(SECRET), 30,
                                       &err));
    ck_assert(plv_link_error_is_timeout(err));
    g_clear_error(&err);
    close(lfd);

    /* Connecting to a closed port fails cleanly. */
    ck_assert_ptr_null(plv_link_connect("127.0.0.1", port, 1, PLV_LINK_ANY_PEER,
                                        CHAN, SECRET,
                                        sizeof(SECRET), 1000, &err));
    ck_assert(err != NULL);
    g_clear_error(&err);
    g_byte_array_unref(pl);
    plv_link_close(s);
}
END_TEST

/* Secrets under PLV_LINK_MIN_SECRET_LEN bytes are refused on both ends
 * before any socket work; one of exactly that length works. */
START_TEST(link_short_secret_refused)
{
    static const uint8_t s16[PLV_LINK_MIN_SECRET_LEN] = "sixteen byte key";
    uint16_t port;
    int lfd = listen_any(&port);
    GError *err = NULL;

    ck_assert_ptr_null(plv_link_connect("127.0.0.1", port, 10, 20, CHAN, s16,
                                        sizeof(s16) - 1, 1000, &err));
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID));
    ck_assert_str_eq(err->message, "shared secret must be at least 16 bytes");
    g_clear_error(&err);
    ck_assert_ptr_null(plv_link_accept(lfd, 20, CHAN, s16, sizeof(s16) - 1, 1000,
                                       &err));
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID));
    g_clear_error(&err);
    close(lfd);

    PlvLink *c, *s;
    link_pair_full(&c, &s, 5000, s16, sizeof(s16));
    ck_assert_mem_eq(plv_link_session_key(c), plv_link_session_key(s),
                     PLV_LINK_KEY_LEN);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

/* A peer that stops reading makes sends fail once nothing has gone out
 * for the link's timeout, instead of blocking the sender for good. */
START_TEST(link_send_to_silent_peer_times_out)
{
    PlvLink *c, *s;
    GByteArray *data = g_byte_array_sized_new(PLV_LINK_MAX_PAYLOAD);
    struct iovec iov;
    GError *err = NULL;
    gint64 t0 = g_get_monotonic_time();
    int r = 0;

    link_pair_timeout(&c, &s, 300);
    g_byte_array_set_size(data, PLV_LINK_MAX_PAYLOAD);
    memset(data->data, 0x5a, data->len);
    iov = (struct iovec){ data->data, data->len };
    for (int i = 0; i < 1000 && r == 0; i++) {
        r = plv_link_send(c, 7, &iov, 1, &err);
    }
    ck_assert_int_eq(r, -1);
    ck_assert_msg(plv_link_error_is_timeout(err), "%s", err ? err->message : "?");
    ck_assert_int_lt(g_get_monotonic_time() - t0, 10 * G_USEC_PER_SEC);
    g_clear_error(&err);
    /* a partial frame went out: the link is not used again */
    ck_assert_int_eq(plv_link_send(c, 7, &iov, 1, &err), -1);
    g_clear_error(&err);
    g_byte_array_unref(data);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

/* Cancels @link from its own thread after @ms. */
typedef struct CancelJob {
    PlvLink *link;
    int ms;
} CancelJob;

static gpointer cancel_thread(gpointer opaque)
{
    CancelJob *j = opaque;

    g_usleep(j->ms * 1000);
    plv_link_cancel(j->link);
    return NULL;
}

/* A call that began at @t0 ended, well before its 10 s timeout, cancelled. */
static void ck_cancelled(int r, GError **err, gint64 t0)
{
    ck_assert_int_eq(r, -1);
    ck_assert_msg(g_error_matches(*err, PLV_LINK_ERROR, PLV_LINK_ERROR_CLOSED) &&
                  strstr((*err)->message, "cancelled"), "%s", (*err)->message);
    ck_assert_int_lt(g_get_monotonic_time() - t0, 5 * G_USEC_PER_SEC);
    g_clear_error(err);
}

/*
 * plv_link_cancel from another thread ends a send blocked on a peer that
 * reads nothing, and a receive waiting for a frame, at once (their own
 * timeouts are 10 s), with "link cancelled"; every later call fails so.
 */
START_TEST(link_cancel_from_another_thread)
{
    PlvLink *c, *s;
    GByteArray *data = g_byte_array_sized_new(PLV_LINK_MAX_PAYLOAD);
    GByteArray *in = g_byte_array_new();
    struct iovec iov;
    GError *err = NULL;
    CancelJob j = { .ms = 200 };
    GThread *t;
    uint16_t type;
    gint64 t0;
    int r = 0;

    link_pair_timeout(&c, &s, 10000);
    g_byte_array_set_size(data, PLV_LINK_MAX_PAYLOAD);
    memset(data->data, 0x5a, data->len);
    iov = (struct iovec){ data->data, data->len };

    /* The sender: s reads nothing, so the socket buffers fill up. */
    j.link = c;
    t0 = g_get_monotonic_time();
    t = g_thread_new("cancel", cancel_thread, &j);
    for (int i = 0; i < 1000 && r == 0; i++) {
        r = plv_link_send(c, 7, &iov, 1, &err);
    }
    g_thread_join(t);
    ck_cancelled(r, &err, t0);
    ck_assert_int_eq(plv_link_send(c, 7, &iov, 1, &err), -1);
    ck_assert_msg(strstr(err->message, "cancelled"), "%s", err->message);
    g_clear_error(&err);

    plv_link_close(c);
    plv_link_close(s);

    /* The receiver, on a new pair whose dialer sends nothing. */
    link_pair_timeout(&c, &s, 10000);
    j.link = s;
    t0 = g_get_monotonic_time();
    t = g_thread_new("cancel", cancel_thread, &j);
    r = plv_link_recv(s, &type, in, 10000, &err);
    g_thread_join(t);
    ck_cancelled(r, &err, t0);
    g_byte_array_unref(in);
    g_byte_array_unref(data);
    plv_link_close(c);
    plv_link_close(s);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("link");
    TCase *tp = tcase_create("proto");
    tcase_add_test(tp, proto_handshake_ok);
    tcase_add_test(tp, proto_handshake_wrong_secret);
    tcase_add_test(tp, proto_acceptor_macs_last);
    tcase_add_test(tp, proto_channel_mismatch);
    tcase_add_test(tp, proto_channel_in_mac);
    tcase_add_test(tp, proto_expect_peer);
    tcase_add_test(tp, proto_handshake_bad_hello);
    tcase_add_test(tp, proto_frames_roundtrip_and_split);
    tcase_add_test(tp, proto_corruption_rejected);
    tcase_add_test(tp, proto_replay_and_foreign_rejected);
    tcase_add_test(tp, proto_oversize_rejected);
    suite_add_tcase(su, tp);
    TCase *ts = tcase_create("socket");
    tcase_set_timeout(ts, 30);
    tcase_add_test(ts, link_handshake_and_frames);
    tcase_add_test(ts, link_wrong_secret_rejected);
    tcase_add_test(ts, link_garbage_client_rejected);
    tcase_add_test(ts, link_acceptor_sends_no_mac_before_auth);
    tcase_add_test(ts, link_wrong_secret_dialer_gets_no_mac);
    tcase_add_test(ts, link_channel_mismatch_fails_both_ends);
    tcase_add_test(ts, link_expect_peer_mismatch);
    tcase_add_test(ts, link_corrupt_frame_rejected);
    tcase_add_test(ts, link_oversize_rejected);
    tcase_add_test(ts, link_large_frames_with_timeouts);
    tcase_add_test(ts, link_timeouts);
    tcase_add_test(ts, link_send_to_silent_peer_times_out);
    tcase_add_test(ts, link_cancel_from_another_thread);
    tcase_add_test(ts, link_short_secret_refused);
    suite_add_tcase(su, ts);
    return plv_test_run(su);
}
