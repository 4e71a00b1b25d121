/*
 * One authenticated RDMA connection: ring writer, ring reader, credits,
 * control messages (see rdma-conn.h; record format and the completeness
 * argument in docs/rdma.md).
 */
#include "net/rdma/rdma-conn.h"
#include "plover/bytes.h"
#include "plover/iov.h"
#include "plover/record-seal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define SQ_DEPTH    128u
#define N_RECV      64u         /* posted receives: ctrl messages, doorbells */
#define N_SEND      32u         /* ctrl send buffers */
#define CTRL_SZ     128u
#define CTRL_HDR    16u
#define CTRL_MAX    (CTRL_SZ - CTRL_HDR)
#define CQ_DEPTH    (SQ_DEPTH + N_RECV + 64u)

#define REC_HDR     24u
#define REC_TAIL    8u
#define REC_MORE    1u          /* another fragment of this message follows */
#define REC_PAD     2u          /* filler: the next record is at offset 0 */

#define PDATA_MAGIC 0x52564c50u /* "PLVR" */
#define PDATA_VER   2u          /* 2: no ring in it; CTRL_RING after auth */
#define PDATA_SEALED 1u         /* flags: this end seals its records (AEAD) */
#define REC_AAD     16u         /* a sealed record's header, up to csum */
#define RING_MSG    16u         /* CTRL_RING: addr u64, rkey u32, size u32 */

enum { CTRL_HS = 1, CTRL_CREDIT, CTRL_HB, CTRL_CREDIT_REQ, CTRL_RING };

struct PlvRdmaConn {
    struct rdma_cm_id *id;
    bool dialer, established, failed, up;
    PlvRdmaConnParams p;
    struct ibv_pd *pd;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    GError *error;

    /* our receive ring: allocated and announced only after authentication */
    bool ring_sent;             /* its CTRL_RING went out */
    uint8_t *rx;
    size_t rx_size;
    struct ibv_mr *rx_mr;
    uint64_t rx_head;           /* bytes consumed (monotonic) */
    uint64_t rx_seq;            /* next record sequence expected */
    uint64_t doorbell_seq;      /* records up to here are surely placed */
    uint64_t credit_sent;       /* rx_head last reported to the peer */
    bool peer_wants_credit;
    GByteArray *msg;            /* message being reassembled */
    uint16_t msg_type;
    bool msg_open;

    /* the peer's ring (from its CTRL_RING) and our staging copy of it */
    uint64_t raddr;
    uint32_t rkey, claimed_id;
    bool have_remote;           /* its private data was read */
    size_t tx_size;
    uint8_t *tx;
    struct ibv_mr *tx_mr;
    uint64_t tx_head, tx_seq, peer_consumed;
    bool credit_req_sent, doorbell_due;

    /* send queue accounting: wr_id = post number; signaled ones report */
    uint64_t sq_posted, sq_done, last_signaled;

    uint8_t *ctrl;              /* N_RECV recv slots, then N_SEND send slots */
    struct ibv_mr *ctrl_mr;
    uint64_t send_slot_wr[N_SEND];
    unsigned next_send_slot;

    PlvHandshake *hs;
    PlvLinkSession *s;
    /* With p.sealed: each direction's AEAD, a record's tag length, and a
     * buffer per side for the plaintext (writer) and the sealed bytes
     * copied out of the ring (reader), each half a ring. */
    PlvRecordSeal *tx_seal, *rx_seal;
    size_t tag;
    uint8_t *tx_plain, *rx_sealed;
    XXH3_state_t *xs;
    uint8_t tx_secret[XXH3_SECRET_DEFAULT_SIZE];
    uint8_t rx_secret[XXH3_SECRET_DEFAULT_SIZE];
    int64_t last_rx;
    PlvRdmaConnStats st;
};

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* A record of @len payload bytes: header, payload (and, sealed, its tag),
 * padding to 8, canary. */
static size_t rec_size(const PlvRdmaConn *c, size_t len)
{
    return REC_HDR + align8(len + c->tag) + REC_TAIL;
}

/* The smallest record, a filler: a ring tail shorter than that is skipped
 * by both ends (they agree on sealing, so on this). */
static size_t rec_min(const PlvRdmaConn *c)
{
    return rec_size(c, 0);
}

/* The NIC writes the ring behind the compiler's back: aligned acquire loads
 * so later reads of the record are not hoisted above the check. */
static uint64_t load_seq(const uint8_t *p)
{
    return le64toh(__atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE));
}

static void conn_fail(PlvRdmaConn *c, int code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static void conn_fail(PlvRdmaConn *c, int code, const char *fmt, ...)
{
    if (c->failed) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    c->failed = true;
    c->error = g_error_new_literal(PLV_LINK_ERROR, code, m);
    g_free(m);
}

static uint8_t *recv_slot(PlvRdmaConn *c, unsigned i)
{
    return c->ctrl + (size_t)i * CTRL_SZ;
}

static uint8_t *send_slot(PlvRdmaConn *c, unsigned i)
{
    return c->ctrl + (size_t)(N_RECV + i) * CTRL_SZ;
}

static int post_recv(PlvRdmaConn *c, unsigned i)
{
    struct ibv_sge sge = {
        .addr = (uintptr_t)recv_slot(c, i), .length = CTRL_SZ,
        .lkey = c->ctrl_mr->lkey,
    };
    struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
    struct ibv_recv_wr *bad;
    int r = ibv_post_recv(c->id->qp, &wr, &bad);
    if (r) {
        conn_fail(c, PLV_LINK_ERROR_IO, "ibv_post_recv: %s", g_strerror(r));
        return -1;
    }
    return 0;
}

static bool sq_full(const PlvRdmaConn *c)
{
    return c->sq_posted - c->sq_done >= SQ_DEPTH - 2;
}

/*
 * Post one send-queue WR. Completions are requested only every
 * signal_every WRs (selective signaling), or when asked, or when half the
 * queue is unreported — a signaled completion retires all WRs before it.
 */
static int post_send(PlvRdmaConn *c, struct ibv_send_wr *wr, bool signal)
{
    wr->wr_id = ++c->sq_posted;
    if (signal || c->sq_posted - c->last_signaled >= c->p.signal_every ||
        c->sq_posted - c->sq_done >= SQ_DEPTH / 2) {
        wr->send_flags |= IBV_SEND_SIGNALED;
        c->last_signaled = c->sq_posted;
        c->st.signaled++;
    }
    struct ibv_send_wr *bad;
    int r = ibv_post_send(c->id->qp, wr, &bad);
    if (r) {
        conn_fail(c, PLV_LINK_ERROR_IO, "ibv_post_send: %s", g_strerror(r));
        return -1;
    }
    return 0;
}

/* One ctrl message; false if no buffer or queue slot is free right now. */
static bool send_ctrl(PlvRdmaConn *c, int kind, const void *data, size_t len)
{
    unsigned i = c->next_send_slot;
    if (c->failed || !c->established || sq_full(c) ||
        c->send_slot_wr[i] > c->sq_done) {
        return false;
    }
    uint8_t *b = send_slot(c, i);
    memset(b, 0, CTRL_HDR);
    b[0] = kind;
    plv_put_u16(b + 2, len);
    plv_put_u64(b + 8, c->rx_head);
    if (len) {
        memcpy(b + CTRL_HDR, data, len);
    }
    struct ibv_sge sge = {
        .addr = (uintptr_t)b, .length = CTRL_HDR + len, .lkey = c->ctrl_mr->lkey,
    };
    struct ibv_send_wr wr = {
        .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
    };
    if (post_send(c, &wr, true) < 0) {
        return false;
    }
    c->send_slot_wr[i] = c->sq_posted;
    c->next_send_slot = (i + 1) % N_SEND;
    c->credit_sent = c->rx_head;
    return true;
}

static void push_handshake(PlvRdmaConn *c)
{
    const uint8_t *out;
    size_t n;
    while (c->hs && c->established && (n = plv_handshake_output(c->hs, &out))) {
        n = MIN(n, CTRL_MAX);
        if (!send_ctrl(c, CTRL_HS, out, n)) {
            return;             /* retried on the next poll */
        }
        plv_handshake_output_done(c->hs, n);
    }
}

static void *alloc_ring(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n)) {
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

static void derive_secret(const uint8_t *key, char role, uint8_t *out)
{
    static const char label[] = "plover-rdma-ring";
    uint8_t seed[PLV_LINK_KEY_LEN + sizeof(label)];
    memcpy(seed, key, PLV_LINK_KEY_LEN);
    memcpy(seed + PLV_LINK_KEY_LEN, label, sizeof(label) - 1);
    seed[sizeof(seed) - 1] = role;
    XXH3_generateSecret(out, XXH3_SECRET_DEFAULT_SIZE, seed, sizeof(seed));
}

/*
 * Our receive ring, registered for the peer's RDMA WRITEs. Made only once
 * the peer passed the handshake, so a stranger cannot make us allocate and
 * pin it (up to PLV_RDMA_MAX_RING per connection attempt).
 */
static bool open_rx_ring(PlvRdmaConn *c)
{
    c->rx = alloc_ring(c->rx_size);
    if (!c->rx || !(c->rx_mr = ibv_reg_mr(c->pd, c->rx, c->rx_size,
                                          IBV_ACCESS_LOCAL_WRITE |
                                          IBV_ACCESS_REMOTE_WRITE))) {
        conn_fail(c, PLV_LINK_ERROR_IO, "ibv_reg_mr (ring, %zu bytes; is the "
                  "memlock limit high enough?): %s", c->rx_size, g_strerror(errno));
        return false;
    }
    return true;
}

static void finish_handshake(PlvRdmaConn *c)
{
    if (!c->hs || !plv_handshake_done(c->hs)) {
        return;
    }
    uint32_t id = plv_handshake_peer_id(c->hs);
    if (id != c->claimed_id) {
        conn_fail(c, PLV_LINK_ERROR_AUTH,
                  "peer authenticated as %u but claimed %u", id, c->claimed_id);
        return;
    }
    c->s = plv_handshake_finish(c->hs);
    plv_handshake_free(c->hs);
    c->hs = NULL;
    const uint8_t *key = plv_link_session_key_bytes(c->s);
    derive_secret(key, c->dialer ? 'D' : 'A', c->tx_secret);
    derive_secret(key, c->dialer ? 'A' : 'D', c->rx_secret);
    if (c->p.sealed) {
        c->tx_seal = plv_record_seal_new(key, c->dialer ? 'D' : 'A');
        c->rx_seal = plv_record_seal_new(key, c->dialer ? 'A' : 'D');
        if (!c->tx_seal || !c->rx_seal) {
            conn_fail(c, PLV_LINK_ERROR_IO, "AES-256-GCM is not available");
            return;
        }
        c->rx_sealed = g_malloc(c->rx_size / 2);
    }
    open_rx_ring(c);
}

/* Tell the authenticated peer where to write: our ring's address, rkey
 * and size. Retried from poll if no ctrl buffer is free. */
static void send_ring(PlvRdmaConn *c)
{
    if (!c->rx_mr || c->ring_sent || c->failed) {
        return;
    }
    uint8_t m[RING_MSG];
    plv_put_u64(m, (uintptr_t)c->rx);
    plv_put_u32(m + 8, c->rx_mr->rkey);
    plv_put_u32(m + 12, c->rx_size);
    c->ring_sent = send_ctrl(c, CTRL_RING, m, sizeof(m));
}

/* The peer's CTRL_RING: make our staging copy of its ring. */
static void on_ring(PlvRdmaConn *c, const uint8_t *m, size_t len)
{
    if (!c->s) {
        conn_fail(c, PLV_LINK_ERROR_AUTH, "ring offered before authentication");
        return;
    }
    size_t size = len == RING_MSG ? plv_get_u32(m + 12) : 0;
    if (c->tx || size < 64 * 1024 || size > PLV_RDMA_MAX_RING || (size & 4095)) {
        conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "bad ring offer (%zu bytes)", size);
        return;
    }
    c->raddr = plv_get_u64(m);
    c->rkey = plv_get_u32(m + 8);
    c->tx_size = size;
    c->tx = alloc_ring(c->tx_size);
    if (c->tx_seal) {
        c->tx_plain = g_malloc(c->tx_size / 2);
    }
    if (!c->tx || !(c->tx_mr = ibv_reg_mr(c->pd, c->tx, c->tx_size,
                                          IBV_ACCESS_LOCAL_WRITE))) {
        conn_fail(c, PLV_LINK_ERROR_IO, "ibv_reg_mr (staging, %zu bytes): %s",
                  c->tx_size, g_strerror(errno));
    }
}

/*
 * Move connection setup on as far as it goes: handshake out, handshake
 * done, our ring announced. Up once we may write the peer's ring and it
 * may write ours. The peer's SENDs arrive in order, so its CTRL_RING is
 * seen before anything it sends once it is up itself.
 */
static void advance_setup(PlvRdmaConn *c)
{
    push_handshake(c);
    finish_handshake(c);
    send_ring(c);
    if (!c->failed && c->s && c->ring_sent && c->tx_mr) {
        c->up = true;
    }
}

static void on_ctrl(PlvRdmaConn *c, const uint8_t *b, size_t n)
{
    if (n < CTRL_HDR || plv_get_u16(b + 2) > n - CTRL_HDR) {
        conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "short control message");
        return;
    }
    size_t len = plv_get_u16(b + 2);
    int kind = b[0];
    if (kind == CTRL_HS) {
        if (!c->hs) {
            conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "handshake after handshake");
            return;
        }
        size_t used;
        GError *err = NULL;
        int r = plv_handshake_input(c->hs, b + CTRL_HDR, len, &used, &err);
        if (r < 0 || used != len) {
            conn_fail(c, PLV_LINK_ERROR_AUTH, "%s",
                      err ? err->message : "handshake: trailing bytes");
            g_clear_error(&err);
            return;
        }
        advance_setup(c);
        return;
    }
    if (kind == CTRL_RING) {
        on_ring(c, b + CTRL_HDR, len);
        advance_setup(c);
        return;
    }
    if (!c->up) {
        /* Nothing but the handshake is believed before it succeeded. */
        conn_fail(c, PLV_LINK_ERROR_AUTH, "control message before authentication");
        return;
    }
    uint64_t credit = plv_get_u64(b + 8);
    if (credit < c->peer_consumed || credit > c->tx_head || (credit & 7)) {
        c->st.bad_records++;
        conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "bad ring credit %" G_GUINT64_FORMAT,
                  credit);
        return;
    }
    if (credit > c->peer_consumed) {
        c->peer_consumed = credit;
        c->credit_req_sent = false;
    }
    switch (kind) {
    case CTRL_CREDIT:
    case CTRL_HB:
        break;
    case CTRL_CREDIT_REQ:
        c->peer_wants_credit = true;
        break;
    default:
        conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "unknown control message %d", kind);
    }
}

static void on_doorbell(PlvRdmaConn *c, uint32_t imm)
{
    /* The immediate is the low half of the last record's sequence; it is
     * within 2^31 of what we expect next. */
    int32_t delta = (int32_t)(imm - (uint32_t)c->rx_seq);
    uint64_t seq = c->rx_seq + (int64_t)delta;
    if (seq > c->doorbell_seq) {
        c->doorbell_seq = seq;
    }
}

/* Process what the CQ holds; returns how many completions. */
static int poll_cq(PlvRdmaConn *c)
{
    struct ibv_wc wc[16];
    int total = 0;
    for (;;) {
        int n = ibv_poll_cq(c->cq, G_N_ELEMENTS(wc), wc);
        if (n < 0) {
            conn_fail(c, PLV_LINK_ERROR_IO, "ibv_poll_cq failed");
            return total;
        }
        for (int i = 0; i < n && !c->failed; i++) {
            if (wc[i].status != IBV_WC_SUCCESS) {
                conn_fail(c, PLV_LINK_ERROR_CLOSED, "completion error: %s",
                          ibv_wc_status_str(wc[i].status));
                break;
            }
            if (wc[i].opcode & IBV_WC_RECV) {
                c->last_rx = g_get_monotonic_time();
                if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
                    if (c->up) {
                        on_doorbell(c, ntohl(wc[i].imm_data));
                    }
                } else {
                    on_ctrl(c, recv_slot(c, wc[i].wr_id), wc[i].byte_len);
                }
                if (!c->failed) {
                    post_recv(c, wc[i].wr_id);
                }
            } else if (wc[i].wr_id > c->sq_done) {
                c->sq_done = wc[i].wr_id;
            }
        }
        total += n;
        if (n < (int)G_N_ELEMENTS(wc) || c->failed) {
            return total;
        }
    }
}

static uint64_t rec_checksum(PlvRdmaConn *c, const uint8_t *secret,
                             const uint8_t *hdr, const uint8_t *payload,
                             size_t len)
{
    uint8_t h[REC_HDR];
    memcpy(h, hdr, REC_HDR);
    memset(h + 16, 0, 8);
    XXH3_64bits_reset_withSecret(c->xs, secret, XXH3_SECRET_DEFAULT_SIZE);
    XXH3_64bits_update(c->xs, h, REC_HDR);
    XXH3_64bits_update(c->xs, payload, len);
    return XXH3_64bits_digest(c->xs);
}

/*
 * A record at the head that does not check out is either still being
 * placed (no doorbell covers it yet: look again later) or bad (a doorbell
 * covers it, so by the verbs ordering rules it is complete: drop the peer).
 */
static bool not_yet(PlvRdmaConn *c, const char *what)
{
    if (c->failed) {
        return false;           /* draining a dead connection: just stop */
    }
    if (c->doorbell_seq >= c->rx_seq) {
        c->st.bad_records++;
        conn_fail(c, PLV_LINK_ERROR_PROTOCOL, "bad ring record %" G_GUINT64_FORMAT
                  ": %s", c->rx_seq, what);
    } else {
        c->st.torn_retries++;
    }
    return false;
}

/* Take one record off the ring; false if there is none (yet). */
static bool ring_take(PlvRdmaConn *c)
{
    size_t R = c->rx_size;
    size_t off = c->rx_head % R;
    if (R - off < rec_min(c)) {
        c->rx_head += R - off;  /* too small for a record: both sides skip */
        off = 0;
    }
    const uint8_t *r = c->rx + off;
    if (load_seq(r + 8) != c->rx_seq) {
        return false;
    }
    /* Decide on one snapshot of the header, and deliver only bytes that
     * were checked: copy the payload out first, then verify the copy. */
    uint8_t h[REC_HDR];
    memcpy(h, r, REC_HDR);
    uint32_t len = plv_get_u32(h);
    uint16_t flags = plv_get_u16(h + 4);
    size_t total = rec_size(c, len);
    if (plv_get_u64(h + 8) != c->rx_seq || total > R - off || total > R / 2 ||
        ((flags & REC_PAD) && len)) {
        return not_yet(c, "length");
    }
    if (load_seq(r + total - REC_TAIL) != c->rx_seq) {
        return not_yet(c, "canary");
    }
    if (!c->msg_open) {
        g_byte_array_set_size(c->msg, 0);
    }
    size_t had = c->msg->len;
    if (had + (size_t)len > PLV_RDMA_MAX_MSG) {
        c->st.bad_records++;
        conn_fail(c, PLV_LINK_ERROR_TOO_BIG, "message over %u bytes",
                  PLV_RDMA_MAX_MSG);
        return false;
    }
    if (c->rx_seal) {
        /* Open a copy: the peer could rewrite the ring under the cipher. */
        memcpy(c->rx_sealed, r + REC_HDR, len + c->tag);
        g_byte_array_set_size(c->msg, had + len);
        if (!plv_record_open(c->rx_seal, c->rx_seq, h, REC_AAD, c->rx_sealed,
                             len, c->msg->data + had)) {
            g_byte_array_set_size(c->msg, had);
            return not_yet(c, "authentication tag");
        }
    } else {
        g_byte_array_append(c->msg, r + REC_HDR, len);
        if (rec_checksum(c, c->rx_secret, h, c->msg->data + had, len) !=
            plv_get_u64(h + 16)) {
            g_byte_array_set_size(c->msg, had);
            return not_yet(c, "checksum");
        }
    }
    c->st.records_in++;
    c->last_rx = g_get_monotonic_time();
    c->rx_seq++;
    if (flags & REC_PAD) {
        c->rx_head += R - off;
        return true;
    }
    c->rx_head += total;
    if (!c->msg_open) {
        c->msg_open = true;
        c->msg_type = plv_get_u16(h + 6);
    }
    if (!(flags & REC_MORE)) {
        c->msg_open = false;
        c->p.on_msg(c->p.opaque, c, c->msg_type, c->msg->data, c->msg->len);
    }
    return true;
}

static int poll_ring(PlvRdmaConn *c)
{
    int n = 0;
    while (c->up && !c->failed && ring_take(c)) {
        n++;
        if (c->rx_head - c->credit_sent >= c->rx_size / 4) {
            /* Lost if no buffer is free; the next pass or heartbeat
             * carries it. */
            if (send_ctrl(c, CTRL_CREDIT, NULL, 0)) {
                c->st.credits_out++;
            }
        }
    }
    if (c->peer_wants_credit && c->rx_head > c->credit_sent &&
        send_ctrl(c, CTRL_CREDIT, NULL, 0)) {
        c->peer_wants_credit = false;
        c->st.credits_out++;
    }
    return n;
}

int plv_rdma_conn_drain(PlvRdmaConn *c)
{
    int n = 0;
    while (c->up && ring_take(c)) {
        n++;
    }
    return n;
}

int plv_rdma_conn_poll(PlvRdmaConn *c, GError **err)
{
    struct ibv_cq *cq;
    void *ctx;
    int work = 0;
    /* Drain channel events (the fd is non-blocking); arm() re-requests. */
    while (ibv_get_cq_event(c->cc, &cq, &ctx) == 0) {
        ibv_ack_cq_events(cq, 1);
    }
    if (!c->failed) {
        work += poll_cq(c);
        /* The acceptor's AUTH and either end's CTRL_RING may have found no
         * free ctrl buffer, and no reply from the peer prompts them again. */
        advance_setup(c);
        work += poll_ring(c);
    }
    if (c->failed) {
        if (err) {
            *err = g_error_copy(c->error);
        }
        return -1;
    }
    return work;
}

bool plv_rdma_conn_arm(PlvRdmaConn *c)
{
    if (!c->failed && ibv_req_notify_cq(c->cq, 0)) {
        conn_fail(c, PLV_LINK_ERROR_IO, "ibv_req_notify_cq failed");
    }
    return c->failed;
}

/*
 * The record at @r has its header and @len payload bytes in place (in
 * tx_plain if sealed): seal them into the record, or checksum them.
 */
static bool seal_payload(PlvRdmaConn *c, uint8_t *r, size_t len)
{
    size_t body = align8(len + c->tag);
    if (c->tx_seal) {
        if (!plv_record_seal(c->tx_seal, plv_get_u64(r + 8), r, REC_AAD,
                             c->tx_plain, len, r + REC_HDR)) {
            conn_fail(c, PLV_LINK_ERROR_IO, "sealing record %" G_GUINT64_FORMAT
                      " failed", plv_get_u64(r + 8));
            return false;
        }
    }
    memset(r + REC_HDR + len + c->tag, 0, body - len - c->tag);
    if (!c->tx_seal) {
        plv_put_u64(r + 16, rec_checksum(c, c->tx_secret, r, r + REC_HDR, len));
    }
    return true;
}

/* Reserve room for a record of @total bytes at the tail; false if the
 * peer has not freed enough of its ring yet. */
static bool ring_room(PlvRdmaConn *c, size_t total, size_t *off)
{
    size_t R = c->tx_size;
    size_t o = c->tx_head % R;
    size_t lead = 0, min = rec_min(c);
    if (R - o < min || R - o < total) {
        lead = R - o;           /* skip (tiny tail) or pad record */
    }
    if (c->tx_head + lead + total - c->peer_consumed > R) {
        if (!c->credit_req_sent && send_ctrl(c, CTRL_CREDIT_REQ, NULL, 0)) {
            c->credit_req_sent = true;
        }
        return false;
    }
    if (lead >= min) {
        /* Filler so the reader knows to go back to the start. */
        uint8_t *r = c->tx + o;
        plv_put_u32(r, 0);
        plv_put_u16(r + 4, REC_PAD);
        plv_put_u16(r + 6, 0);
        plv_put_u64(r + 8, c->tx_seq);
        plv_put_u64(r + 16, 0);
        if (!seal_payload(c, r, 0)) {
            return false;
        }
        plv_put_u64(r + min - REC_TAIL, c->tx_seq);
        struct ibv_sge sge = {
            .addr = (uintptr_t)r, .length = min, .lkey = c->tx_mr->lkey,
        };
        struct ibv_send_wr wr = {
            .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
            .wr.rdma = { .remote_addr = c->raddr + o, .rkey = c->rkey },
        };
        if (post_send(c, &wr, false) < 0) {
            return false;
        }
        c->tx_seq++;
        c->st.records_out++;
    }
    c->tx_head += lead;
    *off = c->tx_head % R;
    return true;
}

int plv_rdma_conn_write(PlvRdmaConn *c, uint16_t type, const struct iovec *iov,
                        int iovcnt, size_t len, size_t *done)
{
    size_t max_frag = (c->tx_size / 2 - rec_min(c)) & ~(size_t)7;
    if (c->failed) {
        return -1;
    }
    if (!c->up) {
        return 0;
    }
    do {
        size_t frag = MIN(len - *done, max_frag);
        size_t total = rec_size(c, frag), off;
        /* sq_full() keeps two WRs free: a filler and this record. */
        if (sq_full(c) || !ring_room(c, total, &off)) {
            return c->failed ? -1 : 0;
        }
        uint8_t *r = c->tx + off;
        bool more = *done + frag < len;
        plv_put_u32(r, frag);
        plv_put_u16(r + 4, more ? REC_MORE : 0);
        plv_put_u16(r + 6, type);
        plv_put_u64(r + 8, c->tx_seq);
        plv_put_u64(r + 16, 0);
        plv_iov_copy(c->tx_seal ? c->tx_plain : r + REC_HDR, iov, iovcnt, *done,
                     frag);
        if (!seal_payload(c, r, frag)) {
            return -1;
        }
        /* The canary is the record's last bytes: with in-order placement it
         * marks the record complete; the checksum and the doorbell make
         * that hold without it (docs/rdma.md). */
        plv_put_u64(r + total - REC_TAIL, c->tx_seq);
        struct ibv_sge sge = {
            .addr = (uintptr_t)r, .length = total, .lkey = c->tx_mr->lkey,
        };
        struct ibv_send_wr wr = {
            .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
            .wr.rdma = { .remote_addr = c->raddr + off, .rkey = c->rkey },
        };
        if (post_send(c, &wr, false) < 0) {
            return -1;
        }
        c->tx_seq++;
        c->tx_head += total;
        *done += frag;
        c->st.records_out++;
        c->doorbell_due = true;
    } while (*done < len);
    return 1;
}

void plv_rdma_conn_doorbell(PlvRdmaConn *c)
{
    if (!c->doorbell_due || c->failed || sq_full(c)) {
        return;
    }
    /*
     * A zero-length WRITE WITH IMMEDIATE after the batch: its receive
     * completion wakes a sleeping reader, and by the RC ordering rules it
     * is generated only once the records before it are placed.
     */
    struct ibv_send_wr wr = {
        .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
        .imm_data = htonl((uint32_t)(c->tx_seq - 1)),
        .wr.rdma = { .remote_addr = c->raddr, .rkey = c->rkey },
    };
    /* Signaled: a completion per batch lets sends_pending() see the end. */
    if (post_send(c, &wr, true) == 0) {
        c->doorbell_due = false;
        c->st.doorbells_out++;
    }
}

bool plv_rdma_conn_sends_pending(const PlvRdmaConn *c)
{
    return !c->failed && (c->doorbell_due || c->sq_done < c->last_signaled);
}

bool plv_rdma_conn_heartbeat(PlvRdmaConn *c)
{
    return c->up && send_ctrl(c, CTRL_HB, NULL, 0);
}

int64_t plv_rdma_conn_last_rx(const PlvRdmaConn *c)
{
    return c->last_rx;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

PlvRdmaConn *plv_rdma_conn_new(struct rdma_cm_id *id, bool dialer,
                               const PlvRdmaConnParams *p,
                               uint8_t pdata[PLV_RDMA_PDATA_LEN],
                               GError **err)
{
    PlvRdmaConn *c = g_new0(PlvRdmaConn, 1);
    c->dialer = dialer;
    c->p = *p;
    if (!c->p.signal_every) {
        c->p.signal_every = 16;
    }
    c->rx_size = CLAMP((p->ring_bytes + 4095) & ~(size_t)4095, 64 * 1024,
                      PLV_RDMA_MAX_RING);
    c->rx_seq = 1;
    c->tx_seq = 1;
    c->tag = p->sealed ? PLV_SEAL_TAG_LEN : 0;
    c->msg = g_byte_array_new();
    c->xs = XXH3_createState();
    c->last_rx = g_get_monotonic_time();
    c->hs = plv_handshake_new(dialer, p->self_id, p->channel, p->secret,
                              p->secret_len);
    if (dialer) {
        plv_handshake_expect_peer(c->hs, p->expect_peer);
    }
    const char *what = NULL;

    if (!(c->pd = ibv_alloc_pd(id->verbs))) {
        what = "ibv_alloc_pd";
    } else if (!(c->cc = ibv_create_comp_channel(id->verbs)) ||
               set_nonblock(c->cc->fd) < 0) {
        what = "ibv_create_comp_channel";
    } else if (!(c->cq = ibv_create_cq(id->verbs, CQ_DEPTH, NULL, c->cc, 0)) ||
               ibv_req_notify_cq(c->cq, 0)) {
        what = "ibv_create_cq";
    } else {
        struct ibv_qp_init_attr qa = {
            .send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC,
            .cap = { .max_send_wr = SQ_DEPTH, .max_recv_wr = N_RECV,
                     .max_send_sge = 1, .max_recv_sge = 1 },
        };
        /* Only the small ctrl buffers before authentication: the rings
         * come once the peer passed the handshake (open_rx_ring, on_ring). */
        c->ctrl = alloc_ring((N_RECV + N_SEND) * CTRL_SZ);
        if (rdma_create_qp(id, c->pd, &qa)) {
            what = "rdma_create_qp";
        } else if (!c->ctrl || !(c->ctrl_mr = ibv_reg_mr(c->pd, c->ctrl,
                                             (N_RECV + N_SEND) * CTRL_SZ,
                                             IBV_ACCESS_LOCAL_WRITE))) {
            what = "ibv_reg_mr (ctrl)";
        }
    }
    c->id = id;
    if (what) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "%s: %s", what,
                    g_strerror(errno));
        c->id = NULL;           /* the caller keeps the id on failure */
        if (id->qp) {
            rdma_destroy_qp(id);
        }
        plv_rdma_conn_free(c);
        return NULL;
    }
    for (unsigned i = 0; i < N_RECV; i++) {
        if (post_recv(c, i) < 0) {
            g_propagate_error(err, c->error);
            c->error = NULL;
            c->id = NULL;
            rdma_destroy_qp(id);
            plv_rdma_conn_free(c);
            return NULL;
        }
    }
    memset(pdata, 0, PLV_RDMA_PDATA_LEN);
    plv_put_u32(pdata, PDATA_MAGIC);
    plv_put_u16(pdata + 4, PDATA_VER);
    plv_put_u16(pdata + 6, p->sealed ? PDATA_SEALED : 0);
    plv_put_u32(pdata + 8, p->self_id);
    return c;
}

int plv_rdma_conn_set_remote(PlvRdmaConn *c, const void *pdata, size_t len,
                             GError **err)
{
    const uint8_t *d = pdata;
    if (c->have_remote) {
        return 0;               /* the acceptor's ESTABLISHED carries none */
    }
    if (!d || len < PLV_RDMA_PDATA_LEN || plv_get_u32(d) != PDATA_MAGIC ||
        plv_get_u16(d + 4) != PDATA_VER) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH,
                    "bad rdma_cm private data (%zu bytes)", len);
        return -1;
    }
    if (!!(plv_get_u16(d + 6) & PDATA_SEALED) != c->p.sealed) {
        /* Both seal or neither: a record's size depends on it. */
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH, "%s",
                    c->p.sealed ? "the peer does not seal its ring records "
                                  "(it has no tls-creds)"
                                : "the peer seals its ring records (it has "
                                  "tls-creds, this end has none)");
        return -1;
    }
    c->claimed_id = plv_get_u32(d + 8);
    c->have_remote = true;
    return 0;
}

uint32_t plv_rdma_conn_claimed_id(const PlvRdmaConn *c)
{
    return c->claimed_id;
}

int plv_rdma_conn_established(PlvRdmaConn *c)
{
    c->established = true;
    c->last_rx = g_get_monotonic_time();
    /* The peer's first SENDs may have come before this event. */
    advance_setup(c);
    return c->failed ? -1 : 0;
}

int plv_rdma_conn_fd(const PlvRdmaConn *c)
{
    return c->cc->fd;
}

bool plv_rdma_conn_authenticated(const PlvRdmaConn *c)
{
    return c->up && !c->failed;
}

bool plv_rdma_conn_handshake_passed(const PlvRdmaConn *c)
{
    return c->s != NULL;
}

bool plv_rdma_conn_failed(const PlvRdmaConn *c)
{
    return c->failed;
}

uint32_t plv_rdma_conn_peer_id(const PlvRdmaConn *c)
{
    return c->s ? plv_link_session_peer_id(c->s) : c->claimed_id;
}

const uint8_t *plv_rdma_conn_session_key(const PlvRdmaConn *c)
{
    return c->s ? plv_link_session_key_bytes(c->s) : NULL;
}

struct rdma_cm_id *plv_rdma_conn_id(const PlvRdmaConn *c)
{
    return c->id;
}

void plv_rdma_conn_stats(const PlvRdmaConn *c, PlvRdmaConnStats *out)
{
    *out = c->st;
}

void plv_rdma_conn_free(PlvRdmaConn *c)
{
    if (!c) {
        return;
    }
    if (c->id) {
        rdma_disconnect(c->id);
        if (c->id->qp) {
            rdma_destroy_qp(c->id);
        }
    }
    if (c->rx_mr) {
        ibv_dereg_mr(c->rx_mr);
    }
    if (c->tx_mr) {
        ibv_dereg_mr(c->tx_mr);
    }
    if (c->ctrl_mr) {
        ibv_dereg_mr(c->ctrl_mr);
    }
    if (c->cq) {
        ibv_destroy_cq(c->cq);
    }
    if (c->cc) {
        ibv_destroy_comp_channel(c->cc);
    }
    if (c->pd) {
        ibv_dealloc_pd(c->pd);
    }
    if (c->id) {
        rdma_destroy_id(c->id);
    }
    free(c->rx);
    free(c->tx);
    free(c->ctrl);
    plv_handshake_free(c->hs);
    plv_link_session_free(c->s);
    plv_record_seal_free(c->tx_seal);
    plv_record_seal_free(c->rx_seal);
    g_free(c->tx_plain);
    g_free(c->rx_sealed);
    XXH3_freeState(c->xs);
    g_byte_array_unref(c->msg);
    if (c->error) {
        g_error_free(c->error);
    }
    g_free(c);
}
