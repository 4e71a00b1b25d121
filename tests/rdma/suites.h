/*
 * The in-guest RDMA test suites, run by test-rdma.c.
 */
#ifndef PLOVER_RDMA_SUITES_H
#define PLOVER_RDMA_SUITES_H

#include "harness.h"

extern const PlvRdmaTest plv_rdma_transport_tests[];
extern const size_t plv_rdma_transport_n;
extern const PlvRdmaTest plv_rdma_garbage_tests[];
extern const size_t plv_rdma_garbage_n;
extern const PlvRdmaTest plv_rdma_bulk_tests[];
extern const size_t plv_rdma_bulk_n;
extern const PlvRdmaTest plv_rdma_cluster_tests[];
extern const size_t plv_rdma_cluster_n;

#endif
