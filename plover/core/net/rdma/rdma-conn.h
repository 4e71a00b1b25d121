/*
 * rdma-conn.h — one authenticated RDMA connection (internal to plover/core).
 *
 * Shared by the consensus transport (transport-rdma.c, many peers, epoll)
 * and the bulk link for syncvm (rdma-link.c, one peer, blocking calls), so
 * the ring, the credits and the authentication exist once.
 *
 * Per connection: its own protection domain (an rkey handed to one peer
 * opens only that connection's memory), one CQ with a completion channel,
 * an RC QP made by rdma_cm, and three registered regions, each registered
 * once:
 *   ctrl      small SEND/RECV buffers: handshake, ring offer, credits,
 *             heartbeats; made with the connection;
 *   rx ring   the peer RDMA-WRITEs records into it (REMOTE_WRITE); made
 *             once the peer passed the link handshake (link-proto.h) over
 *             the ctrl messages, then offered to it (address, rkey, size)
 *             in a CTRL_RING message;
 *   tx stage  our copy of what we write into the peer's ring, at the same
 *             offsets (the source of our RDMA WRITEs); made when the
 *             authenticated peer's CTRL_RING arrives.
 * A peer without the secret thus never learns an rkey, nor makes us pin
 * more than the ctrl buffers; and every record carries a checksum keyed
 * with the session key, so its bytes would never be delivered anyway.
 * Record format and the completeness argument: docs/rdma.md.
 */
#ifndef PLOVER_RDMA_CONN_H
#define PLOVER_RDMA_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>
#include <rdma/rdma_cma.h>

#include "plover/link-proto.h"

#define PLV_RDMA_PDATA_LEN 32u          /* our private data, < 56 B (REQ) */
#define PLV_RDMA_MAX_MSG   PLV_LINK_MAX_PAYLOAD
#define PLV_RDMA_MAX_RING  (256u << 20)     /* largest ring a peer may offer */

typedef struct PlvRdmaConn PlvRdmaConn;

typedef struct PlvRdmaConnParams {
    uint32_t self_id;
    PlvLinkChannel channel;
    uint32_t expect_peer;       /* dialer: whom it dials; PLV_LINK_ANY_PEER */
    const uint8_t *secret;      /* borrowed for the handshake's lifetime */
    size_t secret_len;
    size_t ring_bytes;          /* our receive ring; rounded to 4 KiB */
    unsigned signal_every;      /* request a send completion every k WRs */
    /* Seal every ring record with AES-256-GCM (plover/record-seal.h),
     * keyed from the handshake; both ends must (rdma_cm private data). */
    bool sealed;
    /* A complete message of @type (data valid during the call). */
    void (*on_msg)(void *opaque, PlvRdmaConn *c, uint16_t type,
                   const uint8_t *data, size_t len);
    void *opaque;
} PlvRdmaConnParams;

typedef struct PlvRdmaConnStats {
    uint64_t records_in, records_out;
    uint64_t bad_records;       /* checksum/length failures (conn dropped) */
    uint64_t torn_retries;      /* records seen before fully placed */
    uint64_t credits_out, doorbells_out, signaled;
} PlvRdmaConnStats;

/*
 * Make the QP and the ctrl buffers on @id (after ROUTE_RESOLVED for the dialer, on
 * CONNECT_REQUEST for the acceptor) and post the receives. @id is owned by
 * the connection from now on. @pdata receives PLV_RDMA_PDATA_LEN bytes to
 * put in rdma_connect / rdma_accept. NULL with @err on failure (the caller
 * still owns and destroys @id then).
 */
PlvRdmaConn *plv_rdma_conn_new(struct rdma_cm_id *id, bool dialer,
                               const PlvRdmaConnParams *p,
                               uint8_t pdata[PLV_RDMA_PDATA_LEN],
                               GError **err);

/*
 * The peer's private data (from CONNECT_REQUEST or ESTABLISHED): its
 * claimed id. -1 with @err if malformed.
 */
int plv_rdma_conn_set_remote(PlvRdmaConn *c, const void *pdata, size_t len,
                             GError **err);
/* Id the peer claims in its private data (checked against the handshake). */
uint32_t plv_rdma_conn_claimed_id(const PlvRdmaConn *c);

/* RDMA_CM_EVENT_ESTABLISHED: start the handshake. -1 if the QP failed. */
int plv_rdma_conn_established(PlvRdmaConn *c);

/*
 * Process completions and the ring; delivers messages through on_msg.
 * Returns 0, or -1 with @err once the connection is broken (completion
 * error, bad record, failed handshake); it must then be freed.
 */
int plv_rdma_conn_poll(PlvRdmaConn *c, GError **err);

/*
 * After the connection broke (or the peer disconnected): deliver the
 * records that are complete in the ring — they passed every check, so
 * they are what the peer sent before it went. Returns how many records.
 */
int plv_rdma_conn_drain(PlvRdmaConn *c);

/* Re-arm the completion channel and report whether work arrived meanwhile
 * (then poll again instead of sleeping). */
bool plv_rdma_conn_arm(PlvRdmaConn *c);
int plv_rdma_conn_fd(const PlvRdmaConn *c);      /* completion channel */

bool plv_rdma_conn_authenticated(const PlvRdmaConn *c);
bool plv_rdma_conn_failed(const PlvRdmaConn *c);
/* The peer passed the handshake (even if the connection failed since, or
 * the rings are still being exchanged). */
bool plv_rdma_conn_handshake_passed(const PlvRdmaConn *c);
uint32_t plv_rdma_conn_peer_id(const PlvRdmaConn *c);
const uint8_t *plv_rdma_conn_session_key(const PlvRdmaConn *c);

/*
 * Write one message (the concatenation of @iov) from byte *@done on, as far
 * as ring credits and the send queue allow. 1 once all of it was posted,
 * 0 if blocked (poll, then call again with the same arguments), -1 broken.
 */
int plv_rdma_conn_write(PlvRdmaConn *c, uint16_t type, const struct iovec *iov,
                        int iovcnt, size_t len, size_t *done);
/* End of a batch: ring the doorbell on the last write (wakes the peer). */
void plv_rdma_conn_doorbell(PlvRdmaConn *c);

/* True while writes are unannounced or not yet known to be placed (the
 * last signaled WR has not completed): a disconnect now could drop them. */
bool plv_rdma_conn_sends_pending(const PlvRdmaConn *c);

/* A heartbeat (carries our credit). False if no ctrl buffer was free. */
bool plv_rdma_conn_heartbeat(PlvRdmaConn *c);
/* Monotonic µs of the last thing received from the peer. */
int64_t plv_rdma_conn_last_rx(const PlvRdmaConn *c);

struct rdma_cm_id *plv_rdma_conn_id(const PlvRdmaConn *c);
void plv_rdma_conn_stats(const PlvRdmaConn *c, PlvRdmaConnStats *out);

/* rdma_disconnect, destroy QP, regions, CQ, PD and the id. */
void plv_rdma_conn_free(PlvRdmaConn *c);

#endif

/* ---- rdma_cm helpers (rdma-cm.c) ---- */

#include <sys/socket.h>

/* host:port to a socket address (numeric or resolvable). */
int plv_rdma_sockaddr(const char *host, uint16_t port,
                      struct sockaddr_storage *ss, GError **err);

/* A listening id bound to host:port (port 0: ephemeral) on @ec. */
struct rdma_cm_id *plv_rdma_listen_id(struct rdma_event_channel *ec,
                                      const char *host, uint16_t port,
                                      void *context, GError **err);

/* An event channel whose fd does not block. */
struct rdma_event_channel *plv_rdma_event_channel(GError **err);

/*
 * A copy of one cm event, already acknowledged: handling an event may
 * destroy its id, and rdma_destroy_id waits for the id's events to be
 * acknowledged, so nothing may hold one while handling.
 */
typedef struct PlvRdmaCmEvent {
    enum rdma_cm_event_type type;
    int status;
    struct rdma_cm_id *id, *listen_id;
    uint8_t pdata[64];
    size_t pdata_len;
} PlvRdmaCmEvent;

/* 1: one event in @ev; 0: none pending; -1: channel error. */
int plv_rdma_next_event(struct rdma_event_channel *ec, PlvRdmaCmEvent *ev);

/* Connection parameters both ends use (retries: rxe under TCG is slow). */
void plv_rdma_conn_param(struct rdma_conn_param *cp, const uint8_t *pdata);
