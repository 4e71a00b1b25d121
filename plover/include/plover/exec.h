/*
 * plover/exec.h — the executor: which replica runs the VM, when it stops
 * and starts, whether held outputs are released or dropped, when a syncvm
 * runs and with what the two ends agree on.
 *
 * A pure state machine in the style of PlvPaxos: no threads, clocks or
 * I/O. It is stepped with what consensus hands a replica, in log order
 * (role and view events, committed entries, a snapshot to install), with
 * the result of each syncvm it asked for, and with the operator's
 * leadership migration; each step appends the actions the caller must
 * perform, in order, to a PlvExecReady. The QEMU glue performs them on
 * the VM (plover/qemu/plover-replica.c); the simulation performs them on
 * a model VM (tests/unit/sim) and checks what clients see.
 *
 * The rules (PLOVER §4, and what running them taught):
 * - The first leader of a new group boots the VM; afterwards a replica
 *   executes only a VM it was given by a syncvm, or the one it kept.
 * - A secondary taking over runs on from its own state and announces
 *   itself; a leader elected without a copy pulls one at the next syncvm.
 * - A syncvm runs between the leader and the log's secondary at the
 *   committed syncvm entry; the entries after it wait for its end (except
 *   inputs on a leader whose VM runs on from the cut).
 * - The leader releases the outputs held at the cut once the secondary
 *   applied the cut; a secondary drops what its own VM said up to it.
 * - A replica left out of the executing pair discards its VM, except a
 *   leader that steps down: it keeps it, stopped, for the group to
 *   resume from (the lone leader). It runs it again if it leads again
 *   and its phase 1 saw no newer view promised to another replica. The
 *   only copy also runs again when named secondary; a copy its
 *   secondary may hold too is provisional, and any sign that the others
 *   went on without it drops it.
 * - Leadership migration: a syncvm with the VM paused, then consensus
 *   hands over; the new leader naming us secondary completes it.
 */
#ifndef PLOVER_EXEC_H
#define PLOVER_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "plover/paxos.h"
#include "plover/syncvm-agree.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum PlvExecHandoff {
    PLV_EXEC_HANDOFF_NONE,
    PLV_EXEC_HANDOFF_SYNCING,       /* waiting for the syncvm to hand over at */
    PLV_EXEC_HANDOFF_TRANSFERRING,  /* VM paused at it; consensus hands over */
} PlvExecHandoff;

typedef enum PlvExecActionKind {
    PLV_EXEC_START_VM,          /* run the VM (no-op if it runs) */
    PLV_EXEC_STOP_VM,           /* stop it (no-op if stopped) */
    PLV_EXEC_RESUME,            /* the VM of the syncvm just ended runs again */
    PLV_EXEC_DISCARD,           /* stop, drop held outputs and queued inputs */
    PLV_EXEC_INJECT,            /* give the entry's packets to the guest NIC */
    PLV_EXEC_SYNCVM,            /* cut here and run syncvm .sync */
    PLV_EXEC_SYNCVM_ALONE,      /* a leader alone passed syncvm .epoch */
    PLV_EXEC_SYNCVM_OVER,       /* no syncvm in flight: held entries may run,
                                 * the next may be proposed (.ran: one ran) */
    PLV_EXEC_APPLIED_SYNCVM,    /* tell consensus: VM as of entry .index */
    PLV_EXEC_RELEASE,           /* send the first .count held outputs */
    PLV_EXEC_DROP_OUTPUTS,      /* drop every held output */
    PLV_EXEC_ANNOUNCE,          /* tell the network where the MAC lives */
    PLV_EXEC_REQUEST_SYNCVM,    /* propose a syncvm (.why) */
    PLV_EXEC_DROP_LINK,         /* the syncvm link belongs to another pair */
    PLV_EXEC_FORWARD,           /* stopped leading: forward the guest's
                                 * traffic that still arrives, for a while */
    PLV_EXEC_INSTALL_SNAPSHOT,  /* consensus skips to entry .index */
    PLV_EXEC_ADD_ERR,           /* a syncvm with .peer failed (n_err) */
    PLV_EXEC_RESET_ERR,         /* ... and one succeeded */
    PLV_EXEC_TRANSFER,          /* hand leadership to .peer (then
                                 * plv_exec_transfer_failed if refused) */
    PLV_EXEC_HANDOFF_TIMER,     /* arm the handoff deadline, .ms from now */
    PLV_EXEC_HANDOFF_CANCEL,    /* cancel it */
    PLV_EXEC_HANDOFF_DONE,      /* handed over: now .peer's secondary */
    PLV_EXEC_HANDOFF_GIVEN_UP,  /* the deadline passed in state .was */
    PLV_EXEC_END,               /* the group ended (the guest powered off):
                                 * this replica ends too */
    PLV_EXEC_KEEP_VM,           /* stop, drop held outputs, and keep the VM
                                 * (the lone leader's, PlvExec.kept) */
    PLV_EXEC_BOOT_VM,           /* reset the VM to power-on and run it: a
                                 * leader booting a never protected VM
                                 * again (plv_sync_fresh_boot) */
} PlvExecActionKind;

/* What a syncvm asked for by PLV_EXEC_SYNCVM is, as this end sees it. */
typedef struct PlvExecSync {
    uint64_t index;             /* of the syncvm entry */
    uint64_t epoch;
    bool leader;                /* this end leads the pair */
    bool handoff;               /* leader: the handoff point; stay paused */
    bool may_run_on;            /* leader: the secondary holds the VM as of
                                 * their last syncvm, so the VM may run on
                                 * from the cut over a snapshot */
    PlvSyncHello hello;         /* what this end tells the other */
} PlvExecSync;

typedef struct PlvExecAction {
    PlvExecActionKind kind;
    uint64_t index;             /* APPLIED_SYNCVM, INSTALL_SNAPSHOT, INJECT */
    uint64_t epoch;             /* SYNCVM_ALONE */
    uint64_t count;             /* RELEASE */
    uint32_t peer;              /* ADD_ERR, RESET_ERR, TRANSFER, HANDOFF_DONE */
    uint32_t ms;                /* HANDOFF_TIMER */
    bool ran;                   /* SYNCVM_OVER */
    PlvExecHandoff was;         /* HANDOFF_GIVEN_UP */
    const char *why;            /* REQUEST_SYNCVM (static string) */
    PlvExecSync sync;           /* SYNCVM */
} PlvExecAction;

/* Actions of one or more steps, in order; the caller clears it. */
typedef struct PlvExecReady {
    PlvExecAction *a;
    size_t n, cap;
} PlvExecReady;

void plv_exec_ready_init(PlvExecReady *rd);
void plv_exec_ready_clear(PlvExecReady *rd);
void plv_exec_ready_destroy(PlvExecReady *rd);

typedef struct PlvExecConfig {
    uint32_t self;
    bool restarted;             /* started RECOVERING (a later incarnation) */
    /* for the handoff's deadlines */
    uint32_t suspect_ms, election_ms, syncvm_timeout_ms, max_sync_interval_ms;
} PlvExecConfig;

/*
 * The executor's state. Written only by exec.c; the glue and the
 * simulation read the fields (role, view, pair, whether this replica
 * executes) and step it.
 */
typedef struct PlvExec {
    PlvExecConfig cfg;
    PlvRole role;
    uint64_t vid;
    uint32_t leader;            /* of the view, PLV_NODE_NONE if unknown */
    uint32_t secondary;         /* per the committed log, PLV_NODE_NONE if none */
    /* A replica executes inputs once its VM holds the replicated state:
     * the first leader from boot, a secondary from its first syncvm on. */
    bool executing;
    bool full_sync_pending;     /* the next syncvm covers every page */
    bool log_had_vm;            /* an input or syncvm was committed: a VM exists */
    uint64_t epoch;             /* last syncvm completed here */
    uint64_t syncs;             /* syncvms completed here */
    uint32_t paired;            /* secondary of the last good syncvm */
    PlvExecHandoff handoff;     /* leadership migration */
    bool handoff_expired;       /* its deadline passed during a syncvm */
    uint64_t handoffs;          /* completed, as the replica that handed over */
    /*
     * The lone leader: a leader that stepped down while its VM was the
     * only copy keeps it, stopped, not executing. It runs it again if
     * it leads again (checked as below: a secondary the log replaced may
     * not have learned it, and taken over with its own) or is named
     * secondary (the leader then pulls it).
     *
     * A leader that steps down while its secondary may hold the VM keeps
     * it too, provisionally (kept_provisional): the other two replicas
     * may both be gone (killed together), and then it is the last copy.
     * But they may also have gone on without it, in a view newer than
     * kept_vid, the view it last led. It runs it again only if it leads
     * again and no acceptor of its phase 1 had promised such a view to
     * another replica (every view that went on without it had a majority's
     * promise, and every phase 1 majority meets that one). A view led by
     * another replica, being named secondary, or a snapshot discards it.
     * While it keeps one, consensus prefers it as leader (kept_vid,
     * plv_paxos_set_kept).
     */
    bool kept;
    bool kept_provisional;
    uint64_t kept_vid;
    uint64_t kept_stale;        /* provisional copies dropped as stale */
    /*
     * Leader: the log's secondary may hold a VM. A replica named
     * secondary holds one only if it is the leader this one was last
     * paired with as secondary (a leader that handed over, or that was
     * taken over from, may still run its copy); every other replica
     * discards its VM when the log leaves it out of the pair. Then a
     * REPLY tells, and a syncvm that may have reached the target's
     * commit makes it a holder.
     */
    bool second_may_hold;
    uint32_t pair_leader;       /* leader of this secondary's last syncvm */
    bool in_flight;             /* a PLV_EXEC_SYNCVM has not ended yet */
    PlvExecSync sync;           /* ... that one */
} PlvExec;

void plv_exec_init(PlvExec *x, const PlvExecConfig *cfg);

/* From consensus, in log order. */
/* @other_vid: to leader, the newest view its phase 1 saw promised to
 * another replica (PlvEvent.other_vid); 0 otherwise. */
void plv_exec_role(PlvExec *x, PlvRole old, PlvRole role, uint64_t other_vid,
                   PlvExecReady *rd);
void plv_exec_view(PlvExec *x, uint64_t vid, uint32_t leader, PlvExecReady *rd);
void plv_exec_needs_snapshot(PlvExec *x, uint64_t index, uint32_t secondary,
                             PlvExecReady *rd);
void plv_exec_committed(PlvExec *x, const PlvEntry *e, PlvExecReady *rd);

/*
 * While a syncvm is in flight, what follows it in the log waits: true if
 * the next item (an entry of @op, or an event if @op is PLV_OP_NOOP)
 * must wait. Only inputs on a leader whose VM runs on from the cut
 * (@vm_runs_on) go ahead: they belong to the next syncvm.
 */
bool plv_exec_must_wait(const PlvExec *x, PlvOp op, bool vm_runs_on);

/*
 * Whether the syncvm in flight is moot now that consensus, read ahead of
 * the events the syncvm holds back, says this replica is @role: a
 * leader's, once it was deposed. The caller gives it up at once, as if
 * its link had failed, rather than at its link's timeout (up to a full
 * syncvm's 15 s) before this executor may learn the new role.
 */
bool plv_exec_sync_moot(const PlvExec *x, PlvRole role);

/* The end of the syncvm of the last PLV_EXEC_SYNCVM. */
typedef struct PlvExecSyncResult {
    bool ok;
    bool skew;                  /* the ends were at different entries */
    bool commit_failed;         /* target: RAM or devices of two states now */
    bool snapshot;              /* leader: the VM ran on from the cut */
    uint64_t held;              /* leader: outputs held at the cut */
    bool boot;                  /* neither end held the VM, and it was
                                 * never protected (plv_sync_fresh_boot) */
    /* Leader, on a failure: what it learned of its secondary's VM. */
    bool peer_answered;         /* the secondary's REPLY came */
    bool peer_has_vm;           /* ... and said it holds a VM */
    bool peer_may_apply;        /* the copy went far enough (the device
                                 * state was sent) that the secondary may
                                 * have applied it without our hearing */
} PlvExecSyncResult;

void plv_exec_sync_done(PlvExec *x, const PlvExecSyncResult *r, PlvExecReady *rd);

/* Leadership migration (plover-migrate-leader). */
typedef enum PlvExecMigrateError {
    PLV_EXEC_MIGRATE_OK,
    PLV_EXEC_MIGRATE_NOT_LEADER,
    PLV_EXEC_MIGRATE_IN_PROGRESS,
    PLV_EXEC_MIGRATE_NO_SECONDARY,  /* no secondary holds the VM yet */
} PlvExecMigrateError;

PlvExecMigrateError plv_exec_migrate_leader(PlvExec *x, PlvExecReady *rd);
void plv_exec_handoff_timeout(PlvExec *x, PlvExecReady *rd);
void plv_exec_transfer_failed(PlvExec *x, PlvExecReady *rd);

const char *plv_exec_action_name(PlvExecActionKind k);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_EXEC_H */
