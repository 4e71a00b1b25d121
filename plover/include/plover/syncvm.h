/*
 * syncvm: bring the secondary's VM to the leader's state by sending only
 * the pages that differ (PLOVER §4.4).
 *
 *   leader                                  secondary
 *   BITMAP (its dirty pages)      ---->
 *                                 <----     BITMAP (its dirty pages)
 *   both: union = OR of the bitmaps; hash the union's pages on the pool
 *                                 <----     HASHES (of the union, chunked)
 *   compare: divergent = pages whose fingerprints differ
 *   PAGES (divergent + their fingerprints) -> each page checked, staged
 *   DEVSTATE (opaque blob)        ---->     staged
 *   EOF (counts, digests of the union and the blob)
 *                                 ---->     validate all, write the
 *                                           pages, commit, then
 *                                 <----     ACK
 *   the syncvm is complete only now
 *
 * Every message carries vid, epoch and the leader's attempt number; older
 * vid/epoch ones are dropped and reported as errors, leftovers of a failed
 * attempt are dropped quietly, newer vid/epoch ones abort the run. The
 * engine runs over an abstract message channel so that another bulk
 * transport (RDMA) can carry it; plv_syncvm_channel_init_bulk gives one
 * over a bulk link (plover/bulk-link.h), TCP or RDMA. The caller clears the dirty bitmaps after a successful
 * run. The target's memory must not change during a run (its VM is
 * paused); the source's may, if snapshot_union gives the run the pages
 * as they were at the cut.
 */
#ifndef PLOVER_SYNCVM_H
#define PLOVER_SYNCVM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>

#include "plover/memview.h"
#include "plover/pagehash.h"
#include "plover/syncvm-msg.h"

typedef struct PlvSyncvmChannel {
    void *opaque;
    /* One message; 0 or -1 with err set. */
    int (*send)(void *opaque, uint16_t type, const struct iovec *iov,
                int iovcnt, GError **err);
    /*
     * The next message (payload replaced), waiting at most timeout_ms;
     * 0, or -1 with err set. A timeout must leave the channel usable and
     * be recognisable by is_timeout; any other error ends the run.
     */
    int (*recv)(void *opaque, uint16_t *type, GByteArray *payload,
                int timeout_ms, GError **err);
    bool (*is_timeout)(const GError *err);
    uint32_t peer_id;           /* passed to on_error */
} PlvSyncvmChannel;

typedef struct PlvBulkLink PlvBulkLink;
/* A channel over a bulk link, TCP or RDMA (borrowed, not closed):
 * plv_link_bulk(), or an RDMA link (plover/transport-rdma.h). */
void plv_syncvm_channel_init_bulk(PlvSyncvmChannel *ch, PlvBulkLink *b);

typedef struct PlvSyncvmConfig {
    uint64_t vid;               /* view of this run (consensus layer) */
    uint64_t epoch;             /* the paxos_syncvm(epoch) being executed */
    const PlvHashKey *key;      /* plv_hash_key_derive(link session key) */
    PlvHashPool *pool;          /* NULL: a pool of hash_threads for the run */
    unsigned hash_threads;      /* 0: plv_hash_pool_default_threads() */
    int timeout_ms;             /* longest wait for one message; 0: 5000 */
    unsigned max_attempts;      /* leader retries / secondary restarts; 0: 3 */
    uint64_t max_devstate_len;  /* secondary's cap; 0: 256 MiB */
    /*
     * Baseline mode, no fingerprints: the leader sends every dirty page;
     * a secondary accepts that only if it has this set too (so production
     * runs cannot be talked out of the page checks).
     */
    bool send_all_dirty;
    /*
     * Leader: send pages from a thread of its own while the main thread
     * still hashes and receives fingerprints. Only for a channel on which
     * one thread may send while another receives (PlvLink allows it; the
     * RDMA bulk link does not). Off: the phases run one after the other.
     */
    bool overlap_send;
    /*
     * Leader: send each divergent page as the blocks of it that differ
     * (the secondary's block fingerprints asked for with BLOCKREQ), not
     * whole. Not with send_all_dirty. A secondary takes delta records
     * whatever its own setting: each rebuilt page is still checked
     * against the leader's fingerprint.
     */
    bool page_deltas;
    /*
     * Leader: its memory changes while the run reads it (a pre-copy
     * round of a VM that runs on). Fingerprints then only choose the
     * pages to send: each is copied as it is sent and goes with the
     * fingerprint of that copy, so the target's check still holds; a
     * page written after the caller last collected its dirty log is
     * the next run's to send again. Not with page_deltas.
     */
    bool live_source;
    /* Leader: compress PAGES data and the device state with zstd. */
    bool compress;
    /*
     * The device state this replica holds from its last syncvm (sent, or
     * applied), borrowed for the run. Both ends announce theirs; when
     * they are the same, the leader (with compress) sends the new blob as
     * a zstd delta against it. NULL/0: none.
     */
    const uint8_t *devstate_base;
    size_t devstate_base_len;

    void *opaque;               /* for the callbacks */
    /* Each error (the glue bumps n_err in the consensus layer). */
    void (*on_error)(void *opaque, uint32_t peer, PlvSvmErrorCode code,
                     const char *reason);
    /*
     * Both ends: the union of both dirty sets is known (refs[0..n), in
     * the order the run reads them) and no page of it has been read yet.
     * From now on those pages of mv must hold their content at the cut:
     * a source whose VM ran on after the cut copies them in from its
     * snapshot here, and either end fills the regions that are not in
     * memory (a drive's blocks) from where they are. NULL: mv holds the
     * cut already (the VM is paused).
     */
    int (*snapshot_union)(void *opaque, const PlvPageRef *refs, uint32_t n,
                          GError **err);
    /* Leader: append the device state to out. NULL: empty blob. */
    int (*get_device_state)(void *opaque, GByteArray *out, GError **err);
    /*
     * Secondary: check and stage the device state. Called after every page
     * arrived and validated, before any page is written; if it fails,
     * nothing has been changed (it must not half-apply either), and the
     * leader may retry. NULL: ignored.
     */
    int (*apply_device_state)(void *opaque, const uint8_t *data, size_t len,
                              GError **err);
    /*
     * Secondary: load the staged device state for good. Called once the
     * pages are in mv and before the ACK, so that the leader, which
     * releases output on the ACK, never counts on a secondary whose
     * devices do not match its memory. A failure is fatal
     * (PLV_SVM_ERROR_COMMIT, NACKed, no retry: memory was written and the
     * devices may be half loaded); the VM must not run on until a full
     * syncvm. written[0..n_written) are the pages the run wrote (so
     * that cached translations of them can be dropped). NULL: nothing to
     * commit.
     */
    int (*commit)(void *opaque, const PlvPageRef *written,
                  uint32_t n_written, GError **err);
    /*
     * Secondary, diagnostics: each divergent page just before it is
     * overwritten, with this replica's content and the leader's (NULL for
     * a zero page). Must not fail or block. NULL: none.
     */
    void (*inspect_divergent)(void *opaque, const PlvPageRef *ref,
                              const uint8_t *mine, const uint8_t *leader,
                              uint32_t page_size);
} PlvSyncvmConfig;

typedef struct PlvSyncvmStats {
    uint64_t dirty_local;       /* pages in this replica's dirty bitmap */
    uint64_t dirty_union;       /* pages in the union */
    uint64_t same_pages;        /* union pages with equal fingerprints */
    uint64_t divergent_pages;   /* pages transferred */
    uint64_t zero_pages;        /* of those, sent as zero markers */
    double same_rate;           /* same_pages / dirty_union (1 if empty) */
    uint64_t bytes_sent;        /* message bytes (payloads, no framing) */
    uint64_t bytes_received;
    uint64_t delta_pages;       /* of the divergent, sent as blocks */
    uint64_t page_raw_bytes;    /* page data before compression */
    uint64_t page_bytes;        /* page data in PAGES, as sent */
    uint64_t devstate_bytes;    /* the blob, decoded */
    uint64_t devstate_wire_bytes;   /* ... as sent (delta, compressed) */
    /* Payload bytes by what they carry (PLV_SVM_BYTES_*). */
    uint64_t sent_by[PLV_SVM_BYTES_KINDS];
    uint64_t received_by[PLV_SVM_BYTES_KINDS];
    uint64_t msgs_sent;
    uint32_t attempts;          /* attempts this run took */
    uint32_t errors;            /* on_error calls */
    uint32_t stale_dropped;     /* leftovers of failed attempts, dropped */
    /*
     * Secondary: pages were written into the memory view, also when the
     * run failed after that (PLV_SVM_ERROR_COMMIT).
     */
    bool ram_touched;
    /* Phase times (µs). The union is hashed in steps, and the leader
     * sends a step's divergent pages while it hashes the next ones, so
     * phases overlap. Leader: compute = bitmaps + own hashing; compare =
     * waiting for the peer's fingerprints + comparing; transfer = what is
     * left of sending pages, device state and EOF once the last step is
     * compared; apply = waiting for the ACK. Secondary: compute = bitmaps
     * + hashing; compare = sending fingerprints; transfer = receiving up to
     * EOF; apply = validating, applying, commit, ACK. */
    int64_t t_compute_us, t_compare_us, t_transfer_us, t_apply_us;
    int64_t t_total_us;
} PlvSyncvmStats;

/*
 * Runs one syncvm as the leader over ch. 0 once the secondary ACKed; -1
 * with err (PLV_SVM_ERROR domain) otherwise, at once with
 * PLV_SVM_ERROR_COMMIT if the secondary failed to commit. stats may be NULL.
 */
int plv_syncvm_leader_run(const PlvSyncvmConfig *cfg, PlvSyncvmChannel *ch,
                          PlvMemView *mv, PlvSyncvmStats *stats,
                          GError **err);

/*
 * Runs one syncvm as the secondary: mv's memory is changed only after the
 * whole transfer arrived and validated; 0 once applied, committed and
 * ACKed. On -1 with PLV_SVM_ERROR_COMMIT, stats->ram_touched says whether
 * mv was written; either way the VM must not run on.
 */
int plv_syncvm_secondary_run(const PlvSyncvmConfig *cfg,
                             PlvSyncvmChannel *ch, PlvMemView *mv,
                             PlvSyncvmStats *stats, GError **err);

#endif
