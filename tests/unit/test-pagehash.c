/*
 * Keyed page fingerprints and the hashing pool (plover/pagehash.h).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "plover/pagehash.h"
#include "helper-run.h"

static void key_of(PlvHashKey *k, uint8_t fill)
{
    uint8_t session[32];

    memset(session, fill, sizeof(session));
    plv_hash_key_derive(k, session, sizeof(session));
}

static void fill_page(uint8_t *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = (seed + i) * UINT64_C(0x9e3779b97f4a7c15);

        memcpy(p + i, &v, 8);
    }
}

START_TEST(key_derivation)
{
    PlvHashKey a, b, c;

    key_of(&a, 1);
    key_of(&b, 1);
    key_of(&c, 2);
    ck_assert_mem_eq(a.secret, b.secret, PLV_HASH_SECRET_LEN);
    ck_assert(memcmp(a.secret, c.secret, PLV_HASH_SECRET_LEN) != 0);
    /* The secret is not the session key itself. */
    ck_assert(a.secret[0] != 1 || a.secret[1] != 1 || a.secret[2] != 1);
}
END_TEST

START_TEST(fingerprints)
{
    static uint8_t page[4096], other[4096];
    PlvHashKey a, c;
    PlvPageHash h1, h2;

    key_of(&a, 1);
    key_of(&c, 2);
    fill_page(page, sizeof(page), 42);
    memcpy(other, page, sizeof(page));
    h1 = plv_page_hash(&a, page, sizeof(page));
    h2 = plv_page_hash(&a, other, sizeof(other));
    ck_assert(plv_page_hash_equal(&h1, &h2));
    /* One flipped bit anywhere changes the fingerprint. */
    for (size_t bit = 0; bit < sizeof(page) * 8; bit += 509) {
        other[bit / 8] ^= 1 << (bit % 8);
        h2 = plv_page_hash(&a, other, sizeof(other));
        ck_assert(!plv_page_hash_equal(&h1, &h2));
        other[bit / 8] ^= 1 << (bit % 8);
    }
    /* Another session, another fingerprint of the same page. */
    h2 = plv_page_hash(&c, page, sizeof(page));
    ck_assert(!plv_page_hash_equal(&h1, &h2));
}
END_TEST

START_TEST(zero_fast_path)
{
    static uint8_t page[8192];
    PlvHashKey k;
    PlvPageHash h;
    bool z;

    key_of(&k, 3);
    ck_assert(plv_page_is_zero(page, sizeof(page)));
    h = plv_page_hash_zero_aware(&k, page, 4096, &z);
    ck_assert(z);
    ck_assert(plv_page_hash_equal(&h, &k.zero4k));
    {
        PlvPageHash slow = plv_page_hash(&k, page, 4096);

        ck_assert(plv_page_hash_equal(&h, &slow));
    }
    /* Other sizes take the normal path but flag zero all the same. */
    h = plv_page_hash_zero_aware(&k, page, 8192, &z);
    ck_assert(z);
    {
        PlvPageHash slow = plv_page_hash(&k, page, 8192);

        ck_assert(plv_page_hash_equal(&h, &slow));
    }
    /* A non-zero byte at the start, middle or end. */
    for (size_t at = 0; at < 4096; at += 4095 / 3) {
        page[at] = 1;
        ck_assert(!plv_page_is_zero(page, 4096));
        h = plv_page_hash_zero_aware(&k, page, 4096, &z);
        ck_assert(!z);
        ck_assert(!plv_page_hash_equal(&h, &k.zero4k));
        page[at] = 0;
    }
}
END_TEST

typedef struct Visit {
    uint32_t *count;
} Visit;

static void visit(void *opaque, uint64_t begin, uint64_t end)
{
    Visit *v = opaque;

    for (uint64_t i = begin; i < end; i++) {
        __atomic_fetch_add(&v->count[i], 1, __ATOMIC_RELAXED);
    }
}

START_TEST(pool_covers_each_item_once)
{
    ck_assert_uint_ge(plv_hash_pool_default_threads(), 1);
    for (unsigned threads = 1; threads <= 4; threads++) {
        PlvHashPool *pool = plv_hash_pool_new(threads);
        uint32_t count[10007];
        Visit v = { .count = count };

        ck_assert_uint_eq(plv_hash_pool_threads(pool), threads);
        /* Several runs on one pool, odd sizes and chunks, and empty. */
        for (unsigned run = 0; run < 20; run++) {
            uint64_t n = run == 0 ? 0 : 10007 - run * 37;

            memset(count, 0, sizeof(count));
            plv_hash_pool_run(pool, n, 1 + run * 3, visit, &v);
            for (uint64_t i = 0; i < 10007; i++) {
                ck_assert_uint_eq(count[i], i < n ? 1 : 0);
            }
        }
        plv_hash_pool_free(pool);
    }
}
END_TEST

START_TEST(hash_pages_matches_serial)
{
    const uint64_t n_pages = 4096;
    uint8_t *mem = g_malloc(n_pages * 4096);
    PlvMemView *mv = plv_memview_new();
    PlvPageRef *refs = g_new(PlvPageRef, n_pages);
    PlvPageHash *out = g_new(PlvPageHash, n_pages);
    bool *zero = g_new(bool, n_pages);
    PlvHashKey k;

    key_of(&k, 5);
    plv_memview_add_region(mv, 1, 4096, n_pages / 2, mem, NULL);
    plv_memview_add_region(mv, 2, 4096, n_pages / 2,
                           mem + n_pages / 2 * 4096, NULL);
    for (uint64_t p = 0; p < n_pages; p++) {
        if (p % 5 == 0) {
            memset(mem + p * 4096, 0, 4096);
        } else {
            fill_page(mem + p * 4096, 4096, p);
        }
        refs[p].region = p / (n_pages / 2);
        refs[p].page = p % (n_pages / 2);
    }
    for (unsigned threads = 1; threads <= 3; threads++) {
        PlvHashPool *pool = plv_hash_pool_new(threads);

        memset(out, 0, n_pages * sizeof(*out));
        plv_hash_pages(pool, &k, mv, refs, n_pages, out, zero);
        for (uint64_t p = 0; p < n_pages; p++) {
            PlvPageHash want = plv_page_hash(&k, mem + p * 4096, 4096);

            ck_assert(plv_page_hash_equal(&out[p], &want));
            ck_assert_int_eq(zero[p], p % 5 == 0);
        }
        plv_hash_pool_free(pool);
    }
    g_free(zero);
    g_free(out);
    g_free(refs);
    plv_memview_free(mv);
    g_free(mem);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pagehash");
    TCase *tc = tcase_create("pagehash");

    tcase_add_test(tc, key_derivation);
    tcase_add_test(tc, fingerprints);
    tcase_add_test(tc, zero_fast_path);
    tcase_add_test(tc, pool_covers_each_item_once);
    tcase_add_test(tc, hash_pages_matches_serial);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
