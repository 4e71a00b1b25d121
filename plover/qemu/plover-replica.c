/*
 * The replica: the consensus driver's outputs applied to the VM.
 *
 * The driver runs Paxos on its own thread; its committed entries and role
 * events are queued and drained here, on the main loop with the BQL held,
 * in log order:
 *
 *   second(id)    the secondary changes: the next syncvm copies every page
 *   input(batch)  executing replicas inject the packets into the guest NIC
 *   syncvm(epoch) executing replicas cut the VM at this log position and
 *                 run the syncvm engine on a thread of its own
 *                 (plover-sync.c); the leader's VM runs on from the cut,
 *                 the secondary's waits for the engine. When the
 *                 secondary has ACKed, the leader releases the outputs
 *                 held up to the cut
 *
 * While a syncvm runs, the entries after it wait (the driver's dispatch is
 * held), except inputs on a leader whose VM runs on: they belong to the
 * next syncvm.
 *
 * The leader's output guard holds packets until a syncvm entry committed
 * by a majority covers them: a leader cut off from the others cannot
 * release anything (no split brain).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "hw/core/cpu.h"
#include "qapi/error.h"
#include "qapi/qapi-events-plover.h"
#include "qapi/qapi-visit-plover.h"
#include "migration/misc.h"
#include "net/announce.h"
#include "system/runstate.h"
#include "plover-state.h"
#ifdef PLOVER_HAVE_RDMA
#include "plover/transport-rdma.h"
#endif
#include "trace.h"

PloverRole plover_qapi_role(PlvRole r)
{
    switch (r) {
    case PLV_ROLE_LEADER:
        return PLOVER_ROLE_LEADER;
    case PLV_ROLE_SECONDARY:
        return PLOVER_ROLE_SECONDARY;
    case PLV_ROLE_WITNESS:
        return PLOVER_ROLE_WITNESS;
    case PLV_ROLE_RECOVERING:
        return PLOVER_ROLE_RECOVERING;
    default:
        return PLOVER_ROLE_NONE;
    }
}

/*
 * Ask for a syncvm (leader only). Any thread: the idle detector calls it.
 * One at a time, from the proposal to the end of its execution: a syncvm
 * that waits out its timeout must not have the next ones pile up behind
 * it on the main loop (each would wait out its own). A proposal lost to
 * a view change is retried after twice the syncvm timeout.
 */
bool plover_request_syncvm(PloverState *s, const char *why)
{
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t since = now - qatomic_read(&s->last_sync_ns);

    if (qatomic_read(&s->sync_proposed) &&
        since < 2 * (int64_t)s->cfg.syncvm_timeout_ms * SCALE_MS) {
        return false;
    }
    qatomic_set(&s->sync_proposed, true);
    qatomic_set(&s->last_sync_ns, now);
    if (plv_driver_propose_syncvm(s->driver,
                                  qatomic_fetch_inc(&s->next_epoch)) < 0) {
        qatomic_set(&s->sync_proposed, false);
        return false;
    }
    trace_plover_syncvm_request(why);
    return true;
}

void plover_start_vm(PloverState *s)
{
    if (!runstate_is_running()) {
        vm_start();
    }
}

void plover_stop_vm(void)
{
    if (runstate_is_running()) {
        vm_stop(RUN_STATE_PAUSED);
    }
}

static void plover_handoff_end(PloverState *s)
{
    s->handoff = PLOVER_HANDOFF_NONE;
    if (s->handoff_timer) {
        timer_del(s->handoff_timer);
    }
}

/*
 * This replica's VM no longer holds the replicated state (a deposed leader
 * that the others went on without, a replaced secondary): discard it.
 * Should it be chosen as secondary again, a full syncvm rebuilds it.
 */
void plover_discard_vm(PloverState *s)
{
    plover_handoff_end(s);
    if (!s->executing) {
        return;
    }
    s->executing = false;
    plover_stop_vm();
    plover_net_drop_outputs(s);
    plover_net_clear_inputs(s);
    trace_plover_discard();
}

/*
 * Leadership migration (GAIA), on the leader:
 *   plover-migrate-leader   -> SYNCING: a syncvm is requested
 *   that syncvm completes   -> TRANSFERRING: the VM stays paused at it,
 *                              consensus hands leadership to the secondary
 *   the new leader names us secondary -> done, the VM runs on
 * No VM is copied: at that syncvm both VMs are identical, and both have
 * executed every entry since. A deadline gives the handoff up.
 */
static void plover_handoff_timeout(void *opaque)
{
    PloverState *s = opaque;
    PloverHandoffState was = s->handoff;

    plover_handoff_end(s);
    trace_plover_handoff_given_up(was, plv_role_name(s->role));
    if (s->role == PLV_ROLE_LEADER) {
        plover_start_vm(s);     /* consensus gave it up: go on leading */
    } else if (s->secondary != s->cfg.id) {
        plover_discard_vm(s);   /* the new leader chose another secondary */
    }
}

static void plover_handoff_transfer(PloverState *s)
{
    uint32_t ms = s->cfg.suspect_ms + 2 * s->cfg.election_ms + s->cfg.syncvm_timeout_ms;

    if (plv_driver_transfer_leadership(s->driver, s->secondary) < 0) {
        plover_handoff_end(s);
        plover_start_vm(s);
        return;
    }
    s->handoff = PLOVER_HANDOFF_TRANSFERRING;
    timer_mod(s->handoff_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + ms);
    trace_plover_handoff_transfer(s->secondary, s->epoch);
}

bool plover_migrate_leader(PloverState *s, Error **errp)
{
    if (!s->driver) {
        error_setg(errp, "plover-migrate-leader: this QEMU runs no replica (-plover)");
        return false;
    }
    if (s->role != PLV_ROLE_LEADER) {
        if (s->leader != PLV_NODE_NONE) {
            error_setg(errp, "plover-migrate-leader: this replica is the %s; "
                       "replica %u leads", PloverRole_str(plover_qapi_role(s->role)),
                       s->leader);
        } else {
            error_setg(errp, "plover-migrate-leader: this replica is the %s and "
                       "no leader is known", PloverRole_str(plover_qapi_role(s->role)));
        }
        return false;
    }
    if (s->handoff != PLOVER_HANDOFF_NONE) {
        error_setg(errp, "plover-migrate-leader: a migration to replica %u is "
                   "in progress", s->secondary);
        return false;
    }
    if (!s->executing || s->secondary == PLV_NODE_NONE || s->secondary == s->cfg.id ||
        s->full_sync_pending || s->sync.count == 0) {
        error_setg(errp, "plover-migrate-leader: no secondary holds the VM yet "
                   "(wait for re-protection)");
        return false;
    }
    s->handoff = PLOVER_HANDOFF_SYNCING;
    s->handoff_start_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    /* If a syncvm is already on its way, that one serves. */
    plover_request_syncvm(s, "handoff");
    timer_mod(s->handoff_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              2 * (int64_t)s->cfg.syncvm_timeout_ms + s->cfg.max_sync_interval_ms);
    trace_plover_handoff_start(s->secondary);
    return true;
}

static void plover_role_changed(PloverState *s, PlvRole old, PlvRole role)
{
    trace_plover_role(plv_role_name(old), plv_role_name(role), s->vid);
    if ((old == PLV_ROLE_LEADER) != (role == PLV_ROLE_LEADER)) {
        /* A syncvm link belongs to one term: the other end may have
         * dropped it since (a leader that leads again would reuse a dead
         * link, and fail a syncvm for nothing). */
        plover_sync_drop_link(s);
    }
    if (old == PLV_ROLE_LEADER && role != PLV_ROLE_LEADER) {
        s->forward_until_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                              PLOVER_FORWARD_WINDOW_MS * SCALE_MS;
    }
    if (s->handoff == PLOVER_HANDOFF_SYNCING && role != PLV_ROLE_LEADER &&
        role != PLV_ROLE_CANDIDATE) {
        plover_handoff_end(s);      /* deposed before the handoff began */
    }
    qapi_event_send_plover_role_change(plover_qapi_role(old),
                                       plover_qapi_role(role), s->vid);
    switch (role) {
    case PLV_ROLE_LEADER:
        if (s->executing) {
            /* A secondary taking over runs on from its own state, which is
             * the replicated one (so does a leader whose handoff did not
             * happen). Tell the network where the MAC lives. */
            plover_handoff_end(s);
            plover_start_vm(s);
            qemu_announce_self(&s->announce_timer, migrate_announce_params());
        } else if (!s->log_had_vm) {
            /* The first leader of a new group boots the VM. */
            s->executing = true;
            plover_start_vm(s);
        } else {
            /* Elected without a copy: the next syncvm pulls it from the
             * secondary, whose state is the replicated one. */
            s->full_sync_pending = true;
            plover_request_syncvm(s, "pull");
        }
        break;
    case PLV_ROLE_CANDIDATE:
        /* Transient (an election, or a leader re-preparing its view):
         * nothing changes until the outcome is known. */
        break;
    case PLV_ROLE_WITNESS:
        if (s->handoff == PLOVER_HANDOFF_TRANSFERRING) {
            /* Handed over: the new leader names us secondary next, and our
             * VM, paused at the handoff's syncvm, is the replicated one. */
            break;
        }
        plover_discard_vm(s);
        break;
    case PLV_ROLE_RECOVERING:
        plover_discard_vm(s);
        break;
    case PLV_ROLE_SECONDARY:
        if (old == PLV_ROLE_LEADER || (old == PLV_ROLE_CANDIDATE && s->leader == s->cfg.id)) {
            plover_net_drop_outputs(s);
        }
        break;
    }
}

/*
 * While a syncvm runs, what follows it in the log waits: the driver keeps
 * it (and all after it) for later. Only inputs on a leader whose VM runs
 * on from the cut go ahead.
 */
static bool plover_wait_for_syncvm(PloverState *s, const PlvEntry *e)
{
    if (!s->job && !s->idle_wait.armed) {
        return false;
    }
    if (s->job && e && e->op == PLV_OP_INPUT && s->job->t_resume_us) {
        return false;
    }
    plv_driver_dispatch_hold(s->driver);
    return true;
}

static void plover_on_event(void *opaque, const PlvEvent *ev)
{
    PloverState *s = opaque;

    if (plover_wait_for_syncvm(s, NULL)) {
        return;
    }
    switch (ev->kind) {
    case PLV_EV_ROLE:
        s->role = ev->role;
        plover_role_changed(s, ev->old_role, ev->role);
        break;
    case PLV_EV_VIEW:
        s->vid = ev->vid;
        s->leader = ev->leader;
        break;
    case PLV_EV_NEEDS_SNAPSHOT:
        /*
         * Entries this replica missed are gone. Whatever it executes next
         * must start from a full copy of the VM, which the next syncvm to
         * it carries; the log itself continues after the snapshot.
         */
        s->full_sync_pending = true;
        s->executing = false;
        s->secondary = ev->snap.secondary;
        plover_stop_vm();
        plv_driver_install_snapshot(s->driver, ev->snap.index);
        break;
    case PLV_EV_SUSPECT:
        trace_plover_suspect(ev->peer);
        break;
    case PLV_EV_ADMITTED:
        break;
    }
}

static void plover_exec_second(PloverState *s, uint32_t id)
{
    if (id == s->secondary) {
        return;
    }
    s->secondary = id;
    /* A new pair: the bulk link of the old one is of no use. */
    plover_sync_drop_link(s);
    if (id == s->cfg.id && s->executing && s->handoff == PLOVER_HANDOFF_TRANSFERRING) {
        /* The handoff is complete: run on as the new leader's secondary. */
        s->handoffs++;
        trace_plover_handoff_done(s->leader,
            (qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - s->handoff_start_ns) / SCALE_US);
        plover_handoff_end(s);
        plover_start_vm(s);
    } else if (id == s->cfg.id && !s->executing) {
        /* Joining the executing pair: the first syncvm copies every page. */
        s->full_sync_pending = true;
    } else if (s->role == PLV_ROLE_LEADER) {
        /* The first syncvm with the new secondary is a full one unless both
         * ends hold the VM as of the same syncvm (after a handoff): the
         * two ends agree on that when it starts (plover-sync.c). */
        plover_request_syncvm(s, "second");
    }
}

/*
 * Tests compare replicas' RAM as it is at a syncvm: the leader's at its
 * cut (taken then, plover-sync.c), the secondary's once it applied.
 */
static void plover_record_digest(PloverState *s, uint64_t epoch, char *digest)
{
    PloverDigest *d;

    if (!s->record_digests) {
        g_free(digest);
        return;
    }
    d = g_new0(PloverDigest, 1);
    d->epoch = epoch;
    d->digest = digest ? digest : plover_ram_digest();
    g_queue_push_tail(&s->digests, d);
    if (g_queue_get_length(&s->digests) > 64) {
        qapi_free_PloverDigest(g_queue_pop_head(&s->digests));
    }
}

/* The syncvm is complete here: what follows it in the log may run. */
static void plover_exec_syncvm_end(PloverState *s)
{
    qatomic_set(&s->last_sync_ns, qemu_clock_get_ns(QEMU_CLOCK_REALTIME));
    qatomic_set(&s->sync_proposed, false);
    if (plv_driver_dispatch_held(s->driver)) {
        plv_driver_dispatch_release(s->driver);
    }
}

/*
 * The secondary's cut waits for its guest to finish the work of the inputs
 * it has (PLOVER §4.4: "the leader pauses its VM immediately, while the
 * secondary does the pause when its programs become idle"). The leader
 * proposed the syncvm at an idle point and cut as soon as it was
 * committed; the secondary executes the same inputs later, and a cut in
 * the middle of their work leaves pages (stacks, socket buffers, counters)
 * that the leader's guest had already moved past: divergent pages for
 * nothing. Idle is every vCPU halted with nothing pending (TCG, or KVM
 * without an in-kernel irqchip, see it at once), or an idle window of the
 * idle detector (KVM halts in the kernel); secondary-idle-wait-us bounds
 * the wait.
 */
#define PLOVER_IDLE_POLL_NS (100 * SCALE_US)

static bool plover_guest_halted(void)
{
    CPUState *cpu;

    CPU_FOREACH(cpu) {
        if (!qatomic_read(&cpu->halted) || cpu_has_work(cpu)) {
            return false;
        }
    }
    return true;
}

static void plover_idle_wait_poll(void *opaque)
{
    PloverState *s = opaque;
    PloverIdleWait *w = &s->idle_wait;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    bool idle;

    if (!w->armed) {
        return;
    }
    idle = plover_guest_halted() || qatomic_read(&s->idle_seen_ns) > w->since_ns;
    if (!idle && now < w->deadline_ns) {
        timer_mod(w->timer, MIN(now + PLOVER_IDLE_POLL_NS, w->deadline_ns));
        return;
    }
    w->armed = false;
    s->sync.idle_waits++;
    s->sync.idle_wait_bounded += !idle;
    plv_latency_add(&s->sync.idle_wait, (now - w->since_ns) / SCALE_US);
    plover_sync_start(s, w->index, w->epoch, false);
}

static void plover_cut_when_idle(PloverState *s, uint64_t index, uint64_t epoch)
{
    PloverIdleWait *w = &s->idle_wait;

    if (!w->timer) {
        w->timer = timer_new_ns(QEMU_CLOCK_REALTIME, plover_idle_wait_poll, s);
    }
    w->armed = true;
    w->index = index;
    w->epoch = epoch;
    w->since_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    w->deadline_ns = w->since_ns + (int64_t)s->cfg.secondary_idle_wait_us * SCALE_US;
    plover_idle_wait_poll(s);
}

static void plover_exec_syncvm(PloverState *s, const PlvEntry *e, uint64_t epoch)
{
    /*
     * The executing pair of this entry: the leader of the view in which
     * this replica learned it, and the log's secondary. A new leader whose
     * log still names itself has no secondary yet. A replica that
     * executes but is neither has been left behind.
     */
    bool leader = s->leader == s->cfg.id;
    bool second = !leader && s->secondary == s->cfg.id;
    bool with_peer = second ||
        (leader && s->secondary != PLV_NODE_NONE && s->secondary != s->cfg.id);

    s->log_had_vm = true;
    if (epoch >= qatomic_read(&s->next_epoch)) {
        qatomic_set(&s->next_epoch, epoch + 1);
    }
    if (!leader && !second) {
        qatomic_set(&s->sync_proposed, false);
        plover_discard_vm(s);
        return;
    }
    if (!s->executing && !s->full_sync_pending) {
        qatomic_set(&s->sync_proposed, false);
        return;   /* not the VM's holder, not being given it either */
    }
    if (with_peer) {
        /* The next proposal waits for the end of this one
         * (plover_request_syncvm); the entries after it wait too. */
        if (second && s->executing && s->cfg.secondary_idle_wait_us &&
            runstate_is_running()) {
            plover_cut_when_idle(s, e->index, epoch);
        } else {
            plover_sync_start(s, e->index, epoch, leader);
        }
        return;
    }
    /* A leader alone: a majority committed this entry, nothing to copy. */
    s->sync.last_pause_us = 0;
    s->epoch = epoch;
    plv_driver_applied_syncvm(s->driver, e->index);
    plover_net_release_outputs(s, g_queue_get_length(&s->outputs));
    plover_exec_syncvm_end(s);
}

/* The syncvm thread is done with the job started in plover_exec_syncvm. */
void plover_exec_syncvm_done(PloverState *s, PloverSyncJob *j)
{
    int64_t now = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    bool handing_over = j->ok && j->handoff && s->handoff == PLOVER_HANDOFF_SYNCING;
    int64_t paused;

    if (j->ok) {
        s->full_sync_pending = false;
        s->executing = true;
        plover_record_digest(s, j->epoch, g_steal_pointer(&j->digest));
    } else {
        error_report_err(j->err);
        j->err = NULL;
    }
    /* A leader handing over stays paused here: this syncvm is the point
     * both VMs are identical at. */
    if ((s->executing && !handing_over) || j->snapshot) {
        plover_sync_resume_vm(s, j);
    }
    paused = (j->t_resume_us ? j->t_resume_us : now) - j->t_stop_us;
    s->sync.last_pause_us = paused;
    s->sync.paused_us += paused;
    plv_latency_add(&s->sync.pause, paused);
    if (j->leader && j->t_agreed_us && !j->skew) {
        plv_latency_add(&s->sync.lag, j->t_agreed_us - j->t_stop_us);
    }
    trace_plover_syncvm_pause(j->epoch, paused, now - j->t_stop_us, j->snapshot);
    if (!j->ok) {
        /* Outputs stay held, so the idle detector asks for the next
         * syncvm, which covers them; the failures counted in n_err (and
         * the silence of a dead peer) let consensus replace the secondary. */
        plover_exec_syncvm_end(s);
        return;
    }
    s->epoch = j->epoch;
    plv_driver_applied_syncvm(s->driver, j->index);
    if (j->leader) {
        /* Committed by a majority and applied on the secondary: what the
         * VM said up to the cut may leave. */
        plover_net_release_outputs(s, j->held);
        plv_latency_add(&s->sync.release, now - j->t_stop_us);
        if (handing_over) {
            plover_handoff_transfer(s);
        }
    } else {
        /* The secondary's output up to here came from a state that the
         * leader's has just replaced: it is never to be sent. What it says
         * from now on is kept, in case it leads before the next syncvm. */
        plover_net_drop_outputs(s);
    }
    plover_exec_syncvm_end(s);
    if (s->handoff == PLOVER_HANDOFF_SYNCING && !handing_over &&
        s->role == PLV_ROLE_LEADER) {
        /* Asked for while a syncvm the VM ran on through was in flight:
         * the handoff needs one of its own, with the VM stopped. */
        plover_request_syncvm(s, "handoff");
    }
}

static void plover_on_committed(void *opaque, const PlvEntry *e)
{
    PloverState *s = opaque;
    size_t len;
    const uint8_t *p = plv_entry_payload(e, &len);

    if (plover_wait_for_syncvm(s, e)) {
        return;
    }
    s->applied_index = e->index;
    switch (e->op) {
    case PLV_OP_SECOND:
        if (len == 4) {
            plover_exec_second(s, ldl_le_p(p));
        }
        break;
    case PLV_OP_INPUT:
        s->log_had_vm = true;
        if (s->executing) {
            PlvBatchIter it;
            const uint8_t *pkt;
            uint32_t plen;

            plv_batch_iter_init(&it, p, len);
            while (plv_batch_next(&it, &pkt, &plen)) {
                plover_net_inject(s, pkt, plen);
            }
        }
        break;
    case PLV_OP_SYNCVM:
        if (len == 8) {
            plover_exec_syncvm(s, e, ldq_le_p(p));
        }
        break;
    default:
        break;
    }
}

static const PlvDriverCallbacks plover_callbacks = {
    .committed = plover_on_committed,
    .event = plover_on_event,
};

static void plover_dispatch(void *opaque)
{
    PloverState *s = opaque;

    plv_driver_dispatch(s->driver, &plover_callbacks, s);
}

static uint32_t plover_ticks(uint32_t ms, uint32_t tick_ms)
{
    return MAX(1, DIV_ROUND_UP(ms, tick_ms));
}

bool plover_replica_start(PloverState *s, Error **errp)
{
    PlvDriverConfig dcfg;
    PlvPeerAddr peers[PLV_MAX_REPLICAS];
    PlvTransport *t;
    g_autoptr(GError) gerr = NULL;
    const unsigned tick_ms = 5;

    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        peers[i].id = i;
        peers[i].host = s->cfg.peers[i].host;
        peers[i].port = s->cfg.peers[i].port;
    }
#ifdef PLOVER_HAVE_RDMA
    if (s->cfg.transport == PLV_TRANSPORT_RDMA) {
        PlvRdmaTransportConfig rcfg = {
            .self_id = s->cfg.id,
            .peers = peers,
            .n_peers = s->cfg.n_peers,
            .secret = s->secret,
            .secret_len = s->secret_len,
            .heartbeat_ms = s->cfg.heartbeat_ms,
            .peer_timeout_ms = s->cfg.suspect_ms * 3,
        };
        t = plv_transport_rdma_new(&rcfg, &gerr);
    } else
#endif
    {
        PlvTcpTransportConfig tcfg = {
            .self_id = s->cfg.id,
            .peers = peers,
            .n_peers = s->cfg.n_peers,
            .secret = s->secret,
            .secret_len = s->secret_len,
            .listen_fd = -1,
        };
        t = plv_transport_tcp_new(&tcfg, &gerr);
    }
    if (!t) {
        error_setg(errp, "-plover: replica link (%s): %s",
                   plv_transport_name(s->cfg.transport), gerr->message);
        return false;
    }

    plv_driver_config_default(&dcfg);
    dcfg.tick_ms = tick_ms;
    dcfg.paxos.self = s->cfg.id;
    dcfg.paxos.n = s->cfg.n_peers;
    dcfg.paxos.incarnation = s->incarnation;
    dcfg.paxos.seed = g_get_real_time() ^ s->cfg.id;
    dcfg.paxos.heartbeat_ticks = plover_ticks(s->cfg.heartbeat_ms, tick_ms);
    dcfg.paxos.suspect_ticks = plover_ticks(s->cfg.suspect_ms, tick_ms);
    dcfg.paxos.election_ticks = plover_ticks(s->cfg.election_ms, tick_ms);
    s->driver = plv_driver_new(&dcfg, t, &gerr);
    if (!s->driver) {
        error_setg(errp, "-plover: consensus: %s", gerr->message);
        return false;
    }
    /* As the engine starts: a restarted replica learns before it votes. */
    s->role = s->incarnation == PLV_INC_INITIAL ? PLV_ROLE_WITNESS : PLV_ROLE_RECOVERING;
    s->leader = PLV_NODE_NONE;
    s->secondary = PLV_NODE_NONE;
    s->next_epoch = 1;
    s->staged_devstate = g_byte_array_new();
    s->handoff_timer = timer_new_ms(QEMU_CLOCK_REALTIME, plover_handoff_timeout, s);
    qemu_set_fd_handler(plv_driver_event_fd(s->driver), plover_dispatch, NULL, s);
    if (plv_driver_start(s->driver, &gerr) < 0) {
        error_setg(errp, "-plover: consensus: %s", gerr->message);
        return false;
    }
    plover_idle_start(s);
    return true;
}
