/*
 * syncvm, secondary side: answer the leader's bitmap, send fingerprints,
 * stage the divergent pages and the device state, and apply them only
 * once EOF arrived and everything checked out. Until then guest memory is
 * not written, so a transfer cut short leaves it exactly as it was. After
 * the pages are written, the commit loads the device state before the
 * ACK; a failed commit is the one failure that leaves memory changed.
 */
#include "syncvm/syncvm-int.h"

#include <string.h>

typedef struct Staging {
    PlvSvmPageRec *recs;        /* n_union slots; data points into bufs */
    uint32_t n, n_zero;
    GPtrArray *bufs;            /* PAGES payloads kept whole (no copy), and
                                 * their data decompressed */
    GPtrArray *rebuilt;         /* pages rebuilt from DELTA records */
    GByteArray *devstate;       /* as received, then decoded */
    uint32_t next_req;          /* lowest index the next BLOCKREQ may ask */
} Staging;

static void staging_init(Staging *s, uint32_t n_union)
{
    s->recs = g_new(PlvSvmPageRec, MAX(n_union, 1));
    s->n = s->n_zero = 0;
    s->next_req = 0;
    s->bufs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_byte_array_unref);
    s->rebuilt = g_ptr_array_new_with_free_func(g_free);
    s->devstate = g_byte_array_new();
}

static void staging_destroy(Staging *s)
{
    g_free(s->recs);
    if (s->bufs) {
        g_ptr_array_unref(s->bufs);
    }
    if (s->rebuilt) {
        g_ptr_array_unref(s->rebuilt);
    }
    if (s->devstate) {
        g_byte_array_unref(s->devstate);
    }
    memset(s, 0, sizeof(*s));
}

/*
 * Hashes the union step by step and sends each step's fingerprints at
 * once, so the leader can compare and start sending while we go on.
 */
static int hash_and_send(SvmRun *r, GError **err)
{
    plv_svm_run_alloc_hashes(r);
    for (uint32_t first = 0; first < r->u.n; first += SVM_HASH_STEP) {
        uint32_t n;
        int64_t t1 = plv_svm_run_hash_step(r, first, &n);

        g_byte_array_set_size(r->tx, 0);
        plv_svm_encode_hashes(r->tx, &r->hdr, first, r->hashes + first, n);
        if (plv_svm_run_send_tx(r, PLV_SVM_MSG_HASHES, err) < 0) {
            return -1;
        }
        r->st->t_compare_us += g_get_monotonic_time() - t1;
    }
    return 0;
}

/*
 * The leader asks which blocks of its divergent pages differ: for each
 * super-block whose fingerprint is not ours, our fingerprints of its
 * blocks.
 */
static int answer_blockreq(SvmRun *r, Staging *s, const uint8_t *body,
                           size_t len, GError **err)
{
    uint32_t *idx = g_new(uint32_t, PLV_SVM_MAX_BLOCKREQ);
    uint32_t *sb = g_new(uint32_t, PLV_SVM_MAX_BLOCKREQ * PLV_PAGE_SUPERBLOCKS);
    uint32_t *blocks = NULL, n;
    uint8_t *masks = NULL;
    uint64_t seed = plv_svm_run_block_seed(r);
    int ret = -1;

    if (plv_svm_decode_blockreq(body, len, r->u.n, s->next_req, idx, sb, &n,
                                err) < 0) {
        goto out;
    }
    s->next_req = idx[n - 1] + 1;
    masks = g_new0(uint8_t, n);
    blocks = g_new(uint32_t, (size_t)n * PLV_PAGE_BLOCKS);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ps, own[PLV_PAGE_SUPERBLOCKS];
        const uint8_t *page = plv_svm_run_page(r, idx[i], &ps);
        size_t sbs = ps / PLV_PAGE_SUPERBLOCKS;

        plv_block_hashes(seed, page, ps, PLV_PAGE_SUPERBLOCKS, own);
        for (unsigned k = 0; k < PLV_PAGE_SUPERBLOCKS; k++) {
            if (own[k] == sb[i * PLV_PAGE_SUPERBLOCKS + k]) {
                continue;
            }
            masks[i] |= 1u << k;
            plv_block_hashes(seed, page + k * sbs, sbs, PLV_SUPERBLOCK_BLOCKS,
                             blocks + (size_t)i * PLV_PAGE_BLOCKS +
                             k * PLV_SUPERBLOCK_BLOCKS);
        }
    }
    g_byte_array_set_size(r->tx, 0);
    plv_svm_encode_blockhashes(r->tx, &r->hdr, idx[0], masks, blocks, n);
    ret = plv_svm_run_send_tx(r, PLV_SVM_MSG_BLOCKHASHES, err);
out:
    g_free(idx);
    g_free(sb);
    g_free(masks);
    g_free(blocks);
    return ret;
}

/* Our page with the record's blocks put in (memory itself untouched). */
static const uint8_t *rebuild(SvmRun *r, Staging *s, const PlvSvmPageRec *rec,
                              const PlvMemRegion *reg)
{
    const PlvPageRef *ref = &r->u.refs[rec->index];
    uint8_t *page = g_memdup2(plv_memview_page(reg, ref->page),
                              reg->page_size);
    uint32_t bs = reg->page_size / PLV_PAGE_BLOCKS;
    const uint8_t *src = rec->data;

    for (uint64_t m = rec->mask; m; m &= m - 1) {
        memcpy(page + __builtin_ctzll(m) * bs, src, bs);
        src += bs;
    }
    g_ptr_array_add(s->rebuilt, page);
    return page;
}

static int stage_pages(SvmRun *r, Staging *s, const uint8_t *body,
                       size_t len, GError **err)
{
    uint32_t min_index = s->n ? s->recs[s->n - 1].index + 1 : 0;
    bool full = r->hdr.flags & PLV_SVM_FLAG_FULL;
    GByteArray *decoded = g_byte_array_new();
    uint32_t n;

    if (plv_svm_decode_pages(body, len, r->mv, &r->u, min_index, !full, r->z,
                             decoded, s->recs + s->n, &n, err) < 0) {
        g_byte_array_unref(decoded);
        return -1;
    }
    /* Page data as it came, for the statistics: what follows the records. */
    r->st->page_bytes += len - plv_svm_pages_head_len(s->recs + s->n, n);
    /* The records point into the payload or its decoded data: keep both. */
    g_ptr_array_add(s->bufs, decoded);
    g_ptr_array_add(s->bufs, r->rx);
    r->rx = g_byte_array_new();
    for (uint32_t i = s->n; i < s->n + n; i++) {
        PlvSvmPageRec *rec = &s->recs[i];
        const PlvMemRegion *reg = plv_memview_region_const(
            r->mv, r->u.refs[rec->index].region);

        s->n_zero += rec->kind == PLV_SVM_PAGE_ZERO;
        r->st->page_raw_bytes += plv_svm_rec_data_len(rec, reg->page_size);
        if (rec->kind == PLV_SVM_PAGE_ZERO && !full) {
            /* A ZERO record's fingerprint is the zero page's. */
            PlvPageHash h = plv_zero_page_hash(r->cfg->key, reg->page_size);

            if (!plv_page_hash_equal(&h, &rec->hash)) {
                g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                            "PAGES: zero union page %u does not match its "
                            "fingerprint", rec->index);
                return -1;
            }
        }
        if (rec->kind == PLV_SVM_PAGE_DELTA) {
            rec->data = rebuild(r, s, rec, reg);
            rec->kind = PLV_SVM_PAGE_DATA;
            r->st->delta_pages++;
        }
        /*
         * End-to-end check of every page against the leader's fingerprint:
         * whatever the channel (a one-sided RDMA write has no checksum),
         * a damaged page, or one rebuilt from blocks whose fingerprints
         * collided, is refused before anything is applied.
         */
        if (rec->kind == PLV_SVM_PAGE_DATA && !full) {
            PlvPageHash h = plv_page_hash(r->cfg->key, rec->data,
                                          reg->page_size);

            if (!plv_page_hash_equal(&h, &rec->hash)) {
                g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                            "PAGES: union page %u does not match its "
                            "fingerprint", rec->index);
                return -1;
            }
        }
    }
    s->n += n;
    return 0;
}

/*
 * The device state as it arrived becomes the blob: decoded (against our
 * base if the leader used it) into exactly the length EOF announced.
 */
static int decode_devstate(SvmRun *r, Staging *s, const PlvSvmEof *eof,
                           GError **err)
{
    GByteArray *blob;
    GError *why = NULL;
    bool base = eof->devstate_enc == PLV_SVM_ENC_ZSTD_BASE;

    if (eof->devstate_enc == PLV_SVM_ENC_RAW) {
        return 0;
    }
    if (eof->devstate_len > r->max_devstate_len) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "EOF: device state of %" PRIu64 " bytes, over the cap",
                    eof->devstate_len);
        return -1;
    }
    if (base && !r->cfg->devstate_base_len) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "EOF: device state against a base we do not hold");
        return -1;
    }
    blob = g_byte_array_sized_new(eof->devstate_len);
    g_byte_array_set_size(blob, eof->devstate_len);
    if (plv_zstd_decompress(r->z, blob->data, blob->len, s->devstate->data,
                            s->devstate->len,
                            base ? r->cfg->devstate_base : NULL,
                            base ? r->cfg->devstate_base_len : 0,
                            &why) < 0) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "DEVSTATE: %s", why->message);
        g_error_free(why);
        g_byte_array_unref(blob);
        return -1;
    }
    g_byte_array_unref(s->devstate);
    s->devstate = blob;
    return 0;
}

/* EOF's digests: same union on both sides, the blob as the leader sent it. */
static int check_digests(SvmRun *r, Staging *s, const PlvSvmEof *eof,
                         GError **err)
{
    PlvPageHash dev = plv_page_hash(r->cfg->key, s->devstate->data,
                                    s->devstate->len);

    if (!plv_page_hash_equal(&eof->union_digest, &r->union_digest)) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "EOF: the leader's union of dirty pages is not ours");
        return -1;
    }
    if (!plv_page_hash_equal(&eof->devstate_hash, &dev)) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "EOF: device state does not match its fingerprint");
        return -1;
    }
    return 0;
}

/* Receives PAGES and DEVSTATE up to a valid EOF. 1: newer attempt. */
static int receive_transfer(SvmRun *r, Staging *s, GError **err)
{
    for (;;) {
        uint16_t type;
        PlvSvmHdr h;
        const uint8_t *body, *data;
        size_t len, n;
        PlvSvmEof eof;
        int rc = plv_svm_run_recv(r, &type, &h, &body, &len, err);

        if (rc < 0) {
            return -1;
        }
        if (rc == SVM_RX_NEWER && type == PLV_SVM_MSG_BITMAP) {
            return 1;
        }
        if (rc != SVM_RX_CURRENT) {
            return plv_svm_unexpected(err, type, "receiving pages");
        }
        switch (type) {
        case PLV_SVM_MSG_BLOCKREQ:
            if (answer_blockreq(r, s, body, len, err) < 0) {
                return -1;
            }
            break;
        case PLV_SVM_MSG_PAGES:
            if (stage_pages(r, s, body, len, err) < 0) {
                return -1;
            }
            break;
        case PLV_SVM_MSG_DEVSTATE:
            if (plv_svm_decode_devstate(body, len, s->devstate->len,
                                        r->max_devstate_len, &data, &n,
                                        err) < 0) {
                return -1;
            }
            g_byte_array_append(s->devstate, data, n);
            break;
        case PLV_SVM_MSG_EOF:
            if (plv_svm_decode_eof(body, len, &eof, err) < 0) {
                return -1;
            }
            if (eof.n_pages != s->n || eof.n_zero != s->n_zero ||
                eof.devstate_wire_len != s->devstate->len) {
                g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                            "EOF says %u pages (%u zero) and %" PRIu64
                            " device bytes, received %u (%u) and %u",
                            eof.n_pages, eof.n_zero, eof.devstate_wire_len,
                            s->n, s->n_zero, s->devstate->len);
                return -1;
            }
            r->st->devstate_wire_bytes = s->devstate->len;
            if (decode_devstate(r, s, &eof, err) < 0) {
                return -1;
            }
            return check_digests(r, s, &eof, err);
        default:
            return plv_svm_unexpected(err, type, "receiving pages");
        }
    }
}

/*
 * Page copies cannot fail, so once the first page is written, only the
 * commit can still fail.
 */
static void write_pages(SvmRun *r, Staging *s)
{
    r->st->ram_touched = s->n > 0;
    for (uint32_t i = 0; i < s->n; i++) {
        const PlvPageRef *ref = &r->u.refs[s->recs[i].index];
        const PlvMemRegion *reg = plv_memview_region_const(r->mv,
                                                           ref->region);
        uint8_t *dst = plv_memview_page(reg, ref->page);

        if (r->cfg->inspect_divergent) {
            r->cfg->inspect_divergent(r->cfg->opaque, ref, dst,
                                      s->recs[i].data, reg->page_size);
        }
        if (s->recs[i].kind == PLV_SVM_PAGE_ZERO) {
            memset(dst, 0, reg->page_size);
        } else {
            memcpy(dst, s->recs[i].data, reg->page_size);
        }
    }
}

/*
 * Fatal on failure, and NACKed here because of that: the run loop does
 * not NACK fatal errors, but the leader is waiting for our ACK and must
 * learn that this secondary cannot go on, not take it for a slow one.
 */
static int commit(SvmRun *r, const Staging *s, GError **err)
{
    GError *why = NULL, *e = NULL;
    PlvPageRef *written;
    int rc;

    if (!r->cfg->commit) {
        return 0;
    }
    written = g_new(PlvPageRef, MAX(s->n, 1));
    for (uint32_t i = 0; i < s->n; i++) {
        written[i] = r->u.refs[s->recs[i].index];
    }
    rc = r->cfg->commit(r->cfg->opaque, written, s->n, &why);
    g_free(written);
    if (rc == 0) {
        return 0;
    }
    plv_svm_callback_failed(&e, why, PLV_SVM_ERROR_COMMIT,
                            "committing device state");
    plv_svm_run_nack(r, e);
    g_propagate_error(err, e);
    return -1;
}

/*
 * Device state staged first: it may fail and then nothing has changed.
 * Then the pages, which cannot fail, then the commit, which can, fatally.
 */
static int apply(SvmRun *r, Staging *s, GError **err)
{
    GError *e = NULL;

    if (r->cfg->apply_device_state &&
        r->cfg->apply_device_state(r->cfg->opaque, s->devstate->data,
                                   s->devstate->len, &e) < 0) {
        plv_svm_callback_failed(err, e, PLV_SVM_ERROR_DEVSTATE,
                                "applying device state");
        return -1;
    }
    write_pages(r, s);
    return commit(r, s, err);
}

/*
 * One attempt, starting from the leader's BITMAP in r->rx (header h).
 * 0 done, 1 a newer attempt's BITMAP is in r->rx, -1 error.
 */
static int secondary_attempt(SvmRun *r, const PlvSvmHdr *h,
                             const uint8_t *body, size_t len, GError **err)
{
    PlvSyncvmStats *st = r->st;
    int64_t t0 = g_get_monotonic_time(), t1;
    Staging s = { 0 };
    int rc = -1;

    r->hdr.flags = h->flags;
    st->attempts++;
    /* Unchecked pages only where the baseline was asked for on this side. */
    if ((h->flags & PLV_SVM_FLAG_FULL) && !r->cfg->send_all_dirty) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "BITMAP asks for the send-all baseline, not enabled here");
        return -1;
    }
    if (plv_svm_run_union(r, body, len, err) < 0 ||
        plv_svm_run_send_bitmap(r, err) < 0 ||
        plv_svm_run_snapshot_union(r, err) < 0) {
        return -1;
    }
    st->t_compute_us += g_get_monotonic_time() - t0;
    if (!(h->flags & PLV_SVM_FLAG_FULL) && hash_and_send(r, err) < 0) {
        return -1;
    }

    t0 = g_get_monotonic_time();
    staging_init(&s, r->u.n);
    rc = receive_transfer(r, &s, err);
    t1 = g_get_monotonic_time();
    st->t_transfer_us += t1 - t0;
    if (rc != 0) {
        goto out;
    }

    t0 = t1;
    rc = apply(r, &s, err);
    if (rc == 0) {
        st->divergent_pages = s.n;
        st->zero_pages = s.n_zero;
        st->same_pages = r->u.n - s.n;
        st->same_rate = r->u.n ? (double)st->same_pages / r->u.n : 1.0;
        st->devstate_bytes = s.devstate->len;
        g_byte_array_set_size(r->tx, 0);
        plv_svm_encode_ack(r->tx, &r->hdr, s.n, s.devstate->len);
        /* Applied even if the ACK is lost: the leader then retries or
         * fails over, and the next syncvm covers these pages again. */
        rc = plv_svm_run_send_tx(r, PLV_SVM_MSG_ACK, err);
    }
    st->t_apply_us += g_get_monotonic_time() - t0;
out:
    staging_destroy(&s);
    return rc;
}

int plv_syncvm_secondary_run(const PlvSyncvmConfig *cfg,
                             PlvSyncvmChannel *ch, PlvMemView *mv,
                             PlvSyncvmStats *stats, GError **err)
{
    PlvSyncvmStats local_stats;
    int64_t start = g_get_monotonic_time();
    SvmRun r;
    unsigned failures = 0;
    bool have_bitmap = false;
    int ret = -1;

    plv_svm_run_init(&r, cfg, ch, mv, stats ? stats : &local_stats);
    r.hdr.attempt = 1;          /* the lowest attempt we accept */
    for (;;) {
        GError *e = NULL;
        uint16_t type = PLV_SVM_MSG_BITMAP;
        PlvSvmHdr h;
        const uint8_t *body;
        size_t len;
        bool started;           /* a message of some attempt arrived */
        int rc = 0;

        if (have_bitmap) {
            /* Already validated by plv_svm_run_recv. */
            plv_svm_get_hdr(r.rx->data, r.rx->len, &h, &body, &len, NULL);
        } else {
            rc = plv_svm_run_recv(&r, &type, &h, &body, &len, &e);
        }
        started = rc >= 0;
        if (started) {
            r.hdr.attempt = h.attempt;
            rc = type == PLV_SVM_MSG_BITMAP
                 ? secondary_attempt(&r, &h, body, len, &e)
                 : plv_svm_unexpected(&e, type, "waiting for BITMAP");
        }
        if (rc == 0) {
            ret = 0;
            break;
        }
        have_bitmap = rc == 1;
        if (rc < 0) {
            plv_svm_ensure_error(&e);
            plv_svm_run_report(&r, e);
            /*
             * Only a started attempt is NACKed: a NACK while the leader has
             * not begun would fail its first attempt for nothing.
             */
            if (started) {
                plv_svm_run_send_nack(&r, e);
            }
            if (plv_svm_error_is_fatal(e) || ++failures >= r.max_attempts) {
                g_propagate_prefixed_error(err, e,
                                           "syncvm secondary, attempt %u: ",
                                           r.hdr.attempt);
                break;
            }
            g_error_free(e);
            if (started) {
                /* Everything of the failed attempt is stale from now on. */
                r.hdr.attempt++;
            }
        }
    }
    r.st->t_total_us = g_get_monotonic_time() - start;
    plv_svm_run_destroy(&r);
    return ret;
}
