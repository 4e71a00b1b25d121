/*
 * Wire codec: frames and consensus messages. The decoder trusts nothing:
 * each read is bounds-checked against the bytes present, each count is
 * checked against both a fixed limit and what the remaining bytes could
 * hold, each enum and node id against its range.
 */
#include <string.h>
#include <xxhash.h>
#include "plover/wire.h"
#include "plover/bytes.h"

#define HDR_PAYLOAD_LEN 60      /* PlvMsgHdr on the wire */
#define ENTRY_FIXED_LEN 21      /* index, vid, op, len */

G_DEFINE_QUARK(plv-wire-error-quark, plv_wire_error)

static const char *const type_names[PLV_MSG__MAX] = {
    [PLV_MSG_PREPARE] = "prepare",
    [PLV_MSG_PROMISE] = "promise",
    [PLV_MSG_ACCEPT] = "accept",
    [PLV_MSG_ACCEPTED] = "accepted",
    [PLV_MSG_HEARTBEAT] = "heartbeat",
    [PLV_MSG_CATCHUP_REQ] = "catchup-req",
    [PLV_MSG_CATCHUP_RESP] = "catchup-resp",
    [PLV_MSG_FORWARD] = "forward",
};

const char *plv_msg_type_name(int type)
{
    return type > 0 && type < PLV_MSG__MAX ? type_names[type] : "invalid";
}

void plv_msg_init(PlvMsg *m, PlvMsgType type)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
}

void plv_msg_clear(PlvMsg *m)
{
    if (m->entries) {
        for (guint i = 0; i < m->entries->len; i++) {
            plv_entry_clear(&g_array_index(m->entries, PlvEntry, i));
        }
        g_array_free(m->entries, TRUE);
    }
    memset(m, 0, sizeof(*m));
}

void plv_msg_add_entry(PlvMsg *m, const PlvEntry *e)
{
    PlvEntry c;
    if (!m->entries) {
        m->entries = g_array_new(FALSE, FALSE, sizeof(PlvEntry));
    }
    plv_entry_copy(&c, e);
    g_array_append_val(m->entries, c);
}

void plv_msg_copy(PlvMsg *dst, const PlvMsg *src)
{
    *dst = *src;
    dst->entries = NULL;
    if (src->entries) {
        for (guint i = 0; i < src->entries->len; i++) {
            plv_msg_add_entry(dst, &g_array_index(src->entries, PlvEntry, i));
        }
    }
}

/* ---- encoding ---- */

static void put_snap(GByteArray *o, const PlvSnapMeta *s)
{
    plv_append_u64(o, s->index);
    plv_append_u64(o, s->vid);
    plv_append_u64(o, s->epoch);
    plv_append_u32(o, s->secondary);
    plv_append_u32(o, s->n);
    for (uint32_t i = 0; i < s->n; i++) {
        plv_append_u64(o, s->inc[i]);
    }
}

static void put_entries(GByteArray *o, const GArray *es)
{
    guint n = es ? es->len : 0;
    plv_append_u32(o, n);
    for (guint i = 0; i < n; i++) {
        const PlvEntry *e = &g_array_index(es, PlvEntry, i);
        size_t len;
        const uint8_t *p = plv_entry_payload(e, &len);
        plv_append_u64(o, e->index);
        plv_append_u64(o, e->vid);
        plv_append_u8(o, e->op);
        plv_append_u32(o, (uint32_t)len);
        if (len) {
            g_byte_array_append(o, p, len);
        }
    }
}

/* What encode refuses is exactly what decode would reject. */
static bool check_for_encode(const PlvMsg *m, GError **err)
{
    if (m->type <= 0 || m->type >= PLV_MSG__MAX) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_TYPE, "bad message type %d", m->type);
        return false;
    }
    if (m->hdr.from >= PLV_MAX_NODES || m->hdr.to >= PLV_MAX_NODES ||
        (m->hdr.flags & ~PLV_HDR__ALL)) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_FIELD, "bad header");
        return false;
    }
    if (m->has_snap && (m->snap.n == 0 || m->snap.n > PLV_MAX_NODES)) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_FIELD, "bad snapshot size");
        return false;
    }
    if (m->entries) {
        if (m->entries->len > PLV_WIRE_MAX_ENTRIES) {
            g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_FIELD, "too many entries");
            return false;
        }
        for (guint i = 0; i < m->entries->len; i++) {
            if (!plv_entry_valid(&g_array_index(m->entries, PlvEntry, i), err)) {
                return false;
            }
        }
    }
    return true;
}

bool plv_wire_encode(const PlvMsg *m, GByteArray *out, GError **err)
{
    guint start = out->len;
    size_t plen;

    if (!check_for_encode(m, err)) {
        return false;
    }
    plv_append_u32(out, PLV_WIRE_MAGIC);
    plv_append_u8(out, PLV_WIRE_VERSION);
    plv_append_u8(out, (uint8_t)m->type);
    plv_append_u8(out, 0);
    plv_append_u8(out, 0);
    plv_append_u32(out, 0);      /* length, patched below */

    plv_append_u32(out, m->hdr.from);
    plv_append_u32(out, m->hdr.to);
    plv_append_u64(out, m->hdr.inc);
    plv_append_u64(out, m->hdr.vid);
    plv_append_u64(out, m->hdr.commit);
    plv_append_u64(out, m->hdr.last);
    plv_append_u64(out, m->hdr.applied);
    plv_append_u64(out, m->hdr.to_inc);
    plv_append_u32(out, m->hdr.flags);

    switch (m->type) {
    case PLV_MSG_PREPARE:
        plv_append_u64(out, m->vid);
        plv_append_u64(out, m->kept_vid);
        break;
    case PLV_MSG_PROMISE:
        plv_append_u64(out, m->vid);
        plv_append_u64(out, m->other_vid);
        plv_append_u8(out, m->ok);
        plv_append_u8(out, m->has_snap);
        if (m->has_snap) {
            put_snap(out, &m->snap);
        }
        put_entries(out, m->entries);
        break;
    case PLV_MSG_ACCEPT:
        plv_append_u64(out, m->vid);
        plv_append_u64(out, m->index);
        plv_append_u64(out, m->trunc);
        put_entries(out, m->entries);
        break;
    case PLV_MSG_ACCEPTED:
        plv_append_u64(out, m->vid);
        plv_append_u8(out, m->ok);
        plv_append_u64(out, m->index);
        break;
    case PLV_MSG_HEARTBEAT:
        plv_append_u64(out, m->vid);
        plv_append_u64(out, m->trunc);
        break;
    case PLV_MSG_CATCHUP_REQ:
        plv_append_u64(out, m->index);
        plv_append_u32(out, m->count);
        break;
    case PLV_MSG_CATCHUP_RESP:
        plv_append_u8(out, m->has_snap);
        if (m->has_snap) {
            put_snap(out, &m->snap);
        }
        put_entries(out, m->entries);
        break;
    case PLV_MSG_FORWARD:
        put_entries(out, m->entries);
        break;
    default:
        g_assert_not_reached();
    }
    plen = out->len - start - PLV_WIRE_HDR_LEN;
    if (plen > PLV_WIRE_MAX_PAYLOAD) {
        g_byte_array_set_size(out, start);
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_LENGTH, "message too large (%zu)", plen);
        return false;
    }
    plv_put_u32(out->data + start + 8, (uint32_t)plen);
    plv_append_u64(out, XXH64(out->data + start, out->len - start, 0));
    return true;
}

/* ---- decoding ---- */

/* A payload being decoded. Once one check failed, every read fails and
 * returns 0, so a run of fields is read first and checked once; the error
 * names the first failure and its offset. */
typedef struct {
    PlvReader rd;
    uint32_t n_nodes;
    GError **err;
    bool failed;
} Rd;

static bool fail(Rd *r, int code, const char *what)
{
    if (!r->failed) {
        g_set_error(r->err, PLV_WIRE_ERROR, code, "%s at payload offset %zu", what, r->rd.off);
    }
    r->failed = true;
    return false;
}

static bool need(Rd *r, size_t n)
{
    if (r->failed) {
        return false;
    }
    if (plv_reader_left(&r->rd) < n) {
        return fail(r, PLV_WIRE_ERR_SHORT, "truncated field");
    }
    return true;
}

/* The next n bytes of the payload, in place. */
static bool get_bytes(Rd *r, size_t n, const uint8_t **out)
{
    return need(r, n) && plv_read_bytes(&r->rd, n, out);
}

static uint8_t get8(Rd *r)
{
    const uint8_t *b;
    return get_bytes(r, 1, &b) ? plv_get_u8(b) : 0;
}

static uint32_t get32(Rd *r)
{
    const uint8_t *b;
    return get_bytes(r, 4, &b) ? plv_get_u32(b) : 0;
}

static uint64_t get64(Rd *r)
{
    const uint8_t *b;
    return get_bytes(r, 8, &b) ? plv_get_u64(b) : 0;
}

static bool get_bool(Rd *r, bool *out)
{
    uint8_t v = get8(r);
    if (!r->failed && v > 1) {
        return fail(r, PLV_WIRE_ERR_FIELD, "boolean out of range");
    }
    *out = v;
    return !r->failed;
}

static bool node_ok(Rd *r, uint32_t id)
{
    return id < r->n_nodes;
}

static bool get_snap(Rd *r, PlvSnapMeta *s)
{
    memset(s, 0, sizeof(*s));
    s->index = get64(r);
    s->vid = get64(r);
    s->epoch = get64(r);
    s->secondary = get32(r);
    s->n = get32(r);
    if (r->failed) {
        return false;
    }
    if (s->n == 0 || s->n > r->n_nodes) {
        return fail(r, PLV_WIRE_ERR_FIELD, "snapshot cluster size out of range");
    }
    if (s->secondary != PLV_NODE_NONE && s->secondary >= s->n) {
        return fail(r, PLV_WIRE_ERR_FIELD, "snapshot secondary out of range");
    }
    for (uint32_t i = 0; i < s->n; i++) {
        s->inc[i] = get64(r);
    }
    return !r->failed;
}

static bool get_entries(Rd *r, PlvMsg *m)
{
    uint32_t n = get32(r);
    uint64_t prev = 0;

    if (r->failed) {
        return false;
    }
    /* Each entry needs at least its fixed part: bound n by the bytes left
     * before allocating anything. */
    if (n > PLV_WIRE_MAX_ENTRIES || n > plv_reader_left(&r->rd) / ENTRY_FIXED_LEN) {
        return fail(r, PLV_WIRE_ERR_FIELD, "entry count out of range");
    }
    if (n) {
        m->entries = g_array_sized_new(FALSE, TRUE, sizeof(PlvEntry), n);
    }
    for (uint32_t i = 0; i < n; i++) {
        PlvEntry e = { 0 };
        const uint8_t *data;
        uint32_t len;
        GError *local = NULL;

        e.index = get64(r);
        e.vid = get64(r);
        e.op = get8(r);
        len = get32(r);
        if (!need(r, len)) {
            return false;
        }
        if (e.index == 0 || e.index <= prev) {
            return fail(r, PLV_WIRE_ERR_FIELD, "entry indexes not increasing");
        }
        prev = e.index;
        get_bytes(r, len, &data);
        if (len) {
            e.payload = g_bytes_new(data, len);
        }
        g_array_append_val(m->entries, e);
        if (!plv_entry_valid(&e, &local)) {
            g_error_free(local);
            return fail(r, PLV_WIRE_ERR_FIELD, "malformed entry");
        }
    }
    return true;
}

ssize_t plv_wire_frame_len(const uint8_t *buf, size_t have, GError **err)
{
    uint32_t len;

    if (have < PLV_WIRE_HDR_LEN) {
        return 0;
    }
    if (plv_get_u32(buf) != PLV_WIRE_MAGIC) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_MAGIC, "bad magic");
        return -1;
    }
    if (buf[4] != PLV_WIRE_VERSION) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_VERSION,
                    "unsupported version %u", buf[4]);
        return -1;
    }
    len = plv_get_u32(buf + 8);
    if (len > PLV_WIRE_MAX_PAYLOAD || buf[6] || buf[7]) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_LENGTH, "bad length/reserved field");
        return -1;
    }
    return (ssize_t)PLV_WIRE_HDR_LEN + len + PLV_WIRE_TRAILER_LEN;
}

static bool decode_body(Rd *r, PlvMsg *m)
{
    PlvMsgHdr *h = &m->hdr;

    h->from = get32(r);
    h->to = get32(r);
    h->inc = get64(r);
    h->vid = get64(r);
    h->commit = get64(r);
    h->last = get64(r);
    h->applied = get64(r);
    h->to_inc = get64(r);
    h->flags = get32(r);
    if (r->failed) {
        return false;
    }
    if (!node_ok(r, h->from) || !node_ok(r, h->to) || h->from == h->to) {
        return fail(r, PLV_WIRE_ERR_FIELD, "node id out of range");
    }
    if (h->flags & ~PLV_HDR__ALL) {
        return fail(r, PLV_WIRE_ERR_FIELD, "unknown header flags");
    }
    switch (m->type) {
    case PLV_MSG_PREPARE:
        m->vid = get64(r);
        m->kept_vid = get64(r);
        break;
    case PLV_MSG_PROMISE:
        m->vid = get64(r);
        m->other_vid = get64(r);
        get_bool(r, &m->ok);
        get_bool(r, &m->has_snap);
        if (m->has_snap) {
            get_snap(r, &m->snap);
        }
        get_entries(r, m);
        break;
    case PLV_MSG_ACCEPT:
        m->vid = get64(r);
        m->index = get64(r);
        m->trunc = get64(r);
        get_entries(r, m);
        break;
    case PLV_MSG_ACCEPTED:
        m->vid = get64(r);
        get_bool(r, &m->ok);
        m->index = get64(r);
        break;
    case PLV_MSG_HEARTBEAT:
        m->vid = get64(r);
        m->trunc = get64(r);
        break;
    case PLV_MSG_CATCHUP_REQ:
        m->index = get64(r);
        m->count = get32(r);
        break;
    case PLV_MSG_CATCHUP_RESP:
        get_bool(r, &m->has_snap);
        if (m->has_snap) {
            get_snap(r, &m->snap);
        }
        get_entries(r, m);
        break;
    case PLV_MSG_FORWARD:
        get_entries(r, m);
        break;
    default:
        return fail(r, PLV_WIRE_ERR_TYPE, "unknown message type");
    }
    if (r->failed) {
        return false;
    }
    if (plv_reader_left(&r->rd)) {
        return fail(r, PLV_WIRE_ERR_LENGTH, "trailing bytes in payload");
    }
    return true;
}

int plv_wire_decode(const uint8_t *buf, size_t len, uint32_t n_nodes,
                    PlvMsg *out, GError **err)
{
    ssize_t flen;
    uint32_t plen;
    Rd r;

    memset(out, 0, sizeof(*out));
    if (n_nodes == 0 || n_nodes > PLV_MAX_NODES) {
        n_nodes = PLV_MAX_NODES;
    }
    if (len < PLV_WIRE_HDR_LEN) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_SHORT, "short frame (%zu bytes)", len);
        return -1;
    }
    flen = plv_wire_frame_len(buf, len, err);
    if (flen < 0) {
        return -1;
    }
    if ((size_t)flen != len) {
        g_set_error(err, PLV_WIRE_ERROR,
                    (size_t)flen > len ? PLV_WIRE_ERR_SHORT : PLV_WIRE_ERR_LENGTH,
                    "frame is %zd bytes, buffer %zu", flen, len);
        return -1;
    }
    plen = plv_get_u32(buf + 8);
    if (plv_get_u64(buf + PLV_WIRE_HDR_LEN + plen) !=
        XXH64(buf, PLV_WIRE_HDR_LEN + plen, 0)) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_CHECKSUM, "checksum mismatch");
        return -1;
    }
    if (buf[5] == 0 || buf[5] >= PLV_MSG__MAX) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_TYPE, "unknown message type %u", buf[5]);
        return -1;
    }
    out->type = buf[5];
    r = (Rd){ .rd = plv_reader(buf + PLV_WIRE_HDR_LEN, plen), .n_nodes = n_nodes,
              .err = err };
    if (plen < HDR_PAYLOAD_LEN) {
        fail(&r, PLV_WIRE_ERR_SHORT, "payload shorter than header");
    } else {
        decode_body(&r, out);
    }
    if (r.failed) {
        plv_msg_clear(out);
        return -1;
    }
    return 0;
}

void plv_wire_stats_note(PlvWireStats *s, const GError *err)
{
    if (!err) {
        s->ok++;
        return;
    }
    s->bad_total++;
    if (err->domain == PLV_WIRE_ERROR && err->code > 0 && err->code < PLV_WIRE_ERR__COUNT) {
        s->bad[err->code]++;
    }
}
