/*
 * A syncvm message channel over an authenticated PlvLink. Kept apart from
 * the engine so that another bulk transport can implement the channel.
 */
#include "plover/syncvm.h"
#include "plover/link.h"

static int link_send(void *opaque, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err)
{
    return plv_link_send(opaque, type, iov, iovcnt, err);
}

static int link_recv(void *opaque, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err)
{
    return plv_link_recv(opaque, type, payload, timeout_ms, err);
}

static bool link_is_timeout(const GError *err)
{
    return plv_link_error_is_timeout(err);
}

void plv_syncvm_channel_init_link(PlvSyncvmChannel *ch, PlvLink *link)
{
    ch->opaque = link;
    ch->send = link_send;
    ch->recv = link_recv;
    ch->is_timeout = link_is_timeout;
    ch->peer_id = plv_link_peer_id(link);
}
