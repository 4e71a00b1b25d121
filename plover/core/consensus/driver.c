/*
 * The consensus driver thread (see plover/driver.h).
 *
 * Inputs cross into the driver thread through one mutex-protected buffer of
 * length-prefixed packets (no allocation per packet) plus a queue of rare
 * commands; the thread swaps the buffer out whole, so a burst of submits
 * costs one lock round and one wakeup, and all of it lands in the state
 * machine before it next proposes: that is where batching comes from.
 * Outputs go the other way through a queue and an eventfd.
 * (pthread mutexes rather than GMutex: ThreadSanitizer understands them.)
 */
#include "plover/driver.h"
#include "plover/sockutil.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <glib-unix.h>

enum { CMD_SYNCVM, CMD_END, CMD_APPLIED, CMD_INSTALL, CMD_ADD_ERR, CMD_RESET_ERR,
       CMD_TRANSFER, CMD_SET_KEPT, CMD_INLINE };

typedef struct {
    int kind;
    uint64_t arg;
    PlvDriverCallbacks cb;      /* CMD_INLINE */
    void *opaque;
} Cmd;

enum { OUT_COMMIT, OUT_EVENT };

typedef struct {
    int kind;
    PlvEntry e;
    PlvEvent ev;
} OutItem;

struct PlvDriver {
    PlvDriverConfig cfg;
    PlvPaxos *paxos;
    PlvTransport *t;
    GThread *thread;
    int stop;                   /* atomic */
    bool started;

    /* submit side (any thread) */
    pthread_mutex_t in_lock;
    GByteArray *in_pkts;        /* u32 len + bytes, repeated */
    GArray *in_cmds;            /* of Cmd */
    GByteArray *in_spare;       /* swapped in by the driver thread */
    GArray *cmds_spare;

    /* published by the driver thread, read anywhere */
    int role;                   /* atomic PlvRole */
    uint32_t leader;            /* atomic */
    uint64_t commit_index;      /* atomic */
    uint64_t paxos_queued;      /* atomic: bytes waiting in the state machine */

    /* inline callbacks: run on the driver thread instead of queueing */
    PlvDriverCallbacks inline_cb;
    void *inline_opaque;
    bool inline_mode;
    GThread *loop_thread;       /* atomic: the driver thread, once running */

    /* output side */
    pthread_mutex_t out_lock;
    GArray *out;                /* of OutItem */
    GArray *out_spare;          /* dispatcher's */
    int out_fd;
    /* dispatcher's: plv_driver_dispatch_hold() was called; items held */
    bool held;
    GArray *held_items;         /* of OutItem, delivered before out's */

    /* driver-thread state */
    PlvReady rd;
    PlvPaxosStore *store;
    int store_failed;           /* atomic: the store failed, nothing is sent */
    bool slow_sync_said;        /* the first slow sync was logged */
    GByteArray *enc;
    int64_t next_tick;

    uint64_t refused;           /* atomic: bumped by submitting threads */
    /* driver-thread counters, published to st once per loop iteration */
    uint64_t n_submitted, n_lost, n_decoded, n_bad, n_committed, n_ticks;
    pthread_mutex_t stats_lock;
    PlvDriverStats st;
};

void plv_driver_config_default(PlvDriverConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    plv_paxos_config_default(&cfg->paxos);
    cfg->tick_ms = 5;
}

PlvDriver *plv_driver_new(const PlvDriverConfig *cfg, PlvTransport *t,
                          GError **err)
{
    PlvPaxos *paxos = plv_paxos_new(&cfg->paxos, err);
    int out_fd = paxos ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
    if (paxos && out_fd < 0) {
        g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "plover driver: eventfd: %s", g_strerror(errno));
        plv_paxos_free(paxos);
        paxos = NULL;
    }
    if (!paxos) {
        plv_transport_free(t);
        plv_paxos_store_free(cfg->store);
        return NULL;
    }
    PlvDriver *d = g_new0(PlvDriver, 1);
    d->cfg = *cfg;
    if (!d->cfg.tick_ms) {
        d->cfg.tick_ms = 5;
    }
    if (!d->cfg.max_pending_bytes) {
        d->cfg.max_pending_bytes = cfg->paxos.max_queue_bytes
                                       ? cfg->paxos.max_queue_bytes : 16u << 20;
    }
    d->paxos = paxos;
    d->t = t;
    d->store = cfg->store;
    d->cfg.store = NULL;
    pthread_mutex_init(&d->in_lock, NULL);
    pthread_mutex_init(&d->out_lock, NULL);
    pthread_mutex_init(&d->stats_lock, NULL);
    d->in_pkts = g_byte_array_new();
    d->in_spare = g_byte_array_new();
    d->in_cmds = g_array_new(FALSE, FALSE, sizeof(Cmd));
    d->cmds_spare = g_array_new(FALSE, FALSE, sizeof(Cmd));
    d->out = g_array_new(FALSE, FALSE, sizeof(OutItem));
    d->out_spare = g_array_new(FALSE, FALSE, sizeof(OutItem));
    d->held_items = g_array_new(FALSE, FALSE, sizeof(OutItem));
    d->out_fd = out_fd;
    plv_ready_init(&d->rd);
    d->enc = g_byte_array_new();
    d->role = plv_paxos_role(paxos);
    d->leader = plv_paxos_leader(paxos);
    return d;
}

/* ---- inputs ---- */

/*
 * Wake the driver on the empty -> non-empty edge of the input queue. Not
 * from the driver thread itself (inline callbacks): it looks at the queue
 * before it next blocks.
 */
static void wake_if(PlvDriver *d, bool was_empty)
{
    if (was_empty && g_atomic_pointer_get(&d->loop_thread) != g_thread_self()) {
        plv_transport_wakeup(d->t);
    }
}

static bool inputs_pending(PlvDriver *d)
{
    pthread_mutex_lock(&d->in_lock);
    bool pending = d->in_pkts->len || d->in_cmds->len;
    pthread_mutex_unlock(&d->in_lock);
    return pending;
}

static int refuse(PlvDriver *d, int err)
{
    __atomic_fetch_add(&d->refused, 1, __ATOMIC_RELAXED);
    return err;
}

/* Submit and forward differ only here: the state machine hands every
 * packet to plv_paxos_forward_input(), which submits it on a leader that
 * takes inputs and forwards it anywhere else (leadership may have moved
 * since this check). */
static int queue_packet(PlvDriver *d, const void *pkt, size_t len, bool forward)
{
    uint32_t max = d->cfg.paxos.max_batch_bytes;
    if (len == 0 || (max && len > max) || len > G_MAXUINT32 - 4) {
        return refuse(d, -EINVAL);
    }
    if (g_atomic_int_get(&d->stop)) {
        return refuse(d, -ESHUTDOWN);
    }
    if (!forward && g_atomic_int_get(&d->role) != PLV_ROLE_LEADER) {
        return refuse(d, -EPERM);
    }
    pthread_mutex_lock(&d->in_lock);
    /* Back-pressure covers the state machine's queue too, so that a packet
     * taken here is not refused there for space. */
    uint64_t queued = __atomic_load_n(&d->paxos_queued, __ATOMIC_RELAXED);
    if (d->in_pkts->len + queued + len + 4 > d->cfg.max_pending_bytes) {
        pthread_mutex_unlock(&d->in_lock);
        return refuse(d, -ENOBUFS);
    }
    bool was_empty = d->in_pkts->len == 0 && d->in_cmds->len == 0;
    uint32_t l32 = len;
    g_byte_array_append(d->in_pkts, (const guint8 *)&l32, sizeof(l32));
    g_byte_array_append(d->in_pkts, pkt, len);
    pthread_mutex_unlock(&d->in_lock);
    wake_if(d, was_empty);
    return 0;
}

int plv_driver_submit(PlvDriver *d, const void *pkt, size_t len)
{
    return queue_packet(d, pkt, len, false);
}

int plv_driver_forward(PlvDriver *d, const void *pkt, size_t len)
{
    return queue_packet(d, pkt, len, true);
}

static void push_cmd_full(PlvDriver *d, const Cmd *cmd)
{
    Cmd c = *cmd;
    pthread_mutex_lock(&d->in_lock);
    bool was_empty = d->in_pkts->len == 0 && d->in_cmds->len == 0;
    g_array_append_val(d->in_cmds, c);
    pthread_mutex_unlock(&d->in_lock);
    wake_if(d, was_empty);
}

static void push_cmd(PlvDriver *d, int kind, uint64_t arg)
{
    Cmd c = { .kind = kind, .arg = arg };
    push_cmd_full(d, &c);
}

static void set_inline(PlvDriver *d, const PlvDriverCallbacks *cb, void *opaque)
{
    d->inline_mode = cb != NULL;
    d->inline_cb = cb ? *cb : (PlvDriverCallbacks){ 0 };
    d->inline_opaque = opaque;
}

int plv_driver_propose_syncvm(PlvDriver *d, uint64_t epoch)
{
    if (g_atomic_int_get(&d->role) != PLV_ROLE_LEADER) {
        return -EPERM;
    }
    push_cmd(d, CMD_SYNCVM, epoch);
    return 0;
}

int plv_driver_propose_end(PlvDriver *d)
{
    if (g_atomic_int_get(&d->role) != PLV_ROLE_LEADER) {
        return -EPERM;
    }
    push_cmd(d, CMD_END, 0);
    return 0;
}

void plv_driver_applied_syncvm(PlvDriver *d, uint64_t index)
{
    push_cmd(d, CMD_APPLIED, index);
}

void plv_driver_install_snapshot(PlvDriver *d, uint64_t index)
{
    push_cmd(d, CMD_INSTALL, index);
}

void plv_driver_add_err(PlvDriver *d, uint32_t peer)
{
    push_cmd(d, CMD_ADD_ERR, peer);
}

void plv_driver_reset_err(PlvDriver *d, uint32_t peer)
{
    push_cmd(d, CMD_RESET_ERR, peer);
}

int plv_driver_transfer_leadership(PlvDriver *d, uint32_t to)
{
    if (g_atomic_int_get(&d->role) != PLV_ROLE_LEADER) {
        return -EPERM;
    }
    push_cmd(d, CMD_TRANSFER, to);
    return 0;
}

void plv_driver_set_kept(PlvDriver *d, uint64_t vid)
{
    push_cmd(d, CMD_SET_KEPT, vid);
}

/* Driver thread: hand everything queued so far to the state machine. */
static void take_inputs(PlvDriver *d)
{
    pthread_mutex_lock(&d->in_lock);
    GByteArray *pkts = d->in_pkts;
    GArray *cmds = d->in_cmds;
    d->in_pkts = d->in_spare;
    d->in_cmds = d->cmds_spare;
    pthread_mutex_unlock(&d->in_lock);

    uint64_t taken = 0, lost = 0;
    for (size_t off = 0; off < pkts->len;) {
        uint32_t len;
        memcpy(&len, pkts->data + off, sizeof(len));
        off += sizeof(len);
        taken++;
        /* submitted here, or held for and forwarded to whoever leads */
        if (plv_paxos_forward_input(d->paxos, pkts->data + off, len, &d->rd) < 0) {
            lost++;             /* a queue is full */
        }
        off += len;
    }
    for (guint i = 0; i < cmds->len; i++) {
        Cmd *c = &g_array_index(cmds, Cmd, i);
        switch (c->kind) {
        case CMD_SYNCVM:
            plv_paxos_propose_syncvm(d->paxos, c->arg, &d->rd);
            break;
        case CMD_END:
            plv_paxos_propose_end(d->paxos, &d->rd);
            break;
        case CMD_APPLIED:
            plv_paxos_applied_syncvm(d->paxos, c->arg);
            break;
        case CMD_INSTALL:
            plv_paxos_install_snapshot(d->paxos, c->arg, &d->rd);
            break;
        case CMD_ADD_ERR:
            plv_paxos_add_err(d->paxos, c->arg);
            break;
        case CMD_RESET_ERR:
            plv_paxos_reset_err(d->paxos, c->arg);
            break;
        case CMD_TRANSFER:
            /* Refused if the secondary changed meanwhile: the caller sees
             * no role change and gives up at its deadline. */
            plv_paxos_transfer_leadership(d->paxos, c->arg, &d->rd);
            break;
        case CMD_SET_KEPT:
            plv_paxos_set_kept(d->paxos, c->arg);
            break;
        case CMD_INLINE:
            set_inline(d, c->arg ? &c->cb : NULL, c->opaque);
            break;
        }
    }
    g_byte_array_set_size(pkts, 0);
    g_array_set_size(cmds, 0);
    d->in_spare = pkts;
    d->cmds_spare = cmds;
    d->n_submitted += taken;
    d->n_lost += lost;
}

/* ---- outputs ---- */

static void out_item_clear(OutItem *it)
{
    if (it->kind == OUT_COMMIT) {
        plv_entry_clear(&it->e);
    }
}

/*
 * Keep what the state machine changed of its durable state on disk before
 * anything that depends on it leaves (docs/consensus.md, "Durable state").
 * A replica that cannot write it stops speaking for good: a promise or an
 * acceptance not on disk could be forgotten by a restart.
 */
static bool persist(PlvDriver *d)
{
    PlvDurable *chg = &d->rd.stable;
    g_autoptr(GError) err = NULL;

    if (g_atomic_int_get(&d->store_failed)) {
        return false;
    }
    if (!d->store || !chg->dirty) {
        return true;
    }
    if (!plv_paxos_store_append(d->store, chg, &err)) {
        g_warning("plover driver: consensus state not kept, this replica stops "
                  "speaking: %s", err->message);
        g_atomic_int_set(&d->store_failed, true);
        return false;
    }
    PlvPaxosStoreStats st;
    plv_paxos_store_stats(d->store, &st);
    if (st.slow_syncs && !d->slow_sync_said) {
        /* once: the counter (query-plover) tells how often */
        d->slow_sync_said = true;
        g_warning("plover driver: writing the consensus state took over %u ms: "
                  "a slow disk holds this replica's messages back (counted in "
                  "slow-syncs)", PLV_STORE_SLOW_US / 1000);
    }
    plv_durable_clear(chg);
    return true;
}

/* Encode and send the messages not sent yet (from *sent on), then flush. */
static void send_msgs(PlvDriver *d, guint *sent)
{
    PlvReady *rd = &d->rd;
    if (*sent == rd->msgs->len) {
        return;
    }
    if (!persist(d)) {
        *sent = rd->msgs->len;
        return;
    }
    for (; *sent < rd->msgs->len; (*sent)++) {
        PlvOutMsg *om = g_ptr_array_index(rd->msgs, *sent);
        g_byte_array_set_size(d->enc, 0);
        GError *err = NULL;
        if (!plv_wire_encode(&om->msg, d->enc, &err)) {
            g_warning("plover driver: cannot encode %s: %s",
                      plv_msg_type_name(om->msg.type), err->message);
            g_error_free(err);
            continue;
        }
        /* A drop is fine: the state machine retransmits on its ticks. */
        plv_transport_send(d->t, om->to, d->enc->data, d->enc->len);
    }
    /* On the wire before waking anyone: a woken consumer thread may
     * preempt this one, and peers wait on these messages. */
    plv_transport_flush(d->t);
}

static void publish_state(PlvDriver *d)
{
    g_atomic_int_set(&d->role, plv_paxos_role(d->paxos));
    g_atomic_int_set(&d->leader, plv_paxos_leader(d->paxos));
    __atomic_store_n(&d->commit_index, plv_paxos_commit_index(d->paxos),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&d->paxos_queued, plv_paxos_queued_bytes(d->paxos),
                     __ATOMIC_RELAXED);
}

static void queue_outputs(PlvDriver *d)
{
    PlvReady *rd = &d->rd;
    if (!rd->committed->len && !rd->events->len) {
        return;
    }
    if (!persist(d)) {
        return;
    }
    pthread_mutex_lock(&d->out_lock);
    bool was_empty = d->out->len == 0;
    /* Events first: a role change precedes the entries it enables. */
    for (guint i = 0; i < rd->events->len; i++) {
        OutItem it = { .kind = OUT_EVENT,
                       .ev = g_array_index(rd->events, PlvEvent, i) };
        g_array_append_val(d->out, it);
    }
    for (guint i = 0; i < rd->committed->len; i++) {
        OutItem it = { .kind = OUT_COMMIT };
        plv_entry_copy(&it.e, &g_array_index(rd->committed, PlvEntry, i));
        g_array_append_val(d->out, it);
    }
    pthread_mutex_unlock(&d->out_lock);
    /*
     * A queue that was not empty was signalled already. Events signal
     * anyway: a dispatcher that holds its items back
     * (plv_driver_dispatch_hold) still wakes, and may read the new role.
     */
    if (was_empty || rd->events->len) {
        uint64_t one = 1;
        if (write(d->out_fd, &one, sizeof(one)) < 0) {
            /* counter saturated: already readable */
        }
    }
}

/*
 * Inline callbacks for every output; what they submit goes to the state
 * machine right away (a few rounds at most, so a one-node cluster that
 * commits on submit cannot spin here), and its outputs get callbacks too.
 */
static void run_inline(PlvDriver *d)
{
    PlvReady *rd = &d->rd;
    const PlvDriverCallbacks *cb = &d->inline_cb;
    guint ev = 0, com = 0;
    for (int takes = 0;;) {
        /* what the last round's submissions changed, before its outputs */
        if (!persist(d)) {
            return;
        }
        for (; ev < rd->events->len; ev++) {
            if (cb->event) {
                cb->event(d->inline_opaque, &g_array_index(rd->events, PlvEvent, ev));
            }
        }
        for (; com < rd->committed->len; com++) {
            if (cb->committed) {
                cb->committed(d->inline_opaque,
                              &g_array_index(rd->committed, PlvEntry, com));
            }
        }
        if (takes >= 4 || !inputs_pending(d)) {
            break;
        }
        take_inputs(d);
        publish_state(d);
        takes++;
    }
}

/*
 * Driver thread: act on what the state machine produced. Messages normally
 * go out first (peers wait on them). A leader with inline callbacks runs
 * them first instead: they typically submit the next packets, whose
 * proposal then leaves in the same write as the messages of this step
 * (e.g. the commit notice), waking each follower once instead of twice.
 */
static void process_ready(PlvDriver *d)
{
    PlvReady *rd = &d->rd;
    guint sent = 0;
    /* A step may change what must be kept without a message to send (a
     * truncation on a tick): kept all the same, before anything else. */
    persist(d);
    /* Published before any callback runs, so one may submit at once. */
    publish_state(d);
    bool leader_first = d->inline_mode &&
                        plv_paxos_role(d->paxos) == PLV_ROLE_LEADER;
    if (!leader_first) {
        send_msgs(d, &sent);
    }
    if (d->inline_mode) {
        run_inline(d);
        send_msgs(d, &sent);    /* what the callbacks' commands produced */
    } else {
        queue_outputs(d);
    }
    d->n_committed += rd->committed->len;
    persist(d);     /* what inline callbacks changed without a message */
    plv_ready_clear(rd);
}

int plv_driver_event_fd(const PlvDriver *d)
{
    return d->out_fd;
}

size_t plv_driver_dispatch(PlvDriver *d, const PlvDriverCallbacks *cb,
                           void *opaque)
{
    uint64_t v;
    /* Clear first: anything queued after the swap below signals again. */
    if (read(d->out_fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing signalled; the queue may still hold items */
    }
    if (d->held) {
        return 0;               /* the eventfd signals again on release */
    }
    pthread_mutex_lock(&d->out_lock);
    GArray *items = d->out;
    d->out = d->out_spare;
    pthread_mutex_unlock(&d->out_lock);
    /* What an earlier hold kept comes first, in order. */
    if (d->held_items->len) {
        g_array_prepend_vals(items, d->held_items->data, d->held_items->len);
        g_array_set_size(d->held_items, 0);
    }

    size_t n = 0;
    guint i;
    for (i = 0; i < items->len && !d->held; i++) {
        OutItem *it = &g_array_index(items, OutItem, i);
        if (it->kind == OUT_COMMIT) {
            if (cb && cb->committed) {
                cb->committed(opaque, &it->e);
            }
        } else if (cb && cb->event) {
            cb->event(opaque, &it->ev);
        }
        if (d->held) {
            break;              /* this one was not taken: kept with the rest */
        }
        out_item_clear(it);
        n++;
    }
    if (i < items->len) {
        g_array_append_vals(d->held_items, &g_array_index(items, OutItem, i),
                            items->len - i);
    }
    g_array_set_size(items, 0);
    d->out_spare = items;
    return n;
}

void plv_driver_dispatch_hold(PlvDriver *d)
{
    d->held = true;
}

void plv_driver_dispatch_release(PlvDriver *d)
{
    uint64_t one = 1;

    d->held = false;
    /* Wake the dispatcher for what the hold kept. */
    if (write(d->out_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already signalled */
    }
}

bool plv_driver_dispatch_held(const PlvDriver *d)
{
    return d->held;
}

bool plv_driver_wait(PlvDriver *d, int timeout_ms)
{
    struct pollfd pfd = { .fd = d->out_fd, .events = POLLIN };
    int r;
    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

typedef struct {
    PlvDriver *d;
    const PlvDriverCallbacks *cb;
    void *opaque;
} AttachCtx;

static gboolean attach_dispatch(gint fd, GIOCondition cond, gpointer data)
{
    AttachCtx *a = data;
    plv_driver_dispatch(a->d, a->cb, a->opaque);
    return G_SOURCE_CONTINUE;
}

guint plv_driver_attach(PlvDriver *d, GMainContext *ctx,
                        const PlvDriverCallbacks *cb, void *opaque)
{
    AttachCtx *a = g_new0(AttachCtx, 1);
    a->d = d;
    a->cb = cb;
    a->opaque = opaque;
    GSource *src = g_unix_fd_source_new(d->out_fd, G_IO_IN);
    g_source_set_callback(src, (GSourceFunc)(void (*)(void))attach_dispatch,
                          a, g_free);
    guint id = g_source_attach(src, ctx);
    g_source_unref(src);
    return id;
}

/* ---- the thread ---- */

static void on_transport(void *opaque, const PlvTransportEvent *ev)
{
    PlvDriver *d = opaque;
    if (ev->kind != PLV_TRANSPORT_MESSAGE) {
        return;                 /* liveness is the state machine's business */
    }
    PlvMsg msg;
    GError *err = NULL;
    if (plv_wire_decode(ev->data, ev->len, d->cfg.paxos.n, &msg, &err) < 0) {
        g_debug("plover driver: bad message from %u: %s", ev->peer, err->message);
        g_error_free(err);
        d->n_bad++;
        return;
    }
    if (msg.hdr.from != ev->peer) {
        /* An authenticated peer speaking for another one: refuse. */
        plv_msg_clear(&msg);
        d->n_bad++;
        return;
    }
    plv_paxos_step(d->paxos, &msg, &d->rd);
    plv_msg_clear(&msg);
    d->n_decoded++;
}

static void run_ticks(PlvDriver *d)
{
    int64_t now = g_get_monotonic_time();
    int64_t tick_us = (int64_t)d->cfg.tick_ms * 1000;
    uint64_t n = 0;
    while (now >= d->next_tick) {
        plv_paxos_tick(d->paxos, &d->rd);
        d->next_tick += tick_us;
        n++;
        if (n >= 4) {
            /* Starved (e.g. a stopped process): skip rather than burst. */
            d->next_tick = now + tick_us;
            break;
        }
    }
    d->n_ticks += n;
}

/* Make the driver thread's counters visible to plv_driver_stats(). */
static void publish_stats(PlvDriver *d)
{
    pthread_mutex_lock(&d->stats_lock);
    d->st.submitted = d->n_submitted;
    d->st.dropped_lost = d->n_lost;
    d->st.msgs_decoded = d->n_decoded;
    d->st.msgs_bad = d->n_bad;
    d->st.committed = d->n_committed;
    d->st.ticks = d->n_ticks;
    d->st.store_failed = g_atomic_int_get(&d->store_failed);
    if (d->store) {
        plv_paxos_store_stats(d->store, &d->st.store);
    }
    plv_paxos_stats(d->paxos, &d->st.paxos);
    pthread_mutex_unlock(&d->stats_lock);
}

static gpointer driver_thread(gpointer opaque)
{
    PlvDriver *d = opaque;
    g_atomic_pointer_set(&d->loop_thread, g_thread_self());
    d->next_tick = g_get_monotonic_time() + (int64_t)d->cfg.tick_ms * 1000;
    bool busy = false;
    while (!g_atomic_int_get(&d->stop)) {
        /* Inline callbacks may have queued inputs: do not sleep on them. */
        int ms = busy ? 0 : plv_deadline_remaining_ms(d->next_tick);
        if (plv_transport_wait(d->t, ms, on_transport, d) < 0) {
            g_warning("plover driver: transport failed; stopping");
            break;
        }
        take_inputs(d);
        run_ticks(d);
        process_ready(d);
        publish_stats(d);
        busy = d->inline_mode && inputs_pending(d);
    }
    return NULL;
}

void plv_driver_set_inline_callbacks(PlvDriver *d, const PlvDriverCallbacks *cb,
                                     void *opaque)
{
    if (!d->started) {
        set_inline(d, cb, opaque);
        return;
    }
    /* The driver thread reads these: hand the change over in order. */
    Cmd c = { .kind = CMD_INLINE, .arg = cb != NULL, .opaque = opaque };
    if (cb) {
        c.cb = *cb;
    }
    push_cmd_full(d, &c);
}

int plv_driver_restore(PlvDriver *d, const PlvDurable *img)
{
    if (g_atomic_pointer_get(&d->loop_thread)) {
        return -EINVAL;
    }
    return plv_paxos_restore(d->paxos, img, &d->rd);
}

int plv_driver_start(PlvDriver *d, GError **err)
{
    if (d->started) {
        return 0;
    }
    if (plv_transport_start(d->t, err) < 0) {
        return -1;
    }
    d->started = true;
    d->thread = g_thread_new("plover-driver", driver_thread, d);
    return 0;
}

void plv_driver_stop(PlvDriver *d)
{
    g_atomic_int_set(&d->stop, 1);
    if (d->thread) {
        plv_transport_wakeup(d->t);
        g_thread_join(d->thread);
        d->thread = NULL;
    }
}

PlvRole plv_driver_role(const PlvDriver *d)
{
    return g_atomic_int_get(&d->role);
}

uint32_t plv_driver_leader(const PlvDriver *d)
{
    return g_atomic_int_get(&d->leader);
}

uint64_t plv_driver_commit_index(const PlvDriver *d)
{
    return __atomic_load_n(&d->commit_index, __ATOMIC_ACQUIRE);
}

void plv_driver_stats(PlvDriver *d, PlvDriverStats *out)
{
    pthread_mutex_lock(&d->stats_lock);
    *out = d->st;
    pthread_mutex_unlock(&d->stats_lock);
    out->refused = __atomic_load_n(&d->refused, __ATOMIC_RELAXED);
    plv_transport_stats(d->t, &out->transport);
}

void plv_driver_peer_links(PlvDriver *d, PlvPeerLinkInfo *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        plv_transport_peer_link(d->t, i, &out[i]);
    }
}

static void free_items(GArray *a)
{
    for (guint i = 0; i < a->len; i++) {
        out_item_clear(&g_array_index(a, OutItem, i));
    }
    g_array_unref(a);
}

void plv_driver_free(PlvDriver *d)
{
    if (!d) {
        return;
    }
    plv_driver_stop(d);
    plv_transport_free(d->t);
    plv_paxos_free(d->paxos);
    plv_paxos_store_free(d->store);
    plv_ready_destroy(&d->rd);
    g_byte_array_unref(d->enc);
    g_byte_array_unref(d->in_pkts);
    g_byte_array_unref(d->in_spare);
    g_array_unref(d->in_cmds);
    g_array_unref(d->cmds_spare);
    free_items(d->out);
    free_items(d->out_spare);
    free_items(d->held_items);
    close(d->out_fd);
    pthread_mutex_destroy(&d->in_lock);
    pthread_mutex_destroy(&d->out_lock);
    pthread_mutex_destroy(&d->stats_lock);
    g_free(d);
}
