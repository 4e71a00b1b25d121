/*
 * Quantiles over a ring of recent samples (plover/latency-window.h).
 */
#include "plover/latency-window.h"

#include <glib.h>
#include <math.h>
#include <string.h>

void plv_latency_add(PlvLatencyWindow *w, int64_t v)
{
    w->samples[w->count % PLV_LATENCY_WINDOW] = v;
    w->max = w->count ? MAX(w->max, v) : v;
    w->count++;
}

uint32_t plv_latency_n(const PlvLatencyWindow *w)
{
    return MIN(w->count, PLV_LATENCY_WINDOW);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int64_t plv_latency_quantile(const PlvLatencyWindow *w, double q)
{
    uint32_t n = plv_latency_n(w);
    int64_t sorted[PLV_LATENCY_WINDOW];
    uint32_t rank;

    if (n == 0) {
        return 0;
    }
    memcpy(sorted, w->samples, n * sizeof(sorted[0]));
    qsort(sorted, n, sizeof(sorted[0]), cmp_i64);
    q = CLAMP(q, 0.0, 1.0);
    rank = (uint32_t)ceil(q * n);
    return sorted[rank ? rank - 1 : 0];
}
