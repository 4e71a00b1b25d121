/*
 * plover/link-acceptor.h — accepts authenticated links in the background.
 *
 * A listening socket that nothing on the network can wedge: a thread of
 * its own accepts, closes at once every connection whose source address
 * is not a configured peer's (before it takes a slot), runs up to
 * PLV_ACCEPTOR_MAX_PENDING handshakes at the same time, each bounded by
 * its own timeout, and keeps the newest authenticated link of each peer
 * until its owner takes it. A stranger can at most occupy slots from a
 * peer's own address, where newer connections push out older ones, and
 * the owner never waits on a socket that has not proven the secret.
 */
#ifndef PLOVER_LINK_ACCEPTOR_H
#define PLOVER_LINK_ACCEPTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "plover/link-proto.h"
#include "plover/sockutil.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLV_ACCEPTOR_MAX_PENDING   8u  /* handshakes in progress at once */
#define PLV_ACCEPTOR_MAX_PER_ADDR  2u  /* of which from one source address */

typedef struct PlvLinkAcceptorConfig {
    int listen_fd;              /* listening socket; the acceptor owns it */
    uint32_t self_id;
    PlvLinkChannel channel;     /* what the handshake binds the links to */
    uint32_t n_peers;           /* authenticated ids must be < n_peers */
    /* Source addresses allowed to connect (taken over); NULL: any. */
    PlvAddrSet *allowed;
    const uint8_t *secret;
    size_t secret_len;
    /* TLS inside which every handshake runs (a reference is taken); NULL:
     * plaintext. */
    PlvTls *tls;
    int handshake_timeout_ms;   /* per connection, from its accept */
    int io_timeout_ms;          /* of the links handed out (plv_link_accept) */
} PlvLinkAcceptorConfig;

typedef struct PlvLinkAcceptorStats {
    uint64_t accepted;          /* authenticated links made available */
    uint64_t strangers;         /* closed at accept: not a peer's address */
    uint64_t failed;            /* handshake failed (secret, HELLO, id) */
    uint64_t tls_refused;       /* ...of which TLS: certificate, plaintext */
    uint64_t timed_out;         /* handshake not done within its timeout */
    uint64_t evicted;           /* pending handshakes pushed out by newer ones */
    uint64_t replaced;          /* links never taken, replaced by newer ones */
} PlvLinkAcceptorStats;

typedef struct PlvLinkAcceptor PlvLinkAcceptor;

/* Starts the thread. On error (a short secret, no thread) returns NULL and
 * closes nothing. */
PlvLinkAcceptor *plv_link_acceptor_new(const PlvLinkAcceptorConfig *cfg,
                                       GError **err);

/*
 * The newest authenticated link from @peer not taken yet (the caller owns
 * it), waiting up to @timeout_ms for one (0: do not wait). NULL if none.
 */
PlvLink *plv_link_acceptor_take(PlvLinkAcceptor *a, uint32_t peer,
                                int timeout_ms);

/* True if an authenticated link from @peer waits to be taken. */
bool plv_link_acceptor_ready(PlvLinkAcceptor *a, uint32_t peer);

void plv_link_acceptor_get_stats(PlvLinkAcceptor *a, PlvLinkAcceptorStats *st);

/* Stops the thread; closes the socket, pending connections, untaken links. */
void plv_link_acceptor_free(PlvLinkAcceptor *a);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_LINK_ACCEPTOR_H */
