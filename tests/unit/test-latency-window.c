/*
 * The p50/p99 of query-plover: nearest-rank quantiles over the last
 * PLV_LATENCY_WINDOW samples.
 */
#include <check.h>

#include "plover/latency-window.h"
#include "helper-run.h"

START_TEST(empty_window_is_zero)
{
    PlvLatencyWindow w = { 0 };

    ck_assert_uint_eq(plv_latency_n(&w), 0);
    ck_assert_int_eq(plv_latency_quantile(&w, 0.5), 0);
    ck_assert_int_eq(plv_latency_quantile(&w, 0.99), 0);
}
END_TEST

START_TEST(nearest_rank)
{
    PlvLatencyWindow w = { 0 };

    /* 1..100 in a shuffled order. */
    for (int i = 0; i < 100; i++) {
        plv_latency_add(&w, (i * 37) % 100 + 1);
    }
    ck_assert_uint_eq(plv_latency_n(&w), 100);
    ck_assert_int_eq(plv_latency_quantile(&w, 0.5), 50);
    ck_assert_int_eq(plv_latency_quantile(&w, 0.99), 99);
    ck_assert_int_eq(plv_latency_quantile(&w, 1.0), 100);
    ck_assert_int_eq(plv_latency_quantile(&w, 0.0), 1);
    ck_assert_int_eq(w.max, 100);

    /* One sample: every quantile is it. */
    PlvLatencyWindow one = { 0 };
    plv_latency_add(&one, 7);
    ck_assert_int_eq(plv_latency_quantile(&one, 0.5), 7);
    ck_assert_int_eq(plv_latency_quantile(&one, 0.99), 7);
}
END_TEST

/* Old samples leave the window; the all-time max stays. */
START_TEST(window_forgets_the_oldest)
{
    PlvLatencyWindow w = { 0 };

    plv_latency_add(&w, 1000000);
    for (int i = 0; i < PLV_LATENCY_WINDOW; i++) {
        plv_latency_add(&w, 5);
    }
    ck_assert_uint_eq(w.count, PLV_LATENCY_WINDOW + 1);
    ck_assert_uint_eq(plv_latency_n(&w), PLV_LATENCY_WINDOW);
    ck_assert_int_eq(plv_latency_quantile(&w, 1.0), 5);
    ck_assert_int_eq(w.max, 1000000);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("latency-window");
    TCase *tc = tcase_create("quantiles");
    tcase_add_test(tc, empty_window_is_zero);
    tcase_add_test(tc, nearest_rank);
    tcase_add_test(tc, window_forgets_the_oldest);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
