/*
 * syncvm, leader side: sub-page deltas. Most divergent pages differ in a
 * few bytes (a timestamp, a counter, a list pointer): measured on the kvd
 * load, 80 % of them in 64 bytes or fewer. So once the fingerprints are
 * compared, for each step of the union with divergent pages, the leader
 * sends the secondary its super-block fingerprints of those pages
 * (BLOCKREQ, zero pages left out: they go as ZERO records); the
 * secondary answers with
 * its block fingerprints of the super-blocks that differ only (most of a
 * page is equal, so this halves what a flat list of block fingerprints
 * would cost, in the same single round trip); then the leader sends each
 * page as the blocks whose fingerprints differ (DELTA), or whole (DATA)
 * when that is no larger.
 *
 * Step by step in lockstep (request, answer, pages), never two requests
 * out at once: over TCP, sends block when the peer does not read, and
 * the secondary reads nothing while it sends its fingerprints; requests
 * sent while the leader still received HASHES, or answers streamed while
 * the leader sent PAGES, could fill both directions' buffers and leave
 * both ends blocked in a send. A round trip per 4096 union pages costs
 * nothing next to what the step moves.
 *
 * The block fingerprints are 32-bit hints. The secondary rebuilds each
 * page from its own copy and the blocks, and checks the result against
 * the page's 128-bit keyed fingerprint before anything is applied, as for
 * a whole page; a block whose fingerprints collide therefore fails the
 * attempt, and the next attempt (another seed) does not repeat it.
 */
#include "syncvm/syncvm-int.h"

#include <string.h>

/* Asks for the block fingerprints of the non-zero pages of step q. */
static int delta_request(SvmRun *r, const uint32_t *div, SvmDeltaReq *q,
                         GError **err)
{
    uint32_t begin = q->div_begin, end = q->div_end;
    uint64_t seed = plv_svm_run_block_seed(r);
    uint32_t *idx, *sb;
    int ret = 0;

    q->n_req = 0;
    idx = g_new(uint32_t, end - begin);
    sb = g_new(uint32_t, (size_t)(end - begin) * PLV_PAGE_SUPERBLOCKS);
    for (uint32_t k = begin; k < end; k++) {
        uint32_t ps;
        const uint8_t *page;

        if (r->zero[div[k]]) {
            continue;
        }
        page = plv_svm_run_page(r, div[k], &ps);
        plv_block_hashes(seed, page, ps, PLV_PAGE_SUPERBLOCKS,
                         sb + (size_t)q->n_req * PLV_PAGE_SUPERBLOCKS);
        idx[q->n_req++] = div[k];
    }
    /* A step is at most SVM_HASH_STEP (= PLV_SVM_MAX_BLOCKREQ) pages. */
    g_assert(q->n_req <= PLV_SVM_MAX_BLOCKREQ);
    if (q->n_req) {
        q->first_req = idx[0];
        g_byte_array_set_size(r->tx, 0);
        plv_svm_encode_blockreq(r->tx, &r->hdr, idx, sb, q->n_req);
        ret = plv_svm_run_send_tx(r, PLV_SVM_MSG_BLOCKREQ, err);
    }
    g_free(idx);
    g_free(sb);
    return ret;
}

static int recv_blockhashes(SvmRun *r, const SvmDeltaReq *q, uint8_t *masks,
                            uint32_t *peer, GError **err)
{
    const uint8_t *body;
    size_t len;

    if (plv_svm_run_recv_expect(r, PLV_SVM_MSG_BLOCKHASHES,
                                "waiting for BLOCKHASHES", &body, &len,
                                err) < 0) {
        return -1;
    }
    return plv_svm_decode_blockhashes(body, len, q->first_req, q->n_req,
                                      masks, peer, err);
}

/* PAGES being filled: records and their data, copied. */
typedef struct PagesOut {
    PlvSvmPageRec recs[SVM_PAGES_PER_MSG];
    uint32_t n;
    GByteArray *data, *scratch;
} PagesOut;

static int pages_flush(SvmRun *r, PagesOut *o, GError **err)
{
    struct iovec iov = { .iov_base = o->data->data, .iov_len = o->data->len };
    int ret;

    if (!o->n) {
        return 0;
    }
    ret = plv_svm_run_send_pages(r, r->z, r->tx, o->scratch, o->recs, o->n,
                                 &iov, 1, o->data->len, err);
    o->n = 0;
    g_byte_array_set_size(o->data, 0);
    return ret;
}

/*
 * The record for divergent page idx, given the secondary's mask of
 * differing super-blocks and its block fingerprints of those (peer NULL:
 * a zero page); appends its data.
 */
static int pages_add(SvmRun *r, PagesOut *o, uint32_t idx, uint8_t sb_mask,
                     const uint32_t *peer, uint64_t seed, GError **err)
{
    uint32_t ps;
    const uint8_t *page = plv_svm_run_page(r, idx, &ps);
    uint32_t bs = ps / PLV_PAGE_BLOCKS;
    size_t sbs = ps / PLV_PAGE_SUPERBLOCKS;
    PlvSvmPageRec rec = { .index = idx, .hash = r->hashes[idx] };
    size_t dl;

    if (!peer) {
        rec.kind = PLV_SVM_PAGE_ZERO;
    } else {
        for (unsigned k = 0; k < PLV_PAGE_SUPERBLOCKS; k++) {
            uint32_t own[PLV_SUPERBLOCK_BLOCKS];
            const uint32_t *theirs = peer + k * PLV_SUPERBLOCK_BLOCKS;

            if (!(sb_mask & (1u << k))) {
                continue;
            }
            plv_block_hashes(seed, page + k * sbs, sbs, PLV_SUPERBLOCK_BLOCKS,
                             own);
            for (unsigned b = 0; b < PLV_SUPERBLOCK_BLOCKS; b++) {
                rec.mask |= (uint64_t)(own[b] != theirs[b])
                            << (k * PLV_SUPERBLOCK_BLOCKS + b);
            }
        }
        /* Whole when blocks would not be smaller (the mask costs 8), or
         * when every fingerprint matched a page that differs. */
        rec.kind = rec.mask &&
                   (size_t)__builtin_popcountll(rec.mask) * bs + 8 < ps
                   ? PLV_SVM_PAGE_DELTA : PLV_SVM_PAGE_DATA;
    }
    dl = plv_svm_rec_data_len(&rec, ps);
    if (o->n == SVM_PAGES_PER_MSG ||
        (o->n && o->data->len + dl > SVM_CHUNK_BYTES)) {
        if (pages_flush(r, o, err) < 0) {
            return -1;
        }
    }
    if (rec.kind == PLV_SVM_PAGE_DATA) {
        g_byte_array_append(o->data, page, ps);
    } else if (rec.kind == PLV_SVM_PAGE_DELTA) {
        for (uint64_t m = rec.mask; m; m &= m - 1) {
            g_byte_array_append(o->data, page + __builtin_ctzll(m) * bs, bs);
        }
        r->st->delta_pages++;
    }
    o->recs[o->n++] = rec;
    return 0;
}

int plv_svm_delta_send(SvmRun *r, const uint32_t *div, GArray *reqs,
                       uint32_t *n_zero, GError **err)
{
    uint64_t seed = plv_svm_run_block_seed(r);
    PagesOut o = { .n = 0 };
    uint32_t *peer = NULL;
    uint8_t *masks = NULL;
    int ret = -1;

    o.data = g_byte_array_new();
    o.scratch = g_byte_array_new();
    *n_zero = 0;
    for (guint i = 0; i < reqs->len; i++) {
        SvmDeltaReq *q = &g_array_index(reqs, SvmDeltaReq, i);
        uint32_t got = 0;

        if (delta_request(r, div, q, err) < 0) {
            goto out;
        }
        if (q->n_req) {
            peer = g_renew(uint32_t, peer, (size_t)q->n_req * PLV_PAGE_BLOCKS);
            masks = g_renew(uint8_t, masks, q->n_req);
            if (recv_blockhashes(r, q, masks, peer, err) < 0) {
                goto out;
            }
        }
        for (uint32_t k = q->div_begin; k < q->div_end; k++) {
            bool zero = r->zero[div[k]];

            if (pages_add(r, &o, div[k], zero ? 0 : masks[got],
                          zero ? NULL : peer + (size_t)got * PLV_PAGE_BLOCKS,
                          seed, err) < 0) {
                goto out;
            }
            got += !zero;
            *n_zero += zero;
        }
        /* The step's pages are out before the next request. */
        if (pages_flush(r, &o, err) < 0) {
            goto out;
        }
    }
    ret = 0;
out:
    g_free(peer);
    g_free(masks);
    g_byte_array_unref(o.data);
    g_byte_array_unref(o.scratch);
    return ret;
}
