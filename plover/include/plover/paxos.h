/*
 * plover consensus engine: Multi-Paxos (viewstamped log) as a pure state
 * machine. It takes a message or a tick and returns, in a PlvReady, the
 * messages to send, the entries committed (in log order) and role/view
 * events. No threads, sockets, clocks or randomness from outside: the
 * same inputs give the same outputs (election jitter comes from a PRNG
 * seeded by the config). A driver owns one PlvPaxos and serializes calls.
 *
 * Roles are agreed in the log: the leader is the node that completed
 * phase 1 of the current view (vid names it), the secondary is the node
 * named by the last committed second() entry, everyone else is a witness.
 * The protocol, the election preference and the restart rule are
 * described in docs/consensus.md.
 */
#ifndef PLOVER_PAXOS_H
#define PLOVER_PAXOS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "plover/wire.h"

G_BEGIN_DECLS

/* First incarnation of every node when the cluster is created. A node
 * started with a larger incarnation is a restarted node and must be
 * admitted by a config entry before it votes. */
#define PLV_INC_INITIAL 1

typedef struct {
    uint32_t self;              /* this node's id, < n */
    uint32_t n;                 /* cluster size, 1..PLV_MAX_NODES (3) */
    uint64_t incarnation;       /* PLV_INC_INITIAL at creation, larger after
                                 * each restart (driver keeps it increasing) */
    uint32_t heartbeat_ticks;   /* send status / retransmit every N ticks */
    uint32_t suspect_ticks;     /* silence after which a peer is suspect */
    uint32_t election_ticks;    /* extra delay/jitter range for elections;
                                 * also phase-1 timeout */
    uint32_t n_err_threshold;   /* n_err >= this: peer is suspect (0: off) */
    uint32_t max_batch_bytes;   /* bound of one input batch entry */
    uint32_t max_queue_bytes;   /* submit refuses beyond this (0: 16 MiB) */
    uint32_t log_capacity;      /* max entries kept past the truncation point */
    uint32_t catchup_max;       /* entries per catch-up response (0: 64) */
    uint64_t seed;              /* election jitter PRNG seed */
} PlvPaxosConfig;

/* Fill sane defaults (n = 3, heartbeat 2, suspect 10, election 10, ...);
 * caller sets self/incarnation/seed. */
void plv_paxos_config_default(PlvPaxosConfig *cfg);

typedef enum {
    PLV_ROLE_RECOVERING = 0,    /* restarted, not admitted yet: learns only */
    PLV_ROLE_WITNESS,
    PLV_ROLE_SECONDARY,
    PLV_ROLE_CANDIDATE,         /* running phase 1 */
    PLV_ROLE_LEADER,
} PlvRole;
const char *plv_role_name(PlvRole r);

typedef enum {
    PLV_EV_ROLE = 1,        /* role changed: old_role -> role */
    PLV_EV_VIEW,            /* new view known: vid, leader */
    PLV_EV_NEEDS_SNAPSHOT,  /* entries up to snap.index are gone for this node:
                             * fetch the state at snap.index from `peer`, then
                             * call plv_paxos_install_snapshot(snap.index) */
    PLV_EV_SUSPECT,         /* peer became suspect (silence or n_err) */
    PLV_EV_ADMITTED,        /* this incarnation was admitted: it votes now */
} PlvEventKind;

typedef struct {
    PlvEventKind kind;
    PlvRole role, old_role;
    uint64_t vid;
    uint32_t leader;
    uint32_t peer;
    PlvSnapMeta snap;
    /* ROLE, to leader: the newest view that an acceptor of its phase 1
     * (itself included) had promised to another node */
    uint64_t other_vid;
} PlvEvent;

/*
 * What an acceptor must never forget (docs/consensus.md, "Durable
 * state"): the view it promised, the incarnation of that view's leader,
 * its truncation point and the entries it holds past it.
 *
 * As a record of changes (PlvReady.stable) `ents` holds the entries this
 * node wrote into its log since the ready was last cleared, in the order
 * written, and `has_snap` says the log was truncated at `snap`; the
 * promise fields are always the current ones. The caller keeps the
 * record on disk before it sends the ready's messages or acts on its
 * committed entries. As an image (what a restart gives back) `ents` is the
 * whole log past the truncation point, in index order.
 */
typedef struct {
    bool dirty;                 /* record: something to keep changed */
    bool voter;                 /* the node votes: its memory is a whole
                                 * acceptor's, not a learner's */
    uint64_t promised;          /* highest view promised (or led) */
    uint64_t promised_inc;      /* incarnation of its leader, 0: unknown */
    uint64_t promised_other;    /* highest view promised to a node other
                                 * than the promised view's leader */
    bool has_snap;
    PlvSnapMeta snap;           /* entries up to snap.index are truncated */
    GArray *ents;               /* of PlvEntry, owned refs */
} PlvDurable;

void plv_durable_init(PlvDurable *d);
void plv_durable_clear(PlvDurable *d);      /* empties, keeps it usable */
void plv_durable_destroy(PlvDurable *d);
/* Apply a record of changes to an image: the promise, the truncation,
 * then each entry past it (replacing what the image held there). */
void plv_durable_apply(PlvDurable *img, const PlvDurable *chg);

/* One message to send; msg.hdr.to == to. */
typedef struct {
    uint32_t to;
    PlvMsg msg;
} PlvOutMsg;

/*
 * Output of one call. The caller consumes it and calls plv_ready_clear()
 * (outputs accumulate across calls until cleared).
 */
typedef struct {
    GPtrArray *msgs;        /* of PlvOutMsg*, owned */
    GArray *committed;      /* of PlvEntry, in log order, owned refs */
    GArray *events;         /* of PlvEvent */
    PlvDurable stable;      /* to keep on disk before msgs leave */
} PlvReady;

void plv_ready_init(PlvReady *rd);
void plv_ready_clear(PlvReady *rd);     /* empties, keeps it usable */
void plv_ready_destroy(PlvReady *rd);   /* frees */

typedef struct PlvPaxos PlvPaxos;

/* Returns NULL (err set) for an invalid config. */
PlvPaxos *plv_paxos_new(const PlvPaxosConfig *cfg, GError **err);
/*
 * A restarted node (incarnation > PLV_INC_INITIAL) that kept its durable
 * state, and whose state is a voter's (plv_durable_votes): give it back
 * before the first step or tick. The node then votes
 * at once, as the acceptor it was (its promises and acceptances are
 * intact), while it stays RECOVERING for the executor until the log
 * admits its new incarnation (docs/consensus.md, "Durable state").
 * Returns 0, or -EINVAL (not a restart, already running, or an image of
 * another cluster size).
 */
int plv_paxos_restore(PlvPaxos *p, const PlvDurable *img, PlvReady *rd);
/* Does this kept state give a restart its vote back? Only a voter's: an
 * incarnation that restarted without its state and was not admitted yet
 * kept a learner's memory, and the promises before it are lost. */
bool plv_durable_votes(const PlvDurable *img);
void plv_paxos_free(PlvPaxos *p);

/* Feed one decoded message addressed to this node. Invalid messages
 * (wrong to/from, foreign cluster size, ...) are counted and dropped. */
void plv_paxos_step(PlvPaxos *p, const PlvMsg *in, PlvReady *rd);
/* Advance logical time by one tick. */
void plv_paxos_tick(PlvPaxos *p, PlvReady *rd);

/*
 * Leader only: queue one inbound packet. Queued packets go into the next
 * input entry, proposed as soon as no proposal is in flight (one in flight
 * at a time, so everything that arrived meanwhile forms one batch, cut at
 * max_batch_bytes). Returns 0, -EPERM (not leader), -EINVAL (empty/too
 * large packet), -ENOBUFS (queue full: back-pressure).
 */
int plv_paxos_submit_input(PlvPaxos *p, const void *pkt, size_t len, PlvReady *rd);
/*
 * Any node: an inbound packet for whoever leads. A leader not handing over
 * submits it; anyone else holds it and forwards it (PLV_MSG_FORWARD) to the
 * leader it follows, or as soon as it knows one; a leader whose handoff is
 * given up submits what it held. Dropped if no leader takes it within
 * 2 x suspect + 4 x election ticks. Returns 0, -EINVAL, -ENOBUFS.
 */
int plv_paxos_forward_input(PlvPaxos *p, const void *pkt, size_t len, PlvReady *rd);
/* Leader only: queue a syncvm(epoch) behind the packets queued so far. */
int plv_paxos_propose_syncvm(PlvPaxos *p, uint64_t epoch, PlvReady *rd);
/* Leader only: queue the group's end (the guest powered off) behind what is
 * queued so far. Returns 0, -EPERM (not leader), -EBUSY (handing over). */
int plv_paxos_propose_end(PlvPaxos *p, PlvReady *rd);

/*
 * Leader only: hand leadership to `to`, which must be the secondary (its
 * VM already holds the replicated state). New inputs and syncvms are
 * refused (-EBUSY) while this runs; once what is queued is committed and
 * `to` holds the whole log, `to` is told to take over, runs phase 1 at
 * once (this node promises), and names this node its secondary. Given up
 * after suspect + 2 * election ticks. Returns 0, -EPERM (not an
 * established leader), -EINVAL (`to` is not the secondary), -EAGAIN (the
 * secondary is not heard from or not admitted).
 */
int plv_paxos_transfer_leadership(PlvPaxos *p, uint32_t to, PlvReady *rd);
bool plv_paxos_transferring(const PlvPaxos *p);

/*
 * The executor keeps a VM that last ran in view `vid` (PlvExec.kept_vid;
 * 0 once it no longer does). Until then this node prefers itself as
 * leader: it refuses candidates that keep no VM or an older one, and may
 * lead although the secondary is fit; acceptors, told by its PREPARE,
 * waive their preference for the secondary. Otherwise the copy would be
 * lost to a leader elected without one (docs/exec.md, "Both others lost").
 */
void plv_paxos_set_kept(PlvPaxos *p, uint64_t vid);
uint64_t plv_paxos_kept(const PlvPaxos *p);

/*
 * Executors (leader and secondary) report the index of a syncvm entry whose
 * state they have applied. The leader truncates everyone's log up to the
 * last syncvm both executors applied.
 */
void plv_paxos_applied_syncvm(PlvPaxos *p, uint64_t index);

/* After PLV_EV_NEEDS_SNAPSHOT: the state at `index` is installed; delivery
 * of committed entries resumes at index+1. Returns 0 or -EINVAL. */
int plv_paxos_install_snapshot(PlvPaxos *p, uint64_t index, PlvReady *rd);

/* Error counter per peer (e.g. syncvm errors), kept by the caller's reports.
 * At n_err_threshold the peer is treated as failed (a leader replaces such a
 * secondary; a secondary stops trusting such a leader). The counts describe
 * the current executors: they are cleared when a new leader becomes known
 * and when a second() entry commits. */
void plv_paxos_add_err(PlvPaxos *p, uint32_t peer);
void plv_paxos_reset_err(PlvPaxos *p, uint32_t peer);
uint32_t plv_paxos_n_err(const PlvPaxos *p, uint32_t peer);

/* Queries. */
PlvRole plv_paxos_role(const PlvPaxos *p);
uint64_t plv_paxos_vid(const PlvPaxos *p);           /* promised view */
uint32_t plv_paxos_leader(const PlvPaxos *p);        /* PLV_NODE_NONE if unknown */
uint32_t plv_paxos_secondary(const PlvPaxos *p);     /* per committed log */
uint64_t plv_paxos_commit_index(const PlvPaxos *p);
uint64_t plv_paxos_last_index(const PlvPaxos *p);
uint64_t plv_paxos_snap_index(const PlvPaxos *p);    /* truncated up to */
uint64_t plv_paxos_epoch(const PlvPaxos *p);         /* last committed syncvm */
uint64_t plv_paxos_incarnation(const PlvPaxos *p);
bool plv_paxos_admitted(const PlvPaxos *p);
/* Votes: admitted, or restored from durable state (plv_paxos_restore). */
bool plv_paxos_voter(const PlvPaxos *p);
/* Incarnation of the promised view's leader (0: unknown). */
uint64_t plv_paxos_promised_inc(const PlvPaxos *p);
bool plv_paxos_snapshot_pending(const PlvPaxos *p);
uint64_t plv_paxos_member_inc(const PlvPaxos *p, uint32_t node);
size_t plv_paxos_queued_bytes(const PlvPaxos *p);
/* Number of retained log entries (snap_index+1 .. last_index). */
size_t plv_paxos_log_len(const PlvPaxos *p);
/* Entry at index if retained (borrowed, valid until the next call). */
const PlvEntry *plv_paxos_entry(const PlvPaxos *p, uint64_t index);

typedef struct {
    uint64_t msgs_in;
    uint64_t msgs_bad;          /* dropped as invalid for this node */
    uint64_t msgs_stale;        /* from an incarnation no longer admitted */
    uint64_t probes;            /* pre-votes started */
    uint64_t elections;         /* phase 1 started */
    uint64_t proposals;         /* accept rounds started */
    uint64_t commits;           /* entries committed */
    uint64_t snapshots;         /* snapshot needs raised */
    uint64_t handoffs;          /* elections started on a leader's handoff */
    uint64_t fwd_sent;          /* inputs forwarded to the leader */
    uint64_t fwd_taken;         /* forwarded inputs this leader submitted */
    uint64_t fwd_dropped;       /* inputs held for a leader and dropped */
} PlvPaxosStats;
void plv_paxos_stats(const PlvPaxos *p, PlvPaxosStats *st);

G_END_DECLS

#endif /* PLOVER_PAXOS_H */
