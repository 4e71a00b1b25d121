/*
 * plover/peer-mailbox.h — the newest item of each peer, handed from one
 * thread to another: an acceptor leaves each authenticated link there,
 * its owner takes the newest when it needs one. An item nobody took is
 * destroyed when a newer one of the same peer arrives.
 */
#ifndef PLOVER_PEER_MAILBOX_H
#define PLOVER_PEER_MAILBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvPeerMailbox PlvPeerMailbox;

/* Peers 0..n_peers-1; @destroy frees an item never taken. */
PlvPeerMailbox *plv_peer_mailbox_new(uint32_t n_peers, GDestroyNotify destroy);

/* Leave @item for @peer (taken over). True if it replaced an item never
 * taken, which is destroyed; @peer out of range destroys @item. */
bool plv_peer_mailbox_put(PlvPeerMailbox *m, uint32_t peer, void *item);

/* @peer's item (now the caller's), waiting up to @timeout_ms for one
 * (0: do not wait); NULL if none. */
void *plv_peer_mailbox_take(PlvPeerMailbox *m, uint32_t peer, int timeout_ms);

/* True if an item of @peer waits to be taken. */
bool plv_peer_mailbox_ready(PlvPeerMailbox *m, uint32_t peer);

/* Destroys the items never taken. */
void plv_peer_mailbox_free(PlvPeerMailbox *m);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_PEER_MAILBOX_H */
