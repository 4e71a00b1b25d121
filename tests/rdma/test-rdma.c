/*
 * The RDMA suite, run inside the soft-RoCE test guest (make check-rdma):
 * transport, unauthenticated peers, bulk link and syncvm, a 3-replica
 * consensus run. Prints "rdma: N passed, N failed"; exit status 0 if all
 * passed. An argument runs only the tests whose name contains it.
 */
#include "suites.h"

#include <string.h>

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    GArray *all = g_array_new(FALSE, FALSE, sizeof(PlvRdmaTest));
    g_array_append_vals(all, plv_rdma_transport_tests, plv_rdma_transport_n);
    g_array_append_vals(all, plv_rdma_garbage_tests, plv_rdma_garbage_n);
    g_array_append_vals(all, plv_rdma_bulk_tests, plv_rdma_bulk_n);
    g_array_append_vals(all, plv_rdma_cluster_tests, plv_rdma_cluster_n);
    int rc = plv_rdma_run_tests("rdma", (PlvRdmaTest *)all->data, all->len,
                                filter);
    g_array_free(all, TRUE);
    return rc;
}
