/*
 * plover/pending-slots.h — which unauthenticated connection makes room
 * for a new one. Shared by the consensus transport and the syncvm port's
 * acceptor, so both treat a flood the same way.
 *
 * Each source address holds at most @per_addr of the @max slots; a new
 * connection past that pushes out one of its own address, and, every
 * slot taken, one of all. The one pushed out is a connection that has
 * not said a word (an idle socket) before one in the middle of its
 * handshake, then the oldest: a flood of idle sockets, even from a
 * peer's own host, never pushes out a genuine dial under way.
 */
#ifndef PLOVER_PENDING_SLOTS_H
#define PLOVER_PENDING_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "plover/sockutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvPendingSlot {
    PlvIpAddr src;              /* where the connection came from */
    int64_t since;              /* accepted at (monotonic µs) */
    bool heard;                 /* it sent something already */
} PlvPendingSlot;

/* Index into @slots (@n in use) of the connection a new one from @src
 * pushes out; -1 if there is room for it. */
int plv_pending_victim(PlvPendingSlot *const *slots, unsigned n, unsigned max,
                       unsigned per_addr, const PlvIpAddr *src);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_PENDING_SLOTS_H */
