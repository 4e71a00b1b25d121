/*
 * Newest item per peer between two threads (see plover/peer-mailbox.h).
 */
#include "plover/peer-mailbox.h"
#include "plover/sockutil.h"

#include <pthread.h>
#include <time.h>

struct PlvPeerMailbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint32_t n;
    GDestroyNotify destroy;
    void **slot;                /* [n] */
};

PlvPeerMailbox *plv_peer_mailbox_new(uint32_t n_peers, GDestroyNotify destroy)
{
    PlvPeerMailbox *m = g_new0(PlvPeerMailbox, 1);
    pthread_condattr_t ca;

    pthread_mutex_init(&m->lock, NULL);
    /* Waits are measured on the monotonic clock: a wall clock stepped
     * back would lengthen them. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    m->n = n_peers;
    m->destroy = destroy;
    m->slot = g_new0(void *, n_peers);
    return m;
}

bool plv_peer_mailbox_put(PlvPeerMailbox *m, uint32_t peer, void *item)
{
    void *old;

    if (peer >= m->n) {
        m->destroy(item);
        return false;
    }
    pthread_mutex_lock(&m->lock);
    old = m->slot[peer];
    m->slot[peer] = item;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (old) {
        m->destroy(old);        /* outside the lock: closing may take a while */
    }
    return old != NULL;
}

void *plv_peer_mailbox_take(PlvPeerMailbox *m, uint32_t peer, int timeout_ms)
{
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    void *item;

    if (peer >= m->n) {
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    while (!m->slot[peer] && g_get_monotonic_time() < deadline) {
        /* g_get_monotonic_time() is CLOCK_MONOTONIC on Linux. */
        struct timespec ts = {
            .tv_sec = deadline / G_USEC_PER_SEC,
            .tv_nsec = (deadline % G_USEC_PER_SEC) * 1000,
        };
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    item = m->slot[peer];
    m->slot[peer] = NULL;
    pthread_mutex_unlock(&m->lock);
    return item;
}

bool plv_peer_mailbox_ready(PlvPeerMailbox *m, uint32_t peer)
{
    bool r;

    pthread_mutex_lock(&m->lock);
    r = peer < m->n && m->slot[peer];
    pthread_mutex_unlock(&m->lock);
    return r;
}

void plv_peer_mailbox_free(PlvPeerMailbox *m)
{
    if (!m) {
        return;
    }
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->slot[i]) {
            m->destroy(m->slot[i]);
        }
    }
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    g_free(m->slot);
    g_free(m);
}
