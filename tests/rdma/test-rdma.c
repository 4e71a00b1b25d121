/*
 * The RDMA suite, run inside the soft-RoCE test guest (make check-rdma):
 * transport, unauthenticated peers, bulk link and syncvm, a 3-replica
 * consensus run. Prints "rdma: N passed, N failed"; exit status 0 if all
 * passed. An argument runs only the tests whose name contains it; a second
 * one repeats the selection that many times.
 */
#include "suites.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    GArray *all = g_array_new(FALSE, FALSE, sizeof(PlvRdmaTest));
    g_array_append_vals(all, plv_rdma_transport_tests, plv_rdma_transport_n);
    g_array_append_vals(all, plv_rdma_garbage_tests, plv_rdma_garbage_n);
    g_array_append_vals(all, plv_rdma_bulk_tests, plv_rdma_bulk_n);
    g_array_append_vals(all, plv_rdma_cluster_tests, plv_rdma_cluster_n);
    int repeat = argc > 2 ? MAX(atoi(argv[2]), 1) : 1;
    GArray *sel = g_array_new(FALSE, FALSE, sizeof(PlvRdmaTest));
    for (int r = 0; r < repeat; r++) {
        g_array_append_vals(sel, all->data, all->len);
    }
    int rc = plv_rdma_run_tests("rdma", (PlvRdmaTest *)sel->data, sel->len,
                                filter);
    g_array_free(sel, TRUE);
    g_array_free(all, TRUE);
    return rc;
}
