/*
 * The replica: the consensus driver's outputs applied to the VM.
 *
 * The driver runs Paxos on its own thread; its committed entries and role
 * events are queued and drained here, on the main loop with the BQL held,
 * in log order. The rules (which replica runs the VM, when it stops and
 * starts, whether held outputs are released or dropped, when a syncvm
 * runs and how) are the executor's, PlvExec (plover/exec.h), a pure state
 * machine that the simulation drives too; this file steps it and performs
 * its actions:
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
#include "plover/bytes.h"
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

static void plover_perform(PloverState *s, PlvExecReady *rd, const PlvEntry *e,
                           PloverSyncJob *j);

/*
 * What the idle thread reads of the executor's state, which only the main
 * loop steps (after each step).
 */
static void plover_publish(PloverState *s)
{
    qatomic_set(&s->exec_leads, s->exec.role == PLV_ROLE_LEADER);
    qatomic_set(&s->exec_full_sync_pending, s->exec.full_sync_pending);
}

/* Perform, then clear, what the executor asked for. */
static void plover_perform_all(PloverState *s, const PlvEntry *e, PloverSyncJob *j)
{
    uint64_t kept;

    plover_perform(s, &s->exec_rd, e, j);
    plv_exec_ready_clear(&s->exec_rd);
    kept = s->exec.kept ? s->exec.kept_vid : 0;
    if (s->exec.kept_stale != s->kept_stale_told) {
        warn_report("plover: replica %u discarded the VM it kept from view %" PRIu64
                    ": another replica went on without it", s->cfg.id, s->kept_told);
        trace_plover_keep_dropped(s->kept_told, s->exec.kept_stale);
        s->kept_stale_told = s->exec.kept_stale;
    }
    if (kept != s->kept_told) {
        /* consensus prefers this replica as leader while it keeps a VM */
        plv_driver_set_kept(s->driver, kept);
        s->kept_told = kept;
    }
    plover_publish(s);
}

/*
 * Leadership migration (GAIA), on the leader: the rules are the
 * executor's (plv_exec_migrate_leader); a deadline gives it up.
 */
static void plover_handoff_timeout(void *opaque)
{
    PloverState *s = opaque;

    plv_exec_handoff_timeout(&s->exec, &s->exec_rd);
    plover_perform_all(s, NULL, NULL);
}

bool plover_migrate_leader(PloverState *s, Error **errp)
{
    PlvExec *x = &s->exec;

    if (!s->driver) {
        error_setg(errp, "plover-migrate-leader: this QEMU runs no replica (-plover)");
        return false;
    }
    switch (plv_exec_migrate_leader(x, &s->exec_rd)) {
    case PLV_EXEC_MIGRATE_OK:
        break;
    case PLV_EXEC_MIGRATE_NOT_LEADER:
        if (x->leader != PLV_NODE_NONE) {
            error_setg(errp, "plover-migrate-leader: this replica is the %s; "
                       "replica %u leads", PloverRole_str(plover_qapi_role(x->role)),
                       x->leader);
        } else {
            error_setg(errp, "plover-migrate-leader: this replica is the %s and "
                       "no leader is known", PloverRole_str(plover_qapi_role(x->role)));
        }
        return false;
    case PLV_EXEC_MIGRATE_IN_PROGRESS:
        error_setg(errp, "plover-migrate-leader: a migration to replica %u is "
                   "in progress", x->secondary);
        return false;
    case PLV_EXEC_MIGRATE_NO_SECONDARY:
        error_setg(errp, "plover-migrate-leader: no secondary holds the VM yet "
                   "(wait for re-protection)");
        return false;
    }
    s->handoff_start_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    plover_perform_all(s, NULL, NULL);
    trace_plover_handoff_start(x->secondary);
    return true;
}

/*
 * While a syncvm runs, what follows it in the log waits: the driver keeps
 * it (and all after it) for later. Only inputs on a leader whose VM runs
 * on from the cut go ahead (plv_exec_must_wait).
 */
static bool plover_wait_for_syncvm(PloverState *s, const PlvEntry *e)
{
    if (!plv_exec_must_wait(&s->exec, e ? e->op : PLV_OP_NOOP,
                            s->syncvm.job && s->syncvm.job->t_resume_us)) {
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
        trace_plover_role(plv_role_name(ev->old_role), plv_role_name(ev->role),
                          s->exec.vid);
        plv_exec_role(&s->exec, ev->old_role, ev->role, ev->other_vid, &s->exec_rd);
        qapi_event_send_plover_role_change(plover_qapi_role(ev->old_role),
                                           plover_qapi_role(ev->role), s->exec.vid);
        break;
    case PLV_EV_VIEW:
        plv_exec_view(&s->exec, ev->vid, ev->leader, &s->exec_rd);
        break;
    case PLV_EV_NEEDS_SNAPSHOT:
        plv_exec_needs_snapshot(&s->exec, ev->snap.index, ev->snap.secondary,
                                &s->exec_rd);
        break;
    case PLV_EV_SUSPECT:
        trace_plover_suspect(ev->peer);
        break;
    case PLV_EV_ADMITTED:
        break;
    }
    plover_perform_all(s, NULL, NULL);
}

/*
 * Tests compare replicas' RAM as it is at a syncvm: the leader's at its
 * cut (taken then, plover-sync.c), the secondary's once it applied.
 */
static void plover_record_digest(PloverState *s, uint64_t epoch,
                                 PloverSyncJob *j)
{
    PloverDigest *d;

    if (!s->record_digests) {
        return;
    }
    d = g_new0(PloverDigest, 1);
    d->epoch = epoch;
    if (j->digest) {
        /* the leader's, taken at its cut */
        d->digest = g_steal_pointer(&j->digest);
        d->ram_parts = g_steal_pointer(&j->digest_parts);
        d->disks = g_steal_pointer(&j->disk_digest);
    } else {
        d->digest = plover_ram_digest(&d->ram_parts);
        d->disks = plover_disk_digest(s, &error_warn);
    }
    g_queue_push_tail(&s->digests, d);
    if (g_queue_get_length(&s->digests) > 64) {
        qapi_free_PloverDigest(g_queue_pop_head(&s->digests));
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

/* Cut now: the syncvm runs from here (plover-sync.c). */
static void plover_cut(PloverState *s, const PlvExecSync *sync)
{
    plover_sync_start(s, sync);
    qatomic_set(&s->last_sync_ns, qemu_clock_get_ns(QEMU_CLOCK_REALTIME));
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
    w->waits++;
    w->bounded += !idle;
    plv_latency_add(&w->waited, (now - w->since_ns) / SCALE_US);
    plover_cut(s, &w->sync);
}

static void plover_cut_when_idle(PloverState *s, const PlvExecSync *sync)
{
    PloverIdleWait *w = &s->idle_wait;

    if (!w->timer) {
        w->timer = timer_new_ns(QEMU_CLOCK_REALTIME, plover_idle_wait_poll, s);
    }
    w->armed = true;
    w->sync = *sync;
    w->since_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    w->deadline_ns = w->since_ns + (int64_t)s->cfg.secondary_idle_wait_us * SCALE_US;
    plover_idle_wait_poll(s);
}

/* The executor asked for syncvm @sync: cut now, or once the guest idles. */
static void plover_exec_syncvm(PloverState *s, const PlvExecSync *sync)
{
    if (!sync->leader && sync->hello.has_vm && s->cfg.secondary_idle_wait_us &&
        runstate_is_running()) {
        plover_cut_when_idle(s, sync);
    } else {
        plover_cut(s, sync);
    }
}

/* The executor's syncvm is over: the next may be proposed, and what
 * follows it in the log may run. */
static void plover_exec_syncvm_over(PloverState *s, bool ran)
{
    if (ran) {
        qatomic_set(&s->last_sync_ns, qemu_clock_get_ns(QEMU_CLOCK_REALTIME));
    }
    qatomic_set(&s->sync_proposed, false);
    if (plv_driver_dispatch_held(s->driver)) {
        plv_driver_dispatch_release(s->driver);
    }
}

static void plover_inject_entry(PloverState *s, const PlvEntry *e)
{
    PlvBatchIter it;
    const uint8_t *pkt;
    uint32_t plen;

    plv_batch_iter_entry(&it, e);
    while (plv_batch_next(&it, &pkt, &plen)) {
        plover_net_inject(s, pkt, plen);
    }
}

/*
 * The executor's actions, in order. @e is the entry it was stepped with
 * (INJECT), @j the syncvm job that just ended (RESUME).
 */
static void plover_perform(PloverState *s, PlvExecReady *rd, const PlvEntry *e,
                           PloverSyncJob *j)
{
    /* TRANSFER may append (plv_exec_transfer_failed): index, re-read. */
    for (size_t k = 0; k < rd->n; k++) {
        const PlvExecAction a = rd->a[k];

        switch (a.kind) {
        case PLV_EXEC_START_VM:
            plover_start_vm(s);
            break;
        case PLV_EXEC_STOP_VM:
            plover_stop_vm();
            break;
        case PLV_EXEC_RESUME:
            plover_sync_resume_vm(s, j);
            break;
        case PLV_EXEC_DISCARD:
            plover_stop_vm();
            plover_net_drop_outputs(s);
            plover_net_clear_inputs(s);
            trace_plover_discard();
            break;
        case PLV_EXEC_KEEP_VM:
            plover_stop_vm();
            plover_net_drop_outputs(s);
            if (s->exec.kept_provisional) {
                warn_report("plover: replica %u lost its majority while leading: it "
                            "keeps its VM, stopped, in case the other replicas are "
                            "gone too; it runs it again only if no other replica "
                            "went on without it", s->cfg.id);
            } else {
                warn_report("plover: replica %u lost its majority holding the only "
                            "copy of the VM: it keeps it, stopped, until a replica "
                            "returns", s->cfg.id);
            }
            trace_plover_keep_vm(s->exec.kept_provisional, s->exec.kept_vid);
            break;
        case PLV_EXEC_INJECT:
            plover_inject_entry(s, e);
            break;
        case PLV_EXEC_SYNCVM:
            plover_exec_syncvm(s, &a.sync);
            break;
        case PLV_EXEC_SYNCVM_ALONE:
            plover_sync_account_alone(s);
            break;
        case PLV_EXEC_SYNCVM_OVER:
            plover_exec_syncvm_over(s, a.ran);
            break;
        case PLV_EXEC_APPLIED_SYNCVM:
            plv_driver_applied_syncvm(s->driver, a.index);
            break;
        case PLV_EXEC_RELEASE:
            plover_net_release_outputs(s, a.count);
            break;
        case PLV_EXEC_DROP_OUTPUTS:
            plover_net_drop_outputs(s);
            break;
        case PLV_EXEC_ANNOUNCE:
            qemu_announce_self(&s->announce_timer, migrate_announce_params());
            break;
        case PLV_EXEC_REQUEST_SYNCVM:
            plover_request_syncvm(s, a.why);
            break;
        case PLV_EXEC_DROP_LINK:
            plover_sync_drop_link(s);
            break;
        case PLV_EXEC_FORWARD:
            plover_net_forward_for_a_while(s);
            break;
        case PLV_EXEC_INSTALL_SNAPSHOT:
            plv_driver_install_snapshot(s->driver, a.index);
            break;
        case PLV_EXEC_ADD_ERR:
            s->n_err++;
            plv_driver_add_err(s->driver, a.peer);
            break;
        case PLV_EXEC_RESET_ERR:
            plv_driver_reset_err(s->driver, a.peer);
            break;
        case PLV_EXEC_TRANSFER:
            if (plv_driver_transfer_leadership(s->driver, a.peer) < 0) {
                plv_exec_transfer_failed(&s->exec, rd);
            } else {
                trace_plover_handoff_transfer(a.peer, s->exec.epoch);
            }
            break;
        case PLV_EXEC_HANDOFF_TIMER:
            timer_mod(s->handoff_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + a.ms);
            break;
        case PLV_EXEC_HANDOFF_CANCEL:
            if (s->handoff_timer) {
                timer_del(s->handoff_timer);
            }
            break;
        case PLV_EXEC_HANDOFF_DONE:
            trace_plover_handoff_done(a.peer,
                (qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - s->handoff_start_ns) / SCALE_US);
            break;
        case PLV_EXEC_HANDOFF_GIVEN_UP:
            trace_plover_handoff_given_up(a.was, plv_role_name(s->exec.role));
            break;
        case PLV_EXEC_END:
            plover_runctl_end(s);
            break;
        case PLV_EXEC_BOOT_VM:
            /* From power-on, as the machine was created: the lost VM's
             * state goes, what its drives hold stays. */
            info_report("plover: replica %u leads a VM that was lost before "
                        "it was ever protected: it boots the VM again",
                        s->cfg.id);
            qemu_system_reset(SHUTDOWN_CAUSE_NONE);
            plover_start_vm(s);
            break;
        }
    }
}

/* The syncvm thread is done with the job the executor asked for. */
void plover_exec_sync_done(PloverState *s, PloverSyncJob *j)
{
    PlvExecSyncResult r = {
        .ok = j->ok,
        .skew = j->skew,
        .boot = j->boot,
        .commit_failed = j->commit_failed,
        .snapshot = j->snapshot,
        .held = j->held,
        .peer_answered = j->answered,
        .peer_has_vm = j->peer_has_vm,
        .peer_may_apply = j->devstate_sent,
    };

    if (j->ok) {
        plover_record_digest(s, j->epoch, j);
    } else {
        error_report_err(j->err);
        j->err = NULL;
    }
    plv_exec_sync_done(&s->exec, &r, &s->exec_rd);
    plover_perform_all(s, NULL, j);
    plover_sync_account_pause(s, j);
}

static void plover_on_committed(void *opaque, const PlvEntry *e)
{
    PloverState *s = opaque;

    if (plover_wait_for_syncvm(s, e)) {
        return;
    }
    s->applied_index = e->index;
    if (e->op == PLV_OP_SYNCVM) {
        /* The next proposal's epoch follows every one executed here. */
        size_t len;
        const uint8_t *p = plv_entry_payload(e, &len);
        uint64_t epoch = len == 8 ? plv_get_u64(p) : 0;

        if (len == 8 && epoch >= qatomic_read(&s->next_epoch)) {
            qatomic_set(&s->next_epoch, epoch + 1);
        }
    }
    plv_exec_committed(&s->exec, e, &s->exec_rd);
    plover_perform_all(s, e, NULL);
}

static const PlvDriverCallbacks plover_callbacks = {
    .committed = plover_on_committed,
    .event = plover_on_event,
};

static void plover_dispatch(void *opaque)
{
    PloverState *s = opaque;

    plv_driver_dispatch(s->driver, &plover_callbacks, s);
    /*
     * While a syncvm holds the executor's events back, consensus may have
     * deposed this leader already: a lone leader would learn it, and keep
     * its VM, only when the syncvm to its lost secondary times out.
     */
    if (plv_exec_sync_moot(&s->exec, plv_driver_role(s->driver))) {
        plover_sync_abandon(s, "plover: consensus deposed this leader "
                            "during the syncvm, which was given up");
    }
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
            .sealed = s->tls != NULL,
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
            .tls = s->tls,
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
    dcfg.store = s->paxos_store;
    s->paxos_store = NULL;      /* the driver's from here on */
    s->driver = plv_driver_new(&dcfg, t, &gerr);
    if (!s->driver) {
        error_setg(errp, "-plover: consensus: %s", gerr->message);
        return false;
    }
    if (s->restored_state && plv_driver_restore(s->driver, &s->paxos_img) < 0) {
        error_setg(errp, "-plover: consensus: the restored state does not fit "
                   "this group");
        return false;
    }
    plv_durable_destroy(&s->paxos_img);
    plv_exec_init(&s->exec, &(PlvExecConfig) {
        .self = s->cfg.id,
        .restarted = s->incarnation != PLV_INC_INITIAL,
        .suspect_ms = s->cfg.suspect_ms,
        .election_ms = s->cfg.election_ms,
        .syncvm_timeout_ms = s->cfg.syncvm_timeout_ms,
        .max_sync_interval_ms = s->cfg.max_sync_interval_ms,
    });
    plv_exec_ready_init(&s->exec_rd);
    plover_publish(s);
    s->next_epoch = 1;
    s->handoff_timer = timer_new_ms(QEMU_CLOCK_REALTIME, plover_handoff_timeout, s);
    qemu_set_fd_handler(plv_driver_event_fd(s->driver), plover_dispatch, NULL, s);
    if (plv_driver_start(s->driver, &gerr) < 0) {
        error_setg(errp, "-plover: consensus: %s", gerr->message);
        return false;
    }
    plover_idle_start(s);
    return true;
}
