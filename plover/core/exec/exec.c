/*
 * The executor state machine (see plover/exec.h). Pure: every effect is
 * an action appended to the caller's PlvExecReady.
 */
#include <glib.h>
#include <string.h>
#include "plover/exec.h"
#include "plover/bytes.h"

void plv_exec_ready_init(PlvExecReady *rd)
{
    memset(rd, 0, sizeof(*rd));
}

void plv_exec_ready_clear(PlvExecReady *rd)
{
    rd->n = 0;
}

void plv_exec_ready_destroy(PlvExecReady *rd)
{
    g_free(rd->a);
    memset(rd, 0, sizeof(*rd));
}

static PlvExecAction *act(PlvExecReady *rd, PlvExecActionKind kind)
{
    PlvExecAction *a;

    if (rd->n == rd->cap) {
        rd->cap = rd->cap ? 2 * rd->cap : 16;
        rd->a = g_renew(PlvExecAction, rd->a, rd->cap);
    }
    a = &rd->a[rd->n++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    return a;
}

static void request_syncvm(PlvExecReady *rd, const char *why)
{
    act(rd, PLV_EXEC_REQUEST_SYNCVM)->why = why;
}

static void sync_over(PlvExec *x, bool ran, PlvExecReady *rd)
{
    x->in_flight = false;
    act(rd, PLV_EXEC_SYNCVM_OVER)->ran = ran;
}

void plv_exec_init(PlvExec *x, const PlvExecConfig *cfg)
{
    memset(x, 0, sizeof(*x));
    x->cfg = *cfg;
    /* As the engine starts: a restarted replica learns before it votes. */
    x->role = cfg->restarted ? PLV_ROLE_RECOVERING : PLV_ROLE_WITNESS;
    x->leader = PLV_NODE_NONE;
    x->secondary = PLV_NODE_NONE;
    x->paired = PLV_NODE_NONE;
    x->pair_leader = PLV_NODE_NONE;
}

static void handoff_end(PlvExec *x, PlvExecReady *rd)
{
    x->handoff = PLV_EXEC_HANDOFF_NONE;
    x->handoff_expired = false;
    act(rd, PLV_EXEC_HANDOFF_CANCEL);
}

static void handoff_timeout(PlvExec *x, PlvExecReady *rd);

/*
 * Does this leader's VM hold the only copy of the replicated state? It
 * completed a syncvm once (so no pair of fresh replicas can boot the VM
 * again: with three replicas, one of the other two was its peer then),
 * and its secondary is known to hold no VM. Every other replica
 * discarded its VM when the log left it out of the pair (a replaced
 * secondary, a leader deposed while its secondary held the VM), or never
 * had one; except the leader this one took over from, while it names no
 * secondary yet: that one may run its copy until the log tells it.
 */
static bool holds_only_copy(const PlvExec *x)
{
    if (!x->executing || x->syncs == 0) {
        return false;
    }
    if (x->secondary == x->cfg.self) {
        return x->pair_leader == PLV_NODE_NONE || x->pair_leader == x->cfg.self;
    }
    return x->secondary == PLV_NODE_NONE || !x->second_may_hold;
}

/* A leader stepping down keeps its VM, stopped, against the view it last
 * led (PlvExec.kept). */
static void keep_vm(PlvExec *x, bool provisional, PlvExecReady *rd)
{
    x->executing = false;
    x->kept = true;
    x->kept_provisional = provisional;
    x->kept_vid = MAX(x->vid, 1);
    act(rd, PLV_EXEC_KEEP_VM);
}

/* The kept VM is used, or no longer the replicated state: either way it
 * is not kept any more. */
static void forget_kept(PlvExec *x)
{
    x->kept = false;
    x->kept_provisional = false;
    x->kept_vid = 0;
}

/* A kept copy that is not the replicated state: what the VM held
 * (queued inputs) goes with it. */
static void drop_kept(PlvExec *x, PlvExecReady *rd)
{
    if (x->kept) {
        forget_kept(x);
        x->kept_stale++;
        act(rd, PLV_EXEC_DISCARD);
    }
}

/* A provisional copy that may be stale now (PlvExec.kept_provisional). */
static void drop_provisional(PlvExec *x, PlvExecReady *rd)
{
    if (x->kept_provisional) {
        drop_kept(x, rd);
    }
}

/*
 * This replica's VM no longer holds the replicated state (a deposed leader
 * that the others went on without, a replaced secondary): discard it.
 * Should it be chosen as secondary again, a full syncvm rebuilds it.
 */
static void discard(PlvExec *x, PlvExecReady *rd)
{
    handoff_end(x, rd);
    if (!x->executing) {
        return;
    }
    x->executing = false;
    act(rd, PLV_EXEC_DISCARD);
}

void plv_exec_role(PlvExec *x, PlvRole old, PlvRole role, uint64_t other_vid,
                   PlvExecReady *rd)
{
    x->role = role;
    if ((old == PLV_ROLE_LEADER) != (role == PLV_ROLE_LEADER)) {
        /* A syncvm link belongs to one term: the other end may have
         * dropped it since (a leader that leads again would reuse a dead
         * link, and fail a syncvm for nothing). */
        act(rd, PLV_EXEC_DROP_LINK);
    }
    if (old == PLV_ROLE_LEADER && role != PLV_ROLE_LEADER) {
        act(rd, PLV_EXEC_FORWARD);
    }
    if (x->handoff == PLV_EXEC_HANDOFF_SYNCING && role != PLV_ROLE_LEADER &&
        role != PLV_ROLE_CANDIDATE) {
        handoff_end(x, rd);     /* deposed before the handoff began */
    }
    switch (role) {
    case PLV_ROLE_LEADER:
        if (x->kept && other_vid > x->kept_vid) {
            /* A majority promised another replica a view newer than the
             * one its copy last ran in: the others may have gone on
             * without it, their VM is the replicated one. Even "the only
             * copy" is checked: a secondary the log replaced may not know
             * it yet, be elected and run on from its own VM (the
             * simulation found it once the lone leader was preferred). */
            drop_kept(x, rd);
        }
        if (x->kept) {
            /* The lone leader leads again: nobody went on without its
             * copy (the only one, holds_only_copy, or one that no newer
             * view can have replaced). */
            forget_kept(x);
            x->executing = true;
        }
        if (x->executing) {
            /* A secondary taking over runs on from its own state, which is
             * the replicated one (so does a leader whose handoff did not
             * happen). Tell the network where the MAC lives. */
            handoff_end(x, rd);
            act(rd, PLV_EXEC_START_VM);
            act(rd, PLV_EXEC_ANNOUNCE);
        } else if (!x->log_had_vm) {
            /* The first leader of a new group boots the VM. */
            x->executing = true;
            act(rd, PLV_EXEC_START_VM);
        } else {
            /* Elected without a copy: the next syncvm pulls it from the
             * secondary, whose state is the replicated one. */
            x->full_sync_pending = true;
            request_syncvm(rd, "pull");
        }
        break;
    case PLV_ROLE_CANDIDATE:
        /* Transient (an election, or a leader re-preparing its view):
         * nothing changes until the outcome is known. */
        break;
    case PLV_ROLE_WITNESS:
        if (x->handoff == PLV_EXEC_HANDOFF_TRANSFERRING) {
            /* Handed over: the new leader names us secondary next, and our
             * VM, paused at the handoff's syncvm, is the replicated one. */
            break;
        }
        if (old == PLV_ROLE_LEADER || old == PLV_ROLE_CANDIDATE) {
            if (holds_only_copy(x)) {
                /*
                 * A leader that lost its majority with the only copy (its
                 * secondary died, or never got the VM, and the third
                 * replica is gone too): discarding it would lose the VM
                 * for good. It keeps it, stopped; what it said was
                 * covered by no syncvm.
                 */
                keep_vm(x, false, rd);
                break;
            }
            if (x->executing && x->syncs > 0 && x->leader == x->cfg.self && x->vid) {
                /*
                 * Its secondary may hold the VM too, and may also be gone:
                 * the secondary and the witness killed together would
                 * leave no copy but this one. Kept provisionally, against
                 * the view it last led (PlvExec.kept_provisional).
                 */
                keep_vm(x, true, rd);
                break;
            }
        }
        discard(x, rd);
        break;
    case PLV_ROLE_RECOVERING:
        discard(x, rd);
        break;
    case PLV_ROLE_SECONDARY:
        if (old == PLV_ROLE_LEADER ||
            (old == PLV_ROLE_CANDIDATE && x->leader == x->cfg.self)) {
            /* What it said as leader was not covered by a syncvm. */
            act(rd, PLV_EXEC_DROP_OUTPUTS);
        }
        break;
    }
}

void plv_exec_view(PlvExec *x, uint64_t vid, uint32_t leader, PlvExecReady *rd)
{
    if (vid > x->kept_vid && leader != x->cfg.self) {
        /* another replica leads a newer view: it went on without us */
        drop_provisional(x, rd);
    }
    x->vid = vid;
    x->leader = leader;
}

/*
 * Entries this replica missed are gone. Whatever it executes next must
 * start from a full copy of the VM, which the next syncvm to it carries;
 * the log itself continues after the snapshot. What its VM said so far
 * came from a state that copy replaces: it is dropped with the VM (it
 * used to stay held, and a replica that then led alone sent it).
 */
void plv_exec_needs_snapshot(PlvExec *x, uint64_t index, uint32_t secondary,
                             PlvExecReady *rd)
{
    /* The entries it skips had a VM (a new group's first leader boots
     * one only if none ever did). The only copy stays; a provisional one
     * is older than what the snapshot skips to. */
    drop_provisional(x, rd);
    x->log_had_vm = true;
    x->full_sync_pending = true;
    if (x->executing) {
        x->executing = false;
        act(rd, PLV_EXEC_DISCARD);
    } else {
        act(rd, PLV_EXEC_STOP_VM);
    }
    x->secondary = secondary;
    act(rd, PLV_EXEC_INSTALL_SNAPSHOT)->index = index;
}

bool plv_exec_must_wait(const PlvExec *x, PlvOp op, bool vm_runs_on)
{
    if (!x->in_flight) {
        return false;
    }
    return !(op == PLV_OP_INPUT && vm_runs_on);
}

static void exec_second(PlvExec *x, uint32_t id, PlvExecReady *rd)
{
    if (id == x->secondary) {
        return;
    }
    if (id == x->cfg.self) {
        /* named by a leader: one that went on without this copy, or that
         * holds one of its own */
        drop_provisional(x, rd);
    }
    x->secondary = id;
    x->second_may_hold = id == x->pair_leader && id != x->cfg.self;
    /* A new pair: the bulk link of the old one is of no use. */
    act(rd, PLV_EXEC_DROP_LINK);
    if (id == x->cfg.self && x->executing &&
        x->handoff == PLV_EXEC_HANDOFF_TRANSFERRING) {
        /* The handoff is complete: run on as the new leader's secondary. */
        x->handoffs++;
        act(rd, PLV_EXEC_HANDOFF_DONE)->peer = x->leader;
        handoff_end(x, rd);
        act(rd, PLV_EXEC_START_VM);
    } else if (id == x->cfg.self && x->kept) {
        /* Named secondary with the only copy: it runs it again, and the
         * leader, which has none, pulls it at the next syncvm. */
        forget_kept(x);
        x->executing = true;
        act(rd, PLV_EXEC_START_VM);
    } else if (id == x->cfg.self && !x->executing) {
        /* Joining the executing pair: the first syncvm copies every page. */
        x->full_sync_pending = true;
    } else if (id != x->cfg.self && x->leader != x->cfg.self) {
        /* Replaced as secondary (or, handing over, not chosen): left out
         * of the pair now, not at the next syncvm entry, or it executes
         * beside the new secondary once that one holds the VM. */
        discard(x, rd);
    } else if (x->role == PLV_ROLE_LEADER) {
        /* The first syncvm with the new secondary is a full one unless both
         * ends hold the VM as of the same syncvm (after a handoff): the
         * two ends agree on that when it starts (plv_sync_direction). */
        request_syncvm(rd, "second");
    }
}

static void exec_syncvm(PlvExec *x, uint64_t index, uint64_t epoch, PlvExecReady *rd)
{
    /*
     * The executing pair of this entry: the leader of the view in which
     * this replica learned it, and the log's secondary. A new leader whose
     * log still names itself has no secondary yet. A replica that
     * executes but is neither has been left behind.
     */
    bool leader = x->leader == x->cfg.self;
    bool second = !leader && x->secondary == x->cfg.self;
    bool with_peer = second ||
        (leader && x->secondary != PLV_NODE_NONE && x->secondary != x->cfg.self);
    PlvExecAction *a;

    x->log_had_vm = true;
    if (!leader && !second) {
        sync_over(x, false, rd);
        discard(x, rd);
        return;
    }
    if (!x->executing && !x->full_sync_pending) {
        sync_over(x, false, rd);
        return;   /* not the VM's holder, not being given it either */
    }
    if (!with_peer && !x->executing) {
        /* A leader alone without the VM has nothing to pass the entry
         * with: no state to vouch for, no output of the replicated VM.
         * It waits for a secondary to pull the VM from. */
        sync_over(x, false, rd);
        return;
    }
    if (with_peer) {
        /* The entries after it wait for its end (plv_exec_must_wait). */
        x->in_flight = true;
        x->sync = (PlvExecSync) {
            .index = index,
            .epoch = epoch,
            .leader = leader,
            .handoff = leader && x->handoff == PLV_EXEC_HANDOFF_SYNCING,
            .hello = {
                .epoch = epoch,
                .has_vm = x->executing,
                .full = x->full_sync_pending,
                .last = x->epoch,
                .fresh = x->syncs == 0 && !x->cfg.restarted,
            },
        };
        x->sync.may_run_on = leader && x->executing && !x->sync.handoff &&
                             !x->full_sync_pending && x->paired == x->secondary;
        a = act(rd, PLV_EXEC_SYNCVM);
        a->sync = x->sync;
        return;
    }
    /*
     * A leader alone (no secondary named yet: the first leader, or a
     * secondary that took over): a majority committed this entry, and
     * there is nothing to copy. Its outputs stay held: they leave only
     * once a secondary has applied a cut that covers them (the first
     * syncvm with one releases them all). Released alone, they were
     * states only this VM had: the simulation found a deposed leader,
     * elected again with its own older copy, releasing a different
     * history beside them.
     */
    x->epoch = epoch;
    act(rd, PLV_EXEC_SYNCVM_ALONE)->epoch = epoch;
    act(rd, PLV_EXEC_APPLIED_SYNCVM)->index = index;
    sync_over(x, true, rd);
}

void plv_exec_committed(PlvExec *x, const PlvEntry *e, PlvExecReady *rd)
{
    size_t len;
    const uint8_t *p = plv_entry_payload(e, &len);

    switch (e->op) {
    case PLV_OP_SECOND:
        if (len == 4) {
            exec_second(x, plv_get_u32(p), rd);
        }
        break;
    case PLV_OP_INPUT:
        x->log_had_vm = true;
        if (x->executing) {
            act(rd, PLV_EXEC_INJECT)->index = e->index;
        }
        break;
    case PLV_OP_SYNCVM:
        if (len == 8) {
            exec_syncvm(x, e->index, plv_get_u64(p), rd);
        }
        break;
    case PLV_OP_END:
        /*
         * The leader proposes it once its guest has powered off, behind a
         * syncvm that released the outputs said before. Whatever is held
         * now was said after that syncvm's cut by a VM that is gone.
         */
        act(rd, PLV_EXEC_STOP_VM);
        act(rd, PLV_EXEC_DROP_OUTPUTS);
        act(rd, PLV_EXEC_END);
        x->executing = false;
        forget_kept(x);
        break;
    default:
        break;
    }
}

/* The deadline first: a refused transfer (plv_exec_transfer_failed, right
 * after TRANSFER) cancels it. */
static void handoff_transfer(PlvExec *x, PlvExecReady *rd)
{
    x->handoff = PLV_EXEC_HANDOFF_TRANSFERRING;
    act(rd, PLV_EXEC_HANDOFF_TIMER)->ms = x->cfg.suspect_ms + 2 * x->cfg.election_ms +
                                          x->cfg.syncvm_timeout_ms;
    act(rd, PLV_EXEC_TRANSFER)->peer = x->secondary;
}

/*
 * A deposed leader's syncvm completes no pair: the secondary follows the
 * new leader, and no output of this one may leave. A candidate may still
 * be the leader that re-prepares its view. Giving the syncvm up changes
 * when it fails, not what may happen: a syncvm may fail at any point
 * (its link breaks, or times out), and the rules cover each.
 */
bool plv_exec_sync_moot(const PlvExec *x, PlvRole role)
{
    return x->in_flight && x->sync.leader &&
           role != PLV_ROLE_LEADER && role != PLV_ROLE_CANDIDATE;
}

void plv_exec_transfer_failed(PlvExec *x, PlvExecReady *rd)
{
    handoff_end(x, rd);
    act(rd, PLV_EXEC_START_VM);
}

void plv_exec_sync_done(PlvExec *x, const PlvExecSyncResult *r, PlvExecReady *rd)
{
    const PlvExecSync *j = &x->sync;
    /* A deadline that passed during this syncvm has given the handoff up:
     * no transfer (handoff_timeout below ends it). */
    bool handing_over = r->ok && j->handoff && x->handoff == PLV_EXEC_HANDOFF_SYNCING &&
                        !x->handoff_expired;

    if (j->leader) {
        if (r->ok) {
            x->second_may_hold = true;
        } else if (r->peer_answered) {
            x->second_may_hold = r->peer_has_vm || r->peer_may_apply;
        }
    }
    if (r->ok) {
        if (j->leader) {
            act(rd, PLV_EXEC_RESET_ERR)->peer = x->secondary;
        }
        x->paired = x->secondary;
        x->pair_leader = x->leader;
        x->full_sync_pending = false;
        x->executing = true;
        x->syncs++;
    } else {
        /*
         * A syncvm that failed between this pair counts against the peer
         * on the leader (n_err): past the consensus layer's threshold the
         * leader replaces its secondary, so a pair that cannot sync does
         * not hold the outputs for ever. Skews count too (they resolve
         * within an attempt or two, and a success clears the count). The
         * secondary does not count: it would otherwise depose a leader
         * that merely lost its previous secondary.
         */
        if (j->leader && x->secondary != PLV_NODE_NONE && !r->boot) {
            act(rd, PLV_EXEC_ADD_ERR)->peer = x->secondary;
        }
        if (!r->skew) {
            x->paired = PLV_NODE_NONE;  /* the next one stops the VM */
        }
        if (r->commit_failed) {
            /* RAM (or devices) of this VM are now of two states: it never
             * runs again before a full syncvm replaces both. */
            discard(x, rd);
            x->full_sync_pending = true;
        }
    }
    /* A leader handing over stays paused here: this syncvm is the point
     * both VMs are identical at. */
    if ((x->executing && !handing_over) || r->snapshot) {
        act(rd, PLV_EXEC_RESUME);
    }
    if (!r->ok && r->boot && j->leader && !x->executing && x->role == PLV_ROLE_LEADER) {
        /*
         * Elected without a copy, and the secondary has none either: the
         * VM was lost before it was ever protected (its first leader died
         * or was deposed before their first syncvm). No output of it ever
         * left, so it boots again here; the next syncvm copies it to the
         * secondary in full. What its drives hold stays, as after a
         * crash of the guest.
         */
        x->executing = true;
        x->full_sync_pending = true;
        act(rd, PLV_EXEC_DROP_OUTPUTS);
        act(rd, PLV_EXEC_BOOT_VM);
        sync_over(x, true, rd);
        request_syncvm(rd, "boot");
        return;
    }
    if (!r->ok) {
        /* Outputs stay held, so the next syncvm covers them. */
        sync_over(x, true, rd);
        if (x->handoff_expired) {
            handoff_timeout(x, rd);
        }
        return;
    }
    x->epoch = j->epoch;
    act(rd, PLV_EXEC_APPLIED_SYNCVM)->index = j->index;
    if (j->leader) {
        /* Committed by a majority and applied on the secondary: what the
         * VM said up to the cut may leave. */
        act(rd, PLV_EXEC_RELEASE)->count = r->held;
        if (handing_over) {
            handoff_transfer(x, rd);
        }
    } else {
        /* The secondary's output up to here came from a state that the
         * leader's has just replaced: it is never to be sent. What it says
         * from now on is kept, in case it leads before the next syncvm. */
        act(rd, PLV_EXEC_DROP_OUTPUTS);
    }
    sync_over(x, true, rd);
    if (x->handoff == PLV_EXEC_HANDOFF_SYNCING && !handing_over &&
        !x->handoff_expired && x->role == PLV_ROLE_LEADER) {
        /* Asked for while a syncvm the VM ran on through was in flight:
         * the handoff needs one of its own, with the VM stopped. */
        request_syncvm(rd, "handoff");
    }
    if (x->handoff_expired) {
        handoff_timeout(x, rd);
    }
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
PlvExecMigrateError plv_exec_migrate_leader(PlvExec *x, PlvExecReady *rd)
{
    if (x->role != PLV_ROLE_LEADER) {
        return PLV_EXEC_MIGRATE_NOT_LEADER;
    }
    if (x->handoff != PLV_EXEC_HANDOFF_NONE) {
        return PLV_EXEC_MIGRATE_IN_PROGRESS;
    }
    if (!x->executing || x->secondary == PLV_NODE_NONE || x->secondary == x->cfg.self ||
        x->full_sync_pending || x->syncs == 0) {
        return PLV_EXEC_MIGRATE_NO_SECONDARY;
    }
    x->handoff = PLV_EXEC_HANDOFF_SYNCING;
    /* If a syncvm is already on its way, that one serves. */
    request_syncvm(rd, "handoff");
    act(rd, PLV_EXEC_HANDOFF_TIMER)->ms = 2 * x->cfg.syncvm_timeout_ms +
                                          x->cfg.max_sync_interval_ms;
    return PLV_EXEC_MIGRATE_OK;
}

static void handoff_timeout(PlvExec *x, PlvExecReady *rd)
{
    PlvExecHandoff was = x->handoff;

    handoff_end(x, rd);
    act(rd, PLV_EXEC_HANDOFF_GIVEN_UP)->was = was;
    if (x->role == PLV_ROLE_LEADER || x->role == PLV_ROLE_CANDIDATE) {
        /* Consensus gave it up: go on leading (a candidate is a leader
         * re-preparing its view, or electing anew: the outcome decides,
         * not the deadline). */
        act(rd, PLV_EXEC_START_VM);
    } else if (x->secondary != x->cfg.self) {
        discard(x, rd);     /* the new leader chose another secondary */
    }
}

/*
 * The deadline fires on its own clock, also while a syncvm is in flight:
 * then it waits for that syncvm's end, which decides what the VM is
 * (a discard in the middle would be undone by its success, with the
 * outputs it is to release dropped already).
 */
void plv_exec_handoff_timeout(PlvExec *x, PlvExecReady *rd)
{
    if (x->handoff == PLV_EXEC_HANDOFF_NONE) {
        return;
    }
    if (x->in_flight) {
        x->handoff_expired = true;
        return;
    }
    handoff_timeout(x, rd);
}

const char *plv_exec_action_name(PlvExecActionKind k)
{
    static const char *const names[] = {
        [PLV_EXEC_START_VM] = "start-vm",
        [PLV_EXEC_STOP_VM] = "stop-vm",
        [PLV_EXEC_RESUME] = "resume",
        [PLV_EXEC_DISCARD] = "discard",
        [PLV_EXEC_INJECT] = "inject",
        [PLV_EXEC_SYNCVM] = "syncvm",
        [PLV_EXEC_SYNCVM_ALONE] = "syncvm-alone",
        [PLV_EXEC_SYNCVM_OVER] = "syncvm-over",
        [PLV_EXEC_APPLIED_SYNCVM] = "applied-syncvm",
        [PLV_EXEC_RELEASE] = "release",
        [PLV_EXEC_DROP_OUTPUTS] = "drop-outputs",
        [PLV_EXEC_ANNOUNCE] = "announce",
        [PLV_EXEC_REQUEST_SYNCVM] = "request-syncvm",
        [PLV_EXEC_DROP_LINK] = "drop-link",
        [PLV_EXEC_FORWARD] = "forward",
        [PLV_EXEC_INSTALL_SNAPSHOT] = "install-snapshot",
        [PLV_EXEC_ADD_ERR] = "add-err",
        [PLV_EXEC_RESET_ERR] = "reset-err",
        [PLV_EXEC_TRANSFER] = "transfer",
        [PLV_EXEC_HANDOFF_TIMER] = "handoff-timer",
        [PLV_EXEC_HANDOFF_CANCEL] = "handoff-cancel",
        [PLV_EXEC_HANDOFF_DONE] = "handoff-done",
        [PLV_EXEC_HANDOFF_GIVEN_UP] = "handoff-given-up",
        [PLV_EXEC_END] = "end",
        [PLV_EXEC_KEEP_VM] = "keep-vm",
        [PLV_EXEC_BOOT_VM] = "boot-vm",
    };

    return (unsigned)k < G_N_ELEMENTS(names) && names[k] ? names[k] : "?";
}
