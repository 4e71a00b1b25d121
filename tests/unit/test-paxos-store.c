/*
 * The consensus store: what a replica appends comes back at its next
 * start, a crash's torn last append is dropped, damage elsewhere restores
 * nothing (an amnesiac start is safe, a wrong state is not), a file of
 * another replica is refused, and compaction keeps the state.
 */
#include <check.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "plover/paxos-store.h"
#include "helper-run.h"

static char *dir;
static char *path;

static void setup(void)
{
    dir = g_dir_make_tmp("plv-store-XXXXXX", NULL);
    ck_assert_ptr_nonnull(dir);
    path = g_build_filename(dir, "r1.state.paxos", NULL);
}

static void teardown(void)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    g_free(dir);
    g_free(path);
}

static void add_entry(PlvDurable *d, uint64_t index, uint64_t vid, const char *pkt)
{
    GByteArray *b = g_byte_array_new();
    PlvEntry e = { .index = index, .vid = vid, .op = PLV_OP_INPUT };

    plv_batch_init(b);
    plv_batch_add(b, pkt, strlen(pkt));
    e.payload = g_byte_array_free_to_bytes(b);
    g_array_append_val(d->ents, e);
    d->dirty = true;
    d->voter = true;
}

static PlvSnapMeta snap_at(uint64_t index)
{
    PlvSnapMeta m = { .index = index, .vid = 0x101, .epoch = 7, .secondary = 2, .n = 3 };
    for (int i = 0; i < 3; i++) {
        m.inc[i] = 1;
    }
    return m;
}

/* Open for `inc`; returns the store, fills img/restored/why. */
static PlvPaxosStore *open_store(uint32_t id, uint64_t inc, PlvDurable *img, bool *restored,
                                 char **why)
{
    GError *err = NULL;
    PlvPaxosStore *st = plv_paxos_store_open(path, id, 3, inc, img, restored, why, &err);
    ck_assert_msg(st, "%s", err ? err->message : "");
    return st;
}

static const char *packet_of(const PlvEntry *e)
{
    static char buf[64];
    PlvBatchIter it;
    const uint8_t *p;
    uint32_t len;

    plv_batch_iter_entry(&it, e);
    ck_assert(plv_batch_next(&it, &p, &len));
    g_snprintf(buf, sizeof(buf), "%.*s", (int)len, p);
    return buf;
}

/* Three appends: entries 1..3, a rewrite of 2 in a higher view, a
 * truncation at 1 and entry 4; the promise raised twice. */
static void write_history(PlvPaxosStore *st)
{
    PlvDurable c;
    GError *err = NULL;

    plv_durable_init(&c);
    c.promised = 0x101;
    c.promised_inc = 1;
    add_entry(&c, 1, 0x101, "a");
    add_entry(&c, 2, 0x101, "b");
    add_entry(&c, 3, 0x101, "c");
    add_entry(&c, 2, 0x101, "b-again");     /* the last write at 2 wins */
    ck_assert(plv_paxos_store_append(st, &c, &err));
    plv_durable_clear(&c);
    c.dirty = true;
    c.voter = true;
    c.promised = 0x202;
    c.promised_inc = 3;
    c.promised_other = 0x101;
    ck_assert(plv_paxos_store_append(st, &c, &err));
    plv_durable_clear(&c);
    c.promised = 0x202;
    c.promised_inc = 3;
    c.promised_other = 0x101;
    c.has_snap = true;
    c.snap = snap_at(1);
    add_entry(&c, 2, 0x202, "B");
    add_entry(&c, 4, 0x202, "d");
    ck_assert(plv_paxos_store_append(st, &c, &err));
    plv_durable_destroy(&c);
}

static void check_history(const PlvDurable *img)
{
    ck_assert_uint_eq(img->promised, 0x202);
    ck_assert_uint_eq(img->promised_inc, 3);
    ck_assert_uint_eq(img->promised_other, 0x101);
    ck_assert(img->has_snap);
    ck_assert_uint_eq(img->snap.index, 1);
    ck_assert_uint_eq(img->snap.epoch, 7);
    ck_assert_uint_eq(img->ents->len, 3);
    ck_assert_uint_eq(g_array_index(img->ents, PlvEntry, 0).index, 2);
    ck_assert_uint_eq(g_array_index(img->ents, PlvEntry, 0).vid, 0x202);
    ck_assert_str_eq(packet_of(&g_array_index(img->ents, PlvEntry, 0)), "B");
    ck_assert_str_eq(packet_of(&g_array_index(img->ents, PlvEntry, 1)), "c");
    ck_assert_str_eq(packet_of(&g_array_index(img->ents, PlvEntry, 2)), "d");
}

START_TEST(test_round_trip)
{
    PlvDurable img;
    bool restored;
    g_autofree char *why = NULL, *why2 = NULL, *why3 = NULL;
    PlvPaxosStore *st;

    plv_durable_init(&img);
    st = open_store(1, 1, &img, &restored, &why);
    ck_assert(!restored);
    ck_assert_ptr_nonnull(strstr(why, "a new group"));
    write_history(st);
    plv_paxos_store_free(st);

    st = open_store(1, 2, &img, &restored, &why2);
    ck_assert_msg(restored, "%s", why2);
    check_history(&img);
    plv_paxos_store_free(st);

    /* the start above rewrote the file for incarnation 2: it restores at
     * 3, and never at 2 again */
    plv_durable_clear(&img);
    st = open_store(1, 2, &img, &restored, &why3);
    ck_assert(!restored);
    ck_assert_ptr_nonnull(strstr(why3, "written by incarnation 2"));
    ck_assert_uint_eq(img.ents->len, 0);
    plv_paxos_store_free(st);
    plv_durable_destroy(&img);
}
END_TEST

/* A crash tore the last append: its last `cut` bytes never reached the
 * disk (they read as the zeros of the room after the state), or, with
 * `head`, its first `cut` bytes did not. */
static void damage_tail(size_t cut, bool head, size_t last_len)
{
    g_autofree char *data = NULL;
    gsize len, end;

    ck_assert(g_file_get_contents(path, &data, &len, NULL));
    for (end = len; end > 0 && !data[end - 1]; end--) {
    }
    ck_assert_uint_gt(end, last_len);
    if (head) {
        memset(data + end - last_len, 0, cut);
    } else {
        memset(data + end - cut, 0, cut);
    }
    ck_assert(g_file_set_contents(path, data, len, NULL));
}

START_TEST(test_torn_tail_dropped)
{
    PlvDurable img;
    bool restored;
    PlvPaxosStore *st;
    PlvDurable c;
    GError *err = NULL;

    plv_durable_init(&img);
    plv_durable_init(&c);
    for (int k = 0; k < 3; k++) {
        g_autofree char *why = NULL;
        st = open_store(1, 1 + 2 * k, &img, &restored, &why);
        write_history(st);
        /* one more append, which the "crash" tears */
        PlvPaxosStoreStats s0, s1;
        plv_paxos_store_stats(st, &s0);
        c.promised = 0x303;
        c.promised_inc = 3;
        add_entry(&c, 5, 0x303, "torn");
        ck_assert(plv_paxos_store_append(st, &c, &err));
        plv_paxos_store_stats(st, &s1);
        plv_durable_clear(&c);
        plv_paxos_store_free(st);
        if (k == 0) {
            damage_tail(5, false, s1.bytes - s0.bytes);     /* its end */
        } else if (k == 2) {
            damage_tail(20, true, s1.bytes - s0.bytes);     /* its header */
        }   /* k == 1: nothing torn */
        plv_durable_clear(&img);
        g_autofree char *why2 = NULL;
        st = open_store(1, 2 + 2 * k, &img, &restored, &why2);
        ck_assert_msg(restored, "case %d: %s", k, why2 ? why2 : "");
        if (k == 1) {
            /* nothing was torn there: the last append is intact */
            ck_assert_uint_eq(img.promised, 0x303);
            ck_assert_uint_eq(img.ents->len, 4);
        } else {
            check_history(&img);
        }
        plv_paxos_store_free(st);
        plv_durable_clear(&img);
        g_unlink(path);
    }
    plv_durable_destroy(&c);
    plv_durable_destroy(&img);
}
END_TEST

START_TEST(test_damage_restores_nothing)
{
    PlvDurable img;
    bool restored;
    g_autofree char *why = NULL, *why2 = NULL;
    g_autofree char *data = NULL;
    gsize len;
    PlvPaxosStore *st;

    plv_durable_init(&img);
    st = open_store(1, 1, &img, &restored, &why);
    write_history(st);
    plv_paxos_store_free(st);
    /* one bit flipped in the first frame: later frames still decode, so
     * this is no torn tail */
    ck_assert(g_file_get_contents(path, &data, &len, NULL));
    data[20] ^= 0x10;
    ck_assert(g_file_set_contents(path, data, len, NULL));
    st = open_store(1, 2, &img, &restored, &why2);
    ck_assert(!restored);
    ck_assert_msg(strstr(why2, "damaged at byte 0"), "%s", why2);
    ck_assert_uint_eq(img.ents->len, 0);
    plv_paxos_store_free(st);

    /* a file of the former format (no other_vid): said so, not "empty" */
    g_clear_pointer(&why, g_free);
    g_clear_pointer(&why2, g_free);
    g_clear_pointer(&data, g_free);
    g_unlink(path);
    st = open_store(1, 1, &img, &restored, &why);
    write_history(st);
    plv_paxos_store_free(st);
    ck_assert(g_file_get_contents(path, &data, &len, NULL));
    data[4] = 1;
    ck_assert(g_file_set_contents(path, data, len, NULL));
    st = open_store(1, 2, &img, &restored, &why2);
    ck_assert(!restored);
    ck_assert_msg(strstr(why2, "consensus frames of format 1; this replica reads format 2"),
                  "%s", why2);
    plv_paxos_store_free(st);
    plv_durable_destroy(&img);
}
END_TEST

/* A new group's replica votes from its start, even with nothing written;
 * a restart that kept nothing learns until admitted, and what it keeps
 * meanwhile gives no vote back. */
START_TEST(test_only_a_voters_state_restores)
{
    PlvDurable img, c;
    bool restored;
    g_autofree char *w1 = NULL, *w2 = NULL, *w3 = NULL, *w4 = NULL;
    GError *err = NULL;
    PlvPaxosStore *st;

    plv_durable_init(&img);
    plv_durable_init(&c);
    plv_paxos_store_free(open_store(1, 1, &img, &restored, &w1));
    st = open_store(1, 2, &img, &restored, &w2);
    ck_assert_msg(restored, "%s", w2);
    ck_assert_uint_eq(img.ents->len, 0);
    plv_paxos_store_free(st);
    g_unlink(path);
    st = open_store(1, 3, &img, &restored, &w3);   /* kept nothing */
    ck_assert(!restored);
    add_entry(&c, 1, 0x101, "learned");
    c.voter = false;
    ck_assert(plv_paxos_store_append(st, &c, &err));
    plv_paxos_store_free(st);
    st = open_store(1, 4, &img, &restored, &w4);
    ck_assert(!restored);
    ck_assert_msg(strstr(w4, "before the group admitted it"), "%s", w4);
    plv_paxos_store_free(st);
    plv_durable_destroy(&c);
    plv_durable_destroy(&img);
}
END_TEST

START_TEST(test_other_replica_refused)
{
    PlvDurable img;
    bool restored;
    g_autofree char *why = NULL, *why2 = NULL;
    GError *err = NULL;
    PlvPaxosStore *st;

    plv_durable_init(&img);
    st = open_store(1, 1, &img, &restored, &why);
    write_history(st);
    plv_paxos_store_free(st);
    st = plv_paxos_store_open(path, 2, 3, 2, &img, &restored, &why2, &err);
    ck_assert_ptr_null(st);
    ck_assert_ptr_null(why2);
    ck_assert(!restored);
    ck_assert_msg(strstr(err->message, "belongs to replica 1, not to replica 2"), "%s",
                  err->message);
    g_error_free(err);
    plv_durable_destroy(&img);
}
END_TEST

/* Enough appends to outgrow the file twice over: it is rewritten, and
 * what comes back is the last state, not the history. */
START_TEST(test_compaction)
{
    PlvDurable img, c;
    bool restored;
    g_autofree char *why = NULL, *why2 = NULL;
    g_autofree char *big = g_malloc(60001);
    GError *err = NULL;
    PlvPaxosStoreStats stats;
    PlvPaxosStore *st;
    struct stat sb;

    memset(big, 'x', 60000);
    big[60000] = 0;
    plv_durable_init(&img);
    plv_durable_init(&c);
    st = open_store(1, 1, &img, &restored, &why);
    for (uint64_t i = 1; i <= 400; i++) {
        c.promised = 0x101;
        c.promised_inc = 1;
        add_entry(&c, i, 0x101, big);
        if (i % 10 == 0) {
            /* the log is truncated as it goes, as at each syncvm */
            c.has_snap = true;
            c.snap = snap_at(i - 5);
        }
        ck_assert(plv_paxos_store_append(st, &c, &err));
        plv_durable_clear(&c);
    }
    plv_paxos_store_stats(st, &stats);
    ck_assert_uint_eq(stats.appends, 400);
    ck_assert_uint_ge(stats.compactions, 1);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_lt(sb.st_size, 12u << 20);
    plv_paxos_store_free(st);
    st = open_store(1, 2, &img, &restored, &why2);
    ck_assert_msg(restored, "%s", why2);
    ck_assert_uint_eq(img.snap.index, 395);
    ck_assert_uint_eq(img.ents->len, 5);
    ck_assert_uint_eq(g_array_index(img.ents, PlvEntry, 4).index, 400);
    plv_paxos_store_free(st);
    plv_durable_destroy(&c);
    plv_durable_destroy(&img);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("paxos-store");
    TCase *tc = tcase_create("store");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_torn_tail_dropped);
    tcase_add_test(tc, test_damage_restores_nothing);
    tcase_add_test(tc, test_only_a_voters_state_restores);
    tcase_add_test(tc, test_other_replica_refused);
    tcase_add_test(tc, test_compaction);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
