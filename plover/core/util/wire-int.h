/* Little-endian field access shared by the wire codec files. */
#ifndef PLOVER_WIRE_INT_H
#define PLOVER_WIRE_INT_H

#include <stdint.h>

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

#endif
