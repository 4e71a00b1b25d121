/*
 * kvctl: host-side client of the test guest's kvd (tests/guest/kvd.c).
 *
 *   kvctl [--timeout S] HOST PORT CMD [ARG...]   one request, print the reply
 *   kvctl wait HOST PORT [--timeout S]           until PING answers PONG
 *   kvctl restart HOST PORT [--timeout S]        RESTART a durable kvd, wait
 *                                                until it answers again
 *   kvctl load HOST PORT --clients C --seconds S --keys K
 *              [--write-ratio R] [--value-size N] [--timeout S]
 *              [--prefix P] [--seed N] [--reconnect]
 *              [--verify] [--verify-timeout S] [--reply-log FILE]
 *
 * The load generator is also a checker: every client owns a disjoint slice
 * of the key space, remembers what it wrote, and verifies every reply
 * against that.  A wrong answer is the failure the replication tests exist
 * to catch, so any one of them makes the exit status non-zero.
 *
 * A failover must lose no acknowledged write, so --verify reads every key
 * back once after the load (reconnecting as needed, up to --verify-timeout,
 * default 60 s): a key must hold its last acknowledged value, or, where a
 * later write's reply was lost, that write's value instead.  The load also
 * reports the service gap: the longest time in which no client got an
 * answer, i.e. how long a failover kept the service away.
 *
 * --reply-log FILE (or KVCTL_REPLY_LOG in the environment, for scripts that
 * start the load through a helper) writes one line per request of the
 * timed load, after it: when it ended (wall clock, ns since the epoch, so
 * it lines up with `date +%s%N` taken by a script), its latency in us, and
 * whether it was answered (0), refused with ERR (1) or got no reply (2: a
 * network error or a timeout; the latency is then the time until the
 * client gave up).  That is what a timeline of a failover is drawn from.
 *
 * SIGUSR1 ends the timed load early (the soak does, once its faults are
 * healed); --verify then runs as usual.
 *
 * Exit status: 0 success; 1 a wrong answer (or an ERR reply to a single
 * command), or a key --verify found lost or wrong; 2 usage error, timeout,
 * no request answered at all, or --verify unable to read every key back in
 * time; 3 network errors during a load run without --reconnect.
 *
 * Every socket operation has a deadline (poll), and every loop is bounded by
 * a count or a clock, so a hung guest can never hang a test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE    2048    /* kvd's request limit */
#define MAX_VALUE   1024    /* kvd's value limit */
#define MAX_CLIENTS 1024
#define MAX_REPORTS 10      /* wrong answers described per client */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* Wall clock, to line up with `date +%s%N` taken by a script. */
static uint64_t wall_ns(void) { return clock_ns(CLOCK_REALTIME); }

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    nanosleep(&ts, NULL);
}

static int ms_until(double deadline)
{
    double left = deadline - now_s();
    return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

/* ---- one connection, every operation under a deadline ---- */

struct conn {
    int fd;
    size_t have;
    char buf[MAX_LINE * 2];
    char err[128];
};

static int conn_fail(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int conn_fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    if (c->fd >= 0) {
        /* Reset rather than close: an ordinary close would leave the kernel
         * retransmitting a request we gave up on, which could then land
         * after later requests on the same key and undo them. */
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c->fd);
    }
    c->fd = -1;
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int conn_open(struct conn *c, const char *host, const char *port,
                     double timeout)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
    double deadline = now_s() + timeout;

    c->fd = -1;
    c->have = 0;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        return conn_fail(c, "%s:%s: %s", host, port, gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
            conn_fail(c, "connect: %s", strerror(errno));
            continue;
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int n = poll(&p, 1, ms_until(deadline));
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (n <= 0) {
            conn_fail(c, "connect: %s", n == 0 ? "timed out" : strerror(errno));
            continue;
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
            conn_fail(c, "connect: %s", strerror(soerr));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    return -1;
}

/* Waits until the server closes the connection (end of file or reset);
 * whatever it still sends is dropped. */
static int conn_wait_closed(struct conn *c, double timeout)
{
    double deadline = now_s() + timeout;
    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int n = poll(&p, 1, ms_until(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return conn_fail(c, "connection not closed: %s",
                             n == 0 ? "timed out" : strerror(errno));
        char buf[256];
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            conn_close(c);
            return 0;
        }
    }
}

/* Sends one request line and reads one reply line (without its newline)
 * into reply.  On failure the connection is closed and c->err says why. */
static int conn_request(struct conn *c, const char *req, char *reply,
                        size_t cap, double timeout)
{
    double deadline = now_s() + timeout;
    char line[MAX_LINE + 2];
    int len = snprintf(line, sizeof(line), "%s\n", req);
    if (len < 0 || (size_t)len >= sizeof(line))
        return conn_fail(c, "request too long");

    for (int off = 0; off < len;) {
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        int n = poll(&p, 1, ms_until(deadline));
        if (n <= 0)
            return conn_fail(c, "send: %s", n == 0 ? "timed out" : strerror(errno));
        ssize_t w = send(c->fd, line + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w <= 0)
            return conn_fail(c, "send: %s", strerror(errno));
        off += (int)w;
    }

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(reply, c->buf, copy);
            reply[copy] = '\0';
            if (copy && reply[copy - 1] == '\r')
                reply[copy - 1] = '\0';
            memmove(c->buf, nl + 1, c->have - n - 1);
            c->have -= n + 1;
            return 0;
        }
        if (c->have == sizeof(c->buf))
            return conn_fail(c, "reply too long");
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int n = poll(&p, 1, ms_until(deadline));
        if (n <= 0)
            return conn_fail(c, "recv: %s", n == 0 ? "timed out" : strerror(errno));
        ssize_t r = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            return conn_fail(c, "recv: %s", r == 0 ? "connection closed" : strerror(errno));
        c->have += (size_t)r;
    }
}

/* ---- latency histogram: exact below 2 ms, then 64 steps per octave ---- */

#define H_LIN   2048u
#define H_SUB   64u
#define H_OCT   30u      /* octaves 2^11 .. 2^40 us */
#define H_N     (H_LIN + H_SUB * H_OCT)

static unsigned h_index(uint64_t us)
{
    if (us < H_LIN)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us);    /* >= 11 */
    unsigned i = H_LIN + (e - 11) * H_SUB + (unsigned)((us >> (e - 6)) & (H_SUB - 1));
    return i < H_N ? i : H_N - 1;
}

static uint64_t h_value(unsigned i)   /* lower bound of bucket i, in us */
{
    if (i < H_LIN)
        return i;
    unsigned e = 11 + (i - H_LIN) / H_SUB, sub = (i - H_LIN) % H_SUB;
    return (uint64_t)(H_SUB + sub) << (e - 6);
}

static uint64_t h_percentile(const uint64_t *h, uint64_t total, double p)
{
    uint64_t rank = (uint64_t)(p * (double)total + 0.999999), seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < H_N; i++) {
        seen += h[i];
        if (seen >= rank)
            return h_value(i);
    }
    return 0;
}

/* ---- load ---- */

/* What one key may hold.  A value is named by this client's sequence
 * number for it, 0 standing for "absent" (sequence numbers start at 1).
 * base is the last value acknowledged (or read back); doubt lists, in the
 * order they were sent, the writes since then whose reply was lost: each
 * may or may not have happened, so the key may hold base or any of them. */
struct key {
    uint64_t base;
    uint64_t *doubt;
    uint32_t ndoubt, cap;
};

#define NO_MATCH (-2)

struct load_opts {
    const char *host, *port, *prefix, *reply_log;
    unsigned clients, keys, value_size;
    double seconds, write_ratio, timeout;
    uint64_t seed;
    bool reconnect, verify;
    double verify_timeout;
};

/* One request of the timed load, for --reply-log. */
enum { REPLY_OK, REPLY_ERR, REPLY_NONE };
struct reply_rec {
    uint64_t wall_ns;       /* when it ended */
    uint32_t us;            /* latency */
    uint32_t status;        /* REPLY_* */
};

struct client {
    pthread_t thread;
    const struct load_opts *o;
    unsigned id, nkeys;
    struct key *keys;
    uint64_t ctr, ctr_unsure;   /* counter: confirmed value, INCRs with lost replies */
    uint64_t rng, seq;
    uint64_t gets, sets, dels, incrs, wrong, neterrs, reports;
    /* --verify: keys read back, found rolled back, found wrong, in doubt */
    uint64_t checked, lost, vwrong, indoubt, vneterrs;
    uint64_t hist[H_N];
    double deadline;
    uint64_t gap_ns, gap_from_ns;   /* longest gap this client's successes ended */
    uint64_t load_end_ns;           /* when this client's timed load stopped */
    struct reply_rec *log;          /* --reply-log: this client's requests */
    size_t nlog, caplog;
    bool log_short;                 /* out of memory: the log stops early */
};

/* The service gap: the longest stretch in which no client saw a request
 * answered, i.e. how long a failover kept the service away.  Clients
 * complete requests in an order their clock readings need not follow, so
 * the shared timestamp only ever moves forward; whoever moves it measures
 * the gap it closes, so each gap is measured exactly once. */
static _Atomic uint64_t last_success_ns;

static void note_success(struct client *c)
{
    uint64_t now = now_ns(), last = atomic_load(&last_success_ns);
    /* Bounded: a failed exchange means another client moved the stamp
     * forward; once it is past our reading there is no gap to measure. */
    for (int tries = 0; tries < 1000 && last < now; tries++) {
        if (atomic_compare_exchange_weak(&last_success_ns, &last, now)) {
            if (now - last > c->gap_ns) {
                c->gap_ns = now - last;
                c->gap_from_ns = last;
            }
            return;
        }
    }
}

static void log_reply(struct client *c, uint64_t us, int status)
{
    if (!c->o->reply_log || c->log_short)
        return;
    if (c->nlog == c->caplog) {
        size_t cap = c->caplog ? c->caplog * 2 : 4096;
        struct reply_rec *l = realloc(c->log, cap * sizeof(*l));
        if (!l) {
            c->log_short = true;
            return;
        }
        c->log = l;
        c->caplog = cap;
    }
    c->log[c->nlog++] = (struct reply_rec){
        .wall_ns = wall_ns(), .us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us,
        .status = (uint32_t)status,
    };
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: per-client streams, reproducible with --seed. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static void key_name(const struct client *c, unsigned k, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s-c%u-k%u", c->o->prefix, c->id, k);
}

/* Values name their writer and sequence number, so an unexpected one
 * tells where it came from; padding gives them the requested size. */
static void value_of(const struct client *c, uint64_t seq, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "v%s-%u-%" PRIu64 "-", c->o->prefix, c->id, seq);
    size_t want = c->o->value_size < cap - 1 ? c->o->value_size : cap - 1;
    for (size_t i = (size_t)n; i < want; i++)
        buf[i] = (char)('a' + (i % 26));
    buf[(size_t)n > want ? (size_t)n : want] = '\0';
}

static void wrong(struct client *c, const char *req, const char *got, const char *want)
{
    c->wrong++;
    if (c->reports++ < MAX_REPORTS)
        fprintf(stderr, "kvctl: client %u: WRONG: %s -> \"%s\", expected %s\n",
                c->id, req, got, want);
}

static void key_settle(struct key *key, uint64_t v)
{
    key->base = v;
    key->ndoubt = 0;
}

static void key_doubt(struct key *key, uint64_t v)
{
    if (key->ndoubt == key->cap) {
        /* Grows only with lost replies, which each cost a broken
         * connection, so the lists stay short. */
        uint32_t cap = key->cap ? key->cap * 2 : 4;
        uint64_t *d = realloc(key->doubt, cap * sizeof(*d));
        if (!d) {
            fprintf(stderr, "kvctl: out of memory\n");
            exit(2);
        }
        key->doubt = d;
        key->cap = cap;
    }
    key->doubt[key->ndoubt++] = v;
}

/* Which of the key's possible values v is: -1 base, i doubt[i], or
 * NO_MATCH.  The newest match wins: the later writes are the ones a read
 * showing that value rules in. */
static int key_match(const struct key *key, uint64_t v)
{
    for (int i = (int)key->ndoubt - 1; i >= 0; i--) {
        if (key->doubt[i] == v)
            return i;
    }
    return key->base == v ? -1 : NO_MATCH;
}

/* A GET reply as one of this client's values: 0 for NOTFOUND, 1 with *v
 * set for a value this client wrote, -1 for anything else. */
static int parse_value(const struct client *c, const char *reply, uint64_t *v)
{
    char pre[64], want[MAX_VALUE + 16];
    uint64_t seq;

    *v = 0;
    if (!strcmp(reply, "NOTFOUND"))
        return 0;
    int n = snprintf(pre, sizeof(pre), "VALUE v%s-%u-", c->o->prefix, c->id);
    if (strncmp(reply, pre, (size_t)n) || sscanf(reply + n, "%" SCNu64, &seq) != 1 ||
        seq == 0)
        return -1;
    value_of(c, seq, want, sizeof(want));
    if (strcmp(reply + 6, want))
        return -1;
    *v = seq;
    return 1;
}

/* What the key may hold, for a report: "VALUE ..." or "NOTFOUND", the
 * in-doubt alternatives after " or ". */
static void key_describe(const struct client *c, const struct key *key,
                         char *buf, size_t cap)
{
    size_t len = 0;
    for (int i = -1; i < (int)key->ndoubt && len < cap; i++) {
        uint64_t v = i < 0 ? key->base : key->doubt[i];
        char val[MAX_VALUE + 16] = "";
        if (v)
            value_of(c, v, val, sizeof(val));
        int n = snprintf(buf + len, cap - len, "%s%s%s", i < 0 ? "" : " or ",
                         v ? "VALUE " : "NOTFOUND", val);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* Checks a GET reply against what this client knows of the key.  A read
 * that shows an in-doubt write proves it happened: from then on the key
 * must keep it (or a later write), exactly as if it had been acknowledged. */
static void check_get(struct client *c, unsigned k, const char *req, const char *reply)
{
    struct key *key = &c->keys[k];
    uint64_t v;
    int m = parse_value(c, reply, &v) < 0 ? NO_MATCH : key_match(key, v);

    if (m == NO_MATCH) {
        char want[3 * MAX_VALUE];
        key_describe(c, key, want, sizeof(want));
        wrong(c, req, reply, want);
        return;
    }
    if (m >= 0) {
        uint32_t keep = key->ndoubt - (uint32_t)m - 1;
        key->base = v;
        memmove(key->doubt, key->doubt + m + 1, keep * sizeof(*key->doubt));
        key->ndoubt = keep;
    }
}

/* ---- verify: read back every key once after the load ---- */

#define MAX_VREPORTS 10
static atomic_uint vreports;    /* offending keys described, all clients */

static void verify_fail(struct client *c, bool lost, const char *name,
                        const char *got, const char *want)
{
    if (lost)
        c->lost++;
    else
        c->vwrong++;
    if (atomic_fetch_add(&vreports, 1) < MAX_VREPORTS)
        fprintf(stderr, "kvctl: client %u: verify: %s: %s -> \"%s\", expected %s\n",
                c->id, lost ? "LOST" : "WRONG", name, got, want);
}

/* A value that is not one the key may hold is "lost" when the key went
 * back to an earlier state (absent, or an older value of this client's:
 * sequence numbers grow, so an older one cannot be a write still to come),
 * else "wrong" (a value this client never wrote, or newer than any). */
static void verify_key(struct client *c, unsigned k, const char *name, const char *reply)
{
    struct key *key = &c->keys[k];
    uint64_t v;
    int p = parse_value(c, reply, &v);

    if (key->ndoubt)
        c->indoubt++;
    if (p >= 0 && key_match(key, v) != NO_MATCH)
        return;
    uint64_t newest = key->base;
    for (uint32_t i = 0; i < key->ndoubt; i++)
        newest = key->doubt[i] > newest ? key->doubt[i] : newest;
    char want[3 * MAX_VALUE];
    key_describe(c, key, want, sizeof(want));
    verify_fail(c, p == 0 || (p == 1 && (newest == 0 || v < newest)), name, reply, want);
}

/* The counter holds ctr plus however many of the in-doubt INCRs happened;
 * it is absent until the first INCR lands. */
static void verify_ctr(struct client *c, const char *name, const char *reply)
{
    uint64_t n = 0;
    char extra, want[96];
    bool num = !strcmp(reply, "NOTFOUND") ||
               sscanf(reply, "VALUE %" SCNu64 "%c", &n, &extra) == 1;

    if (c->ctr_unsure)
        c->indoubt++;
    if (num && n >= c->ctr && n - c->ctr <= c->ctr_unsure)
        return;
    if (c->ctr_unsure)
        snprintf(want, sizeof(want), "VALUE %" PRIu64 " to %" PRIu64 "%s", c->ctr,
                 c->ctr + c->ctr_unsure, c->ctr ? "" : " (0: NOTFOUND)");
    else if (c->ctr)
        snprintf(want, sizeof(want), "VALUE %" PRIu64, c->ctr);
    else
        snprintf(want, sizeof(want), "NOTFOUND");
    verify_fail(c, num && n < c->ctr, name, reply, want);
}

/* Reads back each key once, reconnecting whatever --reconnect says: the
 * point is to see what survived, however long the service took to return.
 * Each attempt is bounded by --timeout, the whole by --verify-timeout. */
static void verify_client(struct client *c, struct conn *conn, const char *ctrname)
{
    const struct load_opts *o = c->o;
    double deadline = now_s() + o->verify_timeout;
    char req[MAX_LINE], reply[MAX_LINE + 16], name[128];
    bool warned = false;
    unsigned k = 0;

    while (k <= c->nkeys) {
        double left = deadline - now_s(), t = o->timeout < left ? o->timeout : left;
        if (left <= 0)
            break;
        /* The counter last, after the keys proper. */
        if (k < c->nkeys)
            key_name(c, k, name, sizeof(name));
        else
            snprintf(name, sizeof(name), "%s", ctrname);
        snprintf(req, sizeof(req), "GET %s", name);
        int bad = (conn->fd < 0 && conn_open(conn, o->host, o->port, t)) ||
                  conn_request(conn, req, reply, sizeof(reply), t);
        /* ERR (kvd turning a connection away, say) tells nothing of the
         * key: ask again on a new connection. */
        if (!bad && !strncmp(reply, "ERR", 3))
            bad = conn_fail(conn, "%.40s -> %.60s", req, reply);
        if (bad) {
            c->vneterrs++;
            if (!warned)
                fprintf(stderr, "kvctl: client %u: verify: %s\n", c->id, conn->err);
            warned = true;
            sleep_s(0.1);
            continue;
        }
        if (k < c->nkeys)
            verify_key(c, k, name, reply);
        else
            verify_ctr(c, name, reply);
        c->checked++;
        k++;
    }
}

/* SIGUSR1: the timed load ends now. */
static volatile sig_atomic_t load_ended;

static void end_load(int sig __attribute__((unused)))
{
    load_ended = 1;
}

static bool load_running(const struct client *c)
{
    return !load_ended && now_s() < c->deadline;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    const struct load_opts *o = c->o;
    struct conn conn = { .fd = -1 };
    char req[MAX_LINE], reply[MAX_LINE + 16], name[128], val[MAX_VALUE + 16];
    char ctrname[128];
    bool warned = false;

    snprintf(ctrname, sizeof(ctrname), "%s-c%u-ctr", o->prefix, c->id);
    while (load_running(c)) {
        if (conn.fd < 0) {
            double t = o->timeout;
            if (now_s() + t > c->deadline + o->timeout)
                t = c->deadline + o->timeout - now_s();
            if (conn_open(&conn, o->host, o->port, t)) {
                c->neterrs++;
                if (!warned)
                    fprintf(stderr, "kvctl: client %u: %s\n", c->id, conn.err);
                warned = true;
                if (!o->reconnect)
                    break;
                sleep_s(0.1);
                continue;
            }
        }

        /* Choose the request and what a lost reply would leave unknown. */
        unsigned k = (unsigned)(rng_next(&c->rng) % c->nkeys);
        enum { OP_GET, OP_SET, OP_DEL, OP_INCR } op = OP_GET;
        if (rng_unit(&c->rng) < o->write_ratio) {
            double r = rng_unit(&c->rng);
            op = r < 0.8 ? OP_SET : r < 0.9 ? OP_DEL : OP_INCR;
        }
        key_name(c, k, name, sizeof(name));
        uint64_t seq = 0;
        switch (op) {
        case OP_GET:
            snprintf(req, sizeof(req), "GET %s", name);
            break;
        case OP_SET:
            seq = ++c->seq;
            value_of(c, seq, val, sizeof(val));
            snprintf(req, sizeof(req), "SET %s %s", name, val);
            break;
        case OP_DEL:
            snprintf(req, sizeof(req), "DEL %s", name);
            break;
        case OP_INCR:
            snprintf(req, sizeof(req), "INCR %s", ctrname);
            break;
        }

        double t0 = now_s();
        if (conn_request(&conn, req, reply, sizeof(reply), o->timeout)) {
            log_reply(c, (uint64_t)((now_s() - t0) * 1e6), REPLY_NONE);
            c->neterrs++;
            if (!warned)
                fprintf(stderr, "kvctl: client %u: %s\n", c->id, conn.err);
            warned = true;
            if (op == OP_SET)
                key_doubt(&c->keys[k], seq);
            else if (op == OP_DEL)
                key_doubt(&c->keys[k], 0);
            else if (op == OP_INCR)
                c->ctr_unsure++;
            if (!o->reconnect)
                break;
            continue;
        }
        uint64_t us = (uint64_t)((now_s() - t0) * 1e6);
        c->hist[h_index(us)]++;
        /* An ERR reply is the service refusing, not serving. */
        bool refused = !strncmp(reply, "ERR", 3);
        if (!refused)
            note_success(c);
        log_reply(c, us, refused ? REPLY_ERR : REPLY_OK);

        struct key *key = &c->keys[k];
        switch (op) {
        case OP_GET:
            c->gets++;
            check_get(c, k, req, reply);
            break;
        case OP_SET:
            c->sets++;
            if (strcmp(reply, "OK"))
                wrong(c, req, reply, "OK");
            key_settle(key, seq);
            break;
        case OP_DEL: {
            /* OK if the key may hold a value, NOTFOUND if it may be absent. */
            bool may_ok = key->base != 0, may_nf = key->base == 0;
            for (uint32_t i = 0; i < key->ndoubt; i++) {
                may_ok |= key->doubt[i] != 0;
                may_nf |= key->doubt[i] == 0;
            }
            c->dels++;
            if (!strcmp(reply, "OK") ? !may_ok : strcmp(reply, "NOTFOUND") || !may_nf)
                wrong(c, req, reply, may_ok && may_nf ? "OK or NOTFOUND" :
                                     may_ok ? "OK" : "NOTFOUND");
            key_settle(key, 0);
            break;
        }
        case OP_INCR: {
            c->incrs++;
            uint64_t n;
            char extra;
            if (sscanf(reply, "VALUE %" SCNu64 "%c", &n, &extra) != 1 ||
                n < c->ctr + 1 || n > c->ctr + 1 + c->ctr_unsure) {
                char want[64];
                snprintf(want, sizeof(want), "VALUE %" PRIu64 "%s", c->ctr + 1,
                         c->ctr_unsure ? " or more" : "");
                wrong(c, req, reply, want);
            } else {
                c->ctr = n;
                c->ctr_unsure = 0;
            }
            break;
        }
        }
    }
    c->load_end_ns = now_ns();
    if (o->verify)
        verify_client(c, &conn, ctrname);
    conn_close(&conn);
    return NULL;
}

static int rec_cmp(const void *a, const void *b)
{
    const struct reply_rec *x = a, *y = b;
    return (x->wall_ns > y->wall_ns) - (x->wall_ns < y->wall_ns);
}

/* --reply-log: every client's requests in the order they ended; closes f.
 * Returns -1 (errno set) if the file could not be written. */
static int write_reply_log(FILE *f, struct client *cl, unsigned n,
                           uint64_t start_wall_ns)
{
    size_t total = 0, k = 0;
    bool short_log = false;
    for (unsigned i = 0; i < n; i++) {
        total += cl[i].nlog;
        short_log |= cl[i].log_short;
    }
    struct reply_rec *all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) {
        fclose(f);
        errno = ENOMEM;
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        memcpy(all + k, cl[i].log, cl[i].nlog * sizeof(*all));
        k += cl[i].nlog;
    }
    qsort(all, total, sizeof(*all), rec_cmp);
    fprintf(f, "# kvctl load: start_ns=%" PRIu64 " clients=%u requests=%zu%s\n"
            "# end_ns latency_us status (0 answered, 1 ERR reply, 2 no reply)\n",
            start_wall_ns, n, total, short_log ? " (out of memory: incomplete)" : "");
    for (size_t i = 0; i < total; i++)
        fprintf(f, "%" PRIu64 " %" PRIu32 " %" PRIu32 "\n", all[i].wall_ns, all[i].us,
                all[i].status);
    free(all);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end ? -1 : 0;
}

static int parse_uint(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > 0xffffffffu)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
        "usage: kvctl [--timeout S] HOST PORT CMD [ARG...]\n"
        "       kvctl wait HOST PORT [--timeout S]\n"
        "       kvctl restart HOST PORT [--timeout S]\n"
        "       kvctl load HOST PORT --clients C --seconds S --keys K\n"
        "                  [--write-ratio R] [--value-size N] [--timeout S]\n"
        "                  [--prefix P] [--seed N] [--reconnect]\n"
        "                  [--verify] [--verify-timeout S] [--reply-log FILE]\n"
        "exit status: 0 success; 1 a wrong answer, or --verify found a key lost\n"
        "or wrong; 2 usage error, timeout, nothing answered, or --verify could not\n"
        "read every key back; 3 network errors during a load without --reconnect\n");
    return 2;
}

static int cmd_load(int argc, char **argv)
{
    struct load_opts o = {
        .clients = 0, .keys = 0, .seconds = 0, .write_ratio = 0.5,
        .value_size = 16, .timeout = 5, .seed = 1, .verify_timeout = 60,
    };
    char prefix[32];

    if (argc < 2)
        return usage();
    o.host = argv[0];
    o.port = argv[1];
    /* A fresh prefix per run, so keys left by an earlier run on the same
     * server never look like this run's. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(prefix, sizeof(prefix), "L%lx%lx", (unsigned long)ts.tv_sec,
             (unsigned long)getpid());
    o.prefix = prefix;
    o.reply_log = getenv("KVCTL_REPLY_LOG");
    if (o.reply_log && !*o.reply_log)
        o.reply_log = NULL;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--reconnect")) {
            o.reconnect = true;
            continue;
        }
        if (!strcmp(a, "--verify")) {
            o.verify = true;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--clients"))
            bad = parse_uint(v, &o.clients);
        else if (!strcmp(a, "--keys"))
            bad = parse_uint(v, &o.keys);
        else if (!strcmp(a, "--value-size"))
            bad = parse_uint(v, &o.value_size);
        else if (!strcmp(a, "--seconds"))
            bad = parse_double(v, &o.seconds);
        else if (!strcmp(a, "--write-ratio"))
            bad = parse_double(v, &o.write_ratio);
        else if (!strcmp(a, "--timeout"))
            bad = parse_double(v, &o.timeout);
        else if (!strcmp(a, "--verify-timeout"))
            bad = parse_double(v, &o.verify_timeout);
        else if (!strcmp(a, "--prefix"))
            o.prefix = v;
        else if (!strcmp(a, "--reply-log"))
            o.reply_log = v;
        else if (!strcmp(a, "--seed")) {
            unsigned s;
            bad = parse_uint(v, &s);
            o.seed = s;
        } else
            return usage();
        if (bad) {
            fprintf(stderr, "kvctl: bad value for %s: %s\n", a, v);
            return 2;
        }
    }
    if (o.clients < 1 || o.clients > MAX_CLIENTS || o.keys < 1 ||
        o.seconds <= 0 || o.seconds > 86400 || o.write_ratio < 0 ||
        o.write_ratio > 1 || o.timeout <= 0 || o.value_size > MAX_VALUE ||
        o.verify_timeout <= 0 || o.verify_timeout > 86400 ||
        strlen(o.prefix) > 40 || strchr(o.prefix, ' ')) {
        fprintf(stderr, "kvctl: load needs 1..%d clients, keys >= 1, seconds > 0, "
                "write ratio in [0,1], value size <= %d, a short prefix, "
                "verify timeout in (0,86400]\n",
                MAX_CLIENTS, MAX_VALUE);
        return 2;
    }

    /* Opened first: a log that cannot be written should cost no load. */
    FILE *rlog = NULL;
    if (o.reply_log && !(rlog = fopen(o.reply_log, "w"))) {
        fprintf(stderr, "kvctl: %s: %s\n", o.reply_log, strerror(errno));
        return 2;
    }
    struct client *cl = calloc(o.clients, sizeof(*cl));
    if (!cl) {
        perror("kvctl");
        return 2;
    }
    double start = now_s();
    uint64_t start_ns = now_ns(), start_wall_ns = wall_ns();
    unsigned started = 0;
    /* The load's start counts as a success: a service that takes long to
     * answer its first request has a gap from there. */
    atomic_store(&last_success_ns, start_ns);
    /* The clients' polls keep running through SIGUSR1: only this thread
     * takes it. */
    sigset_t usr1, before;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &before);
    for (unsigned i = 0; i < o.clients; i++) {
        struct client *c = &cl[i];
        c->o = &o;
        c->id = i;
        /* --keys is the whole key space; each client owns its share. */
        c->nkeys = o.keys / o.clients + (i < o.keys % o.clients);
        if (c->nkeys == 0)
            c->nkeys = 1;
        c->keys = calloc(c->nkeys, sizeof(*c->keys));
        c->rng = (o.seed + 1) * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull;
        if (!c->rng)
            c->rng = 1;
        c->deadline = start + o.seconds;
        if (!c->keys || pthread_create(&c->thread, NULL, client_main, c)) {
            fprintf(stderr, "kvctl: cannot start client %u\n", i);
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &before, NULL);

    uint64_t *hist = calloc(H_N, sizeof(*hist));
    uint64_t gets = 0, sets = 0, dels = 0, incrs = 0, wrongs = 0, neterrs = 0;
    uint64_t gap_ns = 0, gap_from_ns = start_ns, end_ns = start_ns;
    uint64_t vkeys = 0, checked = 0, lost = 0, vwrong = 0, indoubt = 0, vneterrs = 0;
    double vend = start;
    for (unsigned i = 0; i < started; i++) {
        struct client *c = &cl[i];
        pthread_join(c->thread, NULL);
        gets += c->gets;
        sets += c->sets;
        dels += c->dels;
        incrs += c->incrs;
        wrongs += c->wrong;
        neterrs += c->neterrs;
        for (unsigned j = 0; hist && j < H_N; j++)
            hist[j] += c->hist[j];
        if (c->gap_ns > gap_ns) {
            gap_ns = c->gap_ns;
            gap_from_ns = c->gap_from_ns;
        }
        if (c->load_end_ns > end_ns)
            end_ns = c->load_end_ns;
        vkeys += c->nkeys + 1;      /* its keys and its counter */
        checked += c->checked;
        lost += c->lost;
        vwrong += c->vwrong;
        indoubt += c->indoubt;
        vneterrs += c->vneterrs;
    }
    vend = now_s();
    /* A load that ends while the service is away ends a gap too. */
    uint64_t last_ns = atomic_load(&last_success_ns);
    if (end_ns > last_ns && end_ns - last_ns > gap_ns) {
        gap_ns = end_ns - last_ns;
        gap_from_ns = last_ns;
    }
    /* The timed load's own duration, not counting the time to join. */
    double elapsed = (double)(end_ns - start_ns) / 1e9;
    uint64_t total = gets + sets + dels + incrs;

    printf("load: host=%s port=%s clients=%u keys=%u write_ratio=%.2f "
           "value_size=%u prefix=%s\n", o.host, o.port, o.clients, o.keys,
           o.write_ratio, o.value_size, o.prefix);
    printf("load: requests=%" PRIu64 " get=%" PRIu64 " set=%" PRIu64 " del=%"
           PRIu64 " incr=%" PRIu64 " elapsed=%.2fs throughput=%.1f req/s\n",
           total, gets, sets, dels, incrs, elapsed,
           elapsed > 0 ? (double)total / elapsed : 0.0);
    if (total && hist)
        printf("load: latency_us p50=%" PRIu64 " p90=%" PRIu64 " p99=%" PRIu64
               " p999=%" PRIu64 " max=%" PRIu64 "\n",
               h_percentile(hist, total, 0.50), h_percentile(hist, total, 0.90),
               h_percentile(hist, total, 0.99), h_percentile(hist, total, 0.999),
               h_percentile(hist, total, 1.0));
    printf("load: errors=%" PRIu64 " neterrs=%" PRIu64 "\n", wrongs, neterrs);
    printf("load: gap_ms=%" PRIu64 "\n", (gap_ns + 500000) / 1000000);
    if (gap_ns >= 1000000000u)
        fprintf(stderr, "kvctl: no request answered from %.2fs to %.2fs into the load\n",
                (double)(gap_from_ns - start_ns) / 1e9,
                (double)(gap_from_ns + gap_ns - start_ns) / 1e9);
    if (o.verify) {
        printf("verify: keys=%" PRIu64 " checked=%" PRIu64 " lost=%" PRIu64
               " wrong=%" PRIu64 " indoubt=%" PRIu64 "\n",
               vkeys, checked, lost, vwrong, indoubt);
        double took = vend - start - elapsed;
        if (checked < vkeys)
            fprintf(stderr, "kvctl: verify: %" PRIu64 " keys not read back within "
                    "%.1fs\n", vkeys - checked, o.verify_timeout);
        if (vneterrs)
            fprintf(stderr, "kvctl: verify: %" PRIu64 " network errors, done %.2fs "
                    "after the load\n", vneterrs, took > 0 ? took : 0.0);
    }

    bool rlog_bad = rlog && write_reply_log(rlog, cl, started, start_wall_ns);
    if (rlog_bad)
        fprintf(stderr, "kvctl: %s: %s\n", o.reply_log, strerror(errno));

    for (unsigned i = 0; i < o.clients; i++) {
        for (unsigned k = 0; cl[i].keys && k < cl[i].nkeys; k++)
            free(cl[i].keys[k].doubt);
        free(cl[i].keys);
        free(cl[i].log);
    }
    free(cl);
    free(hist);
    if (wrongs || lost || vwrong)
        return 1;
    if (started < o.clients || total == 0 || rlog_bad)
        return 2;
    /* A verification that could not read everything proves nothing. */
    if (o.verify && checked < vkeys)
        return 2;
    if (neterrs && !o.reconnect)
        return 3;
    return 0;
}

/* ---- wait: overlapping PING attempts ----
 *
 * Until the guest's NIC is up, QEMU's user network accepts a forwarded
 * connection and then leaves it hanging until its own retransmission, so a
 * probe started too early answers late even once the guest serves.  A new
 * probe every PROBE_EVERY seconds, each allowed PROBE_LIFE seconds, finds
 * readiness within PROBE_EVERY of it and still tolerates a slow guest. */

#define PROBE_EVERY 0.25
#define PROBE_LIFE  5.0
#define MAX_PROBES  ((int)(PROBE_LIFE / PROBE_EVERY) + 1)

struct probe {
    int fd;                 /* -1: slot free */
    bool sent;
    double started;
    size_t have;
    char buf[64];
};

static void probe_end(struct probe *p, char *err, size_t cap, const char *why)
{
    if (why)
        snprintf(err, cap, "%s", why);
    close(p->fd);
    p->fd = -1;
}

/* Returns 1 on PONG, 0 while the probe goes on or has ended otherwise. */
static int probe_step(struct probe *p, short revents, char *err, size_t cap)
{
    if (!p->sent) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr || (revents & (POLLERR | POLLHUP))) {
            probe_end(p, err, cap, strerror(soerr ? soerr : ECONNRESET));
            return 0;
        }
        /* Five bytes into an empty socket buffer: one send suffices. */
        if (send(p->fd, "PING\n", 5, MSG_NOSIGNAL) != 5) {
            probe_end(p, err, cap, "send failed");
            return 0;
        }
        p->sent = true;
        return 0;
    }
    ssize_t r = recv(p->fd, p->buf + p->have, sizeof(p->buf) - 1 - p->have, 0);
    if (r <= 0) {
        probe_end(p, err, cap, r == 0 ? "connection closed" : strerror(errno));
        return 0;
    }
    p->have += (size_t)r;
    p->buf[p->have] = '\0';
    char *nl = strchr(p->buf, '\n');
    if (!nl && p->have < sizeof(p->buf) - 1)
        return 0;
    if (nl)
        *nl = '\0';
    if (!strcmp(p->buf, "PONG") || !strcmp(p->buf, "PONG\r"))
        return 1;
    char why[96];
    snprintf(why, sizeof(why), "PING answered \"%.40s\"", p->buf);
    probe_end(p, err, cap, why);
    return 0;
}

/* Until PING at host:port answers PONG, for at most timeout seconds: 0
 * when it did, else 2 with the reason on stderr. */
static int wait_pong(const char *host, const char *port, double timeout)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "kvctl: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 2;
    }

    double start = now_s(), deadline = start + timeout, next = start;
    struct probe probes[MAX_PROBES];
    char err[128] = "no attempt";
    int ready = 0;
    for (int i = 0; i < MAX_PROBES; i++)
        probes[i].fd = -1;

    while (!ready && now_s() < deadline) {
        double now = now_s();
        struct pollfd pfd[MAX_PROBES];
        int idx[MAX_PROBES], n = 0;

        for (int i = 0; i < MAX_PROBES; i++) {
            struct probe *p = &probes[i];
            if (p->fd >= 0 && now - p->started > PROBE_LIFE)
                probe_end(p, err, sizeof(err), "timed out");
            if (p->fd < 0 && now >= next) {
                next = now + PROBE_EVERY;
                p->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0);
                p->sent = false;
                p->started = now;
                p->have = 0;
                if (p->fd >= 0 && connect(p->fd, ai->ai_addr, ai->ai_addrlen) &&
                    errno != EINPROGRESS)
                    probe_end(p, err, sizeof(err), strerror(errno));
            }
            if (p->fd >= 0) {
                pfd[n] = (struct pollfd){ .fd = p->fd,
                                          .events = p->sent ? POLLIN : POLLOUT };
                idx[n++] = i;
            }
        }
        if (now >= next)            /* every slot busy: try again later */
            next = now + PROBE_EVERY;
        double until = next < deadline ? next : deadline;
        int ms = ms_until(until);
        if (poll(pfd, (nfds_t)n, ms) < 0 && errno != EINTR)
            break;
        for (int j = 0; j < n && !ready; j++) {
            if (pfd[j].revents)
                ready = probe_step(&probes[idx[j]], pfd[j].revents, err, sizeof(err));
        }
    }
    for (int i = 0; i < MAX_PROBES; i++) {
        if (probes[i].fd >= 0)
            close(probes[i].fd);
    }
    freeaddrinfo(ai);
    if (ready)
        return 0;
    fprintf(stderr, "kvctl: %s:%s not ready after %.1fs (%s)\n",
            host, port, timeout, err);
    return 2;
}

/* HOST PORT [--timeout S], the arguments of wait and restart. */
static int parse_wait_args(int argc, char **argv, double *timeout)
{
    if (argc != 2 && !(argc == 4 && !strcmp(argv[2], "--timeout")))
        return usage();
    if (argc == 4 && (parse_double(argv[3], timeout) || *timeout <= 0)) {
        fprintf(stderr, "kvctl: bad timeout %s\n", argv[3]);
        return 2;
    }
    return 0;
}

static int cmd_wait(int argc, char **argv)
{
    double timeout = 30, start = now_s();
    int rc = parse_wait_args(argc, argv, &timeout);
    if (!rc)
        rc = wait_pong(argv[0], argv[1], timeout);
    if (!rc)
        printf("ready after %.2fs\n", now_s() - start);
    return rc;
}

/* RESTART, then wait until the kvd that answered has closed the connection
 * (exited: a PING before that could still reach it) and the one started
 * after it answers PING.  All of it within --timeout. */
static int cmd_restart(int argc, char **argv)
{
    double timeout = 30, start = now_s();
    int rc = parse_wait_args(argc, argv, &timeout);
    if (rc)
        return rc;
    double deadline = start + timeout;
    struct conn c = { .fd = -1 };
    char reply[MAX_LINE + 16];
    if (conn_open(&c, argv[0], argv[1], timeout) ||
        conn_request(&c, "RESTART", reply, sizeof(reply), deadline - now_s())) {
        fprintf(stderr, "kvctl: %s\n", c.err);
        return 2;
    }
    if (strcmp(reply, "OK")) {
        conn_close(&c);
        fprintf(stderr, "kvctl: RESTART answered \"%s\"\n", reply);
        return 1;
    }
    if (conn_wait_closed(&c, deadline - now_s())) {
        fprintf(stderr, "kvctl: after RESTART: %s\n", c.err);
        return 2;
    }
    double closed = now_s() - start;
    if (deadline - now_s() <= 0 || wait_pong(argv[0], argv[1], deadline - now_s())) {
        fprintf(stderr, "kvctl: not serving again within %.1fs of RESTART\n", timeout);
        return 2;
    }
    printf("restarted: exited after %.2fs, ready after %.2fs\n", closed,
           now_s() - start);
    return 0;
}

static int cmd_single(int argc, char **argv, double timeout)
{
    if (argc < 3)
        return usage();
    char req[MAX_LINE + 1] = "";
    size_t len = 0;
    for (int i = 2; i < argc; i++) {
        int n = snprintf(req + len, sizeof(req) - len, "%s%s", i > 2 ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= sizeof(req) - len) {
            fprintf(stderr, "kvctl: request longer than %d bytes\n", MAX_LINE);
            return 2;
        }
        len += (size_t)n;
    }
    struct conn c = { .fd = -1 };
    char reply[MAX_LINE + 16];
    if (conn_open(&c, argv[0], argv[1], timeout) ||
        conn_request(&c, req, reply, sizeof(reply), timeout)) {
        fprintf(stderr, "kvctl: %s\n", c.err);
        return 2;
    }
    conn_close(&c);
    printf("%s\n", reply);
    return strncmp(reply, "ERR", 3) ? 0 : 1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, end_load);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "load"))
        return cmd_load(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "wait"))
        return cmd_wait(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "restart"))
        return cmd_restart(argc - 2, argv + 2);

    double timeout = 5;
    int first = 1;
    if (argc >= 3 && !strcmp(argv[1], "--timeout")) {
        if (parse_double(argv[2], &timeout) || timeout <= 0)
            return usage();
        first = 3;
    }
    return cmd_single(argc - first, argv + first, timeout);
}
