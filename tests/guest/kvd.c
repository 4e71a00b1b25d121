/*
 * kvd: the test guest's key-value service.
 *
 * A TCP server speaking a one-line-per-request text protocol (see
 * tests/guest/README.md).  Every later test drives it, so it favours being
 * easy to reason about over speed: one thread per connection, one hash
 * table behind one mutex, and a write is applied before its reply is
 * queued.  That last point is what makes the replication tests meaningful:
 * a client that saw "OK" may rely on the write having happened inside the
 * guest, so it must survive a failover.
 *
 * Usage: kvd [-a ADDR] [-p PORT] [-c MAXCONN] [-r READYFILE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_KEY     250        /* bytes, no spaces */
#define MAX_VALUE   1024       /* bytes, may contain spaces */
#define MAX_LINE    2048       /* request line without its newline */
#define MAX_KEYS    (1u << 20) /* bounds the guest's memory use */
#define N_BUCKETS   (1u << 14)
#define OUT_CAP     (64 * 1024) /* pending replies before a forced flush */

struct entry {
    struct entry *next;
    uint32_t hash;
    size_t klen, vlen;
    char *key, *val;
};

static struct {
    pthread_mutex_t lock;
    struct entry *bucket[N_BUCKETS];
    uint64_t nkeys;
    uint64_t sets, gets, dels, incrs, pings, errors;
    uint64_t conns_total, conns_now;
} db = { .lock = PTHREAD_MUTEX_INITIALIZER };

static unsigned max_conns = 256;

/* FNV-1a: enough for keys chosen by tests, no adversary to worry about. */
static uint32_t hash_key(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

/* Caller holds db.lock.  Returns the link pointing at the entry (or at the
 * NULL that ends its chain), so deletion needs no second walk. */
static struct entry **find(const char *k, size_t n, uint32_t h)
{
    struct entry **pp = &db.bucket[h % N_BUCKETS];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->hash == h && (*pp)->klen == n && !memcmp((*pp)->key, k, n))
            return pp;
    }
    return pp;
}

/* Caller holds db.lock.  Replaces or inserts; false if out of room. */
static bool store(const char *k, size_t kn, uint32_t h, const char *v, size_t vn)
{
    struct entry **pp = find(k, kn, h);
    char *nv = malloc(vn + 1);
    if (!nv)
        return false;
    memcpy(nv, v, vn);
    nv[vn] = '\0';
    if (*pp) {
        free((*pp)->val);
        (*pp)->val = nv;
        (*pp)->vlen = vn;
        return true;
    }
    struct entry *e = NULL;
    if (db.nkeys >= MAX_KEYS || !(e = malloc(sizeof(*e))) ||
        !(e->key = malloc(kn + 1))) {
        free(e);
        free(nv);
        return false;
    }
    memcpy(e->key, k, kn);
    e->key[kn] = '\0';
    e->klen = kn;
    e->hash = h;
    e->val = nv;
    e->vlen = vn;
    e->next = NULL;
    *pp = e;
    db.nkeys++;
    return true;
}

struct out {
    char buf[OUT_CAP];
    size_t len;
};

static void reply(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
    va_end(ap);
    /* handle_line() flushes before every request, so a reply always fits;
     * clamp anyway rather than trust that forever. */
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(o->buf) - o->len)
        n = (int)(sizeof(o->buf) - o->len - 1);
    o->len += (size_t)n;
}

static void error_reply(struct out *o, const char *why)
{
    pthread_mutex_lock(&db.lock);
    db.errors++;
    pthread_mutex_unlock(&db.lock);
    reply(o, "ERR %s\n", why);
}

/* Splits off the next space-separated word; returns its length. */
static size_t word(char **p, char **start)
{
    while (**p == ' ')
        (*p)++;
    *start = *p;
    while (**p && **p != ' ')
        (*p)++;
    return (size_t)(*p - *start);
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static void cmd_incr(struct out *o, const char *k, size_t kn)
{
    uint32_t h = hash_key(k, kn);
    pthread_mutex_lock(&db.lock);
    struct entry *e = *find(k, kn, h);
    int64_t v = 0;
    const char *err = NULL;
    if (e && !parse_i64(e->val, e->vlen, &v))
        err = "value is not an integer";
    else if (v == INT64_MAX)
        err = "integer overflow";
    else {
        char num[32];
        int n = snprintf(num, sizeof(num), "%" PRId64, v + 1);
        if (!store(k, kn, h, num, (size_t)n))
            err = "out of memory";
        else {
            db.incrs++;
            v++;
        }
    }
    if (err)
        db.errors++;
    pthread_mutex_unlock(&db.lock);
    if (err)
        reply(o, "ERR %s\n", err);
    else
        reply(o, "VALUE %" PRId64 "\n", v);
}

static void handle_line(struct out *o, char *line)
{
    char *p = line, *cmd, *key;
    size_t cn = word(&p, &cmd);
    size_t kn = word(&p, &key);

    if (cn == 0) {
        error_reply(o, "empty request");
        return;
    }
    bool is_ping = cn == 4 && !strncmp(cmd, "PING", 4);
    bool is_stats = cn == 5 && !strncmp(cmd, "STATS", 5);
    if ((is_ping || is_stats) && kn) {
        error_reply(o, "too many arguments");
        return;
    }
    if (is_ping) {
        pthread_mutex_lock(&db.lock);
        db.pings++;
        pthread_mutex_unlock(&db.lock);
        reply(o, "PONG\n");
        return;
    }
    if (is_stats) {
        pthread_mutex_lock(&db.lock);
        reply(o, "STATS keys=%" PRIu64 " sets=%" PRIu64 " gets=%" PRIu64
              " dels=%" PRIu64 " incrs=%" PRIu64 " pings=%" PRIu64
              " errors=%" PRIu64 " conns=%" PRIu64 " conns_total=%" PRIu64 "\n",
              db.nkeys, db.sets, db.gets, db.dels, db.incrs, db.pings,
              db.errors, db.conns_now, db.conns_total);
        pthread_mutex_unlock(&db.lock);
        return;
    }

    bool is_set = cn == 3 && !strncmp(cmd, "SET", 3);
    bool is_get = cn == 3 && !strncmp(cmd, "GET", 3);
    bool is_del = cn == 3 && !strncmp(cmd, "DEL", 3);
    bool is_incr = cn == 4 && !strncmp(cmd, "INCR", 4);
    if (!is_set && !is_get && !is_del && !is_incr) {
        error_reply(o, "unknown command");
        return;
    }
    if (kn == 0) {
        error_reply(o, "missing key");
        return;
    }
    if (kn > MAX_KEY) {
        error_reply(o, "key too long");
        return;
    }

    /* The value of SET is the rest of the line after one separating space,
     * so it may hold spaces; the other commands take nothing more. */
    char *val = *p ? p + 1 : p;
    size_t vn = strlen(val);
    if (!is_set) {
        char *extra;
        if (word(&p, &extra)) {
            error_reply(o, "too many arguments");
            return;
        }
    } else if (vn == 0) {
        error_reply(o, "missing value");
        return;
    } else if (vn > MAX_VALUE) {
        error_reply(o, "value too long");
        return;
    }

    if (is_incr) {
        cmd_incr(o, key, kn);
        return;
    }

    uint32_t h = hash_key(key, kn);
    pthread_mutex_lock(&db.lock);
    if (is_set) {
        bool ok = store(key, kn, h, val, vn);
        if (ok)
            db.sets++;
        else
            db.errors++;
        pthread_mutex_unlock(&db.lock);
        reply(o, ok ? "OK\n" : "ERR out of memory\n");
    } else if (is_get) {
        db.gets++;
        struct entry *e = *find(key, kn, h);
        /* Copying out under the lock keeps the reply consistent with a
         * concurrent SET; values are small. */
        if (e)
            reply(o, "VALUE %s\n", e->val);
        else
            reply(o, "NOTFOUND\n");
        pthread_mutex_unlock(&db.lock);
    } else {
        db.dels++;
        struct entry **pp = find(key, kn, h);
        struct entry *e = *pp;
        if (e) {
            *pp = e->next;
            db.nkeys--;
        }
        pthread_mutex_unlock(&db.lock);
        if (e) {
            free(e->key);
            free(e->val);
            free(e);
        }
        reply(o, e ? "OK\n" : "NOTFOUND\n");
    }
}

static bool write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

struct conn {
    int fd;
    char in[MAX_LINE + 2];   /* a full line, its '\r', and room to detect overlong */
    struct out out;
};

/* Reads whatever arrived, answers every complete line in it, then sends all
 * replies in one write: pipelined clients get one segment, not many. */
static void *conn_main(void *arg)
{
    struct conn *c = arg;
    size_t have = 0;
    bool discarding = false;    /* inside an overlong line, skip to '\n' */

    for (;;) {
        ssize_t n = recv(c->fd, c->in + have, sizeof(c->in) - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;

        size_t start = 0;
        for (;;) {
            char *nl = memchr(c->in + start, '\n', have - start);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (c->in + start));
            char *line = c->in + start;
            start += len + 1;
            if (discarding) {
                discarding = false;
                continue;
            }
            if (len && line[len - 1] == '\r')
                len--;
            line[len] = '\0';
            if (c->out.len > OUT_CAP - MAX_VALUE - 64) {
                if (!write_all(c->fd, c->out.buf, c->out.len))
                    goto done;
                c->out.len = 0;
            }
            if (len > MAX_LINE)
                error_reply(&c->out, "line too long");
            else
                handle_line(&c->out, line);
        }
        memmove(c->in, c->in + start, have - start);
        have -= start;
        if (have == sizeof(c->in)) {
            /* No newline in a full buffer: answer once, drop the rest of it. */
            if (!discarding)
                error_reply(&c->out, "line too long");
            discarding = true;
            have = 0;
        }
        if (c->out.len) {
            if (!write_all(c->fd, c->out.buf, c->out.len))
                break;
            c->out.len = 0;
        }
    }
done:
    close(c->fd);
    free(c);
    pthread_mutex_lock(&db.lock);
    db.conns_now--;
    pthread_mutex_unlock(&db.lock);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: kvd [-a ADDR] [-p PORT] [-c MAXCONN] [-r READYFILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "0.0.0.0", *ready = NULL;
    int port = 7000, opt;

    while ((opt = getopt(argc, argv, "a:p:c:r:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': max_conns = (unsigned)atoi(optarg); break;
        case 'r': ready = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || port <= 0 || port > 65535 || max_conns == 0)
        usage();
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "kvd: bad address %s\n", addr);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 128)) {
        perror("kvd: listen");
        return 1;
    }
    /* The ready file tells /init the socket accepts connections, so its
     * "listening" marker on the console is true when printed. */
    if (ready) {
        FILE *f = fopen(ready, "w");
        if (!f || fprintf(f, "%s:%d\n", addr, port) < 0 || fclose(f)) {
            perror("kvd: ready file");
            return 1;
        }
    }

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Threads need little stack; the guest has little RAM. */
    pthread_attr_setstacksize(&attr, 128 * 1024);

    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                perror("kvd: accept");
            /* EMFILE and the like: back off rather than spin. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
                usleep(100 * 1000);
            continue;
        }
        pthread_mutex_lock(&db.lock);
        bool full = db.conns_now >= max_conns;
        if (!full) {
            db.conns_now++;
            db.conns_total++;
        }
        pthread_mutex_unlock(&db.lock);
        if (full) {
            static const char msg[] = "ERR too many connections\n";
            (void)!write(fd, msg, sizeof(msg) - 1);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = malloc(sizeof(*c));
        pthread_t t;
        if (c) {
            c->fd = fd;
            c->out.len = 0;
        }
        if (!c || pthread_create(&t, &attr, conn_main, c)) {
            free(c);
            close(fd);
            pthread_mutex_lock(&db.lock);
            db.conns_now--;
            pthread_mutex_unlock(&db.lock);
        }
    }
}
