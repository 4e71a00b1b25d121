/*
 * Memory view and dirty bitmaps (plover/memview.h), and the bitmap part of
 * the syncvm codec that ships them between replicas.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "plover/memview.h"
#include "plover/syncvm-msg.h"
#include "helper-run.h"

START_TEST(bitmap_basics)
{
    PlvBitmap a, b;

    plv_bitmap_init(&a, 130);
    plv_bitmap_init(&b, 130);
    ck_assert_uint_eq(plv_bitmap_n_words(130), 3);
    plv_bitmap_set(&a, 0);
    plv_bitmap_set(&a, 64);
    plv_bitmap_set(&b, 64);
    plv_bitmap_set(&b, 129);
    ck_assert(plv_bitmap_test(&a, 64));
    ck_assert(!plv_bitmap_test(&a, 129));
    plv_bitmap_or(&a, &b);
    ck_assert_uint_eq(plv_bitmap_count(&a), 3);
    ck_assert(plv_bitmap_test(&a, 129));
    plv_bitmap_clear_bit(&a, 0);
    ck_assert_uint_eq(plv_bitmap_count(&a), 2);
    a.words[2] = ~UINT64_C(0);
    plv_bitmap_mask_tail(&a);
    ck_assert_uint_eq(a.words[2], 3);
    plv_bitmap_zero(&a);
    ck_assert_uint_eq(plv_bitmap_count(&a), 0);
    plv_bitmap_destroy(&a);
    plv_bitmap_destroy(&b);
}
END_TEST

START_TEST(region_checks)
{
    PlvMemView *mv = plv_memview_new();
    static uint8_t mem[8 * 4096] __attribute__((aligned(4096)));
    GError *err = NULL;

    ck_assert_int_eq(plv_memview_add_region(mv, 7, 4096, 8, mem, &err), 0);
    ck_assert_int_eq(plv_memview_add_region(mv, 7, 4096, 8, mem, &err), -1);
    ck_assert_ptr_nonnull(strstr(err->message, "duplicate"));
    g_clear_error(&err);
    ck_assert_int_eq(plv_memview_add_region(mv, 8, 3000, 8, mem, &err), -1);
    g_clear_error(&err);
    ck_assert_int_eq(plv_memview_add_region(mv, 8, 4096, 0, mem, &err), -1);
    g_clear_error(&err);
    ck_assert_int_eq(plv_memview_add_region(mv, 8, 4096, 8, NULL, &err), -1);
    g_clear_error(&err);
    /* The view as a whole stays under 2^32 pages. */
    ck_assert_int_eq(plv_memview_add_region(mv, 8, 4096, UINT32_MAX - 7, mem,
                                            &err), -1);
    g_clear_error(&err);
    ck_assert_int_eq(plv_memview_add_region(mv, 9, 512, 64, mem, &err), 1);
    ck_assert_uint_eq(plv_memview_n_regions(mv), 2);
    ck_assert_int_eq(plv_memview_find(mv, 9), 1);
    ck_assert_int_eq(plv_memview_find(mv, 10), -1);
    ck_assert_uint_eq(plv_memview_total_pages(mv), 72);
    ck_assert_ptr_eq(plv_memview_page(plv_memview_region(mv, 0), 3),
                     mem + 3 * 4096);

    /* A write straddling a page boundary dirties both pages. */
    plv_memview_mark_dirty(mv, 0, 4095, 2);
    plv_memview_mark_dirty(mv, 1, 0, 512 * 3);
    ck_assert_uint_eq(plv_memview_dirty_count(mv), 5);
    ck_assert(plv_bitmap_test(&plv_memview_region(mv, 0)->dirty, 1));
    plv_memview_clear_dirty(mv);
    ck_assert_uint_eq(plv_memview_dirty_count(mv), 0);
    plv_memview_free(mv);
}
END_TEST

START_TEST(same_layout)
{
    static uint8_t mem[16 * 4096];
    PlvMemView *a = plv_memview_new(), *b = plv_memview_new();

    plv_memview_add_region(a, 1, 4096, 16, mem, NULL);
    plv_memview_add_region(b, 1, 4096, 16, mem, NULL);
    ck_assert(plv_memview_same_layout(a, b));
    plv_memview_add_region(a, 2, 4096, 1, mem, NULL);
    ck_assert(!plv_memview_same_layout(a, b));
    plv_memview_add_region(b, 2, 4096, 2, mem, NULL);
    ck_assert(!plv_memview_same_layout(a, b));
    plv_memview_free(a);
    plv_memview_free(b);
}
END_TEST

/* Two regions of 1000 and 70 pages over one buffer (contents unused). */
static PlvMemView *two_regions(void)
{
    static uint8_t mem[1000 * 512];
    PlvMemView *mv = plv_memview_new();

    plv_memview_add_region(mv, 1, 512, 1000, mem, NULL);
    plv_memview_add_region(mv, 2, 512, 70, mem, NULL);
    return mv;
}

static PlvBitmap *dirty_of(PlvMemView *mv)
{
    PlvBitmap *b = g_new(PlvBitmap, 2);

    b[0] = plv_memview_region(mv, 0)->dirty;
    b[1] = plv_memview_region(mv, 1)->dirty;
    return b;
}

static void fresh(PlvBitmap *u)
{
    plv_bitmap_init(&u[0], 1000);
    plv_bitmap_init(&u[1], 70);
}

static void roundtrip(PlvMemView *mv, size_t expect_len)
{
    PlvSvmHdr h = { .attempt = 1, .vid = 2, .epoch = 3 }, h2;
    GByteArray *out = g_byte_array_new();
    PlvBitmap *own = dirty_of(mv), u[2];
    const uint8_t *body;
    size_t len;

    plv_svm_encode_bitmap(out, &h, mv, own, &(PlvSvmBase){ 0 });
    /* + the device-state base every BITMAP ends with */
    ck_assert_uint_eq(out->len, expect_len + PLV_SVM_BASE_LEN);
    ck_assert_int_eq(plv_svm_get_hdr(out->data, out->len, &h2, &body, &len,
                                     NULL), 0);
    ck_assert_uint_eq(h2.epoch, 3);
    fresh(u);
    ck_assert_int_eq(plv_svm_decode_bitmap(body, len, mv, u, &(PlvSvmBase){ 0 }, NULL), 0);
    for (int r = 0; r < 2; r++) {
        ck_assert_mem_eq(u[r].words, own[r].words,
                         plv_bitmap_n_words(u[r].n_bits) * 8);
        plv_bitmap_destroy(&u[r]);
    }
    g_free(own);
    g_byte_array_unref(out);
}

START_TEST(bitmap_wire_sparse_and_raw)
{
    PlvMemView *mv = two_regions();
    size_t fixed = PLV_SVM_HDR_LEN + 4 + 2 * PLV_SVM_BITMAP_REG_LEN;

    /* Sparse: two non-zero words in region 0, none in region 1. */
    plv_memview_mark_dirty(mv, 0, 0, 512);
    plv_memview_mark_dirty(mv, 0, 999 * 512, 512);
    roundtrip(mv, fixed + 2 * 12);
    /* Dense: every word of both regions non-zero -> raw. */
    for (uint64_t p = 0; p < 1000; p += 17) {
        plv_memview_mark_dirty(mv, 0, p * 512, 512);
    }
    for (uint64_t p = 0; p < 70; p += 3) {
        plv_memview_mark_dirty(mv, 1, p * 512, 512);
    }
    roundtrip(mv, fixed + (16 + 2) * 8);
    plv_memview_free(mv);
}
END_TEST

static int decode_after(PlvMemView *mv, GByteArray *msg, PlvBitmap *u,
                        GError **err)
{
    const uint8_t *body;
    size_t len;
    PlvSvmHdr h;

    if (plv_svm_get_hdr(msg->data, msg->len, &h, &body, &len, err) < 0) {
        return -1;
    }
    return plv_svm_decode_bitmap(body, len, mv, u, &(PlvSvmBase){ 0 }, err);
}

START_TEST(bitmap_wire_rejects)
{
    PlvMemView *mv = two_regions(), *other = plv_memview_new();
    PlvSvmHdr h = { .attempt = 1 };
    GByteArray *msg = g_byte_array_new();
    PlvBitmap *own, u[2];
    GError *err = NULL;
    static uint8_t mem[1000 * 512];
    size_t good_len;

    plv_memview_mark_dirty(mv, 0, 0, 512);
    plv_memview_mark_dirty(mv, 1, 69 * 512, 512);
    own = dirty_of(mv);
    plv_svm_encode_bitmap(msg, &h, mv, own, &(PlvSvmBase){ 0 });
    good_len = msg->len;
    fresh(u);

    /* Every truncation is rejected and leaves the union untouched. */
    for (size_t cut = PLV_SVM_HDR_LEN; cut < good_len; cut++) {
        g_byte_array_set_size(msg, cut);
        ck_assert_int_eq(decode_after(mv, msg, u, &err), -1);
        ck_assert_int_eq(err->code, PLV_SVM_ERROR_MALFORMED);
        g_clear_error(&err);
        ck_assert_uint_eq(plv_bitmap_count(&u[0]) + plv_bitmap_count(&u[1]),
                          0);
    }
    g_byte_array_set_size(msg, 0);
    plv_svm_encode_bitmap(msg, &h, mv, own, &(PlvSvmBase){ 0 });
    /* Trailing garbage. */
    g_byte_array_append(msg, (const guint8 *)"x", 1);
    ck_assert_int_eq(decode_after(mv, msg, u, &err), -1);
    g_clear_error(&err);
    g_byte_array_set_size(msg, good_len);
    /*
     * A bit past the end of region 1 (70 pages): its last (sparse) entry
     * is word 1, pages 64..127; set page 70, bit 6 of the word's low byte.
     */
    msg->data[good_len - PLV_SVM_BASE_LEN - 8] |= 1 << 6;
    ck_assert_int_eq(decode_after(mv, msg, u, &err), -1);
    ck_assert_ptr_nonnull(strstr(err->message, "beyond"));
    g_clear_error(&err);
    ck_assert_uint_eq(plv_bitmap_count(&u[0]), 0);

    /* A different layout is a LAYOUT error. */
    plv_memview_add_region(other, 1, 512, 1000, mem, NULL);
    plv_memview_add_region(other, 2, 512, 71, mem, NULL);
    g_byte_array_set_size(msg, 0);
    plv_svm_encode_bitmap(msg, &h, mv, own, &(PlvSvmBase){ 0 });
    ck_assert_int_eq(decode_after(other, msg, u, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_LAYOUT);
    g_clear_error(&err);

    /* Wrong version. */
    msg->data[0] = 9;
    ck_assert_int_eq(decode_after(mv, msg, u, &err), -1);
    ck_assert_int_eq(err->code, PLV_SVM_ERROR_VERSION);
    g_clear_error(&err);

    plv_bitmap_destroy(&u[0]);
    plv_bitmap_destroy(&u[1]);
    g_free(own);
    g_byte_array_unref(msg);
    plv_memview_free(mv);
    plv_memview_free(other);
}
END_TEST

START_TEST(union_order)
{
    PlvMemView *mv = two_regions();
    PlvBitmap *own;
    PlvSvmUnion u;

    plv_memview_mark_dirty(mv, 1, 5 * 512, 512);
    plv_memview_mark_dirty(mv, 0, 900 * 512, 512);
    plv_memview_mark_dirty(mv, 0, 3 * 512, 512);
    own = dirty_of(mv);
    plv_svm_union_build(&u, mv, own);
    ck_assert_uint_eq(u.n, 3);
    ck_assert_uint_eq(u.refs[0].region, 0);
    ck_assert_uint_eq(u.refs[0].page, 3);
    ck_assert_uint_eq(u.refs[1].page, 900);
    ck_assert_uint_eq(u.refs[2].region, 1);
    ck_assert_uint_eq(u.refs[2].page, 5);
    plv_svm_union_clear(&u);
    g_free(own);
    plv_memview_free(mv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memview");
    TCase *tc = tcase_create("memview");

    tcase_add_test(tc, bitmap_basics);
    tcase_add_test(tc, region_checks);
    tcase_add_test(tc, same_layout);
    tcase_add_test(tc, bitmap_wire_sparse_and_raw);
    tcase_add_test(tc, bitmap_wire_rejects);
    tcase_add_test(tc, union_order);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
