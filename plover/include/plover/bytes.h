/*
 * plover/bytes.h — little-endian fields, the byte order of every plover
 * wire format (consensus messages, log entries, link frames, RDMA records,
 * syncvm messages).
 *
 * Three ways in, one encoding:
 *   plv_put_u32(p, v) / plv_get_u32(p)   at a fixed place the caller checked;
 *   plv_append_u32(out, v)               at the end of a GByteArray;
 *   plv_read_u32(&rd, &v)                through a bounds-checked cursor
 *                                        (PlvReader rd = plv_reader(p, len)): a
 *                                        read past the end returns false,
 *                                        leaves *v and the cursor alone.
 */
#ifndef PLOVER_BYTES_H
#define PLOVER_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

/* ---- at a place ---- */

static inline void plv_put_u8(uint8_t *p, uint8_t v)
{
    p[0] = v;
}

static inline void plv_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = v; p[1] = v >> 8;
}

static inline void plv_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

static inline void plv_put_u64(uint8_t *p, uint64_t v)
{
    plv_put_u32(p, (uint32_t)v);
    plv_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint8_t plv_get_u8(const uint8_t *p)
{
    return p[0];
}

static inline uint16_t plv_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t plv_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t plv_get_u64(const uint8_t *p)
{
    return (uint64_t)plv_get_u32(p) | (uint64_t)plv_get_u32(p + 4) << 32;
}

/* ---- appended to a GByteArray ---- */

static inline void plv_append_u8(GByteArray *out, uint8_t v)
{
    g_byte_array_append(out, &v, 1);
}

static inline void plv_append_u16(GByteArray *out, uint16_t v)
{
    uint8_t b[2];

    plv_put_u16(b, v);
    g_byte_array_append(out, b, sizeof(b));
}

static inline void plv_append_u32(GByteArray *out, uint32_t v)
{
    uint8_t b[4];

    plv_put_u32(b, v);
    g_byte_array_append(out, b, sizeof(b));
}

static inline void plv_append_u64(GByteArray *out, uint64_t v)
{
    uint8_t b[8];

    plv_put_u64(b, v);
    g_byte_array_append(out, b, sizeof(b));
}

/* ---- read through a bounds-checked cursor ---- */

typedef struct PlvReader {
    const uint8_t *p;
    size_t len;
    size_t off;         /* bytes consumed; never more than len */
} PlvReader;

/* A cursor at the start of p[0, len). */
static inline PlvReader plv_reader(const uint8_t *p, size_t len)
{
    return (PlvReader){ .p = p, .len = len, .off = 0 };
}

static inline size_t plv_reader_left(const PlvReader *rd)
{
    return rd->len - rd->off;
}

/* The next n bytes, in place. */
static inline bool plv_read_bytes(PlvReader *rd, size_t n, const uint8_t **out)
{
    if (plv_reader_left(rd) < n) {
        return false;
    }
    *out = rd->p + rd->off;
    rd->off += n;
    return true;
}

static inline bool plv_read_u8(PlvReader *rd, uint8_t *v)
{
    const uint8_t *b;

    if (!plv_read_bytes(rd, 1, &b)) {
        return false;
    }
    *v = plv_get_u8(b);
    return true;
}

static inline bool plv_read_u16(PlvReader *rd, uint16_t *v)
{
    const uint8_t *b;

    if (!plv_read_bytes(rd, 2, &b)) {
        return false;
    }
    *v = plv_get_u16(b);
    return true;
}

static inline bool plv_read_u32(PlvReader *rd, uint32_t *v)
{
    const uint8_t *b;

    if (!plv_read_bytes(rd, 4, &b)) {
        return false;
    }
    *v = plv_get_u32(b);
    return true;
}

static inline bool plv_read_u64(PlvReader *rd, uint64_t *v)
{
    const uint8_t *b;

    if (!plv_read_bytes(rd, 8, &b)) {
        return false;
    }
    *v = plv_get_u64(b);
    return true;
}

#endif /* PLOVER_BYTES_H */
