/*
 * Consensus benchmark: three replica processes on 127.0.0.1.
 *
 * Phase 1 (baseline): the raw round trip and echo throughput of the TCP
 * transport between replica 0 and replica 1, the same transport objects the
 * drivers use next, with 1, 8 and 64 messages outstanding.
 * Phase 2: each replica hands its transport to a driver; the elected leader
 * submits packets (closed loop, 1/8/64 outstanding, 64 B and 1500 B) and
 * times each from submit to its committed callback on the leader.
 *
 * The parent prints absolute numbers and the ratios commit/raw. Environment:
 * PLOVER_BENCH_SECONDS (per commit configuration, default 2; raw runs half).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plover/driver.h"
#include "plover/sockutil.h"

#define N 3
#define MAGIC 0x484e4342u           /* "BCNH" */
#define HDR_LEN 24                  /* magic u32, config u32, seq u64, t u64 */

static const size_t SIZES[] = { 64, 1500 };
static const int OUTSTANDING[] = { 1, 8, 64 };
#define NS G_N_ELEMENTS(SIZES)
#define NO G_N_ELEMENTS(OUTSTANDING)

static const uint8_t SECRET[] = "plover bench secret";

typedef struct {
    double p50, p99, p999;          /* microseconds */
    double rate;                    /* per second */
    double batch;                   /* packets per input entry (commit) */
    uint64_t n;
} Result;

/* Shared with the parent (MAP_SHARED): results and phase flags. */
typedef struct {
    Result raw[NS][NO];
    Result commit[NS][NO];          /* callbacks queued to the bench thread */
    Result inl[NS][NO];             /* callbacks inline on the driver thread */
    int leader;
    int mode;                       /* 1: replicas switch to inline callbacks */
    int stop;
    int failed;
    char why[256];
    unsigned tick_ms;
} Shared;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static double bench_seconds(void)
{
    const char *s = getenv("PLOVER_BENCH_SECONDS");
    double v = s ? atof(s) : 2.0;
    return v > 0.05 ? v : 2.0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentiles of nanosecond samples, in microseconds. */
static void percentiles(GArray *lat, Result *r)
{
    r->n = lat->len;
    if (!lat->len) {
        return;
    }
    qsort(lat->data, lat->len, sizeof(uint32_t), cmp_u32);
    uint32_t *v = (uint32_t *)lat->data;
    r->p50 = v[(size_t)(lat->len * 0.50)] / 1000.0;
    r->p99 = v[MIN((size_t)(lat->len * 0.99), lat->len - 1)] / 1000.0;
    r->p999 = v[MIN((size_t)(lat->len * 0.999), lat->len - 1)] / 1000.0;
}

static void fail(Shared *sh, const char *why)
{
    snprintf(sh->why, sizeof(sh->why), "%s", why);
    __atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
}

static bool stopped(Shared *sh)
{
    return __atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST);
}

static void put_hdr(uint8_t *buf, uint32_t cfg, uint64_t seq, uint64_t t)
{
    uint32_t magic = MAGIC;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &cfg, 4);
    memcpy(buf + 8, &seq, 8);
    memcpy(buf + 16, &t, 8);
}

static bool get_hdr(const uint8_t *buf, size_t len, uint32_t *cfg, uint64_t *t)
{
    uint32_t magic;
    if (len < HDR_LEN) {
        return false;
    }
    memcpy(&magic, buf, 4);
    memcpy(cfg, buf + 4, 4);
    memcpy(t, buf + 16, 8);
    return magic == MAGIC;
}

/* ---- phase 1: raw transport echo ---- */

typedef struct {
    PlvTransport *t;
    uint32_t cfg;
    int outstanding;
    bool measuring;
    uint64_t done;
    GArray *lat;
    bool finished;                  /* echo side: got the end marker */
} Raw;

static void raw_prober_event(void *opaque, const PlvTransportEvent *ev)
{
    Raw *r = opaque;
    uint32_t cfg;
    uint64_t t0;
    if (ev->kind != PLV_TRANSPORT_MESSAGE || !get_hdr(ev->data, ev->len, &cfg, &t0) ||
        cfg != r->cfg) {
        return;
    }
    r->outstanding--;
    if (r->measuring) {
        uint32_t ns = MIN(now_ns() - t0, (uint64_t)G_MAXUINT32);
        g_array_append_val(r->lat, ns);
        r->done++;
    }
}

static void raw_echo_event(void *opaque, const PlvTransportEvent *ev)
{
    Raw *r = opaque;
    if (ev->kind != PLV_TRANSPORT_MESSAGE) {
        return;
    }
    if (ev->len == 1 && ev->data[0] == 'D') {
        r->finished = true;
        return;
    }
    plv_transport_send(r->t, ev->peer, ev->data, ev->len);
}

static bool wait_peers_up(PlvTransport *t, int self, Shared *sh)
{
    uint64_t end = now_ns() + 10 * 1000000000ull;
    for (;;) {
        bool up = true;
        for (int j = 0; j < N; j++) {
            if (j != self && !plv_transport_peer_up(t, j)) {
                up = false;
            }
        }
        if (up) {
            return true;
        }
        if (now_ns() > end || stopped(sh)) {
            return false;
        }
        plv_transport_wait(t, 10, raw_echo_event, &(Raw){ .t = t });
    }
}

static void raw_run(PlvTransport *t, Shared *sh, int si, int oi, double secs)
{
    Raw r = { .t = t, .cfg = si * NO + oi + 1, .lat = g_array_new(FALSE, FALSE, 4) };
    size_t size = SIZES[si];
    uint8_t *buf = g_malloc0(size);
    uint64_t seq = 0;
    uint64_t start = now_ns(), warm = start + 200000000ull;
    uint64_t end = warm + (uint64_t)(secs * 1e9), mstart = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!r.measuring && now >= warm) {
            r.measuring = true;
            mstart = now;
        }
        if (now >= end) {
            break;
        }
        while (r.outstanding < OUTSTANDING[oi]) {
            put_hdr(buf, r.cfg, seq++, now_ns());
            if (plv_transport_send(t, 1, buf, size) < 0) {
                break;
            }
            r.outstanding++;
        }
        plv_transport_wait(t, 100, raw_prober_event, &r);
    }
    double el = (now_ns() - mstart) / 1e9;
    r.measuring = false;
    while (r.outstanding > 0 && now_ns() < end + 2000000000ull) {
        plv_transport_wait(t, 100, raw_prober_event, &r);
    }
    Result *res = &sh->raw[si][oi];
    percentiles(r.lat, res);
    res->rate = r.done / el;
    g_array_unref(r.lat);
    g_free(buf);
}

static void phase_raw(PlvTransport *t, int self, Shared *sh, double secs)
{
    if (self == 0) {
        for (size_t si = 0; si < NS; si++) {
            for (size_t oi = 0; oi < NO; oi++) {
                raw_run(t, sh, si, oi, secs);
            }
        }
        plv_transport_send(t, 1, "D", 1);
        plv_transport_send(t, 2, "D", 1);
        plv_transport_wait(t, 0, raw_echo_event, &(Raw){ .t = t });
        return;
    }
    Raw r = { .t = t };
    while (!r.finished && !stopped(sh)) {
        plv_transport_wait(t, 100, raw_echo_event, &r);
    }
}

/* ---- phase 2: commits through the drivers ---- */

/*
 * Every SYNCVM_EVERY input entries the leader proposes a syncvm, and the
 * executors report it applied, as the VM layer does: that is what lets the
 * state machine truncate its log, so a long run needs it too.
 */
#define SYNCVM_EVERY 256

/*
 * One configuration's closed loop. In queued mode only the bench thread
 * touches it; in inline mode the driver thread runs commit_cb and refills,
 * the bench thread only starts it and reads it once nothing is outstanding.
 */
typedef struct {
    PlvDriver *d;
    uint32_t cfg;                   /* 0: idle, not measuring */
    size_t size;
    int window;
    bool inline_mode;
    int outstanding;                /* atomic */
    uint64_t warm, end;             /* measured commits: in [warm, end) */
    uint64_t done, entries, packets;
    uint64_t since_syncvm;
    uint64_t *epoch;                /* atomic, shared by all contexts */
    uint8_t *buf;
    GArray *lat;
    int refused;                    /* atomic: submit said -EPERM/-EINVAL */
} Commit;

/* Reserve a slot in the window and submit one packet; false if full. */
static bool submit_one(Commit *c, uint8_t *buf)
{
    if (g_atomic_int_add(&c->outstanding, 1) >= c->window) {
        g_atomic_int_add(&c->outstanding, -1);
        return false;
    }
    put_hdr(buf, c->cfg, 0, now_ns());
    int r = plv_driver_submit(c->d, buf, c->size);
    if (r < 0) {
        g_atomic_int_add(&c->outstanding, -1);
        if (r != -ENOBUFS) {
            g_atomic_int_set(&c->refused, 1);
        }
        return false;
    }
    return true;
}

static void commit_cb(void *opaque, const PlvEntry *e)
{
    Commit *c = opaque;
    PlvRole role = plv_driver_role(c->d);
    if (e->op == PLV_OP_SYNCVM) {
        if (role == PLV_ROLE_LEADER || role == PLV_ROLE_SECONDARY) {
            plv_driver_applied_syncvm(c->d, e->index);
        }
        return;
    }
    if (e->op != PLV_OP_INPUT) {
        return;
    }
    if (role == PLV_ROLE_LEADER && ++c->since_syncvm >= SYNCVM_EVERY) {
        c->since_syncvm = 0;
        plv_driver_propose_syncvm(c->d, __atomic_add_fetch(c->epoch, 1,
                                                          __ATOMIC_RELAXED));
    }
    if (!c->cfg) {
        return;
    }
    size_t len;
    const uint8_t *p = plv_entry_payload(e, &len);
    PlvBatchIter it;
    const uint8_t *pkt;
    uint32_t plen;
    uint64_t now = now_ns(), mine = 0;
    bool in_window = now >= c->warm && now < c->end;
    plv_batch_iter_init(&it, p, len);
    while (plv_batch_next(&it, &pkt, &plen)) {
        uint32_t cfg;
        uint64_t t0;
        if (!get_hdr(pkt, plen, &cfg, &t0) || cfg != c->cfg) {
            continue;
        }
        mine++;
        if (in_window) {
            uint32_t ns = MIN(now - t0, (uint64_t)G_MAXUINT32);
            g_array_append_val(c->lat, ns);
            c->done++;
        }
        /* Last: the bench thread reads the results once this reaches 0. */
        g_atomic_int_add(&c->outstanding, -1);
    }
    if (in_window && mine) {
        c->entries++;
        c->packets += mine;
    }
    if (c->inline_mode && now < c->end) {
        while (submit_one(c, c->buf)) {
        }
    }
}

static const PlvDriverCallbacks COMMIT_CB = { .committed = commit_cb };

static void pump(PlvDriver *d, Commit *c, int ms)
{
    if (plv_driver_wait(d, ms)) {
        plv_driver_dispatch(d, &COMMIT_CB, c);
    }
}

static void commit_run(Commit *c, Shared *sh, Result *res, double secs)
{
    uint8_t *buf = g_malloc0(c->size);
    c->lat = g_array_new(FALSE, FALSE, 4);
    c->warm = now_ns() + 300000000ull;
    c->end = c->warm + (uint64_t)(secs * 1e9);
    if (c->inline_mode) {
        c->buf = g_malloc0(c->size);
        plv_driver_set_inline_callbacks(c->d, &COMMIT_CB, c);
        while (submit_one(c, buf)) {
        }
        while (now_ns() < c->end && !stopped(sh)) {
            g_usleep(10000);
        }
    } else {
        while (now_ns() < c->end && !stopped(sh)) {
            while (submit_one(c, buf)) {
            }
            pump(c->d, c, 100);
        }
    }
    uint64_t limit = now_ns() + 5000000000ull;
    while (g_atomic_int_get(&c->outstanding) > 0 && now_ns() < limit) {
        if (c->inline_mode) {
            g_usleep(1000);
        } else {
            pump(c->d, c, 100);
        }
    }
    if (g_atomic_int_get(&c->refused) ||
        plv_driver_role(c->d) != PLV_ROLE_LEADER) {
        fail(sh, "the leader lost its role during a run (a replica starved "
             "of CPU for longer than the suspect timeout?)");
    } else if (g_atomic_int_get(&c->outstanding) > 0) {
        fail(sh, "packets submitted to the leader never committed");
    } else if (c->done == 0) {
        fail(sh, "nothing committed during a measurement window");
    }
    percentiles(c->lat, res);
    res->rate = c->done / ((c->end - c->warm) / 1e9);
    res->batch = c->entries ? (double)c->packets / c->entries : 0;
    g_free(buf);
}

static void phase_commit(PlvTransport *t, int self, Shared *sh, double secs)
{
    PlvDriverConfig dc;
    plv_driver_config_default(&dc);
    dc.paxos.self = self;
    dc.paxos.n = N;
    dc.paxos.seed = 77 + self;
    /* Steady state is what is measured: on a shared 2-CPU machine a replica
     * can be starved for tens of ms, which must not start an election. */
    dc.paxos.suspect_ticks = 100;
    dc.paxos.election_ticks = 100;
    sh->tick_ms = dc.tick_ms;
    GError *err = NULL;
    PlvDriver *d = plv_driver_new(&dc, t, &err);
    if (!d || plv_driver_start(d, &err) < 0) {
        fail(sh, err ? err->message : "driver start failed");
        plv_driver_free(d);
        return;
    }
    uint64_t epoch = 0;
    Commit idle = { .d = d, .epoch = &epoch };
    Commit runs[2][NS][NO];
    memset(runs, 0, sizeof(runs));
    uint64_t deadline = now_ns() + 20 * 1000000000ull;
    while (!stopped(sh) && plv_driver_role(d) != PLV_ROLE_LEADER &&
           __atomic_load_n(&sh->leader, __ATOMIC_SEQ_CST) < 0) {
        pump(d, &idle, 20);
        if (now_ns() > deadline) {
            fail(sh, "no leader elected within 20 s");
        }
    }
    int none = -1;
    if (plv_driver_role(d) == PLV_ROLE_LEADER &&
        __atomic_compare_exchange_n(&sh->leader, &none, self, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        /* Let the new view's first entries commit before timing anything. */
        uint64_t settle = now_ns() + 300000000ull;
        while (now_ns() < settle) {
            pump(d, &idle, 20);
        }
        for (int mode = 0; mode < 2; mode++) {
            if (mode == 1) {
                /* Everyone switches to inline callbacks, then we go on. */
                __atomic_store_n(&sh->mode, 1, __ATOMIC_SEQ_CST);
                g_usleep(200000);
            }
            for (size_t si = 0; si < NS && !stopped(sh); si++) {
                for (size_t oi = 0; oi < NO && !stopped(sh); oi++) {
                    Commit *c = &runs[mode][si][oi];
                    *c = (Commit){ .d = d, .epoch = &epoch,
                                   .cfg = 100 * (mode + 1) + si * NO + oi,
                                   .size = SIZES[si], .window = OUTSTANDING[oi],
                                   .inline_mode = mode == 1,
                                   .since_syncvm = idle.since_syncvm };
                    commit_run(c, sh, mode ? &sh->inl[si][oi]
                                           : &sh->commit[si][oi], secs);
                    idle.since_syncvm = 0;
                }
            }
            if (mode == 1) {
                plv_driver_set_inline_callbacks(d, &COMMIT_CB, &idle);
            }
        }
        __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
    }
    bool switched = false;
    while (!stopped(sh)) {
        if (!switched && __atomic_load_n(&sh->mode, __ATOMIC_SEQ_CST) == 1) {
            plv_driver_set_inline_callbacks(d, &COMMIT_CB, &idle);
            switched = true;
        }
        if (switched) {
            g_usleep(20000);    /* the driver thread runs the callbacks now */
        } else {
            pump(d, &idle, 20);
        }
    }
    plv_driver_free(d);
    for (int m = 0; m < 2; m++) {
        for (size_t si = 0; si < NS; si++) {
            for (size_t oi = 0; oi < NO; oi++) {
                if (runs[m][si][oi].lat) {
                    g_array_unref(runs[m][si][oi].lat);
                }
                g_free(runs[m][si][oi].buf);
            }
        }
    }
}

static int replica_main(int self, const int *lfd, const PlvPeerAddr *addr,
                        Shared *sh)
{
    for (int i = 0; i < N; i++) {
        if (i != self) {
            close(lfd[i]);
        }
    }
    double secs = bench_seconds();
    PlvTcpTransportConfig tc = {
        .self_id = self, .peers = addr, .n_peers = N,
        .secret = SECRET, .secret_len = sizeof(SECRET),
        .listen_fd = lfd[self],
    };
    GError *err = NULL;
    PlvTransport *t = plv_transport_tcp_new(&tc, &err);
    if (!t || plv_transport_start(t, &err) < 0) {
        fail(sh, err ? err->message : "transport start failed");
        return 1;
    }
    if (!wait_peers_up(t, self, sh)) {
        fail(sh, "replicas did not connect within 10 s");
        plv_transport_free(t);
        return 1;
    }
    phase_raw(t, self, sh, secs / 2);
    phase_commit(t, self, sh, secs);    /* the driver owns t from here */
    return 0;
}

static void print_rows(const Shared *sh, const Result (*com)[NO], const char *title)
{
    printf("\n%s\n", title);
    printf("%6s %5s | %9s %9s %11s | %9s %9s %9s %11s %6s | %8s %8s\n",
           "size", "outst", "raw p50", "raw p99", "raw msg/s",
           "com p50", "com p99", "com p999", "com pkt/s", "batch",
           "p50/rtt", "tput/raw");
    for (size_t si = 0; si < NS; si++) {
        for (size_t oi = 0; oi < NO; oi++) {
            const Result *r = &sh->raw[si][oi], *c = &com[si][oi];
            printf("%5zuB %5d | %7.1fus %7.1fus %11.0f | %7.1fus %7.1fus %7.1fus "
                   "%11.0f %6.1f | %8.2f %8.2f\n",
                   SIZES[si], OUTSTANDING[oi], r->p50, r->p99, r->rate,
                   c->p50, c->p99, c->p999, c->rate, c->batch,
                   r->p50 > 0 ? c->p50 / r->p50 : 0,
                   r->rate > 0 ? c->rate / r->rate : 0);
        }
    }
}

static void print_targets(const Shared *sh, const Result (*com)[NO], const char *mode)
{
    const Result *r1 = &sh->raw[0][0], *c1 = &com[0][0], *c64 = &com[0][NO - 1];
    printf("%-8s p50 commit / raw RTT (64 B, 1 outstanding) = %.1f / %.1f us = "
           "%.2fx (target <= 1.50x: %s); 64 B x 64 outstanding: %.0f pkt/s "
           "(target >= 500000: %s)\n", mode, c1->p50, r1->p50,
           r1->p50 > 0 ? c1->p50 / r1->p50 : 0,
           r1->p50 > 0 && c1->p50 <= 1.5 * r1->p50 ? "met" : "NOT met",
           c64->rate, c64->rate >= 500000 ? "met" : "NOT met");
}

static void print_table(const Shared *sh)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double load[1] = { 0 };
    getloadavg(load, 1);
    printf("\nplover consensus benchmark: 3 replica processes on 127.0.0.1, TCP "
           "transport, tick %u ms, leader = replica %d, %ld CPUs, load %.2f\n",
           sh->tick_ms, sh->leader, cpus, load[0]);
    printf("raw    = echo between replicas 0 and 1 over the same transport "
           "objects, before the drivers take them over\n");
    printf("commit = submit on the leader -> committed callback on the leader "
           "(closed loop; p50/rtt and tput/raw against the raw row)\n");
    print_rows(sh, sh->commit, "commit, callbacks queued to the caller's thread "
               "(eventfd; how QEMU's main loop consumes them):");
    print_rows(sh, sh->inl, "commit, callbacks inline on the driver thread "
               "(plv_driver_set_inline_callbacks):");
    printf("\n");
    print_targets(sh, sh->commit, "queued:");
    print_targets(sh, sh->inl, "inline:");
}

int main(void)
{
    Shared *sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(sh, 0, sizeof(*sh));
    sh->leader = -1;

    /* Listening sockets first, so every port is known and free. */
    int lfd[N];
    PlvPeerAddr addr[N];
    for (int i = 0; i < N; i++) {
        GError *err = NULL;
        lfd[i] = plv_sock_listen("127.0.0.1", 0, &err);
        if (lfd[i] < 0) {
            fprintf(stderr, "bench: %s\n", err->message);
            return 1;
        }
        addr[i] = (PlvPeerAddr){ .id = i, .host = "127.0.0.1",
                                 .port = plv_sock_local_port(lfd[i]) };
    }
    fflush(stdout);
    pid_t pid[N];
    for (int i = 0; i < N; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            _exit(replica_main(i, lfd, addr, sh));
        }
    }
    for (int i = 0; i < N; i++) {
        close(lfd[i]);
    }
    /* Bounded: the whole matrix takes well under a minute by default. */
    double limit = 60 + 12 * bench_seconds() * NS * NO;
    uint64_t end = now_ns() + (uint64_t)(limit * 1e9);
    int rc = 0, left = N;
    while (left > 0) {
        int status;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p > 0) {
            left--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                rc = 1;
                __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
            }
            continue;
        }
        if (now_ns() > end) {
            fail(sh, "benchmark timed out");
            for (int i = 0; i < N; i++) {
                kill(pid[i], SIGKILL);
            }
        }
        g_usleep(20000);
    }
    if (sh->failed || rc) {
        fprintf(stderr, "bench-consensus failed: %s\n",
                sh->failed ? sh->why : "a replica crashed");
        return 1;
    }
    print_table(sh);
    return 0;
}
