/*
 * syncvm on a real VM: guest RAM as the engine's memory view, the dirty
 * pages from QEMU's migration dirty log, the device state as the engine's
 * opaque blob, and the bulk link between leader and secondary.
 *
 * The main loop takes the cut (plover_sync_start): it stops the VM,
 * collects the dirty log and, on the leader, the device state, and arms
 * the RAM snapshot (plover-snapshot.c) so that the leader's VM runs on at
 * once. The syncvm thread then runs link, agreement and engine without
 * the BQL; it takes the BQL only where QEMU's state changes: to load the
 * device state on the target before the ACK. A bottom half hands the job
 * back to the main loop (plover_exec_sync_done in plover-replica.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "qapi/error.h"
#include "exec/memory.h"
#include "exec/ramblock.h"
#include "exec/target_page.h"
#include "exec/tb-flush.h"
#include "hw/core/cpu.h"
#include "io/channel-buffer.h"
#include "migration/qemu-file.h"
#include "migration/global_state.h"
#include "migration/savevm.h"
#include "net/announce.h"
#include "system/cpus.h"
#include "system/cpu-timers.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "system/tcg.h"
#include "plover-state.h"
#include "plover/bytes.h"
#include "plover-bulk.h"
#include "plover/syncvm-agree.h"
#include "trace.h"

#include <xxhash.h>

#define PLOVER_SYNC_ERROR g_quark_from_static_string("plover-sync-error")

/* The blob the leader sends besides the pages: our header, the committed
 * inputs the NIC has not taken yet, then QEMU's device state. */
#define PLOVER_BLOB_MAGIC 0x504c4253u   /* "PLBS" */

static int plover_add_block(RAMBlock *rb, void *opaque)
{
    GPtrArray *blocks = opaque;

    if (qemu_ram_is_migratable(rb)) {
        g_ptr_array_add(blocks, rb);
    }
    return 0;
}

/*
 * Every migratable RAMBlock is one region; both executing replicas run the
 * same command line, so the layout (checked by the engine) is the same.
 */
static bool plover_build_memview(PloverState *s, Error **errp)
{
    size_t page = qemu_target_page_size();
    g_autoptr(GError) gerr = NULL;

    s->syncvm.ram_blocks = g_ptr_array_new();
    qemu_ram_foreach_block(plover_add_block, s->syncvm.ram_blocks);
    s->syncvm.mv = plv_memview_new();
    for (guint i = 0; i < s->syncvm.ram_blocks->len; i++) {
        RAMBlock *rb = g_ptr_array_index(s->syncvm.ram_blocks, i);
        uint64_t len = qemu_ram_get_used_length(rb);

        if (plv_memview_add_region(s->syncvm.mv, i, page, DIV_ROUND_UP(len, page),
                                   qemu_ram_get_host_addr(rb), &gerr) < 0) {
            error_setg(errp, "plover: RAM block %s: %s", qemu_ram_get_idstr(rb),
                       gerr->message);
            return false;
        }
    }
    return true;
}

static void *plover_sync_thread(void *opaque);

/* CPU time of the calling thread. */
static int64_t plover_thread_cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The syncvm thread takes the BQL to touch QEMU's devices; false (BQL not
 * held) once QEMU is exiting, whose cleanup tore them down.
 */
bool plover_lock_devices(PloverState *s, GError **err)
{
    bql_lock();
    if (s->syncvm.exiting) {
        bql_unlock();
        g_set_error(err, PLOVER_SYNC_ERROR, 4,
                    "QEMU is exiting: its devices are gone");
        return false;
    }
    s->syncvm.bql_since_us = g_get_monotonic_time();
    s->syncvm.bql_since_cpu_us = plover_thread_cpu_us();
    return true;
}

/* Ends a plover_lock_devices() for @what; how long it held the BQL, and
 * the CPU time it used meanwhile, into the stats. */
void plover_unlock_devices(PloverState *s, const char *what)
{
    PloverSyncStats *a = &s->syncvm.stats;
    int64_t held = g_get_monotonic_time() - s->syncvm.bql_since_us;
    int64_t cpu = plover_thread_cpu_us() - s->syncvm.bql_since_cpu_us;

    plv_latency_add(&a->bql_hold, held);
    a->bql_hold_cpu_max_us = MAX(a->bql_hold_cpu_max_us, cpu);
    bql_unlock();
    trace_plover_syncvm_bql_hold(what, held, cpu);
}

/* Main loop, BQL: a shutdown that ends QEMU (not -no-shutdown's pause). */
static void plover_sync_shutdown(Notifier *n, void *data)
{
    PloverState *s = container_of(n, PloverState, syncvm.shutdown_notifier);

    if (shutdown_action != SHUTDOWN_ACTION_PAUSE) {
        s->syncvm.exiting = true;
        /* Before QEMU closes the drives, which must have no bitmap left. */
        plover_disk_close(s);
    }
}

bool plover_sync_setup(PloverState *s, Error **errp)
{
    const PlvConfigPeer *self = &s->cfg.peers[s->cfg.id];
    g_autoptr(GError) gerr = NULL;

    if (!plover_build_memview(s, errp) ||
        !plover_disk_setup(s, s->syncvm.mv, errp)) {
        return false;
    }
    s->syncvm.snap = plover_snapshot_new(s->syncvm.ram_blocks, s->syncvm.mv,
                                         errp);
    if (!s->syncvm.snap) {
        return false;
    }
    s->syncvm.divergence = plover_divergence_new();
    s->syncvm.staged_devstate = g_byte_array_new();
    s->syncvm.shutdown_notifier.notify = plover_sync_shutdown;
    qemu_register_shutdown_notifier(&s->syncvm.shutdown_notifier);
    qemu_mutex_init(&s->syncvm.bulk_lock);
    qemu_sem_init(&s->syncvm.sync_go, 0);
    qemu_sem_init(&s->syncvm.cut_done, 0);
    qemu_thread_create(&s->syncvm.sync_thread, "plover-syncvm", plover_sync_thread,
                       s, QEMU_THREAD_DETACHED);
    s->syncvm.pool = plv_hash_pool_new(0);
    /* The bulk link of a replica listens one port above its consensus port. */
    s->syncvm.bulk_listener = plover_bulk_listen(&s->cfg, s->secret, s->secret_len,
                                                 s->tls,
                                          &gerr);
    if (!s->syncvm.bulk_listener) {
        error_setg(errp, "plover: syncvm link on %s:%u: %s", self->host,
                   self->port + 1, gerr->message);
        return false;
    }
    return true;
}

/*
 * Log dirty pages from now on (before the first reset, so that even the
 * firmware and kernel loading are seen). A replica that joins gets a full
 * syncvm first anyway.
 */
void plover_sync_start_dirty_log(PloverState *s)
{
    Error *err = NULL;

    if (!memory_global_dirty_log_start(GLOBAL_DIRTY_MIGRATION, &err)) {
        error_report_err(err);
        exit(1);
    }
}

/*
 * The pages dirtied since the last call, one snapshot per RAM block (BQL).
 * The bits are cleared in QEMU as they are read, so the view keeps them
 * until a syncvm succeeds. Clearing re-arms TCG's write tracking
 * (cpu_physical_memory_dirty_bits_cleared), so later writes are seen.
 */
static DirtyBitmapSnapshot **plover_snapshot_dirty(PloverState *s)
{
    DirtyBitmapSnapshot **snaps = g_new(DirtyBitmapSnapshot *,
                                        s->syncvm.ram_blocks->len);

    memory_global_dirty_log_sync(false);
    for (guint i = 0; i < s->syncvm.ram_blocks->len; i++) {
        RAMBlock *rb = g_ptr_array_index(s->syncvm.ram_blocks, i);

        snaps[i] = memory_region_snapshot_and_clear_dirty(rb->mr, 0,
                                                          rb->used_length,
                                                          DIRTY_MEMORY_MIGRATION);
    }
    return snaps;
}

/*
 * OR the snapshots into the view's bitmaps and free them. Needs no BQL:
 * the snapshots are copies, and the view is the syncvm's. A walk over all
 * of a large guest's pages (the first round after boot) takes a while.
 */
static void plover_merge_dirty(PloverState *s, DirtyBitmapSnapshot **snaps)
{
    size_t page = qemu_target_page_size();

    for (guint i = 0; i < s->syncvm.ram_blocks->len; i++) {
        RAMBlock *rb = g_ptr_array_index(s->syncvm.ram_blocks, i);
        PlvMemRegion *r = plv_memview_region(s->syncvm.mv, i);
        DirtyBitmapSnapshot *snap = snaps[i];

        /* Word by word: most of RAM is clean at a syncvm. */
        for (hwaddr a = memory_region_snapshot_next_dirty(rb->mr, snap, 0,
                                                          rb->used_length);
             a < rb->used_length;
             a = memory_region_snapshot_next_dirty(rb->mr, snap, a + page,
                                                   rb->used_length)) {
            plv_bitmap_set(&r->dirty, a / page);
        }
        g_free(snap);
    }
    g_free(snaps);
}

/* Both, at a cut (BQL held, VM stopped). */
static void plover_collect_dirty(PloverState *s)
{
    plover_merge_dirty(s, plover_snapshot_dirty(s));
}

/* A full syncvm: every page is in the union. */
static void plover_mark_all_dirty(PlvMemView *mv)
{
    for (unsigned i = 0; i < plv_memview_n_regions(mv); i++) {
        const PlvMemRegion *r = plv_memview_region_const(mv, i);

        plv_memview_mark_dirty(mv, i, 0, r->n_pages * (uint64_t)r->page_size);
    }
}

/* The device state blob as of now: BQL held, VM stopped. */
static int plover_save_device_state(PloverState *s, GByteArray *out,
                                    GError **err)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(64 * 1024);
    QEMUFile *f = qemu_file_new_output(QIO_CHANNEL(bioc));
    g_autoptr(GByteArray) inputs = g_byte_array_new();
    bool light;
    int ret;

    plover_net_save_inputs(s, inputs);
    plv_append_u32(out, PLOVER_BLOB_MAGIC);
    plv_append_u32(out, inputs->len);
    g_byte_array_append(out, inputs->data, inputs->len);

    /*
     * A leader's light cut stopped the vCPUs but left the run state
     * running (plover_cut_stop); devices that save their requests insist
     * on a stopped guest (scsi_device_for_each_req_sync). It is stopped,
     * and its drives drained: say so for the save, without the run-state
     * handlers a vm_stop would run. The blob then says "paused", as a
     * stopped cut's does.
     */
    light = runstate_is_running();
    if (light) {
        runstate_set(RUN_STATE_PAUSED);
    }
    /* The "globalstate" section carries the run state as migration stores
     * it; without this it would be empty and refused by the loader. */
    global_state_store();
    ret = qemu_save_device_state(f);
    if (light) {
        runstate_set(RUN_STATE_RUNNING);
    }
    qemu_fflush(f);
    if (ret == 0) {
        g_byte_array_append(out, bioc->data, bioc->usage);
    }
    qemu_fclose(f);
    object_unref(OBJECT(bioc));
    if (ret) {
        g_set_error(err, PLOVER_SYNC_ERROR, 1,
                    "saving the device state failed (%d)", ret);
        return -1;
    }
    return 0;
}

/* The engine's get_device_state (syncvm thread): the cut's, if taken. */
static int plover_get_device_state(void *opaque, GByteArray *out, GError **err)
{
    PloverState *s = opaque;
    int ret;

    /* Called between the pages and the device state: a replica that dies
     * here dies in the middle of a transfer (x-plover-inject-fault). */
    if (s->fault == PLOVER_FAULT_EXIT_DURING_SYNCVM_TRANSFER &&
        s->exec.role == PLV_ROLE_LEADER) {
        _exit(PLOVER_FAULT_EXIT_STATUS);
    }
    if (!s->syncvm.job->devstate) {
        /* A secondary that turned out the source: its VM is stopped. */
        GByteArray *blob = g_byte_array_new();

        if (!plover_lock_devices(s, err)) {
            g_byte_array_unref(blob);
            return -1;
        }
        ret = plover_save_device_state(s, blob, err);
        plover_unlock_devices(s, "device state save");
        if (ret < 0) {
            g_byte_array_unref(blob);
            return ret;
        }
        s->syncvm.job->devstate = blob;    /* the base, if the syncvm succeeds */
    }
    g_byte_array_append(out, s->syncvm.job->devstate->data, s->syncvm.job->devstate->len);
    s->syncvm.job->devstate_sent = true;
    return 0;
}

/*
 * The engine calls this after every page arrived and validated, before it
 * writes any. Loading devices may read guest RAM (virtio checks its rings),
 * so the blob is only staged here and loaded once the pages are in place.
 */
static int plover_stage_device_state(void *opaque, const uint8_t *data,
                                     size_t len, GError **err)
{
    PloverState *s = opaque;

    if (len < 8 || plv_get_u32(data) != PLOVER_BLOB_MAGIC ||
        plv_get_u32(data + 4) > len - 8) {
        g_set_error(err, PLOVER_SYNC_ERROR, 2,
                    "device state blob: bad header");
        return -1;
    }
    g_byte_array_set_size(s->syncvm.staged_devstate, 0);
    g_byte_array_append(s->syncvm.staged_devstate, data, len);
    return 0;
}

/*
 * Translated code of the pages the syncvm wrote is stale. Per page while
 * that is cheaper than dropping every translation (a full syncvm). Under
 * KVM there is none.
 */
#define PLOVER_TB_FLUSH_PAGES 4096

static void plover_drop_translations(PloverState *s, const PlvPageRef *written,
                                     uint32_t n)
{
    size_t page = qemu_target_page_size();

    if (!tcg_enabled() || n == 0) {
        return;
    }
    if (n > PLOVER_TB_FLUSH_PAGES) {
        tb_flush(first_cpu);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        RAMBlock *rb;
        ram_addr_t start;

        if (written[i].region >= s->syncvm.ram_blocks->len) {
            continue;           /* a drive's block: no code there */
        }
        rb = g_ptr_array_index(s->syncvm.ram_blocks, written[i].region);
        start = rb->offset + (ram_addr_t)written[i].page * page;
        tb_invalidate_phys_range(start, start + page - 1);
    }
}

static bool plover_load_staged(PloverState *s, Error **errp)
{
    const uint8_t *p = s->syncvm.staged_devstate->data;
    size_t len = s->syncvm.staged_devstate->len;
    uint32_t ilen = plv_get_u32(p + 4);
    QIOChannelBuffer *bioc;
    QEMUFile *f;
    int ret;

    if (!plover_net_load_inputs(s, p + 8, ilen)) {
        error_setg(errp, "plover: syncvm: malformed input queue in the device state");
        return false;
    }
    p += 8 + ilen;
    len -= 8 + ilen;
    /*
     * Outside COLO, qemu_save_device_state() starts with the file magic and
     * version, which qemu_load_device_state() does not read: check them here.
     */
    if (len < 8 || ldl_be_p(p) != QEMU_VM_FILE_MAGIC ||
        ldl_be_p(p + 4) != QEMU_VM_FILE_VERSION) {
        error_setg(errp, "plover: syncvm: device state without the QEMU file header");
        return false;
    }
    p += 8;
    len -= 8;
    bioc = qio_channel_buffer_new(len);
    memcpy(bioc->data, p, len);
    bioc->usage = len;
    f = qemu_file_new_input(QIO_CHANNEL(bioc));
    /* The pages written had their translations dropped already
     * (plover_drop_translations): keep the others. */
    cpu_post_load_keeps_tbs = true;
    /* The same VM on the same segment: the new leader announces itself
     * after a failover (plover-replica.c), nothing else moves. */
    announce_on_load_suppressed = true;
    ret = qemu_load_device_state(f);
    announce_on_load_suppressed = false;
    cpu_post_load_keeps_tbs = false;
    qemu_fclose(f);
    object_unref(OBJECT(bioc));
    if (ret < 0) {
        error_setg(errp, "plover: syncvm: loading the device state failed (%d)", ret);
        return false;
    }
    return true;
}

/*
 * The engine calls this once the divergent pages are in guest RAM (and
 * the divergent disk blocks in the drives' shadows), before it ACKs: the
 * leader releases output on the ACK, so disks and devices must match the
 * memory by then. A failure here leaves RAM and devices from
 * two states; the caller stops this VM until a full syncvm.
 */
static int plover_commit_device_state(void *opaque, const PlvPageRef *written,
                                      uint32_t n_written, GError **err)
{
    PloverState *s = opaque;
    Error *local = NULL;
    int64_t t0 = g_get_monotonic_time();
    bool ok;

    if (s->fault == PLOVER_FAULT_FAIL_DEVICE_STATE_LOAD) {
        s->fault = PLOVER_FAULT_NONE;
        g_set_error(err, PLOVER_SYNC_ERROR, 3,
                    "loading the device state failed (injected fault)");
        return -1;
    }
    /* The syncvm thread: QEMU's devices change only under the BQL. */
    if (!plover_lock_devices(s, err)) {
        return -1;
    }
    plover_drop_translations(s, written, n_written);
    if (plover_disk_write(s, written, n_written, err) < 0) {
        plover_unlock_devices(s, "commit");
        return -1;
    }
    ok = plover_load_staged(s, &local);
    plover_unlock_devices(s, "commit");
    s->syncvm.stats.last_commit_us = g_get_monotonic_time() - t0;
    if (!ok) {
        g_set_error(err, PLOVER_SYNC_ERROR, 3, "%s", error_get_pretty(local));
        error_free(local);
        return -1;
    }
    return 0;
}

static void plover_sync_inspect(void *opaque, const PlvPageRef *ref,
                                const uint8_t *mine, const uint8_t *leader,
                                uint32_t page_size)
{
    PloverState *s = opaque;

    plover_divergence_add(s->syncvm.divergence, ref, mine, leader, page_size);
}

static void plover_sync_on_error(void *opaque, uint32_t peer,
                                 PlvSvmErrorCode code, const char *reason)
{
    trace_plover_syncvm_error(peer, code, reason);
}

/*
 * The link syncvms use from now on (NULL: none). A job abandoned already
 * gets it cancelled: the main loop may have cancelled the one before.
 */
static void plover_sync_set_link(PloverState *s, PlvBulkLink *link,
                                 uint32_t peer)
{
    PlvBulkLink *old;

    qemu_mutex_lock(&s->syncvm.bulk_lock);
    old = s->syncvm.bulk;
    s->syncvm.bulk = link;
    if (link && s->syncvm.job && s->syncvm.job->abandoned) {
        plv_bulk_cancel(link);
    }
    qemu_mutex_unlock(&s->syncvm.bulk_lock);
    s->syncvm.bulk_peer = link ? peer : PLV_NODE_NONE;
    plv_bulk_close(old);
}

void plover_sync_drop_link(PloverState *s)
{
    plover_sync_set_link(s, NULL, PLV_NODE_NONE);
    s->syncvm.sync_hello_kept = false;
}

/* A link the listener authenticated replaces the one in use. */
static void plover_sync_take_link(PloverState *s, PlvBulkLink *fresh)
{
    s->syncvm.sync_hello_kept = false;
    plover_sync_set_link(s, fresh, s->exec.leader);
}

/*
 * Main loop: the job in flight is moot (plv_exec_sync_moot). Its link
 * fails now, and so the job, as a timeout would have failed it later:
 * what follows a failed syncvm is the executor's to decide, wherever it
 * failed.
 */
void plover_sync_abandon(PloverState *s, const char *why)
{
    PloverSyncJob *j = s->syncvm.job;

    if (!j || j->abandoned) {
        return;
    }
    qemu_mutex_lock(&s->syncvm.bulk_lock);
    j->abandoned = why;
    if (s->syncvm.bulk) {
        plv_bulk_cancel(s->syncvm.bulk);
    }
    qemu_mutex_unlock(&s->syncvm.bulk_lock);
    trace_plover_syncvm_abandon(j->epoch, why);
}

/*
 * The leader dials the secondary and keeps the link while it works. The
 * secondary never waits on a socket: the listener accepts and
 * authenticates in the background, and a newer link from the leader
 * (which redials when it gave the old one up) replaces the old.
 */
static bool plover_sync_link(PloverState *s, bool leader, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    int timeout = s->cfg.syncvm_timeout_ms;

    if (leader) {
        PlvBulkLink *link;

        if (s->syncvm.bulk && s->syncvm.bulk_peer == s->exec.secondary) {
            return true;
        }
        plover_sync_drop_link(s);
        link = plover_bulk_connect(&s->cfg, s->exec.secondary, s->secret,
                                   s->secret_len, s->tls, timeout, &gerr);
        if (!link) {
            error_setg(errp, "plover: syncvm link to replica %u: %s",
                       s->exec.secondary, gerr->message);
            return false;
        }
        plover_sync_set_link(s, link, s->exec.secondary);
        return true;
    }
    /* The secondary waits for the leader's link in plover_sync_wait_hello,
     * within the one deadline of the agreement. */
    if (s->syncvm.bulk && s->syncvm.bulk_peer != s->exec.leader) {
        plover_sync_drop_link(s);       /* a former leader's */
    }
    return true;
}

/* The bytes of one run, or of a job's pre-copy rounds, into the sums. */
static void plover_account_bytes(PloverSyncStats *a, const PlvSyncvmStats *st)
{
    a->sum_bytes += st->bytes_sent;
    a->sum_received += st->bytes_received;
    a->sum_page_raw += st->page_raw_bytes;
    for (unsigned k = 0; k < PLV_SVM_BYTES_KINDS; k++) {
        a->sum_by_kind[k] += st->sent_by[k] + st->received_by[k];
    }
}

static void plover_account(PloverState *s, const PlvSyncvmStats *st)
{
    PloverSyncStats *a = &s->syncvm.stats;

    a->count++;
    a->last = *st;
    a->sum_compute_us += st->t_compute_us;
    a->sum_compare_us += st->t_compare_us;
    a->sum_transfer_us += st->t_transfer_us;
    a->sum_apply_us += st->t_apply_us;
    a->sum_total_us += st->t_total_us;
    a->sum_dirty += st->dirty_union;
    a->sum_same += st->same_pages;
    a->sum_divergent += st->divergent_pages;
    a->sum_delta_pages += st->delta_pages;
    plover_account_bytes(a, st);
    plv_latency_add(&a->bytes, st->bytes_sent);
    plv_latency_add(&a->exchange, st->bytes_sent + st->bytes_received);
}

/* What the pre-copy rounds of job @j sent and received, done or not. */
static void plover_account_rounds(PloverState *s, const PloverSyncJob *j)
{
    PloverSyncStats *a = &s->syncvm.stats;

    plover_account_bytes(a, &j->rounds_st);
    if (j->source) {
        a->precopy_rounds += j->rounds;
        if (j->ok && j->rounds) {
            a->precopy_final_pages = j->st.dirty_union;
        }
    }
}

/*
 * Before the engine runs, the two ends agree on its epoch and direction
 * (plover/syncvm-agree.h). The VM flows from the replica that holds it:
 * normally the leader pushes to the secondary, but a leader elected
 * without a copy (a witness, when the secondary could not win) pulls it
 * from the secondary, whose state is the replicated one. The copy is a
 * full one unless both ends hold the VM as of the same completed syncvm:
 * a replica that just joined the pair, or one whose last syncvm was with
 * another peer, has pages that its dirty log does not describe relative
 * to this peer. After a leadership handoff the two ends stay at the same
 * syncvm, so the new pair needs no full copy.
 */
/* The secondary waits for the HELLO in slices, to notice a redial. */
#define PLOVER_SYNC_WAIT_SLICE_MS 20

/* How an agreement ended: a skew between the two ends is not a fault. */
typedef enum PloverAgree {
    PLOVER_AGREE_OK,
    PLOVER_AGREE_SKEW,        /* the other end is at another epoch */
    PLOVER_AGREE_FAILED,
    PLOVER_AGREE_BOOT,        /* no VM at either end, never protected:
                               * the leader boots it (plv_sync_fresh_boot) */
} PloverAgree;

/* Neither end holds the VM: the leader boots it again if it was never
 * protected, else the pair can do nothing (the VM is lost). */
static PloverAgree plover_sync_no_vm(const PlvSyncHello *hello,
                                     const PlvSyncReply *reply, Error **errp)
{
    if (plv_sync_fresh_boot(hello, reply)) {
        error_setg(errp, "plover: syncvm: neither leader nor secondary holds "
                   "the VM, which was never protected: the leader boots it");
        return PLOVER_AGREE_BOOT;
    }
    error_setg(errp, "plover: syncvm: neither leader nor secondary holds the VM");
    return PLOVER_AGREE_FAILED;
}

/* One agreement message on the bulk link. */
static bool plover_sync_send(PloverState *s, uint16_t type, uint8_t *msg,
                             size_t len, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    struct iovec iov = { .iov_base = msg, .iov_len = len };

    if (plv_bulk_send(s->syncvm.bulk, type, &iov, 1, &gerr) < 0) {
        error_setg(errp, "plover: syncvm link: %s", gerr->message);
        return false;
    }
    return true;
}

static PloverAgree plover_sync_agree_leader(PloverState *s, uint64_t epoch,
                                            bool *push, bool *full, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GByteArray) in = g_byte_array_new();
    PlvSyncHello hello = s->syncvm.job->hello;
    PlvSyncReply reply;
    uint8_t msg[PLV_SYNC_HELLO_LEN];
    uint64_t skip;
    uint16_t type;

    plv_sync_hello_encode(&hello, msg);
    if (!plover_sync_send(s, PLV_SYNC_MSG_HELLO, msg, sizeof(msg), errp)) {
        return PLOVER_AGREE_FAILED;
    }
    if (plv_bulk_recv(s->syncvm.bulk, &type, in, s->cfg.syncvm_timeout_ms, &gerr) < 0) {
        error_setg(errp, "plover: syncvm link: %s", gerr->message);
        return PLOVER_AGREE_FAILED;
    }
    if (type == PLV_SYNC_MSG_SKIP &&
        plv_sync_skip_decode(in->data, in->len, &skip) &&
        plv_sync_skip_valid(epoch, skip)) {
        error_setg(errp, "plover: syncvm %" PRIu64 ": the secondary is at "
                   "syncvm %" PRIu64 " already", epoch, skip);
        return PLOVER_AGREE_SKEW;
    }
    if (type != PLV_SYNC_MSG_REPLY ||
        !plv_sync_reply_decode(in->data, in->len, &reply)) {
        error_setg(errp, "plover: syncvm: bad reply to the direction message");
        return PLOVER_AGREE_FAILED;
    }
    s->syncvm.job->answered = true;
    s->syncvm.job->peer_has_vm = reply.has_vm;
    if (!plv_sync_direction(&hello, &reply, push, full)) {
        return plover_sync_no_vm(&hello, &reply, errp);
    }
    return PLOVER_AGREE_OK;
}

/* Tell a leader still in an entry this replica has left to give it up. */
static bool plover_sync_send_skip(PloverState *s, uint64_t epoch, Error **errp)
{
    uint8_t skip[PLV_SYNC_SKIP_LEN];

    plv_sync_skip_encode(epoch, skip);
    return plover_sync_send(s, PLV_SYNC_MSG_SKIP, skip, sizeof(skip), errp);
}

/*
 * The secondary's wait for the leader's HELLO of @epoch, or the one it
 * kept from an earlier wait, within one deadline. The link in use may be
 * dead (the leader gave it up and dials again; or an acceptor kept a
 * link its dialer has closed since): a broken link is dropped and the
 * wait goes on for the leader's next one. A HELLO for an entry this
 * replica left is answered SKIP; one for an entry it has yet to reach is
 * kept for then. Never blocks longer than syncvm-timeout-ms in all.
 */
static PloverAgree plover_sync_wait_hello(PloverState *s, uint64_t epoch,
                                          PlvSyncHello *hello, Error **errp)
{
    int64_t deadline = g_get_monotonic_time() +
                       (int64_t)s->cfg.syncvm_timeout_ms * 1000;
    g_autoptr(GByteArray) in = g_byte_array_new();
    g_autofree char *broken = NULL;

    if (s->syncvm.sync_hello_kept &&
        plv_sync_on_hello(epoch, s->syncvm.sync_hello.epoch) == PLV_SYNC_HELLO_SKIP) {
        /* Kept for an entry this replica never executed (a snapshot
         * skipped it): the leader may still wait on it. */
        s->syncvm.sync_hello_kept = false;
        if (!plover_sync_send_skip(s, epoch, errp)) {
            return PLOVER_AGREE_FAILED;
        }
    }
    while (!s->syncvm.sync_hello_kept) {
        g_autoptr(GError) gerr = NULL;
        int left = (deadline - g_get_monotonic_time()) / 1000;
        uint16_t type;
        PlvBulkLink *fresh;

        if (left <= 0) {
            /* A late leader, not a broken link: keep what works. */
            error_setg(errp, "plover: syncvm %" PRIu64 ": no word from the "
                       "leader within %u ms%s%s", epoch, s->cfg.syncvm_timeout_ms,
                       broken ? "; " : "", broken ? broken : "");
            return PLOVER_AGREE_SKEW;
        }
        /* The leader gave the old link up and dialed again? */
        fresh = plover_bulk_take(s->syncvm.bulk_listener, s->exec.leader,
                                 s->syncvm.bulk ? 0 : MIN(left, PLOVER_SYNC_WAIT_SLICE_MS));
        if (fresh) {
            plover_sync_take_link(s, fresh);
        }
        if (!s->syncvm.bulk) {
            continue;
        }
        if (plv_bulk_recv(s->syncvm.bulk, &type, in, MIN(left, PLOVER_SYNC_WAIT_SLICE_MS),
                             &gerr) < 0) {
            if (!plv_link_error_is_timeout(gerr)) {
                g_free(broken);
                broken = g_strdup(gerr->message);
                plover_sync_drop_link(s);
            }
            continue;
        }
        if (type != PLV_SYNC_MSG_HELLO ||
            !plv_sync_hello_decode(in->data, in->len, &s->syncvm.sync_hello)) {
            error_setg(errp, "plover: syncvm: bad direction message");
            return PLOVER_AGREE_FAILED;
        }
        if (plv_sync_on_hello(epoch, s->syncvm.sync_hello.epoch) != PLV_SYNC_HELLO_SKIP) {
            s->syncvm.sync_hello_kept = true;
        } else if (!plover_sync_send_skip(s, epoch, errp)) {
            return PLOVER_AGREE_FAILED;
        }
    }
    if (plv_sync_on_hello(epoch, s->syncvm.sync_hello.epoch) == PLV_SYNC_HELLO_LATER) {
        error_setg(errp, "plover: syncvm %" PRIu64 ": the leader is at "
                   "syncvm %" PRIu64 " already", epoch, s->syncvm.sync_hello.epoch);
        return PLOVER_AGREE_SKEW;
    }
    s->syncvm.sync_hello_kept = false;
    *hello = s->syncvm.sync_hello;
    return PLOVER_AGREE_OK;
}

static PloverAgree plover_sync_agree_secondary(PloverState *s, uint64_t epoch,
                                               bool *push, bool *full,
                                               Error **errp)
{
    PlvSyncReply reply = {
        .has_vm = s->syncvm.job->hello.has_vm,
        .last = s->syncvm.job->hello.last,
        .fresh = s->syncvm.job->hello.fresh,
    };
    PlvSyncHello hello;
    uint8_t msg[PLV_SYNC_REPLY_LEN];
    PloverAgree r;

    r = plover_sync_wait_hello(s, epoch, &hello, errp);
    if (r != PLOVER_AGREE_OK) {
        return r;
    }
    if (s->fault == PLOVER_FAULT_FAIL_SYNCVM) {
        /* Hang up on the leader, as a secondary whose link breaks would. */
        error_setg(errp, "plover: syncvm %" PRIu64 ": refused (injected fault)",
                   epoch);
        return PLOVER_AGREE_FAILED;
    }
    plv_sync_reply_encode(&reply, msg);
    if (!plover_sync_send(s, PLV_SYNC_MSG_REPLY, msg, sizeof(msg), errp)) {
        return PLOVER_AGREE_FAILED;
    }
    if (!plv_sync_direction(&hello, &reply, push, full)) {
        return plover_sync_no_vm(&hello, &reply, errp);
    }
    return PLOVER_AGREE_OK;
}

/*
 * A syncvm that failed: counted here. What it means for the pair (n_err
 * against the secondary, a VM of two states after a failed commit) is
 * the executor's (plv_exec_sync_done). Main loop, at the job's end.
 */
static void plover_sync_failed(PloverState *s, PloverSyncJob *j)
{
    s->syncvm.stats.failures++;
    s->syncvm.stats.skews += j->skew;
    s->syncvm.stats.commit_failures += j->commit_failed;
    if (j->abandoned) {
        s->syncvm.stats.abandoned++;
        if (j->err) {
            error_prepend(&j->err, "%s: ", j->abandoned);
        }
    }
}

static void plover_sync_resume_bh(void *opaque);

/*
 * The channel of a full syncvm this replica is the source of: its sends
 * counted for query-plover's progress, and paced to reprotect-mbps (the
 * syncvm thread sleeps before a send that would go past the cap).
 */
typedef struct PloverPacedChannel {
    PlvSyncvmChannel inner;
    PloverState *s;
    uint64_t bytes_per_s;       /* 0: no cap */
} PloverPacedChannel;

static int plover_paced_send(void *opaque, uint16_t type,
                             const struct iovec *iov, int iovcnt, GError **err)
{
    PloverPacedChannel *p = opaque;
    PloverSyncvm *sv = &p->s->syncvm;
    uint64_t sent = qatomic_read(&sv->full_sent) + iov_size(iov, iovcnt);

    if (p->bytes_per_s) {
        int64_t due = sv->full_start_us +
                      (int64_t)(sent * 1000000.0 / p->bytes_per_s);
        int64_t now = g_get_monotonic_time();

        if (due > now) {
            g_usleep(due - now);
        }
    }
    qatomic_set(&sv->full_sent, sent);
    return p->inner.send(p->inner.opaque, type, iov, iovcnt, err);
}

static int plover_paced_recv(void *opaque, uint16_t *type, GByteArray *payload,
                             int timeout_ms, GError **err)
{
    PloverPacedChannel *p = opaque;

    return p->inner.recv(p->inner.opaque, type, payload, timeout_ms, err);
}

/*
 * The engine's snapshot_union (syncvm thread, both ends): the union is
 * known. A leader that runs on copies its RAM pages from the snapshot;
 * either end reads its disk blocks into the drives' shadows.
 */
static int plover_sync_union(void *opaque, const PlvPageRef *refs,
                             uint32_t n, GError **err)
{
    PloverState *s = opaque;
    PloverSyncJob *j = s->syncvm.job;
    int ret = 0;

    if (j->snapshot) {
        ret = plover_snapshot_union(s->syncvm.snap, refs, n, err);
        /* The run reads only the shadow from now on. */
        plover_snapshot_disarm(s->syncvm.snap);
    }
    if (ret == 0) {
        ret = plover_disk_load_union(s, refs, n, err);
    }
    if (j->snapshot && !j->cow) {
        /* KVM: the VM waited for the union to be copied; it runs now. */
        aio_bh_schedule_oneshot(qemu_get_aio_context(), plover_sync_resume_bh, s);
    }
    return ret;
}

/*
 * Re-protection by pre-copy rounds (docs/syncvm.md, "Re-protection").
 * A full copy to a new secondary first goes while the leader's VM runs
 * on: round 1 compares and sends all of RAM and the drives; each later
 * round what the guest wrote during the one before (the dirty log and
 * the drives' bitmaps are collected as a round begins, so every write
 * after that is the next round's). The rounds stop once what is left is
 * small, stops shrinking, or after reprotect-rounds; then the cut, and
 * one ordinary run over what the guest wrote since the last round makes
 * the copy exact. The VM runs on from that cut over its snapshot, as in
 * any syncvm with a paired secondary: the pause is the cut's.
 */
/* What is left to send, in pages and blocks, that ends the rounds. */
#define PLOVER_PRECOPY_DONE_PAGES 2048

static void plover_sync_deferred_cut_bh(void *opaque);

/* The cut of a pre-copy job, taken on the main loop (syncvm thread). */
static bool plover_precopy_cut(PloverState *s, PloverSyncJob *j, Error **errp)
{
    if (j->t_stop_us) {
        return true;
    }
    aio_bh_schedule_oneshot(qemu_get_aio_context(), plover_sync_deferred_cut_bh, s);
    qemu_sem_wait(&s->syncvm.cut_done);
    if (!j->t_stop_us) {
        error_setg(errp, "plover: syncvm %" PRIu64 ": QEMU is exiting", j->epoch);
        return false;
    }
    return true;
}

/* A round begins (syncvm thread): what the guest wrote since the last one
 * into the view, RAM and drives. */
static bool plover_precopy_collect(PloverState *s, uint32_t round,
                                   GError **err)
{
    int64_t asked = g_get_monotonic_time(), waited, merge;
    DirtyBitmapSnapshot **snaps;

    if (!plover_lock_devices(s, err)) {
        return false;
    }
    waited = s->syncvm.bql_since_us - asked;
    snaps = plover_snapshot_dirty(s);
    plover_disk_cut(s, s->syncvm.mv, false);
    plover_unlock_devices(s, "dirty bits");     /* traces the hold */
    merge = g_get_monotonic_time();
    plover_merge_dirty(s, snaps);
    trace_plover_syncvm_precopy_collect(round, waited, g_get_monotonic_time() - merge);
    return true;
}

/* A round's bytes into the job's, for plover_account_rounds. */
static void plover_precopy_sum(PlvSyncvmStats *sum, const PlvSyncvmStats *st)
{
    sum->bytes_sent += st->bytes_sent;
    sum->bytes_received += st->bytes_received;
    sum->page_raw_bytes += st->page_raw_bytes;
    for (unsigned k = 0; k < PLV_SVM_BYTES_KINDS; k++) {
        sum->sent_by[k] += st->sent_by[k];
        sum->received_by[k] += st->received_by[k];
    }
}

/* A pre-copy round's engine config: no device state, either way. */
static void plover_precopy_config(PlvSyncvmConfig *cfg, bool source)
{
    cfg->live_source = source;
    cfg->get_device_state = NULL;
    cfg->apply_device_state = NULL;
    cfg->devstate_base = NULL;
    cfg->devstate_base_len = 0;
    cfg->page_deltas = false;
    cfg->compress = false;
}

/* Target: a round's pages are in RAM; its disk blocks go to the images. */
static int plover_precopy_commit(void *opaque, const PlvPageRef *written,
                                 uint32_t n_written, GError **err)
{
    PloverState *s = opaque;

    if (!plover_lock_devices(s, err)) {
        return -1;
    }
    plover_drop_translations(s, written, n_written);
    plover_unlock_devices(s, "pre-copy commit");
    /* A whole drive, in the first round: the BQL for one run at a time. */
    return plover_disk_write(s, written, n_written, err);
}

/* Source: the rounds, then ROUND final. The number of rounds, or -1. */
static int plover_precopy_source(PloverState *s, PloverSyncJob *j,
                                 const PlvSyncvmConfig *base,
                                 PlvSyncvmChannel *ch, Error **errp)
{
    PlvMemView *mv = s->syncvm.mv;
    uint64_t last = UINT64_MAX;
    uint32_t round = 0;
    PlvSyncRound rd;
    uint8_t msg[PLV_SYNC_ROUND_LEN];

    while (j->precopy && round < s->cfg.reprotect_rounds) {
        g_autoptr(GError) gerr = NULL;
        PlvSyncvmConfig cfg = *base;
        PlvSyncvmStats st;
        uint64_t left;
        int ret;

        if (!plover_precopy_collect(s, round + 1, &gerr)) {
            error_setg(errp, "plover: syncvm %" PRIu64 ": %s", j->epoch,
                       gerr->message);
            return -1;
        }
        left = plv_memview_dirty_count(mv);
        if (round && (left <= PLOVER_PRECOPY_DONE_PAGES || left * 4 > last * 3)) {
            break;              /* small enough, or no longer converging */
        }
        if (!round) {
            plover_mark_all_dirty(mv);
        }
        rd = (PlvSyncRound){ .round = ++round };
        plv_sync_round_encode(&rd, msg);
        if (!plover_sync_send(s, PLV_SYNC_MSG_ROUND, msg, sizeof(msg), errp)) {
            return -1;
        }
        qatomic_set(&s->syncvm.full_round, round);
        plover_precopy_config(&cfg, true);
        ret = plv_syncvm_leader_run(&cfg, ch, mv, &st, &gerr);
        plover_precopy_sum(&j->rounds_st, &st);
        if (ret < 0) {
            error_setg(errp, "plover: syncvm %" PRIu64 ", pre-copy round %u: %s",
                       j->epoch, round, gerr->message);
            return -1;
        }
        plv_memview_clear_dirty(mv);
        trace_plover_syncvm_precopy_round(j->epoch, round, st.dirty_union,
                                          st.divergent_pages, st.bytes_sent,
                                          st.t_total_us);
        last = round == 1 ? UINT64_MAX : left;
        j->rounds = round;
    }
    rd = (PlvSyncRound){ .round = round, .final = true };
    plv_sync_round_encode(&rd, msg);
    return plover_sync_send(s, PLV_SYNC_MSG_ROUND, msg, sizeof(msg), errp)
           ? (int)round : -1;
}

/*
 * Target: the source gave the copy up where a round was due, and its NACK
 * says why (a frozen target's link timed out, its leader was deposed).
 */
static void plover_precopy_nacked(PloverSyncJob *j, GByteArray *in,
                                  uint32_t want, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *reason = NULL;
    const uint8_t *body;
    size_t len;
    PlvSvmHdr h;
    uint32_t code;

    if (plv_svm_get_hdr(in->data, in->len, &h, &body, &len, &gerr) < 0 ||
        plv_svm_decode_nack(body, len, &code, &reason, &gerr) < 0) {
        error_setg(errp, "plover: syncvm %" PRIu64 ": bad NACK where round %u "
                   "was due: %s", j->epoch, want, gerr->message);
        return;
    }
    error_setg(errp, "plover: syncvm %" PRIu64 ": the source gave the copy up "
               "before round %u: %s", j->epoch, want, reason);
}

/* Target: the source's rounds, up to its ROUND final. Their number, or -1. */
static int plover_precopy_target(PloverState *s, PloverSyncJob *j,
                                 const PlvSyncvmConfig *base,
                                 PlvSyncvmChannel *ch, Error **errp)
{
    g_autoptr(GByteArray) in = g_byte_array_new();

    for (uint32_t want = 1;; want++) {
        g_autoptr(GError) gerr = NULL;
        PlvSyncvmConfig cfg = *base;
        PlvSyncvmStats st;
        PlvSyncRound rd;
        uint16_t type;
        int ret;

        if (plv_bulk_recv(s->syncvm.bulk, &type, in, base->timeout_ms, &gerr) < 0) {
            error_setg(errp, "plover: syncvm %" PRIu64 ": waiting for round %u: %s",
                       j->epoch, want, gerr->message);
            return -1;
        }
        if (type == PLV_SVM_MSG_NACK) {
            plover_precopy_nacked(j, in, want, errp);
            return -1;
        }
        if (type != PLV_SYNC_MSG_ROUND ||
            !plv_sync_round_decode(in->data, in->len, want, &rd)) {
            error_setg(errp, "plover: syncvm %" PRIu64 ": bad round message "
                       "(type 0x%x, %u bytes) where round %u was due",
                       j->epoch, type, in->len, want);
            return -1;
        }
        if (rd.final) {
            return rd.round;
        }
        plover_precopy_config(&cfg, false);
        cfg.commit = plover_precopy_commit;
        ret = plv_syncvm_secondary_run(&cfg, ch, s->syncvm.mv, &st, &gerr);
        plover_precopy_sum(&j->rounds_st, &st);
        if (ret < 0) {
            j->commit_failed = g_error_matches(gerr, PLV_SVM_ERROR,
                                               PLV_SVM_ERROR_COMMIT);
            error_setg(errp, "plover: syncvm %" PRIu64 ", pre-copy round %u: %s",
                       j->epoch, want, gerr->message);
            return -1;
        }
        plv_memview_clear_dirty(s->syncvm.mv);
        j->rounds = want;
    }
}

/* The syncvm thread's part: link, agreement, engine. No BQL. */
static void plover_sync_job_run(PloverState *s, PloverSyncJob *j)
{
    bool leader = j->leader;
    bool push, full, source;
    PlvSyncvmChannel ch, raw;
    PloverPacedChannel paced;
    PlvSyncvmConfig cfg = { 0 };
    PlvHashKey key;
    PlvMemView *mv = s->syncvm.mv;
    g_autoptr(GError) gerr = NULL;
    int64_t t0 = g_get_monotonic_time(), t1, t2;
    PloverAgree agreed;
    int ret;

    if (!plover_sync_link(s, leader, &j->err)) {
        plover_sync_drop_link(s);
        return;
    }
    agreed = leader ? plover_sync_agree_leader(s, j->epoch, &push, &full, &j->err)
                    : plover_sync_agree_secondary(s, j->epoch, &push, &full,
                                                  &j->err);
    j->t_agreed_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    if (agreed != PLOVER_AGREE_OK) {
        j->skew = agreed == PLOVER_AGREE_SKEW;
        j->boot = agreed == PLOVER_AGREE_BOOT;
        if (!j->skew && !j->boot) {
            plover_sync_drop_link(s);
        }
        return;
    }
    source = leader == push;
    j->full = full;
    j->source = source;
    if (j->precopy && !(full && source) && !plover_precopy_cut(s, j, &j->err)) {
        return;                 /* no copy to make in rounds: the cut now */
    }
    if (j->snapshot && !source) {
        error_setg(&j->err, "plover: syncvm %" PRIu64 ": the leader's VM ran "
                   "on from the cut but is to be replaced", j->epoch);
        return;
    }
    if (j->snapshot) {
        /* The cut's bitmap, in the view over the shadow. */
        mv = plover_snapshot_view(s->syncvm.snap);
    }
    cfg.snapshot_union = plover_sync_union;
    if (full) {
        /* Unexpected with the VM running on: the snapshot copies it all. */
        plover_mark_all_dirty(s->syncvm.mv);
        if (mv != s->syncvm.mv) {
            plover_mark_all_dirty(mv);
        }
    }
    t1 = g_get_monotonic_time();
    plv_hash_key_derive(&key, plv_bulk_session_key(s->syncvm.bulk), PLV_LINK_KEY_LEN);
    plv_syncvm_channel_init_bulk(&ch, s->syncvm.bulk);
    cfg.vid = s->exec.vid;
    cfg.epoch = j->epoch;
    cfg.key = &key;
    cfg.pool = s->syncvm.pool;
    /*
     * One message may wait for a whole pass over memory and drives at the
     * other end: in a full syncvm each end hashes all of it, the leader
     * while its VM runs on and takes a core. Both ends know it is full.
     */
    cfg.timeout_ms = full ? MAX(s->cfg.syncvm_timeout_ms,
                                PLOVER_FULL_SYNC_TIMEOUT_MS)
                          : s->cfg.syncvm_timeout_ms;
    /* One attempt: a retry is the next syncvm entry, which consensus may
     * by then address to a new secondary. */
    cfg.max_attempts = 1;
    cfg.opaque = s;
    cfg.on_error = plover_sync_on_error;
    cfg.get_device_state = plover_get_device_state;
    cfg.apply_device_state = plover_stage_device_state;
    cfg.commit = plover_commit_device_state;
    if (!full) {
        /*
         * Both VMs ran the same inputs since their last syncvm: divergent
         * pages differ in a few bytes, the device state in a few places.
         * A full copy (a VM that is not the leader's) gains nothing from
         * deltas, and compressing all of RAM would cost the pause more
         * than it saves.
         */
        cfg.page_deltas = true;
        cfg.compress = true;
        if (plover_divergence_enabled(s->syncvm.divergence)) {
            cfg.inspect_divergent = plover_sync_inspect;
        }
    }
    if (s->syncvm.devstate_base) {
        cfg.devstate_base = s->syncvm.devstate_base->data;
        cfg.devstate_base_len = s->syncvm.devstate_base->len;
    }

    raw = ch;
    if (full && source) {
        paced.inner = ch;
        paced.s = s;
        paced.bytes_per_s = (uint64_t)s->cfg.reprotect_mbps * 1000000 / 8;
        ch.opaque = &paced;
        ch.send = plover_paced_send;
        ch.recv = plover_paced_recv;
        qatomic_set(&s->syncvm.full_sent, 0);
        qatomic_set(&s->syncvm.full_round, 0);
        qatomic_set(&s->syncvm.full_start_us, g_get_monotonic_time());
        qatomic_set(&s->syncvm.full_active, true);
    }
    if (full) {
        int rounds = source ? plover_precopy_source(s, j, &cfg, &ch, &j->err)
                            : plover_precopy_target(s, j, &cfg, &ch, &j->err);

        if (rounds < 0 || (j->precopy && !plover_precopy_cut(s, j, &j->err))) {
            qatomic_set(&s->syncvm.full_active, false);
            plover_sync_drop_link(s);
            return;
        }
        if (rounds) {
            /*
             * The last run: what the guest wrote since the last round,
             * sent as in any syncvm (the source's VM runs on from the cut
             * over its snapshot), without the cap.
             */
            cfg.page_deltas = cfg.compress = true;
            ch = raw;
            if (j->snapshot) {
                mv = plover_snapshot_view(s->syncvm.snap);
            }
        }
    }
    g_byte_array_set_size(s->syncvm.staged_devstate, 0);
    s->syncvm.stats.last_commit_us = 0;
    ret = source ? plv_syncvm_leader_run(&cfg, &ch, mv, &j->st, &gerr)
                 : plv_syncvm_secondary_run(&cfg, &ch, mv, &j->st, &gerr);
    qatomic_set(&s->syncvm.full_active, false);
    if (j->snapshot) {
        plover_snapshot_disarm(s->syncvm.snap);    /* if the union was never reached */
    }
    t2 = g_get_monotonic_time();
    j->t_collect_us = t1 - t0;
    j->t_engine_us = t2 - t1;
    if (ret < 0) {
        plover_sync_drop_link(s);
        error_setg(&j->err, "plover: syncvm %" PRIu64 " as %s: %s", j->epoch,
                   source ? "source" : "target", gerr->message);
        j->commit_failed = !source &&
            g_error_matches(gerr, PLV_SVM_ERROR, PLV_SVM_ERROR_COMMIT);
        return;
    }
    trace_plover_syncvm_phases(j->epoch, t1 - t0, t2 - t1 - s->syncvm.stats.last_commit_us,
                               s->syncvm.stats.last_commit_us);
    trace_plover_syncvm_done(j->epoch, j->st.dirty_union, j->st.divergent_pages,
                             j->st.bytes_sent, j->st.t_total_us);
    j->ok = true;
}

/* What both ends hold now: what this end sent, or what it applied. */
static void plover_keep_devstate_base(PloverState *s, PloverSyncJob *j)
{
    if (s->syncvm.devstate_base) {
        g_byte_array_unref(s->syncvm.devstate_base);
        s->syncvm.devstate_base = NULL;
    }
    if (j->source) {
        s->syncvm.devstate_base = j->devstate ? g_byte_array_ref(j->devstate) : NULL;
    } else {
        /* Loaded already: the next job stages into a fresh buffer. */
        s->syncvm.devstate_base = g_steal_pointer(&s->syncvm.staged_devstate);
        s->syncvm.staged_devstate = g_byte_array_new();
    }
}

static void plover_sync_done_bh(void *opaque)
{
    PloverState *s = opaque;
    PloverSyncJob *j = s->syncvm.job;

    if (s->syncvm.exiting) {
        /* QEMU's cleanup polls the main loop after it stopped the VM and
         * tore the devices down: nothing may resume or release now. */
        return;
    }
    s->syncvm.job = NULL;
    /* A run that never reached its union let the guest's disk wait. */
    plover_disk_undrain(s);
    plover_account_rounds(s, j);
    if (j->ok) {
        plv_memview_clear_dirty(s->syncvm.mv);
        s->syncvm.stats.full += j->full;
        s->syncvm.stats.snapshots += j->snapshot;
        plover_keep_devstate_base(s, j);
        plover_account(s, &j->st);
    } else {
        plover_sync_failed(s, j);
    }
    /* The executor decides what follows (plover-replica.c). */
    plover_exec_sync_done(s, j);
    plover_sync_job_free(j);
}

/*
 * The leader's cut when its VM is to run on stops only the vCPUs and the
 * virtual clock, as vm_stop does first, and leaves the run state alone:
 * vm_stop and vm_start would also run every device's run-state handler
 * (virtio tears down and sets up its ioeventfds, a memory transaction
 * each) and send QMP STOP and RESUME events, a hundred times a second.
 * Device writes to RAM meanwhile go through the snapshot's hook.
 */
static void plover_cut_stop(void)
{
    cpu_disable_ticks();
    pause_all_vcpus();
}

/*
 * How long the VM of job @j stayed stopped (the whole syncvm, or up to
 * the light cut's resume), once the executor has acted on its end.
 */
void plover_sync_account_pause(PloverState *s, PloverSyncJob *j)
{
    PloverSyncStats *a = &s->syncvm.stats;
    int64_t now = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    /* A pre-copy that failed before its cut never stopped the VM. */
    int64_t stop = j->t_stop_us ? j->t_stop_us : now;
    int64_t paused = j->t_stop_us ? (j->t_resume_us ? j->t_resume_us : now) - stop
                                  : 0;

    a->last_pause_us = paused;
    a->paused_us += paused;
    plv_latency_add(&a->pause, paused);
    if (j->leader && j->t_agreed_us && !j->skew && !j->precopy) {
        plv_latency_add(&a->lag, j->t_agreed_us - j->t_stop_us);
    }
    if (j->ok && j->leader) {
        /* released what the VM said up to the cut just now */
        plv_latency_add(&a->release, now - stop);
    }
    trace_plover_syncvm_pause(j->epoch, paused, now - stop, j->snapshot);
}

/* A leader alone passed a syncvm entry without stopping. */
void plover_sync_account_alone(PloverState *s)
{
    s->syncvm.stats.last_pause_us = 0;
}

/* The VM of job @j runs again (main loop). */
void plover_sync_resume_vm(PloverState *s, PloverSyncJob *j)
{
    if (j->t_resume_us) {
        return;
    }
    if (!j->snapshot) {
        plover_start_vm(s);
    } else if (runstate_is_running()) {
        /* Still light-stopped (not stopped for good since, by vm_stop). */
        cpu_enable_ticks();
        resume_all_vcpus();
    }
    j->t_resume_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
}

static void plover_sync_resume_bh(void *opaque)
{
    PloverState *s = opaque;
    PloverSyncJob *j = s->syncvm.job;

    if (j && !j->t_resume_us && s->exec.executing && !s->syncvm.exiting) {
        plover_sync_resume_vm(s, j);
        /* The inputs after the cut may reach the running VM now. */
        if (plv_driver_dispatch_held(s->driver)) {
            plv_driver_dispatch_release(s->driver);
        }
    }
}

static void *plover_sync_thread(void *opaque)
{
    PloverState *s = opaque;

    for (;;) {
        qemu_sem_wait(&s->syncvm.sync_go);
        plover_sync_job_run(s, s->syncvm.job);
        aio_bh_schedule_oneshot(qemu_get_aio_context(), plover_sync_done_bh, s);
    }
    return NULL;
}

void plover_sync_job_free(PloverSyncJob *j)
{
    if (j->devstate) {
        g_byte_array_unref(j->devstate);
    }
    g_free(j->digest);
    g_free(j->digest_parts);
    g_free(j->disk_digest);
    error_free(j->err);
    g_free(j);
}

/*
 * The cut of job @j, on the main loop: stop the VM, collect the dirty
 * log, and on the leader take the device state. A leader whose secondary
 * holds the VM as of their last syncvm runs on at once over a
 * copy-on-write snapshot of RAM (under KVM, once the union is copied);
 * otherwise the VM stays stopped to the end of the job.
 */
static void plover_sync_cut(PloverState *s, PloverSyncJob *j)
{
    g_autoptr(GError) gerr = NULL;
    bool has_vm = j->leader && j->hello.has_vm;
    int64_t t1, t2, t3;

    j->t_stop_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    if (j->snapshot) {
        plover_cut_stop();
    } else {
        plover_stop_vm_for_syncvm();
    }
    /*
     * Before RAM's dirty log and the device state: draining (and reading
     * a drive) polls the main AioContext, whose handlers may still write
     * RAM and change devices (a request completing, virtio-net's TX).
     */
    plover_disk_cut(s, s->syncvm.mv, j->snapshot);
    if (has_vm && s->record_digests) {
        j->disk_digest = plover_disk_digest(s, &error_warn);
    }
    t1 = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    plover_collect_dirty(s);
    t2 = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    /* Everything said so far comes from the state synced now. */
    j->held = g_queue_get_length(&s->net.outputs);
    if (has_vm) {
        j->devstate = g_byte_array_new();
        if (plover_save_device_state(s, j->devstate, &gerr) < 0) {
            /* The engine's get_device_state tries again, and reports. */
            g_byte_array_unref(j->devstate);
            j->devstate = NULL;
        }
        if (s->record_digests) {
            j->digest = plover_ram_digest(&j->digest_parts);
        }
    }
    t3 = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    if (j->snapshot && !j->devstate) {
        /* Cannot run on without the cut's devices: stop it for good (the
         * vCPUs have not run since the cut). */
        plover_stop_vm_for_syncvm();
        j->snapshot = false;
    }
    /* TCG writes pass the hook: resume now. KVM's do not: once the union
     * is copied (device writes meanwhile are copied aside). */
    j->cow = j->snapshot && tcg_enabled();
    if (j->snapshot) {
        plover_snapshot_arm(s->syncvm.snap, s->syncvm.mv);
    }
    if (j->cow) {
        plover_sync_resume_vm(s, j);
    }
    trace_plover_syncvm_cut(j->epoch, t1 - j->t_stop_us, t2 - t1, t3 - t2,
                            j->t_resume_us ? j->t_resume_us - t3 : 0);
}

/*
 * The cut of a pre-copy job, which the syncvm thread asks for once the
 * rounds are over (plover_precopy_cut). QEMU exiting: no cut.
 */
static void plover_sync_deferred_cut_bh(void *opaque)
{
    PloverState *s = opaque;
    PloverSyncJob *j = s->syncvm.job;

    if (!s->syncvm.exiting) {
        /*
         * After the rounds the last run is an ordinary delta: the VM
         * runs on over the RAM snapshot as in any syncvm with a paired
         * secondary, and its pause is the cut's.
         */
        j->snapshot = j->rounds && runstate_is_running();
        plover_sync_cut(s, j);
    }
    qemu_sem_post(&s->syncvm.cut_done);
}

/*
 * Syncvm @sync begins (main loop). Its cut comes now, except on a leader
 * that is to copy its running VM to a new secondary: that copy goes in
 * rounds while the VM runs on (plover_precopy_source), and the cut comes
 * after them; the entries after this one wait for it all the same. The
 * syncvm thread does the rest; plover_exec_sync_done follows.
 */
void plover_sync_start(PloverState *s, const PlvExecSync *sync)
{
    PloverSyncJob *j = g_new0(PloverSyncJob, 1);

    assert(!s->syncvm.job);
    j->index = sync->index;
    j->epoch = sync->epoch;
    j->leader = sync->leader;
    j->hello = sync->hello;
    if (!s->syncvm.stats.first_cut_us) {
        s->syncvm.stats.first_cut_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    }
    /* The VM runs on from this cut if the secondary holds the VM as of
     * their last syncvm (no full copy) and no handoff waits for it. */
    j->handoff = sync->handoff;
    j->snapshot = sync->may_run_on && runstate_is_running();
    /* Not paired with this secondary yet: most likely a full copy (the
     * agreement says), which may then go in rounds. */
    j->precopy = sync->leader && sync->hello.has_vm && !sync->may_run_on &&
                 !sync->handoff && s->cfg.reprotect_rounds &&
                 runstate_is_running();
    if (!j->precopy) {
        plover_sync_cut(s, j);
    }
    s->syncvm.job = j;
    qemu_sem_post(&s->syncvm.sync_go);
}

/* A RAM digest names which part of RAM differs, in parts of this size. */
#define PLOVER_DIGEST_PART (32 * 1024 * 1024)

static char *plover_hash_hex(XXH128_hash_t h)
{
    return g_strdup_printf("%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64,
                           (uint64_t)h.low64);
}

/*
 * Digest of guest RAM (every region of the view, in order), for tests that
 * compare replicas: keyless XXH3-128 is fine here, nothing is trusted on it.
 * It is the digest of the digests of each block's parts (of at most 32
 * MiB), which @parts gets as "block@offset=digest,...": where two replicas
 * differ, the parts that differ say where to look.
 */
char *plover_ram_digest(char **parts)
{
    PloverState *s = plover_state();
    XXH3_state_t *st = XXH3_createState();
    g_autoptr(GString) list = g_string_new("");
    XXH128_hash_t h;

    XXH3_128bits_reset(st);
    for (guint i = 0; s->syncvm.ram_blocks && i < s->syncvm.ram_blocks->len; i++) {
        const PlvMemRegion *r = plv_memview_region_const(s->syncvm.mv, i);
        RAMBlock *rb = g_ptr_array_index(s->syncvm.ram_blocks, i);
        const char *id = qemu_ram_get_idstr(rb);
        ram_addr_t len = qemu_ram_get_used_length(rb);

        for (ram_addr_t off = 0; off < len; off += PLOVER_DIGEST_PART) {
            XXH128_hash_t part = XXH3_128bits(r->base + off,
                                              MIN(len - off, PLOVER_DIGEST_PART));
            g_autofree char *hex = plover_hash_hex(part);

            XXH3_128bits_update(st, id, strlen(id) + 1);
            XXH3_128bits_update(st, &off, sizeof(off));
            XXH3_128bits_update(st, &part, sizeof(part));
            g_string_append_printf(list, "%s%s@0x%" PRIx64 "=%s",
                                   list->len ? "," : "", id, (uint64_t)off, hex);
        }
    }
    h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    if (parts) {
        *parts = g_string_free(g_steal_pointer(&list), false);
    }
    return plover_hash_hex(h);
}
