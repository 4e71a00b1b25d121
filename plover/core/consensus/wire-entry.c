/*
 * Log entries and their payload shapes (second, syncvm, config, input
 * batch). Shared by the codec, which validates them on decode, and by the
 * consensus engine, which builds them.
 */
#include <string.h>
#include "plover/wire.h"
#include "plover/bytes.h"

void plv_entry_copy(PlvEntry *dst, const PlvEntry *src)
{
    *dst = *src;
    if (dst->payload) {
        g_bytes_ref(dst->payload);
    }
}

void plv_entry_clear(PlvEntry *e)
{
    if (e->payload) {
        g_bytes_unref(e->payload);
    }
    memset(e, 0, sizeof(*e));
}

const uint8_t *plv_entry_payload(const PlvEntry *e, size_t *len)
{
    gsize n = 0;
    const uint8_t *p = e->payload ? g_bytes_get_data(e->payload, &n) : NULL;
    *len = n;
    return p;
}

size_t plv_entry_payload_len(const PlvEntry *e)
{
    return e->payload ? g_bytes_get_size(e->payload) : 0;
}

bool plv_entry_same_value(const PlvEntry *a, const PlvEntry *b)
{
    size_t la, lb;
    const uint8_t *pa = plv_entry_payload(a, &la);
    const uint8_t *pb = plv_entry_payload(b, &lb);
    return a->op == b->op && la == lb && (la == 0 || memcmp(pa, pb, la) == 0);
}

static GBytes *bytes_from(const void *p, size_t n)
{
    return g_bytes_new(p, n);
}

GBytes *plv_op_second_payload(uint32_t id)
{
    uint8_t b[4];
    plv_put_u32(b, id);
    return bytes_from(b, sizeof(b));
}

GBytes *plv_op_syncvm_payload(uint64_t epoch)
{
    uint8_t b[8];
    plv_put_u64(b, epoch);
    return bytes_from(b, sizeof(b));
}

GBytes *plv_op_config_payload(uint32_t id, uint64_t inc)
{
    uint8_t b[12];
    plv_put_u32(b, id);
    plv_put_u64(b + 4, inc);
    return bytes_from(b, sizeof(b));
}

bool plv_op_second_get(const PlvEntry *e, uint32_t *id)
{
    size_t n;
    const uint8_t *p = plv_entry_payload(e, &n);
    if (e->op != PLV_OP_SECOND || n != 4) {
        return false;
    }
    *id = plv_get_u32(p);
    return true;
}

bool plv_op_syncvm_get(const PlvEntry *e, uint64_t *epoch)
{
    size_t n;
    const uint8_t *p = plv_entry_payload(e, &n);
    if (e->op != PLV_OP_SYNCVM || n != 8) {
        return false;
    }
    *epoch = plv_get_u64(p);
    return true;
}

bool plv_op_config_get(const PlvEntry *e, uint32_t *id, uint64_t *inc)
{
    size_t n;
    const uint8_t *p = plv_entry_payload(e, &n);
    if (e->op != PLV_OP_CONFIG || n != 12) {
        return false;
    }
    *id = plv_get_u32(p);
    *inc = plv_get_u64(p + 4);
    return true;
}

void plv_batch_init(GByteArray *b)
{
    g_byte_array_set_size(b, 0);
    plv_append_u32(b, 0);
}

void plv_batch_add(GByteArray *b, const void *pkt, uint32_t len)
{
    g_assert(b->len >= 4);
    plv_put_u32(b->data, plv_get_u32(b->data) + 1);
    plv_append_u32(b, len);
    g_byte_array_append(b, pkt, len);
}

uint32_t plv_batch_count(const uint8_t *p, size_t len)
{
    return len >= 4 ? plv_get_u32(p) : 0;
}

void plv_batch_iter_init(PlvBatchIter *it, const uint8_t *p, size_t len)
{
    it->p = p;
    it->len = len;
    it->off = 4;
    it->left = plv_batch_count(p, len);
}

void plv_batch_iter_entry(PlvBatchIter *it, const PlvEntry *e)
{
    size_t len;
    const uint8_t *p = plv_entry_payload(e, &len);

    plv_batch_iter_init(it, p, len);
}

bool plv_batch_next(PlvBatchIter *it, const uint8_t **pkt, uint32_t *len)
{
    uint32_t l;
    if (it->left == 0 || it->off > it->len || it->len - it->off < 4) {
        return false;
    }
    l = plv_get_u32(it->p + it->off);
    if (l > it->len - it->off - 4) {
        return false;
    }
    *pkt = it->p + it->off + 4;
    *len = l;
    it->off += 4 + (size_t)l;
    it->left--;
    return true;
}

/* A batch is valid when its count packets tile the payload exactly. */
bool plv_batch_valid(const uint8_t *p, size_t len)
{
    PlvBatchIter it;
    const uint8_t *pkt;
    uint32_t l, n;

    if (len < 4) {
        return false;
    }
    n = plv_get_u32(p);
    if (n > PLV_WIRE_MAX_PACKETS) {
        return false;
    }
    plv_batch_iter_init(&it, p, len);
    while (plv_batch_next(&it, &pkt, &l)) {
    }
    return it.left == 0 && it.off == len;
}

bool plv_entry_valid(const PlvEntry *e, GError **err)
{
    size_t n;
    const uint8_t *p = plv_entry_payload(e, &n);
    bool ok;

    switch (e->op) {
    case PLV_OP_NOOP:
    case PLV_OP_END:
        ok = n == 0;
        break;
    case PLV_OP_SECOND:
        ok = n == 4 && plv_get_u32(p) < PLV_MAX_NODES;
        break;
    case PLV_OP_INPUT:
        ok = plv_batch_valid(p, n);
        break;
    case PLV_OP_SYNCVM:
        ok = n == 8;
        break;
    case PLV_OP_CONFIG:
        ok = n == 12 && plv_get_u32(p) < PLV_MAX_NODES && plv_get_u64(p + 4) != 0;
        break;
    default:
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_FIELD,
                    "entry %" G_GUINT64_FORMAT ": unknown op %u", e->index, e->op);
        return false;
    }
    if (!ok) {
        g_set_error(err, PLV_WIRE_ERROR, PLV_WIRE_ERR_FIELD,
                    "entry %" G_GUINT64_FORMAT ": malformed payload for op %u (%zu bytes)",
                    e->index, e->op, n);
    }
    return ok;
}
