/*
 * The parts of a syncvm run both roles share: message I/O with the
 * vid/epoch/attempt checks, error reporting, the bitmap union and hashing.
 */
#include "syncvm/syncvm-int.h"

#include <string.h>

void plv_svm_run_init(SvmRun *r, const PlvSyncvmConfig *cfg,
                      PlvSyncvmChannel *ch, PlvMemView *mv,
                      PlvSyncvmStats *st)
{
    memset(r, 0, sizeof(*r));
    memset(st, 0, sizeof(*st));
    r->cfg = cfg;
    r->ch = ch;
    r->mv = mv;
    r->st = st;
    r->pool = cfg->pool;
    if (!r->pool) {
        r->pool = plv_hash_pool_new(cfg->hash_threads);
        r->own_pool = true;
    }
    r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
    r->max_attempts = cfg->max_attempts ? cfg->max_attempts : 3;
    r->max_devstate_len = cfg->max_devstate_len ? cfg->max_devstate_len
                                                : 256u << 20;
    r->hdr.vid = cfg->vid;
    r->hdr.epoch = cfg->epoch;
    r->rx = g_byte_array_new();
    r->tx = g_byte_array_new();
    r->z = plv_zstd_new(SVM_ZSTD_LEVEL);
    if (cfg->devstate_base_len) {
        r->own_base.len = cfg->devstate_base_len;
        r->own_base.hash = plv_page_hash(cfg->key, cfg->devstate_base,
                                         cfg->devstate_base_len);
    }
    st->dirty_local = plv_memview_dirty_count(mv);
}

void plv_svm_run_reset(SvmRun *r)
{
    if (r->uni) {
        for (unsigned i = 0; i < plv_memview_n_regions(r->mv); i++) {
            plv_bitmap_destroy(&r->uni[i]);
        }
        g_free(r->uni);
        r->uni = NULL;
    }
    plv_svm_union_clear(&r->u);
    g_free(r->hashes);
    r->hashes = NULL;
    g_free(r->zero);
    r->zero = NULL;
}

void plv_svm_run_destroy(SvmRun *r)
{
    plv_svm_run_reset(r);
    g_byte_array_unref(r->rx);
    g_byte_array_unref(r->tx);
    plv_zstd_free(r->z);
    if (r->own_pool) {
        plv_hash_pool_free(r->pool);
    }
}

void plv_svm_ensure_error(GError **e)
{
    if (!*e) {
        g_set_error(e, PLV_SVM_ERROR, PLV_SVM_ERROR_PEER, "failed");
    }
}

void plv_svm_callback_failed(GError **err, GError *why, PlvSvmErrorCode code,
                             const char *what)
{
    g_set_error(err, PLV_SVM_ERROR, code, "%s: %s", what,
                why ? why->message : "failed");
    g_clear_error(&why);
}

void plv_svm_run_report(SvmRun *r, const GError *e)
{
    PlvSvmErrorCode code = e->domain == PLV_SVM_ERROR ? e->code
                                                      : PLV_SVM_ERROR_LINK;

    r->st->errors++;
    if (r->cfg->on_error) {
        r->cfg->on_error(r->cfg->opaque, r->ch->peer_id, code, e->message);
    }
}

bool plv_svm_error_is_fatal(const GError *e)
{
    if (e->domain != PLV_SVM_ERROR) {
        return true;
    }
    switch (e->code) {
    case PLV_SVM_ERROR_LINK:
    case PLV_SVM_ERROR_FUTURE:
    case PLV_SVM_ERROR_LAYOUT:
    case PLV_SVM_ERROR_VERSION:
    case PLV_SVM_ERROR_COMMIT:      /* memory changed: no attempt again */
    case PLV_SVM_ERROR_SNAPSHOT:    /* the cut is gone */
        return true;
    default:
        return false;
    }
}

int plv_svm_run_send(SvmRun *r, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    GError *local = NULL;

    if (r->ch->send(r->ch->opaque, type, iov, iovcnt, &local) < 0) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_LINK,
                    "sending %s: %s", plv_svm_msg_name(type),
                    local ? local->message : "failed");
        g_clear_error(&local);
        return -1;
    }
    for (int i = 0; i < iovcnt; i++) {
        r->st->bytes_sent += iov[i].iov_len;
        r->st->sent_by[plv_svm_bytes_kind(type)] += iov[i].iov_len;
    }
    r->st->msgs_sent++;
    return 0;
}

int plv_svm_run_send_pages(SvmRun *r, PlvZstd *z, GByteArray *tx,
                           GByteArray *scratch, const PlvSvmPageRec *recs,
                           uint32_t n, const struct iovec *data, int ndata,
                           size_t data_len, GError **err)
{
    struct iovec iov[SVM_PAGES_PER_MSG + 1];
    uint8_t enc = PLV_SVM_ENC_RAW;
    int niov = 1;

    g_assert(ndata <= (int)SVM_PAGES_PER_MSG);
    if (r->cfg->compress && data_len) {
        /* zstd takes one buffer: gather the pieces unless there is one. */
        GByteArray *flat = NULL;
        const void *src = data[0].iov_base;

        if (ndata > 1) {
            flat = g_byte_array_sized_new(data_len);
            for (int i = 0; i < ndata; i++) {
                g_byte_array_append(flat, data[i].iov_base, data[i].iov_len);
            }
            src = flat->data;
        }
        g_byte_array_set_size(scratch, 0);
        if (plv_zstd_compress(z, scratch, src, data_len, NULL, 0) == 0 &&
            scratch->len < data_len) {
            enc = PLV_SVM_ENC_ZSTD;
            iov[niov].iov_base = scratch->data;
            iov[niov].iov_len = scratch->len;
            niov++;
        }
        if (flat) {
            g_byte_array_unref(flat);
        }
    }
    if (enc == PLV_SVM_ENC_RAW) {
        memcpy(iov + 1, data, ndata * sizeof(*data));
        niov += ndata;
    }
    g_byte_array_set_size(tx, 0);
    plv_svm_encode_pages_head(tx, &r->hdr, recs, n, enc, (uint32_t)data_len);
    iov[0].iov_base = tx->data;
    iov[0].iov_len = tx->len;
    if (plv_svm_run_send(r, PLV_SVM_MSG_PAGES, iov, niov, err) < 0) {
        return -1;
    }
    r->st->page_raw_bytes += data_len;
    r->st->page_bytes += enc == PLV_SVM_ENC_RAW ? data_len : scratch->len;
    return 0;
}

int plv_svm_run_send_tx(SvmRun *r, uint16_t type, GError **err)
{
    struct iovec iov = { .iov_base = r->tx->data, .iov_len = r->tx->len };

    return plv_svm_run_send(r, type, &iov, 1, err);
}

static uint32_t nack_code(const GError *why)
{
    return why->domain == PLV_SVM_ERROR ? (uint32_t)why->code
                                        : PLV_SVM_ERROR_LINK;
}

void plv_svm_run_nack(SvmRun *r, const GError *why)
{
    g_byte_array_set_size(r->tx, 0);
    plv_svm_encode_nack(r->tx, &r->hdr, nack_code(why), why->message);
    plv_svm_run_send_tx(r, PLV_SVM_MSG_NACK, NULL);
}

void plv_svm_run_send_nack(SvmRun *r, const GError *why)
{
    /*
     * Not on a dead link, nor back to a peer that told us it failed (a
     * failed commit, fatal, reaches the leader only from its secondary).
     */
    if (plv_svm_error_is_fatal(why) || nack_code(why) == PLV_SVM_ERROR_PEER) {
        return;
    }
    plv_svm_run_nack(r, why);
}

/* -1, 0, 1 as (vid, epoch) of a is older, equal, newer than b's. */
static int cmp_view(const PlvSvmHdr *a, const PlvSvmHdr *b)
{
    if (a->vid != b->vid) {
        return a->vid < b->vid ? -1 : 1;
    }
    if (a->epoch != b->epoch) {
        return a->epoch < b->epoch ? -1 : 1;
    }
    return 0;
}

int plv_svm_run_recv(SvmRun *r, uint16_t *type, PlvSvmHdr *h,
                     const uint8_t **body, size_t *len, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + r->timeout_ms * 1000LL;

    for (;;) {
        int64_t left_ms = (deadline - g_get_monotonic_time()) / 1000;
        GError *local = NULL;
        GError *stale = NULL;

        if (left_ms <= 0) {
            g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_TIMEOUT,
                        "no message from peer %u in %d ms", r->ch->peer_id,
                        r->timeout_ms);
            return -1;
        }
        if (r->ch->recv(r->ch->opaque, type, r->rx, (int)left_ms,
                        &local) < 0) {
            bool timeout = r->ch->is_timeout && local &&
                           r->ch->is_timeout(local);

            g_set_error(err, PLV_SVM_ERROR,
                        timeout ? PLV_SVM_ERROR_TIMEOUT : PLV_SVM_ERROR_LINK,
                        "receiving from peer %u: %s", r->ch->peer_id,
                        local ? local->message : "failed");
            g_clear_error(&local);
            return -1;
        }
        r->st->bytes_received += r->rx->len;
        r->st->received_by[plv_svm_bytes_kind(*type)] += r->rx->len;
        if (plv_svm_get_hdr(r->rx->data, r->rx->len, h, body, len, err) < 0) {
            g_prefix_error(err, "%s: ", plv_svm_msg_name(*type));
            return -1;
        }
        if (cmp_view(h, &r->hdr) > 0) {
            g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_FUTURE,
                        "%s for vid %" PRIu64 " epoch %" PRIu64
                        " while running vid %" PRIu64 " epoch %" PRIu64,
                        plv_svm_msg_name(*type), h->vid, h->epoch,
                        r->hdr.vid, r->hdr.epoch);
            return -1;
        }
        if (cmp_view(h, &r->hdr) < 0) {
            /* A leftover of an earlier syncvm: an error, then drop it. */
            g_set_error(&stale, PLV_SVM_ERROR, PLV_SVM_ERROR_STALE,
                        "stale %s rejected: vid %" PRIu64 " epoch %" PRIu64
                        ", running vid %" PRIu64 " epoch %" PRIu64,
                        plv_svm_msg_name(*type), h->vid, h->epoch,
                        r->hdr.vid, r->hdr.epoch);
            plv_svm_run_report(r, stale);
            g_error_free(stale);
            continue;
        }
        if (h->attempt < r->hdr.attempt) {
            /*
             * The rest of an attempt that already failed (and was reported
             * once): expected after a NACK, dropped without a new error.
             */
            r->st->stale_dropped++;
            continue;
        }
        if (*type == PLV_SVM_MSG_NACK) {
            uint32_t code;
            char *reason;

            if (plv_svm_decode_nack(*body, *len, &code, &reason, err) < 0) {
                return -1;
            }
            if (code == PLV_SVM_ERROR_COMMIT) {
                /* Its code kept: that fails the run, no new attempt. */
                g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_COMMIT,
                            "secondary (peer %u) failed to commit attempt "
                            "%u: %s", r->ch->peer_id, h->attempt, reason);
            } else {
                g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_PEER,
                            "peer %u failed attempt %u: %s", r->ch->peer_id,
                            h->attempt, reason);
            }
            g_free(reason);
            return -1;
        }
        return h->attempt > r->hdr.attempt ? SVM_RX_NEWER : SVM_RX_CURRENT;
    }
}

int plv_svm_run_recv_expect(SvmRun *r, uint16_t want, const char *phase,
                            const uint8_t **body, size_t *len, GError **err)
{
    uint16_t type;
    PlvSvmHdr h;
    int rc = plv_svm_run_recv(r, &type, &h, body, len, err);

    if (rc < 0) {
        return -1;
    }
    if (rc != SVM_RX_CURRENT || type != want) {
        return plv_svm_unexpected(err, type, phase);
    }
    return 0;
}

int plv_svm_unexpected(GError **err, uint16_t type, const char *phase)
{
    g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_UNEXPECTED,
                "unexpected %s (type 0x%x) while %s", plv_svm_msg_name(type),
                type, phase);
    return -1;
}

/* Our dirty bitmaps, borrowed from the view's regions. */
static PlvBitmap *own_bitmaps(SvmRun *r)
{
    unsigned n = plv_memview_n_regions(r->mv);
    PlvBitmap *b = g_new(PlvBitmap, MAX(n, 1));

    for (unsigned i = 0; i < n; i++) {
        b[i] = plv_memview_region(r->mv, i)->dirty;
    }
    return b;
}

int plv_svm_run_send_bitmap(SvmRun *r, GError **err)
{
    PlvBitmap *own = own_bitmaps(r);

    g_byte_array_set_size(r->tx, 0);
    plv_svm_encode_bitmap(r->tx, &r->hdr, r->mv, own, &r->own_base);
    g_free(own);
    return plv_svm_run_send_tx(r, PLV_SVM_MSG_BITMAP, err);
}

int plv_svm_run_union(SvmRun *r, const uint8_t *body, size_t len,
                      GError **err)
{
    unsigned n = plv_memview_n_regions(r->mv);

    plv_svm_run_reset(r);
    r->uni = g_new0(PlvBitmap, MAX(n, 1));
    for (unsigned i = 0; i < n; i++) {
        const PlvBitmap *own = &plv_memview_region(r->mv, i)->dirty;

        plv_bitmap_init(&r->uni[i], own->n_bits);
        memcpy(r->uni[i].words, own->words,
               plv_bitmap_n_words(own->n_bits) * sizeof(uint64_t));
    }
    if (plv_svm_decode_bitmap(body, len, r->mv, r->uni, &r->peer_base,
                              err) < 0) {
        return -1;
    }
    plv_svm_union_build(&r->u, r->mv, r->uni);
    r->union_digest = plv_svm_union_digest(r->cfg->key, r->mv, r->uni);
    r->st->dirty_union = r->u.n;
    return 0;
}

int plv_svm_run_snapshot_union(SvmRun *r, GError **err)
{
    GError *why = NULL;

    if (r->cfg->snapshot_union &&
        r->cfg->snapshot_union(r->cfg->opaque, r->u.refs, r->u.n, &why) < 0) {
        plv_svm_callback_failed(err, why, PLV_SVM_ERROR_SNAPSHOT,
                                "snapshot of the union");
        return -1;
    }
    return 0;
}

uint64_t plv_svm_run_block_seed(const SvmRun *r)
{
    return plv_block_seed(r->cfg->key, r->hdr.vid ^ r->hdr.epoch,
                          r->hdr.attempt);
}

const uint8_t *plv_svm_run_page(const SvmRun *r, uint32_t idx,
                                uint32_t *page_size)
{
    const PlvPageRef *ref = &r->u.refs[idx];
    const PlvMemRegion *reg = plv_memview_region_const(r->mv, ref->region);

    *page_size = reg->page_size;
    return plv_memview_page(reg, ref->page);
}

void plv_svm_run_alloc_hashes(SvmRun *r)
{
    r->hashes = g_new(PlvPageHash, MAX(r->u.n, 1));
    r->zero = g_new(bool, MAX(r->u.n, 1));
}

int64_t plv_svm_run_hash_step(SvmRun *r, uint32_t first, uint32_t *n)
{
    int64_t t0 = g_get_monotonic_time(), t1;

    *n = MIN(SVM_HASH_STEP, r->u.n - first);
    plv_hash_pages(r->pool, r->cfg->key, r->mv, r->u.refs + first, *n,
                   r->hashes + first, r->zero + first);
    t1 = g_get_monotonic_time();
    r->st->t_compute_us += t1 - t0;
    return t1;
}
