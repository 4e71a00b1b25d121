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
 * With -d LOGFILE kvd is durable: every write is appended to LOGFILE as a
 * self-checking record and is on disk (fdatasync) before its reply leaves;
 * writers that arrive while a sync runs share the next one (group commit).
 * On start kvd replays the log into the table before it listens, and
 * RESTART makes it exit so that a supervisor starts it again from the disk.
 *
 * Usage: kvd [-a ADDR] [-p PORT] [-c MAXCONN] [-r READYFILE] [-d LOGFILE [-k]]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/stat.h>
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

/* ---- durable mode: the log ----
 *
 * The file starts with LOG_MAGIC; then one record per write, in the order
 * the writes were applied:
 *
 *   u32 crc     CRC-32C of the next 4 + len bytes (little-endian)
 *   u32 len     payload length
 *   payload     op ('S' set, 'D' delete), u8 key length, key, value
 *
 * INCR is logged as the SET of its result.  A record is appended under
 * db.lock, with the table change, so the log's order is the table's.
 * Replay stops at the first record that does not check (a write torn by a
 * crash, or damage) and cuts the file there, so later records follow
 * whole ones. */

#define LOG_MAGIC   "KVDLOG1\n"
#define LOG_HDR     (sizeof(LOG_MAGIC) - 1)
#define REC_HDR     8
#define REC_MAX     (REC_HDR + 2 + MAX_KEY + MAX_VALUE)

static struct {
    int fd;                     /* -1: not durable */
    const char *path;
    bool keep_cache;            /* -k: RESTART drops only the log's pages */
    off_t end;                  /* where the next record goes; db.lock */
    _Atomic uint64_t appended;  /* records appended by this run; db.lock */
    _Atomic uint64_t syncs;     /* fdatasync calls made for writers */
    uint64_t replayed;          /* records replayed at start */
    off_t damaged;              /* bytes of damaged tail cut at start */
    /* Group commit: under lock, synced counts the records known to be on
     * disk; syncing is set while one thread runs fdatasync for all. */
    pthread_mutex_t lock;
    pthread_cond_t done;
    uint64_t synced;
    bool syncing;
} wal = { .fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER };

static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc32c_table[i] = c;
    }
}

static uint32_t crc32c(const unsigned char *p, size_t n)
{
    uint32_t c = ~0u;
    while (n--)
        c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kvd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    _exit(1);
}

/* Caller holds db.lock.  Appends one record; on failure the file is cut
 * back, so that no torn record stays in front of later ones, and the
 * reason to reply is returned.  *seq becomes the record's number. */
static const char *wal_append(char op, const char *k, size_t kn,
                              const char *v, size_t vn, uint64_t *seq)
{
    unsigned char rec[REC_MAX];
    uint32_t len = (uint32_t)(2 + kn + vn);
    put_le32(rec + 4, len);
    rec[8] = (unsigned char)op;
    rec[9] = (unsigned char)kn;
    memcpy(rec + 10, k, kn);
    memcpy(rec + 10 + kn, v, vn);
    put_le32(rec, crc32c(rec + 4, 4 + len));

    size_t n = REC_HDR + len, done = 0;
    while (done < n) {
        ssize_t w = pwrite(wal.fd, rec + done, n - done, wal.end + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = w < 0 ? errno : ENOSPC;
            if (ftruncate(wal.fd, wal.end))
                die("log %s: cannot cut a failed write back: %s", wal.path,
                    strerror(errno));
            fprintf(stderr, "kvd: log %s: write: %s\n", wal.path, strerror(err));
            return "log write failed";
        }
        done += (size_t)w;
    }
    wal.end += (off_t)n;
    *seq = atomic_fetch_add(&wal.appended, 1) + 1;
    return NULL;
}

/* Returns once record seq is on disk.  Whoever finds no sync running runs
 * one for every record appended so far; the others wait for it, and if it
 * started before their record was appended, one of them runs the next.  A
 * failed fdatasync leaves the disk's state unknown: kvd exits, and what the
 * disk holds is what the next kvd replays. */
static void wal_wait(uint64_t seq)
{
    pthread_mutex_lock(&wal.lock);
    while (wal.synced < seq) {
        if (wal.syncing) {
            pthread_cond_wait(&wal.done, &wal.lock);
            continue;
        }
        wal.syncing = true;
        pthread_mutex_unlock(&wal.lock);
        /* Every record counted here was written before this load. */
        uint64_t upto = atomic_load(&wal.appended);
        if (fdatasync(wal.fd))
            die("log %s: fdatasync: %s", wal.path, strerror(errno));
        atomic_fetch_add(&wal.syncs, 1);
        pthread_mutex_lock(&wal.lock);
        wal.synced = upto;
        wal.syncing = false;
        pthread_cond_broadcast(&wal.done);
    }
    pthread_mutex_unlock(&wal.lock);
}

/* Caller holds db.lock.  Replaces or inserts; NULL on success, else the
 * reason to reply.  With seq (durable mode, not while replaying) the write
 * is logged first, and *seq is set to the record to wait for. */
static const char *store(const char *k, size_t kn, uint32_t h, const char *v,
                         size_t vn, uint64_t *seq)
{
    struct entry **pp = find(k, kn, h);
    char *nv = malloc(vn + 1);
    if (!nv)
        return "out of memory";
    struct entry *e = NULL;
    if (!*pp && (db.nkeys >= MAX_KEYS || !(e = malloc(sizeof(*e))) ||
                 !(e->key = malloc(kn + 1)))) {
        free(e);
        free(nv);
        return "out of memory";
    }
    const char *err = seq && wal.fd >= 0 ? wal_append('S', k, kn, v, vn, seq) : NULL;
    if (err) {
        if (e)
            free(e->key);
        free(e);
        free(nv);
        return err;
    }
    memcpy(nv, v, vn);
    nv[vn] = '\0';
    if (*pp) {
        free((*pp)->val);
        (*pp)->val = nv;
        (*pp)->vlen = vn;
        return NULL;
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
    return NULL;
}

/* Caller holds db.lock.  Deletes the key if it is there (*found says);
 * NULL on success, else the reason to reply.  seq as for store(). */
static const char *delete(const char *k, size_t kn, uint32_t h, bool *found,
                          uint64_t *seq)
{
    struct entry **pp = find(k, kn, h), *e = *pp;
    *found = e != NULL;
    if (!e)
        return NULL;
    const char *err = seq && wal.fd >= 0 ? wal_append('D', k, kn, "", 0, seq) : NULL;
    if (err)
        return err;
    *pp = e->next;
    db.nkeys--;
    free(e->key);
    free(e->val);
    free(e);
    return NULL;
}

struct out {
    char buf[OUT_CAP];
    size_t len;
    uint64_t sync_seq;  /* durable mode: the log record the replies wait for */
    bool restart;       /* RESTART answered: send, then exit */
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
        err = store(k, kn, h, num, (size_t)n, &o->sync_seq);
        if (!err) {
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
    bool is_restart = cn == 7 && !strncmp(cmd, "RESTART", 7);
    if ((is_ping || is_stats || is_restart) && kn) {
        error_reply(o, "too many arguments");
        return;
    }
    if (is_restart) {
        if (wal.fd < 0) {
            error_reply(o, "not in durable mode");
            return;
        }
        o->restart = true;
        reply(o, "OK\n");
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
        /* Durable mode adds its own counters to the line. */
        char wal_stats[96] = "";
        if (wal.fd >= 0)
            snprintf(wal_stats, sizeof(wal_stats), " logged=%" PRIu64 " syncs=%"
                     PRIu64 " replayed=%" PRIu64, atomic_load(&wal.appended),
                     atomic_load(&wal.syncs), wal.replayed);
        pthread_mutex_lock(&db.lock);
        reply(o, "STATS keys=%" PRIu64 " sets=%" PRIu64 " gets=%" PRIu64
              " dels=%" PRIu64 " incrs=%" PRIu64 " pings=%" PRIu64
              " errors=%" PRIu64 " conns=%" PRIu64 " conns_total=%" PRIu64 "%s\n",
              db.nkeys, db.sets, db.gets, db.dels, db.incrs, db.pings,
              db.errors, db.conns_now, db.conns_total, wal_stats);
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
        const char *err = store(key, kn, h, val, vn, &o->sync_seq);
        if (!err)
            db.sets++;
        else
            db.errors++;
        pthread_mutex_unlock(&db.lock);
        if (err)
            reply(o, "ERR %s\n", err);
        else
            reply(o, "OK\n");
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
        bool found;
        const char *err = delete(key, kn, h, &found, &o->sync_seq);
        if (!err)
            db.dels++;
        else
            db.errors++;
        pthread_mutex_unlock(&db.lock);
        if (err)
            reply(o, "ERR %s\n", err);
        else
            reply(o, found ? "OK\n" : "NOTFOUND\n");
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

/* Sends the replies gathered so far.  In durable mode none of them leaves
 * before the log records of the writes they answer are on disk; replies
 * gathered together (pipelined requests) wait for one sync. */
static bool flush_out(struct conn *c)
{
    if (c->out.sync_seq) {
        wal_wait(c->out.sync_seq);
        c->out.sync_seq = 0;
    }
    bool ok = write_all(c->fd, c->out.buf, c->out.len);
    c->out.len = 0;
    return ok;
}

/* RESTART, after its OK was sent: stop every write (db.lock is never given
 * back), put the log on disk, drop it from the page cache (and, unless -k,
 * the whole page cache: sync; echo 3 > /proc/sys/vm/drop_caches), exit 0.
 * The kvd started next reads the log back from the disk itself. */
static void __attribute__((noreturn)) restart_exit(void)
{
    pthread_mutex_lock(&db.lock);
    if (fdatasync(wal.fd))
        die("log %s: fdatasync: %s", wal.path, strerror(errno));
    posix_fadvise(wal.fd, 0, 0, POSIX_FADV_DONTNEED);
    sync();
    if (!wal.keep_cache) {
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "3\n", 2) != 2)
            fprintf(stderr, "kvd: RESTART: cannot drop the page cache: %s\n",
                    strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    fprintf(stderr, "kvd: RESTART: log on disk, exiting\n");
    _exit(0);
}

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
            if (c->out.len > OUT_CAP - MAX_VALUE - 64 && !flush_out(c))
                goto done;
            if (len > MAX_LINE)
                error_reply(&c->out, "line too long");
            else
                handle_line(&c->out, line);
            if (c->out.restart) {
                /* Whatever follows RESTART on this connection is not read. */
                flush_out(c);
                restart_exit();
            }
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
        if (c->out.len && !flush_out(c))
            break;
    }
done:
    close(c->fd);
    free(c);
    pthread_mutex_lock(&db.lock);
    db.conns_now--;
    pthread_mutex_unlock(&db.lock);
    return NULL;
}

/* Reads the log sequentially in large chunks: one read per record would
 * cost much under TCG. */
struct reader {
    int fd;
    size_t pos, len;
    unsigned char buf[64 * 1024];
};

/* Makes n bytes (n <= sizeof(buf)) available at r->buf + r->pos; false if
 * the file ends first. */
static bool rd_need(struct reader *r, size_t n)
{
    while (r->len - r->pos < n) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
        ssize_t got = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die("log %s: read: %s", wal.path, strerror(errno));
        if (got == 0)
            return false;
        r->len += (size_t)got;
    }
    return true;
}

/* Applies one record's payload; false if it is not a well-formed write. */
static bool replay_record(const unsigned char *p, uint32_t len)
{
    char op = (char)p[0];
    size_t kn = p[1];
    if (kn == 0 || kn > MAX_KEY || 2 + kn > len)
        return false;
    const char *k = (const char *)p + 2, *v = k + kn;
    size_t vn = len - 2 - kn;
    uint32_t h = hash_key(k, kn);
    if (op == 'S' && vn >= 1 && vn <= MAX_VALUE) {
        const char *err = store(k, kn, h, v, vn, NULL);
        if (err)
            die("log %s: replay: %s", wal.path, err);
        return true;
    }
    bool found;
    return op == 'D' && vn == 0 && !delete(k, kn, h, &found, NULL);
}

/* Makes a new log file's creation durable: fsync its directory. */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + 1 : 1,
             slash ? path : ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd))
        die("log %s: sync directory %s: %s", path, dir, strerror(errno));
    close(fd);
}

/* Opens (or creates) the log and replays it into the table; single-threaded,
 * before kvd listens. */
static void wal_open(const char *path)
{
    static struct reader r;
    wal.path = path;
    wal.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (wal.fd < 0)
        die("log %s: %s", path, strerror(errno));
    r.fd = wal.fd;
    bool whole = rd_need(&r, LOG_HDR);
    if (memcmp(r.buf, LOG_MAGIC, r.len < LOG_HDR ? r.len : LOG_HDR))
        die("log %s: not a kvd log (refusing to touch it)", path);
    if (!whole) {
        /* New, or its creation was cut short: write the header durably. */
        if (pwrite(wal.fd, LOG_MAGIC, LOG_HDR, 0) != (ssize_t)LOG_HDR ||
            ftruncate(wal.fd, LOG_HDR) || fdatasync(wal.fd))
            die("log %s: create: %s", path, strerror(errno));
        sync_dir(path);
        wal.end = LOG_HDR;
        fprintf(stderr, "kvd: log %s: new\n", path);
        return;
    }
    r.pos = LOG_HDR;
    off_t good = LOG_HDR;
    pthread_mutex_lock(&db.lock);
    while (rd_need(&r, REC_HDR)) {
        uint32_t len = get_le32(r.buf + r.pos + 4);
        if (len < 3 || len > REC_MAX - REC_HDR || !rd_need(&r, REC_HDR + len))
            break;
        const unsigned char *rec = r.buf + r.pos;
        if (crc32c(rec + 4, 4 + len) != get_le32(rec) ||
            !replay_record(rec + REC_HDR, len))
            break;
        r.pos += REC_HDR + len;
        good += (off_t)(REC_HDR + len);
        wal.replayed++;
    }
    pthread_mutex_unlock(&db.lock);

    struct stat st;
    if (fstat(wal.fd, &st))
        die("log %s: stat: %s", path, strerror(errno));
    wal.end = good;
    fprintf(stderr, "kvd: log %s: replayed %" PRIu64 " records (%lld bytes)\n",
            path, wal.replayed, (long long)good);
    if (st.st_size > good) {
        wal.damaged = st.st_size - good;
        fprintf(stderr, "kvd: log %s: ignored a damaged tail of %lld bytes at "
                "offset %lld\n", path, (long long)wal.damaged, (long long)good);
        if (ftruncate(wal.fd, good) || fdatasync(wal.fd))
            die("log %s: cut the damaged tail: %s", path, strerror(errno));
    }
}

/* Written under a temporary name and renamed, so whoever sees the file
 * reads all of it. */
static void write_ready(const char *ready, const char *addr, int port)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%s:%d", addr, port) >= 0;
    if (ok && wal.fd >= 0)
        ok = fprintf(f, " replayed=%" PRIu64 " damaged=%lld", wal.replayed,
                     (long long)wal.damaged) >= 0;
    ok = ok && fputc('\n', f) != EOF;
    if (f && fclose(f))
        ok = false;
    if (!ok || rename(tmp, ready)) {
        perror("kvd: ready file");
        exit(1);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: kvd [-a ADDR] [-p PORT] [-c MAXCONN] [-r READYFILE] "
            "[-d LOGFILE [-k]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "0.0.0.0", *ready = NULL;
    int port = 7000, opt;

    const char *log = NULL;
    while ((opt = getopt(argc, argv, "a:p:c:r:d:k")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': max_conns = (unsigned)atoi(optarg); break;
        case 'r': ready = optarg; break;
        case 'd': log = optarg; break;
        case 'k': wal.keep_cache = true; break;
        default: usage();
        }
    }
    if (optind != argc || port <= 0 || port > 65535 || max_conns == 0 ||
        (wal.keep_cache && !log))
        usage();
    signal(SIGPIPE, SIG_IGN);
    crc32c_init();
    if (log)
        wal_open(log);

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
    if (ready)
        write_ready(ready, addr, port);

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
            c->out.sync_seq = 0;
            c->out.restart = false;
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
