/*
 * Multi-Paxos with views (viewstamped log) as a pure state machine.
 *
 * One leader per view: a vid embeds its leader's id, and the leader must
 * collect promises from a majority (phase 1) before it proposes. The
 * leader keeps one proposal in flight; what is submitted meanwhile is
 * batched into the next entry. Commit indexes ride on accepts and
 * heartbeats; nodes that miss entries fetch committed ones (catch-up),
 * or a snapshot meta when the entries were truncated.
 *
 * The safety argument, the election preference for the secondary and
 * the restart (incarnation) rule are in docs/consensus.md; comments here
 * point at the rule each check implements.
 */
#include <errno.h>
#include <string.h>
#include "plover/paxos.h"
#include "consensus/paxos-log.h"

#define HIST_LEN 32     /* syncvm points remembered for truncation */

typedef enum { ST_FOLLOWER, ST_CANDIDATE, ST_LEADER } State;

typedef struct {
    uint64_t last_heard;        /* tick of the last valid message */
    bool heard;
    PlvMsgHdr hdr;              /* status in that message */
    uint32_t n_err;
    bool suspect;               /* as last reported */
    PlvMsg promise;             /* candidate: its promise (type 0: none) */
} Peer;

typedef struct {
    uint8_t op;
    GBytes *payload;            /* input: one packet; others: the op payload */
} Pending;

struct PlvPaxos {
    PlvPaxosConfig cfg;
    uint32_t self, n, maj;
    uint64_t inc;
    uint64_t now;
    uint64_t rng;

    /* acceptor */
    bool admitted;
    bool voter;                 /* restored from durable state: votes
                                 * before the log admits this incarnation */
    uint64_t quiet_until;       /* restored: no promise before this tick */
    uint64_t promised;          /* highest view promised (or led) */
    uint64_t promised_inc;      /* incarnation of that view's leader, 0: unknown */
    uint64_t promised_other;    /* highest view promised to a node other than
                                 * the promised view's leader */
    uint64_t max_seen;          /* highest vid seen in refusals */
    uint64_t kept_vid;          /* the executor keeps a VM of this view
                                 * (plv_paxos_set_kept), 0: none */

    /* log and its replicated state (applied at commit) */
    PlvLog log;
    uint64_t commit;
    uint64_t deliver_next;
    bool snap_pending;
    PlvSnapMeta pending_snap;
    uint32_t secondary;
    uint64_t epoch;
    uint64_t member_inc[PLV_MAX_NODES];
    PlvSnapMeta hist[HIST_LEN];
    uint32_t hist_len;
    uint64_t known_commit;      /* highest commit index heard of */
    uint32_t known_commit_from;

    State st;
    uint64_t leader_vid;        /* view whose leader we know (established) */
    uint64_t leader_heard;
    uint64_t election_at;       /* follower: tick to start an election */
    uint64_t hb_at;
    uint64_t catchup_at;

    Peer peer[PLV_MAX_NODES];

    /* pre-vote: would a majority promise if we stood? */
    uint64_t probe_vid;         /* the view we would stand for, 0: not probing */
    uint64_t probe_until;       /* tick at which the pre-vote is given up */
    uint32_t probe_mask;        /* who would promise (ourselves included) */

    /* candidate */
    uint64_t cand_at;           /* phase 1 deadline */
    bool incumbent;             /* re-preparing while leading */

    /* leader */
    uint32_t p1_mask;           /* nodes whose promise formed our phase 1 */
    uint64_t p1_other;          /* ... the newest view they had promised to
                                 * another node (PlvEvent.other_vid) */
    uint64_t p1_inc[PLV_MAX_NODES];     /* ... and their incarnations */
    bool established;
    uint64_t prop_last;         /* last index of the proposal in flight, 0: none */
    uint32_t ack_mask;
    GQueue ctl;                 /* Pending: config/second, before inputs */
    GQueue queue;               /* Pending: input packets and syncvm */
    size_t queued_bytes;
    uint64_t my_applied;
    uint64_t trunc;
    uint32_t xfer_to;           /* handing leadership to it, or NONE */
    uint64_t xfer_until;        /* tick at which the handoff is given up */
    bool xfer_ready;            /* log drained: HANDOFF goes out */

    /* new leader: the node that handed leadership over, preferred as
     * secondary (its VM is the replicated one), or NONE */
    uint32_t handoff_from;

    /* inputs held for the leader (docs/consensus.md, "Forwarding") */
    GQueue fwd;                 /* Pending: INPUT */
    size_t fwd_bytes;
    uint64_t fwd_until;         /* tick at which what is held is dropped */

    PlvRole rep_role;
    uint64_t rep_leader_vid;
    PlvPaxosStats stats;
};

/* ---- small helpers ---- */

static uint64_t rnd(PlvPaxos *p)
{
    /* splitmix64: deterministic jitter from the configured seed */
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t jitter(PlvPaxos *p, uint32_t range)
{
    return range ? rnd(p) % range : 0;
}

static int popcount(uint32_t m)
{
    return __builtin_popcount(m);
}

static bool recent(const PlvPaxos *p, uint64_t t)
{
    return p->now - t < p->cfg.suspect_ticks;
}

static void event(PlvReady *rd, PlvEvent ev)
{
    g_array_append_val(rd->events, ev);
}

static PlvRole role_now(const PlvPaxos *p)
{
    if (!p->admitted) {
        return PLV_ROLE_RECOVERING;
    }
    if (p->st == ST_LEADER) {
        return PLV_ROLE_LEADER;
    }
    if (p->st == ST_CANDIDATE) {
        return PLV_ROLE_CANDIDATE;
    }
    return p->secondary == p->self ? PLV_ROLE_SECONDARY : PLV_ROLE_WITNESS;
}

static void reset_errs(PlvPaxos *p)
{
    for (uint32_t i = 0; i < p->n; i++) {
        p->peer[i].n_err = 0;
    }
}

/* ---- what must reach the disk (PlvReady.stable) ---- */

/* Does this node vote (promise, accept)? Admitted, or restored with its
 * memory intact (docs/consensus.md, "Durable state"). */
static bool votes(const PlvPaxos *p)
{
    return p->admitted || p->voter;
}

static void stable_promise(PlvPaxos *p, PlvReady *rd)
{
    rd->stable.dirty = true;
    rd->stable.voter = votes(p);
    rd->stable.promised = p->promised;
    rd->stable.promised_inc = p->promised_inc;
    rd->stable.promised_other = p->promised_other;
}

static void set_promise(PlvPaxos *p, uint64_t vid, uint64_t leader_inc, PlvReady *rd)
{
    /* Promises only rise: the one replaced is the highest so far, and it
     * becomes the highest to a node other than vid's leader unless that
     * node led it too. Kept apart from the promise so that a later
     * promise to a lone leader cannot hide one to another node
     * (docs/exec.md, "Both others lost"). */
    if (vid > p->promised && p->promised &&
        plv_vid_leader(p->promised) != plv_vid_leader(vid)) {
        p->promised_other = p->promised;
    }
    p->promised = vid;
    p->promised_inc = leader_inc;
    stable_promise(p, rd);
}

/* Record an entry as it is now in the log (written or restamped). */
static void stable_entry(PlvPaxos *p, const PlvEntry *e, PlvReady *rd)
{
    PlvEntry c;

    plv_entry_copy(&c, e);
    g_array_append_val(rd->stable.ents, c);
    stable_promise(p, rd);
}

static void log_put(PlvPaxos *p, const PlvEntry *e, PlvReady *rd)
{
    plv_log_put(&p->log, e);
    stable_entry(p, e, rd);
}

static void log_truncate(PlvPaxos *p, const PlvSnapMeta *m, PlvReady *rd)
{
    plv_log_truncate(&p->log, m);
    stable_promise(p, rd);
    rd->stable.has_snap = true;
    rd->stable.snap = p->log.snap;
}

static void report(PlvPaxos *p, PlvReady *rd)
{
    PlvRole r = role_now(p);
    if (r != p->rep_role) {
        event(rd, (PlvEvent){ .kind = PLV_EV_ROLE, .role = r, .old_role = p->rep_role,
                              .vid = p->promised, .leader = plv_vid_leader(p->leader_vid),
                              .other_vid = r == PLV_ROLE_LEADER ? p->p1_other : 0 });
        p->rep_role = r;
    }
    if (p->leader_vid != p->rep_leader_vid) {
        event(rd, (PlvEvent){ .kind = PLV_EV_VIEW, .role = r, .vid = p->leader_vid,
                              .leader = plv_vid_leader(p->leader_vid) });
        p->rep_leader_vid = p->leader_vid;
        /* n_err counts failed exchanges between the executors of one
         * configuration; a new leader starts a new one */
        reset_errs(p);
    }
    for (uint32_t i = 0; i < p->n; i++) {
        bool s;
        if (i == p->self) {
            continue;
        }
        s = !p->peer[i].heard || !recent(p, p->peer[i].last_heard) ||
            (p->cfg.n_err_threshold && p->peer[i].n_err >= p->cfg.n_err_threshold);
        if (s && !p->peer[i].suspect && p->peer[i].heard) {
            event(rd, (PlvEvent){ .kind = PLV_EV_SUSPECT, .peer = i, .role = r });
        }
        p->peer[i].suspect = s;
    }
}

static PlvMsg *out(PlvPaxos *p, PlvReady *rd, uint32_t to, PlvMsgType type)
{
    PlvOutMsg *om = g_new0(PlvOutMsg, 1);
    PlvMsg *m = &om->msg;

    om->to = to;
    plv_msg_init(m, type);
    m->hdr = (PlvMsgHdr){
        .from = p->self, .to = to, .inc = p->inc, .vid = p->promised,
        .commit = p->commit, .last = plv_log_last(&p->log), .applied = p->my_applied,
        .flags = (p->admitted ? PLV_HDR_ADMITTED : 0) |
                 (!p->admitted && p->voter ? PLV_HDR_VOTER : 0) |
                 (p->snap_pending ? PLV_HDR_SNAP_PENDING : 0) |
                 (p->st == ST_LEADER ? PLV_HDR_LEADER : 0) |
                 (p->st == ST_LEADER && p->xfer_ready && p->xfer_to == to ?
                  PLV_HDR_HANDOFF : 0),
    };
    if (type == PLV_MSG_PREPARE) {
        m->kept_vid = p->kept_vid;
    }
    g_ptr_array_add(rd->msgs, om);
    return m;
}

static PlvMsg *reply(PlvPaxos *p, PlvReady *rd, const PlvMsg *req, PlvMsgType type)
{
    PlvMsg *m = out(p, rd, req->hdr.from, type);
    m->hdr.to_inc = req->hdr.inc;
    return m;
}

/* A vote (promise/accepted) counts only from an incarnation that votes
 * (admitted, or restored from durable state) and is not older than the one
 * the log admitted for that node. */
static bool voter_ok(const PlvPaxos *p, const PlvMsgHdr *h)
{
    return (h->flags & (PLV_HDR_ADMITTED | PLV_HDR_VOTER)) &&
           h->inc >= p->member_inc[h->from];
}

static bool peer_err_suspect(const PlvPaxos *p, uint32_t i)
{
    return p->cfg.n_err_threshold && p->peer[i].n_err >= p->cfg.n_err_threshold;
}

/*
 * Is the secondary alive (heard within suspect_ticks), admitted, holding
 * its state (no snapshot pending) and with a log reaching `need`? While it
 * is, nobody else may take leadership (docs/consensus.md, "preference").
 */
static bool secondary_fit(const PlvPaxos *p, uint64_t need)
{
    uint32_t s = p->secondary;
    const Peer *sp;

    if (s == PLV_NODE_NONE) {
        return false;
    }
    if (s == p->self) {
        return p->admitted && !p->snap_pending && plv_log_last(&p->log) >= need;
    }
    sp = &p->peer[s];
    return sp->heard && recent(p, sp->last_heard) && !peer_err_suspect(p, s) &&
           (sp->hdr.flags & PLV_HDR_ADMITTED) && !(sp->hdr.flags & PLV_HDR_SNAP_PENDING) &&
           sp->hdr.inc >= p->member_inc[s] && sp->hdr.last >= need;
}

static uint64_t election_delay(PlvPaxos *p)
{
    uint32_t e = p->cfg.election_ticks;
    /* The secondary's timeout is the shortest; everyone else waits one
     * more election period so that a live secondary wins the race. */
    if (p->secondary == p->self && !p->snap_pending) {
        return p->cfg.suspect_ticks + jitter(p, e / 2 + 1);
    }
    return p->cfg.suspect_ticks + e + jitter(p, e + 1);
}

static void reset_election(PlvPaxos *p)
{
    p->election_at = p->now + election_delay(p);
}

static void drop_queue(GQueue *q)
{
    Pending *pd;
    while ((pd = g_queue_pop_head(q))) {
        if (pd->payload) {
            g_bytes_unref(pd->payload);
        }
        g_free(pd);
    }
}

static void clear_promises(PlvPaxos *p)
{
    for (uint32_t i = 0; i < p->n; i++) {
        plv_msg_clear(&p->peer[i].promise);
    }
}

/*
 * Forwarding. Inputs that reach a node which cannot propose them — a
 * follower whose tap the network still uses just after a change of leader,
 * a leader handing over, a leader deposed with inputs not yet proposed —
 * are held and sent to the leader once one is known, which submits them as
 * its own. They are inputs like any other: nothing is ordered until the
 * leader proposes it. What no leader takes within 2 x suspect + 4 x
 * election ticks (about one failover) is dropped; the sender's transport
 * retransmits, as after a loss.
 */
static bool hold_input(PlvPaxos *p, Pending *pd)
{
    size_t len = g_bytes_get_size(pd->payload);

    if (p->fwd_bytes + len > p->cfg.max_queue_bytes) {
        g_bytes_unref(pd->payload);
        g_free(pd);
        p->stats.fwd_dropped++;
        return false;
    }
    if (g_queue_is_empty(&p->fwd)) {
        p->fwd_until = p->now + 2 * (uint64_t)p->cfg.suspect_ticks +
                       4 * (uint64_t)p->cfg.election_ticks;
    }
    g_queue_push_tail(&p->fwd, pd);
    p->fwd_bytes += len;
    return true;
}

static void hold_for_leader(PlvPaxos *p, GQueue *q)
{
    Pending *pd;

    while ((pd = g_queue_pop_head(q))) {
        if (pd->op == PLV_OP_INPUT) {
            hold_input(p, pd);
        } else {
            g_bytes_unref(pd->payload);
            g_free(pd);
        }
    }
}

static void become_follower(PlvPaxos *p)
{
    if (p->st == ST_LEADER && !p->incumbent) {
        drop_queue(&p->ctl);
        hold_for_leader(p, &p->queue);
        p->queued_bytes = 0;
        p->prop_last = 0;
        p->established = false;
    }
    clear_promises(p);
    p->st = ST_FOLLOWER;
    p->probe_vid = 0;
    p->incumbent = false;
    p->xfer_to = PLV_NODE_NONE;
    p->xfer_ready = false;
    p->handoff_from = PLV_NODE_NONE;
    reset_election(p);
}

/* Raise the promise to a view led by an established leader: never unsafe,
 * it only makes us refuse more. */
static void adopt_view(PlvPaxos *p, uint64_t vid, uint64_t leader_inc, PlvReady *rd)
{
    if (vid > p->promised || (vid == p->promised && p->promised_inc == 0)) {
        if (p->st != ST_FOLLOWER && vid > p->promised) {
            become_follower(p);
        }
        set_promise(p, vid, leader_inc, rd);
    }
    if (vid == p->promised && leader_inc == p->promised_inc && p->st == ST_FOLLOWER) {
        p->leader_vid = vid;
        p->leader_heard = p->now;
        reset_election(p);
    }
}

/* ---- commit, delivery, truncation ---- */

static void record_hist(PlvPaxos *p, const PlvSnapMeta *m)
{
    if (p->hist_len == HIST_LEN) {
        memmove(p->hist, p->hist + 1, sizeof(p->hist[0]) * (HIST_LEN - 1));
        p->hist_len--;
    }
    p->hist[p->hist_len++] = *m;
}

static void meta_now(const PlvPaxos *p, PlvSnapMeta *m, uint64_t index, uint64_t vid)
{
    memset(m, 0, sizeof(*m));
    m->index = index;
    m->vid = vid;
    m->epoch = p->epoch;
    m->secondary = p->secondary;
    m->n = p->n;
    memcpy(m->inc, p->member_inc, sizeof(m->inc));
}

static void deliver(PlvPaxos *p, PlvReady *rd)
{
    while (!p->snap_pending && p->deliver_next <= p->commit) {
        PlvEntry *e = plv_log_get(&p->log, p->deliver_next);
        PlvEntry c;
        g_assert(e);
        plv_entry_copy(&c, e);
        g_array_append_val(rd->committed, c);
        p->deliver_next++;
    }
}

static void admit_self(PlvPaxos *p, uint64_t vid, PlvReady *rd)
{
    if (!p->admitted && p->member_inc[p->self] == p->inc) {
        /* Our incarnation was admitted in a view whose phase 1 did not
         * count us: promise nothing below it (docs/consensus.md). */
        p->admitted = true;
        if (vid > p->promised) {
            set_promise(p, vid, 0, rd);
        }
        stable_promise(p, rd);      /* from now on its memory is a voter's */
        event(rd, (PlvEvent){ .kind = PLV_EV_ADMITTED, .vid = vid });
        reset_election(p);
    }
}

/* Apply the effect of the committed entry at commit+1. */
static void commit_next(PlvPaxos *p, PlvReady *rd)
{
    PlvEntry *e = plv_log_get(&p->log, p->commit + 1);
    uint32_t id;
    uint64_t v;

    g_assert(e);
    p->commit = e->index;
    p->stats.commits++;
    if (plv_op_second_get(e, &id) && id < p->n) {
        p->secondary = id;
        p->handoff_from = PLV_NODE_NONE;
        reset_errs(p);      /* a new pair of executors */
    } else if (plv_op_config_get(e, &id, &v) && id < p->n) {
        if (v > p->member_inc[id]) {
            p->member_inc[id] = v;
        }
        admit_self(p, e->vid, rd);
    } else if (plv_op_syncvm_get(e, &v)) {
        PlvSnapMeta m;
        p->epoch = v;
        meta_now(p, &m, e->index, e->vid);
        record_hist(p, &m);
    }
    if (p->known_commit < p->commit) {
        p->known_commit = p->commit;
    }
}

/* Drop entries up to the last recorded syncvm point <= t that is already
 * committed and delivered. */
static void truncate_to(PlvPaxos *p, uint64_t t, PlvReady *rd)
{
    uint64_t lim = MIN(t, p->commit);
    const PlvSnapMeta *best = NULL;

    /* never drop what the driver has not been given yet */
    lim = MIN(lim, p->deliver_next - 1);
    for (uint32_t i = 0; i < p->hist_len; i++) {
        if (p->hist[i].index <= lim && p->hist[i].index > p->log.snap.index) {
            best = &p->hist[i];
        }
    }
    if (best) {
        log_truncate(p, best, rd);
    }
}

/* Entries up to meta->index were committed and truncated elsewhere: take
 * the replicated state from the meta and wait for the executor's state. */
static void adopt_snapshot(PlvPaxos *p, const PlvSnapMeta *m, uint32_t from, PlvReady *rd)
{
    if (m->index <= p->commit || m->n != p->n) {
        return;
    }
    log_truncate(p, m, rd);
    p->commit = m->index;
    if (p->known_commit < p->commit) {
        p->known_commit = p->commit;
    }
    p->secondary = m->secondary < p->n ? m->secondary : PLV_NODE_NONE;
    p->epoch = m->epoch;
    for (uint32_t i = 0; i < p->n; i++) {
        p->member_inc[i] = MAX(p->member_inc[i], m->inc[i]);
    }
    record_hist(p, m);
    p->snap_pending = true;
    p->pending_snap = *m;
    p->deliver_next = m->index + 1;
    p->stats.snapshots++;
    event(rd, (PlvEvent){ .kind = PLV_EV_NEEDS_SNAPSHOT, .peer = from, .snap = *m });
    admit_self(p, m->vid, rd);
}

/* Follower: entries stamped with the current leader's view are that
 * leader's values, so they are committed once its commit index covers
 * them. Anything else is fetched by catch-up. */
static void follower_commit(PlvPaxos *p, uint64_t vid, uint64_t lc, PlvReady *rd)
{
    while (p->commit < lc) {
        PlvEntry *e = plv_log_get(&p->log, p->commit + 1);
        if (!e || e->vid != vid) {
            break;
        }
        commit_next(p, rd);
    }
    deliver(p, rd);
}

/* ---- leader: proposals ---- */

static uint64_t leader_trunc(const PlvPaxos *p)
{
    uint32_t s = p->secondary;
    if (s == PLV_NODE_NONE || s == p->self) {
        return p->my_applied;
    }
    if (!p->peer[s].heard || p->peer[s].hdr.inc != p->member_inc[s]) {
        return 0;
    }
    return MIN(p->my_applied, p->peer[s].hdr.applied);
}

static void send_accept(PlvPaxos *p, PlvReady *rd, uint32_t to, uint64_t first)
{
    PlvMsg *m = out(p, rd, to, PLV_MSG_ACCEPT);
    m->vid = p->promised;
    m->index = p->commit;
    m->trunc = p->trunc;
    for (uint64_t i = first; i <= p->prop_last; i++) {
        PlvEntry *e = plv_log_get(&p->log, i);
        if (e) {
            plv_msg_add_entry(m, e);
        }
    }
}

static void check_quorum_ack(PlvPaxos *p, PlvReady *rd);

static void start_proposal(PlvPaxos *p, uint64_t first, uint64_t last, PlvReady *rd)
{
    p->prop_last = last;
    p->ack_mask = 1u << p->self;
    p->stats.proposals++;
    for (uint32_t i = 0; i < p->n; i++) {
        if (i != p->self) {
            send_accept(p, rd, i, first);
        }
    }
    check_quorum_ack(p, rd);
}

static void append_own(PlvPaxos *p, uint8_t op, GBytes *payload, PlvReady *rd)
{
    PlvEntry e = { .index = plv_log_last(&p->log) + 1, .vid = p->promised, .op = op,
                   .payload = payload };
    log_put(p, &e, rd);
}

/* Cut the next input batch from the head of the queue. */
static GBytes *take_batch(PlvPaxos *p)
{
    GByteArray *b = g_byte_array_new();
    Pending *pd;

    plv_batch_init(b);
    while ((pd = g_queue_peek_head(&p->queue)) && pd->op == PLV_OP_INPUT) {
        gsize len = g_bytes_get_size(pd->payload);
        if (b->len > 4 && b->len + 4 + len > p->cfg.max_batch_bytes) {
            break;
        }
        plv_batch_add(b, g_bytes_get_data(pd->payload, NULL), (uint32_t)len);
        p->queued_bytes -= len;
        g_queue_pop_head(&p->queue);
        g_bytes_unref(pd->payload);
        g_free(pd);
    }
    return g_byte_array_free_to_bytes(b);
}

/* Pop the first syncvm from the queue, ahead of queued inputs. */
static Pending *take_syncvm(PlvPaxos *p)
{
    for (GList *l = p->queue.head; l; l = l->next) {
        Pending *pd = l->data;
        if (pd->op == PLV_OP_SYNCVM) {
            g_queue_delete_link(&p->queue, l);
            return pd;
        }
    }
    return NULL;
}

/*
 * Propose the next entry if none is in flight. Control entries come first.
 * When the log is at capacity, inputs wait; a queued syncvm still goes
 * (ahead of them: it is what lets both executors apply and the log be
 * truncated), and so do control entries (they repair the secondary that
 * truncation waits for). Both are rare and small, so the log stays bounded
 * by the capacity plus what the driver proposes of them.
 */
static void try_propose(PlvPaxos *p, PlvReady *rd)
{
    Pending *pd;
    uint64_t idx, used;

    if (p->st != ST_LEADER || !p->established || p->prop_last) {
        return;
    }
    used = plv_log_last(&p->log) - p->log.snap.index;
    idx = plv_log_last(&p->log) + 1;
    if ((pd = g_queue_pop_head(&p->ctl))) {
        append_own(p, pd->op, pd->payload, rd);
    } else if (used >= p->cfg.log_capacity) {
        if (!(pd = take_syncvm(p))) {
            return;
        }
        append_own(p, pd->op, pd->payload, rd);
    } else if ((pd = g_queue_peek_head(&p->queue)) && pd->op == PLV_OP_INPUT) {
        GBytes *b = take_batch(p);
        append_own(p, PLV_OP_INPUT, b, rd);
        g_bytes_unref(b);
        pd = NULL;
    } else if ((pd = g_queue_pop_head(&p->queue))) {
        append_own(p, pd->op, pd->payload, rd);
    } else {
        return;
    }
    if (pd) {
        g_bytes_unref(pd->payload);
        g_free(pd);
    }
    start_proposal(p, idx, idx, rd);
}

static void send_heartbeat(PlvPaxos *p, PlvReady *rd, uint32_t to)
{
    PlvMsg *m = out(p, rd, to, PLV_MSG_HEARTBEAT);

    m->vid = p->promised;
    m->trunc = p->st == ST_LEADER ? p->trunc : 0;
}

static void broadcast_heartbeat(PlvPaxos *p, PlvReady *rd)
{
    for (uint32_t i = 0; i < p->n; i++) {
        if (i != p->self) {
            send_heartbeat(p, rd, i);
        }
    }
    p->hb_at = p->now + p->cfg.heartbeat_ticks;
}

static void check_quorum_ack(PlvPaxos *p, PlvReady *rd)
{
    if (!p->prop_last) {
        return;
    }
    /* A majority acked, or the range got committed under us (a catch-up
     * or snapshot answer that crossed our phase 1): either way it is done. */
    if (popcount(p->ack_mask) < (int)p->maj && p->commit < p->prop_last) {
        return;
    }
    while (p->commit < p->prop_last) {
        commit_next(p, rd);
    }
    p->prop_last = 0;
    p->established = true;
    deliver(p, rd);
    try_propose(p, rd);
    if (!p->prop_last) {
        /* nothing new to carry the commit index: tell everyone now, the
         * secondary executes as soon as it knows */
        broadcast_heartbeat(p, rd);
    }
}

static bool queued_op(GQueue *q, uint8_t op, GBytes *payload)
{
    for (GList *l = q->head; l; l = l->next) {
        Pending *pd = l->data;
        if (pd->op == op && g_bytes_equal(pd->payload, payload)) {
            return true;
        }
    }
    return false;
}

static void enqueue(GQueue *q, uint8_t op, GBytes *payload)
{
    Pending *pd;
    if (queued_op(q, op, payload)) {
        g_bytes_unref(payload);
        return;
    }
    pd = g_new0(Pending, 1);
    pd->op = op;
    pd->payload = payload;
    g_queue_push_tail(q, pd);
}

static bool viable_secondary(const PlvPaxos *p, uint32_t x)
{
    const Peer *pp = &p->peer[x];
    return x != p->self && x < p->n && pp->heard && recent(p, pp->last_heard) &&
           !peer_err_suspect(p, x) && (pp->hdr.flags & PLV_HDR_ADMITTED) &&
           pp->hdr.inc == p->member_inc[x];
}

static void start_election(PlvPaxos *p, PlvReady *rd);
static bool may_lead(const PlvPaxos *p, uint64_t need);

/* Leader duties once its view is established: admit restarted nodes,
 * keep a working secondary. */
static void leader_duties(PlvPaxos *p, PlvReady *rd)
{
    if (p->st != ST_LEADER || !p->established || p->prop_last) {
        return;
    }
    for (uint32_t i = 0; i < p->n; i++) {
        const Peer *pp = &p->peer[i];
        if (i == p->self || !pp->heard || !recent(p, pp->last_heard) ||
            pp->hdr.inc <= p->member_inc[i]) {
            continue;
        }
        if ((p->p1_mask & (1u << i)) && p->p1_inc[i] < pp->hdr.inc) {
            /* Our phase 1 counted this node's former incarnation: admit it
             * only from a view whose phase 1 did not (docs/consensus.md).
             * A promise of this very incarnation came from a node that kept
             * its memory (a durable restart): it binds, nothing to redo. */
            p->incumbent = true;
            start_election(p, rd);
            return;
        }
        enqueue(&p->ctl, PLV_OP_CONFIG, plv_op_config_payload(i, pp->hdr.inc));
    }
    if (p->secondary == PLV_NODE_NONE || !viable_secondary(p, p->secondary)) {
        uint32_t best = PLV_NODE_NONE;
        /* After a handoff the former leader holds the replicated VM: as
         * secondary it needs no copy (docs/consensus.md, "Handoff"). */
        bool handoff = p->handoff_from != PLV_NODE_NONE &&
                       viable_secondary(p, p->handoff_from);

        if (handoff) {
            best = p->handoff_from;
        }
        for (uint32_t i = 0; i < p->n && !handoff; i++) {
            if (viable_secondary(p, i) &&
                (best == PLV_NODE_NONE || p->peer[i].hdr.commit > p->peer[best].hdr.commit)) {
                best = i;
            }
        }
        if (best != PLV_NODE_NONE) {
            enqueue(&p->ctl, PLV_OP_SECOND, plv_op_second_payload(best));
        }
    }
    try_propose(p, rd);
}

/* ---- elections ---- */

/*
 * Pre-vote: before raising its view a would-be candidate asks whether a
 * majority would promise, and nobody changes state on the question. A node
 * cut off from the others (or from the majority) therefore never runs its
 * view ahead of the group's; when it is reconnected it simply follows the
 * leader it hears, instead of forcing a new election on a working group
 * (docs/consensus.md, "Pre-vote").
 */
static uint64_t next_vid(const PlvPaxos *p)
{
    return plv_vid_make(MAX(plv_vid_round(p->promised), plv_vid_round(p->max_seen)) + 1, p->self);
}

static void send_probes(PlvPaxos *p, PlvReady *rd)
{
    for (uint32_t i = 0; i < p->n; i++) {
        if (i != p->self && !(p->probe_mask & (1u << i))) {
            PlvMsg *m = out(p, rd, i, PLV_MSG_PREPARE);
            m->hdr.flags |= PLV_HDR_PROBE;
            m->vid = p->probe_vid;
        }
    }
}

static void start_probe(PlvPaxos *p, PlvReady *rd)
{
    p->probe_vid = next_vid(p);
    p->probe_mask = 1u << p->self;
    p->probe_until = p->now + p->cfg.election_ticks + jitter(p, p->cfg.election_ticks + 1);
    p->stats.probes++;
    reset_election(p);
    send_probes(p, rd);
}

static void on_probe_answer(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    if (!m->ok || p->st != ST_FOLLOWER || !p->probe_vid || m->vid != p->probe_vid ||
        !voter_ok(p, &m->hdr)) {
        return;
    }
    p->probe_mask |= 1u << m->hdr.from;
    if (popcount(p->probe_mask) >= (int)p->maj && may_lead(p, p->commit)) {
        start_election(p, rd);
    }
}

static void start_election(PlvPaxos *p, PlvReady *rd)
{
    uint64_t vid = next_vid(p);
    bool inc = p->incumbent;

    become_follower(p);
    p->incumbent = inc;
    p->st = ST_CANDIDATE;
    set_promise(p, vid, p->inc, rd);
    p->cand_at = p->now + p->cfg.election_ticks + jitter(p, p->cfg.election_ticks + 1);
    p->stats.elections++;
    for (uint32_t i = 0; i < p->n; i++) {
        if (i != p->self) {
            PlvMsg *m = out(p, rd, i, PLV_MSG_PREPARE);
            m->vid = p->promised;
        }
    }
}

typedef struct {
    const PlvEntry *e;
    bool committed;
} Choice;

static void offer(Choice *c, const PlvEntry *e, bool committed)
{
    if (!c->e || (committed && !c->committed) ||
        (!c->committed && !committed && e->vid > c->e->vid)) {
        c->e = e;
        c->committed = committed;
    }
}

/* Phase 1 done: rebuild the log past our commit from the promises (a value
 * known committed wins, else the highest viewstamp, holes become no-ops),
 * restamp it with our view and propose it as one range. */
static void become_leader(PlvPaxos *p, uint32_t mask, PlvReady *rd)
{
    uint64_t top, base;
    Choice *ch;
    GPtrArray *keep = g_ptr_array_new();

    base = p->commit;
    top = plv_log_last(&p->log);
    for (uint32_t i = 0; i < p->n; i++) {
        PlvMsg *pm = &p->peer[i].promise;
        if (i == p->self || !(mask & (1u << i)) || !pm->entries || !pm->entries->len) {
            continue;
        }
        top = MAX(top, g_array_index(pm->entries, PlvEntry, pm->entries->len - 1).index);
    }
    ch = g_new0(Choice, top - base + 1);
    for (uint64_t i = base + 1; i <= top; i++) {
        PlvEntry *e = plv_log_get(&p->log, i);
        if (e) {
            offer(&ch[i - base], e, false);
        }
    }
    for (uint32_t i = 0; i < p->n; i++) {
        PlvMsg *pm = &p->peer[i].promise;
        if (i == p->self || !(mask & (1u << i)) || !pm->entries) {
            continue;
        }
        for (guint k = 0; k < pm->entries->len; k++) {
            const PlvEntry *e = &g_array_index(pm->entries, PlvEntry, k);
            if (e->index > base && e->index <= top) {
                offer(&ch[e->index - base], e, e->index <= pm->hdr.commit);
            }
        }
    }
    /* Copy the chosen values first: they may point into our own log. */
    for (uint64_t i = base + 1; i <= top; i++) {
        PlvEntry *c = g_new0(PlvEntry, 1);
        if (ch[i - base].e) {
            plv_entry_copy(c, ch[i - base].e);
        } else {
            c->op = PLV_OP_NOOP;
        }
        c->index = i;
        if (!ch[i - base].committed) {
            c->vid = p->promised;
        }
        g_ptr_array_add(keep, c);
    }
    for (guint k = 0; k < keep->len; k++) {
        PlvEntry *c = g_ptr_array_index(keep, k);
        log_put(p, c, rd);
        plv_entry_clear(c);
        g_free(c);
    }
    /* Entries known committed need no new round. */
    while (p->commit < top && ch[p->commit + 1 - base].committed) {
        commit_next(p, rd);
    }
    g_free(ch);
    g_ptr_array_unref(keep);
    p->p1_other = p->promised_other;
    for (uint32_t i = 0; i < p->n; i++) {
        p->p1_inc[i] = i == p->self ? p->inc : p->peer[i].promise.hdr.inc;
        if (i != p->self && (mask & (1u << i))) {
            p->p1_other = MAX(p->p1_other, p->peer[i].promise.other_vid);
        }
    }
    clear_promises(p);

    p->st = ST_LEADER;
    p->p1_mask = mask;
    p->established = false;
    p->incumbent = false;
    p->leader_vid = p->promised;
    p->leader_heard = p->now;
    /* The restamped range also re-proposes entries known committed but not
     * contiguous with our commit; harmless, their value is the chosen one. */
    for (uint64_t i = p->commit + 1; i <= plv_log_last(&p->log); i++) {
        plv_log_get(&p->log, i)->vid = p->promised;
        stable_entry(p, plv_log_get(&p->log, i), rd);
    }
    if (p->commit == plv_log_last(&p->log)) {
        append_own(p, PLV_OP_NOOP, NULL, rd);
    }
    deliver(p, rd);
    start_proposal(p, p->commit + 1, plv_log_last(&p->log), rd);
}

/* May this node run (or finish) an election now? */
static bool may_lead(const PlvPaxos *p, uint64_t need)
{
    if (!p->admitted) {
        return false;
    }
    if (p->incumbent || p->kept_vid) {
        return true;
    }
    /* Preference: a non-secondary never takes over while the secondary is
     * alive and its log reaches what we knew committed (it can lead: its
     * own phase 1 fills in the rest); that is the secondary's job. */
    return p->secondary == p->self || !secondary_fit(p, need);
}

/* What promisers report as committed (a snapshot, entries up to their
 * commit index) is final: learn it before deciding anything, so that the
 * roles (second entries) and the commit index we judge by are current. */
static void learn_committed(PlvPaxos *p, uint32_t mask, PlvReady *rd)
{
    bool more = true;

    for (uint32_t i = 0; i < p->n; i++) {
        PlvMsg *pm = &p->peer[i].promise;
        if ((mask & (1u << i)) && i != p->self && pm->has_snap && pm->snap.index > p->commit) {
            adopt_snapshot(p, &pm->snap, i, rd);
        }
    }
    while (more) {
        more = false;
        for (uint32_t i = 0; i < p->n && !more; i++) {
            PlvMsg *pm = &p->peer[i].promise;
            if (i == p->self || !(mask & (1u << i)) || !pm->entries ||
                pm->hdr.commit <= p->commit) {
                continue;
            }
            for (guint k = 0; k < pm->entries->len; k++) {
                const PlvEntry *e = &g_array_index(pm->entries, PlvEntry, k);
                if (e->index == p->commit + 1) {
                    log_put(p, e, rd);
                    commit_next(p, rd);
                    more = true;
                    break;
                }
            }
        }
    }
    deliver(p, rd);
}

/* Does any promise (or our log) carry a config entry admitting a newer
 * incarnation of `node` than `inc`? */
static bool newer_incarnation_seen(const PlvPaxos *p, uint32_t node, uint64_t inc)
{
    uint32_t id;
    uint64_t v;

    if (p->member_inc[node] > inc) {
        return true;
    }
    for (uint64_t i = p->commit + 1; i <= plv_log_last(&p->log); i++) {
        const PlvEntry *e = plv_log_get(&p->log, i);
        if (e && plv_op_config_get(e, &id, &v) && id == node && v > inc) {
            return true;
        }
    }
    for (uint32_t k = 0; k < p->n; k++) {
        const PlvMsg *pm = &p->peer[k].promise;
        for (guint j = 0; pm->type && pm->entries && j < pm->entries->len; j++) {
            const PlvEntry *e = &g_array_index(pm->entries, PlvEntry, j);
            if (plv_op_config_get(e, &id, &v) && id == node && v > inc) {
                return true;
            }
        }
    }
    return false;
}

static uint32_t promise_mask(const PlvPaxos *p)
{
    uint32_t mask = 1u << p->self;
    for (uint32_t i = 0; i < p->n; i++) {
        if (i != p->self && p->peer[i].promise.type == PLV_MSG_PROMISE) {
            mask |= 1u << i;
        }
    }
    return mask;
}

static void check_promises(PlvPaxos *p, PlvReady *rd)
{
    uint32_t mask = promise_mask(p);
    uint64_t need;

    if (popcount(mask) < (int)p->maj) {
        return;
    }
    /* the secondary's fitness is judged against what we knew before this
     * phase 1 taught us more */
    need = p->commit;
    learn_committed(p, mask, rd);
    /* A promise from an incarnation that the log (committed or merely
     * reported) has since replaced may hide what its successor accepted:
     * it does not count (docs/consensus.md, restart rule). */
    for (uint32_t i = 0; i < p->n; i++) {
        PlvMsg *pm = &p->peer[i].promise;
        if (i != p->self && pm->type && newer_incarnation_seen(p, i, pm->hdr.inc)) {
            plv_msg_clear(pm);
            p->stats.msgs_stale++;
        }
    }
    mask = promise_mask(p);
    if (popcount(mask) < (int)p->maj) {
        return;
    }
    if (!may_lead(p, need)) {
        become_follower(p);
        return;
    }
    become_leader(p, mask, rd);
}

/* ---- message handlers ---- */

/* Would the entries from `first` on fit in one frame, with room to spare? */
static bool promise_fits(const PlvPaxos *p, uint64_t first)
{
    uint64_t bytes = 0, count = 0;

    for (uint64_t i = first; i <= plv_log_last(&p->log); i++) {
        const PlvEntry *e = plv_log_get(&p->log, i);
        if (e) {
            bytes += 32 + plv_entry_payload_len(e);
            count++;
        }
    }
    return bytes <= PLV_WIRE_MAX_PAYLOAD / 2 && count <= PLV_WIRE_MAX_ENTRIES;
}

static void on_prepare(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    uint32_t c = m->hdr.from;
    bool refuse;
    PlvMsg *r;

    if (!votes(p) || plv_vid_leader(m->vid) != c) {
        return;
    }
    refuse = m->vid <= p->promised;
    /* the exemption is for the leader we still follow re-preparing, not
     * for a former leader whose view we have moved past */
    if (!refuse && !(p->leader_vid && p->leader_vid == p->promised &&
                     plv_vid_leader(p->leader_vid) == c)) {
        /* Stickiness: while the established leader is heard from, its view
         * stands (this keeps a partitioned node's retries from deposing a
         * working leader). The leader itself re-preparing is exempt. */
        if ((p->st == ST_LEADER && p->xfer_to != c) ||
            (p->st != ST_LEADER && p->leader_vid == p->promised && p->leader_vid &&
             recent(p, p->leader_heard) &&
             !peer_err_suspect(p, plv_vid_leader(p->leader_vid)))) {
            refuse = true;
        }
        /* Preference: refuse a non-secondary while the secondary is fit,
         * unless the candidate keeps a VM (below). */
        if (c != p->secondary && !m->kept_vid && secondary_fit(p, m->hdr.commit)) {
            refuse = true;
        }
    }
    if (p->kept_vid > m->kept_vid) {
        /* We keep a VM (the lone leader) and the candidate keeps none, or
         * an older one: we lead, or the copy is lost for good (a candidate
         * without one could not pull it). Refusing is always safe, and
         * ends when the executor uses or drops the copy. */
        refuse = true;
    }
    if (!p->admitted && p->now < p->quiet_until) {
        /* Restored: hear the group for a suspicion period first. A leader
         * at work is heard by then and its view stands (stickiness);
         * without this a candidate could win with the vote of a node that
         * had not heard that leader yet. */
        refuse = true;
    }
    if (!refuse && !promise_fits(p, MAX(m->hdr.commit, p->log.snap.index) + 1)) {
        /* the candidate lags too far for one message: it catches up
         * first (refusing is always safe) */
        refuse = true;
    }
    r = reply(p, rd, m, PLV_MSG_PROMISE);
    r->vid = m->vid;
    if (m->hdr.flags & PLV_HDR_PROBE) {
        /* a pre-vote: say what we would answer, change nothing */
        r->hdr.flags |= PLV_HDR_PROBE;
        r->ok = !refuse;
        return;
    }
    if (refuse) {
        return;
    }
    if (p->st != ST_FOLLOWER) {
        become_follower(p);
    }
    set_promise(p, m->vid, m->hdr.inc, rd);
    reset_election(p);
    r->hdr.vid = p->promised;
    r->other_vid = p->promised_other;
    r->ok = true;
    if (p->log.snap.index > m->hdr.commit && p->log.snap.index) {
        r->has_snap = true;
        r->snap = p->log.snap;
    }
    for (uint64_t i = MAX(m->hdr.commit, p->log.snap.index) + 1; i <= plv_log_last(&p->log); i++) {
        PlvEntry *e = plv_log_get(&p->log, i);
        if (e) {
            plv_msg_add_entry(r, e);
        }
    }
}

static void on_promise(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    uint32_t f = m->hdr.from;

    if (!m->ok) {
        p->max_seen = MAX(p->max_seen, m->hdr.vid);
        return;
    }
    if (m->hdr.flags & PLV_HDR_PROBE) {
        on_probe_answer(p, m, rd);
        return;
    }
    if (p->st != ST_CANDIDATE || m->vid != p->promised || !voter_ok(p, &m->hdr)) {
        return;
    }
    plv_msg_clear(&p->peer[f].promise);
    plv_msg_copy(&p->peer[f].promise, m);
    check_promises(p, rd);
}

static void on_accept(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    uint64_t v = m->vid;
    uint64_t top = 0;
    PlvMsg *r;

    if (plv_vid_leader(v) != m->hdr.from || !(m->hdr.flags & PLV_HDR_LEADER)) {
        p->stats.msgs_bad++;
        return;
    }
    if (!votes(p)) {
        /* A learner: only the commit index matters, entries come by catch-up. */
        return;
    }
    if (v < p->promised || (v == p->promised && p->promised_inc &&
                            p->promised_inc != m->hdr.inc)) {
        r = reply(p, rd, m, PLV_MSG_ACCEPTED);
        r->vid = v;
        return;
    }
    adopt_view(p, v, m->hdr.inc, rd);
    if (p->st != ST_FOLLOWER) {
        return;     /* we lead v ourselves? impossible: vid names its leader */
    }
    for (guint k = 0; m->entries && k < m->entries->len; k++) {
        const PlvEntry *e = &g_array_index(m->entries, PlvEntry, k);
        if (e->index <= p->commit || e->index <= p->log.snap.index) {
            top = MAX(top, e->index);
            continue;
        }
        if (e->index > p->log.snap.index + 4ull * p->cfg.log_capacity) {
            return;     /* no room: do not vote, catch up first */
        }
        log_put(p, e, rd);
        top = MAX(top, e->index);
    }
    r = reply(p, rd, m, PLV_MSG_ACCEPTED);
    r->vid = v;
    r->ok = true;
    r->index = top;
    follower_commit(p, v, m->index, rd);
    truncate_to(p, m->trunc, rd);
}

static void on_accepted(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    if (!m->ok) {
        if (m->hdr.vid > p->promised && p->st == ST_LEADER && m->vid == p->promised) {
            /* someone promised a higher view: ours is over */
            p->max_seen = MAX(p->max_seen, m->hdr.vid);
            become_follower(p);
        }
        return;
    }
    if (p->st != ST_LEADER || m->vid != p->promised || !voter_ok(p, &m->hdr)) {
        return;
    }
    if (p->prop_last && m->index >= p->prop_last) {
        p->ack_mask |= 1u << m->hdr.from;
        check_quorum_ack(p, rd);
    }
}

static void on_heartbeat(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    if (!(m->hdr.flags & PLV_HDR_LEADER) || plv_vid_leader(m->vid) != m->hdr.from) {
        return;
    }
    if (m->vid > p->max_seen) {
        p->max_seen = m->vid;
    }
    if (!votes(p)) {
        if (m->vid >= p->leader_vid) {
            p->leader_vid = m->vid;
            p->leader_heard = p->now;
        }
        return;
    }
    adopt_view(p, m->vid, m->hdr.inc, rd);
    if (p->st == ST_FOLLOWER && m->vid == p->promised && m->hdr.inc == p->promised_inc) {
        follower_commit(p, m->vid, m->hdr.commit, rd);
        truncate_to(p, m->trunc, rd);
    }
}

static void on_catchup_req(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    uint64_t from = m->index ? m->index : 1;
    uint32_t max = MIN(m->count ? m->count : p->cfg.catchup_max, p->cfg.catchup_max);
    PlvMsg *r;

    if (from > p->commit) {
        return;
    }
    r = reply(p, rd, m, PLV_MSG_CATCHUP_RESP);
    if (from <= p->log.snap.index) {
        r->has_snap = true;
        r->snap = p->log.snap;
        from = p->log.snap.index + 1;
    }
    for (uint64_t i = from; i <= p->commit && i < from + max; i++) {
        PlvEntry *e = plv_log_get(&p->log, i);
        if (!e) {
            break;
        }
        plv_msg_add_entry(r, e);
    }
}

static void on_catchup_resp(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    if (m->has_snap && m->snap.index > p->commit) {
        adopt_snapshot(p, &m->snap, m->hdr.from, rd);
    }
    for (guint k = 0; m->entries && k < m->entries->len; k++) {
        const PlvEntry *e = &g_array_index(m->entries, PlvEntry, k);
        if (e->index != p->commit + 1 || e->index > m->hdr.commit) {
            continue;
        }
        /* a committed value replaces whatever we accepted there */
        log_put(p, e, rd);
        commit_next(p, rd);
    }
    deliver(p, rd);
    p->catchup_at = p->now;     /* ask for more right away if behind */
    if (p->st == ST_LEADER) {
        check_quorum_ack(p, rd);
    }
}

static bool msg_valid(const PlvPaxos *p, const PlvMsg *m)
{
    if (m->type <= 0 || m->type >= PLV_MSG__MAX || m->hdr.to != p->self ||
        m->hdr.from >= p->n || m->hdr.from == p->self || m->hdr.inc == 0) {
        return false;
    }
    if (m->has_snap && (m->snap.n != p->n || m->snap.index == 0)) {
        return false;
    }
    for (guint k = 0; m->entries && k < m->entries->len; k++) {
        const PlvEntry *e = &g_array_index(m->entries, PlvEntry, k);
        uint32_t id;
        uint64_t inc;
        if (!plv_entry_valid(e, NULL) || (k && e->index <= g_array_index(m->entries, PlvEntry, k - 1).index) ||
            (plv_op_second_get(e, &id) && id >= p->n) ||
            (plv_op_config_get(e, &id, &inc) && id >= p->n)) {
            return false;
        }
    }
    return true;
}

/* ---- forwarding ---- */

/* A leader takes inputs unless it is handing over. */
static bool takes_inputs(const PlvPaxos *p)
{
    return p->st == ST_LEADER && p->xfer_to == PLV_NODE_NONE;
}

/* The established leader we follow, or NONE. */
static uint32_t known_leader(const PlvPaxos *p)
{
    uint32_t l = plv_vid_leader(p->leader_vid);

    if (p->st != ST_FOLLOWER || !p->leader_vid || p->leader_vid != p->promised ||
        l == p->self || l >= p->n || !recent(p, p->leader_heard)) {
        return PLV_NODE_NONE;
    }
    return l;
}

/* Hand what is held to whoever can propose it: ourselves as a leader not
 * handing over, else the leader we follow; drop it past its deadline. */
static void fwd_flush(PlvPaxos *p, PlvReady *rd)
{
    uint32_t l;
    Pending *pd;

    if (g_queue_is_empty(&p->fwd)) {
        return;
    }
    if (takes_inputs(p) && p->established) {
        /* as submitted inputs, not enqueue(): that one folds duplicates,
         * which are control entries' business, not packets' */
        while ((pd = g_queue_pop_head(&p->fwd))) {
            size_t len = g_bytes_get_size(pd->payload);

            p->fwd_bytes -= len;
            p->queued_bytes += len;
            g_queue_push_tail(&p->queue, pd);
        }
        try_propose(p, rd);
        return;
    }
    l = known_leader(p);
    if (l == PLV_NODE_NONE) {
        /* a leader handing over keeps them until the handoff ends */
        if (p->st != ST_LEADER && p->now >= p->fwd_until) {
            p->stats.fwd_dropped += g_queue_get_length(&p->fwd);
            drop_queue(&p->fwd);
            p->fwd_bytes = 0;
        }
        return;
    }
    while (!g_queue_is_empty(&p->fwd)) {
        PlvMsg *m = out(p, rd, l, PLV_MSG_FORWARD);
        size_t bytes = 0;
        uint64_t k = 0;

        while ((pd = g_queue_peek_head(&p->fwd)) &&
               (k == 0 || (bytes + g_bytes_get_size(pd->payload) + 64 <= PLV_WIRE_MAX_PAYLOAD / 2 &&
                           k < PLV_WIRE_MAX_ENTRIES))) {
            GByteArray *b = g_byte_array_new();
            PlvEntry e = { .index = ++k, .op = PLV_OP_INPUT };
            size_t n;
            const void *pkt = g_bytes_get_data(pd->payload, &n);

            plv_batch_init(b);
            plv_batch_add(b, pkt, n);
            e.payload = g_byte_array_free_to_bytes(b);
            plv_msg_add_entry(m, &e);
            g_bytes_unref(e.payload);
            bytes += n;
            p->fwd_bytes -= n;
            p->stats.fwd_sent++;
            g_queue_pop_head(&p->fwd);
            g_bytes_unref(pd->payload);
            g_free(pd);
        }
    }
}

/* Leader: inputs a follower forwarded are submitted as ours. A node that
 * does not lead drops them (no forwarding chains). */
static void on_forward(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    for (guint k = 0; m->entries && k < m->entries->len; k++) {
        const PlvEntry *e = &g_array_index(m->entries, PlvEntry, k);
        size_t n;
        const uint8_t *b = plv_entry_payload(e, &n);
        PlvBatchIter it;
        const uint8_t *pkt;
        uint32_t len;

        if (e->op != PLV_OP_INPUT) {
            continue;
        }
        plv_batch_iter_init(&it, b, n);
        while (plv_batch_next(&it, &pkt, &len)) {
            if (plv_paxos_submit_input(p, pkt, len, rd) == 0) {
                p->stats.fwd_taken++;
            } else {
                p->stats.fwd_dropped++;
            }
        }
    }
}

int plv_paxos_forward_input(PlvPaxos *p, const void *pkt, size_t len, PlvReady *rd)
{
    Pending *pd;

    if (len == 0 || len + 8 > p->cfg.max_batch_bytes) {
        return -EINVAL;
    }
    if (takes_inputs(p)) {
        return plv_paxos_submit_input(p, pkt, len, rd);
    }
    pd = g_new0(Pending, 1);
    pd->op = PLV_OP_INPUT;
    pd->payload = g_bytes_new(pkt, len);
    if (!hold_input(p, pd)) {
        return -ENOBUFS;
    }
    fwd_flush(p, rd);
    report(p, rd);
    return 0;
}

/* ---- handoff (leadership transfer) ---- */

/*
 * Leader: once everything proposed is committed and the target holds the
 * whole log, every message to the target carries PLV_HDR_HANDOFF (sent
 * at once, then with each heartbeat until the target's PREPARE comes).
 * Past the deadline the handoff is given up and the leader goes on.
 */
static void handoff_check(PlvPaxos *p, PlvReady *rd)
{
    const Peer *t;
    bool ready;

    if (p->st != ST_LEADER || p->xfer_to == PLV_NODE_NONE) {
        return;
    }
    if (p->now >= p->xfer_until) {
        p->xfer_to = PLV_NODE_NONE;
        p->xfer_ready = false;
        return;
    }
    t = &p->peer[p->xfer_to];
    ready = p->established && !p->prop_last && g_queue_is_empty(&p->ctl) &&
            g_queue_is_empty(&p->queue) && t->heard && recent(p, t->last_heard) &&
            t->hdr.last >= plv_log_last(&p->log);
    if (ready && !p->xfer_ready) {
        p->xfer_ready = true;
        send_heartbeat(p, rd, p->xfer_to);
    }
    p->xfer_ready = ready;
}

/*
 * Secondary: the leader we follow hands over and we hold everything it
 * committed: stand for election at once. The former leader promises
 * (it asked for this), which with our own vote is a majority; phase 1
 * then runs as after any election, so safety does not rest on the hint.
 */
static void handoff_take(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    uint32_t from = m->hdr.from;

    if (!(m->hdr.flags & PLV_HDR_HANDOFF) || p->st != ST_FOLLOWER || !p->admitted ||
        p->secondary != p->self || !p->leader_vid || plv_vid_leader(p->leader_vid) != from ||
        m->hdr.vid != p->leader_vid || p->commit < m->hdr.commit ||
        plv_log_last(&p->log) < m->hdr.last || p->snap_pending) {
        return;
    }
    start_election(p, rd);
    p->handoff_from = from;
    p->stats.handoffs++;
}

int plv_paxos_transfer_leadership(PlvPaxos *p, uint32_t to, PlvReady *rd)
{
    if (p->st != ST_LEADER || !p->established) {
        return -EPERM;
    }
    if (to >= p->n || to == p->self || to != p->secondary) {
        return -EINVAL;
    }
    if (!viable_secondary(p, to)) {
        return -EAGAIN;
    }
    p->xfer_to = to;
    p->xfer_ready = false;
    p->xfer_until = p->now + p->cfg.suspect_ticks + 2 * (uint64_t)p->cfg.election_ticks;
    handoff_check(p, rd);
    report(p, rd);
    return 0;
}

void plv_paxos_set_kept(PlvPaxos *p, uint64_t vid)
{
    p->kept_vid = vid;
}

uint64_t plv_paxos_kept(const PlvPaxos *p)
{
    return p->kept_vid;
}

bool plv_paxos_transferring(const PlvPaxos *p)
{
    return p->xfer_to != PLV_NODE_NONE;
}

void plv_paxos_step(PlvPaxos *p, const PlvMsg *m, PlvReady *rd)
{
    Peer *pp;

    p->stats.msgs_in++;
    if (!msg_valid(p, m)) {
        p->stats.msgs_bad++;
        return;
    }
    pp = &p->peer[m->hdr.from];
    /* Messages of a former incarnation, or answers meant for ours. */
    if (m->hdr.inc < p->member_inc[m->hdr.from] || (pp->heard && m->hdr.inc < pp->hdr.inc) ||
        (m->hdr.to_inc && m->hdr.to_inc != p->inc)) {
        p->stats.msgs_stale++;
        return;
    }
    pp->heard = true;
    pp->last_heard = p->now;
    pp->hdr = m->hdr;
    if (m->hdr.commit > p->known_commit) {
        p->known_commit = m->hdr.commit;
        p->known_commit_from = m->hdr.from;
    }
    if (p->st == ST_LEADER && p->established && m->hdr.vid > p->promised &&
        plv_vid_leader(m->hdr.vid) == m->hdr.from && !(m->hdr.flags & PLV_HDR_LEADER) &&
        voter_ok(p, &m->hdr) && m->type != PLV_MSG_PREPARE) {
        /* A voter promised its own candidacy past our view (it ran
         * elections while cut off from us) and will refuse our accepts:
         * move everyone to a newer view of ours at once rather than wait
         * for a failure to expose it. A view led by someone else is not
         * fought: its leader's messages or refusals make us step down. */
        p->max_seen = MAX(p->max_seen, m->hdr.vid);
        p->incumbent = true;
        start_election(p, rd);
    }
    switch (m->type) {
    case PLV_MSG_PREPARE:      on_prepare(p, m, rd); break;
    case PLV_MSG_PROMISE:      on_promise(p, m, rd); break;
    case PLV_MSG_ACCEPT:       on_accept(p, m, rd); break;
    case PLV_MSG_ACCEPTED:     on_accepted(p, m, rd); break;
    case PLV_MSG_HEARTBEAT:    on_heartbeat(p, m, rd); break;
    case PLV_MSG_CATCHUP_REQ:  on_catchup_req(p, m, rd); break;
    case PLV_MSG_CATCHUP_RESP: on_catchup_resp(p, m, rd); break;
    case PLV_MSG_FORWARD:      on_forward(p, m, rd); break;
    default: break;
    }
    handoff_take(p, m, rd);
    leader_duties(p, rd);
    handoff_check(p, rd);
    fwd_flush(p, rd);
    report(p, rd);
}

/* ---- time ---- */

static void maybe_catchup(PlvPaxos *p, PlvReady *rd)
{
    uint32_t to = PLV_NODE_NONE;
    PlvMsg *m;

    if (p->st == ST_LEADER || p->known_commit <= p->commit || p->now < p->catchup_at) {
        return;
    }
    /* ask the leader when it is heard from, else whoever knows the most */
    if (p->leader_vid && plv_vid_leader(p->leader_vid) != p->self &&
        recent(p, p->leader_heard) && p->peer[plv_vid_leader(p->leader_vid)].hdr.commit > p->commit) {
        to = plv_vid_leader(p->leader_vid);
    } else {
        for (uint32_t i = 0; i < p->n; i++) {
            if (i != p->self && p->peer[i].heard && recent(p, p->peer[i].last_heard) &&
                p->peer[i].hdr.commit > p->commit &&
                (to == PLV_NODE_NONE || p->peer[i].hdr.commit > p->peer[to].hdr.commit)) {
                to = i;
            }
        }
    }
    if (to == PLV_NODE_NONE) {
        return;
    }
    m = out(p, rd, to, PLV_MSG_CATCHUP_REQ);
    m->index = p->commit + 1;
    m->count = p->cfg.catchup_max;
    p->catchup_at = p->now + p->cfg.heartbeat_ticks;
}

void plv_paxos_tick(PlvPaxos *p, PlvReady *rd)
{
    p->now++;
    if (p->st == ST_LEADER) {
        uint32_t live = 1u << p->self;
        for (uint32_t i = 0; i < p->n; i++) {
            if (i != p->self && p->peer[i].heard && recent(p, p->peer[i].last_heard) &&
                voter_ok(p, &p->peer[i].hdr)) {
                live |= 1u << i;
            }
        }
        if (popcount(live) < (int)p->maj) {
            /* cannot reach a majority: stop acting as leader */
            become_follower(p);
        } else {
            p->trunc = MAX(p->trunc, leader_trunc(p));
            truncate_to(p, p->trunc, rd);
        }
    }
    if (p->now >= p->hb_at) {
        if (p->st == ST_CANDIDATE) {
            /* Ask again whoever has not promised yet: an acceptor that
             * refused because it still heard the old leader promises as
             * soon as it suspects it too, instead of an election timeout
             * later. Re-sending a PREPARE is always safe. */
            for (uint32_t i = 0; i < p->n; i++) {
                if (i != p->self && !p->peer[i].promise.type) {
                    out(p, rd, i, PLV_MSG_PREPARE)->vid = p->promised;
                }
            }
        }
        if (p->st == ST_FOLLOWER && p->probe_vid) {
            send_probes(p, rd);
        }
        broadcast_heartbeat(p, rd);
        if (p->st == ST_LEADER && p->prop_last) {
            /* retransmit the proposal in flight to those who did not ack */
            uint64_t first = p->commit + 1;
            for (uint32_t i = 0; i < p->n; i++) {
                if (i != p->self && !(p->ack_mask & (1u << i))) {
                    send_accept(p, rd, i, first);
                }
            }
        }
    }
    if (p->st == ST_CANDIDATE && p->now >= p->cand_at) {
        /* an incumbent gets one attempt: failing it means someone else
         * holds a majority, so it goes back to following */
        bool again = !p->incumbent && may_lead(p, p->commit);

        become_follower(p);
        if (again) {
            start_probe(p, rd);
        }
    } else if (p->st == ST_FOLLOWER && p->admitted) {
        uint32_t l = plv_vid_leader(p->leader_vid);
        bool leader_bad = p->leader_vid && l != p->self && peer_err_suspect(p, l);
        if (p->probe_vid && p->now >= p->probe_until) {
            p->probe_vid = 0;
        }
        if ((p->now >= p->election_at || (leader_bad && p->secondary == p->self && !p->probe_vid)) &&
            may_lead(p, p->commit)) {
            start_probe(p, rd);
        } else if (p->now >= p->election_at) {
            reset_election(p);
        }
    }
    maybe_catchup(p, rd);
    leader_duties(p, rd);
    handoff_check(p, rd);
    fwd_flush(p, rd);
    report(p, rd);
}

/* ---- driver calls ---- */

int plv_paxos_submit_input(PlvPaxos *p, const void *pkt, size_t len, PlvReady *rd)
{
    Pending *pd;

    if (p->st != ST_LEADER) {
        return -EPERM;
    }
    if (p->xfer_to != PLV_NODE_NONE) {
        return -EBUSY;      /* handing over: the new leader takes inputs */
    }
    if (len == 0 || len + 8 > p->cfg.max_batch_bytes) {
        return -EINVAL;
    }
    if (p->queued_bytes + len > p->cfg.max_queue_bytes) {
        return -ENOBUFS;
    }
    pd = g_new0(Pending, 1);
    pd->op = PLV_OP_INPUT;
    pd->payload = g_bytes_new(pkt, len);
    g_queue_push_tail(&p->queue, pd);
    p->queued_bytes += len;
    try_propose(p, rd);
    report(p, rd);
    return 0;
}

/* Leader only: queue an entry of @op behind the packets queued so far. */
static int propose_queued(PlvPaxos *p, uint8_t op, GBytes *payload, PlvReady *rd)
{
    Pending *pd;

    if (p->st != ST_LEADER || p->xfer_to != PLV_NODE_NONE) {
        if (payload) {
            g_bytes_unref(payload);
        }
        return p->st != ST_LEADER ? -EPERM : -EBUSY;
    }
    pd = g_new0(Pending, 1);
    pd->op = op;
    pd->payload = payload;
    g_queue_push_tail(&p->queue, pd);
    try_propose(p, rd);
    report(p, rd);
    return 0;
}

int plv_paxos_propose_syncvm(PlvPaxos *p, uint64_t epoch, PlvReady *rd)
{
    return propose_queued(p, PLV_OP_SYNCVM, plv_op_syncvm_payload(epoch), rd);
}

int plv_paxos_propose_end(PlvPaxos *p, PlvReady *rd)
{
    return propose_queued(p, PLV_OP_END, NULL, rd);
}

void plv_paxos_applied_syncvm(PlvPaxos *p, uint64_t index)
{
    if (index > p->my_applied && index <= p->commit) {
        p->my_applied = index;
    }
}

int plv_paxos_install_snapshot(PlvPaxos *p, uint64_t index, PlvReady *rd)
{
    if (!p->snap_pending || index != p->pending_snap.index) {
        return -EINVAL;
    }
    p->snap_pending = false;
    p->deliver_next = index + 1;
    deliver(p, rd);
    report(p, rd);
    return 0;
}

void plv_paxos_add_err(PlvPaxos *p, uint32_t peer)
{
    if (peer < p->n && peer != p->self) {
        p->peer[peer].n_err++;
    }
}

void plv_paxos_reset_err(PlvPaxos *p, uint32_t peer)
{
    if (peer < p->n) {
        p->peer[peer].n_err = 0;
    }
}

uint32_t plv_paxos_n_err(const PlvPaxos *p, uint32_t peer)
{
    return peer < p->n ? p->peer[peer].n_err : 0;
}

/* ---- lifecycle and queries ---- */

PlvPaxos *plv_paxos_new(const PlvPaxosConfig *cfg, GError **err)
{
    PlvPaxos *p;

    if (cfg->n == 0 || cfg->n > PLV_MAX_NODES || cfg->self >= cfg->n ||
        cfg->incarnation == 0 || cfg->heartbeat_ticks == 0 ||
        cfg->suspect_ticks <= cfg->heartbeat_ticks || cfg->election_ticks == 0 ||
        cfg->max_batch_bytes < 16 || cfg->log_capacity < 2) {
        g_set_error_literal(err, g_quark_from_static_string("plv-paxos-error"), 1,
                            "invalid consensus config");
        return NULL;
    }
    p = g_new0(PlvPaxos, 1);
    p->cfg = *cfg;
    if (!p->cfg.max_queue_bytes) {
        p->cfg.max_queue_bytes = 16 << 20;
    }
    if (!p->cfg.catchup_max) {
        p->cfg.catchup_max = 64;
    }
    p->self = cfg->self;
    p->n = cfg->n;
    p->maj = cfg->n / 2 + 1;
    p->inc = cfg->incarnation;
    p->rng = cfg->seed ^ ((uint64_t)cfg->self << 32) ^ cfg->incarnation;
    plv_log_init(&p->log, p->n);
    for (uint32_t i = 0; i < p->n; i++) {
        p->member_inc[i] = PLV_INC_INITIAL;
    }
    /* A larger incarnation means we restarted and forgot our promises:
     * learn only, until the log admits this incarnation. */
    p->admitted = cfg->incarnation == PLV_INC_INITIAL;
    p->secondary = PLV_NODE_NONE;
    p->xfer_to = PLV_NODE_NONE;
    p->handoff_from = PLV_NODE_NONE;
    p->deliver_next = 1;
    p->st = ST_FOLLOWER;
    p->rep_role = role_now(p);
    g_queue_init(&p->ctl);
    g_queue_init(&p->queue);
    g_queue_init(&p->fwd);
    reset_election(p);
    return p;
}

/*
 * The node is the acceptor it was: same promise, same accepted entries,
 * the same truncation point, which it takes as a snapshot to install (its
 * executor lost the state with the process). Its commit index starts at
 * that point; what it accepted past it counts as accepted only, and it
 * learns what was committed as any restarted node does.
 */
int plv_paxos_restore(PlvPaxos *p, const PlvDurable *img, PlvReady *rd)
{
    if (p->inc == PLV_INC_INITIAL || p->now || p->voter || !img->voter ||
        plv_log_last(&p->log) || (img->has_snap && img->snap.n != p->n)) {
        return -EINVAL;
    }
    p->voter = true;
    p->quiet_until = p->now + p->cfg.suspect_ticks;
    p->promised = img->promised;
    p->promised_inc = img->promised_inc;
    p->promised_other = img->promised_other;
    p->max_seen = img->promised;
    if (img->has_snap && img->snap.index) {
        adopt_snapshot(p, &img->snap, PLV_NODE_NONE, rd);
    }
    for (guint k = 0; k < img->ents->len; k++) {
        const PlvEntry *e = &g_array_index(img->ents, PlvEntry, k);
        if (e->index > p->log.snap.index) {
            plv_log_put(&p->log, e);
        }
    }
    /* What the image holds is on disk already. */
    plv_durable_clear(&rd->stable);
    report(p, rd);
    return 0;
}

void plv_paxos_free(PlvPaxos *p)
{
    if (!p) {
        return;
    }
    clear_promises(p);
    drop_queue(&p->ctl);
    drop_queue(&p->queue);
    drop_queue(&p->fwd);
    plv_log_destroy(&p->log);
    g_free(p);
}

PlvRole plv_paxos_role(const PlvPaxos *p) { return role_now(p); }
uint64_t plv_paxos_vid(const PlvPaxos *p) { return p->promised; }
uint32_t plv_paxos_secondary(const PlvPaxos *p) { return p->secondary; }
uint64_t plv_paxos_commit_index(const PlvPaxos *p) { return p->commit; }
uint64_t plv_paxos_last_index(const PlvPaxos *p) { return plv_log_last(&p->log); }
uint64_t plv_paxos_snap_index(const PlvPaxos *p) { return p->log.snap.index; }
uint64_t plv_paxos_epoch(const PlvPaxos *p) { return p->epoch; }
uint64_t plv_paxos_incarnation(const PlvPaxos *p) { return p->inc; }
bool plv_paxos_admitted(const PlvPaxos *p) { return p->admitted; }
bool plv_paxos_voter(const PlvPaxos *p) { return votes(p); }
uint64_t plv_paxos_promised_inc(const PlvPaxos *p) { return p->promised_inc; }
bool plv_paxos_snapshot_pending(const PlvPaxos *p) { return p->snap_pending; }
size_t plv_paxos_queued_bytes(const PlvPaxos *p) { return p->queued_bytes; }
size_t plv_paxos_log_len(const PlvPaxos *p) { return plv_log_len(&p->log); }

uint32_t plv_paxos_leader(const PlvPaxos *p)
{
    if (p->st == ST_LEADER) {
        return p->self;
    }
    return p->leader_vid && p->leader_vid == p->promised ? plv_vid_leader(p->leader_vid)
                                                        : PLV_NODE_NONE;
}

uint64_t plv_paxos_member_inc(const PlvPaxos *p, uint32_t node)
{
    return node < p->n ? p->member_inc[node] : 0;
}

const PlvEntry *plv_paxos_entry(const PlvPaxos *p, uint64_t index)
{
    return plv_log_get(&p->log, index);
}

void plv_paxos_stats(const PlvPaxos *p, PlvPaxosStats *st)
{
    *st = p->stats;
}
