/*
 * syncvm end to end: a leader and a secondary in two processes connected
 * over 127.0.0.1 through PlvLink, on synthetic memory with controlled
 * divergence; plus the failure cases (killed sender, stale and corrupted
 * messages, timeouts, retries) and the PAGES/HASHES codec.
 *
 * The parent process is always the one whose memory is checked; the forked
 * child is the peer (real or scripted) and reports by its exit status.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plover/link.h"
#include "plover/syncvm.h"
#include "plover/zstd-codec.h"
#include "helper-run.h"

#define PAGE 4096u
#define MAX_REGIONS 4

static const uint8_t SECRET[] = "syncvm test secret";

/* ---- synthetic memory ---- */

typedef struct Spec {
    unsigned n_regions;
    uint64_t pages;             /* per region */
    double dirty;               /* fraction of pages in the union */
    double diverge;             /* fraction of union pages that differ */
    uint64_t devstate_len;
    uint32_t seed;
    bool deltas;                /* leader: page deltas and compression */
    int base;                   /* device-state bases: 0 none, 1 the same
                                 * on both sides, 2 different ones */
} Spec;

typedef struct World {
    Spec spec;
    uint8_t *lmem[MAX_REGIONS], *smem[MAX_REGIONS];
    PlvMemView *lmv, *smv;
    uint64_t n_union, n_div, n_div_zero;
} World;

static uint64_t rng(uint64_t *s)
{
    /* xorshift64*: fast enough to fill a GiB. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static double rng01(uint64_t *s)
{
    return (rng(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint8_t *map_mem(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    ck_assert(p != MAP_FAILED);
    return p;
}

static void world_build(World *w, const Spec *spec)
{
    uint64_t s = spec->seed * UINT64_C(0x9e3779b97f4a7c15) + 1;

    memset(w, 0, sizeof(*w));
    w->spec = *spec;
    w->lmv = plv_memview_new();
    w->smv = plv_memview_new();
    for (unsigned r = 0; r < spec->n_regions; r++) {
        size_t len = spec->pages * PAGE;
        uint64_t *words;

        w->lmem[r] = map_mem(len);
        w->smem[r] = map_mem(len);
        words = (uint64_t *)w->lmem[r];
        for (size_t i = 0; i < len / 8; i += 8) {
            /* Cheap distinct contents: one random word per 64 bytes. */
            words[i] = rng(&s);
            words[i + 3] = i;
        }
        memcpy(w->smem[r], w->lmem[r], len);
        ck_assert_int_ge(plv_memview_add_region(w->lmv, 10 + r, PAGE,
                                                spec->pages, w->lmem[r],
                                                NULL), 0);
        ck_assert_int_ge(plv_memview_add_region(w->smv, 10 + r, PAGE,
                                                spec->pages, w->smem[r],
                                                NULL), 0);
        for (uint64_t p = 0; p < spec->pages; p++) {
            uint8_t *lp = w->lmem[r] + p * PAGE, *sp = w->smem[r] + p * PAGE;
            uint64_t who;

            if (rng01(&s) >= spec->dirty) {
                continue;
            }
            /* Dirty on the leader, on the secondary, or on both. */
            who = rng(&s) % 3;
            if (who != 1) {
                plv_memview_mark_dirty(w->lmv, r, p * PAGE, PAGE);
            }
            if (who != 0) {
                plv_memview_mark_dirty(w->smv, r, p * PAGE, PAGE);
            }
            w->n_union++;
            if (rng01(&s) < spec->diverge) {
                if (rng(&s) % 16 == 0) {
                    memset(lp, 0, PAGE);    /* a zero page to send */
                    w->n_div_zero++;
                } else {
                    sp[rng(&s) % PAGE] ^= 1 + rng(&s) % 255;
                }
                w->n_div++;
            }
        }
    }
}

static void world_free(World *w)
{
    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        munmap(w->lmem[r], w->spec.pages * PAGE);
        munmap(w->smem[r], w->spec.pages * PAGE);
    }
    plv_memview_free(w->lmv);
    plv_memview_free(w->smv);
}

static bool converged(const World *w)
{
    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        if (memcmp(w->lmem[r], w->smem[r], w->spec.pages * PAGE) != 0) {
            return false;
        }
    }
    return true;
}

static void assert_converged(const World *w)
{
    ck_assert(converged(w));
}

/* Copies of the secondary's memory, to prove it was not touched. */
static uint8_t **snapshot(const World *w)
{
    uint8_t **snap = g_new0(uint8_t *, MAX_REGIONS);

    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        snap[r] = g_memdup2(w->smem[r], w->spec.pages * PAGE);
    }
    return snap;
}

static void assert_untouched(const World *w, uint8_t **snap)
{
    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        ck_assert(memcmp(snap[r], w->smem[r], w->spec.pages * PAGE) == 0);
        g_free(snap[r]);
    }
    g_free(snap);
}

static void devstate_fill(GByteArray *b, uint64_t len, uint32_t seed)
{
    g_byte_array_set_size(b, len);
    for (uint64_t i = 0; i < len; i++) {
        b->data[i] = (uint8_t)(i * 131 + seed);
    }
}

/* ---- the two processes ---- */

typedef struct Peer {
    World *w;
    PlvHashKey key;
    PlvSyncvmConfig cfg;
    PlvSyncvmStats st;
    GByteArray *dev_out;        /* secondary: what apply_device_state got */
    unsigned dev_applies;
    unsigned fail_applies;      /* refuse this many device states first */
    unsigned commits;           /* secondary: commit calls */
    bool fail_commit;           /* secondary: every commit fails */
    const gint *leader_done;    /* the leader's run returned (threads only) */
    bool commit_saw_pages;      /* at the last commit: memory converged */
    uint32_t written;           /* pages the last commit was told of */
    bool written_ok;            /* ... each written and equal to the leader's */
    uint8_t **cut;              /* leader: memory at the cut (snapshot_union) */
    unsigned snapshots;         /* leader: snapshot_union calls */
    uint32_t snapshot_pages;
    bool commit_before_ack;     /* ... and the leader had not returned */
    unsigned n_err;
    PlvSvmErrorCode last_code;
    unsigned code_seen[16];
    GByteArray *base;           /* device state "from the last syncvm" */
    /*
     * Secondary: region drive_region is a drive, as the glue maps one:
     * its content is in drive, and the view's memory is a shadow that the
     * union's blocks are read into (snapshot_union) and the written ones
     * go out of, to drive, in the commit.
     */
    uint8_t *drive;
    unsigned drive_region;
    unsigned drive_unions;
} Peer;

static void on_error(void *opaque, uint32_t peer, PlvSvmErrorCode code,
                     const char *reason)
{
    Peer *p = opaque;

    p->n_err++;
    p->last_code = code;
    if (code < 16) {
        p->code_seen[code]++;
    }
    if (getenv("SYNCVM_TEST_VERBOSE")) {
        fprintf(stderr, "[%d] on_error(peer %u, %d): %s\n", getpid(), peer,
                code, reason);
    }
}

static int get_dev(void *opaque, GByteArray *out, GError **err)
{
    Peer *p = opaque;

    devstate_fill(out, p->w->spec.devstate_len, p->w->spec.seed);
    return 0;
}

static int apply_dev(void *opaque, const uint8_t *data, size_t len,
                     GError **err)
{
    Peer *p = opaque;

    if (p->fail_applies) {
        p->fail_applies--;
        return -1;              /* without an error: the engine copes */
    }
    p->dev_applies++;
    g_byte_array_set_size(p->dev_out, 0);
    g_byte_array_append(p->dev_out, data, len);
    return 0;
}

/* Records what the secondary's memory and the leader were at the commit. */
static int commit_dev(void *opaque, const PlvPageRef *written,
                      uint32_t n_written, GError **err)
{
    Peer *p = opaque;

    p->commits++;
    p->written = n_written;
    p->written_ok = true;
    for (uint32_t i = 0; i < n_written; i++) {
        const PlvMemRegion *reg = plv_memview_region_const(p->w->smv,
                                                           written[i].region);

        p->written_ok &= memcmp(plv_memview_page(reg, written[i].page),
                                p->w->lmem[written[i].region] +
                                written[i].page * (uint64_t)PAGE, PAGE) == 0;
    }
    for (uint32_t i = 0; p->drive && i < n_written; i++) {
        if (written[i].region == p->drive_region) {
            const PlvMemRegion *reg =
                plv_memview_region_const(p->w->smv, p->drive_region);

            memcpy(p->drive + written[i].page * (uint64_t)PAGE,
                   plv_memview_page(reg, written[i].page), PAGE);
        }
    }
    p->commit_saw_pages = converged(p->w);
    p->commit_before_ack = p->leader_done &&
                           !g_atomic_int_get(p->leader_done);
    if (p->fail_commit) {
        g_set_error(err, g_quark_from_static_string("test"), 1,
                    "devices refused the state");
        return -1;
    }
    return 0;
}

/* The secondary's snapshot_union for a drive: its union blocks, read. */
static int drive_union(void *opaque, const PlvPageRef *refs, uint32_t n,
                       GError **err)
{
    Peer *p = opaque;
    const PlvMemRegion *reg = plv_memview_region_const(p->w->smv,
                                                       p->drive_region);

    p->drive_unions++;
    for (uint32_t i = 0; i < n; i++) {
        if (refs[i].region == p->drive_region) {
            memcpy(plv_memview_page(reg, refs[i].page),
                   p->drive + refs[i].page * (uint64_t)PAGE, PAGE);
        }
    }
    return 0;
}

/* The secondary's last region becomes a drive over a shadow of garbage. */
static void drive_attach(Peer *p)
{
    unsigned r = p->w->spec.n_regions - 1;
    uint64_t len = p->w->spec.pages * (uint64_t)PAGE;

    p->drive_region = r;
    p->drive = g_memdup2(p->w->smem[r], len);
    memset(p->w->smem[r], 0x5a, len);
    p->cfg.snapshot_union = drive_union;
}

/* What the drive holds goes back into the view, for the usual checks. */
static void drive_detach(Peer *p)
{
    memcpy(p->w->smem[p->drive_region], p->drive,
           p->w->spec.pages * (uint64_t)PAGE);
    g_free(p->drive);
    p->drive = NULL;
}

static void peer_init(Peer *p, World *w, const uint8_t *session_key)
{
    memset(p, 0, sizeof(*p));
    p->w = w;
    plv_hash_key_derive(&p->key, session_key, PLV_LINK_KEY_LEN);
    p->cfg.vid = 4;
    p->cfg.epoch = 17;
    p->cfg.key = &p->key;
    p->cfg.timeout_ms = 5000;
    p->cfg.max_attempts = 3;
    p->cfg.opaque = p;
    p->cfg.on_error = on_error;
    p->cfg.get_device_state = get_dev;
    p->cfg.apply_device_state = apply_dev;
    p->cfg.commit = commit_dev;
    p->dev_out = g_byte_array_new();
}

/*
 * The world's choices for one side: the leader's page deltas and
 * compression, and the device-state base each side holds (the leader's
 * new blob with every 997th byte changed, and on the secondary of a
 * world with base 2 something else again).
 */
static void peer_configure(Peer *p, bool leader)
{
    const Spec *s = &p->w->spec;

    p->cfg.page_deltas = p->cfg.compress = leader && s->deltas;
    if (!s->base) {
        return;
    }
    p->base = g_byte_array_new();
    devstate_fill(p->base, s->devstate_len, s->seed);
    for (uint64_t i = 0; i < p->base->len; i += 997) {
        p->base->data[i] ^= s->base == 2 && !leader ? 0x33 : 0x5a;
    }
    p->cfg.devstate_base = p->base->data;
    p->cfg.devstate_base_len = p->base->len;
}

typedef int (*ChildFn)(PlvLink *link, World *w, void *arg);

/*
 * Forks a child that connects to us and runs fn (exit status: its result);
 * returns our end of the link.
 */
static PlvLink *spawn(ChildFn fn, World *w, void *arg, pid_t *pid)
{
    GError *err = NULL;
    int lfd = plv_link_listen("127.0.0.1", 0, &err);
    uint16_t port;
    PlvLink *link;

    ck_assert_msg(lfd >= 0, "listen: %s", err ? err->message : "?");
    port = plv_link_local_port(lfd);
    *pid = fork();
    ck_assert_int_ge(*pid, 0);
    if (*pid == 0) {
        PlvLink *c;

        close(lfd);
        c = plv_link_connect("127.0.0.1", port, 1, 2, PLV_LINK_CHANNEL_SYNCVM,
                             SECRET, sizeof(SECRET), 5000, NULL);
        _exit(c ? fn(c, w, arg) : 99);
    }
    link = plv_link_accept(lfd, 2, PLV_LINK_CHANNEL_SYNCVM, SECRET,
                           sizeof(SECRET), 5000, &err);
    ck_assert_msg(link != NULL, "accept: %s", err ? err->message : "?");
    close(lfd);
    return link;
}

static int wait_child(pid_t pid)
{
    int status;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

/* A real leader; arg: optional channel wrapper set-up. */
typedef struct LeaderOpts {
    int kill_at_pages;          /* SIGKILL self before the n-th PAGES (1..) */
    bool kill_at_eof;
    bool corrupt_first_pages;   /* out-of-range index in attempt 1 */
    int expect_attempts;
    bool send_all_dirty;
    bool sequential;            /* no overlap_send */
} LeaderOpts;

typedef struct Wrap {
    PlvSyncvmChannel inner;
    const LeaderOpts *o;
    int pages_sent;
    bool corrupted;
} Wrap;

static int wrap_send(void *opaque, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    Wrap *w = opaque;

    if (type == PLV_SVM_MSG_PAGES && ++w->pages_sent == w->o->kill_at_pages) {
        raise(SIGKILL);
    }
    if (type == PLV_SVM_MSG_EOF && w->o->kill_at_eof) {
        raise(SIGKILL);
    }
    if (type == PLV_SVM_MSG_PAGES && w->o->corrupt_first_pages &&
        !w->corrupted) {
        /* First record's union index := 0xfffffff0. */
        struct iovec *v = g_memdup2(iov, sizeof(*iov) * iovcnt);
        uint8_t *head = g_memdup2(iov[0].iov_base, iov[0].iov_len);
        int rc;

        memset(head + PLV_SVM_HDR_LEN + 4, 0xf0, 1);
        memset(head + PLV_SVM_HDR_LEN + 5, 0xff, 3);
        v[0].iov_base = head;
        w->corrupted = true;
        rc = w->inner.send(w->inner.opaque, type, v, iovcnt, err);
        g_free(head);
        g_free(v);
        return rc;
    }
    return w->inner.send(w->inner.opaque, type, iov, iovcnt, err);
}

static int wrap_recv(void *opaque, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    Wrap *w = opaque;

    return w->inner.recv(w->inner.opaque, type, payload, timeout_ms, err);
}

static int real_leader(PlvLink *link, World *w, void *arg)
{
    static const LeaderOpts none;
    const LeaderOpts *o = arg ? arg : &none;
    Wrap wr = { .o = o };
    PlvSyncvmChannel ch;
    GError *err = NULL;
    Peer p;
    int rc;

    peer_init(&p, w, plv_link_session_key(link));
    peer_configure(&p, true);
    p.cfg.send_all_dirty = o->send_all_dirty;
    p.cfg.overlap_send = !o->sequential;
    plv_syncvm_channel_init_bulk(&wr.inner, plv_link_bulk(link));
    ch = wr.inner;
    ch.opaque = &wr;
    ch.send = wrap_send;
    ch.recv = wrap_recv;
    rc = plv_syncvm_leader_run(&p.cfg, &ch, w->lmv, &p.st, &err);
    if (rc < 0) {
        if (getenv("SYNCVM_TEST_VERBOSE")) {
            fprintf(stderr, "leader: %s\n", err->message);
        }
        return 1;
    }
    if (p.st.divergent_pages != w->n_div && !o->send_all_dirty) {
        fprintf(stderr, "leader: %" PRIu64 " divergent, expected %" PRIu64
                "\n", p.st.divergent_pages, w->n_div);
        return 2;
    }
    if (o->expect_attempts && (int)p.st.attempts != o->expect_attempts) {
        return 3;
    }
    plv_link_close(link);
    return 0;
}

/* Leader -> secondary bytes the protocol should need (payloads only). */
static uint64_t expected_leader_bytes(const World *w, uint64_t n_pages,
                                      uint64_t n_zero)
{
    uint64_t b = PLV_SVM_HDR_LEN + 4 + PLV_SVM_BASE_LEN;
    uint64_t dev = w->spec.devstate_len;

    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        const PlvBitmap *d = &plv_memview_region(w->lmv, r)->dirty;
        uint64_t nw = plv_bitmap_n_words(d->n_bits), nz = 0;

        for (uint64_t i = 0; i < nw; i++) {
            nz += d->words[i] != 0;
        }
        b += PLV_SVM_BITMAP_REG_LEN + (nz * 12 < nw * 8 ? nz * 12 : nw * 8);
    }
    /* 256 records (1 MiB of 4 KiB pages) per PAGES message. */
    b += (n_pages + 255) / 256 * (PLV_SVM_HDR_LEN + 9);
    b += n_pages * PLV_SVM_PAGE_REC_LEN + (n_pages - n_zero) * PAGE;
    b += (dev + (1 << 20) - 1) / (1 << 20) * (PLV_SVM_HDR_LEN + 8) + dev;
    return b + PLV_SVM_HDR_LEN + PLV_SVM_EOF_LEN;
}

/*
 * A test pair: the world, the child (peer) process, and our side of the
 * link with its channel and configuration.
 */
typedef struct Pair {
    World w;
    pid_t pid;
    PlvLink *link;
    PlvSyncvmChannel ch;
    Peer p;
    uint8_t **snap;             /* our memory before the run, if asked */
} Pair;

static void pair_start(Pair *x, const Spec *spec, ChildFn fn, void *arg,
                       bool snap)
{
    world_build(&x->w, spec);
    x->snap = snap ? snapshot(&x->w) : NULL;
    x->link = spawn(fn, &x->w, arg, &x->pid);
    peer_init(&x->p, &x->w, plv_link_session_key(x->link));
    peer_configure(&x->p, false);
    plv_syncvm_channel_init_bulk(&x->ch, plv_link_bulk(x->link));
}

/* Closes our end, reaps the child (its status) and frees the world. */
static int pair_finish(Pair *x)
{
    int status;

    plv_link_close(x->link);
    status = wait_child(x->pid);
    if (x->snap) {
        assert_untouched(&x->w, x->snap);
    }
    g_byte_array_unref(x->p.dev_out);
    world_free(&x->w);
    return status;
}

static int pair_secondary(Pair *x, GError **err)
{
    return plv_syncvm_secondary_run(&x->p.cfg, &x->ch, x->w.smv, &x->p.st,
                                    err);
}

static int pair_leader(Pair *x, GError **err)
{
    return plv_syncvm_leader_run(&x->p.cfg, &x->ch, x->w.lmv, &x->p.st, err);
}

static void run_and_check(const Spec *spec, unsigned threads,
                          bool overlap)
{
    LeaderOpts o = { .sequential = !overlap };
    Pair x;
    const World *w = &x.w;
    const PlvSyncvmStats *st = &x.p.st;
    GError *err = NULL;
    int rc;

    pair_start(&x, spec, real_leader, &o, false);
    x.p.cfg.hash_threads = threads;
    rc = pair_secondary(&x, &err);
    ck_assert_msg(rc == 0, "secondary: %s", err ? err->message : "?");

    assert_converged(w);
    ck_assert_uint_eq(st->dirty_union, w->n_union);
    ck_assert_uint_eq(st->divergent_pages, w->n_div);
    ck_assert_uint_eq(st->zero_pages, w->n_div_zero);
    ck_assert_uint_eq(st->same_pages, w->n_union - w->n_div);
    /* Secondary: its BITMAP, the fingerprints (16 B a page) and the ACK. */
    ck_assert_uint_ge(st->bytes_sent, w->n_union * PLV_SVM_HASH_LEN);
    if (!spec->deltas) {
        ck_assert_uint_eq(st->page_bytes,
                          (w->n_div - w->n_div_zero) * PAGE);
        ck_assert_uint_eq(st->bytes_received,
                          expected_leader_bytes(w, w->n_div, w->n_div_zero));
        ck_assert_uint_le(st->bytes_sent, w->n_union * PLV_SVM_HASH_LEN +
                          (w->n_union / 4096 + 1) * 32 + 36 +
                          PLV_SVM_HDR_LEN + 4 + PLV_SVM_BASE_LEN +
                          spec->n_regions * (PLV_SVM_BITMAP_REG_LEN +
                                             (spec->pages / 64 + 1) * 8));
    } else {
        /* + for each non-zero divergent page (one byte differs), the
         * block fingerprints of one super-block and a mask */
        uint64_t fp = w->n_union * PLV_SVM_HASH_LEN +
                      (w->n_div - w->n_div_zero) *
                      (1 + PLV_SUPERBLOCK_BLOCKS * 4);
        /* and the headers of a HASHES and a BLOCKHASHES per step */
        uint64_t steps = (w->n_union + 4095) / 4096;

        ck_assert_uint_ge(st->sent_by[PLV_SVM_BYTES_FINGERPRINTS], fp);
        ck_assert_uint_le(st->sent_by[PLV_SVM_BYTES_FINGERPRINTS],
                          fp + 2 * steps * (PLV_SVM_HDR_LEN + 8));
        /* A block a page, compressed, instead of whole pages. */
        ck_assert_uint_lt(st->bytes_received,
                          expected_leader_bytes(w, w->n_div,
                                                w->n_div_zero) / 20);
    }
    ck_assert_uint_eq(x.p.dev_applies, 1);
    ck_assert_uint_eq(x.p.commits, 1);
    ck_assert(x.p.commit_saw_pages);
    ck_assert_uint_eq(x.p.written, w->n_div);
    ck_assert(x.p.written_ok);
    ck_assert(st->ram_touched == (w->n_div > 0));
    ck_assert_uint_eq(x.p.dev_out->len, spec->devstate_len);
    {
        GByteArray *want = g_byte_array_new();

        devstate_fill(want, spec->devstate_len, spec->seed);
        ck_assert(want->len == 0 ||
                  memcmp(want->data, x.p.dev_out->data, want->len) == 0);
        g_byte_array_unref(want);
    }
    ck_assert_uint_eq(x.p.n_err, 0);
    ck_assert_uint_eq(st->attempts, 1);
    if (spec->deltas) {
        /* One byte differs in each (non-zero) divergent page: one block
         * goes, and the device state against an equal base is tiny. */
        ck_assert_uint_eq(st->delta_pages, w->n_div - w->n_div_zero);
        if (spec->base == 1) {
            ck_assert_uint_lt(st->devstate_wire_bytes,
                              64 + spec->devstate_len / 100);
        }
        if (w->n_union == 0) {
            ck_assert_uint_le(st->bytes_sent + st->bytes_received, 2048);
        }
    }
    if (x.p.base) {
        g_byte_array_unref(x.p.base);
    }
    ck_assert_int_eq(pair_finish(&x), 0);
}

/* 8 MiB x 2 regions unless said otherwise. */
START_TEST(converge_0pct)
{
    Spec s = { .n_regions = 2, .pages = 2048, .dirty = 0.3, .diverge = 0,
               .devstate_len = 5000, .seed = 1 };

    run_and_check(&s, 1, false);
}
END_TEST

START_TEST(converge_3pct_sparse)
{
    Spec s = { .n_regions = 3, .pages = 4096, .dirty = 0.01,
               .diverge = 0.03, .devstate_len = 100, .seed = 2 };

    run_and_check(&s, 1, true);
}
END_TEST

START_TEST(converge_28pct_dense)
{
    Spec s = { .n_regions = 2, .pages = 2048, .dirty = 0.9,
               .diverge = 0.28, .devstate_len = 3 << 20, .seed = 3 };

    run_and_check(&s, 2, true);
}
END_TEST

START_TEST(converge_100pct)
{
    Spec s = { .n_regions = 4, .pages = 1024, .dirty = 0.5, .diverge = 1.0,
               .devstate_len = 70000, .seed = 4 };

    run_and_check(&s, 1, false);
}
END_TEST

START_TEST(converge_empty)
{
    Spec s = { .n_regions = 1, .pages = 64, .dirty = 0, .diverge = 0,
               .devstate_len = 0, .seed = 5 };

    run_and_check(&s, 1, true);
}
END_TEST

/* 1 GiB of guest memory, a third of it dirty, 3% of that divergent. */
START_TEST(converge_1gib)
{
    Spec s = { .n_regions = 1, .pages = (1u << 30) / PAGE, .dirty = 0.3,
               .diverge = 0.03, .devstate_len = 1 << 20, .seed = 6 };

    run_and_check(&s, 0, true);
}
END_TEST

/* Sub-page deltas, compression, the device state against a shared base. */
START_TEST(converge_deltas)
{
    Spec s = { .n_regions = 2, .pages = 2048, .dirty = 0.3, .diverge = 0.2,
               .devstate_len = 60000, .seed = 11, .deltas = true,
               .base = 1 };

    run_and_check(&s, 1, true);
}
END_TEST

/*
 * Nothing dirty, a 60 KB device state that changed in a few places since
 * the base: the whole syncvm, both ways, fits in 2 KB.
 */
START_TEST(converge_nothing_dirty_is_small)
{
    Spec s = { .n_regions = 2, .pages = 256, .dirty = 0, .diverge = 0,
               .devstate_len = 60000, .seed = 13, .deltas = true,
               .base = 1 };

    run_and_check(&s, 1, true);
}
END_TEST

/* The two ends hold different bases: the blob goes compressed, whole. */
START_TEST(converge_deltas_other_base)
{
    Spec s = { .n_regions = 1, .pages = 4096, .dirty = 0.1, .diverge = 0.5,
               .devstate_len = 60000, .seed = 12, .deltas = true,
               .base = 2 };

    run_and_check(&s, 2, false);
}
END_TEST

/* Baseline mode: every union page is sent, and memory still converges. */
START_TEST(converge_send_all)
{
    Spec s = { .n_regions = 2, .pages = 1024, .dirty = 0.2, .diverge = 0.1,
               .seed = 7 };
    LeaderOpts o = { .send_all_dirty = true };
    Pair x;

    pair_start(&x, &s, real_leader, &o, false);
    x.p.cfg.send_all_dirty = true;
    ck_assert_int_eq(pair_secondary(&x, NULL), 0);
    assert_converged(&x.w);
    ck_assert_uint_eq(x.p.st.divergent_pages, x.w.n_union);
    ck_assert_uint_eq(x.p.st.bytes_sent,
                      PLV_SVM_HDR_LEN + 4 + 2 * PLV_SVM_BITMAP_REG_LEN +
                      2 * 16 * 8 + PLV_SVM_BASE_LEN +
                      PLV_SVM_HDR_LEN + 12);   /* no HASHES */
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

/* A secondary not set up for the baseline refuses unchecked pages. */
START_TEST(send_all_needs_consent)
{
    Spec s = { .n_regions = 1, .pages = 512, .dirty = 0.2, .diverge = 0.5,
               .seed = 15 };
    LeaderOpts o = { .send_all_dirty = true };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, real_leader, &o, true);
    ck_assert_int_eq(pair_secondary(&x, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_MALFORMED);
    g_clear_error(&err);
    ck_assert_uint_eq(x.p.dev_applies, 0);
    ck_assert_int_eq(pair_finish(&x), 1);
}
END_TEST

/* ---- the sender dies mid-transfer: memory exactly as before ---- */

static void killed_leader(LeaderOpts *o)
{
    Spec s = { .n_regions = 2, .pages = 4096, .dirty = 0.5, .diverge = 0.5,
               .devstate_len = 4096, .seed = 8 };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, real_leader, o, true);
    ck_assert_int_eq(pair_secondary(&x, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_LINK);
    g_clear_error(&err);
    ck_assert_uint_eq(x.p.dev_applies, 0);
    ck_assert_uint_ge(x.p.n_err, 1);
    /* pair_finish checks the memory against the snapshot. */
    ck_assert_int_eq(pair_finish(&x), 128 + SIGKILL);
}

START_TEST(killed_mid_pages)
{
    LeaderOpts o = { .kill_at_pages = 3, .sequential = true };

    killed_leader(&o);
}
END_TEST

START_TEST(killed_before_eof)
{
    LeaderOpts o = { .kill_at_eof = true };

    killed_leader(&o);
}
END_TEST

/* A corrupted PAGES in attempt 1: NACKed, retried, converges in 2. */
START_TEST(corrupt_pages_retried)
{
    Spec s = { .n_regions = 1, .pages = 2048, .dirty = 0.5, .diverge = 0.2,
               .devstate_len = 10, .seed = 9 };
    LeaderOpts o = { .corrupt_first_pages = true, .expect_attempts = 2 };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, real_leader, &o, false);
    ck_assert_msg(pair_secondary(&x, &err) == 0, "%s",
                  err ? err->message : "");
    assert_converged(&x.w);
    ck_assert_uint_eq(x.p.st.attempts, 2);
    /* One error for the bad attempt; its leftovers are dropped quietly. */
    ck_assert_uint_eq(x.p.code_seen[PLV_SVM_ERROR_MALFORMED], 1);
    ck_assert_uint_eq(x.p.n_err, 1);
    ck_assert_uint_ge(x.p.st.stale_dropped, 1);
    ck_assert_uint_eq(x.p.dev_applies, 1);
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

/* A refused device state: memory untouched; the leader's retry works. */
START_TEST(devstate_refused_then_retried)
{
    Spec s = { .n_regions = 1, .pages = 1024, .dirty = 0.5, .diverge = 0.3,
               .devstate_len = 100, .seed = 13 };
    LeaderOpts o = { .expect_attempts = 2 };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, real_leader, &o, false);
    x.p.fail_applies = 1;
    ck_assert_msg(pair_secondary(&x, &err) == 0, "%s",
                  err ? err->message : "");
    assert_converged(&x.w);
    ck_assert_uint_eq(x.p.st.attempts, 2);
    ck_assert_uint_eq(x.p.code_seen[PLV_SVM_ERROR_DEVSTATE], 1);
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

START_TEST(devstate_always_refused)
{
    Spec s = { .n_regions = 1, .pages = 1024, .dirty = 0.5, .diverge = 0.3,
               .devstate_len = 100, .seed = 14 };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, real_leader, NULL, true);
    x.p.fail_applies = 100;
    ck_assert_int_eq(pair_secondary(&x, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_DEVSTATE);
    g_clear_error(&err);
    ck_assert_uint_eq(x.p.code_seen[PLV_SVM_ERROR_DEVSTATE], 3);
    ck_assert_uint_eq(x.p.dev_applies, 0);
    ck_assert_int_eq(pair_finish(&x), 1);   /* the leader failed too */
}
END_TEST

/* ---- scripted leaders: bad or stale messages ---- */

typedef enum Script {
    S_STALE_EPOCH,          /* BITMAP of epoch 16, then close */
    S_STALE_VID,            /* BITMAP of vid 3, then close */
    S_FUTURE_EPOCH,         /* BITMAP of epoch 18 */
    S_BAD_VERSION,          /* a BITMAP with version 2 */
    S_GARBAGE,              /* a BITMAP of random bytes */
    S_BAD_LAYOUT,           /* a BITMAP for a different memory */
    S_PAGES_OUT_OF_RANGE,   /* a PAGES naming a page beyond the union */
    S_PAGES_SHORT,          /* a PAGES missing its last data byte */
    S_PAGES_NOT_RISING,     /* two PAGES naming the same page */
    S_EOF_WRONG_COUNT,      /* EOF claiming one page more than sent */
    S_DEVSTATE_GAP,         /* DEVSTATE at a wrong offset */
    S_SILENT,               /* BITMAP, then nothing: secondary times out */
} Script;

typedef struct Fake {
    PlvLink *link;
    PlvHashKey key;
    World *w;
    PlvSvmHdr hdr;
    GByteArray *tx, *rx;
    PlvSvmUnion u;
} Fake;

static void fake_send(Fake *f, uint16_t type)
{
    struct iovec iov = { .iov_base = f->tx->data, .iov_len = f->tx->len };

    plv_link_send(f->link, type, &iov, 1, NULL);
    g_byte_array_set_size(f->tx, 0);
}

static void fake_bitmap(Fake *f, const PlvSvmHdr *h, PlvMemView *mv)
{
    unsigned n = plv_memview_n_regions(mv);
    PlvBitmap *b = g_new(PlvBitmap, n);

    for (unsigned i = 0; i < n; i++) {
        b[i] = plv_memview_region(mv, i)->dirty;
    }
    plv_svm_encode_bitmap(f->tx, h, mv, b, &(PlvSvmBase){ 0 });
    g_free(b);
    fake_send(f, PLV_SVM_MSG_BITMAP);
}

/* Reads the secondary's BITMAP and HASHES; builds the union. */
static int fake_collect(Fake *f)
{
    PlvMemView *mv = f->w->lmv;
    unsigned n = plv_memview_n_regions(mv);
    PlvBitmap *uni = g_new(PlvBitmap, n);
    uint16_t type;
    PlvSvmHdr h;
    const uint8_t *body;
    size_t len;
    uint32_t got = 0;

    if (plv_link_recv(f->link, &type, f->rx, 5000, NULL) < 0 ||
        type != PLV_SVM_MSG_BITMAP ||
        plv_svm_get_hdr(f->rx->data, f->rx->len, &h, &body, &len, NULL) < 0) {
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        const PlvBitmap *d = &plv_memview_region(mv, i)->dirty;

        plv_bitmap_init(&uni[i], d->n_bits);
        memcpy(uni[i].words, d->words, plv_bitmap_n_words(d->n_bits) * 8);
    }
    if (plv_svm_decode_bitmap(body, len, mv, uni, &(PlvSvmBase){ 0 }, NULL) < 0) {
        return -1;
    }
    plv_svm_union_build(&f->u, mv, uni);
    for (unsigned i = 0; i < n; i++) {
        plv_bitmap_destroy(&uni[i]);
    }
    g_free(uni);
    while (got < f->u.n) {
        PlvPageHash *tmp = g_new(PlvPageHash, f->u.n);
        uint32_t c;
        int rc;

        if (plv_link_recv(f->link, &type, f->rx, 5000, NULL) < 0) {
            g_free(tmp);
            return -1;
        }
        plv_svm_get_hdr(f->rx->data, f->rx->len, &h, &body, &len, NULL);
        rc = plv_svm_decode_hashes(body, len, got, f->u.n, tmp, &c, NULL);
        g_free(tmp);
        if (rc < 0) {
            return -1;
        }
        got += c;
    }
    return 0;
}

/* PAGES with the given records; data for DATA records from page 0. */
static void fake_pages(Fake *f, const PlvSvmPageRec *recs, uint32_t n,
                       size_t cut)
{
    PlvSvmPageRec *r = g_memdup2(recs, n * sizeof(*recs));

    /* Right fingerprints: the checks under test are the others. */
    for (uint32_t i = 0; i < n; i++) {
        r[i].hash = plv_page_hash(&f->key, f->w->lmem[0], PAGE);
    }
    uint32_t data_len = 0;

    for (uint32_t i = 0; i < n; i++) {
        data_len += recs[i].kind == PLV_SVM_PAGE_DATA ? PAGE : 0;
    }
    plv_svm_encode_pages_head(f->tx, &f->hdr, r, n, PLV_SVM_ENC_RAW,
                              data_len);
    g_free(r);
    for (uint32_t i = 0; i < n; i++) {
        if (recs[i].kind == PLV_SVM_PAGE_DATA) {
            g_byte_array_append(f->tx, f->w->lmem[0], PAGE);
        }
    }
    g_byte_array_set_size(f->tx, f->tx->len - cut);
    fake_send(f, PLV_SVM_MSG_PAGES);
}

/* Waits until the peer closes (or 5 s), so it sees all we sent. */
static void fake_drain(Fake *f)
{
    uint16_t type;

    while (plv_link_recv(f->link, &type, f->rx, 5000, NULL) == 0) {
    }
}

static int scripted_leader(PlvLink *link, World *w, void *arg)
{
    Script s = (Script)(intptr_t)arg;
    Fake f = { .link = link, .w = w, .tx = g_byte_array_new(),
               .rx = g_byte_array_new(),
               .hdr = { .attempt = 1, .vid = 4, .epoch = 17 } };
    PlvSvmHdr h = f.hdr;
    PlvSvmPageRec recs[2] = { { .index = 0, .kind = PLV_SVM_PAGE_DATA },
                              { .index = 1, .kind = PLV_SVM_PAGE_ZERO } };
    PlvSvmEof eof = { 0 };

    plv_hash_key_derive(&f.key, plv_link_session_key(link), PLV_LINK_KEY_LEN);
    switch (s) {
    case S_STALE_EPOCH:
        h.epoch = 16;
        fake_bitmap(&f, &h, w->lmv);
        break;
    case S_STALE_VID:
        h.vid = 3;
        h.epoch = 99;
        fake_bitmap(&f, &h, w->lmv);
        break;
    case S_FUTURE_EPOCH:
        h.epoch = 18;
        fake_bitmap(&f, &h, w->lmv);
        break;
    case S_BAD_VERSION:
        fake_bitmap(&f, &h, w->lmv);
        break;
    case S_GARBAGE:
        plv_svm_put_hdr(f.tx, &h);
        for (int i = 0; i < 40; i++) {
            g_byte_array_append(f.tx, (const guint8 *)"\xa7\x13\xff", 3);
        }
        fake_send(&f, PLV_SVM_MSG_BITMAP);
        break;
    case S_BAD_LAYOUT: {
        PlvMemView *other = plv_memview_new();

        plv_memview_add_region(other, 10, PAGE, 5, w->lmem[0], NULL);
        fake_bitmap(&f, &h, other);
        plv_memview_free(other);
        break;
    }
    default:
        fake_bitmap(&f, &h, w->lmv);
        if (fake_collect(&f) < 0 || f.u.n < 4) {
            return 10;
        }
        switch (s) {
        case S_PAGES_OUT_OF_RANGE:
            recs[1].index = f.u.n;
            fake_pages(&f, recs, 2, 0);
            break;
        case S_PAGES_SHORT:
            fake_pages(&f, recs, 2, 1);
            break;
        case S_PAGES_NOT_RISING:
            fake_pages(&f, recs, 1, 0);
            fake_pages(&f, recs, 1, 0);
            break;
        case S_EOF_WRONG_COUNT:
            fake_pages(&f, recs, 2, 0);
            eof.n_pages = 3;
            eof.n_zero = 1;
            plv_svm_encode_eof(f.tx, &f.hdr, &eof);
            fake_send(&f, PLV_SVM_MSG_EOF);
            break;
        case S_DEVSTATE_GAP:
            plv_svm_encode_devstate_head(f.tx, &f.hdr, 100);
            g_byte_array_append(f.tx, (const guint8 *)"abc", 3);
            fake_send(&f, PLV_SVM_MSG_DEVSTATE);
            break;
        default:                        /* S_SILENT */
            break;
        }
    }
    fake_drain(&f);
    return 0;
}

/* The version is patched on the wire: re-encode by hand. */
static int bad_version_leader(PlvLink *link, World *w, void *arg)
{
    GByteArray *tx = g_byte_array_new(), *rx = g_byte_array_new();
    PlvSvmHdr h = { .attempt = 1, .vid = 4, .epoch = 17 };
    PlvBitmap b = plv_memview_region(w->lmv, 0)->dirty;
    struct iovec iov;
    uint16_t type;

    plv_svm_encode_bitmap(tx, &h, w->lmv, &b, &(PlvSvmBase){ 0 });
    tx->data[0] = PLV_SVM_VERSION + 7;
    iov.iov_base = tx->data;
    iov.iov_len = tx->len;
    plv_link_send(link, PLV_SVM_MSG_BITMAP, &iov, 1, NULL);
    while (plv_link_recv(link, &type, rx, 5000, NULL) == 0) {
    }
    return 0;
}

typedef struct BadCase {
    Script script;
    PlvSvmErrorCode final_code;     /* secondary's returned error */
    PlvSvmErrorCode reported;       /* must have been passed to on_error */
} BadCase;

/*
 * After a bad message the secondary NACKs and waits for the leader's next
 * attempt; the script sends none, so those runs end in a timeout.
 */
static const BadCase bad_cases[] = {
    { S_STALE_EPOCH,        PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_STALE },
    { S_STALE_VID,          PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_STALE },
    { S_FUTURE_EPOCH,       PLV_SVM_ERROR_FUTURE,    PLV_SVM_ERROR_FUTURE },
    { S_BAD_VERSION,        PLV_SVM_ERROR_VERSION,   PLV_SVM_ERROR_VERSION },
    { S_GARBAGE,            PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_BAD_LAYOUT,         PLV_SVM_ERROR_LAYOUT,    PLV_SVM_ERROR_LAYOUT },
    { S_PAGES_OUT_OF_RANGE, PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_PAGES_SHORT,        PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_PAGES_NOT_RISING,   PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_EOF_WRONG_COUNT,    PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_DEVSTATE_GAP,       PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_MALFORMED },
    { S_SILENT,             PLV_SVM_ERROR_TIMEOUT,   PLV_SVM_ERROR_TIMEOUT },
};

START_TEST(rejects_bad_leader)
{
    const BadCase *bc = &bad_cases[_i];
    Spec s = { .n_regions = 1, .pages = 512, .dirty = 0.5, .diverge = 0.5,
               .devstate_len = 0, .seed = 10 };
    GError *err = NULL;
    Pair x;

    pair_start(&x, &s, bc->script == S_BAD_VERSION ? bad_version_leader
                                                   : scripted_leader,
               (void *)(intptr_t)bc->script, true);
    x.p.cfg.timeout_ms = 150;
    x.p.cfg.max_attempts = 2;
    ck_assert_int_eq(pair_secondary(&x, &err), -1);
    ck_assert_msg(err->code == (int)bc->final_code, "case %d: %s",
                  bc->script, err->message);
    ck_assert_msg(x.p.code_seen[bc->reported] >= 1,
                  "case %d: %s not reported", bc->script, err->message);
    ck_assert_uint_eq(x.p.n_err, x.p.st.errors);
    g_clear_error(&err);
    ck_assert_uint_eq(x.p.dev_applies, 0);
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

/* ---- the leader's side: no ACK, no completion ---- */

static int drop_ack_send(void *opaque, uint16_t type, const struct iovec *iov,
                         int iovcnt, GError **err)
{
    if (type == PLV_SVM_MSG_ACK) {
        return 0;
    }
    return plv_link_send(opaque, type, iov, iovcnt, err);
}

/*
 * arg NULL: a real secondary whose ACK is lost. arg non-NULL: one that
 * answers the BITMAP with a BITMAP of an older epoch.
 */
static int mute_secondary(PlvLink *link, World *w, void *arg)
{
    GByteArray *rx = g_byte_array_new();
    uint16_t type;

    if (arg) {
        GByteArray *tx = g_byte_array_new();
        PlvSvmHdr h = { .attempt = 1, .vid = 4, .epoch = 16 };
        PlvBitmap b = plv_memview_region(w->smv, 0)->dirty;
        struct iovec iov;

        plv_link_recv(link, &type, rx, 5000, NULL);
        plv_svm_encode_bitmap(tx, &h, w->smv, &b, &(PlvSvmBase){ 0 });
        iov.iov_base = tx->data;
        iov.iov_len = tx->len;
        plv_link_send(link, PLV_SVM_MSG_BITMAP, &iov, 1, NULL);
    } else {
        Peer p;
        PlvSyncvmChannel ch;

        peer_init(&p, w, plv_link_session_key(link));
        plv_syncvm_channel_init_bulk(&ch, plv_link_bulk(link));
        ch.send = drop_ack_send;
        if (plv_syncvm_secondary_run(&p.cfg, &ch, w->smv, &p.st, NULL) < 0) {
            return 1;
        }
    }
    while (plv_link_recv(link, &type, rx, 5000, NULL) == 0) {
    }
    return 0;
}

/* The leader runs against a secondary whose ACK never arrives / is stale. */
static const PlvSyncvmStats *leader_fails(Pair *x, uint32_t seed,
                                          void *stale, unsigned attempts)
{
    Spec s = { .n_regions = 1, .pages = 256, .dirty = 0.5, .diverge = 0.5,
               .seed = seed };
    GError *err = NULL;

    pair_start(x, &s, mute_secondary, stale, false);
    x->p.cfg.timeout_ms = 100;
    x->p.cfg.max_attempts = attempts;
    ck_assert_int_eq(pair_leader(x, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_TIMEOUT);
    g_clear_error(&err);
    return &x->p.st;
}

START_TEST(leader_needs_ack)
{
    Pair x;
    const PlvSyncvmStats *st = leader_fails(&x, 11, NULL, 2);

    ck_assert_uint_eq(st->attempts, 2);
    ck_assert_uint_eq(x.p.code_seen[PLV_SVM_ERROR_TIMEOUT], 2);
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

START_TEST(leader_rejects_stale)
{
    Pair x;

    leader_fails(&x, 12, (void *)1, 1);
    ck_assert_uint_eq(x.p.code_seen[PLV_SVM_ERROR_STALE], 1);
    ck_assert_int_eq(pair_finish(&x), 0);
}
END_TEST

/* ---- both engines in one process, messages mutated in flight ---- */

#define MEM_ERROR (g_quark_from_static_string("mem-channel"))
enum { MEM_TIMED_OUT = 1, MEM_CLOSED, MEM_BLOCKED };

/* One direction of an in-memory channel; type 0 marks a closed end. */
typedef struct MemMsg {
    uint16_t type;
    GByteArray *data;
} MemMsg;

typedef struct MemEnd {
    GAsyncQueue *in, *out;
    GRand *rng;                 /* mutates outgoing messages, if set */
    int mutate_at;              /* which outgoing message (0-based) */
    int sent;
    /*
     * Bytes queued each way, and a cap (0: none) past which a send waits
     * for the peer to read, as a TCP send does once the socket buffers are
     * full; after 3 s it fails (a deadlock, in a test).
     */
    gint *in_bytes, *out_bytes;
    int cap;
} MemEnd;

static void mem_msg_free(gpointer p)
{
    MemMsg *m = p;

    g_byte_array_unref(m->data);
    g_free(m);
}

static void mutate(GRand *rng, MemMsg *m)
{
    GByteArray *d = m->data;
    uint32_t v;

    switch (g_rand_int_range(rng, 0, 6)) {
    case 0:                     /* flip a bit */
        if (d->len) {
            d->data[g_rand_int_range(rng, 0, d->len)] ^=
                1 << g_rand_int_range(rng, 0, 8);
        }
        break;
    case 1:                     /* truncate */
        g_byte_array_set_size(d, g_rand_int_range(rng, 0, d->len + 1));
        break;
    case 2:                     /* append */
        for (int i = g_rand_int_range(rng, 1, 40); i > 0; i--) {
            uint8_t b = g_rand_int(rng);

            g_byte_array_append(d, &b, 1);
        }
        break;
    case 3:                     /* a boundary value in some u32 */
    case 4: {
        static const uint32_t vals[] = { 0, 1, 2, 63, 64, 0x7fffffff,
                                         0xffffffff, 0xfffffff0 };

        if (d->len >= 4) {
            v = vals[g_rand_int_range(rng, 0, G_N_ELEMENTS(vals))];
            memcpy(d->data + g_rand_int_range(rng, 0, d->len - 3), &v, 4);
        }
        break;
    }
    default:                    /* another message type */
        m->type = PLV_SVM_MSG_BITMAP + g_rand_int_range(rng, 0, 8);
        break;
    }
}

static int mem_send(void *opaque, uint16_t type, const struct iovec *iov,
                    int iovcnt, GError **err)
{
    MemEnd *e = opaque;
    MemMsg *m = g_new0(MemMsg, 1);

    m->type = type;
    m->data = g_byte_array_new();
    for (int i = 0; i < iovcnt; i++) {
        g_byte_array_append(m->data, iov[i].iov_base, iov[i].iov_len);
    }
    if (e->rng && e->sent == e->mutate_at) {
        mutate(e->rng, m);
    }
    e->sent++;
    if (e->cap) {
        int64_t deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;

        while (g_atomic_int_get(e->out_bytes) > 0 &&
               g_atomic_int_get(e->out_bytes) + (gint)m->data->len > e->cap) {
            if (g_get_monotonic_time() > deadline) {
                mem_msg_free(m);
                g_set_error(err, MEM_ERROR, MEM_BLOCKED,
                            "send blocked: the peer does not read");
                return -1;
            }
            g_usleep(200);
        }
    }
    g_atomic_int_add(e->out_bytes, m->data->len);
    g_async_queue_push(e->out, m);
    return 0;
}

static int mem_recv(void *opaque, uint16_t *type, GByteArray *payload,
                    int timeout_ms, GError **err)
{
    MemEnd *e = opaque;
    MemMsg *m = g_async_queue_timeout_pop(e->in, timeout_ms * 1000LL);

    if (!m) {
        g_set_error(err, MEM_ERROR, MEM_TIMED_OUT, "timed out");
        return -1;
    }
    if (m->type == 0) {
        g_async_queue_push_front(e->in, m);     /* stays closed */
        g_set_error(err, MEM_ERROR, MEM_CLOSED, "closed");
        return -1;
    }
    *type = m->type;
    g_byte_array_set_size(payload, 0);
    g_byte_array_append(payload, m->data->data, m->data->len);
    g_atomic_int_add(e->in_bytes, -(gint)m->data->len);
    mem_msg_free(m);
    return 0;
}

static bool mem_is_timeout(const GError *err)
{
    return g_error_matches(err, MEM_ERROR, MEM_TIMED_OUT);
}

static void mem_channel(PlvSyncvmChannel *ch, MemEnd *e)
{
    ch->opaque = e;
    ch->send = mem_send;
    ch->recv = mem_recv;
    ch->is_timeout = mem_is_timeout;
    ch->peer_id = 9;
}

static void mem_close(MemEnd *e)
{
    MemMsg *m = g_new0(MemMsg, 1);

    m->data = g_byte_array_new();
    g_async_queue_push(e->out, m);
}

typedef struct LeaderThread {
    Peer p;
    PlvSyncvmChannel ch;
    MemEnd *end;
    int rc;
    GError *err;
    gint done;                  /* set once the run returned */
} LeaderThread;

static gpointer leader_thread(gpointer opaque)
{
    LeaderThread *t = opaque;

    t->rc = plv_syncvm_leader_run(&t->p.cfg, &t->ch, t->p.w->lmv, &t->p.st,
                                  &t->err);
    g_atomic_int_set(&t->done, 1);
    mem_close(t->end);
    return NULL;
}

/*
 * Both engines in this process over an in-memory channel: the leader on a
 * thread, the secondary (p) on the caller's.
 */
typedef struct MemRun {
    GAsyncQueue *l2s, *s2l;
    gint l2s_bytes, s2l_bytes;
    MemEnd le, se;
    LeaderThread lt;
    Peer p;
    PlvSyncvmChannel sch;
} MemRun;

/* Set up with peer_init's defaults; change them before mem_run. */
static void mem_run_init(MemRun *m, World *w)
{
    static const uint8_t session[PLV_LINK_KEY_LEN] = { 3 };

    memset(m, 0, sizeof(*m));
    m->l2s = g_async_queue_new_full(mem_msg_free);
    m->s2l = g_async_queue_new_full(mem_msg_free);
    m->le = (MemEnd){ .in = m->s2l, .out = m->l2s,
                      .in_bytes = &m->s2l_bytes, .out_bytes = &m->l2s_bytes };
    m->se = (MemEnd){ .in = m->l2s, .out = m->s2l,
                      .in_bytes = &m->l2s_bytes, .out_bytes = &m->s2l_bytes };
    m->lt.end = &m->le;
    peer_init(&m->lt.p, w, session);
    peer_configure(&m->lt.p, true);
    peer_init(&m->p, w, session);
    peer_configure(&m->p, false);
    m->p.leader_done = &m->lt.done;
    mem_channel(&m->lt.ch, &m->le);
    mem_channel(&m->sch, &m->se);
}

/* Runs both to the end; the secondary's result (the leader's: m->lt). */
static int mem_run(MemRun *m, GError **err)
{
    GThread *th = g_thread_new("leader", leader_thread, &m->lt);
    int rc = plv_syncvm_secondary_run(&m->p.cfg, &m->sch, m->p.w->smv,
                                      &m->p.st, err);

    mem_close(&m->se);
    g_thread_join(th);
    return rc;
}

static void mem_run_free(MemRun *m)
{
    g_byte_array_unref(m->p.dev_out);
    g_byte_array_unref(m->lt.p.dev_out);
    if (m->p.base) {
        g_byte_array_unref(m->p.base);
    }
    if (m->lt.p.base) {
        g_byte_array_unref(m->lt.p.base);
    }
    g_clear_error(&m->lt.err);
    g_async_queue_unref(m->l2s);
    g_async_queue_unref(m->s2l);
}

/* Pages outside the union must never change, whatever arrives. */
static void assert_outside_union_untouched(const World *w, uint8_t **snap)
{
    for (unsigned r = 0; r < w->spec.n_regions; r++) {
        const PlvMemRegion *lr = plv_memview_region(w->lmv, r);
        const PlvMemRegion *sr = plv_memview_region(w->smv, r);

        for (uint64_t p = 0; p < w->spec.pages; p++) {
            if (!plv_bitmap_test(&lr->dirty, p) &&
                !plv_bitmap_test(&sr->dirty, p)) {
                ck_assert(memcmp(snap[r] + p * PAGE, w->smem[r] + p * PAGE,
                                 PAGE) == 0);
            }
        }
    }
}

/*
 * Page deltas over a channel whose sends wait once 256 KB are queued, as
 * TCP's do: 16 steps of divergent pages, each with a 147 KB BLOCKREQ.
 * Requests sent while the secondary was still sending its fingerprints
 * (which it does without reading) blocked both ends in a send; the
 * exchange now runs in lockstep after the compare.
 */
START_TEST(deltas_never_block_both_ends)
{
    Spec s = { .n_regions = 1, .pages = 1u << 16, .dirty = 1.0,
               .diverge = 1.0, .devstate_len = 1000, .seed = 15,
               .deltas = true };
    MemRun m;
    World w;
    GError *err = NULL;
    int rc;

    world_build(&w, &s);
    mem_run_init(&m, &w);
    m.le.cap = m.se.cap = 256 << 10;
    rc = mem_run(&m, &err);
    ck_assert_msg(rc == 0, "secondary: %s", err ? err->message : "?");
    ck_assert_msg(m.lt.rc == 0, "leader: %s",
                  m.lt.err ? m.lt.err->message : "?");
    assert_converged(&w);
    ck_assert_uint_eq(m.lt.p.st.delta_pages, w.n_div - w.n_div_zero);
    g_clear_error(&err);
    mem_run_free(&m);
    world_free(&w);
}
END_TEST

START_TEST(mutated_messages)
{
    unsigned iters = getenv("PLOVER_SOAK") ? 20000 : 200;
    GRand *rng = g_rand_new_with_seed(20260);
    unsigned ok = 0, failed = 0;

    for (unsigned it = 0; it < iters; it++) {
        Spec s = { .n_regions = 2, .pages = 64, .dirty = 0.5,
                   .diverge = 0.3, .devstate_len = 3000, .seed = it + 100,
                   .deltas = it % 4 < 2, .base = it % 3 };
        MemRun m;
        MemEnd *victim;
        LeaderThread *lt = &m.lt;
        Peer *p = &m.p;
        World w;
        uint8_t **snap;
        int rc;

        world_build(&w, &s);
        snap = snapshot(&w);
        mem_run_init(&m, &w);
        victim = it % 3 == 0 ? &m.se : &m.le;      /* mostly the leader */
        victim->rng = rng;
        victim->mutate_at = g_rand_int_range(rng, 0, s.deltas ? 8 : 6);
        lt->p.cfg.timeout_ms = p->cfg.timeout_ms = 100;
        lt->p.cfg.max_attempts = p->cfg.max_attempts = 1;
        lt->p.cfg.overlap_send = it & 1;
        if (it % 5 == 4) {
            /* A drive: written in the commit only, or not at all. */
            drive_attach(p);
        }
        rc = mem_run(&m, NULL);
        if (p->drive) {
            drive_detach(p);
        }

        ck_assert_uint_eq(p->n_err, p->st.errors);
        ck_assert_uint_eq(lt->p.n_err, lt->p.st.errors);
        if (rc == 0) {
            /* Applied means exactly the leader's state, never a mix. */
            ok++;
            assert_converged(&w);
            ck_assert_uint_eq(p->dev_applies, 1);
            ck_assert_uint_eq(p->commits, 1);
            ck_assert_uint_eq(p->dev_out->len, s.devstate_len);
            {
                GByteArray *want = g_byte_array_new();

                devstate_fill(want, s.devstate_len, s.seed);
                ck_assert(memcmp(want->data, p->dev_out->data,
                                 want->len) == 0);
                g_byte_array_unref(want);
            }
            assert_outside_union_untouched(&w, snap);
            for (unsigned r = 0; r < MAX_REGIONS; r++) {
                g_free(snap[r]);
            }
            g_free(snap);
        } else {
            failed++;
            ck_assert_uint_eq(p->dev_applies, 0);
            ck_assert_uint_eq(p->commits, 0);
            ck_assert(!p->st.ram_touched);
            ck_assert_uint_ge(p->n_err, 1);
            assert_untouched(&w, snap);
        }
        /* The leader only succeeds on an ACK, which needs an applied run. */
        ck_assert(lt->rc < 0 || rc == 0);
        mem_run_free(&m);
        world_free(&w);
    }
    /* Both outcomes happen (a flipped data bit still decodes). */
    ck_assert_uint_gt(ok, 0);
    ck_assert_uint_gt(failed, iters / 5);
    g_rand_free(rng);
}
END_TEST

/* ---- a source whose memory moved on after the cut ---- */

/* The glue's part: the cut's content of exactly the union's pages. */
static int snapshot_from_cut(void *opaque, const PlvPageRef *refs, uint32_t n,
                             GError **err)
{
    Peer *p = opaque;

    p->snapshots++;
    p->snapshot_pages = n;
    for (uint32_t i = 0; i < n; i++) {
        const PlvMemRegion *reg = plv_memview_region_const(p->w->lmv,
                                                           refs[i].region);

        memcpy(plv_memview_page(reg, refs[i].page),
               p->cut[refs[i].region] + refs[i].page * (uint64_t)PAGE, PAGE);
    }
    return 0;
}

/*
 * The leader's VM ran on after the cut and rewrote every page; the run
 * reads the union only after snapshot_union gave it the cut, so the
 * secondary ends with the cut, not with what the leader's memory holds.
 */
START_TEST(snapshot_union_gives_the_cut)
{
    Spec s = { .n_regions = 2, .pages = 512, .dirty = 0.4, .diverge = 0.5,
               .devstate_len = 2000, .seed = 33 };
    GError *err = NULL;
    uint8_t **cut;
    MemRun m;
    World w;

    world_build(&w, &s);
    cut = g_new0(uint8_t *, MAX_REGIONS);
    for (unsigned r = 0; r < s.n_regions; r++) {
        cut[r] = g_memdup2(w.lmem[r], s.pages * PAGE);
        memset(w.lmem[r], 0xa5 + r, s.pages * PAGE);   /* the VM ran on */
    }
    mem_run_init(&m, &w);
    m.lt.p.cut = cut;
    m.lt.p.cfg.snapshot_union = snapshot_from_cut;
    ck_assert_msg(mem_run(&m, &err) == 0, "%s", err ? err->message : "");
    ck_assert_msg(m.lt.rc == 0, "%s", m.lt.err ? m.lt.err->message : "");
    ck_assert_uint_eq(m.lt.p.snapshots, 1);
    ck_assert_uint_eq(m.lt.p.snapshot_pages, w.n_union);
    ck_assert_uint_eq(m.p.st.divergent_pages, w.n_div);
    for (unsigned r = 0; r < s.n_regions; r++) {
        ck_assert(memcmp(cut[r], w.smem[r], s.pages * PAGE) == 0);
        g_free(cut[r]);
    }
    g_free(cut);
    mem_run_free(&m);
    world_free(&w);
}
END_TEST

/* ---- pre-copy rounds: a source whose memory changes during the run ---- */

typedef struct Mutator {
    World *w;
    uint64_t n_hot;             /* pages 0..n_hot-1 of region 0 */
    gint stop;
    uint64_t writes;
} Mutator;

/* A vCPU that keeps writing its hot pages while the round reads them. */
static gpointer mutator_main(gpointer opaque)
{
    Mutator *m = opaque;
    uint64_t x = 0x9e3779b97f4a7c15;

    while (!g_atomic_int_get(&m->stop)) {
        uint64_t *word = (uint64_t *)(m->w->lmem[0] +
                                      (rng(&x) % m->n_hot) * PAGE) +
                         rng(&x) % (PAGE / 8);

        __atomic_store_n(word, rng(&x), __ATOMIC_RELAXED);
        m->writes++;
    }
    return NULL;
}

static void mark_all(PlvMemView *mv, const Spec *s)
{
    for (unsigned r = 0; r < s->n_regions; r++) {
        plv_memview_mark_dirty(mv, r, 0, s->pages * PAGE);
    }
}

/*
 * Re-protection by rounds: the first run sends all of memory while a
 * thread keeps rewriting some pages of it (live_source: each page goes
 * with the fingerprint of the copy sent, so none is refused). Every page
 * the thread left alone is then the leader's; a second run over just the
 * pages it wrote (its dirty log) makes the copy exact.
 */
START_TEST(live_rounds_converge)
{
    Spec s = { .n_regions = 2, .pages = 2048, .dirty = 0, .seed = 35 };
    GError *err = NULL;
    Mutator mut = { .n_hot = 64 };
    GThread *th;
    MemRun m;
    World w;

    world_build(&w, &s);
    for (unsigned r = 0; r < s.n_regions; r++) {
        for (uint64_t p = 0; p < s.pages; p += 3) {
            w.smem[r][p * PAGE + 5] ^= 0x77;        /* a stale copy */
        }
    }
    mark_all(w.lmv, &s);
    mark_all(w.smv, &s);
    mut.w = &w;
    th = g_thread_new("vcpu", mutator_main, &mut);
    mem_run_init(&m, &w);
    m.lt.p.cfg.live_source = true;
    m.lt.p.cfg.get_device_state = NULL;
    m.p.cfg.apply_device_state = NULL;
    ck_assert_msg(mem_run(&m, &err) == 0, "%s", err ? err->message : "");
    ck_assert_msg(m.lt.rc == 0, "%s", m.lt.err ? m.lt.err->message : "");
    g_atomic_int_set(&mut.stop, 1);
    g_thread_join(th);
    ck_assert_uint_gt(mut.writes, 0);
    ck_assert_uint_eq(m.p.dev_applies, 0);
    for (unsigned r = 0; r < s.n_regions; r++) {
        uint64_t from = r == 0 ? mut.n_hot : 0;

        ck_assert(memcmp(w.lmem[r] + from * PAGE, w.smem[r] + from * PAGE,
                         (s.pages - from) * PAGE) == 0);
    }
    mem_run_free(&m);

    /* The last round: what was written since the first one began. */
    plv_memview_clear_dirty(w.lmv);
    plv_memview_clear_dirty(w.smv);
    plv_memview_mark_dirty(w.lmv, 0, 0, mut.n_hot * PAGE);
    mem_run_init(&m, &w);
    ck_assert_msg(mem_run(&m, &err) == 0, "%s", err ? err->message : "");
    ck_assert_msg(m.lt.rc == 0, "%s", m.lt.err ? m.lt.err->message : "");
    ck_assert_uint_le(m.p.st.dirty_union, mut.n_hot);
    ck_assert_uint_eq(m.p.dev_applies, 1);
    assert_converged(&w);
    mem_run_free(&m);
    world_free(&w);
}
END_TEST

static int snapshot_lost(void *opaque, const PlvPageRef *refs, uint32_t n,
                         GError **err)
{
    g_set_error(err, g_quark_from_static_string("test"), 1, "cut discarded");
    return -1;
}

/* A source that cannot give the cut fails the run at once, touching nothing. */
START_TEST(snapshot_union_failure_is_fatal)
{
    Spec s = { .n_regions = 1, .pages = 256, .dirty = 0.5, .diverge = 0.3,
               .devstate_len = 100, .seed = 34 };
    GError *err = NULL;
    uint8_t **snap;
    MemRun m;
    World w;

    world_build(&w, &s);
    snap = snapshot(&w);
    mem_run_init(&m, &w);
    m.lt.p.cfg.snapshot_union = snapshot_lost;
    ck_assert_int_eq(mem_run(&m, &err), -1);
    ck_assert_int_eq(m.lt.rc, -1);
    ck_assert(g_error_matches(m.lt.err, PLV_SVM_ERROR, PLV_SVM_ERROR_SNAPSHOT));
    ck_assert_msg(strstr(m.lt.err->message, "cut discarded"), "%s",
                  m.lt.err->message);
    ck_assert_uint_eq(m.lt.p.st.attempts, 1);
    ck_assert_uint_eq(m.p.commits, 0);
    assert_untouched(&w, snap);
    g_clear_error(&err);
    mem_run_free(&m);
    world_free(&w);
}
END_TEST

/*
 * A drive on the secondary: the engine hashes its union blocks only once
 * snapshot_union has read them into the shadow, and the divergent ones
 * reach the drive through the commit, the same way deltas rebuild pages.
 */
START_TEST(target_reads_its_union_first)
{
    for (unsigned deltas = 0; deltas < 2; deltas++) {
        Spec s = { .n_regions = 2, .pages = 512, .dirty = 0.4,
                   .diverge = 0.5, .devstate_len = 2000, .seed = 35 + deltas,
                   .deltas = deltas };
        GError *err = NULL;
        MemRun m;
        World w;

        world_build(&w, &s);
        mem_run_init(&m, &w);
        drive_attach(&m.p);
        ck_assert_msg(mem_run(&m, &err) == 0, "%s", err ? err->message : "");
        ck_assert_msg(m.lt.rc == 0, "%s", m.lt.err ? m.lt.err->message : "");
        ck_assert_uint_eq(m.p.drive_unions, 1);
        ck_assert_uint_eq(m.p.st.divergent_pages, w.n_div);
        drive_detach(&m.p);
        assert_converged(&w);
        mem_run_free(&m);
        world_free(&w);
    }
}
END_TEST

/* ---- the commit: device state loaded before the ACK ---- */

/* Once, with every divergent page in, while the leader waits for the ACK. */
START_TEST(commit_before_ack)
{
    Spec s = { .n_regions = 2, .pages = 256, .dirty = 0.5, .diverge = 0.3,
               .devstate_len = 3000, .seed = 30 };
    GError *err = NULL;
    MemRun m;
    World w;

    world_build(&w, &s);
    ck_assert_uint_gt(w.n_div, 0);
    mem_run_init(&m, &w);
    ck_assert_msg(mem_run(&m, &err) == 0, "%s", err ? err->message : "");
    ck_assert_msg(m.lt.rc == 0, "%s", m.lt.err ? m.lt.err->message : "");
    ck_assert_uint_eq(m.p.commits, 1);
    ck_assert(m.p.commit_saw_pages);
    ck_assert(m.p.commit_before_ack);
    ck_assert_uint_eq(m.p.dev_applies, 1);
    ck_assert(m.p.st.ram_touched);
    assert_converged(&w);
    mem_run_free(&m);
    world_free(&w);
}
END_TEST

/*
 * A failed commit is NACKed and ends both runs at once, whether or not a
 * page was written (devices may be half loaded either way): no attempt 2.
 */
static void commit_fails(double diverge, uint32_t seed)
{
    Spec s = { .n_regions = 2, .pages = 256, .dirty = 0.5,
               .diverge = diverge, .devstate_len = 3000, .seed = seed };
    GError *err = NULL;
    MemRun m;
    World w;
    bool pages;

    world_build(&w, &s);
    pages = w.n_div > 0;
    ck_assert(pages == (diverge > 0));
    mem_run_init(&m, &w);
    m.p.fail_commit = true;
    ck_assert_int_eq(mem_run(&m, &err), -1);

    ck_assert(g_error_matches(err, PLV_SVM_ERROR, PLV_SVM_ERROR_COMMIT));
    ck_assert_msg(strstr(err->message, "devices refused the state"), "%s",
                  err->message);
    ck_assert(m.p.st.ram_touched == pages);
    ck_assert_uint_eq(m.p.commits, 1);
    ck_assert_uint_eq(m.p.st.attempts, 1);
    ck_assert_uint_eq(m.p.code_seen[PLV_SVM_ERROR_COMMIT], 1);
    ck_assert_uint_eq(m.p.n_err, 1);
    /* Written before the commit (equal anyway when nothing diverged). */
    assert_converged(&w);

    ck_assert_int_eq(m.lt.rc, -1);
    ck_assert(g_error_matches(m.lt.err, PLV_SVM_ERROR,
                              PLV_SVM_ERROR_COMMIT));
    ck_assert_msg(strstr(m.lt.err->message, "failed to commit") &&
                  strstr(m.lt.err->message, "devices refused the state"),
                  "%s", m.lt.err->message);
    ck_assert_uint_eq(m.lt.p.st.attempts, 1);
    ck_assert_uint_eq(m.lt.p.code_seen[PLV_SVM_ERROR_COMMIT], 1);
    ck_assert_uint_eq(m.lt.p.n_err, 1);
    /* The leader NACKed nothing back: only its end-of-channel marker. */
    ck_assert_int_eq(g_async_queue_length(m.l2s), 1);
    g_clear_error(&err);
    mem_run_free(&m);
    world_free(&w);
}

START_TEST(commit_fails_after_pages)
{
    commit_fails(0.3, 31);
}
END_TEST

START_TEST(commit_fails_without_pages)
{
    commit_fails(0, 32);
}
END_TEST

/* ---- codec: HASHES, PAGES, DEVSTATE, EOF, ACK, NACK ---- */

START_TEST(codec_roundtrips_and_rejects)
{
    static uint8_t mem[8 * PAGE];
    PlvMemView *mv = plv_memview_new();
    PlvSvmHdr h = { .attempt = 2, .vid = 5, .epoch = 6 }, h2;
    GByteArray *m = g_byte_array_new();
    PlvPageHash hs[3] = { { 1, 2 }, { 3, 4 }, { 5, 6 } }, got[8];
    PlvSvmPageRec recs[3] = {
        { .index = 1, .kind = PLV_SVM_PAGE_DATA, .hash = { 7, 8 } },
        { .index = 4, .kind = PLV_SVM_PAGE_ZERO },
        { .index = 6, .kind = PLV_SVM_PAGE_DATA },
    }, out[8];
    PlvSvmUnion u;
    PlvBitmap all;
    const uint8_t *body, *data;
    size_t len, dlen;
    uint32_t n, code;
    uint64_t dl;
    char *reason;
    PlvSvmEof eof = { .n_pages = 3, .n_zero = 1, .devstate_len = 77,
                      .union_digest = { 1, 2 }, .devstate_hash = { 3, 4 },
                      .devstate_wire_len = 77 };
    PlvSvmEof eof2;
    PlvZstd *z = plv_zstd_new(1);
    GByteArray *dec = g_byte_array_new();

    plv_memview_add_region(mv, 1, PAGE, 8, mem, NULL);
    plv_bitmap_init(&all, 8);
    all.words[0] = 0xff;
    plv_svm_union_build(&u, mv, &all);

    plv_svm_encode_hashes(m, &h, 5, hs, 3);
    ck_assert_int_eq(plv_svm_get_hdr(m->data, m->len, &h2, &body, &len,
                                     NULL), 0);
    ck_assert_uint_eq(h2.attempt, 2);
    ck_assert_int_eq(plv_svm_decode_hashes(body, len, 5, 8, got, &n, NULL),
                     0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(got[7].hi, 6);
    ck_assert_int_eq(plv_svm_decode_hashes(body, len, 4, 8, got, &n, NULL),
                     -1);   /* not where we are */
    ck_assert_int_eq(plv_svm_decode_hashes(body, len, 5, 7, got, &n, NULL),
                     -1);   /* beyond the union */
    ck_assert_int_eq(plv_svm_decode_hashes(body, len - 1, 5, 8, got, &n,
                                           NULL), -1);

    g_byte_array_set_size(m, 0);
    plv_svm_encode_pages_head(m, &h, recs, 3, PLV_SVM_ENC_RAW, 2 * PAGE);
    g_byte_array_append(m, mem, 2 * PAGE);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 0, true, z,
                                          dec, out, &n, NULL), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(out[0].hash.hi, 8);
    ck_assert_ptr_null(out[1].data);
    ck_assert_ptr_eq(out[2].data, body + 9 + 3 * PLV_SVM_PAGE_REC_LEN + PAGE);
    ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 2, true, z, dec,
                                          out, &n, NULL), -1);  /* had 1 */
    for (size_t cut = 1; cut < len; cut += 97) {
        ck_assert_int_eq(plv_svm_decode_pages(body, len - cut, mv, &u, 0,
                                              true, z, dec, out, &n, NULL),
                         -1);
    }
    /*
     * Records are stored only once their index is known to be in the
     * union: a secondary with room for 2 more (indices 6 and 7 left)
     * keeps its third slot as it was when the third record is bad.
     */
    {
        PlvSvmPageRec late[3] = {
            { .index = 6, .kind = PLV_SVM_PAGE_ZERO },
            { .index = 7, .kind = PLV_SVM_PAGE_ZERO },
            { .index = 8, .kind = PLV_SVM_PAGE_ZERO },
        }, room[3];

        g_byte_array_set_size(m, 0);
        plv_svm_encode_pages_head(m, &h, late, 3, PLV_SVM_ENC_RAW, 0);
        plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
        memset(room, 0xa5, sizeof(room));
        ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 6, true, z,
                                              dec, room, &n, NULL), -1);
        ck_assert_uint_eq(((uint8_t *)&room[2])[0], 0xa5);
        ck_assert_uint_eq(((uint8_t *)&room[2])[sizeof(room[2]) - 1], 0xa5);
        g_byte_array_set_size(m, 0);
        plv_svm_encode_pages_head(m, &h, recs, 3, PLV_SVM_ENC_RAW, 2 * PAGE);
        g_byte_array_append(m, mem, 2 * PAGE);
        plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    }
    ((uint8_t *)body)[9 + 4] = 7;   /* unknown kind */
    ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 0, true, z, dec,
                                          out, &n, NULL), -1);

    /* A DELTA record carries its mask and only its blocks; zstd data. */
    {
        PlvSvmPageRec d[2] = {
            { .index = 2, .kind = PLV_SVM_PAGE_DELTA, .mask = 0x81 },
            { .index = 3, .kind = PLV_SVM_PAGE_DATA },
        };
        uint32_t dlen2 = 2 * (PAGE / PLV_PAGE_BLOCKS) + PAGE;
        GByteArray *raw = g_byte_array_new();

        g_byte_array_set_size(m, 0);
        g_byte_array_append(raw, mem, dlen2);
        plv_svm_encode_pages_head(m, &h, d, 2, PLV_SVM_ENC_ZSTD, dlen2);
        ck_assert_int_eq(plv_zstd_compress(z, m, raw->data, raw->len, NULL, 0),
                         0);
        plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
        ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 0, true, z,
                                              dec, out, &n, NULL), 0);
        ck_assert_uint_eq(out[0].mask, 0x81);
        ck_assert_ptr_eq(out[0].data, dec->data);
        ck_assert_ptr_eq(out[1].data, dec->data + 2 * (PAGE / PLV_PAGE_BLOCKS));
        /* Not where deltas are refused (send-all baseline). */
        ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 0, false, z,
                                              dec, out, &n, NULL), -1);
        /* A frame that does not give data_len bytes, or damaged. */
        for (size_t cut = 1; cut < 40 && cut < len; cut += 3) {
            ck_assert_int_eq(plv_svm_decode_pages(body, len - cut, mv, &u, 0,
                                                  true, z, dec, out, &n,
                                                  NULL), -1);
        }
        /* An empty mask. */
        ((uint8_t *)body)[9 + PLV_SVM_PAGE_REC_LEN] = 0;
        memset((uint8_t *)body + 9 + PLV_SVM_PAGE_REC_LEN, 0, 8);
        ck_assert_int_eq(plv_svm_decode_pages(body, len, mv, &u, 0, true, z,
                                              dec, out, &n, NULL), -1);
        g_byte_array_unref(raw);
    }

    /* BLOCKREQ: rising indices inside the union, from min_index on. */
    {
        uint32_t idx[3] = { 1, 4, 7 }, back[PLV_SVM_MAX_BLOCKREQ];
        uint32_t sb[3 * PLV_PAGE_SUPERBLOCKS];
        uint32_t *sb2 = g_new(uint32_t, PLV_SVM_MAX_BLOCKREQ *
                                        PLV_PAGE_SUPERBLOCKS);
        uint32_t bh[2 * PLV_PAGE_BLOCKS], bh2[2 * PLV_PAGE_BLOCKS];
        uint8_t masks[2] = { 0x81, 0 }, masks2[2];

        for (unsigned i = 0; i < G_N_ELEMENTS(sb); i++) {
            sb[i] = i * 3;
        }
        g_byte_array_set_size(m, 0);
        plv_svm_encode_blockreq(m, &h, idx, sb, 3);
        plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
        ck_assert_int_eq(plv_svm_decode_blockreq(body, len, 8, 0, back, sb2,
                                                 &n, NULL), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(back[2], 7);
        ck_assert_uint_eq(sb2[3 * PLV_PAGE_SUPERBLOCKS - 1],
                          (3 * PLV_PAGE_SUPERBLOCKS - 1) * 3);
        ck_assert_int_eq(plv_svm_decode_blockreq(body, len, 7, 0, back, sb2,
                                                 &n, NULL), -1);  /* range */
        ck_assert_int_eq(plv_svm_decode_blockreq(body, len, 8, 2, back, sb2,
                                                 &n, NULL), -1);  /* asked */
        ck_assert_int_eq(plv_svm_decode_blockreq(body, len - 1, 8, 0, back,
                                                 sb2, &n, NULL), -1);
        g_free(sb2);

        /* BLOCKHASHES: blocks of the masked super-blocks only. */
        for (unsigned i = 0; i < 2 * PLV_PAGE_BLOCKS; i++) {
            bh[i] = i * 7 + 1;
        }
        g_byte_array_set_size(m, 0);
        plv_svm_encode_blockhashes(m, &h, 4, masks, bh, 2);
        plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
        ck_assert_uint_eq(len, 8 + 2 + 2 * PLV_SUPERBLOCK_BLOCKS * 4);
        ck_assert_int_eq(plv_svm_decode_blockhashes(body, len, 4, 2, masks2,
                                                    bh2, NULL), 0);
        ck_assert_uint_eq(masks2[0], 0x81);
        ck_assert_uint_eq(bh2[0], 1);
        ck_assert_uint_eq(bh2[PLV_PAGE_BLOCKS - 1], bh[PLV_PAGE_BLOCKS - 1]);
        ck_assert_uint_eq(bh2[PLV_SUPERBLOCK_BLOCKS], 0);   /* not sent */
        ck_assert_int_eq(plv_svm_decode_blockhashes(body, len, 5, 2, masks2,
                                                    bh2, NULL), -1);
        ck_assert_int_eq(plv_svm_decode_blockhashes(body, len, 4, 3, masks2,
                                                    bh2, NULL), -1);
        ck_assert_int_eq(plv_svm_decode_blockhashes(body, len - 4, 4, 2,
                                                    masks2, bh2, NULL), -1);
        ck_assert_int_eq(plv_svm_decode_blockhashes(body, len + 1, 4, 2,
                                                    masks2, bh2, NULL), -1);
    }

    g_byte_array_set_size(m, 0);
    plv_svm_encode_devstate_head(m, &h, 10);
    g_byte_array_append(m, (const guint8 *)"xyz", 3);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_devstate(body, len, 10, 100, &data,
                                             &dlen, NULL), 0);
    ck_assert_uint_eq(dlen, 3);
    ck_assert_int_eq(plv_svm_decode_devstate(body, len, 10, 12, &data,
                                             &dlen, NULL), -1);  /* cap */

    g_byte_array_set_size(m, 0);
    plv_svm_encode_eof(m, &h, &eof);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_eof(body, len, &eof2, NULL), 0);
    ck_assert_uint_eq(eof2.devstate_len, 77);
    ck_assert_uint_eq(eof2.union_digest.hi, 2);
    ck_assert_uint_eq(eof2.devstate_hash.hi, 4);
    ck_assert_int_eq(plv_svm_decode_eof(body, len + 1, &eof2, NULL), -1);
    /* Raw device state whose wire length is not its length. */
    eof.devstate_wire_len = 76;
    g_byte_array_set_size(m, 0);
    plv_svm_encode_eof(m, &h, &eof);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_eof(body, len, &eof2, NULL), -1);
    eof.devstate_enc = 3;       /* unknown encoding */
    g_byte_array_set_size(m, 0);
    plv_svm_encode_eof(m, &h, &eof);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_eof(body, len, &eof2, NULL), -1);

    g_byte_array_set_size(m, 0);
    plv_svm_encode_ack(m, &h, 9, 10);
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_ack(body, len, &n, &dl, NULL), 0);
    ck_assert_uint_eq(n, 9);
    ck_assert_uint_eq(dl, 10);

    g_byte_array_set_size(m, 0);
    plv_svm_encode_nack(m, &h, 3, "bad\x01thing");
    plv_svm_get_hdr(m->data, m->len, &h2, &body, &len, NULL);
    ck_assert_int_eq(plv_svm_decode_nack(body, len, &code, &reason, NULL), 0);
    ck_assert_uint_eq(code, 3);
    ck_assert_str_eq(reason, "bad?thing");
    g_free(reason);
    ck_assert_int_eq(plv_svm_decode_nack(body, len - 1, &code, &reason, NULL),
                     -1);

    /* Unknown header flags are rejected. */
    m->data[2] = 0x80;
    ck_assert_int_eq(plv_svm_get_hdr(m->data, m->len, &h2, &body, &len,
                                     NULL), -1);

    plv_svm_union_clear(&u);
    plv_bitmap_destroy(&all);
    g_byte_array_unref(m);
    g_byte_array_unref(dec);
    plv_zstd_free(z);
    plv_memview_free(mv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("syncvm");
    TCase *conv = tcase_create("converge");
    TCase *fail = tcase_create("failures");
    TCase *codec = tcase_create("codec");

    /* The two processes would otherwise die of a write to a closed link. */
    signal(SIGPIPE, SIG_IGN);
    tcase_add_test(conv, converge_0pct);
    tcase_add_test(conv, converge_3pct_sparse);
    tcase_add_test(conv, converge_28pct_dense);
    tcase_add_test(conv, converge_100pct);
    tcase_add_test(conv, converge_empty);
    tcase_add_test(conv, converge_send_all);
    tcase_add_test(conv, converge_deltas);
    tcase_add_test(conv, converge_deltas_other_base);
    tcase_add_test(conv, converge_nothing_dirty_is_small);
    tcase_add_test(conv, converge_1gib);
    tcase_set_timeout(conv, 40);
    tcase_add_test(fail, killed_mid_pages);
    tcase_add_test(fail, killed_before_eof);
    tcase_add_test(fail, corrupt_pages_retried);
    tcase_add_test(fail, send_all_needs_consent);
    tcase_add_test(fail, devstate_refused_then_retried);
    tcase_add_test(fail, devstate_always_refused);
    tcase_add_loop_test(fail, rejects_bad_leader, 0, G_N_ELEMENTS(bad_cases));
    tcase_add_test(fail, leader_needs_ack);
    tcase_add_test(fail, leader_rejects_stale);
    tcase_add_test(fail, commit_before_ack);
    tcase_add_test(fail, snapshot_union_gives_the_cut);
    tcase_add_test(fail, snapshot_union_failure_is_fatal);
    tcase_add_test(fail, live_rounds_converge);
    tcase_add_test(fail, target_reads_its_union_first);
    tcase_add_test(fail, commit_fails_after_pages);
    tcase_add_test(fail, commit_fails_without_pages);
    tcase_set_timeout(fail, 20);
    tcase_add_test(codec, codec_roundtrips_and_rejects);
    tcase_add_test(codec, mutated_messages);
    tcase_add_test(codec, deltas_never_block_both_ends);
    tcase_set_timeout(codec, getenv("PLOVER_SOAK") ? 3600 : 30);
    suite_add_tcase(s, conv);
    suite_add_tcase(s, fail);
    suite_add_tcase(s, codec);
    return plv_test_run(s);
}
