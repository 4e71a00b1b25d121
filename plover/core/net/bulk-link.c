/*
 * The bulk-link calls (plover/bulk-link.h): each link type gives its ops.
 */
#include "plover/bulk-link.h"

int plv_bulk_send(PlvBulkLink *b, uint16_t type, const struct iovec *iov,
                  int iovcnt, GError **err)
{
    return b->ops->send(b, type, iov, iovcnt, err);
}

int plv_bulk_recv(PlvBulkLink *b, uint16_t *type, GByteArray *payload,
                  int timeout_ms, GError **err)
{
    return b->ops->recv(b, type, payload, timeout_ms, err);
}

uint32_t plv_bulk_peer_id(const PlvBulkLink *b)
{
    return b->ops->peer_id(b);
}

const uint8_t *plv_bulk_session_key(const PlvBulkLink *b)
{
    return b->ops->session_key(b);
}

const char *plv_bulk_kind(const PlvBulkLink *b)
{
    return b->ops->name;
}

void plv_bulk_cancel(PlvBulkLink *b)
{
    b->ops->cancel(b);
}

void plv_bulk_close(PlvBulkLink *b)
{
    if (b) {
        b->ops->close(b);
    }
}
