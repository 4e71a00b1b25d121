/*
 * Where the syncvm bulk links between leader and secondary come from, over
 * TCP or RDMA as -plover transport= says. A link is a PlvBulkLink
 * (plover/bulk-link.h) whichever carries it: the same authenticated,
 * checked messages, through the same calls.
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

#include "plover/bulk-link.h"
#include "plover/config.h"
#include "plover/link.h"
#include "plover/link-acceptor.h"
#include "plover/syncvm.h"

typedef struct PloverBulkListener PloverBulkListener;

/* The least wait for one message of a full syncvm, in which each end
 * hashes all of memory and the drives. */
#define PLOVER_FULL_SYNC_TIMEOUT_MS 15000

/* Listens on the bulk port of replica @cfg->id: its consensus port + 1. */
PloverBulkListener *plover_bulk_listen(const PlvConfig *cfg,
                                       const uint8_t *secret, size_t secret_len,
                                       PlvTls *tls, GError **err);
/*
 * The newest authenticated link that @peer dialed and nobody took yet,
 * waiting up to @timeout_ms for one (0: do not wait); NULL if none.
 */
PlvBulkLink *plover_bulk_take(PloverBulkListener *l, uint32_t peer, int timeout_ms);
/* True if plover_bulk_take(@peer) would return a link at once. */
bool plover_bulk_ready(PloverBulkListener *l, uint32_t peer);
/* Connections the listener refused or gave up (TCP; RDMA counts failures). */
void plover_bulk_listener_stats(PloverBulkListener *l, PlvLinkAcceptorStats *st);

/* Dial replica @peer's bulk port; fails unless @peer itself answers
 * (the handshake checks the id before it proves anything). @tls: the
 * TCP link runs inside TLS, an RDMA link seals its records (NULL:
 * neither). */
PlvBulkLink *plover_bulk_connect(const PlvConfig *cfg, uint32_t peer,
                                 const uint8_t *secret, size_t secret_len,
                                 PlvTls *tls, int timeout_ms, GError **err);

#endif
