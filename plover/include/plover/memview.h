/*
 * Memory view: the guest memory as the syncvm engine sees it.
 *
 * A view is an ordered list of regions (id, page size, page count, base
 * pointer), each with a dirty bitmap. The QEMU glue maps RAMBlocks onto it;
 * tests map synthetic memory. The engine never allocates or frees guest
 * memory: the view only borrows the base pointers.
 *
 * Bitmaps are arrays of 64-bit words (bit i of word w is page w*64+i) so
 * that their wire form does not depend on the host's long size.
 */
#ifndef PLOVER_MEMVIEW_H
#define PLOVER_MEMVIEW_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define PLV_MEMVIEW_MAX_REGIONS   256
#define PLV_MEMVIEW_MIN_PAGE_SIZE 512
#define PLV_MEMVIEW_MAX_PAGE_SIZE (2u * 1024 * 1024)

#define PLV_MEMVIEW_ERROR (plv_memview_error_quark())
GQuark plv_memview_error_quark(void);

typedef struct PlvBitmap {
    uint64_t n_bits;
    uint64_t *words;            /* ceil(n_bits / 64) words, tail bits zero */
} PlvBitmap;

static inline uint64_t plv_bitmap_n_words(uint64_t n_bits)
{
    return (n_bits + 63) / 64;
}

static inline bool plv_bitmap_test(const PlvBitmap *b, uint64_t i)
{
    return (b->words[i / 64] >> (i % 64)) & 1;
}

static inline void plv_bitmap_set(PlvBitmap *b, uint64_t i)
{
    b->words[i / 64] |= UINT64_C(1) << (i % 64);
}

static inline void plv_bitmap_clear_bit(PlvBitmap *b, uint64_t i)
{
    b->words[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

void plv_bitmap_init(PlvBitmap *b, uint64_t n_bits);
void plv_bitmap_destroy(PlvBitmap *b);
void plv_bitmap_zero(PlvBitmap *b);
/* dst |= src; both must have the same size. */
void plv_bitmap_or(PlvBitmap *dst, const PlvBitmap *src);
uint64_t plv_bitmap_count(const PlvBitmap *b);
/* Clears bits at and beyond n_bits in the last word (after a raw copy). */
void plv_bitmap_mask_tail(PlvBitmap *b);

typedef struct PlvMemRegion {
    uint32_t id;
    uint32_t page_size;         /* power of two */
    uint64_t n_pages;
    uint8_t *base;              /* n_pages * page_size bytes, borrowed */
    PlvBitmap dirty;            /* owned by the view */
} PlvMemRegion;

typedef struct PlvMemView PlvMemView;

PlvMemView *plv_memview_new(void);
void plv_memview_free(PlvMemView *mv);

/*
 * Adds a region at the end of the view. Region ids are unique; page_size
 * is a power of two within [MIN_PAGE_SIZE, MAX_PAGE_SIZE]; the whole view
 * holds at most 2^32 - 1 pages (16 TiB of 4 KiB pages). Returns the
 * region's index or -1.
 */
int plv_memview_add_region(PlvMemView *mv, uint32_t id, uint32_t page_size,
                           uint64_t n_pages, void *base, GError **err);

unsigned plv_memview_n_regions(const PlvMemView *mv);
PlvMemRegion *plv_memview_region(PlvMemView *mv, unsigned idx);
const PlvMemRegion *plv_memview_region_const(const PlvMemView *mv,
                                             unsigned idx);
/* Index of the region with this id, or -1. */
int plv_memview_find(const PlvMemView *mv, uint32_t id);

static inline uint8_t *plv_memview_page(const PlvMemRegion *r, uint64_t page)
{
    return r->base + page * (uint64_t)r->page_size;
}

/* Marks every page touching [offset, offset+len) of region idx dirty. */
void plv_memview_mark_dirty(PlvMemView *mv, unsigned idx, uint64_t offset,
                            uint64_t len);
void plv_memview_clear_dirty(PlvMemView *mv);
uint64_t plv_memview_dirty_count(const PlvMemView *mv);
uint64_t plv_memview_total_pages(const PlvMemView *mv);

/* True if both views have the same regions (ids, page sizes, counts). */
bool plv_memview_same_layout(const PlvMemView *a, const PlvMemView *b);

#endif
