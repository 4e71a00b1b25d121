/*
 * plover/driver.h — runs the consensus state machine (plover/paxos.h) on a
 * thread of its own with a monotonic clock and a transport.
 *
 * The driver thread owns the PlvPaxos and the PlvTransport: it decodes what
 * the transport delivers, steps the state machine, ticks it every tick_ms,
 * encodes and sends its messages. Other threads talk to it through queues:
 *
 *   in:  plv_driver_submit() and the other calls below never wait for
 *        consensus; they queue and wake the driver.
 *   out: committed entries (log order) and state machine events go to a
 *        queue whose eventfd (plv_driver_event_fd) becomes readable; the
 *        caller drains it with plv_driver_dispatch() on a thread it chooses
 *        (QEMU: an fd handler in its main loop; glib: plv_driver_attach()),
 *        or, if the caller prefers, directly on the driver thread
 *        (plv_driver_set_inline_callbacks()).
 */
#ifndef PLOVER_DRIVER_H
#define PLOVER_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "plover/paxos.h"
#include "plover/paxos-store.h"
#include "plover/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PlvDriver PlvDriver;

typedef struct PlvDriverConfig {
    PlvPaxosConfig paxos;       /* node ids are transport peer ids */
    unsigned tick_ms;           /* one paxos tick; 0: 5 ms */
    size_t max_pending_bytes;   /* submitted, not yet proposed (queued here
                                 * or in the state machine); beyond it submit
                                 * fails with -ENOBUFS (0: the state
                                 * machine's max_queue_bytes, or 16 MiB) */
    PlvPaxosStore *store;       /* NULL: consensus state in memory only.
                                 * Else the driver keeps it there, each
                                 * change synced before the messages that
                                 * depend on it leave; owned by the driver
                                 * from plv_driver_new() on (also on failure) */
} PlvDriverConfig;

/* plv_paxos_config_default() plus tick_ms = 5. */
void plv_driver_config_default(PlvDriverConfig *cfg);

/* Takes ownership of @t (freed with the driver, also on failure). */
PlvDriver *plv_driver_new(const PlvDriverConfig *cfg, PlvTransport *t,
                          GError **err);
/* Before plv_driver_start(): the state the store gave back at a restart
 * (plv_paxos_restore()). Returns 0 or -EINVAL. */
int plv_driver_restore(PlvDriver *d, const PlvDurable *img);
/* Start the transport and the driver thread. */
int plv_driver_start(PlvDriver *d, GError **err);
/* Stop and join the thread (idempotent); queued outputs stay drainable. */
void plv_driver_stop(PlvDriver *d);
/* Stops if needed, then frees everything including the transport. */
void plv_driver_free(PlvDriver *d);

/*
 * Queue one inbound packet for the next input entry. Thread-safe, never
 * blocks on consensus. Returns 0, -EPERM (this replica is not the leader as
 * far as the driver last knew; the packet is not taken), -EINVAL (empty or
 * too large), -ENOBUFS (max_pending_bytes queued: back-pressure),
 * -ESHUTDOWN.
 * If leadership moves on before the packet is proposed, it is forwarded to
 * the new leader (plv_paxos_forward_input()); it is lost only if no leader
 * takes it in time or a queue is full (counted in stats.dropped_lost).
 */
int plv_driver_submit(PlvDriver *d, const void *pkt, size_t len);
/* As plv_driver_submit(), on any node: the packet goes to whoever leads
 * (plv_paxos_forward_input()). Same errors but -EPERM. */
int plv_driver_forward(PlvDriver *d, const void *pkt, size_t len);

/* Thread-safe commands, applied on the driver thread in call order. */
int plv_driver_propose_syncvm(PlvDriver *d, uint64_t epoch);
/* Leader: propose the group's end (PLV_OP_END) behind what is queued. */
int plv_driver_propose_end(PlvDriver *d);
void plv_driver_applied_syncvm(PlvDriver *d, uint64_t index);
void plv_driver_install_snapshot(PlvDriver *d, uint64_t index);
void plv_driver_add_err(PlvDriver *d, uint32_t peer);
void plv_driver_reset_err(PlvDriver *d, uint32_t peer);
/* plv_paxos_transfer_leadership() on the driver thread; -EPERM if this
 * node is not the leader as far as the driver last knew. */
int plv_driver_transfer_leadership(PlvDriver *d, uint32_t to);
/* The executor keeps a VM of view `vid` (0: none); plv_paxos_set_kept. */
void plv_driver_set_kept(PlvDriver *d, uint64_t vid);

/* Last role / leader / commit index the driver thread published. */
PlvRole plv_driver_role(const PlvDriver *d);
uint32_t plv_driver_leader(const PlvDriver *d);
uint64_t plv_driver_commit_index(const PlvDriver *d);

/* ---- outputs ---- */

typedef struct PlvDriverCallbacks {
    /* One committed entry, in log order (borrowed during the call). */
    void (*committed)(void *opaque, const PlvEntry *e);
    /* A state machine event (role, view, suspect, snapshot needed, ...). */
    void (*event)(void *opaque, const PlvEvent *ev);
} PlvDriverCallbacks;

/*
 * Alternative to the queue: run @cb on the driver thread itself as outputs
 * are produced (no eventfd, no thread hop: the lowest latency). The
 * callbacks must not block; they may call plv_driver_submit() and the other
 * commands. NULL goes back to queueing. Once started, the switch happens on
 * the driver thread in order with other commands; outputs queued before it
 * stay in the queue, and @opaque must stay valid until the next switch has
 * surely happened (e.g. until plv_driver_stop()).
 */
void plv_driver_set_inline_callbacks(PlvDriver *d, const PlvDriverCallbacks *cb,
                                     void *opaque);

/* Readable (eventfd) while outputs are queued. Owned by the driver. */
int plv_driver_event_fd(const PlvDriver *d);

/*
 * Run the callbacks for everything queued so far, on the calling thread, in
 * order. Returns how many outputs were delivered. Call from one thread.
 */
size_t plv_driver_dispatch(PlvDriver *d, const PlvDriverCallbacks *cb,
                           void *opaque);

/*
 * From inside a callback of plv_driver_dispatch(): the output being
 * delivered is not taken. It and everything after it stay queued, in
 * order, and dispatch delivers nothing until plv_driver_dispatch_release()
 * (which signals the event fd). For a caller that cannot act on the next
 * entry yet (QEMU: a syncvm still running in the background). Meanwhile
 * the event fd still signals each new event (a role change), so that the
 * caller may read plv_driver_role() before the event is delivered.
 */
void plv_driver_dispatch_hold(PlvDriver *d);
void plv_driver_dispatch_release(PlvDriver *d);
bool plv_driver_dispatch_held(const PlvDriver *d);

/* Wait until outputs are queued: true if there are, false on timeout. */
bool plv_driver_wait(PlvDriver *d, int timeout_ms);

/*
 * Dispatch from a GMainContext (NULL: the default one): returns the source
 * id. @cb and @opaque must outlive the source; g_source_remove() detaches.
 */
guint plv_driver_attach(PlvDriver *d, GMainContext *ctx,
                        const PlvDriverCallbacks *cb, void *opaque);

typedef struct PlvDriverStats {
    uint64_t submitted;         /* packets taken by submit() */
    uint64_t refused;           /* submit() returned an error */
    uint64_t dropped_lost;      /* taken, then refused by the state machine */
    uint64_t msgs_decoded;
    uint64_t msgs_bad;          /* undecodable messages from peers */
    uint64_t committed;         /* entries delivered to the output queue */
    uint64_t ticks;
    bool store_failed;          /* the store could not be written: this
                                 * replica has stopped speaking */
    PlvPaxosStoreStats store;   /* zero without a store */
    PlvTransportStats transport;
    PlvPaxosStats paxos;        /* as of the last driver loop iteration */
} PlvDriverStats;

/* Snapshot of the counters. Thread-safe. */
void plv_driver_stats(PlvDriver *d, PlvDriverStats *out);

/*
 * The links to peers 0..@n-1, into @out[0..n-1] (this node's own entry
 * reads DOWN, never heard). Thread-safe and cheap: it reads what the
 * transport publishes, without waiting for the driver thread.
 */
void plv_driver_peer_links(PlvDriver *d, PlvPeerLinkInfo *out, unsigned n);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_DRIVER_H */
