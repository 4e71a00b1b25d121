/*
 * The cluster simulator behind test-paxos-sim (see sim.h). Included by
 * the test runners that use it; everything lives in a Sim struct, the RNG
 * included, so one seed always replays the same run.
 */
#include <stdarg.h>
#include <string.h>
#include "sim/sim.h"

#define SIM_MAX PLV_MAX_NODES

typedef struct {
    uint64_t at, seq;
    uint32_t from, to;
    GBytes *frame;
} SimMsg;

typedef struct {
    PlvPaxos *px;
    bool up;
    uint64_t inc;
    uint64_t down_until;        /* restart tick when down */
    PlvDurable disk;            /* what it kept, synced before it spoke */
    bool keeps_state;           /* down: restarts with what it kept */
    uint64_t delivered;         /* last index handed to us */
    uint64_t last_syncvm;       /* last syncvm delivered */
    uint64_t max_commit;        /* highest commit index seen */
    uint64_t snap_index;        /* pending snapshot to install */
    uint64_t snap_at;
    bool incumbent;             /* was leader when it went candidate */
    PlvRole role;
    /* exec (sim-exec.c) */
    PlvExec ex;
    GArray *chain;              /* the model VM: uint64_t state per input */
    uint64_t vm_base;           /* its state at its last good syncvm */
    GArray *outs;               /* SimOut held */
    GArray *inbox;              /* SimItem: events and entries not yet executed */
    bool pumping;
    SimJob job;                 /* the syncvm in flight */
    GArray *covered;            /* leader: the cut its secondary applied */
    PlvSyncHello kept;          /* secondary: a HELLO not yet answered */
    bool kept_valid;
    uint32_t kept_from;
    uint64_t handoff_deadline;
    uint64_t proposed_at;       /* a syncvm proposal not yet executed (0: none) */
} SimNode;

typedef struct {
    uint64_t tick;
    PlvMsgHdr hdr;
    bool valid;
} SimLast;

typedef struct {
    SimParams prm;
    PlvPaxosConfig cfg;
    uint64_t rng;
    uint64_t now, seq;
    SimNode node[SIM_MAX];
    GArray *net;                /* SimMsg, unordered; delivered by (at, seq) */
    bool cut[SIM_MAX][SIM_MAX]; /* cut[a][b]: a -> b does not arrive */
    uint64_t heal_partition_at;
    double drop, dup;
    uint32_t max_delay;
    double p_crash, p_part, p_input, p_err;
    double p_durable;           /* a crash keeps the consensus state */
    bool chaos;
    GPtrArray *chosen;          /* index -> PlvEntry* (first delivery) */
    GHashTable *view_leader;    /* vid -> inc of its leader */
    SimLast last[SIM_MAX][SIM_MAX];
    uint64_t next_pkt, epoch;
    uint64_t marker_pkt;        /* first packet submitted after heal */
    uint64_t marker_index;
    uint64_t heal_at;
    PlvReady rd;
    SimResult *res;
    uint64_t commit_before[SIM_MAX];
    uint32_t err_before[SIM_MAX];   /* peers over the n_err threshold */
    /* exec */
    GArray *bulk;               /* SimBulk: the syncvm links */
    GArray *xs;                 /* SimExchange: engines running */
    uint64_t next_xid;
    double p_sync_fail;
    GArray *released;           /* n -> state released to clients (0: none) */
    uint64_t max_released;
    uint64_t release_vid;       /* the newest view that released */
    uint64_t newest_vid;        /* the newest view with a leader */
    uint64_t marker_released;   /* tick the first output of a marker left */
    char step_what[64];         /* what the executor is being stepped with */
    char vm_lost_why[160];
} Sim;

static uint64_t srnd(Sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double sunit(Sim *s)
{
    return (double)(srnd(s) >> 11) / (double)(1ull << 53);
}

static uint32_t sbelow(Sim *s, uint32_t n)
{
    return n ? (uint32_t)(srnd(s) % n) : 0;
}

static void trace(Sim *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void trace(Sim *s, const char *fmt, ...)
{
    va_list ap;
    if (!s->prm.trace) {
        return;
    }
    fprintf(s->prm.trace, "[%5" G_GUINT64_FORMAT "] ", s->now);
    va_start(ap, fmt);
    vfprintf(s->prm.trace, fmt, ap);
    va_end(ap);
    fputc('\n', s->prm.trace);
}

static void violate(Sim *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void violate(Sim *s, const char *fmt, ...)
{
    va_list ap;
    if (!s->res->ok) {
        return;
    }
    s->res->ok = false;
    va_start(ap, fmt);
    vsnprintf(s->res->why, sizeof(s->res->why), fmt, ap);
    va_end(ap);
    trace(s, "VIOLATION: %s", s->res->why);
}

/* The executor half (sim-exec.c), included below. */
static void exec_node_init(Sim *s, uint32_t i, bool restarted);
static void exec_node_free(SimNode *nd);
static void exec_queue(Sim *s, uint32_t i, PlvReady *rd);
static void pump(Sim *s, uint32_t i);
static void exec_tick(Sim *s);
static void exec_load(Sim *s, uint32_t i);
static bool exec_may_crash(Sim *s);
static bool exec_may_partition(Sim *s);
static bool exec_may_propose(Sim *s, uint32_t i);
static bool exec_vm_held(Sim *s);

void sim_params_default(SimParams *prm, uint64_t seed)
{
    *prm = (SimParams){ .seed = seed, .n = 3, .chaos_ticks = 300, .heal_bound = 200 };
}

/* ---- nodes ---- */

static void node_start(Sim *s, uint32_t i)
{
    PlvPaxosConfig c = s->cfg;
    SimNode *nd = &s->node[i];

    c.self = i;
    c.incarnation = nd->inc;
    c.seed = s->prm.seed * 7919 + i;
    nd->px = plv_paxos_new(&c, NULL);
    g_assert(nd->px);
    nd->up = true;
    nd->delivered = 0;
    nd->max_commit = 0;
    nd->last_syncvm = 0;
    nd->snap_index = 0;
    nd->incumbent = false;
    nd->role = plv_paxos_role(nd->px);
    if (s->prm.exec) {
        exec_node_init(s, i, nd->inc != PLV_INC_INITIAL);
    }
}

static void process_ready(Sim *s, uint32_t i);

static void node_crash(Sim *s, uint32_t i, bool keeps_state)
{
    SimNode *nd = &s->node[i];
    plv_paxos_free(nd->px);
    nd->px = NULL;
    nd->up = false;
    nd->keeps_state = keeps_state;
    nd->down_until = s->now + 1 + sbelow(s, 60);
    s->res->crashes++;
    trace(s, "crash node %u (inc %" G_GUINT64_FORMAT ")%s", i, nd->inc,
          keeps_state ? ", its consensus state kept" : "");
}

static void node_restart(Sim *s, uint32_t i)
{
    SimNode *nd = &s->node[i];

    nd->inc++;
    node_start(s, i);
    trace(s, "restart node %u as inc %" G_GUINT64_FORMAT "%s", i, nd->inc,
          nd->keeps_state ? " with its consensus state" : "");
    if (nd->keeps_state && !plv_durable_votes(&nd->disk)) {
        trace(s, "node %u: what it kept is a learner's: restarts without it", i);
        nd->keeps_state = false;
    }
    if (nd->keeps_state) {
        if (plv_paxos_restore(nd->px, &nd->disk, &s->rd) != 0) {
            violate(s, "node %u: its kept state does not restore", i);
        }
        s->res->durable_restarts++;
        process_ready(s, i);
    } else {
        plv_durable_clear(&nd->disk);   /* a learner's, until admitted */
    }
    nd->keeps_state = false;
}

/* ---- output processing and invariants ---- */

/* Packets are "p<id>"; G_MAXUINT64 for anything else. */
static uint64_t packet_id(const uint8_t *pkt, uint32_t len)
{
    char buf[32];
    if (len >= sizeof(buf) || len < 2 || pkt[0] != 'p') {
        return G_MAXUINT64;
    }
    memcpy(buf, pkt + 1, len - 1);
    buf[len - 1] = 0;
    return g_ascii_strtoull(buf, NULL, 10);
}

static void check_entry(Sim *s, uint32_t i, const PlvEntry *e)
{
    SimNode *nd = &s->node[i];
    PlvEntry *c;

    if (e->index != nd->delivered + 1) {
        violate(s, "node %u: delivered index %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT,
                i, e->index, nd->delivered);
        return;
    }
    nd->delivered = e->index;
    if (!g_hash_table_contains(s->view_leader, &e->vid)) {
        violate(s, "node %u: entry %" G_GUINT64_FORMAT " has viewstamp %#" G_GINT64_MODIFIER
                "x whose leader never led", i, e->index, e->vid);
    }
    if (e->op == PLV_OP_INPUT) {
        PlvBatchIter it;
        const uint8_t *pkt;
        uint32_t len;
        plv_batch_iter_entry(&it, e);
        while (plv_batch_next(&it, &pkt, &len)) {
            uint64_t id = packet_id(pkt, len);
            if (id >= s->next_pkt) {
                violate(s, "node %u: entry %" G_GUINT64_FORMAT " carries a packet never submitted",
                        i, e->index);
            }
            if (s->marker_pkt && id >= s->marker_pkt && !s->marker_index) {
                s->marker_index = e->index;
            }
        }
    }
    if (e->index >= s->chosen->len) {
        g_ptr_array_set_size(s->chosen, e->index + 1);
    }
    c = g_ptr_array_index(s->chosen, e->index);
    if (!c) {
        c = g_new0(PlvEntry, 1);
        plv_entry_copy(c, e);
        g_ptr_array_index(s->chosen, e->index) = c;
        if (e->index > s->res->commits) {
            s->res->commits = e->index;
        }
    } else if (!plv_entry_same_value(c, e)) {
        violate(s, "node %u: committed entry %" G_GUINT64_FORMAT " differs (op %u vs op %u)",
                i, e->index, e->op, c->op);
    }
    if (e->op == PLV_OP_SYNCVM) {
        nd->last_syncvm = e->index;
    }
}

/* The witness rule as the simulator sees it: a node that was not the
 * secondary took leadership although the secondary is up, admitted,
 * holds its state, is connected, spoke to it less than suspect_ticks ago
 * and reported a log reaching its commit. A node that keeps a VM (the
 * lone leader, plv_paxos_set_kept) is exempt: it is preferred. */
static void check_new_leader(Sim *s, uint32_t x, uint64_t vid)
{
    SimNode *nd = &s->node[x];
    uint64_t *prev = g_hash_table_lookup(s->view_leader, &vid);
    uint32_t sec;

    if (plv_vid_leader(vid) != x) {
        violate(s, "node %u leads view %#" G_GINT64_MODIFIER "x named for node %u", x, vid,
                plv_vid_leader(vid));
    }
    if (prev && *prev != nd->inc) {
        violate(s, "two leaders (incarnations %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                ") for view %#" G_GINT64_MODIFIER "x", *prev, nd->inc, vid);
    }
    if (!prev) {
        uint64_t *k = g_new(uint64_t, 1), *v = g_new(uint64_t, 1);
        *k = vid;
        *v = nd->inc;
        g_hash_table_insert(s->view_leader, k, v);
        s->newest_vid = MAX(s->newest_vid, vid);
    }
    for (uint32_t j = 0; j < s->prm.n; j++) {
        if (j != x && s->node[j].up && plv_paxos_role(s->node[j].px) == PLV_ROLE_LEADER &&
            plv_paxos_vid(s->node[j].px) == vid) {
            violate(s, "nodes %u and %u both lead view %#" G_GINT64_MODIFIER "x", x, j, vid);
        }
    }
    sec = plv_paxos_secondary(nd->px);
    if (nd->incumbent || plv_paxos_kept(nd->px) || sec == PLV_NODE_NONE || sec == x) {
        return;
    }
    s->res->witness_leads++;
    {
        SimNode *sn = &s->node[sec];
        SimLast *l = &s->last[sec][x];
        bool err_suspect = s->err_before[x] & (1u << sec);
        if (!err_suspect && sn->up && plv_paxos_admitted(sn->px) && !plv_paxos_snapshot_pending(sn->px) &&
            !s->cut[sec][x] && l->valid && s->now - l->tick < s->cfg.suspect_ticks &&
            l->hdr.inc == sn->inc && (l->hdr.flags & PLV_HDR_ADMITTED) &&
            !(l->hdr.flags & PLV_HDR_SNAP_PENDING) && l->hdr.last >= s->commit_before[x]) {
            violate(s, "node %u (not secondary) became leader of %#" G_GINT64_MODIFIER
                    "x while secondary %u is live and up to date", x, vid, sec);
        }
    }
}

static void send_frame(Sim *s, uint32_t from, uint32_t to, GBytes *frame)
{
    SimMsg m = { .at = s->now + sbelow(s, s->max_delay + 1), .seq = s->seq++,
                 .from = from, .to = to, .frame = g_bytes_ref(frame) };
    g_array_append_val(s->net, m);
}

/* What the node kept is what it holds: the promise, the truncation and
 * every entry, as they are now (the record of a step misses nothing). */
static void check_disk(Sim *s, uint32_t i)
{
    SimNode *nd = &s->node[i];
    PlvPaxos *x = nd->px;
    const PlvDurable *d = &nd->disk;
    guint k = 0;

    if (!nd->up || !s->res->ok) {
        return;
    }
    if (d->promised != plv_paxos_vid(x) || d->promised_inc != plv_paxos_promised_inc(x) ||
        d->voter != plv_paxos_voter(x) ||
        (d->has_snap ? d->snap.index : 0) != plv_paxos_snap_index(x)) {
        violate(s, "node %u: kept promise %#" G_GINT64_MODIFIER "x/%" G_GUINT64_FORMAT
                " voter %d snap %" G_GUINT64_FORMAT ", holds %#" G_GINT64_MODIFIER "x/%"
                G_GUINT64_FORMAT " voter %d snap %" G_GUINT64_FORMAT, i, d->promised,
                d->promised_inc, d->voter, d->has_snap ? d->snap.index : 0, plv_paxos_vid(x),
                plv_paxos_promised_inc(x), plv_paxos_voter(x), plv_paxos_snap_index(x));
        return;
    }
    for (uint64_t idx = plv_paxos_snap_index(x) + 1; idx <= plv_paxos_last_index(x); idx++) {
        const PlvEntry *e = plv_paxos_entry(x, idx);
        const PlvEntry *k_e = k < d->ents->len ? &g_array_index(d->ents, PlvEntry, k) : NULL;
        if (!e) {
            continue;
        }
        while (k_e && k_e->index < idx) {
            k++;
            k_e = k < d->ents->len ? &g_array_index(d->ents, PlvEntry, k) : NULL;
        }
        if (!k_e || k_e->index != idx || k_e->vid != e->vid || !plv_entry_same_value(k_e, e)) {
            violate(s, "node %u: entry %" G_GUINT64_FORMAT " (vid %#" G_GINT64_MODIFIER
                    "x) is not kept as it is held", i, idx, e->vid);
            return;
        }
    }
}

static void process_ready(Sim *s, uint32_t i)
{
    SimNode *nd = &s->node[i];
    PlvReady *rd = &s->rd;

    /* as the driver does: on disk before anything leaves */
    if (rd->stable.dirty) {
        plv_durable_apply(&nd->disk, &rd->stable);
    }
    check_disk(s, i);

    for (guint k = 0; k < rd->events->len; k++) {
        PlvEvent *ev = &g_array_index(rd->events, PlvEvent, k);
        switch (ev->kind) {
        case PLV_EV_ROLE:
            trace(s, "node %u: %s -> %s (vid %#" G_GINT64_MODIFIER "x)", i,
                  plv_role_name(ev->old_role), plv_role_name(ev->role), plv_paxos_vid(nd->px));
            if (ev->role == PLV_ROLE_CANDIDATE) {
                nd->incumbent = ev->old_role == PLV_ROLE_LEADER ||
                                (ev->old_role == PLV_ROLE_CANDIDATE && nd->incumbent);
            }
            if (ev->role == PLV_ROLE_LEADER) {
                check_new_leader(s, i, plv_paxos_vid(nd->px));
                nd->incumbent = false;
            } else if (ev->role != PLV_ROLE_CANDIDATE) {
                nd->incumbent = false;
            }
            nd->role = ev->role;
            break;
        case PLV_EV_NEEDS_SNAPSHOT:
            trace(s, "node %u: needs snapshot at %" G_GUINT64_FORMAT " from %u", i,
                  ev->snap.index, ev->peer);
            if (!s->prm.exec) {
                nd->snap_index = ev->snap.index;
                nd->snap_at = s->now + sbelow(s, 10);
            }   /* else the executor asks for it (PLV_EXEC_INSTALL_SNAPSHOT) */
            s->res->snapshots++;
            break;
        case PLV_EV_ADMITTED:
            trace(s, "node %u: admitted (inc %" G_GUINT64_FORMAT ")", i, nd->inc);
            break;
        default:
            break;
        }
    }
    for (guint k = 0; k < rd->committed->len && s->res->ok; k++) {
        check_entry(s, i, &g_array_index(rd->committed, PlvEntry, k));
    }
    /* Executors apply each syncvm and report it, which drives truncation.
     * A node that becomes an executor is modelled as receiving the VM at
     * the last syncvm it knows (the migration that makes a secondary). */
    if (s->prm.exec) {
        exec_queue(s, i, rd);   /* the executor reports what it applied */
    } else if (nd->last_syncvm &&
               (nd->role == PLV_ROLE_LEADER || nd->role == PLV_ROLE_SECONDARY)) {
        plv_paxos_applied_syncvm(nd->px, nd->last_syncvm);
    }
    for (guint k = 0; k < rd->msgs->len; k++) {
        PlvOutMsg *om = g_ptr_array_index(rd->msgs, k);
        GByteArray *b = g_byte_array_new();
        GBytes *frame;
        GError *err = NULL;

        if (!plv_wire_encode(&om->msg, b, &err)) {
            violate(s, "node %u produced an unencodable %s: %s", i,
                    plv_msg_type_name(om->msg.type), err->message);
            g_error_free(err);
            g_byte_array_unref(b);
            continue;
        }
        frame = g_byte_array_free_to_bytes(b);
        if (!s->chaos || sunit(s) >= s->drop) {
            send_frame(s, i, om->to, frame);
            if (s->chaos && sunit(s) < s->dup) {
                send_frame(s, i, om->to, frame);
            }
        }
        g_bytes_unref(frame);
    }
    plv_ready_clear(rd);
    if (s->prm.exec) {
        pump(s, i);
    }
}

/* What the witness check compares against: the node's state before the
 * step that made it leader (a new view resets n_err). */
static void note_before(Sim *s, uint32_t i)
{
    PlvPaxos *x = s->node[i].px;
    s->commit_before[i] = plv_paxos_commit_index(x);
    s->err_before[i] = 0;
    for (uint32_t j = 0; j < s->prm.n; j++) {
        if (plv_paxos_n_err(x, j) >= s->cfg.n_err_threshold) {
            s->err_before[i] |= 1u << j;
        }
    }
}

static void deliver_one(Sim *s, SimMsg *m)
{
    SimNode *nd = &s->node[m->to];
    PlvMsg msg;
    gsize len;
    const uint8_t *p = g_bytes_get_data(m->frame, &len);
    GError *err = NULL;

    if (!nd->up || s->cut[m->from][m->to]) {
        return;
    }
    if (plv_wire_decode(p, len, s->prm.n, &msg, &err) != 0) {
        violate(s, "frame from %u does not decode: %s", m->from, err->message);
        g_error_free(err);
        return;
    }
    s->last[m->from][m->to] = (SimLast){ .tick = s->now, .hdr = msg.hdr, .valid = true };
    if (s->prm.trace && getenv("PLOVER_SIM_MSGS")) {
        trace(s, "  %u->%u %s vid=%#" G_GINT64_MODIFIER "x hdr.vid=%#" G_GINT64_MODIFIER
              "x inc=%" G_GUINT64_FORMAT " commit=%" G_GUINT64_FORMAT " last=%" G_GUINT64_FORMAT
              " ok=%d idx=%" G_GUINT64_FORMAT " n=%u flags=%x", m->from, m->to,
              plv_msg_type_name(msg.type), msg.vid, msg.hdr.vid, msg.hdr.inc, msg.hdr.commit,
              msg.hdr.last, msg.ok, msg.index, msg.entries ? msg.entries->len : 0, msg.hdr.flags);
    }
    note_before(s, m->to);
    plv_paxos_step(nd->px, &msg, &s->rd);
    plv_msg_clear(&msg);
    process_ready(s, m->to);
}

/* Deliver everything due now, in (time, sequence) order; messages sent
 * with zero delay are delivered in the same tick. */
static void deliver_due(Sim *s)
{
    for (;;) {
        guint best = G_MAXUINT;
        SimMsg m;
        for (guint k = 0; k < s->net->len; k++) {
            SimMsg *c = &g_array_index(s->net, SimMsg, k);
            if (c->at <= s->now && (best == G_MAXUINT ||
                                    c->at < g_array_index(s->net, SimMsg, best).at ||
                                    (c->at == g_array_index(s->net, SimMsg, best).at &&
                                     c->seq < g_array_index(s->net, SimMsg, best).seq))) {
                best = k;
            }
        }
        if (best == G_MAXUINT || !s->res->ok) {
            return;
        }
        m = g_array_index(s->net, SimMsg, best);
        g_array_remove_index_fast(s->net, best);
        deliver_one(s, &m);
        g_bytes_unref(m.frame);
    }
}

/* ---- faults and load ---- */

static bool all_up_admitted(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (!s->node[i].up || !plv_paxos_admitted(s->node[i].px) ||
            plv_paxos_snapshot_pending(s->node[i].px)) {
            return false;
        }
    }
    return true;
}

/* Another node may go down, keeping its state, while one is down already:
 * an admitted node stays up to lead and admit the others again (and, with
 * the executor, it holds the VM and this one does not). */
static bool may_crash_another(Sim *s, uint32_t v)
{
    SimNode *nv = &s->node[v];
    bool leader_left = false;

    if (s->prm.exec && (!s->prm.double_faults || nv->ex.executing || nv->ex.kept)) {
        return false;
    }
    /* every node down comes back voting (a learner's memory does not) */
    if (!plv_paxos_voter(nv->px)) {
        return false;
    }
    for (uint32_t j = 0; j < s->prm.n; j++) {
        SimNode *nd = &s->node[j];
        if (j != v && !nd->up && !(nd->keeps_state && plv_durable_votes(&nd->disk))) {
            return false;
        }
        if (j != v && nd->up && plv_paxos_admitted(nd->px) &&
            (!s->prm.exec || nd->ex.executing || nd->ex.kept)) {
            leader_left = true;
        }
    }
    return leader_left;
}

static uint32_t sim_leader(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (s->node[i].up && plv_paxos_role(s->node[i].px) == PLV_ROLE_LEADER) {
            return i;
        }
    }
    return PLV_NODE_NONE;
}

#include "sim/sim-exec.c"

static void heal_links(Sim *s)
{
    memset(s->cut, 0, sizeof(s->cut));
    s->heal_partition_at = 0;
}

static void faults(Sim *s)
{
    uint32_t n = s->prm.n;

    for (uint32_t i = 0; i < n; i++) {
        if (!s->node[i].up && s->now >= s->node[i].down_until) {
            node_restart(s, i);
        }
    }
    /* A crash that loses the consensus state happens only while every
     * other node is up and holds the log (f = 1). One that keeps it may
     * also take a second node down, as long as one admitted node stays. */
    if (sunit(s) < s->p_crash) {
        /* half of the crashes hit a leader: that is where recovery matters */
        uint32_t v = sbelow(s, n), l = sim_leader(s);
        bool keeps = sunit(s) < s->p_durable;
        v = l != PLV_NODE_NONE && sbelow(s, 2) ? l : v;
        if (all_up_admitted(s)) {
            if (!s->prm.exec || exec_may_crash(s)) {
                node_crash(s, v, keeps);
            }
        } else if (keeps && s->node[v].up && may_crash_another(s, v)) {
            s->res->double_crashes++;
            node_crash(s, v, true);
        }
    }
    if (s->heal_partition_at && s->now >= s->heal_partition_at) {
        heal_links(s);
        trace(s, "partition healed");
    }
    if (!s->heal_partition_at && sunit(s) < s->p_part &&
        (!s->prm.exec || exec_may_partition(s))) {
        uint32_t a = sbelow(s, n), b = (a + 1 + sbelow(s, n - 1)) % n;
        uint32_t l = sim_leader(s);
        if (l != PLV_NODE_NONE && sbelow(s, 2)) {
            a = l;
            b = (a + 1 + sbelow(s, n - 1)) % n;
        }
        switch (sbelow(s, 3)) {
        case 0: /* isolate a */
            for (uint32_t j = 0; j < n; j++) {
                s->cut[a][j] = s->cut[j][a] = j != a;
            }
            trace(s, "partition: node %u isolated", a);
            break;
        case 1: /* cut one link both ways */
            s->cut[a][b] = s->cut[b][a] = true;
            trace(s, "partition: link %u-%u cut", a, b);
            break;
        default: /* one direction only */
            s->cut[a][b] = true;
            trace(s, "partition: %u -> %u cut", a, b);
            break;
        }
        s->heal_partition_at = s->now + 5 + sbelow(s, 50);
    }
}

static void load(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        SimNode *nd = &s->node[i];
        if (nd->up && plv_paxos_role(nd->px) != PLV_ROLE_LEADER && sbelow(s, 16) == 0) {
            /* a packet reaching a non-leader: forwarded to whoever leads */
            char pkt[24];
            int l = snprintf(pkt, sizeof(pkt), "p%" G_GUINT64_FORMAT, s->next_pkt++);
            plv_paxos_forward_input(nd->px, pkt, (size_t)l, &s->rd);
            process_ready(s, i);
        }
        if (!nd->up || plv_paxos_role(nd->px) != PLV_ROLE_LEADER) {
            continue;
        }
        if (sunit(s) < s->p_input) {
            uint32_t k = 1 + sbelow(s, 3);
            while (k--) {
                char pkt[24];
                int l = snprintf(pkt, sizeof(pkt), "p%" G_GUINT64_FORMAT, s->next_pkt++);
                plv_paxos_submit_input(nd->px, pkt, (size_t)l, &s->rd);
                process_ready(s, i);
            }
        }
        if (sbelow(s, 12) == 0 && (!s->prm.exec || exec_may_propose(s, i))) {
            plv_paxos_propose_syncvm(nd->px, ++s->epoch, &s->rd);
            process_ready(s, i);
        }
        if (s->prm.exec) {
            /* syncvm errors come from the exchanges; the operator
             * migrates leadership through the executor */
            exec_load(s, i);
            continue;
        }
        /* now and then a syncvm with the secondary fails; later the
         * operator (or a successful exchange) clears the count */
        if (s->chaos && sunit(s) < s->p_err) {
            uint32_t sec = plv_paxos_secondary(nd->px);
            if (sec != PLV_NODE_NONE && sec != i) {
                plv_paxos_add_err(nd->px, sec);
                trace(s, "node %u: syncvm error with %u (n_err %u)", i, sec,
                      plv_paxos_n_err(nd->px, sec));
            }
        }
        if (sunit(s) < 0.01) {
            for (uint32_t j = 0; j < s->prm.n; j++) {
                plv_paxos_reset_err(nd->px, j);
            }
        }
        /* now and then the operator hands leadership to the secondary */
        if (sunit(s) < 0.004) {
            uint32_t sec = plv_paxos_secondary(nd->px);
            if (sec != PLV_NODE_NONE && sec != i &&
                plv_paxos_transfer_leadership(nd->px, sec, &s->rd) == 0) {
                trace(s, "node %u: hands leadership to %u", i, sec);
                process_ready(s, i);
            }
        }
    }
}

static void install_snapshots(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        SimNode *nd = &s->node[i];
        if (nd->up && nd->snap_index && s->now >= nd->snap_at &&
            plv_paxos_snapshot_pending(nd->px)) {
            if (plv_paxos_install_snapshot(nd->px, nd->snap_index, &s->rd) == 0) {
                nd->delivered = nd->snap_index;
                nd->last_syncvm = nd->snap_index;
                nd->snap_index = 0;
            }
            process_ready(s, i);
        }
    }
}

/* Per incarnation, a commit index never goes back and the driver is
 * never handed more than what is committed. */
static void check_nodes(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        SimNode *nd = &s->node[i];
        uint64_t c;
        if (!nd->up) {
            continue;
        }
        c = plv_paxos_commit_index(nd->px);
        if (c < nd->max_commit) {
            violate(s, "node %u: commit index went back from %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT, i, nd->max_commit, c);
        }
        nd->max_commit = c;
        if (nd->delivered > c) {
            violate(s, "node %u: delivered %" G_GUINT64_FORMAT " past commit %" G_GUINT64_FORMAT,
                    i, nd->delivered, c);
        }
    }
}

static void step_tick(Sim *s)
{
    if (s->chaos) {
        faults(s);
    }
    install_snapshots(s);
    deliver_due(s);
    if (s->prm.exec && s->res->ok) {
        exec_tick(s);
    }
    for (uint32_t i = 0; i < s->prm.n && s->res->ok; i++) {
        if (s->node[i].up) {
            note_before(s, i);
            plv_paxos_tick(s->node[i].px, &s->rd);
            process_ready(s, i);
        }
    }
    load(s);
    check_nodes(s);
    s->now++;
}

/* After the heal every node is up and connected and the network is
 * reliable: the marker packet must be committed everywhere in time, and
 * nothing committed before may be missing. */
static void heal_and_check(Sim *s)
{
    uint64_t before = s->res->commits;
    uint64_t deadline;

    s->chaos = false;
    heal_links(s);
    s->max_delay = 1;
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (!s->node[i].up) {
            node_restart(s, i);
        }
    }
    s->heal_at = s->now;
    s->marker_pkt = s->next_pkt;
    trace(s, "heal (commits so far %" G_GUINT64_FORMAT ")", before);
    deadline = s->now + s->prm.heal_bound;
    while (s->res->ok && s->now < deadline) {
        bool done = s->marker_index != 0;
        step_tick(s);
        for (uint32_t i = 0; done && i < s->prm.n; i++) {
            done = s->node[i].delivered >= s->marker_index &&
                   !plv_paxos_snapshot_pending(s->node[i].px);
        }
        if (s->prm.exec && exec_vm_held(s)) {
            /* and a client saw the answer to an input sent after the heal */
            done = done && s->marker_released;
        }
        if (done) {
            s->res->release_latency = s->marker_released ? s->marker_released - s->heal_at : 0;
            s->res->heal_latency = s->now - s->heal_at;
            break;
        }
    }
    if (!s->res->ok) {
        return;
    }
    if (s->prm.exec && !exec_vm_held(s)) {
        /* Nothing holds the VM: no syncvm completes, so nothing is
         * released and the log, never truncated, fills up and stops
         * taking inputs. Reported as vm_lost by sim_run. */
        return;
    }
    if (!s->res->heal_latency) {
        if (s->prm.exec && s->marker_index && !s->marker_released) {
            violate(s, "no output released within %u ticks of the heal (marker index %"
                    G_GUINT64_FORMAT ")", s->prm.heal_bound, s->marker_index);
        } else {
            violate(s, "no commit on every node within %u ticks of the heal (marker index %"
                    G_GUINT64_FORMAT ")", s->prm.heal_bound, s->marker_index);
        }
        return;
    }
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (plv_paxos_commit_index(s->node[i].px) < before) {
            violate(s, "node %u commit %" G_GUINT64_FORMAT " below %" G_GUINT64_FORMAT
                    " committed before the heal", i, plv_paxos_commit_index(s->node[i].px), before);
        }
    }
}

static void free_entry_ptr(gpointer p)
{
    if (p) {
        plv_entry_clear(p);
        g_free(p);
    }
}

void sim_run(const SimParams *prm, SimResult *res)
{
    Sim *s = g_new0(Sim, 1);
    uint32_t mode;

    memset(res, 0, sizeof(*res));
    res->ok = true;
    s->prm = *prm;
    s->res = res;
    s->rng = prm->seed * 0x2545f4914f6cdd1dull + 1;
    plv_paxos_config_default(&s->cfg);
    s->cfg.n = prm->n;
    /* timing varies by seed too: heartbeat 1-3, suspicion 3-6 heartbeats */
    s->cfg.heartbeat_ticks = 1 + sbelow(s, 3);
    s->cfg.suspect_ticks = s->cfg.heartbeat_ticks * (3 + sbelow(s, 4));
    s->cfg.election_ticks = 3 + sbelow(s, 8);
    s->cfg.log_capacity = 24 + sbelow(s, 40);
    s->cfg.catchup_max = 8;
    s->cfg.max_batch_bytes = 64 + sbelow(s, 200);
    /* fault mix chosen by the seed: clean, lossy, very lossy */
    mode = sbelow(s, 4);
    s->drop = mode == 0 ? 0 : mode == 1 ? 0.02 : mode == 2 ? 0.1 : 0.25;
    s->dup = sbelow(s, 2) ? 0.03 : 0;
    s->max_delay = sbelow(s, 4);
    /* one seed in four is a storm: frequent crashes and partitions */
    s->p_crash = sbelow(s, 4) == 0 ? 0.04 : sbelow(s, 2) ? 0.01 : 0.003;
    s->p_part = sbelow(s, 4) == 0 ? 0.06 : sbelow(s, 2) ? 0.02 : 0.005;
    s->p_input = 0.3 + 0.6 * sunit(s);
    s->p_err = sbelow(s, 3) == 0 ? 0.02 : 0;
    /* a third of the seeds keep no consensus state, a third always do */
    s->p_durable = sbelow(s, 3) * 0.5;
    if (prm->exec) {
        s->p_sync_fail = sbelow(s, 3) == 0 ? 0.2 : 0.03;
    }
    s->bulk = g_array_new(FALSE, FALSE, sizeof(SimBulk));
    s->xs = g_array_new(FALSE, FALSE, sizeof(SimExchange));
    s->released = g_array_new(FALSE, TRUE, sizeof(uint64_t));
    s->net = g_array_new(FALSE, FALSE, sizeof(SimMsg));
    s->chosen = g_ptr_array_new_with_free_func(free_entry_ptr);
    s->view_leader = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    plv_ready_init(&s->rd);
    trace(s, "seed %" G_GUINT64_FORMAT ": n=%u drop=%.2f dup=%.2f delay<=%u crash=%.3f "
          "part=%.3f cap=%u", prm->seed, prm->n, s->drop, s->dup, s->max_delay, s->p_crash,
          s->p_part, s->cfg.log_capacity);
    for (uint32_t i = 0; i < prm->n; i++) {
        s->node[i].inc = PLV_INC_INITIAL;
        plv_durable_init(&s->node[i].disk);
        s->node[i].disk.voter = true;   /* a new group's nodes vote */
        node_start(s, i);
    }
    s->chaos = true;
    while (res->ok && s->now < prm->chaos_ticks) {
        step_tick(s);
    }
    if (res->ok) {
        heal_and_check(s);
    }
    if (prm->exec && res->ok && !exec_vm_held(s)) {
        /* No replica holds the VM any more: nothing can serve, whatever
         * consensus does (SimResult.vm_lost says why; not a violation of
         * the checks above, a limit of the rules: see sim-exec.c). */
        res->vm_lost = true;
        g_strlcpy(res->vm_lost_why, s->vm_lost_why[0] ? s->vm_lost_why :
                  "its last holder stopped executing", sizeof(res->vm_lost_why));
    }
    res->ticks = s->now;
    for (uint32_t i = 0; i < prm->n; i++) {
        PlvPaxos *x = s->node[i].px;
        if (s->node[i].up) {
            trace(s, "node %u: %s vid %#" G_GINT64_MODIFIER "x inc %" G_GUINT64_FORMAT
                  " commit %" G_GUINT64_FORMAT " last %" G_GUINT64_FORMAT " snap %" G_GUINT64_FORMAT
                  " secondary %d admitted %d pending %d queued %zu",
                  i, plv_role_name(plv_paxos_role(x)), plv_paxos_vid(x), plv_paxos_incarnation(x),
                  plv_paxos_commit_index(x), plv_paxos_last_index(x), plv_paxos_snap_index(x),
                  (int)plv_paxos_secondary(x), plv_paxos_admitted(x),
                  plv_paxos_snapshot_pending(x), plv_paxos_queued_bytes(x));
        }
    }
    for (uint32_t i = 0; i < prm->n; i++) {
        if (s->node[i].up) {
            PlvPaxosStats st;
            plv_paxos_stats(s->node[i].px, &st);
            res->elections += st.elections;
            res->handoffs += st.handoffs;
            res->forwarded += st.fwd_taken;
            plv_paxos_free(s->node[i].px);
        }
        exec_node_free(&s->node[i]);
        plv_durable_destroy(&s->node[i].disk);
    }
    g_array_free(s->bulk, TRUE);
    g_array_free(s->xs, TRUE);
    g_array_free(s->released, TRUE);
    for (guint k = 0; k < s->net->len; k++) {
        g_bytes_unref(g_array_index(s->net, SimMsg, k).frame);
    }
    g_array_free(s->net, TRUE);
    g_ptr_array_unref(s->chosen);
    g_hash_table_destroy(s->view_leader);
    plv_ready_destroy(&s->rd);
    g_free(s);
}
