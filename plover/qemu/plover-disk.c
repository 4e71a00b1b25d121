/*
 * The VM's disks in syncvm: each replicated drive is one more region of
 * the memory view, in 4 KiB blocks, so that the engine fingerprints,
 * compares, sends and stages divergent disk blocks exactly as it does
 * divergent pages, and applies them together with RAM and devices.
 *
 * A disk is not in memory: its region's base is a shadow, an address
 * range as large as the disk, reserved and not allocated. Only the
 * union's blocks are ever read into it (plover_disk_load_union, once the
 * union is known), and the target writes the blocks it staged from there
 * to its image in its commit, before the device state is loaded.
 *
 * Which blocks each replica wrote since the last syncvm: a block dirty
 * bitmap of QEMU's on each drive (4 KiB granularity), collected into the
 * view's bitmap at the cut and cleared, as the RAM dirty log is.
 *
 * In-flight guest I/O at the cut is drained: a stopped VM (vm_stop) has
 * none; a leader whose VM runs on from the cut drains its drives there
 * and keeps them drained (the guest's new requests wait in QEMU's queue)
 * until the union's blocks are read, so those blocks are read as they
 * were at the cut. The device state therefore never holds a request in
 * flight.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/madvise.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"
#include "block/block.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "system/block-backend.h"
#include "plover-state.h"
#include "trace.h"

#include <xxhash.h>

#define PLOVER_DISK_ERROR g_quark_from_static_string("plover-disk")

/* Disk region ids in the memory view (RAM blocks are 0..n-1). */
#define PLOVER_DISK_REGION_BASE 0x10000u
#define PLOVER_DISK_BLOCK       4096u
/* Longest single read or write of contiguous union blocks. */
#define PLOVER_DISK_IO_MAX      (1024u * 1024)
/* Shadow blocks touched before they are given back to the kernel. */
#define PLOVER_DISK_RELEASE_BLOCKS (64u * 1024 * 1024 / PLOVER_DISK_BLOCK)
/*
 * A byte of each image file that this process locks for writing (OFD
 * lock, apart from the bytes QEMU's own image locking uses), so that two
 * replicas on one host cannot share an image even with locking=off.
 */
#define PLOVER_DISK_LOCK_BYTE   999

struct PloverDisk {
    char *name;                 /* the drive's name in messages and QMP */
    BlockBackend *dev_blk;      /* the guest device's: the target's writes */
    BlockBackend *blk;          /* ours: reads, also while drained */
    BlockDriverState *bs;
    BdrvDirtyBitmap *dirty;     /* the guest's writes since the last cut */
    uint64_t n_blocks;
    uint8_t *shadow;
    unsigned region;            /* index in the memory view */
    int lock_fd;
    bool drained;               /* leader: drained from the cut to the union */
};

/* The name of a drive: -drive id, else its device's id, else its node's. */
static char *plover_disk_name(BlockBackend *blk)
{
    char *dev_id;

    if (blk_name(blk)[0]) {
        return g_strdup(blk_name(blk));
    }
    dev_id = blk_get_attached_dev_id(blk);
    if (dev_id && dev_id[0]) {
        return dev_id;
    }
    g_free(dev_id);
    return g_strdup(bdrv_get_node_name(blk_bs(blk)));
}

static bool plover_disk_named(const PlvConfig *cfg, BlockBackend *blk)
{
    g_autofree char *dev_id = blk_get_attached_dev_id(blk);
    const char *node = blk_bs(blk) ? bdrv_get_node_name(blk_bs(blk)) : "";

    for (unsigned i = 0; i < cfg->n_disks; i++) {
        const char *d = cfg->disks[i];

        if (!strcmp(d, blk_name(blk)) || (dev_id && !strcmp(d, dev_id)) ||
            !strcmp(d, node)) {
            return true;
        }
    }
    return false;
}

static gint plover_disk_cmp(gconstpointer a, gconstpointer b)
{
    const PloverDisk *x = *(PloverDisk *const *)a;
    const PloverDisk *y = *(PloverDisk *const *)b;

    return strcmp(x->name, y->name);
}

/* The file under a drive's top image, if it is a host file. */
static const char *plover_disk_file(BlockDriverState *bs)
{
    GRAPH_RDLOCK_GUARD_MAINLOOP();

    while (bs && bs->file) {
        bs = bs->file->bs;
    }
    return bs && bs->drv && !strcmp(bs->drv->format_name, "file") ?
        bs->filename : NULL;
}

static bool plover_disk_lock(PloverDisk *d, Error **errp)
{
    const char *path = plover_disk_file(d->bs);
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = PLOVER_DISK_LOCK_BYTE,
        .l_len = 1,
    };

    d->lock_fd = -1;
    if (!path) {
        return true;            /* not a host file: nothing to lock here */
    }
    d->lock_fd = qemu_open_old(path, O_RDWR);
    if (d->lock_fd < 0) {
        error_setg_errno(errp, errno, "-plover: disks: drive '%s': cannot "
                         "open %s", d->name, path);
        return false;
    }
    if (fcntl(d->lock_fd, F_OFD_SETLK, &fl) < 0) {
        error_setg(errp, "-plover: disks: drive '%s': image %s is in use by "
                   "another process (another replica on this host?); each "
                   "replica needs an image of its own", d->name, path);
        return false;
    }
    return true;
}

/* Why @blk cannot be replicated, or NULL. */
static const char *plover_disk_refusal(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    if (!bs) {
        return "has no medium";
    }
    if (!blk_is_writable(blk)) {
        return "is read-only; a replicated drive must be writable";
    }
    if (blk_get_flags(blk) & BDRV_O_NO_FLUSH) {
        return "has cache=unsafe (cache.no-flush=on), which drops the "
               "guest's flushes: a write the guest saw as durable could be "
               "lost with the hosts' power";
    }
    if (bdrv_get_aio_context(bs) != qemu_get_aio_context()) {
        return "runs in an iothread, which replication does not support yet";
    }
    if (blk_getlength(blk) % PLOVER_DISK_BLOCK) {
        return "has a size that is not a multiple of 4096 bytes";
    }
    return NULL;
}

static bool plover_disk_open(PloverDisk *d, Error **errp)
{
    uint64_t len = blk_getlength(d->dev_blk);

    if (!plover_disk_lock(d, errp)) {
        return false;
    }
    d->n_blocks = len / PLOVER_DISK_BLOCK;
    d->blk = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                     BLK_PERM_ALL);
    if (blk_insert_bs(d->blk, d->bs, errp) < 0) {
        error_prepend(errp, "-plover: disks: drive '%s': ", d->name);
        return false;
    }
    /* Reads go on while the guest's requests wait in a drained section. */
    blk_set_disable_request_queuing(d->blk, true);
    d->dirty = bdrv_create_dirty_bitmap(d->bs, PLOVER_DISK_BLOCK, NULL, errp);
    if (!d->dirty) {
        error_prepend(errp, "-plover: disks: drive '%s': ", d->name);
        return false;
    }
    d->shadow = mmap(NULL, MAX(len, 1), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (d->shadow == MAP_FAILED) {
        d->shadow = NULL;
        error_setg_errno(errp, errno, "-plover: disks: drive '%s': shadow",
                         d->name);
        return false;
    }
    return true;
}

/*
 * Every writable drive attached to a device (disks=all, the default), or
 * the named ones; each becomes a region of @mv after RAM, in the order of
 * their names, which the replicas' command lines share.
 */
bool plover_disk_setup(PloverState *s, PlvMemView *mv, Error **errp)
{
    GPtrArray *disks = g_ptr_array_new();
    const PlvConfig *cfg = &s->cfg;
    BlockBackend *blk = NULL;

    s->syncvm.disks = disks;
    if (cfg->disks_none) {
        return true;
    }
    while ((blk = blk_all_next(blk))) {
        const char *why;
        bool named = cfg->n_disks && plover_disk_named(cfg, blk);
        PloverDisk *d;

        if (!blk_get_attached_dev(blk) || (cfg->n_disks && !named)) {
            continue;
        }
        why = plover_disk_refusal(blk);
        if (why && !named && (!blk_bs(blk) || !blk_is_writable(blk))) {
            continue;           /* disks=all: a CD-ROM or read-only drive */
        }
        d = g_new0(PloverDisk, 1);
        d->lock_fd = -1;
        d->name = plover_disk_name(blk);
        g_ptr_array_add(disks, d);
        if (why) {
            error_setg(errp, "-plover: disks: drive '%s' %s", d->name, why);
            return false;
        }
        d->dev_blk = blk;
        d->bs = blk_bs(blk);
    }
    for (unsigned i = 0; i < cfg->n_disks; i++) {
        bool found = false;

        for (guint k = 0; k < disks->len; k++) {
            PloverDisk *d = g_ptr_array_index(disks, k);

            found |= plover_disk_named(cfg, d->dev_blk);
        }
        if (!found) {
            error_setg(errp, "-plover: disks: no drive '%s' attached to a "
                       "device (name a -drive id, a device id or a node name)",
                       cfg->disks[i]);
            return false;
        }
    }
    g_ptr_array_sort(disks, plover_disk_cmp);
    for (guint k = 0; k < disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(disks, k);
        g_autoptr(GError) gerr = NULL;
        int idx;

        if (!plover_disk_open(d, errp)) {
            return false;
        }
        idx = plv_memview_add_region(mv, PLOVER_DISK_REGION_BASE + k,
                                     PLOVER_DISK_BLOCK, d->n_blocks, d->shadow,
                                     &gerr);
        if (idx < 0) {
            error_setg(errp, "-plover: disks: drive '%s': %s", d->name,
                       gerr->message);
            return false;
        }
        d->region = idx;
        trace_plover_disk(d->name, d->n_blocks * PLOVER_DISK_BLOCK);
    }
    return true;
}

/*
 * The cut (main loop, BQL, vCPUs stopped): the blocks written since the
 * last cut go into the view's bitmaps. A VM that runs on (@run_on) has
 * its drives drained first and kept drained until the union is read.
 */
void plover_disk_cut(PloverState *s, PlvMemView *mv, bool run_on)
{
    if (s->syncvm.exiting) {
        return;                 /* plover_disk_close ran */
    }
    for (guint k = 0; s->syncvm.disks && k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);
        PlvMemRegion *r = plv_memview_region(mv, d->region);
        int64_t len = d->n_blocks * PLOVER_DISK_BLOCK;
        int64_t off = 0;

        if (run_on && !d->drained) {
            bdrv_drained_begin(d->bs);
            d->drained = true;
        }
        while ((off = bdrv_dirty_bitmap_next_dirty(d->dirty, off,
                                                   len - off)) >= 0) {
            plv_bitmap_set(&r->dirty, off / PLOVER_DISK_BLOCK);
            off += PLOVER_DISK_BLOCK;
            if (off >= len) {
                break;
            }
        }
        bdrv_reset_dirty_bitmap(d->dirty, 0, len);
    }
}

/* The guest's disk requests go on (BQL). */
void plover_disk_undrain(PloverState *s)
{
    for (guint k = 0; s->syncvm.disks && k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);

        if (d->drained) {
            d->drained = false;
            bdrv_drained_end(d->bs);
        }
    }
}

/*
 * QEMU is exiting (main loop, BQL; the syncvm thread no longer touches
 * the drives): our bitmaps and backends go before QEMU closes the drives.
 * The regions stay, with their shadows, for a run still in the engine.
 */
void plover_disk_close(PloverState *s)
{
    plover_disk_undrain(s);
    for (guint k = 0; s->syncvm.disks && k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);

        if (d->dirty) {
            bdrv_release_dirty_bitmap(d->dirty);
            d->dirty = NULL;
        }
        if (d->blk) {
            blk_unref(d->blk);
            d->blk = NULL;
        }
    }
}

static PloverDisk *plover_disk_of_region(PloverState *s, uint32_t region)
{
    for (guint k = 0; s->syncvm.disks && k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);

        if (d->region == region) {
            return d;
        }
    }
    return NULL;
}

typedef int (*PloverDiskIo)(PloverDisk *d, uint64_t first, uint64_t n,
                            GError **err);

/*
 * Calls @io on each run of consecutive blocks of one disk in
 * refs[0..n) (in view order), at most PLOVER_DISK_IO_MAX bytes a call.
 * Under the caller's BQL (a commit), else under the BQL taken for each
 * call: a union may be a whole drive (a full copy), which the main loop
 * must not wait for.
 */
static int plover_disk_runs(PloverState *s, const PlvPageRef *refs,
                            uint32_t n, PloverDiskIo io, uint64_t *blocks,
                            GError **err)
{
    bool own = !bql_locked();
    uint32_t i = 0;
    int ret;

    while (i < n) {
        PloverDisk *d = plover_disk_of_region(s, refs[i].region);
        uint32_t j = i + 1;

        if (!d) {
            i++;
            continue;
        }
        while (j < n && refs[j].region == refs[i].region &&
               refs[j].page == refs[j - 1].page + 1 &&
               (j - i) * PLOVER_DISK_BLOCK < PLOVER_DISK_IO_MAX) {
            j++;
        }
        if (own && !plover_lock_devices(s, err)) {
            return -1;
        }
        ret = io(d, refs[i].page, j - i, err);
        if (own) {
            plover_unlock_devices(s, "disk run");
        }
        if (ret < 0) {
            return -1;
        }
        *blocks += j - i;
        i = j;
    }
    return 0;
}

static int plover_disk_read_run(PloverDisk *d, uint64_t first, uint64_t n,
                                GError **err)
{
    int ret = blk_pread(d->blk, first * PLOVER_DISK_BLOCK,
                        n * PLOVER_DISK_BLOCK,
                        d->shadow + first * PLOVER_DISK_BLOCK, 0);

    if (ret < 0) {
        g_set_error(err, PLOVER_DISK_ERROR, 1, "drive '%s': reading blocks "
                    "%" PRIu64 "..%" PRIu64 ": %s", d->name, first,
                    first + n - 1, strerror(-ret));
        return -1;
    }
    return 0;
}

static int plover_disk_write_run(PloverDisk *d, uint64_t first, uint64_t n,
                                 GError **err)
{
    int64_t off = first * PLOVER_DISK_BLOCK, len = n * PLOVER_DISK_BLOCK;
    int ret = blk_pwrite(d->dev_blk, off, len, d->shadow + off, 0);

    if (ret < 0) {
        g_set_error(err, PLOVER_DISK_ERROR, 2, "drive '%s': writing blocks "
                    "%" PRIu64 "..%" PRIu64 ": %s", d->name, first,
                    first + n - 1, strerror(-ret));
        return -1;
    }
    /* The leader's blocks, not the guest's writes: not dirty here. */
    bdrv_reset_dirty_bitmap(d->dirty, off, len);
    return 0;
}

static void plover_disk_release_shadows(PloverState *s)
{
    if (s->syncvm.disk_shadow_touched <= PLOVER_DISK_RELEASE_BLOCKS) {
        return;
    }
    for (guint k = 0; k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);

        qemu_madvise(d->shadow, d->n_blocks * PLOVER_DISK_BLOCK,
                     QEMU_MADV_DONTNEED);
    }
    s->syncvm.disk_shadow_touched = 0;
}

/*
 * The engine's union is known (syncvm thread, either end): the union's
 * disk blocks into the shadows, as they were at the cut (the drives stay
 * drained meanwhile), or during a pre-copy round as they are; then a
 * leader that ran on lets its guest's disk requests go. Takes the BQL.
 */
int plover_disk_load_union(PloverState *s, const PlvPageRef *refs, uint32_t n,
                           GError **err)
{
    uint64_t blocks = 0;
    int ret;

    if (!s->syncvm.disks || !s->syncvm.disks->len) {
        return 0;
    }
    plover_disk_release_shadows(s);
    ret = plover_disk_runs(s, refs, n, plover_disk_read_run, &blocks, err);
    if (plover_lock_devices(s, NULL)) {
        plover_disk_undrain(s);
        plover_unlock_devices(s, "disk undrain");
    }
    s->syncvm.disk_shadow_touched += blocks;
    s->syncvm.stats.disk_blocks_union += blocks;
    return ret;
}

/*
 * Target, in its commit (BQL held, VM stopped), or after a pre-copy round
 * (its VM not running; the BQL taken for each run of blocks): the blocks
 * the run wrote into the shadows go to the images. A failure here leaves
 * a disk half written: the caller fails the commit, and the VM waits for
 * a full syncvm.
 */
int plover_disk_write(PloverState *s, const PlvPageRef *written, uint32_t n,
                      GError **err)
{
    uint64_t blocks = 0;

    if (!s->syncvm.disks || !s->syncvm.disks->len) {
        return 0;
    }
    if (plover_disk_runs(s, written, n, plover_disk_write_run, &blocks,
                         err) < 0) {
        return -1;
    }
    s->syncvm.stats.disk_blocks_written += blocks;
    return 0;
}

/* One drive's content (BQL, drive quiet), keyless XXH3-128 in hex. */
static char *plover_disk_digest_one(PloverDisk *d, Error **errp)
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t len = d->n_blocks * PLOVER_DISK_BLOCK;
    g_autofree uint8_t *buf = g_malloc(PLOVER_DISK_IO_MAX);
    XXH128_hash_t h;

    XXH3_128bits_reset(st);
    for (uint64_t off = 0; off < len; off += PLOVER_DISK_IO_MAX) {
        uint64_t n = MIN(PLOVER_DISK_IO_MAX, len - off);
        int ret = blk_pread(d->blk, off, n, buf, 0);

        if (ret < 0) {
            error_setg_errno(errp, -ret, "drive '%s': reading at %" PRIu64,
                             d->name, off);
            XXH3_freeState(st);
            return NULL;
        }
        XXH3_128bits_update(st, buf, n);
    }
    h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    return g_strdup_printf("%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64,
                           (uint64_t)h.low64);
}

/* Every replicated drive's digest (BQL): "name=digest,..." or NULL. */
char *plover_disk_digest(PloverState *s, Error **errp)
{
    GString *out;

    if (!s->syncvm.disks || !s->syncvm.disks->len) {
        return NULL;
    }
    if (s->syncvm.exiting) {
        error_setg(errp, "QEMU is exiting: its drives are gone");
        return NULL;
    }
    out = g_string_new("");
    for (guint k = 0; k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);
        g_autofree char *one = plover_disk_digest_one(d, errp);

        if (!one) {
            g_string_free(out, TRUE);
            return NULL;
        }
        g_string_append_printf(out, "%s%s=%s", k ? "," : "", d->name, one);
    }
    return g_string_free(out, FALSE);
}

PloverDiskInfoList *plover_disk_query(PloverState *s)
{
    PloverDiskInfoList *head = NULL, **tail = &head;

    for (guint k = 0; s->syncvm.disks && k < s->syncvm.disks->len; k++) {
        PloverDisk *d = g_ptr_array_index(s->syncvm.disks, k);
        PloverDiskInfo *info = g_new0(PloverDiskInfo, 1);

        info->drive = g_strdup(d->name);
        info->size = d->n_blocks * PLOVER_DISK_BLOCK;
        info->dirty_blocks = d->dirty ?
            bdrv_get_dirty_count(d->dirty) / PLOVER_DISK_BLOCK : 0;
        QAPI_LIST_APPEND(tail, info);
    }
    return head;
}
