/*
 * Writes one valid input per syncvm message kind (fuzz-syncvm.h: the
 * selector byte, then the body) into the directory given as argv[1]: the
 * fuzzer's seed corpus. PAGES come raw and zstd, with DATA, ZERO and
 * DELTA records; the device state as a delta against the fixed base.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plover/bytes.h"
#include "plover/syncvm-agree.h"
#include "plover/syncvm-msg.h"
#include "plover/zstd-codec.h"
#include "fuzz-syncvm.h"

static const char *dir;

/* Writes sel + the body of the message in m (after its header). */
static void put(const char *name, uint8_t sel, const GByteArray *m)
{
    GByteArray *b = g_byte_array_new();
    char *path = g_strdup_printf("%s/%s", dir, name);
    GError *err = NULL;

    g_byte_array_append(b, &sel, 1);
    g_byte_array_append(b, m->data + PLV_SVM_HDR_LEN,
                        m->len - PLV_SVM_HDR_LEN);
    if (!g_file_set_contents(path, (const char *)b->data, b->len, &err)) {
        fprintf(stderr, "%s: %s\n", path, err->message);
        exit(1);
    }
    g_free(path);
    g_byte_array_unref(b);
}

int main(int argc, char **argv)
{
    static uint8_t page[4096];
    PlvSvmHdr h = { .attempt = 1, .vid = 2, .epoch = 3 };
    GByteArray *m = g_byte_array_new(), *raw = g_byte_array_new();
    PlvZstd *z = plv_zstd_new(1);
    PlvPageHash hs[4] = { { 1, 2 }, { 3, 4 }, { 5, 6 }, { 7, 8 } };
    PlvSvmPageRec recs[3] = {
        { .index = 0, .kind = PLV_SVM_PAGE_DATA, .hash = { 9, 9 } },
        { .index = 2, .kind = PLV_SVM_PAGE_ZERO },
        { .index = 70, .kind = PLV_SVM_PAGE_DELTA, .mask = 0x8001 },
    };
    uint32_t data_len = 4096 + 2 * (512 / PLV_PAGE_BLOCKS);
    uint32_t idx[2] = { 3, 65 }, sb[2 * PLV_PAGE_SUPERBLOCKS];
    uint32_t blocks[2 * PLV_PAGE_BLOCKS] = { 0 };
    uint8_t masks[2] = { 0x05, 0x80 };
    PlvMemView *mv = plv_memview_new();
    static uint8_t mem_a[64 * 4096], mem_b[100 * 512];
    PlvBitmap b[2];
    PlvSvmBase base = { .len = 4096, .hash = { 11, 12 } };
    PlvSvmEof eof = { .n_pages = 3, .n_zero = 1, .devstate_len = 4096,
                      .devstate_enc = PLV_SVM_ENC_ZSTD_BASE,
                      .devstate_wire_len = 40 };
    GByteArray *blob = g_byte_array_new();

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    g_mkdir_with_parents(dir, 0755);
    for (unsigned i = 0; i < sizeof(page); i++) {
        page[i] = (uint8_t)(i / 7);
    }

    plv_memview_add_region(mv, FUZZ_SVM_REGION_A, 4096, 64, mem_a, NULL);
    plv_memview_add_region(mv, FUZZ_SVM_REGION_B, 512, 100, mem_b, NULL);
    plv_bitmap_init(&b[0], 64);
    plv_bitmap_init(&b[1], 100);
    plv_bitmap_set(&b[0], 5);
    plv_bitmap_set(&b[1], 99);
    plv_svm_encode_bitmap(m, &h, mv, b, &base);
    put("bitmap", FUZZ_SVM_BITMAP, m);

    g_byte_array_set_size(m, 0);
    plv_svm_encode_hashes(m, &h, 0, hs, 4);
    put("hashes", FUZZ_SVM_HASHES, m);

    g_byte_array_append(raw, page, 4096);
    g_byte_array_append(raw, page, 2 * (512 / PLV_PAGE_BLOCKS));
    g_byte_array_set_size(m, 0);
    plv_svm_encode_pages_head(m, &h, recs, 3, PLV_SVM_ENC_RAW, data_len);
    g_byte_array_append(m, raw->data, raw->len);
    put("pages-raw", FUZZ_SVM_PAGES, m);
    g_byte_array_set_size(m, 0);
    plv_svm_encode_pages_head(m, &h, recs, 3, PLV_SVM_ENC_ZSTD, data_len);
    plv_zstd_compress(z, m, raw->data, raw->len, NULL, 0);
    put("pages-zstd", FUZZ_SVM_PAGES, m);

    for (unsigned i = 0; i < G_N_ELEMENTS(sb); i++) {
        sb[i] = i * 0x01010101u;
    }
    g_byte_array_set_size(m, 0);
    plv_svm_encode_blockreq(m, &h, idx, sb, 2);
    put("blockreq", FUZZ_SVM_BLOCKREQ, m);
    for (unsigned i = 0; i < G_N_ELEMENTS(blocks); i++) {
        blocks[i] = i;
    }
    g_byte_array_set_size(m, 0);
    plv_svm_encode_blockhashes(m, &h, 3, masks, blocks, 2);
    put("blockhashes", FUZZ_SVM_BLOCKHASHES, m);

    g_byte_array_set_size(m, 0);
    plv_svm_encode_devstate_head(m, &h, 0);
    g_byte_array_append(m, page, 100);
    put("devstate", FUZZ_SVM_DEVSTATE, m);
    g_byte_array_set_size(m, 0);
    plv_svm_encode_eof(m, &h, &eof);
    put("eof", FUZZ_SVM_EOF, m);
    g_byte_array_set_size(m, 0);
    plv_svm_encode_ack(m, &h, 3, 4096);
    put("ack", FUZZ_SVM_ACK, m);
    g_byte_array_set_size(m, 0);
    plv_svm_encode_nack(m, &h, 1, "malformed");
    put("nack", FUZZ_SVM_NACK, m);

    /* The base with a few bytes changed, against the base. */
    g_byte_array_append(blob, fuzz_svm_base(), FUZZ_SVM_BASE_LEN);
    blob->data[100] ^= 1;
    blob->data[3000] ^= 0x40;
    g_byte_array_set_size(m, PLV_SVM_HDR_LEN);
    plv_append_u32(m, blob->len);
    plv_zstd_compress(z, m, blob->data, blob->len, fuzz_svm_base(),
                      FUZZ_SVM_BASE_LEN);
    put("devstate-delta", FUZZ_SVM_DEVSTATE_DELTA, m);

    /* The agreement: a leader's HELLO, the secondary's REPLY and SKIP, and
     * a full copy's ROUNDs. */
    {
        PlvSyncHello hello = { .epoch = 42, .has_vm = true, .full = false, .last = 41 };
        PlvSyncReply reply = { .has_vm = true, .last = 41 };

        g_byte_array_set_size(m, PLV_SVM_HDR_LEN + PLV_SYNC_HELLO_LEN);
        plv_sync_hello_encode(&hello, m->data + PLV_SVM_HDR_LEN);
        put("hello", FUZZ_SVM_HELLO, m);
        g_byte_array_set_size(m, PLV_SVM_HDR_LEN + PLV_SYNC_REPLY_LEN);
        plv_sync_reply_encode(&reply, m->data + PLV_SVM_HDR_LEN);
        put("reply", FUZZ_SVM_REPLY, m);
        g_byte_array_set_size(m, PLV_SVM_HDR_LEN + PLV_SYNC_SKIP_LEN);
        plv_sync_skip_encode(43, m->data + PLV_SVM_HDR_LEN);
        put("skip", FUZZ_SVM_SKIP, m);
        g_byte_array_set_size(m, PLV_SVM_HDR_LEN + PLV_SYNC_ROUND_LEN);
        plv_sync_round_encode(&(PlvSyncRound){ .round = 2 }, m->data + PLV_SVM_HDR_LEN);
        put("round", FUZZ_SVM_ROUND, m);
        plv_sync_round_encode(&(PlvSyncRound){ .round = 3, .final = true },
                              m->data + PLV_SVM_HDR_LEN);
        put("round-final", FUZZ_SVM_ROUND, m);
    }

    plv_zstd_free(z);
    g_byte_array_unref(blob);
    g_byte_array_unref(raw);
    g_byte_array_unref(m);
    plv_bitmap_destroy(&b[0]);
    plv_bitmap_destroy(&b[1]);
    plv_memview_free(mv);
    return 0;
}
