/*
 * syncvm, leader side: send the bitmap, compare fingerprints, send the
 * divergent pages and the device state, wait for the ACK.
 */
#include "syncvm/syncvm-int.h"

#include <string.h>

/* Receives the peer's fingerprints until *got reaches want. */
static int recv_hashes(SvmRun *r, PlvPageHash *peer, uint32_t *got,
                       uint32_t want, GError **err)
{
    while (*got < want) {
        const uint8_t *body;
        size_t len;
        uint32_t n;

        if (plv_svm_run_recv_expect(r, PLV_SVM_MSG_HASHES,
                                    "waiting for HASHES", &body, &len,
                                    err) < 0 ||
            plv_svm_decode_hashes(body, len, *got, r->u.n, peer, &n,
                                  err) < 0) {
            return -1;
        }
        *got += n;
    }
    return 0;
}

/*
 * Hashes the union step by step; as soon as the secondary's fingerprints
 * of a step are in, its divergent pages go to the sender thread, which
 * transfers them while the next steps are hashed, or (page deltas) they
 * are noted in reqs for syncvm-delta.c. Returns the number of divergent
 * pages in div[].
 */
static int64_t compare_and_feed(SvmRun *r, SvmSender *snd, GArray *reqs,
                                uint32_t *div, GError **err)
{
    PlvPageHash *peer = g_new(PlvPageHash, MAX(r->u.n, 1));
    uint32_t got = 0, n_div = 0;
    int64_t ret = -1;

    for (uint32_t first = 0; first < r->u.n; first += SVM_HASH_STEP) {
        uint32_t n;
        int64_t t1 = plv_svm_run_hash_step(r, first, &n);

        if (recv_hashes(r, peer, &got, first + n, err) < 0) {
            goto out;
        }
        uint32_t step_begin = n_div;

        for (uint32_t i = first; i < first + n; i++) {
            if (!plv_page_hash_equal(&r->hashes[i], &peer[i])) {
                div[n_div++] = i;
            }
        }
        r->st->t_compare_us += g_get_monotonic_time() - t1;
        if (reqs) {
            SvmDeltaReq q = { .div_begin = step_begin, .div_end = n_div };

            if (n_div > step_begin) {
                g_array_append_val(reqs, q);
            }
        } else if (!plv_svm_sender_publish(snd, n_div)) {
            break;              /* plv_svm_sender_finish reports why */
        }
    }
    ret = n_div;
out:
    g_free(peer);
    return ret;
}

/*
 * The device state, as a zstd delta against the base both ends announced
 * if they hold the same one, else compressed, else raw (whichever is
 * smallest that the configuration allows). EOF carries the encoding and
 * the fingerprint of the blob itself, which the secondary checks after
 * decoding.
 */
static int send_devstate(SvmRun *r, PlvSvmEof *eof, GError **err)
{
    GByteArray *blob = g_byte_array_new(), *enc = g_byte_array_new();
    const GByteArray *wire = blob;
    GError *e = NULL;
    int ret = -1;

    if (r->cfg->get_device_state &&
        r->cfg->get_device_state(r->cfg->opaque, blob, &e) < 0) {
        plv_svm_callback_failed(err, e, PLV_SVM_ERROR_DEVSTATE,
                                "device state");
        goto out;
    }
    eof->devstate_enc = PLV_SVM_ENC_RAW;
    if (r->cfg->compress && blob->len) {
        bool base = r->own_base.len &&
                    r->own_base.len == r->peer_base.len &&
                    plv_page_hash_equal(&r->own_base.hash,
                                        &r->peer_base.hash);

        if (plv_zstd_compress(r->z, enc, blob->data, blob->len,
                              base ? r->cfg->devstate_base : NULL,
                              base ? r->cfg->devstate_base_len : 0) == 0 &&
            enc->len < blob->len) {
            eof->devstate_enc = base ? PLV_SVM_ENC_ZSTD_BASE
                                     : PLV_SVM_ENC_ZSTD;
            wire = enc;
        }
    }
    for (uint64_t off = 0; off < wire->len; off += SVM_CHUNK_BYTES) {
        size_t n = MIN(SVM_CHUNK_BYTES, wire->len - off);
        struct iovec iov[2];

        g_byte_array_set_size(r->tx, 0);
        plv_svm_encode_devstate_head(r->tx, &r->hdr, off);
        iov[0].iov_base = r->tx->data;
        iov[0].iov_len = r->tx->len;
        iov[1].iov_base = wire->data + off;
        iov[1].iov_len = n;
        if (plv_svm_run_send(r, PLV_SVM_MSG_DEVSTATE, iov, 2, err) < 0) {
            goto out;
        }
    }
    eof->devstate_len = blob->len;
    eof->devstate_wire_len = wire->len;
    eof->devstate_hash = plv_page_hash(r->cfg->key, blob->data, blob->len);
    r->st->devstate_bytes = blob->len;
    r->st->devstate_wire_bytes = wire->len;
    ret = 0;
out:
    g_byte_array_unref(blob);
    g_byte_array_unref(enc);
    return ret;
}

static int wait_ack(SvmRun *r, const PlvSvmEof *eof, GError **err)
{
    const uint8_t *body;
    size_t len;
    uint32_t n_pages;
    uint64_t dev_len;

    if (plv_svm_run_recv_expect(r, PLV_SVM_MSG_ACK, "waiting for ACK", &body,
                                &len, err) < 0 ||
        plv_svm_decode_ack(body, len, &n_pages, &dev_len, err) < 0) {
        return -1;
    }
    if (n_pages != eof->n_pages || dev_len != eof->devstate_len) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                    "ACK for %u pages / %" PRIu64 " device bytes, sent %u / %"
                    PRIu64, n_pages, dev_len, eof->n_pages,
                    eof->devstate_len);
        return -1;
    }
    return 0;
}

static int leader_attempt(SvmRun *r, GError **err)
{
    PlvSyncvmStats *st = r->st;
    int64_t t0 = g_get_monotonic_time();
    uint32_t *div;
    SvmSender *snd = NULL;
    GArray *reqs = NULL;        /* page deltas: the BLOCKREQs sent */
    PlvSvmEof eof = { 0 };
    const uint8_t *body;
    size_t len;
    int64_t n_div;
    int ret = -1;

    if (plv_svm_run_send_bitmap(r, err) < 0 ||
        plv_svm_run_recv_expect(r, PLV_SVM_MSG_BITMAP, "waiting for BITMAP",
                                &body, &len, err) < 0 ||
        plv_svm_run_union(r, body, len, err) < 0) {
        return -1;
    }
    if (plv_svm_run_snapshot_union(r, err) < 0) {
        return -1;
    }
    st->t_compute_us += g_get_monotonic_time() - t0;

    div = g_new(uint32_t, MAX(r->u.n, 1));
    if (!r->cfg->send_all_dirty) {
        plv_svm_run_alloc_hashes(r);    /* before the sender reads them */
    }
    if (r->cfg->page_deltas && !r->cfg->send_all_dirty && !r->cfg->live_source) {
        reqs = g_array_new(FALSE, FALSE, sizeof(SvmDeltaReq));
        n_div = compare_and_feed(r, NULL, reqs, div, err);
        if (n_div < 0) {
            goto out;
        }
    } else {
        snd = plv_svm_sender_start(r, div, r->cfg->overlap_send);
        if (r->cfg->send_all_dirty) {
            for (uint32_t i = 0; i < r->u.n; i++) {
                div[i] = i;
            }
            n_div = r->u.n;
            plv_svm_sender_publish(snd, r->u.n);
        } else {
            n_div = compare_and_feed(r, snd, NULL, div, err);
            if (n_div < 0) {
                plv_svm_sender_abort(snd);
                goto out;
            }
        }
    }
    eof.n_pages = (uint32_t)n_div;
    st->divergent_pages = eof.n_pages;
    st->same_pages = r->u.n - eof.n_pages;
    st->same_rate = r->u.n ? (double)st->same_pages / r->u.n : 1.0;

    /* What is left of the transfer once the comparing is over. */
    t0 = g_get_monotonic_time();
    if ((reqs ? plv_svm_delta_send(r, div, reqs, &eof.n_zero, err)
              : plv_svm_sender_finish(snd, &eof.n_zero, err)) < 0 ||
        send_devstate(r, &eof, err) < 0) {
        goto out;
    }
    st->zero_pages = eof.n_zero;
    eof.union_digest = r->union_digest;
    g_byte_array_set_size(r->tx, 0);
    plv_svm_encode_eof(r->tx, &r->hdr, &eof);
    if (plv_svm_run_send_tx(r, PLV_SVM_MSG_EOF, err) < 0) {
        goto out;
    }
    st->t_transfer_us += g_get_monotonic_time() - t0;

    t0 = g_get_monotonic_time();
    ret = wait_ack(r, &eof, err);
    st->t_apply_us += g_get_monotonic_time() - t0;
out:
    g_free(div);
    if (reqs) {
        g_array_unref(reqs);
    }
    return ret;
}

int plv_syncvm_leader_run(const PlvSyncvmConfig *cfg, PlvSyncvmChannel *ch,
                          PlvMemView *mv, PlvSyncvmStats *stats,
                          GError **err)
{
    PlvSyncvmStats local_stats;
    int64_t start = g_get_monotonic_time();
    SvmRun r;
    int ret = -1;

    plv_svm_run_init(&r, cfg, ch, mv, stats ? stats : &local_stats);
    r.hdr.flags = cfg->send_all_dirty ? PLV_SVM_FLAG_FULL : 0;
    for (unsigned attempt = 1; attempt <= r.max_attempts; attempt++) {
        GError *e = NULL;

        r.hdr.attempt = attempt;
        r.st->attempts = attempt;
        if (leader_attempt(&r, &e) == 0) {
            ret = 0;
            break;
        }
        plv_svm_ensure_error(&e);
        plv_svm_run_report(&r, e);
        plv_svm_run_send_nack(&r, e);
        if (plv_svm_error_is_fatal(e) || attempt == r.max_attempts) {
            g_propagate_prefixed_error(err, e, "syncvm leader, attempt %u: ",
                                       attempt);
            break;
        }
        g_error_free(e);
    }
    r.st->t_total_us = g_get_monotonic_time() - start;
    plv_svm_run_destroy(&r);
    return ret;
}
