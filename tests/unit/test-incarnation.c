/*
 * The incarnation state file: a new group starts at PLV_INC_INITIAL, every
 * restart gets a larger number, and a file that is not this replica's is
 * refused instead of guessed.
 */
#include <check.h>
#include <glib/gstdio.h>
#include <string.h>

#include "plover/incarnation.h"
#include "plover/paxos.h"
#include "helper-run.h"

static char *dir;

static void setup(void)
{
    dir = g_dir_make_tmp("plv-inc-XXXXXX", NULL);
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    g_free(dir);
}

static char *path_in_dir(const char *name)
{
    return g_build_filename(dir, name, NULL);
}

START_TEST(test_new_then_restarts)
{
    g_autofree char *path = path_in_dir("r1.state");
    g_autofree char *text = NULL;
    GError *err = NULL;
    uint64_t inc = 0;

    ck_assert(plv_incarnation_next(path, 1, &inc, &err));
    ck_assert_uint_eq(inc, PLV_INC_INITIAL);
    for (uint64_t want = PLV_INC_INITIAL + 1; want < PLV_INC_INITIAL + 5; want++) {
        ck_assert(plv_incarnation_next(path, 1, &inc, &err));
        ck_assert_uint_eq(inc, want);
    }
    ck_assert(g_file_get_contents(path, &text, NULL, NULL));
    ck_assert_str_eq(text, "plover-state 1\nid 1\nincarnation 5\n");
    /* No temporary file is left behind. */
    {
        g_autofree char *tmp = g_strdup_printf("%s.tmp", path);
        ck_assert(!g_file_test(tmp, G_FILE_TEST_EXISTS));
    }
}
END_TEST

static void expect_refused(const char *content, uint32_t id, const char *want_suffix)
{
    g_autofree char *path = path_in_dir("bad.state");
    g_autofree char *after = NULL;
    GError *err = NULL;
    uint64_t inc = 77;
    size_t ml, wl = strlen(want_suffix);

    ck_assert(g_file_set_contents(path, content, -1, NULL));
    ck_assert(!plv_incarnation_next(path, id, &inc, &err));
    ck_assert_ptr_nonnull(err);
    ml = strlen(err->message);
    ck_assert_msg(ml >= wl && !strcmp(err->message + ml - wl, want_suffix),
                  "got '%s'", err->message);
    ck_assert_uint_eq(inc, 77);
    /* A refused file is left as it was, for the operator to look at. */
    ck_assert(g_file_get_contents(path, &after, NULL, NULL));
    ck_assert_str_eq(after, content);
    g_error_free(err);
}

START_TEST(test_refuses_what_it_cannot_trust)
{
    const char *bad_format = "is not a plover state file "
                             "(expected 'plover-state 1', 'id N', 'incarnation N')";

    expect_refused("", 0, bad_format);
    expect_refused("hello\n", 0, bad_format);
    expect_refused("plover-state 2\nid 0\nincarnation 3\n", 0, bad_format);
    expect_refused("plover-state 1\nid 0\nincarnation 0\n", 0, bad_format);
    expect_refused("plover-state 1\nid 0\n", 0, bad_format);
    expect_refused("plover-state 1\nid 0\nincarnation 18446744073709551615\n", 0, bad_format);
    expect_refused("plover-state 1\nid 2\nincarnation 3\n", 0,
                   "belongs to replica 2, not to replica 0");
}
END_TEST

START_TEST(test_unwritable_place)
{
    g_autofree char *path = path_in_dir("missing/r0.state");
    GError *err = NULL;
    uint64_t inc = 0;

    ck_assert(!plv_incarnation_next(path, 0, &inc, &err));
    ck_assert_msg(strstr(err->message, "cannot create"), "%s", err->message);
    g_error_free(err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("incarnation");
    TCase *tc = tcase_create("state-file");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_new_then_restarts);
    tcase_add_test(tc, test_refuses_what_it_cannot_trust);
    tcase_add_test(tc, test_unwritable_place);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
