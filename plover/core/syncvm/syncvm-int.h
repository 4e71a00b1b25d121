/*
 * State shared by the leader and secondary halves of one syncvm run
 * (internal to plover/core).
 */
#ifndef PLOVER_SYNCVM_INT_H
#define PLOVER_SYNCVM_INT_H

#include "plover/syncvm.h"
#include "plover/zstd-codec.h"

/* Largest PAGES / DEVSTATE / HASHES payload we build (data part). */
#define SVM_CHUNK_BYTES     (1u << 20)
#define SVM_PAGES_PER_MSG   PLV_SVM_MAX_PAGE_RECS
/* zstd level: 1 is the fastest that still finds the delta's matches. */
#define SVM_ZSTD_LEVEL      1
/*
 * Union pages hashed (and their fingerprints sent) per step: small enough
 * for the leader to start sending pages early, large enough to keep the
 * pool's threads busy. The leader does not rely on the secondary's step.
 */
#define SVM_HASH_STEP       4096u

typedef struct SvmRun {
    const PlvSyncvmConfig *cfg;
    PlvSyncvmChannel *ch;
    PlvMemView *mv;
    PlvSyncvmStats *st;
    PlvHashPool *pool;
    bool own_pool;
    int timeout_ms;
    unsigned max_attempts;
    uint64_t max_devstate_len;

    PlvSvmHdr hdr;              /* ours: the current attempt */
    GByteArray *rx, *tx;
    PlvZstd *z;                 /* the run's thread only (not the sender's) */
    PlvSvmBase own_base, peer_base;     /* device-state bases announced */
    /* per attempt */
    PlvBitmap *uni;             /* one per region: own | peer */
    PlvSvmUnion u;
    PlvPageHash union_digest;   /* plv_svm_union_digest of uni */
    PlvPageHash *hashes;        /* own fingerprints of the union */
    bool *zero;                 /* own zero flags of the union */
} SvmRun;

/* What plv_svm_run_recv found. */
enum { SVM_RX_CURRENT = 0, SVM_RX_NEWER = 1 };

void plv_svm_run_init(SvmRun *r, const PlvSyncvmConfig *cfg,
                      PlvSyncvmChannel *ch, PlvMemView *mv,
                      PlvSyncvmStats *st);
void plv_svm_run_destroy(SvmRun *r);
/* Frees the per-attempt state. */
void plv_svm_run_reset(SvmRun *r);

/* Makes sure a failed step left an error to report (callbacks may not). */
void plv_svm_ensure_error(GError **e);
/*
 * A config callback failed with why (may be NULL: callbacks may not say):
 * err := code, "what: why". Frees why.
 */
void plv_svm_callback_failed(GError **err, GError *why, PlvSvmErrorCode code,
                             const char *what);
/* Reports an error to on_error and counts it. */
void plv_svm_run_report(SvmRun *r, const GError *e);
/* True for errors that a new attempt cannot fix. */
bool plv_svm_error_is_fatal(const GError *e);

int plv_svm_run_send(SvmRun *r, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err);
/* Sends r->tx as one message. */
int plv_svm_run_send_tx(SvmRun *r, uint16_t type, GError **err);
/* Best effort: tells the peer why this attempt failed (if it can help). */
void plv_svm_run_send_nack(SvmRun *r, const GError *why);
/* Best effort: sends the NACK for why, whatever the error. */
void plv_svm_run_nack(SvmRun *r, const GError *why);

/*
 * Next message of this run into r->rx: drops (and reports) messages of an
 * older vid/epoch/attempt, fails on a newer vid/epoch, on a malformed
 * header and on a NACK. Returns SVM_RX_CURRENT or SVM_RX_NEWER (attempt
 * above ours), -1 on error.
 */
int plv_svm_run_recv(SvmRun *r, uint16_t *type, PlvSvmHdr *h,
                     const uint8_t **body, size_t *len, GError **err);
/*
 * The next message of this attempt, which must be of type want (phase:
 * what we were doing, for the error otherwise). 0 or -1.
 */
int plv_svm_run_recv_expect(SvmRun *r, uint16_t want, const char *phase,
                            const uint8_t **body, size_t *len, GError **err);

/* Sends our dirty bitmap as BITMAP. */
int plv_svm_run_send_bitmap(SvmRun *r, GError **err);
/* Union of our dirty bitmap and the peer's BITMAP body; builds r->u. */
int plv_svm_run_union(SvmRun *r, const uint8_t *body, size_t len,
                      GError **err);
/* Hands the union to the caller's snapshot_union (syncvm.h), if any. */
int plv_svm_run_snapshot_union(SvmRun *r, GError **err);
/* Room for the union's fingerprints and zero flags. */
void plv_svm_run_alloc_hashes(SvmRun *r);
/* Seed of this attempt's block fingerprints (the same on both sides). */
uint64_t plv_svm_run_block_seed(const SvmRun *r);
/* Own content of union page idx and its size. */
const uint8_t *plv_svm_run_page(const SvmRun *r, uint32_t idx,
                                uint32_t *page_size);

/*
 * Sends one PAGES: records recs[0, n) and their data, data[0, ndata)
 * back to back (data_len bytes in all); compressed with z into scratch
 * when the run compresses and that makes it smaller.
 */
int plv_svm_run_send_pages(SvmRun *r, PlvZstd *z, GByteArray *tx,
                           GByteArray *scratch, const PlvSvmPageRec *recs,
                           uint32_t n, const struct iovec *data, int ndata,
                           size_t data_len, GError **err);

/*
 * Leader, page deltas (syncvm-delta.c): once every step is compared, for
 * each step with divergent pages (reqs), in lockstep with the secondary:
 * BLOCKREQ, its BLOCKHASHES, then the step's PAGES of blocks.
 */
typedef struct SvmDeltaReq {
    uint32_t div_begin, div_end;    /* the step's divergent pages in div */
    uint32_t n_req, first_req;      /* its BLOCKREQ: non-zero pages */
} SvmDeltaReq;
int plv_svm_delta_send(SvmRun *r, const uint32_t *div, GArray *reqs,
                       uint32_t *n_zero, GError **err);
/*
 * Fingerprints of the step of union pages starting at first (*n of them)
 * into r->hashes/zero, counted as compute time; returns the time it ended.
 */
int64_t plv_svm_run_hash_step(SvmRun *r, uint32_t first, uint32_t *n);

int plv_svm_unexpected(GError **err, uint16_t type, const char *phase);

/*
 * Leader: sends the divergent pages div[], on a thread of its own while
 * the caller keeps hashing and comparing if threaded, else all at finish
 * (syncvm-sender.c).
 */
typedef struct SvmSender SvmSender;
SvmSender *plv_svm_sender_start(SvmRun *r, const uint32_t *div,
                                bool threaded);
/* div[0, ready) are final; false if the sender has failed. */
bool plv_svm_sender_publish(SvmSender *s, uint32_t ready);
/* No more pages: waits until all are sent. */
int plv_svm_sender_finish(SvmSender *s, uint32_t *n_zero, GError **err);
/* The attempt failed: stop (after the message in progress) and free. */
void plv_svm_sender_abort(SvmSender *s);

#endif
