/*
 * Wire codec: every message type round-trips; every kind of malformed
 * frame is rejected with the right error code and counted, never crashes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "plover/bytes.h"
#include "plover/wire.h"
#include "helper-run.h"

static PlvEntry mk_entry(uint64_t index, uint64_t vid, uint8_t op, GBytes *payload)
{
    PlvEntry e = { .index = index, .vid = vid, .op = op, .payload = payload };
    return e;
}

static void add_owned(PlvMsg *m, PlvEntry e)
{
    plv_msg_add_entry(m, &e);
    plv_entry_clear(&e);
}

static GBytes *mk_batch(int npk)
{
    GByteArray *b = g_byte_array_new();
    plv_batch_init(b);
    for (int i = 0; i < npk; i++) {
        char pkt[32];
        int l = snprintf(pkt, sizeof(pkt), "packet-%d", i);
        plv_batch_add(b, pkt, (uint32_t)l);
    }
    return g_byte_array_free_to_bytes(b);
}

/* One message of each type with every field it uses set. */
static void fill_msg(PlvMsg *m, PlvMsgType t)
{
    plv_msg_init(m, t);
    m->hdr = (PlvMsgHdr){ .from = 1, .to = 2, .inc = 7, .vid = plv_vid_make(3, 1),
                          .commit = 10, .last = 12, .applied = 9, .to_inc = 3,
                          .flags = PLV_HDR_ADMITTED | PLV_HDR_LEADER };
    m->vid = plv_vid_make(4, 1);
    switch (t) {
    case PLV_MSG_PREPARE:
        m->kept_vid = plv_vid_make(2, 1);
        break;
    case PLV_MSG_PROMISE:
        m->other_vid = plv_vid_make(3, 2);
        /* fall through */
    case PLV_MSG_CATCHUP_RESP:
        m->ok = true;
        m->has_snap = true;
        m->snap = (PlvSnapMeta){ .index = 9, .vid = 5, .epoch = 3, .secondary = 2, .n = 3,
                                 .inc = { 1, 4, 1 } };
        add_owned(m, mk_entry(11, 5, PLV_OP_SECOND, plv_op_second_payload(2)));
        add_owned(m, mk_entry(12, 5, PLV_OP_INPUT, mk_batch(3)));
        break;
    case PLV_MSG_ACCEPT:
        m->index = 10;
        m->trunc = 4;
        add_owned(m, mk_entry(11, 5, PLV_OP_SYNCVM, plv_op_syncvm_payload(77)));
        add_owned(m, mk_entry(12, 5, PLV_OP_CONFIG, plv_op_config_payload(1, 9)));
        add_owned(m, mk_entry(13, 5, PLV_OP_NOOP, NULL));
        break;
    case PLV_MSG_ACCEPTED:
        m->ok = true;
        m->index = 13;
        break;
    case PLV_MSG_HEARTBEAT:
        m->trunc = 8;
        break;
    case PLV_MSG_CATCHUP_REQ:
        m->index = 5;
        m->count = 64;
        break;
    case PLV_MSG_FORWARD:
        add_owned(m, mk_entry(1, 0, PLV_OP_INPUT, mk_batch(2)));
        add_owned(m, mk_entry(2, 0, PLV_OP_INPUT, mk_batch(1)));
        break;
    default:
        break;
    }
    if (t == PLV_MSG_CATCHUP_REQ || t == PLV_MSG_CATCHUP_RESP || t == PLV_MSG_FORWARD) {
        m->vid = 0;
    }
    if (t == PLV_MSG_CATCHUP_RESP) {
        m->ok = false;
    }
}

static GByteArray *encode_ok(const PlvMsg *m)
{
    GByteArray *out = g_byte_array_new();
    GError *err = NULL;
    ck_assert_msg(plv_wire_encode(m, out, &err), "encode: %s", err ? err->message : "");
    return out;
}

static void assert_same_msg(const PlvMsg *a, const PlvMsg *b)
{
    ck_assert_int_eq(a->type, b->type);
    ck_assert(memcmp(&a->hdr, &b->hdr, sizeof(a->hdr)) == 0);
    ck_assert_uint_eq(a->vid, b->vid);
    ck_assert_uint_eq(a->other_vid, b->other_vid);
    ck_assert_uint_eq(a->kept_vid, b->kept_vid);
    ck_assert_uint_eq(a->index, b->index);
    ck_assert_uint_eq(a->trunc, b->trunc);
    ck_assert_uint_eq(a->count, b->count);
    ck_assert_int_eq(a->ok, b->ok);
    ck_assert_int_eq(a->has_snap, b->has_snap);
    if (a->has_snap) {
        ck_assert(memcmp(&a->snap, &b->snap, sizeof(a->snap)) == 0);
    }
    ck_assert_uint_eq(a->entries ? a->entries->len : 0, b->entries ? b->entries->len : 0);
    for (guint i = 0; a->entries && i < a->entries->len; i++) {
        PlvEntry *x = &g_array_index(a->entries, PlvEntry, i);
        PlvEntry *y = &g_array_index(b->entries, PlvEntry, i);
        ck_assert_uint_eq(x->index, y->index);
        ck_assert_uint_eq(x->vid, y->vid);
        ck_assert(plv_entry_same_value(x, y));
    }
}

START_TEST(test_roundtrip_all_types)
{
    for (int t = PLV_MSG_PREPARE; t < PLV_MSG__MAX; t++) {
        PlvMsg m, d;
        GError *err = NULL;
        PlvWireStats st = { 0 };
        GByteArray *b;

        fill_msg(&m, t);
        b = encode_ok(&m);
        ck_assert_int_eq(plv_wire_frame_len(b->data, b->len, NULL), (ssize_t)b->len);
        ck_assert_int_eq(plv_wire_frame_len(b->data, 5, NULL), 0);
        ck_assert_msg(plv_wire_decode(b->data, b->len, 3, &d, &err) == 0,
                      "%s: %s", plv_msg_type_name(t), err ? err->message : "");
        plv_wire_stats_note(&st, err);
        ck_assert_uint_eq(st.ok, 1);
        assert_same_msg(&m, &d);
        plv_msg_clear(&m);
        plv_msg_clear(&d);
        g_byte_array_unref(b);
    }
}
END_TEST

START_TEST(test_batch_iter)
{
    GBytes *bb = mk_batch(5);
    gsize n;
    const uint8_t *p = g_bytes_get_data(bb, &n);
    PlvBatchIter it;
    const uint8_t *pkt;
    uint32_t len;
    int i = 0;

    ck_assert(plv_batch_valid(p, n));
    ck_assert_uint_eq(plv_batch_count(p, n), 5);
    plv_batch_iter_init(&it, p, n);
    while (plv_batch_next(&it, &pkt, &len)) {
        char want[32];
        int l = snprintf(want, sizeof(want), "packet-%d", i++);
        ck_assert_uint_eq(len, (uint32_t)l);
        ck_assert(memcmp(pkt, want, len) == 0);
    }
    ck_assert_int_eq(i, 5);
    /* one byte short, one byte extra, a count that lies */
    ck_assert(!plv_batch_valid(p, n - 1));
    {
        uint8_t *q = g_memdup2(p, n + 1);
        q[n] = 0;
        ck_assert(!plv_batch_valid(q, n + 1));
        q[0] = 6;
        ck_assert(!plv_batch_valid(q, n));
        g_free(q);
    }
    g_bytes_unref(bb);
}
END_TEST

static int decode_code(const uint8_t *b, size_t n)
{
    PlvMsg d;
    GError *err = NULL;
    int code;

    if (plv_wire_decode(b, n, 3, &d, &err) == 0) {
        plv_msg_clear(&d);
        return 0;
    }
    ck_assert(err != NULL);
    ck_assert(d.entries == NULL);
    code = err->code;
    g_error_free(err);
    return code;
}

/* Recompute the checksum after tampering, so the check under test is the
 * field check and not the checksum. */
static void reseal(GByteArray *b)
{
    uint32_t plen = plv_get_u32(b->data + 8);

    plv_put_u64(b->data + 12 + plen, XXH64(b->data, 12 + plen, 0));
}

START_TEST(test_reject_malformed)
{
    PlvMsg m;
    GByteArray *b;
    GByteArray *c;
    PlvWireStats st = { 0 };

    fill_msg(&m, PLV_MSG_ACCEPT);
    b = encode_ok(&m);
    plv_msg_clear(&m);

    /* every truncation */
    for (size_t n = 0; n < b->len; n++) {
        int code = decode_code(b->data, n);
        ck_assert_msg(code == PLV_WIRE_ERR_SHORT, "len %zu: code %d", n, code);
    }
    /* trailing byte */
    c = g_byte_array_new();
    g_byte_array_append(c, b->data, b->len);
    g_byte_array_append(c, (const uint8_t *)"x", 1);
    ck_assert_int_eq(decode_code(c->data, c->len), PLV_WIRE_ERR_LENGTH);
    g_byte_array_unref(c);

#define MUTATE(off, val, want, seal) do { \
        GByteArray *x = g_byte_array_new(); \
        g_byte_array_append(x, b->data, b->len); \
        x->data[(off)] = (val); \
        if (seal) { reseal(x); } \
        int got_ = decode_code(x->data, x->len); \
        ck_assert_msg(got_ == (want), "offset %d: got %d want %d", (int)(off), got_, (want)); \
        { GError *e_ = g_error_new(PLV_WIRE_ERROR, got_, "x"); plv_wire_stats_note(&st, e_); g_error_free(e_); } \
        g_byte_array_unref(x); \
    } while (0)

    MUTATE(0, 'X', PLV_WIRE_ERR_MAGIC, false);
    MUTATE(4, 1, PLV_WIRE_ERR_VERSION, false);             /* version 1: no other_vid */
    MUTATE(4, 3, PLV_WIRE_ERR_VERSION, false);
    MUTATE(5, 0, PLV_WIRE_ERR_TYPE, true);
    MUTATE(5, PLV_MSG__MAX, PLV_WIRE_ERR_TYPE, true);
    MUTATE(6, 1, PLV_WIRE_ERR_LENGTH, false);
    MUTATE(11, 0x7f, PLV_WIRE_ERR_LENGTH, false);          /* huge length */
    MUTATE(b->len - 1, b->data[b->len - 1] ^ 1, PLV_WIRE_ERR_CHECKSUM, false);
    MUTATE(30, b->data[30] ^ 1, PLV_WIRE_ERR_CHECKSUM, false);
    MUTATE(12, 5, PLV_WIRE_ERR_FIELD, true);               /* from >= n */
    MUTATE(16, 1, PLV_WIRE_ERR_FIELD, true);               /* to == from */
    MUTATE(68, 0x80, PLV_WIRE_ERR_FIELD, true);            /* unknown flag */
    /* ACCEPT body: vid(8) index(8) trunc(8) count(4) at 12+52 */
    MUTATE(12 + 60 + 24, 0xff, PLV_WIRE_ERR_FIELD, true);  /* entry count */
    /* first entry: index(8) vid(8) op(1): op at 12+52+28+16 */
    MUTATE(12 + 60 + 28 + 16, 0, PLV_WIRE_ERR_FIELD, true);
    MUTATE(12 + 60 + 28 + 16, PLV_OP__MAX, PLV_WIRE_ERR_FIELD, true);
    MUTATE(12 + 60 + 28 + 20, 0x7f, PLV_WIRE_ERR_SHORT, true); /* payload length lies */
    MUTATE(12 + 60 + 28, 0, PLV_WIRE_ERR_FIELD, true);      /* index 11 -> 0 */
    ck_assert_uint_eq(st.bad_total, 17);
    ck_assert_uint_eq(st.bad[PLV_WIRE_ERR_FIELD], 7);
    g_byte_array_unref(b);
}
END_TEST

START_TEST(test_reject_bad_snapshot_and_bools)
{
    PlvMsg m;
    GByteArray *b;
    /* PROMISE body: vid(8) other_vid(8) ok(1) has_snap(1) snap... at 12+60 */
    size_t body = 12 + 60 + 8;
    PlvWireStats st = { 0 };

    fill_msg(&m, PLV_MSG_PROMISE);
    b = encode_ok(&m);
    plv_msg_clear(&m);
    MUTATE(body + 8, 2, PLV_WIRE_ERR_FIELD, true);          /* ok = 2 */
    MUTATE(body + 9, 3, PLV_WIRE_ERR_FIELD, true);          /* has_snap = 3 */
    /* snap: index vid epoch secondary(4) n(4) */
    MUTATE(body + 10 + 24, 3, PLV_WIRE_ERR_FIELD, true);    /* secondary 3 of 3 */
    MUTATE(body + 10 + 28, 4, PLV_WIRE_ERR_FIELD, true);    /* n 4 > 3 */
    MUTATE(body + 10 + 28, 0, PLV_WIRE_ERR_FIELD, true);    /* n 0 */
    ck_assert_uint_eq(st.bad[PLV_WIRE_ERR_FIELD], 5);
    g_byte_array_unref(b);
}
END_TEST

START_TEST(test_encode_rejects_invalid)
{
    PlvMsg m;
    GByteArray *out = g_byte_array_new();
    GError *err = NULL;

    plv_msg_init(&m, 0);
    ck_assert(!plv_wire_encode(&m, out, &err));
    ck_assert_int_eq(err->code, PLV_WIRE_ERR_TYPE);
    g_clear_error(&err);
    fill_msg(&m, PLV_MSG_ACCEPT);
    g_array_index(m.entries, PlvEntry, 0).op = 99;
    ck_assert(!plv_wire_encode(&m, out, &err));
    ck_assert_int_eq(err->code, PLV_WIRE_ERR_FIELD);
    g_clear_error(&err);
    ck_assert_uint_eq(out->len, 0);
    plv_msg_clear(&m);
    g_byte_array_unref(out);
}
END_TEST

START_TEST(test_op_payloads)
{
    PlvEntry e = mk_entry(1, 1, PLV_OP_CONFIG, plv_op_config_payload(2, 5));
    uint32_t id;
    uint64_t inc, ep;

    ck_assert(plv_op_config_get(&e, &id, &inc));
    ck_assert_uint_eq(id, 2);
    ck_assert_uint_eq(inc, 5);
    ck_assert(!plv_op_second_get(&e, &id));
    ck_assert(!plv_op_syncvm_get(&e, &ep));
    plv_entry_clear(&e);
    e = mk_entry(1, 1, PLV_OP_CONFIG, plv_op_config_payload(2, 0));
    ck_assert(!plv_entry_valid(&e, NULL));      /* incarnation 0 is invalid */
    plv_entry_clear(&e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("codec");

    tcase_add_test(tc, test_roundtrip_all_types);
    tcase_add_test(tc, test_batch_iter);
    tcase_add_test(tc, test_reject_malformed);
    tcase_add_test(tc, test_reject_bad_snapshot_and_bools);
    tcase_add_test(tc, test_encode_rejects_invalid);
    tcase_add_test(tc, test_op_payloads);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
