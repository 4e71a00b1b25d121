/*
 * The consensus state a replica keeps on disk (see plover/paxos-store.h
 * for the format and the rules).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "plover/paxos-store.h"
#include "util/durable-file.h"
#include "util/fail.h"

#define fail(errp, ...) plv_fail(errp, G_FILE_ERROR, __VA_ARGS__)

/* One frame stays far below the codec's limits (64 MiB, 65536 entries). */
#define FRAME_MAX_ENTRIES 4096
#define FRAME_MAX_BYTES   (16u << 20)
/* Room written (zeros) past the state at each rewrite: appends overwrite
 * it in place, so an fdatasync syncs data only, with no size or extent
 * change for the file system's journal to commit. (Appending to the end
 * of the file instead took up to 200 ms per sync here under disk load,
 * against 8 ms in place.) */
#define ROOM_MIN          (4u << 20)
#define ROOM_UNIT         (1u << 20)
/* A torn append may leave its first page unwritten: garbage that starts
 * within a page of a bad frame is that append, not damage. */
#define TORN_PAGE         4096

struct PlvPaxosStore {
    char *path;
    uint32_t id, n;
    uint64_t inc;
    int fd;
    PlvDurable img;             /* what the file holds */
    uint64_t size;              /* bytes of state in the file; zeros follow */
    uint64_t room;              /* the file's size: state plus zeros */
    GByteArray *buf;
    PlvPaxosStoreStats st;
};

static void frame_begin(const PlvPaxosStore *st, const PlvDurable *d, PlvMsg *m)
{
    plv_msg_init(m, PLV_MSG_PROMISE);
    m->hdr.from = st->id;
    m->hdr.to = (st->id + 1) % st->n;
    m->hdr.inc = st->inc;
    m->hdr.vid = d->promised;
    m->hdr.to_inc = d->promised_inc;
    m->hdr.flags = d->voter ? PLV_HDR_ADMITTED : 0;
    m->vid = d->promised;
    m->other_vid = d->promised_other;
    m->ok = true;
}

static bool frame_end(PlvMsg *m, GByteArray *out, GError **errp)
{
    bool ok = plv_wire_encode(m, out, errp);
    plv_msg_clear(m);
    return ok;
}

static gint by_index(gconstpointer a, gconstpointer b)
{
    const PlvEntry *x = *(const PlvEntry * const *)a, *y = *(const PlvEntry * const *)b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Encode `d` as frames appended to `out`: the promise and the truncation
 * in the first, entries (the last written at each index, in index order,
 * none at or below the truncation) spread over as many as they need.
 */
static bool encode(const PlvPaxosStore *st, const PlvDurable *d, GByteArray *out,
                   GError **errp)
{
    GHashTable *seen = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_autoptr(GPtrArray) order = g_ptr_array_new();
    PlvMsg m;
    size_t bytes = 0;
    bool ok = true;

    /* from the last written back: the first seen at an index wins */
    for (guint k = d->ents->len; k-- > 0;) {
        PlvEntry *e = &g_array_index(d->ents, PlvEntry, k);
        if (!(d->has_snap && e->index <= d->snap.index) &&
            g_hash_table_add(seen, &e->index)) {
            g_ptr_array_add(order, e);
        }
    }
    g_hash_table_destroy(seen);
    g_ptr_array_sort(order, by_index);
    frame_begin(st, d, &m);
    m.has_snap = d->has_snap;
    m.snap = d->snap;
    for (guint j = 0; j < order->len && ok; j++) {
        const PlvEntry *e = g_ptr_array_index(order, j);
        if (m.entries && (m.entries->len >= FRAME_MAX_ENTRIES ||
                          bytes + plv_entry_payload_len(e) > FRAME_MAX_BYTES)) {
            ok = frame_end(&m, out, errp);
            frame_begin(st, d, &m);
            bytes = 0;
        }
        plv_msg_add_entry(&m, e);
        bytes += plv_entry_payload_len(e) + 32;
    }
    if (!ok) {
        plv_msg_clear(&m);
        return false;
    }
    return frame_end(&m, out, errp);
}

/* Rewrite the file from the image, for this incarnation, and append to
 * the new one from now on. */
static bool rewrite(PlvPaxosStore *st, GError **errp)
{
    uint64_t len, room;
    int fd;

    g_byte_array_set_size(st->buf, 0);
    if (!encode(st, &st->img, st->buf, errp)) {
        return false;
    }
    len = st->buf->len;
    room = MAX(ROOM_MIN, (2 * len + ROOM_MIN + ROOM_UNIT - 1) / ROOM_UNIT * ROOM_UNIT);
    g_byte_array_set_size(st->buf, room);
    memset(st->buf->data + len, 0, room - len);
    if (!plv_file_replace(st->path, st->buf->data, room, errp)) {
        return false;
    }
    fd = open(st->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(errp, "cannot open '%s': %s", st->path, g_strerror(errno));
    }
    if (st->fd >= 0) {
        close(st->fd);
    }
    st->fd = fd;
    st->size = len;
    st->room = room;
    return true;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/*
 * Read the frames back into `out`, up to the zeros that follow them. Only
 * the last append can be torn by a crash (each one is synced before the
 * next is written): a frame that does not decode with only zeros after it
 * (after its declared length, or after the page it starts in when its
 * header is gone) is that append, and is dropped. Anything else that does
 * not decode is damage: nothing is restored (*why says where). False
 * (errp set) only for a file of another replica.
 */
static bool replay(PlvPaxosStore *st, const uint8_t *data, size_t len, PlvDurable *out,
                   uint64_t *file_inc, char **why, GError **errp)
{
    size_t off = 0;

    *file_inc = 0;
    while (off < len) {
        g_autoptr(GError) err = NULL;
        ssize_t fl = plv_wire_frame_len(data + off, len - off, &err);
        PlvMsg m;
        PlvDurable chg = { 0 };

        if (fl < 0 && g_error_matches(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_VERSION)) {
            /* not a torn append: every frame of a file has one format */
            *why = g_strdup_printf("'%s' holds consensus frames of format %u; this "
                                   "replica reads format %u", st->path, data[off + 4],
                                   PLV_WIRE_VERSION);
            return true;
        }
        if (fl <= 0 || (size_t)fl > len - off ||
            plv_wire_decode(data + off, (size_t)fl, st->n, &m, &err) < 0) {
            size_t rest = fl > 0 ? (size_t)fl : TORN_PAGE;
            if (rest >= len - off || all_zero(data + off + rest, len - off - rest)) {
                break;      /* the end, or the torn last append */
            }
            *why = g_strdup_printf("'%s' is damaged at byte %zu (%s)", st->path, off,
                                   err ? err->message : "a frame runs past the end");
            return true;
        }
        if (m.type != PLV_MSG_PROMISE || (*file_inc && m.hdr.inc != *file_inc)) {
            *why = g_strdup_printf("'%s' is damaged at byte %zu (a frame of type %s, "
                                   "incarnation %" G_GUINT64_FORMAT ")", st->path, off,
                                   plv_msg_type_name(m.type), (guint64)m.hdr.inc);
            plv_msg_clear(&m);
            return true;
        }
        if (m.hdr.from != st->id) {
            uint32_t other = m.hdr.from;
            plv_msg_clear(&m);
            return fail(errp, "'%s' belongs to replica %u, not to replica %u", st->path,
                        other, st->id);
        }
        *file_inc = m.hdr.inc;
        chg.dirty = true;
        chg.voter = m.hdr.flags & PLV_HDR_ADMITTED;
        chg.promised = m.vid;
        chg.promised_inc = m.hdr.to_inc;
        chg.promised_other = m.other_vid;
        chg.has_snap = m.has_snap;
        chg.snap = m.snap;
        chg.ents = m.entries ? m.entries : g_array_new(FALSE, FALSE, sizeof(PlvEntry));
        m.entries = NULL;
        plv_durable_apply(out, &chg);
        plv_durable_destroy(&chg);
        plv_msg_clear(&m);
        off += (size_t)fl;
    }
    return true;
}

PlvPaxosStore *plv_paxos_store_open(const char *path, uint32_t id, uint32_t n,
                                    uint64_t inc, PlvDurable *img, bool *restored,
                                    char **why_not, GError **errp)
{
    g_autofree char *data = NULL;
    g_autoptr(GError) gerr = NULL;
    gsize len = 0;
    uint64_t file_inc = 0;
    PlvPaxosStore *st;
    PlvDurable got;

    *restored = false;
    *why_not = NULL;
    if (n < 2 || id >= n) {
        fail(errp, "consensus store: replica %u of a group of %u", id, n);
        return NULL;
    }
    st = g_new0(PlvPaxosStore, 1);
    st->path = g_strdup(path);
    st->id = id;
    st->n = n;
    st->inc = inc;
    st->fd = -1;
    st->buf = g_byte_array_new();
    plv_durable_init(&st->img);
    plv_durable_init(&got);
    if (inc == PLV_INC_INITIAL) {
        /* A new group (its state file was just created): whatever lies
         * there is another group's, and is replaced. */
        *why_not = g_strdup("a new group keeps none yet");
    } else if (!g_file_get_contents(path, &data, &len, &gerr)) {
        if (!g_error_matches(gerr, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            fail(errp, "cannot read '%s': %s", path, gerr->message);
            goto fail;
        }
        *why_not = g_strdup_printf("'%s' does not exist", path);
    } else if (!replay(st, (const uint8_t *)data, len, &got, &file_inc, why_not, errp)) {
        goto fail;
    } else if (!*why_not && !file_inc) {
        *why_not = g_strdup_printf("'%s' is empty", path);
    } else if (!*why_not && file_inc >= inc) {
        *why_not = g_strdup_printf("'%s' was written by incarnation %" G_GUINT64_FORMAT
                                   ", not by one before this start's (%" G_GUINT64_FORMAT ")",
                                   path, (guint64)file_inc, (guint64)inc);
    } else if (!*why_not && !plv_durable_votes(&got)) {
        *why_not = g_strdup_printf("'%s' holds what a restarted replica learned before "
                                   "the group admitted it, not what it promised", path);
    } else if (!*why_not) {
        *restored = true;
        plv_durable_apply(img, &got);
        plv_durable_apply(&st->img, &got);
    }
    /* A new group's replica votes from its start, as does one restored. */
    st->img.voter = inc == PLV_INC_INITIAL || *restored;
    plv_durable_destroy(&got);
    if (!rewrite(st, errp)) {
        goto fail;
    }
    return st;

fail:
    plv_durable_destroy(&got);
    plv_paxos_store_free(st);
    if (*restored) {
        plv_durable_clear(img);
        *restored = false;
    }
    g_clear_pointer(why_not, g_free);
    return NULL;
}

bool plv_paxos_store_append(PlvPaxosStore *st, const PlvDurable *chg, GError **errp)
{
    int64_t t0;
    uint64_t us;
    size_t len;

    if (!chg->dirty) {
        return true;
    }
    g_byte_array_set_size(st->buf, 0);
    if (!encode(st, chg, st->buf, errp)) {
        return false;
    }
    len = st->buf->len;
    t0 = g_get_monotonic_time();
    if (st->size + len > st->room) {
        /* No room left: the state with this change goes into a new file
         * (synced too: its time counts as this write's). */
        plv_durable_apply(&st->img, chg);
        if (!rewrite(st, errp)) {
            return false;
        }
        st->st.compactions++;
    } else {
        errno = 0;
        if (pwrite(st->fd, st->buf->data, len, (off_t)st->size) != (ssize_t)len ||
            fdatasync(st->fd) < 0) {
            return fail(errp, "cannot write '%s': %s", st->path,
                        errno ? g_strerror(errno) : "short write");
        }
        st->size += len;
        plv_durable_apply(&st->img, chg);
    }
    us = (uint64_t)(g_get_monotonic_time() - t0);
    st->st.appends++;
    st->st.bytes += len;
    st->st.sync_us_total += us;
    st->st.sync_us_max = MAX(st->st.sync_us_max, us);
    st->st.slow_syncs += us >= PLV_STORE_SLOW_US;
    return true;
}

void plv_paxos_store_stats(const PlvPaxosStore *st, PlvPaxosStoreStats *out)
{
    *out = st->st;
}

void plv_paxos_store_free(PlvPaxosStore *st)
{
    if (!st) {
        return;
    }
    if (st->fd >= 0) {
        close(st->fd);
    }
    plv_durable_destroy(&st->img);
    g_byte_array_unref(st->buf);
    g_free(st->path);
    g_free(st);
}
