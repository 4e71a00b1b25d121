/*
 * Where divergent pages come from (x-query-plover-divergence).
 *
 * A secondary sees both versions of every divergent page at a syncvm: its
 * own, just before it is overwritten, and the leader's. For each one this
 * counts how many bytes differ, how many blocks of each candidate size
 * differ (what a sub-page delta of that size would send), and which page
 * it was, so that an operator (or scripts/plover-divergence.py) can tell
 * divergence the guest causes (timestamps, scheduler statistics) from
 * divergence the replication causes, and where in the guest it sits.
 *
 * It costs a compare of each divergent page during the secondary's apply,
 * so it collects only once asked: the first x-query-plover-divergence
 * starts it (and answers with nothing yet). The syncvm thread adds, QMP
 * reads: both under the lock, which QMP holds only to copy.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-plover.h"
#include "exec/ramblock.h"
#include "exec/target_page.h"
#include "plover-state.h"

/* Upper bounds of the histogram of differing bytes per divergent page. */
static const uint32_t plover_div_bounds[] = { 1, 8, 64, 256, 1024, 4095,
                                              UINT32_MAX };
#define PLOVER_DIV_BUCKETS G_N_ELEMENTS(plover_div_bounds)
/* Candidate block sizes for sub-page deltas. */
static const uint32_t plover_div_block_sizes[] = { 32, 64, 128, 256, 512 };
#define PLOVER_DIV_SIZES G_N_ELEMENTS(plover_div_block_sizes)
/* Pages tracked one by one; past that only the totals grow. */
#define PLOVER_DIV_MAX_TRACKED 65536

typedef struct PloverDivPage {
    uint32_t region, page;
    uint64_t count;             /* times divergent */
    uint64_t bytes;             /* differing bytes, summed */
    uint64_t lines;             /* 64 bits: which 1/64ths of it ever differed */
} PloverDivPage;

struct PloverDivergence {
    bool enabled;               /* atomic: collect at the next syncvms */
    QemuMutex lock;
    uint64_t pages, zero_pages, bytes;
    uint64_t hist[PLOVER_DIV_BUCKETS];
    uint64_t blocks[PLOVER_DIV_SIZES];
    uint64_t untracked;
    GHashTable *by_page;        /* (region << 32 | page) -> PloverDivPage */
};

PloverDivergence *plover_divergence_new(void)
{
    PloverDivergence *d = g_new0(PloverDivergence, 1);

    qemu_mutex_init(&d->lock);
    d->by_page = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                       g_free);
    return d;
}

bool plover_divergence_enabled(PloverDivergence *d)
{
    return qatomic_read(&d->enabled);
}

static void plover_divergence_reset_locked(PloverDivergence *d)
{
    d->pages = d->zero_pages = d->bytes = d->untracked = 0;
    memset(d->hist, 0, sizeof(d->hist));
    memset(d->blocks, 0, sizeof(d->blocks));
    g_hash_table_remove_all(d->by_page);
}

/* Differing bytes of a against b (b NULL: zero), and which 1/64ths. */
static uint32_t plover_div_compare(const uint8_t *a, const uint8_t *b,
                                   uint32_t len, uint64_t *lines,
                                   uint64_t blocks[PLOVER_DIV_SIZES])
{
    uint32_t line = MAX(len / 64, 1), diff = 0;
    uint64_t last_block[PLOVER_DIV_SIZES];

    *lines = 0;
    memset(last_block, 0xff, sizeof(last_block));
    for (uint32_t off = 0; off < len; off += 8) {
        uint64_t x, y = 0;

        memcpy(&x, a + off, 8);
        if (b) {
            memcpy(&y, b + off, 8);
        }
        if (x == y) {
            continue;
        }
        for (unsigned k = 0; k < 8; k++) {
            diff += ((x >> (8 * k)) & 0xff) != ((y >> (8 * k)) & 0xff);
        }
        *lines |= UINT64_C(1) << MIN(off / line, 63);
        for (unsigned i = 0; i < PLOVER_DIV_SIZES; i++) {
            uint64_t blk = off / plover_div_block_sizes[i];

            if (blk != last_block[i]) {
                blocks[i]++;
                last_block[i] = blk;
            }
        }
    }
    return diff;
}

void plover_divergence_add(PloverDivergence *d, const PlvPageRef *ref,
                           const uint8_t *mine, const uint8_t *leader,
                           uint32_t page_size)
{
    uint64_t blocks[PLOVER_DIV_SIZES] = { 0 };
    uint64_t lines, key = (uint64_t)ref->region << 32 | ref->page;
    uint32_t diff = plover_div_compare(mine, leader, page_size, &lines,
                                       blocks);
    PloverDivPage *p;
    unsigned b = 0;

    while (diff > plover_div_bounds[b]) {
        b++;
    }
    qemu_mutex_lock(&d->lock);
    d->pages++;
    d->zero_pages += !leader;
    d->bytes += diff;
    d->hist[b]++;
    for (unsigned i = 0; i < PLOVER_DIV_SIZES; i++) {
        d->blocks[i] += blocks[i];
    }
    p = g_hash_table_lookup(d->by_page, &key);
    if (!p && g_hash_table_size(d->by_page) < PLOVER_DIV_MAX_TRACKED) {
        p = g_new0(PloverDivPage, 1);
        p->region = ref->region;
        p->page = ref->page;
        g_hash_table_insert(d->by_page, g_memdup2(&key, sizeof(key)), p);
    }
    if (p) {
        p->count++;
        p->bytes += diff;
        p->lines |= lines;
    } else {
        d->untracked++;
    }
    qemu_mutex_unlock(&d->lock);
}

static gint plover_div_by_count(gconstpointer a, gconstpointer b)
{
    const PloverDivPage *x = a, *y = b;

    return x->count != y->count ? (x->count < y->count ? 1 : -1)
                                : (x->bytes < y->bytes) - (x->bytes > y->bytes);
}

PloverDivergenceInfo *qmp_x_query_plover_divergence(bool has_top, uint32_t top,
                                                    bool has_reset, bool reset,
                                                    Error **errp)
{
    PloverState *s = plover_state();
    PloverDivergence *d = s->syncvm.divergence;
    PloverDivergenceInfo *info;
    PloverDivergenceBucketList **hist;
    PloverDivergenceBlockCostList **cost;
    PloverDivergencePageList **tail;
    g_autoptr(GArray) all = NULL;
    GHashTableIter it;
    gpointer value;
    size_t page = qemu_target_page_size();

    if (!d) {
        error_setg(errp, "plover is not configured");
        return NULL;
    }
    info = g_new0(PloverDivergenceInfo, 1);
    hist = &info->histogram;
    cost = &info->block_cost;
    tail = &info->top;
    qemu_mutex_lock(&d->lock);
    info->pages = d->pages;
    info->zero_pages = d->zero_pages;
    info->bytes = d->bytes;
    info->untracked = d->untracked;
    for (unsigned i = 0; i < PLOVER_DIV_BUCKETS; i++) {
        PloverDivergenceBucket *bk = g_new0(PloverDivergenceBucket, 1);

        bk->max_bytes = MIN(plover_div_bounds[i], page);
        bk->pages = d->hist[i];
        QAPI_LIST_APPEND(hist, bk);
    }
    for (unsigned i = 0; i < PLOVER_DIV_SIZES; i++) {
        PloverDivergenceBlockCost *c = g_new0(PloverDivergenceBlockCost, 1);

        c->block_size = plover_div_block_sizes[i];
        c->blocks = d->blocks[i];
        QAPI_LIST_APPEND(cost, c);
    }
    all = g_array_sized_new(FALSE, FALSE, sizeof(PloverDivPage),
                            g_hash_table_size(d->by_page));
    g_hash_table_iter_init(&it, d->by_page);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        g_array_append_vals(all, value, 1);
    }
    if (has_reset && reset) {
        plover_divergence_reset_locked(d);
    }
    qatomic_set(&d->enabled, true);
    qemu_mutex_unlock(&d->lock);

    /* Sorted without the lock: the syncvm thread may go on adding. */
    g_array_sort(all, plover_div_by_count);
    for (guint i = 0; i < all->len && i < (has_top ? top : 32); i++) {
        const PloverDivPage *p = &g_array_index(all, PloverDivPage, i);
        RAMBlock *rb = g_ptr_array_index(s->syncvm.ram_blocks, p->region);
        PloverDivergencePage *dp = g_new0(PloverDivergencePage, 1);

        dp->block = g_strdup(qemu_ram_get_idstr(rb));
        dp->offset = (uint64_t)p->page * page;
        dp->count = p->count;
        dp->mean_bytes = p->bytes / p->count;
        dp->lines = p->lines;
        QAPI_LIST_APPEND(tail, dp);
    }
    return info;
}
