/*
 * Tests for the RDMA ring records' AEAD (plover/record-seal.h): what one
 * direction seals only that direction's opener opens, for that sequence
 * number and header, untouched.
 */
#include <check.h>
#include <string.h>

#include "helper-run.h"
#include "plover/link.h"
#include "plover/record-seal.h"

static uint8_t key[PLV_LINK_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8 };

START_TEST(seal_open_roundtrip_and_tamper)
{
    PlvRecordSeal *tx = plv_record_seal_new(key, 'D');
    PlvRecordSeal *rx = plv_record_seal_new(key, 'D');
    uint8_t hdr[16] = "len.flty.seq...";
    uint8_t msg[5000], sealed[5000 + PLV_SEAL_TAG_LEN], out[5000];
    ck_assert_ptr_nonnull(tx);
    for (size_t i = 0; i < sizeof(msg); i++) {
        msg[i] = i * 7;
    }
    ck_assert(plv_record_seal(tx, 42, hdr, sizeof(hdr), msg, sizeof(msg), sealed));
    ck_assert(memcmp(sealed, msg, sizeof(msg)) != 0);     /* encrypted */
    ck_assert(plv_record_open(rx, 42, hdr, sizeof(hdr), sealed, sizeof(msg), out));
    ck_assert_mem_eq(out, msg, sizeof(msg));

    /* Another sequence number (a replayed or reordered record), another
     * header, a flipped bit anywhere: refused. */
    ck_assert(!plv_record_open(rx, 43, hdr, sizeof(hdr), sealed, sizeof(msg), out));
    hdr[0] ^= 1;
    ck_assert(!plv_record_open(rx, 42, hdr, sizeof(hdr), sealed, sizeof(msg), out));
    hdr[0] ^= 1;
    for (size_t at = 0; at < sizeof(sealed); at += 997) {
        sealed[at] ^= 0x10;
        ck_assert(!plv_record_open(rx, 42, hdr, sizeof(hdr), sealed, sizeof(msg), out));
        sealed[at] ^= 0x10;
    }
    ck_assert(plv_record_open(rx, 42, hdr, sizeof(hdr), sealed, sizeof(msg), out));

    /* An empty record (a filler) has a tag of its own. */
    uint8_t tag[PLV_SEAL_TAG_LEN];
    ck_assert(plv_record_seal(tx, 7, hdr, sizeof(hdr), msg, 0, tag));
    ck_assert(plv_record_open(rx, 7, hdr, sizeof(hdr), tag, 0, out));
    tag[3] ^= 1;
    ck_assert(!plv_record_open(rx, 7, hdr, sizeof(hdr), tag, 0, out));
    plv_record_seal_free(tx);
    plv_record_seal_free(rx);
}
END_TEST

/* The other direction, or another connection's key, opens nothing. */
START_TEST(keys_per_direction_and_connection)
{
    uint8_t other[PLV_LINK_KEY_LEN] = { 9 };
    PlvRecordSeal *d = plv_record_seal_new(key, 'D');
    PlvRecordSeal *a = plv_record_seal_new(key, 'A');
    PlvRecordSeal *o = plv_record_seal_new(other, 'D');
    uint8_t hdr[16] = { 0 }, msg[64] = "a page of guest memory", sealed[64 + PLV_SEAL_TAG_LEN],
            out[64], again[64 + PLV_SEAL_TAG_LEN];

    ck_assert(plv_record_seal(d, 1, hdr, sizeof(hdr), msg, sizeof(msg), sealed));
    ck_assert(!plv_record_open(a, 1, hdr, sizeof(hdr), sealed, sizeof(msg), out));
    ck_assert(!plv_record_open(o, 1, hdr, sizeof(hdr), sealed, sizeof(msg), out));
    /* The same plaintext under the other direction's key and the same
     * sequence number: another ciphertext (no shared keystream). */
    ck_assert(plv_record_seal(a, 1, hdr, sizeof(hdr), msg, sizeof(msg), again));
    ck_assert(memcmp(sealed, again, sizeof(msg)) != 0);
    plv_record_seal_free(d);
    plv_record_seal_free(a);
    plv_record_seal_free(o);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("record-seal");
    TCase *tc = tcase_create("seal");
    tcase_add_test(tc, seal_open_roundtrip_and_tamper);
    tcase_add_test(tc, keys_per_direction_and_connection);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
