/*
 * The syncvm message channel over a bulk link (TCP or RDMA): the engine
 * knows only the channel, and the channel only plover/bulk-link.h.
 */
#include "plover/syncvm.h"
#include "plover/bulk-link.h"
#include "plover/link.h"

static int bulk_send(void *opaque, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    return plv_bulk_send(opaque, type, iov, iovcnt, err);
}

static int bulk_recv(void *opaque, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    return plv_bulk_recv(opaque, type, payload, timeout_ms, err);
}

static bool bulk_is_timeout(const GError *err)
{
    return plv_link_error_is_timeout(err);
}

void plv_syncvm_channel_init_bulk(PlvSyncvmChannel *ch, PlvBulkLink *b)
{
    ch->opaque = b;
    ch->send = bulk_send;
    ch->recv = bulk_recv;
    ch->is_timeout = bulk_is_timeout;
    ch->peer_id = plv_bulk_peer_id(b);
}
