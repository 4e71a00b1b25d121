/*
 * The leader's snapshot of guest RAM at a syncvm cut.
 *
 * At the cut the VM is stopped only long enough to take the dirty bitmap
 * and the device state and to arm this snapshot; then it runs on while
 * the syncvm thread compares and sends. The run must still read every
 * page of the union as it was at the cut, and the union (the leader's
 * dirty pages and the secondary's) is only known once the secondary has
 * reached the entry too. So the snapshot covers all of RAM,
 * copy-on-write:
 *
 *  - armed, QEMU's RAM write hook (patches/) runs before anything writes
 *    guest RAM: TCG's first store to a page after the cut's dirty-log
 *    clear, device DMA, address_space_map for writing. The first write
 *    to a page copies it aside, then marks it preserved, then lets the
 *    write go on;
 *  - the syncvm thread, given the union, copies each of its pages into a
 *    shadow view the engine reads: the copy aside if the page is
 *    preserved, else the page in RAM, re-checked after the copy: a page
 *    still unpreserved then was not written during the copy (its writer
 *    would have marked it first). Then the snapshot is disarmed.
 *
 * The hook does not see KVM's own writes to guest memory: under KVM the
 * leader's vCPUs stay stopped until the union is copied, and resume then
 * (device writes meanwhile still pass the hook).
 *
 * The shadow is an address range as large as guest RAM, reserved, not
 * allocated: only the union's pages are ever touched, and the pages of
 * many syncvms are handed back to the kernel together.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/madvise.h"
#include "qapi/error.h"
#include "exec/memory.h"
#include "exec/ramblock.h"
#include "exec/target_page.h"
#include "plover-state.h"

#define PLOVER_SNAPSHOT_ERROR g_quark_from_static_string("plover-snapshot")

/* Shadow pages touched since the last release before they are given back. */
#define PLOVER_SHADOW_RELEASE_PAGES (64u * 1024 * 1024 / 4096)

typedef struct PloverSnapBlock {
    ram_addr_t offset;          /* of the RAMBlock in ram_addr_t space */
    uint64_t n_pages;
    uint64_t first;             /* index of its first page in all of RAM */
    uint8_t *host;
    uint8_t *shadow;
} PloverSnapBlock;

struct PloverSnapshot {
    size_t page;
    unsigned page_bits;
    unsigned n_blocks;
    PloverSnapBlock *blocks;
    uint64_t n_pages;
    PlvMemView *shadow_mv;      /* what the engine reads: the shadows */

    bool armed;                 /* atomic */
    unsigned long *preserved;   /* atomic bits: copied aside since the cut */
    QemuMutex lock;             /* copies, and copying a page aside */
    GHashTable *copies;         /* page index in all of RAM -> its copy */
    uint64_t shadow_touched;    /* syncvm thread only */
    uint64_t cow_pages;         /* atomic: pages copied aside by writers */
};

static PloverSnapBlock *plover_snap_block(PloverSnapshot *sn, ram_addr_t addr)
{
    for (unsigned i = 0; i < sn->n_blocks; i++) {
        PloverSnapBlock *b = &sn->blocks[i];

        if (addr >= b->offset &&
            addr - b->offset < (b->n_pages << sn->page_bits)) {
            return b;
        }
    }
    return NULL;
}

/* Copies page @p of @b aside unless it already is (any writer's thread). */
static void plover_snap_preserve(PloverSnapshot *sn, PloverSnapBlock *b,
                                 uint64_t p)
{
    uint64_t g = b->first + p;

    if (test_bit(g, sn->preserved)) {
        return;
    }
    qemu_mutex_lock(&sn->lock);
    if (qatomic_read(&sn->armed) && !test_bit(g, sn->preserved)) {
        uint8_t *copy = g_malloc(sn->page);

        memcpy(copy, b->host + (p << sn->page_bits), sn->page);
        g_hash_table_insert(sn->copies, (gpointer)(uintptr_t)(g + 1), copy);
        /* The copy is complete before the bit says so, and the bit is
         * set (a full barrier) before the writer's store. */
        set_bit_atomic(g, sn->preserved);
        smp_mb();
        qatomic_inc(&sn->cow_pages);
    }
    qemu_mutex_unlock(&sn->lock);
}

/* QEMU's RAM write hook: runs before [addr, addr + len) is written. */
static void plover_snap_before_write(ram_addr_t addr, ram_addr_t len)
{
    PloverSnapshot *sn = plover_state()->syncvm.snap;
    ram_addr_t end = addr + len;

    if (!qatomic_read(&sn->armed)) {
        return;
    }
    while (addr < end) {
        PloverSnapBlock *b = plover_snap_block(sn, addr);
        uint64_t p, last;

        if (!b) {
            /* Not guest RAM the syncvm covers (a ROM, say): skip a page. */
            addr = ROUND_UP(addr + 1, sn->page);
            continue;
        }
        p = (addr - b->offset) >> sn->page_bits;
        last = MIN((end - 1 - b->offset) >> sn->page_bits, b->n_pages - 1);
        for (; p <= last; p++) {
            plover_snap_preserve(sn, b, p);
        }
        addr = b->offset + (last + 1) * sn->page;
    }
}

/*
 * A snapshot of the RAM blocks of @mv (its first regions). Its view also
 * has @mv's other regions (the drives', plover-disk.c), over their own
 * shadows: those are read at the cut's state by plover_disk_load_union.
 */
PloverSnapshot *plover_snapshot_new(GPtrArray *ram_blocks, PlvMemView *mv,
                                    Error **errp)
{
    PloverSnapshot *sn = g_new0(PloverSnapshot, 1);
    uint64_t first = 0;

    sn->page = qemu_target_page_size();
    sn->page_bits = ctz64(sn->page);
    sn->n_blocks = ram_blocks->len;
    sn->blocks = g_new0(PloverSnapBlock, MAX(sn->n_blocks, 1));
    sn->shadow_mv = plv_memview_new();
    for (unsigned i = 0; i < sn->n_blocks; i++) {
        RAMBlock *rb = g_ptr_array_index(ram_blocks, i);
        PloverSnapBlock *b = &sn->blocks[i];
        g_autoptr(GError) gerr = NULL;
        size_t len;

        b->offset = rb->offset;
        b->n_pages = DIV_ROUND_UP(qemu_ram_get_used_length(rb), sn->page);
        b->first = first;
        b->host = qemu_ram_get_host_addr(rb);
        len = b->n_pages * sn->page;
        b->shadow = mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (b->shadow == MAP_FAILED) {
            b->shadow = NULL;
            error_setg_errno(errp, errno, "plover: snapshot of RAM block %s",
                             qemu_ram_get_idstr(rb));
            plover_snapshot_free(sn);
            return NULL;
        }
        if (plv_memview_add_region(sn->shadow_mv, i, sn->page, b->n_pages,
                                   b->shadow, &gerr) < 0) {
            error_setg(errp, "plover: snapshot of RAM block %s: %s",
                       qemu_ram_get_idstr(rb), gerr->message);
            plover_snapshot_free(sn);
            return NULL;
        }
        first += b->n_pages;
    }
    for (unsigned i = sn->n_blocks; i < plv_memview_n_regions(mv); i++) {
        const PlvMemRegion *r = plv_memview_region_const(mv, i);
        g_autoptr(GError) gerr = NULL;

        if (plv_memview_add_region(sn->shadow_mv, r->id, r->page_size,
                                   r->n_pages, r->base, &gerr) < 0) {
            error_setg(errp, "plover: snapshot view: %s", gerr->message);
            plover_snapshot_free(sn);
            return NULL;
        }
    }
    sn->n_pages = first;
    sn->preserved = bitmap_new(MAX(first, 1));
    sn->copies = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    qemu_mutex_init(&sn->lock);
    return sn;
}

void plover_snapshot_free(PloverSnapshot *sn)
{
    if (!sn) {
        return;
    }
    for (unsigned i = 0; i < sn->n_blocks; i++) {
        if (sn->blocks[i].shadow) {
            munmap(sn->blocks[i].shadow, sn->blocks[i].n_pages * sn->page);
        }
    }
    plv_memview_free(sn->shadow_mv);
    g_free(sn->blocks);
    g_free(sn->preserved);
    if (sn->copies) {
        g_hash_table_unref(sn->copies);
        qemu_mutex_destroy(&sn->lock);
    }
    g_free(sn);
}

/*
 * At the cut, vCPUs stopped: the engine's view gets the dirty bitmaps just
 * collected, and RAM is copy-on-write from now on: the VM may run on.
 */
void plover_snapshot_arm(PloverSnapshot *sn, PlvMemView *ram_mv)
{
    for (unsigned i = 0; i < plv_memview_n_regions(ram_mv); i++) {
        const PlvBitmap *src = &plv_memview_region_const(ram_mv, i)->dirty;
        PlvBitmap *dst = &plv_memview_region(sn->shadow_mv, i)->dirty;

        memcpy(dst->words, src->words,
               plv_bitmap_n_words(src->n_bits) * sizeof(uint64_t));
    }
    bitmap_zero(sn->preserved, sn->n_pages);
    qatomic_set(&sn->armed, true);
    ram_write_hook_set(plover_snap_before_write);
}

/* No copy-on-write any more; the copies aside are dropped. */
void plover_snapshot_disarm(PloverSnapshot *sn)
{
    qemu_mutex_lock(&sn->lock);
    qatomic_set(&sn->armed, false);
    g_hash_table_remove_all(sn->copies);
    qemu_mutex_unlock(&sn->lock);
    ram_write_hook_set(NULL);
}

PlvMemView *plover_snapshot_view(PloverSnapshot *sn)
{
    return sn->shadow_mv;
}

/*
 * The engine's snapshot_union (syncvm thread), armed: the union's pages at
 * the cut into the shadow view, while the VM may be running. The union
 * comes from the shadow view, whose regions are the blocks.
 */
int plover_snapshot_union(void *opaque, const PlvPageRef *refs, uint32_t n,
                          GError **err)
{
    PloverSnapshot *sn = opaque;

    if (sn->shadow_touched > PLOVER_SHADOW_RELEASE_PAGES) {
        /* Give the pages of earlier syncvms back to the kernel. */
        for (unsigned i = 0; i < sn->n_blocks; i++) {
            qemu_madvise(sn->blocks[i].shadow,
                         sn->blocks[i].n_pages * sn->page, QEMU_MADV_DONTNEED);
        }
        sn->shadow_touched = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        PloverSnapBlock *b;
        uint64_t g;
        uint8_t *dst, *src;

        if (refs[i].region >= sn->n_blocks) {
            continue;           /* a drive's block: plover_disk_load_union */
        }
        b = &sn->blocks[refs[i].region];
        g = b->first + refs[i].page;
        dst = b->shadow + ((uint64_t)refs[i].page << sn->page_bits);
        src = b->host + ((uint64_t)refs[i].page << sn->page_bits);
        if (!test_bit(g, sn->preserved)) {
            memcpy(dst, src, sn->page);
            smp_mb();           /* the copy is read before the bit is */
            if (!test_bit(g, sn->preserved)) {
                continue;       /* nobody wrote it during the copy */
            }
        }
        qemu_mutex_lock(&sn->lock);
        src = g_hash_table_lookup(sn->copies, (gpointer)(uintptr_t)(g + 1));
        if (src) {
            memcpy(dst, src, sn->page);
        }
        qemu_mutex_unlock(&sn->lock);
        if (!src) {
            g_set_error(err, PLOVER_SNAPSHOT_ERROR, 1,
                        "page %u of region %u was written after the cut "
                        "and not preserved", refs[i].page, refs[i].region);
            return -1;
        }
    }
    sn->shadow_touched += n;
    return 0;
}

uint64_t plover_snapshot_cow_pages(PloverSnapshot *sn)
{
    return qatomic_read(&sn->cow_pages);
}
