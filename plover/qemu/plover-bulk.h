/*
 * The syncvm bulk link between leader and secondary, over TCP (PlvLink) or
 * RDMA (PlvRdmaLink), as -plover transport= says. Both carry the same
 * authenticated, checked messages; this hides which one is in use.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PLOVER_QEMU_BULK_H
#define PLOVER_QEMU_BULK_H

#include "plover/config.h"
#include "plover/link.h"
#include "plover/syncvm.h"

typedef struct PloverBulkListener PloverBulkListener;
typedef struct PloverBulk PloverBulk;

PloverBulkListener *plover_bulk_listen(PlvTransportKind kind, const char *host,
                                       uint16_t port, GError **err);
/* True if a dial is waiting (TCP only; RDMA says false). */
bool plover_bulk_pending(PloverBulkListener *l);
PloverBulk *plover_bulk_accept(PloverBulkListener *l, uint32_t self,
                               const uint8_t *secret, size_t secret_len,
                               int timeout_ms, GError **err);
/* @expect_peer: the replica we dial (PLV_LINK_ANY_PEER: whoever answers). */
PloverBulk *plover_bulk_connect(PlvTransportKind kind, const char *host,
                                uint16_t port, uint32_t self,
                                uint32_t expect_peer,
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
