/*
 * plover/bulk-link.h — one interface for the bulk links that syncvm runs
 * over: an authenticated, checked message stream to one peer, whichever
 * transport carries it.
 *
 * A PlvLink (TCP, plover/link.h) and an RDMA link (plover/transport-rdma.h)
 * each begin with a PlvBulkLink, as a transport begins with its
 * PlvTransport: plv_link_bulk() gives a PlvLink's, plv_rdma_link_connect()
 * and plv_rdma_link_accept() return nothing else, and the calls below
 * work on either. The syncvm engine's message channel is
 * made from one (plv_syncvm_channel_init_bulk, plover/syncvm.h).
 *
 * Errors are the links' own (PLV_LINK_ERROR); a timeout leaves the link
 * usable (plv_link_error_is_timeout). One thread may send while another
 * receives.
 */
#ifndef PLOVER_BULK_LINK_H
#define PLOVER_BULK_LINK_H

#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvBulkLink PlvBulkLink;

typedef struct PlvBulkLinkOps {
    const char *name;           /* "tcp", "rdma" */
    int (*send)(PlvBulkLink *b, uint16_t type, const struct iovec *iov,
                int iovcnt, GError **err);
    int (*recv)(PlvBulkLink *b, uint16_t *type, GByteArray *payload,
                int timeout_ms, GError **err);
    uint32_t (*peer_id)(const PlvBulkLink *b);
    const uint8_t *(*session_key)(const PlvBulkLink *b);
    void (*cancel)(PlvBulkLink *b);
    void (*close)(PlvBulkLink *b);
} PlvBulkLinkOps;

/* The first member of each link type. */
struct PlvBulkLink {
    const PlvBulkLinkOps *ops;
};

/* One message, the concatenation of @iov; 0, or -1 with @err set. */
int plv_bulk_send(PlvBulkLink *b, uint16_t type, const struct iovec *iov,
                  int iovcnt, GError **err);
/* The next message (@payload replaced), waiting at most @timeout_ms. */
int plv_bulk_recv(PlvBulkLink *b, uint16_t *type, GByteArray *payload,
                  int timeout_ms, GError **err);
uint32_t plv_bulk_peer_id(const PlvBulkLink *b);
/* PLV_LINK_KEY_LEN bytes, unique to this connection. */
const uint8_t *plv_bulk_session_key(const PlvBulkLink *b);
const char *plv_bulk_kind(const PlvBulkLink *b);
/*
 * Any thread, while another may be sending or receiving: the link fails
 * now; that I/O and every later call return an error at once ("link
 * cancelled"). The owner still closes it.
 */
void plv_bulk_cancel(PlvBulkLink *b);
/* Closes and frees the link (NULL: nothing). */
void plv_bulk_close(PlvBulkLink *b);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_BULK_LINK_H */
