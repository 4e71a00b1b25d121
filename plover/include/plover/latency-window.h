/*
 * The last PLV_LATENCY_WINDOW samples of a duration (or of another
 * per-event quantity: the bytes of one syncvm), for the p50/p99 that
 * query-plover reports (a pause, a release latency): recent behaviour,
 * in constant memory, without keeping every sample of a long run.
 */
#ifndef PLOVER_LATENCY_WINDOW_H
#define PLOVER_LATENCY_WINDOW_H

#include <stdint.h>

#define PLV_LATENCY_WINDOW 1024

typedef struct PlvLatencyWindow {
    int64_t samples[PLV_LATENCY_WINDOW];  /* a ring, oldest overwritten */
    uint64_t count;             /* samples ever added */
    int64_t max;                /* of every sample ever added */
} PlvLatencyWindow;

void plv_latency_add(PlvLatencyWindow *w, int64_t v);
/* Samples the window holds now. */
uint32_t plv_latency_n(const PlvLatencyWindow *w);
/*
 * Nearest-rank quantile (q in [0, 1]) of the samples in the window: the
 * smallest sample with at least q of them at or below it; 0 if none.
 */
int64_t plv_latency_quantile(const PlvLatencyWindow *w, double q);

#endif
