/*
 * Background acceptor of authenticated links (see plover/link-acceptor.h).
 *
 * One thread polls the listening socket, a wake-up pipe and the pending
 * connections; each pending connection drives the socket-free handshake
 * of link-proto.c without ever blocking, so one silent client delays
 * nobody. Authenticated links wait in a mailbox, one slot per peer.
 */
#include "plover/link-acceptor.h"
#include "plover/link-proto.h"
#include "plover/peer-mailbox.h"
#include "plover/pending-slots.h"
#include "plover/sockutil.h"
#include "plover/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct Pending {
    PlvPendingSlot slot;        /* first: what plv_pending_victim() weighs */
    int fd;                     /* -1: free slot */
    PlvTlsConn *tls;            /* with cfg.tls: its session */
    PlvHandshake *hs;
    int64_t deadline;
} Pending;

struct PlvLinkAcceptor {
    PlvLinkAcceptorConfig cfg;
    uint8_t *secret;
    PlvAddrSet *allowed;        /* NULL: any address */
    int wake[2];
    int64_t listen_paused_until;    /* out of fds: stop polling the socket */
    pthread_t thread;
    bool stop;                  /* under lock */
    Pending pending[PLV_ACCEPTOR_MAX_PENDING];

    PlvPeerMailbox *mailbox;    /* authenticated links, newest per peer */
    pthread_mutex_t lock;       /* the stats, and stop */
    PlvLinkAcceptorStats st;
};

static void count(PlvLinkAcceptor *a, uint64_t *field)
{
    pthread_mutex_lock(&a->lock);
    (*field)++;
    pthread_mutex_unlock(&a->lock);
}

static void pending_close(Pending *p)
{
    plv_tls_conn_free(p->tls);  /* before the close: it may still send */
    if (p->fd >= 0) {
        close(p->fd);
    }
    plv_handshake_free(p->hs);
    p->fd = -1;
    p->hs = NULL;
    p->tls = NULL;
}

/* A free slot for a connection from @src, made by pushing one out if
 * need be (plover/pending-slots.h). */
static Pending *slot_for(PlvLinkAcceptor *a, const PlvIpAddr *src)
{
    PlvPendingSlot *used[PLV_ACCEPTOR_MAX_PENDING];
    Pending *free_slot = NULL;
    unsigned n = 0;

    for (unsigned i = 0; i < PLV_ACCEPTOR_MAX_PENDING; i++) {
        Pending *p = &a->pending[i];
        if (p->fd >= 0) {
            used[n++] = &p->slot;
        } else if (!free_slot) {
            free_slot = p;
        }
    }
    int v = plv_pending_victim(used, n, PLV_ACCEPTOR_MAX_PENDING,
                               PLV_ACCEPTOR_MAX_PER_ADDR, src);
    if (v < 0) {
        return free_slot;
    }
    Pending *victim = (Pending *)used[v];
    count(a, &a->st.evicted);
    pending_close(victim);
    return victim;
}

static void accept_new(PlvLinkAcceptor *a)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        PlvIpAddr addr;
        int fd = accept4(a->cfg.listen_fd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* The socket stays readable: polling it now would spin. */
                a->listen_paused_until = g_get_monotonic_time() + 50 * 1000;
            }
            return;
        }
        if (!plv_ip_addr_from_sockaddr((struct sockaddr *)&sa, &addr) ||
            (a->allowed && !plv_addr_set_contains(a->allowed, &addr))) {
            count(a, &a->st.strangers);     /* before a test sees the close */
            close(fd);
            continue;
        }
        plv_sock_tune(fd);
        Pending *p = slot_for(a, &addr);
        p->fd = fd;
        p->hs = plv_handshake_new(false, a->cfg.self_id, a->cfg.channel,
                                  a->secret, a->cfg.secret_len);
        p->slot = (PlvPendingSlot){ .src = addr, .since = g_get_monotonic_time() };
        if (a->cfg.tls && !(p->tls = plv_tls_conn_new(a->cfg.tls, fd, false, NULL))) {
            count(a, &a->st.failed);
            pending_close(p);
            continue;
        }
        plv_handshake_bind_tls(p->hs, p->tls);
        p->deadline = plv_deadline_from_timeout(a->cfg.handshake_timeout_ms);
    }
}

/* A TLS refusal: counted, and said (once a minute for the same text). */
static void tls_refused(PlvLinkAcceptor *a, Pending *p, GError *err)
{
    char addr[48], who[64];
    plv_ip_addr_format(&p->slot.src, addr, sizeof(addr));
    g_snprintf(who, sizeof(who), "from %s", addr);
    plv_tls_log_refusal(a->cfg.tls,
                        a->cfg.channel == PLV_LINK_CHANNEL_SYNCVM
                            ? "syncvm" : "consensus",
                        who, err ? err->message : "TLS failed");
    g_clear_error(&err);
    count(a, &a->st.tls_refused);
    count(a, &a->st.failed);
    pending_close(p);
}

/* The newest link of a peer replaces one its owner never took. */
static void deliver(PlvLinkAcceptor *a, Pending *p)
{
    uint32_t peer = plv_handshake_peer_id(p->hs);
    bool replaced;

    if (peer >= a->cfg.n_peers || peer == a->cfg.self_id) {
        count(a, &a->st.failed);
        pending_close(p);
        return;
    }
    PlvLinkSession *s = plv_handshake_finish(p->hs);
    PlvLink *l = plv_link_new_authenticated(p->fd, p->tls, s, a->cfg.io_timeout_ms);
    p->fd = -1;
    p->tls = NULL;
    pending_close(p);
    /* Counted first: whoever takes the link may look at the stats. */
    count(a, &a->st.accepted);
    replaced = plv_peer_mailbox_put(a->mailbox, peer, l);
    if (replaced) {
        count(a, &a->st.replaced);
    }
}

/* Move one pending handshake on as far as the socket allows. */
static void step(PlvLinkAcceptor *a, Pending *p)
{
    if (p->tls && !plv_tls_conn_established(p->tls)) {
        GError *err = NULL;
        int r = plv_tls_conn_handshake(p->tls, &err);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            tls_refused(a, p, err);
            return;
        }
    }
    for (;;) {
        const uint8_t *out;
        size_t olen = plv_handshake_output(p->hs, &out);
        if (olen) {
            ssize_t n = plv_stream_send(p->fd, p->tls, out, olen);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            if (n <= 0) {
                break;
            }
            plv_handshake_output_done(p->hs, n);
            continue;
        }
        if (plv_handshake_done(p->hs)) {
            deliver(a, p);
            return;
        }
        /* Read exactly what the step needs: later bytes are frames. */
        uint8_t in[PLV_LINK_HELLO_LEN];
        size_t want = MIN(plv_handshake_want(p->hs), sizeof(in));
        if (!want) {
            break;
        }
        ssize_t n = plv_stream_read(p->fd, p->tls, in, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        size_t used;
        GError *err = NULL;
        int r = n > 0 ? plv_handshake_input(p->hs, in, n, &used, &err) : -1;
        if (r < 0 && plv_handshake_tls_refused(p->hs)) {
            tls_refused(a, p, err);
            return;
        }
        g_clear_error(&err);
        if (r < 0) {
            break;
        }
        p->slot.heard = true;
    }
    count(a, &a->st.failed);
    pending_close(p);
}

static void *acceptor_thread(void *opaque)
{
    PlvLinkAcceptor *a = opaque;
    struct pollfd pfd[2 + PLV_ACCEPTOR_MAX_PENDING];
    Pending *of[2 + PLV_ACCEPTOR_MAX_PENDING];

    for (;;) {
        int64_t deadline = PLV_DEADLINE_NONE;
        nfds_t n = 0;

        pthread_mutex_lock(&a->lock);
        bool stop = a->stop;
        pthread_mutex_unlock(&a->lock);
        if (stop) {
            return NULL;
        }
        bool listening = g_get_monotonic_time() >= a->listen_paused_until;

        pfd[n++] = (struct pollfd){ .fd = a->wake[0], .events = POLLIN };
        /* fd -1: poll skips it */
        pfd[n++] = (struct pollfd){ .fd = listening ? a->cfg.listen_fd : -1,
                                    .events = POLLIN };
        if (!listening) {
            deadline = a->listen_paused_until;
        }
        for (unsigned i = 0; i < PLV_ACCEPTOR_MAX_PENDING; i++) {
            Pending *p = &a->pending[i];
            if (p->fd < 0) {
                continue;
            }
            if (p->deadline <= g_get_monotonic_time()) {
                count(a, &a->st.timed_out);
                pending_close(p);
                continue;
            }
            deadline = MIN(deadline, p->deadline);
            of[n] = p;
            short events = POLLIN;
            if (p->tls && !plv_tls_conn_established(p->tls)) {
                events = plv_tls_conn_events(p->tls);
            } else if (plv_handshake_output(p->hs, &(const uint8_t *){ NULL })) {
                events |= POLLOUT;
            }
            pfd[n++] = (struct pollfd){ .fd = p->fd, .events = events };
        }
        if (poll(pfd, n, plv_deadline_remaining_ms(deadline)) < 0 && errno != EINTR) {
            g_usleep(10 * 1000);    /* out of resources: try again shortly */
            continue;
        }
        if (pfd[0].revents) {
            char buf[16];
            while (read(a->wake[0], buf, sizeof(buf)) > 0) {
            }
        }
        for (nfds_t i = 2; i < n; i++) {
            if (pfd[i].revents) {
                step(a, of[i]);
            }
        }
        if (pfd[1].revents) {
            accept_new(a);
        }
    }
}

PlvLinkAcceptor *plv_link_acceptor_new(const PlvLinkAcceptorConfig *cfg,
                                       GError **err)
{
    PlvLinkAcceptor *a;

    if (!plv_link_check_secret(cfg->secret, cfg->secret_len, err)) {
        plv_addr_set_free(cfg->allowed);
        return NULL;
    }
    a = g_new0(PlvLinkAcceptor, 1);
    a->cfg = *cfg;
    a->secret = g_memdup2(cfg->secret, cfg->secret_len);
    a->cfg.secret = a->secret;
    a->cfg.tls = plv_tls_ref(cfg->tls);
    a->allowed = cfg->allowed;
    a->cfg.allowed = NULL;
    a->mailbox = plv_peer_mailbox_new(cfg->n_peers, (GDestroyNotify)plv_link_close);
    for (unsigned i = 0; i < PLV_ACCEPTOR_MAX_PENDING; i++) {
        a->pending[i].fd = -1;
    }
    pthread_mutex_init(&a->lock, NULL);
    if (pipe2(a->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "pipe: %s",
                    g_strerror(errno));
        goto fail;
    }
    int r = pthread_create(&a->thread, NULL, acceptor_thread, a);
    if (r) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "acceptor thread: %s", g_strerror(r));
        close(a->wake[0]);
        close(a->wake[1]);
        goto fail;
    }
    return a;
fail:
    plv_addr_set_free(a->allowed);
    plv_peer_mailbox_free(a->mailbox);
    pthread_mutex_destroy(&a->lock);
    plv_tls_unref(a->cfg.tls);
    g_free(a->secret);
    g_free(a);
    return NULL;
}

PlvLink *plv_link_acceptor_take(PlvLinkAcceptor *a, uint32_t peer,
                                int timeout_ms)
{
    return plv_peer_mailbox_take(a->mailbox, peer, timeout_ms);
}

bool plv_link_acceptor_ready(PlvLinkAcceptor *a, uint32_t peer)
{
    return plv_peer_mailbox_ready(a->mailbox, peer);
}

void plv_link_acceptor_get_stats(PlvLinkAcceptor *a, PlvLinkAcceptorStats *st)
{
    pthread_mutex_lock(&a->lock);
    *st = a->st;
    pthread_mutex_unlock(&a->lock);
}

void plv_link_acceptor_free(PlvLinkAcceptor *a)
{
    if (!a) {
        return;
    }
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_mutex_unlock(&a->lock);
    if (write(a->wake[1], "x", 1) < 0) {
        /* the pipe is non-blocking and was full: the thread wakes anyway */
    }
    pthread_join(a->thread, NULL);
    for (unsigned i = 0; i < PLV_ACCEPTOR_MAX_PENDING; i++) {
        pending_close(&a->pending[i]);
    }
    plv_peer_mailbox_free(a->mailbox);
    close(a->cfg.listen_fd);
    close(a->wake[0]);
    close(a->wake[1]);
    plv_addr_set_free(a->allowed);
    pthread_mutex_destroy(&a->lock);
    plv_tls_unref(a->cfg.tls);
    g_free(a->secret);
    g_free(a);
}
