/*
 * libFuzzer target for the syncvm message decoders (syncvm-msg.h).
 *
 * The first byte picks the message, the rest is its body (after the
 * common header, which plv_svm_get_hdr checks on its own). The decoders
 * run against a fixed memory view (two regions, 4 KiB and 512-byte
 * pages, every page in the union). What decodes is encoded again and
 * must give the same bytes back (the codec is its own oracle), and every
 * byte a decoded PAGES record points at is read, so that the sanitizers
 * see any pointer past the data. The device-state path (a zstd frame
 * against a base, into exactly the announced length) is fuzzed too, and
 * so are the agreement's HELLO, REPLY, SKIP and ROUND.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "plover/bytes.h"
#include "plover/syncvm-agree.h"
#include "plover/syncvm-msg.h"
#include "plover/zstd-codec.h"
#include "fuzz-syncvm.h"

static uint8_t mem_a[64 * 4096], mem_b[100 * 512];

typedef struct Ctx {
    PlvMemView *mv;
    PlvBitmap all[2];
    PlvSvmUnion u;
    PlvZstd *z;
    GByteArray *decoded, *out;
} Ctx;

static Ctx *ctx(void)
{
    static Ctx c;

    if (!c.mv) {
        c.mv = plv_memview_new();
        plv_memview_add_region(c.mv, FUZZ_SVM_REGION_A, 4096, 64, mem_a, NULL);
        plv_memview_add_region(c.mv, FUZZ_SVM_REGION_B, 512, 100, mem_b, NULL);
        for (unsigned r = 0; r < 2; r++) {
            const PlvMemRegion *reg = plv_memview_region_const(c.mv, r);

            plv_bitmap_init(&c.all[r], reg->n_pages);
            for (uint64_t p = 0; p < reg->n_pages; p++) {
                plv_bitmap_set(&c.all[r], p);
            }
        }
        plv_svm_union_build(&c.u, c.mv, c.all);
        c.z = plv_zstd_new(1);
        c.decoded = g_byte_array_new();
        c.out = g_byte_array_new();
    }
    return &c;
}

/* The re-encoded body (after its header) must be the input. */
static void same_body(const GByteArray *out, const uint8_t *body, size_t len)
{
    if (out->len != PLV_SVM_HDR_LEN + len ||
        memcmp(out->data + PLV_SVM_HDR_LEN, body, len) != 0) {
        abort();
    }
}

/*
 * The records land in an array with exactly the room the union has left
 * after min_index, as on a secondary that staged that much already: the
 * sanitizer sees a record stored past it.
 */
static void fuzz_pages(Ctx *c, const uint8_t *body, size_t len, bool delta,
                       uint32_t min_index)
{
    uint32_t room = MIN(c->u.n - min_index, PLV_SVM_MAX_PAGE_RECS);
    PlvSvmPageRec *recs = g_new(PlvSvmPageRec, MAX(room, 1));
    PlvSvmHdr h = { 0 };
    uint32_t n, sum = 0;
    volatile uint8_t sink = 0;

    if (plv_svm_decode_pages(body, len, c->mv, &c->u, min_index, delta, c->z,
                             c->decoded, recs, &n, NULL) < 0) {
        g_free(recs);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ps = plv_memview_region_const(c->mv,
                                               c->u.refs[recs[i].index].region)
                      ->page_size;
        size_t dl = plv_svm_rec_data_len(&recs[i], ps);

        for (size_t k = 0; k < dl; k++) {
            sink ^= recs[i].data[k];
        }
        sum += dl;
    }
    (void)sink;
    if (body[4] == PLV_SVM_ENC_RAW) {
        g_byte_array_set_size(c->out, 0);
        plv_svm_encode_pages_head(c->out, &h, recs, n, PLV_SVM_ENC_RAW, sum);
        for (uint32_t i = 0; i < n; i++) {
            if (recs[i].data) {
                uint32_t ps = plv_memview_region_const(
                    c->mv, c->u.refs[recs[i].index].region)->page_size;

                g_byte_array_append(c->out, recs[i].data,
                                    plv_svm_rec_data_len(&recs[i], ps));
            }
        }
        same_body(c->out, body, len);
    }
    g_free(recs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Ctx *c = ctx();
    PlvSvmHdr h = { 0 };
    const uint8_t *body, *d;
    size_t len, dl;
    uint32_t n, code, first, count;
    uint64_t u64;
    char *reason;
    PlvSvmEof eof;
    PlvSvmBase base;

    if (size < 1) {
        return 0;
    }
    body = data + 1;
    len = size - 1;
    g_byte_array_set_size(c->out, 0);
    switch (data[0] % FUZZ_SVM_KINDS) {
    case FUZZ_SVM_BITMAP: {
        PlvBitmap b[2];

        for (unsigned r = 0; r < 2; r++) {
            plv_bitmap_init(&b[r], c->all[r].n_bits);
        }
        if (plv_svm_decode_bitmap(body, len, c->mv, b, &base, NULL) == 0) {
            /* the encoding (raw or sparse) is the encoder's choice: check
             * the bits and the base survive a round trip instead */
            PlvBitmap b2[2];

            plv_svm_encode_bitmap(c->out, &h, c->mv, b, &base);
            for (unsigned r = 0; r < 2; r++) {
                plv_bitmap_init(&b2[r], c->all[r].n_bits);
            }
            if (plv_svm_decode_bitmap(c->out->data + PLV_SVM_HDR_LEN,
                                      c->out->len - PLV_SVM_HDR_LEN, c->mv,
                                      b2, &base, NULL) < 0) {
                abort();
            }
            for (unsigned r = 0; r < 2; r++) {
                if (memcmp(b[r].words, b2[r].words,
                           plv_bitmap_n_words(b[r].n_bits) * 8) != 0) {
                    abort();
                }
                plv_bitmap_destroy(&b2[r]);
            }
        }
        for (unsigned r = 0; r < 2; r++) {
            plv_bitmap_destroy(&b[r]);
        }
        break;
    }
    case FUZZ_SVM_HASHES: {
        PlvPageHash *hs = g_new(PlvPageHash, c->u.n);

        if (plv_svm_decode_hashes(body, len, 0, c->u.n, hs, &n, NULL) == 0) {
            plv_svm_encode_hashes(c->out, &h, 0, hs, n);
            same_body(c->out, body, len);
        }
        g_free(hs);
        break;
    }
    case FUZZ_SVM_PAGES:
        /* the selector's high bits: how much the secondary staged before */
        fuzz_pages(c, body, len, true, (data[0] / FUZZ_SVM_KINDS) % c->u.n);
        fuzz_pages(c, body, len, false, 0);
        break;
    case FUZZ_SVM_BLOCKREQ: {
        uint32_t *idx = g_new(uint32_t, PLV_SVM_MAX_BLOCKREQ);
        uint32_t *sb = g_new(uint32_t, PLV_SVM_MAX_BLOCKREQ *
                                       PLV_PAGE_SUPERBLOCKS);

        if (plv_svm_decode_blockreq(body, len, c->u.n, 0, idx, sb, &n,
                                    NULL) == 0) {
            plv_svm_encode_blockreq(c->out, &h, idx, sb, n);
            same_body(c->out, body, len);
        }
        g_free(idx);
        g_free(sb);
        break;
    }
    case FUZZ_SVM_BLOCKHASHES: {
        uint8_t *masks;
        uint32_t *blocks;

        /* Told the request its own first words name (bounded). */
        if (len < 8) {
            break;
        }
        first = plv_get_u32(body);
        count = plv_get_u32(body + 4) % (PLV_SVM_MAX_BLOCKREQ + 1);
        masks = g_new(uint8_t, MAX(count, 1));
        blocks = g_new(uint32_t, (size_t)MAX(count, 1) * PLV_PAGE_BLOCKS);
        if (plv_svm_decode_blockhashes(body, len, first, count, masks, blocks,
                                       NULL) == 0) {
            plv_svm_encode_blockhashes(c->out, &h, first, masks, blocks,
                                       count);
            same_body(c->out, body, len);
        }
        g_free(masks);
        g_free(blocks);
        break;
    }
    case FUZZ_SVM_DEVSTATE:
        if (plv_svm_decode_devstate(body, len, 0, 1 << 20, &d, &dl,
                                    NULL) == 0 &&
            (d != body + 8 || dl != len - 8)) {
            abort();
        }
        break;
    case FUZZ_SVM_EOF:
        if (plv_svm_decode_eof(body, len, &eof, NULL) == 0) {
            plv_svm_encode_eof(c->out, &h, &eof);
            same_body(c->out, body, len);
        }
        break;
    case FUZZ_SVM_ACK:
        if (plv_svm_decode_ack(body, len, &n, &u64, NULL) == 0) {
            plv_svm_encode_ack(c->out, &h, n, u64);
            same_body(c->out, body, len);
        }
        break;
    case FUZZ_SVM_NACK:
        if (plv_svm_decode_nack(body, len, &code, &reason, NULL) == 0) {
            g_free(reason);
        }
        break;
    case FUZZ_SVM_DEVSTATE_DELTA: {
        /* out_len u32 (bounded), then a frame against a fixed base */
        uint8_t *out;
        GError *err = NULL;

        if (len < 4) {
            break;
        }
        count = plv_get_u32(body) % (1u << 20);
        out = g_malloc(MAX(count, 1));
        if (plv_zstd_decompress(c->z, out, count, body + 4, len - 4,
                                fuzz_svm_base(), FUZZ_SVM_BASE_LEN,
                                &err) < 0 && !err) {
            abort();    /* a failure always says why */
        }
        g_clear_error(&err);
        g_free(out);
        break;
    }
    /* The agreement has no header of its own: the whole input after the
     * selector is the message, and what decodes encodes to the same. */
    case FUZZ_SVM_HELLO: {
        PlvSyncHello hello;
        uint8_t again[PLV_SYNC_HELLO_LEN];

        if (plv_sync_hello_decode(data + 1, size - 1, &hello)) {
            plv_sync_hello_encode(&hello, again);
            if (memcmp(again, data + 1, sizeof(again)) != 0) {
                abort();
            }
        }
        break;
    }
    case FUZZ_SVM_REPLY: {
        PlvSyncReply reply;
        uint8_t again[PLV_SYNC_REPLY_LEN];

        if (plv_sync_reply_decode(data + 1, size - 1, &reply)) {
            plv_sync_reply_encode(&reply, again);
            if (memcmp(again, data + 1, sizeof(again)) != 0) {
                abort();
            }
        }
        break;
    }
    case FUZZ_SVM_SKIP: {
        uint8_t again[PLV_SYNC_SKIP_LEN];

        if (plv_sync_skip_decode(data + 1, size - 1, &u64)) {
            plv_sync_skip_encode(u64, again);
            if (memcmp(again, data + 1, sizeof(again)) != 0) {
                abort();
            }
        }
        break;
    }
    case FUZZ_SVM_ROUND: {
        /* The round a target waits for: that of the message, or the next. */
        uint32_t want = size > 4 ? plv_get_u32(data + 1) + (data[size - 1] & 1) : 1;
        uint8_t again[PLV_SYNC_ROUND_LEN];
        PlvSyncRound rd;

        if (plv_sync_round_decode(data + 1, size - 1, want, &rd)) {
            plv_sync_round_encode(&rd, again);
            if (memcmp(again, data + 1, sizeof(again)) != 0 ||
                rd.round != (rd.final ? want - 1 : want)) {
                abort();
            }
        }
        break;
    }
    }
    return 0;
}
