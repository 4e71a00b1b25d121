/*
 * Memory view and dirty bitmaps (see memview.h).
 */
#include "plover/memview.h"

#include <string.h>

struct PlvMemView {
    GArray *regions;            /* of PlvMemRegion */
};

G_DEFINE_QUARK(plv-memview-error-quark, plv_memview_error)

void plv_bitmap_init(PlvBitmap *b, uint64_t n_bits)
{
    b->n_bits = n_bits;
    b->words = g_new0(uint64_t, MAX(plv_bitmap_n_words(n_bits), 1));
}

void plv_bitmap_destroy(PlvBitmap *b)
{
    g_free(b->words);
    b->words = NULL;
    b->n_bits = 0;
}

void plv_bitmap_zero(PlvBitmap *b)
{
    memset(b->words, 0, plv_bitmap_n_words(b->n_bits) * sizeof(uint64_t));
}

void plv_bitmap_or(PlvBitmap *dst, const PlvBitmap *src)
{
    uint64_t n = plv_bitmap_n_words(dst->n_bits);

    g_assert(dst->n_bits == src->n_bits);
    for (uint64_t i = 0; i < n; i++) {
        dst->words[i] |= src->words[i];
    }
}

uint64_t plv_bitmap_count(const PlvBitmap *b)
{
    uint64_t n = plv_bitmap_n_words(b->n_bits), c = 0;

    for (uint64_t i = 0; i < n; i++) {
        c += (uint64_t)__builtin_popcountll(b->words[i]);
    }
    return c;
}

void plv_bitmap_mask_tail(PlvBitmap *b)
{
    unsigned rem = b->n_bits % 64;

    if (rem) {
        b->words[b->n_bits / 64] &= (UINT64_C(1) << rem) - 1;
    }
}

PlvMemView *plv_memview_new(void)
{
    PlvMemView *mv = g_new0(PlvMemView, 1);

    mv->regions = g_array_new(FALSE, TRUE, sizeof(PlvMemRegion));
    return mv;
}

void plv_memview_free(PlvMemView *mv)
{
    if (!mv) {
        return;
    }
    for (guint i = 0; i < mv->regions->len; i++) {
        plv_bitmap_destroy(&g_array_index(mv->regions, PlvMemRegion, i).dirty);
    }
    g_array_free(mv->regions, TRUE);
    g_free(mv);
}

int plv_memview_add_region(PlvMemView *mv, uint32_t id, uint32_t page_size,
                           uint64_t n_pages, void *base, GError **err)
{
    PlvMemRegion r = { .id = id, .page_size = page_size, .n_pages = n_pages,
                       .base = base };

    if (mv->regions->len >= PLV_MEMVIEW_MAX_REGIONS) {
        g_set_error(err, PLV_MEMVIEW_ERROR, 0, "too many regions (max %d)",
                    PLV_MEMVIEW_MAX_REGIONS);
        return -1;
    }
    if (page_size < PLV_MEMVIEW_MIN_PAGE_SIZE ||
        page_size > PLV_MEMVIEW_MAX_PAGE_SIZE ||
        (page_size & (page_size - 1))) {
        g_set_error(err, PLV_MEMVIEW_ERROR, 0,
                    "region %u: bad page size %u", id, page_size);
        return -1;
    }
    /* Page indices travel as 32-bit union positions on the wire. */
    if (n_pages == 0 || n_pages > UINT32_MAX || !base) {
        g_set_error(err, PLV_MEMVIEW_ERROR, 0,
                    "region %u: bad page count %" PRIu64 " or base", id,
                    n_pages);
        return -1;
    }
    /* So that any union of two bitmaps fits the u32 union index too. */
    if (plv_memview_total_pages(mv) + n_pages > UINT32_MAX) {
        g_set_error(err, PLV_MEMVIEW_ERROR, 0,
                    "region %u: more than 2^32 - 1 pages in the view", id);
        return -1;
    }
    if (plv_memview_find(mv, id) >= 0) {
        g_set_error(err, PLV_MEMVIEW_ERROR, 0, "region %u: duplicate id", id);
        return -1;
    }
    plv_bitmap_init(&r.dirty, n_pages);
    g_array_append_val(mv->regions, r);
    return (int)mv->regions->len - 1;
}

unsigned plv_memview_n_regions(const PlvMemView *mv)
{
    return mv->regions->len;
}

PlvMemRegion *plv_memview_region(PlvMemView *mv, unsigned idx)
{
    g_assert(idx < mv->regions->len);
    return &g_array_index(mv->regions, PlvMemRegion, idx);
}

const PlvMemRegion *plv_memview_region_const(const PlvMemView *mv,
                                             unsigned idx)
{
    g_assert(idx < mv->regions->len);
    return &g_array_index(mv->regions, PlvMemRegion, idx);
}

int plv_memview_find(const PlvMemView *mv, uint32_t id)
{
    for (guint i = 0; i < mv->regions->len; i++) {
        if (g_array_index(mv->regions, PlvMemRegion, i).id == id) {
            return (int)i;
        }
    }
    return -1;
}

void plv_memview_mark_dirty(PlvMemView *mv, unsigned idx, uint64_t offset,
                            uint64_t len)
{
    PlvMemRegion *r = plv_memview_region(mv, idx);
    uint64_t first, last;

    if (len == 0) {
        return;
    }
    first = offset / r->page_size;
    last = (offset + len - 1) / r->page_size;
    g_assert(last < r->n_pages);
    for (uint64_t p = first; p <= last; p++) {
        plv_bitmap_set(&r->dirty, p);
    }
}

void plv_memview_clear_dirty(PlvMemView *mv)
{
    for (guint i = 0; i < mv->regions->len; i++) {
        plv_bitmap_zero(&g_array_index(mv->regions, PlvMemRegion, i).dirty);
    }
}

uint64_t plv_memview_dirty_count(const PlvMemView *mv)
{
    uint64_t c = 0;

    for (guint i = 0; i < mv->regions->len; i++) {
        c += plv_bitmap_count(&g_array_index(mv->regions, PlvMemRegion, i).dirty);
    }
    return c;
}

uint64_t plv_memview_total_pages(const PlvMemView *mv)
{
    uint64_t c = 0;

    for (guint i = 0; i < mv->regions->len; i++) {
        c += g_array_index(mv->regions, PlvMemRegion, i).n_pages;
    }
    return c;
}

bool plv_memview_same_layout(const PlvMemView *a, const PlvMemView *b)
{
    if (a->regions->len != b->regions->len) {
        return false;
    }
    for (guint i = 0; i < a->regions->len; i++) {
        const PlvMemRegion *ra = &g_array_index(a->regions, PlvMemRegion, i);
        const PlvMemRegion *rb = &g_array_index(b->regions, PlvMemRegion, i);

        if (ra->id != rb->id || ra->page_size != rb->page_size ||
            ra->n_pages != rb->n_pages) {
            return false;
        }
    }
    return true;
}
