/*
 * The syncvm bulk link between leader and secondary, over TCP (PlvLink) or
 * RDMA (PlvRdmaLink), as -plover transport= says. Both carry the same
 * authenticated, checked messages; this hides which one is in use.
 *
 * The listening side accepts in the background: strangers are closed
 * before they cost anything, handshakes run concurrently with a timeout
 * of their own, and only authenticated links from a replica ever reach
 * the caller (plover_bulk_take).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PLOVER_QEMU_BULK_H
#define PLOVER_QEMU_BULK_H

#include "plover/config.h"
#include "plover/link.h"
#include "plover/link-acceptor.h"
#include "plover/syncvm.h"

typedef struct PloverBulkListener PloverBulkListener;
typedef struct PloverBulk PloverBulk;

/* Listens on the bulk port of replica @cfg->id: its consensus port + 1. */
PloverBulkListener *plover_bulk_listen(const PlvConfig *cfg,
                                       const uint8_t *secret, size_t secret_len,
                                       GError **err);
/*
 * The newest authenticated link that @peer dialed and nobody took yet,
 * waiting up to @timeout_ms for one (0: do not wait); NULL if none.
 */
PloverBulk *plover_bulk_take(PloverBulkListener *l, uint32_t peer, int timeout_ms);
/* True if plover_bulk_take(@peer) would return a link at once. */
bool plover_bulk_ready(PloverBulkListener *l, uint32_t peer);
/* Connections the listener refused or gave up (TCP; RDMA counts failures). */
void plover_bulk_listener_stats(PloverBulkListener *l, PlvLinkAcceptorStats *st);

/* Dial replica @peer's bulk port; fails unless @peer itself answers
 * (the handshake checks the id before it proves anything). */
PloverBulk *plover_bulk_connect(const PlvConfig *cfg, uint32_t peer,
                                const uint8_t *secret, size_t secret_len,
                                int timeout_ms, GError **err);
int plover_bulk_send(PloverBulk *b, uint16_t type, const struct iovec *iov,
                     int iovcnt, GError **err);
int plover_bulk_recv(PloverBulk *b, uint16_t *type, GByteArray *payload,
                     int timeout_ms, GError **err);
uint32_t plover_bulk_peer_id(const PloverBulk *b);
const uint8_t *plover_bulk_session_key(const PloverBulk *b);
void plover_bulk_channel(PloverBulk *b, PlvSyncvmChannel *ch);
void plover_bulk_close(PloverBulk *b);

#endif
