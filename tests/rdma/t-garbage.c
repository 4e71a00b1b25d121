/*
 * Peers that do not follow the protocol, played by a raw rdma_cm/verbs
 * client in a child process against a real transport: garbage private
 * data, a client that is offered no ring and sends garbage handshake
 * bytes, a client that connects and says nothing. Each must be rejected and counted; nothing
 * may be delivered; the transport must stay healthy for a real peer.
 */
#include "harness.h"
#include "net.h"
#include "suites.h"
#include "plover/bytes.h"
#include "plover/link-proto.h"

#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>

/* The private data and control message layouts (docs/rdma.md), written
 * by hand here. */
#define PD_MAGIC  0x52564c50u
#define CTRL_HS   1
#define CTRL_RING 5
#define RAW_RING  65536

typedef struct Raw {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t *buf;
    uint8_t peer_pdata[64];
    uint8_t *ring;              /* what we offer the server to write into */
    struct ibv_mr *ring_mr;
    uint64_t peer_ring;         /* the server's ring, from its CTRL_RING */
    uint32_t peer_rkey;
    bool have_peer_ring;
} Raw;

/* Next cm event (acked); its type, or -1 after @ms. */
static int raw_event(Raw *r, int ms)
{
    struct pollfd pf = { .fd = r->ec->fd, .events = POLLIN };
    if (poll(&pf, 1, ms) <= 0) {
        return -1;
    }
    struct rdma_cm_event *e;
    if (rdma_get_cm_event(r->ec, &e)) {
        return -1;
    }
    int type = e->event;
    if (type == RDMA_CM_EVENT_ESTABLISHED && e->param.conn.private_data) {
        memcpy(r->peer_pdata, e->param.conn.private_data,
               MIN(e->param.conn.private_data_len, sizeof(r->peer_pdata)));
    }
    rdma_ack_cm_event(e);
    return type;
}

/* Connect to @port with @pdata; returns the cm event that ended it. */
static int raw_connect(Raw *r, uint16_t port, const void *pdata, size_t len)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, plv_rdma_test_addr(), &sa.sin_addr);
    memset(r, 0, sizeof(*r));
    r->ec = rdma_create_event_channel();
    if (!r->ec || rdma_create_id(r->ec, &r->id, NULL, RDMA_PS_TCP) ||
        rdma_resolve_addr(r->id, NULL, (struct sockaddr *)&sa, 2000) ||
        raw_event(r, 10000) != RDMA_CM_EVENT_ADDR_RESOLVED ||
        rdma_resolve_route(r->id, 2000) ||
        raw_event(r, 10000) != RDMA_CM_EVENT_ROUTE_RESOLVED) {
        return -1;
    }
    r->pd = ibv_alloc_pd(r->id->verbs);
    r->cq = ibv_create_cq(r->id->verbs, 64, NULL, NULL, 0);
    struct ibv_qp_init_attr qa = {
        .send_cq = r->cq, .recv_cq = r->cq, .qp_type = IBV_QPT_RC,
        .cap = { .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1,
                 .max_recv_sge = 1 },
    };
    r->buf = calloc(1, 65536);
    if (!r->pd || !r->cq || rdma_create_qp(r->id, r->pd, &qa) ||
        !(r->mr = ibv_reg_mr(r->pd, r->buf, 65536, IBV_ACCESS_LOCAL_WRITE |
                             IBV_ACCESS_REMOTE_WRITE))) {
        return -1;
    }
    struct rdma_conn_param cp = { .private_data = pdata,
                                  .private_data_len = len,
                                  .retry_count = 7, .rnr_retry_count = 7 };
    if (rdma_connect(r->id, &cp)) {
        return -1;
    }
    return raw_event(r, 20000);
}

static void valid_pdata(uint8_t *pd)
{
    memset(pd, 0, 32);
    plv_put_u32(pd, PD_MAGIC);
    pd[4] = 2;                  /* version */
    pd[6] = plv_rdma_test_sealed();   /* flags: seals its records */
    plv_put_u32(pd + 8, 0);           /* claims to be replica 0 */
}

static int post_write(Raw *r, uint64_t raddr, uint32_t rkey, size_t len,
                      bool imm)
{
    struct ibv_sge sge = { (uintptr_t)r->buf, len, r->mr->lkey };
    struct ibv_send_wr wr = {
        .sg_list = &sge, .num_sge = len ? 1 : 0,
        .opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
        .send_flags = IBV_SEND_SIGNALED, .imm_data = htonl(1),
        .wr.rdma = { .remote_addr = raddr, .rkey = rkey },
    }, *bad;
    return ibv_post_send(r->id->qp, &wr, &bad);
}

static int post_sendmsg(Raw *r, size_t len)
{
    struct ibv_sge sge = { (uintptr_t)r->buf, len, r->mr->lkey };
    struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1,
                              .opcode = IBV_WR_SEND,
                              .send_flags = IBV_SEND_SIGNALED }, *bad;
    return ibv_post_send(r->id->qp, &wr, &bad);
}

/* Connect with well-formed private data claiming replica 0, or exit. */
static void raw_connect_valid(Raw *r, uint16_t port, int fail_code)
{
    uint8_t pd[32];
    valid_pdata(pd);
    if (raw_connect(r, port, pd, sizeof(pd)) != RDMA_CM_EVENT_ESTABLISHED) {
        _exit(fail_code);
    }
}

/*
 * Write a record that looks complete (sequence 1, canary 1) but carries a
 * checksum that is not the keyed one (sealed: a tag that is not the
 * AEAD's, after 16 bytes that are not its ciphertext), then a doorbell
 * announcing it.
 */
static int write_bad_record(Raw *r, const char text[16])
{
    uint64_t raddr = r->peer_ring;
    uint32_t rkey = r->peer_rkey;
    uint8_t *b = r->buf;
    size_t size = plv_rdma_test_sealed() ? 64 : 48;
    memset(b, 0, size);
    plv_put_u32(b, 16);
    b[6] = 1;                   /* the transport's message type */
    plv_put_u64(b + 8, 1);
    plv_put_u64(b + 16, 0x1234);
    memcpy(b + 24, text, 16);
    memset(b + 40, 0x5a, size - 48);
    plv_put_u64(b + size - 8, 1);
    return post_write(r, raddr, rkey, size, false) ||
           post_write(r, raddr, rkey, 0, true);
}

/* Exit 0 once the server hangs up on us, @fail_code if it does not. */
static void expect_hangup(Raw *r, int fail_code)
{
    for (int i = 0; i < 10; i++) {
        if (raw_event(r, 5000) == RDMA_CM_EVENT_DISCONNECTED) {
            _exit(0);
        }
    }
    _exit(fail_code);
}

/* Child bodies: exit 0 if the server behaved. */
static void child_garbage_pdata(uint16_t port)
{
    Raw r;
    const char junk[] = "garbage, not plover";
    int ev = raw_connect(&r, port, junk, sizeof(junk));
    _exit(ev == RDMA_CM_EVENT_REJECTED ? 0 : 10 + (ev < 0 ? 0 : ev));
}

static void child_no_ring_bad_hello(uint16_t port)
{
    Raw r;
    raw_connect_valid(&r, port, 20);
    /* A client that has not authenticated is told of no ring to write. */
    for (int i = 12; i < 32; i++) {
        if (r.peer_pdata[i]) {
            _exit(21);
        }
    }
    /* Then garbage where the handshake's HELLO belongs. */
    uint8_t *b = r.buf;
    memset(b, 0, 128);
    b[0] = 1;                   /* handshake bytes */
    b[2] = 44;
    memset(b + 16, 0xa5, 44);
    if (post_sendmsg(&r, 60)) {
        _exit(22);
    }
    expect_hangup(&r, 23);
}

static void child_silent(uint16_t port)
{
    Raw r;
    raw_connect_valid(&r, port, 30);
    expect_hangup(&r, 31);
}

static int post_recvs(Raw *r)
{
    for (int i = 0; i < 16; i++) {
        struct ibv_sge sge = { (uintptr_t)r->buf + 32768 + i * 128, 128, r->mr->lkey };
        struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 }, *bad;
        if (ibv_post_recv(r->id->qp, &wr, &bad)) {
            return -1;
        }
    }
    return 0;
}

/* A control SEND of @kind from @slot (0..7) of the staging area. */
static int raw_ctrl(Raw *r, unsigned slot, int kind, const void *data,
                    size_t n)
{
    uint8_t *b = r->buf + 16384 + slot * 128;
    memset(b, 0, 16);
    b[0] = kind;
    b[2] = n;
    memcpy(b + 16, data, n);
    struct ibv_sge sge = { (uintptr_t)b, 16 + n, r->mr->lkey };
    struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1,
                              .opcode = IBV_WR_SEND,
                              .send_flags = IBV_SEND_SIGNALED }, *bad;
    return ibv_post_send(r->id->qp, &wr, &bad);
}

/* Offer the server a ring of our own, as an authenticated peer must. */
static int raw_offer_ring(Raw *r)
{
    if (posix_memalign((void **)&r->ring, 4096, RAW_RING) ||
        !(r->ring_mr = ibv_reg_mr(r->pd, r->ring, RAW_RING,
                                  IBV_ACCESS_LOCAL_WRITE |
                                  IBV_ACCESS_REMOTE_WRITE))) {
        return -1;
    }
    uint8_t m[16];
    plv_put_u64(m, (uintptr_t)r->ring);
    plv_put_u32(m + 8, r->ring_mr->rkey);
    plv_put_u32(m + 12, RAW_RING);
    return raw_ctrl(r, 7, CTRL_RING, m, sizeof(m));
}

static void raw_got_ring(Raw *r, const uint8_t *m)
{
    r->peer_ring = plv_get_u64(m + 16);
    r->peer_rkey = plv_get_u32(m + 24);
    r->have_peer_ring = true;
}

/*
 * Run the link handshake over control SENDs (layout: docs/rdma.md), then
 * swap ring offers: the server's comes after its AUTH, ours after we
 * checked that AUTH.
 */
static int raw_handshake(Raw *r)
{
    PlvHandshake *hs = plv_handshake_new(true, 0, PLV_LINK_CHANNEL_CONSENSUS,
                                         NET_SECRET, sizeof(NET_SECRET));
    plv_handshake_expect_peer(hs, 1);
    unsigned slot = 0;
    int rc = -1;
    for (int spins = 0; spins < 20000 &&
         !(plv_handshake_done(hs) && r->have_peer_ring); spins++) {
        const uint8_t *out;
        size_t n = plv_handshake_output(hs, &out);
        if (n) {
            n = MIN(n, 112);
            if (raw_ctrl(r, slot++ % 6, CTRL_HS, out, n)) {
                goto out;
            }
            plv_handshake_output_done(hs, n);
        }
        struct ibv_wc wc;
        while (ibv_poll_cq(r->cq, 1, &wc) == 1) {
            if (wc.status != IBV_WC_SUCCESS) {
                goto out;
            }
            if (wc.opcode == IBV_WC_RECV) {
                const uint8_t *m = r->buf + 32768 + wc.wr_id * 128;
                size_t used;
                if (m[0] == CTRL_HS &&
                    plv_handshake_input(hs, m + 16, m[2], &used, NULL) < 0) {
                    goto out;
                }
                if (m[0] == CTRL_RING) {
                    raw_got_ring(r, m);
                }
            }
        }
        usleep(1000);           /* one vCPU's worth of politeness */
    }
    rc = plv_handshake_done(hs) && r->have_peer_ring ? raw_offer_ring(r) : -1;
out:
    plv_handshake_free(hs);
    return rc;
}

/* A peer with the secret whose ring record fails its checksum. */
static void child_authenticated_corrupt(uint16_t port)
{
    Raw r;
    raw_connect_valid(&r, port, 40);
    if (post_recvs(&r) || raw_handshake(&r)) {
        _exit(41);
    }
    /* The doorbell says the record is complete, so it is judged bad. */
    if (write_bad_record(&r, "corrupt message!")) {
        _exit(42);
    }
    expect_hangup(&r, 43);
}

/*
 * Endpoint 1 of a two-replica set listens; the child plays replica 0.
 * Afterwards the real replica 0 must still connect and deliver.
 */
static void run_against(void (*child)(uint16_t), uint16_t base, bool authenticates)
{
    Net net;
    net_prepare(&net, base, 64 * 1024);
    /* Fork before this process touches RDMA: verbs contexts opened here
     * must not be used by the child. The child starts once we listen. */
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) {
            _exit(99);
        }
        child(base + 1);
    }
    close(go[0]);
    net.t[1] = net_endpoint(&net, 1, NET_SECRET, sizeof(NET_SECRET));
    CHECK(write(go[1], "g", 1) == 1);
    close(go[1]);
    int st = 0;
    gint64 end = g_get_monotonic_time() + 90 * 1000000ll;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (g_get_monotonic_time() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            CHECKF(false, "raw client did not finish");
        }
        net_pump(&net, 20);
    }
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "raw client: status %d",
           WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
    net_pump(&net, 50);
    PlvTransportStats s;
    plv_transport_stats(net.t[1], &s);
    if (authenticates) {
        /* It got in, then broke the rules: counted, reported down. */
        CHECKF(s.malformed_dropped >= 1, "malformed %" G_GUINT64_FORMAT,
               s.malformed_dropped);
        CHECK(net.up[1][0] == 1 && net.down[1][0] == 1);
    } else {
        CHECKF(s.auth_failures >= 1, "auth_failures %" G_GUINT64_FORMAT,
               s.auth_failures);
        CHECK(net.up[1][0] == 0);
    }
    CHECK(s.frames_in == 0 && g_queue_is_empty(&net.got[1]));

    /* Still healthy: the real replica 0 gets through. */
    net.t[0] = net_endpoint(&net, 0, NET_SECRET, sizeof(NET_SECRET));
    NET_PUMP_UNTIL(&net, net.up[1][0] == (authenticates ? 2 : 1) &&
                   plv_transport_peer_up(net.t[1], 0), 30000);
    CHECK(plv_transport_send(net.t[0], 1, "hello", 5) == 0);
    NET_PUMP_UNTIL(&net, !g_queue_is_empty(&net.got[1]), 30000);
    NetRec *r = net_pop(&net, 1);
    CHECK(r->data->len == 5 && !memcmp(r->data->data, "hello", 5));
    net_rec_free(r);
    net_free(&net);
}

static void t_garbage_pdata(void)
{
    run_against(child_garbage_pdata, 18200, false);
}

static void t_no_ring_bad_hello(void)
{
    run_against(child_no_ring_bad_hello, 18210, false);
}

static void t_silent_client(void)
{
    run_against(child_silent, 18220, false);
}

static void t_authenticated_corrupt(void)
{
    run_against(child_authenticated_corrupt, 18230, true);
}

const PlvRdmaTest plv_rdma_garbage_tests[] = {
    { "garbage_private_data_rejected", t_garbage_pdata, 120 },
    { "garbage_no_ring_before_auth_bad_hello", t_no_ring_bad_hello, 120 },
    { "garbage_silent_client_times_out", t_silent_client, 120 },
    { "garbage_corrupt_record_from_authenticated_peer", t_authenticated_corrupt, 120 },
};
const size_t plv_rdma_garbage_n = G_N_ELEMENTS(plv_rdma_garbage_tests);
