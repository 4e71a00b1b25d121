/*
 * The executor half of the simulation (SimParams.exec): each node runs a
 * PlvExec beside its PlvPaxos and performs its actions on a model VM.
 *
 * The model VM is a chain of states: each input it executes appends
 * h' = mix(h, packet, noise), where noise is the node's own (the time
 * stamps and scheduling that make two real executions diverge), and
 * emits an output that carries (n, h'). Outputs are held until the
 * executor releases or drops them. A syncvm copies the source's chain at
 * its cut to the target.
 *
 * The syncvm between two nodes is modelled as the glue runs it: the
 * leader's HELLO and the secondary's REPLY or SKIP travel on a link of
 * their own (delayed, cut by partitions, dropped with the link), the
 * ends agree with plv_sync_on_hello/plv_sync_direction, and the engine
 * ends after a few ticks, failing as a real one can (both ends, the ACK
 * lost after the target applied, the target's commit failing half way).
 * Each end gives up at its own deadline.
 *
 * What is checked, besides the consensus invariants of sim.c:
 *  - outputs leave only from a replica that leads, and only outputs
 *    covered by a cut that its secondary applied;
 *  - every released output lies on one history: the same n never with
 *    two states, and the replica that leads with a VM holds every
 *    released state in its chain (no client saw a state later lost);
 *  - a delta syncvm runs only between VMs of the same base;
 *  - a witness never executes while a live secondary does;
 *  - after the heal the VM is still held, and the marker input's output
 *    is released within heal_bound ticks (no livelock).
 */
/* ---- the model VM ---- */

static uint64_t mix64(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | 1;     /* never 0: 0 marks "not released" */
}

static uint64_t chain_top(GArray *c)
{
    return c->len ? g_array_index(c, uint64_t, c->len - 1) : 0;
}

/* A base names a VM state: the chain's length and last state. */
static uint64_t chain_base(GArray *c)
{
    return mix64(c->len, chain_top(c));
}

static GArray *chain_copy(GArray *c)
{
    GArray *d = g_array_sized_new(FALSE, FALSE, sizeof(uint64_t), c->len);
    g_array_append_vals(d, c->data, c->len);
    return d;
}

static void vm_discard(SimNode *nd)
{
    g_array_set_size(nd->chain, 0);
    g_array_set_size(nd->outs, 0);
    nd->vm_base = 0;
}

/* ---- checks ---- */

/* Every released state lies on @chain: the replica leads, so whatever it
 * says next must continue what clients saw. */
static void check_history(Sim *s, uint32_t i, const char *when)
{
    SimNode *nd = &s->node[i];
    GArray *c = nd->chain;

    if (s->max_released > c->len) {
        violate(s, "node %u %s with a VM of %u inputs, but clients saw state %"
                G_GUINT64_FORMAT, i, when, c->len, s->max_released);
        return;
    }
    for (uint64_t n = 1; n <= s->max_released; n++) {
        uint64_t r = g_array_index(s->released, uint64_t, n);
        if (r && g_array_index(c, uint64_t, n - 1) != r) {
            violate(s, "node %u %s with a VM whose state %" G_GUINT64_FORMAT
                    " is not the one clients saw (a state was lost)", i, when, n);
            return;
        }
    }
}

/* @uncovered: a broken executor's release, checked for history only */
static void release(Sim *s, uint32_t i, uint64_t count, bool uncovered)
{
    SimNode *nd = &s->node[i];
    uint64_t k = MIN(count, (uint64_t)nd->outs->len);

    if (!k) {
        return;
    }
    /* the leader of its view (a leader re-preparing its view is a
     * candidate meanwhile, and still the one whose syncvm this was) */
    if (nd->ex.leader != i ||
        (nd->ex.role != PLV_ROLE_LEADER && nd->ex.role != PLV_ROLE_CANDIDATE)) {
        violate(s, "node %u released %" G_GUINT64_FORMAT " outputs as %s", i, k,
                plv_role_name(nd->ex.role));
        return;
    }
    /* A leader that has yet to hear of the next view may still release
     * what its secondary applied (the new leader's chain holds it): late
     * in time, consistent in content, which the checks below look at. */
    if (nd->ex.vid < s->release_vid) {
        s->res->late_releases++;
    }
    s->release_vid = MAX(s->release_vid, nd->ex.vid);
    for (uint64_t q = 0; q < k; q++) {
        SimOut *o = &g_array_index(nd->outs, SimOut, q);
        if (!uncovered) {
            GArray *cov = nd->covered;
            if (!cov || o->n > cov->len || g_array_index(cov, uint64_t, o->n - 1) != o->h) {
                violate(s, "node %u released output of state %" G_GUINT64_FORMAT
                        " that no cut applied by its secondary covers", i, o->n);
                return;
            }
        }
        if (o->n >= s->released->len) {
            g_array_set_size(s->released, o->n + 1);
        }
        if (g_array_index(s->released, uint64_t, o->n) &&
            g_array_index(s->released, uint64_t, o->n) != o->h) {
            violate(s, "two different states %" G_GUINT64_FORMAT " were released "
                    "(node %u)", o->n, i);
            return;
        }
        g_array_index(s->released, uint64_t, o->n) = o->h;
        s->max_released = MAX(s->max_released, o->n);
        if (s->marker_pkt && o->pkt >= s->marker_pkt && !s->marker_released) {
            s->marker_released = s->now;
        }
    }
    g_array_remove_range(nd->outs, 0, k);
    s->res->released += k;
    if (uncovered) {
        check_history(s, i, "released outputs");
    }
}

/* A witness executing beside a live executing secondary runs a second
 * copy of the VM that nobody replicates. */
static void check_witness(Sim *s)
{
    for (uint32_t w = 0; w < s->prm.n; w++) {
        SimNode *nw = &s->node[w];
        /* as far as it knows: a replica still executing the log up to
         * where it was named secondary is the secondary there */
        if (!nw->up || !nw->ex.executing ||
            (nw->ex.role != PLV_ROLE_WITNESS && nw->ex.role != PLV_ROLE_RECOVERING) ||
            nw->ex.secondary == w || nw->ex.handoff == PLV_EXEC_HANDOFF_TRANSFERRING) {
            continue;
        }
        for (uint32_t j = 0; j < s->prm.n; j++) {
            if (j != w && s->node[j].up && s->node[j].ex.role == PLV_ROLE_SECONDARY &&
                s->node[j].ex.executing) {
                violate(s, "witness %u executes while secondary %u does", w, j);
                return;
            }
        }
    }
}

/* ---- the syncvm link ---- */

static void bulk_send(Sim *s, uint32_t from, uint32_t to, SimBulk *m)
{
    m->at = s->now + 1 + sbelow(s, s->max_delay + 1);
    m->seq = s->seq++;
    m->from = from;
    m->to = to;
    m->to_inc = s->node[to].inc;
    if (s->chaos && sunit(s) < s->drop / 2) {
        return;     /* the link broke under it */
    }
    g_array_append_val(s->bulk, *m);
}

static void job_end(Sim *s, uint32_t i, const PlvExecSyncResult *r);

static void job_fail(Sim *s, uint32_t i, bool skew, const char *why)
{
    const SimJob *j = &s->node[i].job;
    /* A leader's job that fails on its own ends its exchange too, which
     * then fails at the target: nothing applied there. */
    PlvExecSyncResult r = { .skew = skew, .snapshot = j->sync.may_run_on,
                            .peer_answered = j->sync.leader && j->answered,
                            .peer_has_vm = j->peer_has_vm };

    trace(s, "node %u: syncvm %" G_GUINT64_FORMAT " fails: %s", i,
          s->node[i].job.sync.epoch, why);
    job_end(s, i, &r);
}

static void sec_on_hello(Sim *s, uint32_t i, const PlvSyncHello *h, uint32_t from)
{
    SimNode *nd = &s->node[i];
    SimJob *j = &nd->job;
    uint64_t ours = j->sync.epoch;
    PlvSyncHelloAction a = plv_sync_on_hello(ours, h->epoch);
    PlvSyncReply reply = { .has_vm = j->sync.hello.has_vm, .last = j->sync.hello.last,
                           .fresh = j->sync.hello.fresh };
    SimBulk m = { 0 };
    SimExchange x = { 0 };
    bool push, full;
    double u;

    switch (a) {
    case PLV_SYNC_HELLO_SKIP:
        m.type = SIM_BULK_SKIP;
        m.epoch = ours;
        bulk_send(s, i, from, &m);
        return;
    case PLV_SYNC_HELLO_LATER:
        nd->kept = *h;
        nd->kept_valid = true;
        job_fail(s, i, true, "the leader is at a later syncvm");
        return;
    case PLV_SYNC_HELLO_ACCEPT:
        break;
    }
    if (!plv_sync_direction(h, &reply, &push, &full)) {
        m.type = SIM_BULK_REPLY;
        m.reply = reply;
        m.epoch = ours;
        bulk_send(s, i, from, &m);
        job_fail(s, i, false, "neither end holds the VM");
        return;
    }
    x.id = ++s->next_xid;
    x.leader = from;
    x.sec = i;
    x.leader_inc = s->node[from].inc;
    x.sec_inc = nd->inc;
    x.src = push ? from : i;
    x.dst = push ? i : from;
    x.epoch = ours;
    x.full = full;
    x.outcome = SIM_X_OK;
    x.live = true;
    u = sunit(s);
    if (s->chaos && u < s->p_sync_fail) {
        x.outcome = u < s->p_sync_fail / 2 ? SIM_X_FAIL :
                    u < s->p_sync_fail * 0.75 ? SIM_X_ACK_LOST : SIM_X_COMMIT_FAIL;
    }
    x.done_at = G_MAXUINT64;    /* the engine runs once the leader heard the REPLY */
    g_array_append_val(s->xs, x);
    j->st = SIM_JOB_ENGINE;
    j->xid = x.id;
    j->deadline = s->now + SIM_SYNC_TIMEOUT;
    m.type = SIM_BULK_REPLY;
    m.reply = reply;
    m.epoch = ours;
    m.xid = x.id;
    bulk_send(s, i, from, &m);
}

static SimExchange *find_exchange(Sim *s, uint64_t xid)
{
    for (guint k = 0; k < s->xs->len; k++) {
        SimExchange *x = &g_array_index(s->xs, SimExchange, k);
        if (x->id == xid && x->live) {
            return x;
        }
    }
    return NULL;
}

static void leader_on_msg(Sim *s, uint32_t i, const SimBulk *m)
{
    SimJob *j = &s->node[i].job;
    SimExchange *x;
    bool push, full;

    if (j->st != SIM_JOB_HELLO || m->from != s->node[i].ex.secondary) {
        return;     /* a stale answer on a link since dropped */
    }
    if (m->type == SIM_BULK_SKIP) {
        if (plv_sync_skip_valid(j->sync.epoch, m->epoch)) {
            job_fail(s, i, true, "the secondary is past it");
        } else {
            job_fail(s, i, false, "a bad SKIP");
        }
        return;
    }
    if (m->type != SIM_BULK_REPLY || m->epoch != j->sync.epoch) {
        return;
    }
    j->answered = true;
    j->peer_has_vm = m->reply.has_vm;
    if (!plv_sync_direction(&j->sync.hello, &m->reply, &push, &full) || !m->xid) {
        if (plv_sync_fresh_boot(&j->sync.hello, &m->reply) ||
            (s->prm.broken == SIM_BROKEN_BOOT_ANY && !j->sync.hello.has_vm &&
             !m->reply.has_vm)) {
            PlvExecSyncResult r = { .boot = true };

            trace(s, "node %u: syncvm %" G_GUINT64_FORMAT " finds no VM, never "
                  "protected: boot", i, j->sync.epoch);
            job_end(s, i, &r);
            return;
        }
        job_fail(s, i, false, "neither end holds the VM");
        return;
    }
    x = find_exchange(s, m->xid);
    if (!x) {
        job_fail(s, i, false, "the secondary gave up");
        return;
    }
    x->done_at = s->now + 1 + sbelow(s, 3);
    j->deadline = s->now + SIM_SYNC_TIMEOUT;
    j->st = SIM_JOB_ENGINE;
    j->xid = m->xid;
    trace(s, "node %u: syncvm %" G_GUINT64_FORMAT " agreed (exchange %" G_GUINT64_FORMAT ")",
          i, j->sync.epoch, m->xid);
}

static void deliver_bulk(Sim *s)
{
    for (guint k = 0; k < s->bulk->len && s->res->ok;) {
        SimBulk m = g_array_index(s->bulk, SimBulk, k);
        SimNode *nd = &s->node[m.to];

        if (m.at > s->now) {
            k++;
            continue;
        }
        g_array_remove_index(s->bulk, k);
        if (s->prm.trace && getenv("PLOVER_SIM_MSGS")) {
            trace(s, "  bulk %u->%u type %d epoch %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
                  " (up %d inc %d cut %d, job %d)", m.from, m.to, m.type, m.hello.epoch,
                  m.epoch, nd->up, nd->inc == m.to_inc, s->cut[m.from][m.to], nd->job.st);
        }
        if (!nd->up || nd->inc != m.to_inc || s->cut[m.from][m.to]) {
            continue;
        }
        if (m.type == SIM_BULK_HELLO) {
            if (m.from != nd->ex.leader) {
                /* the glue takes the syncvm link of its view's leader only */
                continue;
            }
            if (nd->job.st == SIM_JOB_WAIT) {
                sec_on_hello(s, m.to, &m.hello, m.from);
            } else if (nd->job.st == SIM_JOB_ENGINE && !nd->job.sync.leader &&
                       m.hello.epoch > nd->job.sync.epoch) {
                /* The leader gave this syncvm up and dialed again: the
                 * engine's link breaks under it at once (the glue reads
                 * the old link), and the HELLO waits for the next one. */
                nd->kept = m.hello;
                nd->kept_valid = true;
                nd->kept_from = m.from;
                job_fail(s, m.to, false, "the leader dialed again");
            } else {
                /* unread on the link until this end waits for one */
                nd->kept = m.hello;
                nd->kept_valid = true;
                nd->kept_from = m.from;
            }
        } else {
            leader_on_msg(s, m.to, &m);
        }
    }
}

/* The cut: this end's VM as the syncvm will see it. */
static void job_start(Sim *s, uint32_t i, const PlvExecSync *sync)
{
    SimNode *nd = &s->node[i];
    SimJob *j = &nd->job;
    SimBulk m = { 0 };

    g_assert(j->st == SIM_JOB_NONE);
    j->sync = *sync;
    j->deadline = s->now + SIM_SYNC_TIMEOUT;
    if (j->cut) {
        g_array_unref(j->cut);
    }
    j->cut = chain_copy(nd->chain);
    j->cut_base = nd->vm_base;
    j->held = nd->outs->len;
    j->xid = 0;
    j->answered = j->peer_has_vm = false;
    trace(s, "node %u: syncvm %" G_GUINT64_FORMAT " at %" G_GUINT64_FORMAT " as %s "
          "(has_vm %d full %d last %" G_GUINT64_FORMAT " run-on %d, leader %d secondary %d)", i, sync->epoch,
          sync->index, sync->leader ? "leader" : "secondary", sync->hello.has_vm,
          sync->hello.full, sync->hello.last, sync->may_run_on, (int)nd->ex.leader, (int)nd->ex.secondary);
    if (sync->leader) {
        j->st = SIM_JOB_HELLO;
        m.type = SIM_BULK_HELLO;
        m.hello = sync->hello;
        bulk_send(s, i, nd->ex.secondary, &m);
        if (s->prm.broken == SIM_BROKEN_RELEASE_AT_CUT) {
            release(s, i, j->held, false);
        }
        return;
    }
    j->st = SIM_JOB_WAIT;
    if (nd->kept_valid) {
        PlvSyncHello h = nd->kept;
        nd->kept_valid = false;
        sec_on_hello(s, i, &h, nd->kept_from);
    }
}

static void exchanges_due(Sim *s)
{
    for (guint k = 0; k < s->xs->len && s->res->ok; k++) {
        /* a copy: ending a job may start the next, and grow s->xs */
        SimExchange xc = g_array_index(s->xs, SimExchange, k), *x = &xc;
        SimNode *l = &s->node[x->leader], *c = &s->node[x->sec];
        bool l_in, c_in;
        PlvExecSyncResult rl = { 0 }, rc = { 0 };
        SimNode *src, *dst;
        SimJob *sj;
        int outcome = x->outcome;

        if (!x->live) {
            continue;
        }
        if (x->done_at > s->now) {
            /* the secondary gave up before the leader joined */
            if (x->done_at == G_MAXUINT64 && (c->job.st != SIM_JOB_ENGINE ||
                                               c->job.xid != x->id || !c->up)) {
                g_array_index(s->xs, SimExchange, k).live = false;
            }
            continue;
        }
        g_array_index(s->xs, SimExchange, k).live = false;
        l_in = l->up && l->inc == x->leader_inc && l->job.st == SIM_JOB_ENGINE &&
               l->job.xid == x->id;
        c_in = c->up && c->inc == x->sec_inc && c->job.st == SIM_JOB_ENGINE &&
               c->job.xid == x->id;
        if (!l_in || !c_in || s->cut[x->leader][x->sec] || s->cut[x->sec][x->leader]) {
            outcome = SIM_X_FAIL;
        }
        src = &s->node[x->src];
        dst = &s->node[x->dst];
        sj = &src->job;
        if (outcome != SIM_X_FAIL && !x->full && sj->cut_base != dst->job.cut_base) {
            violate(s, "syncvm %" G_GUINT64_FORMAT ": a delta from node %u to node %u, "
                    "whose VMs do not share a base", x->epoch, x->src, x->dst);
            return;
        }
        trace(s, "syncvm %" G_GUINT64_FORMAT ": %u -> %u %s: %s%s%s", x->epoch, x->src,
              x->dst, x->full ? "full" : "delta",
              (const char *[]){ "ok", "failed", "ack lost", "commit failed" }[outcome],
              l_in ? "" : " (the leader left)", c_in ? "" : " (the secondary left)");
        rl.snapshot = l->job.sync.may_run_on;
        rl.held = l->job.held;
        rl.peer_answered = true;
        rl.peer_has_vm = l->job.peer_has_vm;
        /* The target applied (ACK lost), tore its VM, or failed before or
         * after the device state left the leader: half of the plain
         * failures say "may have applied", as the glue would. */
        rl.peer_may_apply = outcome == SIM_X_ACK_LOST || outcome == SIM_X_COMMIT_FAIL ||
                            (outcome == SIM_X_FAIL && (x->id & 1));
        switch (outcome) {
        case SIM_X_OK:
        case SIM_X_ACK_LOST: {
            /* the target applied the source's cut; the source heard of it
             * unless the ACK was lost */
            bool src_ok = outcome == SIM_X_OK;
            g_array_unref(dst->chain);
            dst->chain = chain_copy(sj->cut);
            dst->vm_base = chain_base(sj->cut);
            if (src_ok) {
                src->vm_base = dst->vm_base;
            }
            rl.ok = x->dst == x->leader ? true : src_ok;
            rc.ok = x->dst == x->sec ? true : src_ok;
            if (rl.ok) {
                /* what the leader may release: the cut its secondary holds */
                if (l->covered) {
                    g_array_unref(l->covered);
                }
                l->covered = chain_copy(sj->cut);
            }
            break;
        }
        case SIM_X_COMMIT_FAIL: {
            /* half of the pages written: a VM of two states */
            uint64_t torn = mix64(chain_top(sj->cut), 0xdead);
            g_array_unref(dst->chain);
            dst->chain = chain_copy(sj->cut);
            g_array_append_val(dst->chain, torn);
            dst->vm_base = torn;
            if (x->dst == x->leader) {
                rl.commit_failed = true;
            } else {
                rc.commit_failed = true;
            }
            break;
        }
        default:
            break;
        }
        if (c_in) {
            job_end(s, x->sec, &rc);
        }
        if (l_in) {
            job_end(s, x->leader, &rl);
        }
    }
    for (guint k = 0; k < s->xs->len;) {
        if (!g_array_index(s->xs, SimExchange, k).live) {
            g_array_remove_index_fast(s->xs, k);
        } else {
            k++;
        }
    }
}

static void jobs_due(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n && s->res->ok; i++) {
        SimJob *j = &s->node[i].job;
        if (!s->node[i].up || j->st == SIM_JOB_NONE) {
            continue;
        }
        if (s->now >= j->deadline) {
            /* the glue: a secondary with no word from its leader keeps the
             * link (a skew); a leader with no answer drops it */
            job_fail(s, i, j->st == SIM_JOB_WAIT, "timed out");
        } else if (plv_exec_sync_moot(&s->node[i].ex,
                                      plv_paxos_role(s->node[i].px))) {
            /* the glue gives a deposed leader's syncvm up at once */
            s->res->abandoned++;
            job_fail(s, i, false, "abandoned: consensus deposed its leader");
        }
    }
}

/* ---- the executor's actions ---- */

static void pump(Sim *s, uint32_t i);

static void exec_ready(Sim *s, uint32_t i, PlvExecReady *rd, const PlvEntry *e)
{
    SimNode *nd = &s->node[i];

    for (size_t k = 0; k < rd->n && s->res->ok; k++) {
        PlvExecAction a = rd->a[k];

        if (s->prm.trace && getenv("PLOVER_SIM_ACTIONS")) {
            trace(s, "node %u: %s", i, plv_exec_action_name(a.kind));
        }
        switch (a.kind) {
        case PLV_EXEC_DISCARD:
            if (s->prm.broken == SIM_BROKEN_KEEP_VM) {
                break;
            }
            vm_discard(nd);
            if (!exec_vm_held(s) && !s->vm_lost_why[0]) {
                snprintf(s->vm_lost_why, sizeof(s->vm_lost_why), "tick %" G_GUINT64_FORMAT
                         ": node %u (%s, handoff %d) discarded the last copy on %s", s->now,
                         i, plv_role_name(nd->ex.role), nd->ex.handoff, s->step_what);
                trace(s, "VM lost: %s", s->vm_lost_why);
            }
            break;
        case PLV_EXEC_BOOT_VM:
            /* From power-on: no client may have seen the lost VM say
             * anything (check_history fails if one did). */
            vm_discard(nd);
            s->res->boots++;
            check_history(s, i, "boots the VM again");
            break;
        case PLV_EXEC_INJECT: {
            PlvBatchIter it;
            const uint8_t *pkt;
            uint32_t plen;

            plv_batch_iter_entry(&it, e);
            while (plv_batch_next(&it, &pkt, &plen)) {
                uint64_t id = packet_id(pkt, plen);
                uint64_t h = mix64(mix64(chain_top(nd->chain), id), srnd(s));
                SimOut o;

                g_array_append_val(nd->chain, h);
                o = (SimOut){ .n = nd->chain->len, .h = h, .pkt = id };
                g_array_append_val(nd->outs, o);
            }
            break;
        }
        case PLV_EXEC_SYNCVM:
            job_start(s, i, &a.sync);
            break;
        case PLV_EXEC_SYNCVM_ALONE:
            if (nd->covered) {
                g_array_unref(nd->covered);
                nd->covered = NULL;
            }
            break;
        case PLV_EXEC_APPLIED_SYNCVM:
            plv_paxos_applied_syncvm(nd->px, a.index);
            break;
        case PLV_EXEC_RELEASE:
            release(s, i, a.count, false);
            break;
        case PLV_EXEC_KEEP_VM:
            s->res->kept++;
            g_array_set_size(nd->outs, 0);
            break;
        case PLV_EXEC_DROP_OUTPUTS:
            if (s->prm.broken == SIM_BROKEN_RELEASE_ON_SECONDARY && nd->outs->len) {
                release(s, i, nd->outs->len, true);
            }
            g_array_set_size(nd->outs, 0);
            break;
        case PLV_EXEC_REQUEST_SYNCVM:
            if (exec_may_propose(s, i)) {
                plv_paxos_propose_syncvm(nd->px, ++s->epoch, &s->rd);
                process_ready(s, i);
            }
            break;
        case PLV_EXEC_SYNCVM_OVER:
            nd->proposed_at = 0;
            break;
        case PLV_EXEC_DROP_LINK:
            nd->kept_valid = false;
            break;
        case PLV_EXEC_INSTALL_SNAPSHOT:
            nd->snap_index = a.index;
            nd->snap_at = s->now + sbelow(s, 10);
            break;
        case PLV_EXEC_ADD_ERR:
            plv_paxos_add_err(nd->px, a.peer);
            break;
        case PLV_EXEC_RESET_ERR:
            plv_paxos_reset_err(nd->px, a.peer);
            break;
        case PLV_EXEC_TRANSFER:
            if (plv_paxos_transfer_leadership(nd->px, a.peer, &s->rd) < 0) {
                plv_ready_clear(&s->rd);
                plv_exec_transfer_failed(&nd->ex, rd);
            } else {
                trace(s, "node %u: hands leadership to %u", i, a.peer);
                process_ready(s, i);
            }
            break;
        case PLV_EXEC_HANDOFF_TIMER:
            nd->handoff_deadline = s->now + MAX(1u, a.ms / SIM_HANDOFF_MS_PER_TICK);
            break;
        case PLV_EXEC_HANDOFF_CANCEL:
            nd->handoff_deadline = 0;
            break;
        case PLV_EXEC_HANDOFF_DONE:
            s->res->exec_handoffs++;
            break;
        default:
            break;
        }
    }
    plv_exec_ready_clear(rd);
}

static void job_end(Sim *s, uint32_t i, const PlvExecSyncResult *r)
{
    SimNode *nd = &s->node[i];
    PlvExecReady rd;

    nd->job.st = SIM_JOB_NONE;
    s->res->syncvms += r->ok;
    s->res->sync_failures += !r->ok;
    plv_exec_ready_init(&rd);
    snprintf(s->step_what, sizeof(s->step_what), "the end of a syncvm (ok %d commit_failed %d)",
             r->ok, r->commit_failed);
    plv_exec_sync_done(&nd->ex, r, &rd);
    exec_ready(s, i, &rd, NULL);
    plv_exec_ready_destroy(&rd);
    pump(s, i);
}

/* Hand the node's queued events and entries to its executor, in order,
 * until one must wait for the syncvm in flight. */
static void pump(Sim *s, uint32_t i)
{
    SimNode *nd = &s->node[i];
    PlvExecReady rd;

    if (nd->pumping || !nd->up) {
        return;
    }
    nd->pumping = true;
    plv_exec_ready_init(&rd);
    while (nd->inbox->len && s->res->ok && nd->up) {
        SimItem it = g_array_index(nd->inbox, SimItem, 0);
        bool runs_on = nd->job.st != SIM_JOB_NONE && nd->job.sync.may_run_on;

        if (plv_exec_must_wait(&nd->ex, it.is_event ? PLV_OP_NOOP : it.e.op, runs_on)) {
            break;
        }
        g_array_remove_index(nd->inbox, 0);
        snprintf(s->step_what, sizeof(s->step_what), "%s",
                 it.is_event ? (it.ev.kind == PLV_EV_ROLE ? plv_role_name(it.ev.role) : "an event")
                             : (it.e.op == PLV_OP_SYNCVM ? "a syncvm entry" : "an entry"));
        if (it.is_event) {
            switch (it.ev.kind) {
            case PLV_EV_ROLE:
                plv_exec_role(&nd->ex, it.ev.old_role, it.ev.role,
                              s->prm.broken == SIM_BROKEN_KEEP_UNCHECKED ? 0 : it.ev.other_vid,
                              &rd);
                if (s->prm.broken == SIM_BROKEN_KEEP_ANY &&
                    it.ev.role == PLV_ROLE_WITNESS &&
                    (it.ev.old_role == PLV_ROLE_LEADER ||
                     it.ev.old_role == PLV_ROLE_CANDIDATE)) {
                    /* kept as if it were the only copy */
                    nd->ex.kept_provisional = false;
                    for (size_t k = 0; k < rd.n; k++) {
                        if (rd.a[k].kind == PLV_EXEC_DISCARD) {
                            /* kept although its secondary may hold the VM */
                            rd.a[k].kind = PLV_EXEC_KEEP_VM;
                            nd->ex.kept = true;
                        }
                    }
                }
                if (it.ev.role == PLV_ROLE_LEADER && nd->ex.executing &&
                    nd->ex.vid >= s->newest_vid) {
                    /* elected in the newest view, and runs on from the VM
                     * it holds (an older view's leader learning late that
                     * it led cannot release: its secondary has moved on) */
                    check_history(s, i, "leads");
                }
                break;
            case PLV_EV_VIEW:
                plv_exec_view(&nd->ex, it.ev.vid, it.ev.leader, &rd);
                break;
            case PLV_EV_NEEDS_SNAPSHOT:
                plv_exec_needs_snapshot(&nd->ex, it.ev.snap.index, it.ev.snap.secondary, &rd);
                break;
            default:
                break;
            }
            exec_ready(s, i, &rd, NULL);
        } else {
            plv_exec_committed(&nd->ex, &it.e, &rd);
            if (s->prm.broken == SIM_BROKEN_SECOND_KEEPS_VM && it.e.op == PLV_OP_SECOND) {
                for (size_t k = 0; k < rd.n; k++) {
                    if (rd.a[k].kind == PLV_EXEC_DISCARD) {
                        rd.a[k].kind = PLV_EXEC_HANDOFF_CANCEL;  /* a no-op here */
                        nd->ex.executing = true;    /* and the executor runs on */
                    }
                }
            }
            exec_ready(s, i, &rd, &it.e);
            plv_entry_clear(&it.e);
        }
        if (nd->up && nd->px) {
            /* as the glue does (plover_perform_all) */
            plv_paxos_set_kept(nd->px, nd->ex.kept ? nd->ex.kept_vid : 0);
        }
    }
    plv_exec_ready_destroy(&rd);
    nd->pumping = false;
}

/* process_ready's part: queue what consensus handed this node. */
static void exec_queue(Sim *s, uint32_t i, PlvReady *rd)
{
    SimNode *nd = &s->node[i];

    for (guint k = 0; k < rd->events->len; k++) {
        SimItem it = { .is_event = true, .ev = g_array_index(rd->events, PlvEvent, k) };
        g_array_append_val(nd->inbox, it);
    }
    for (guint k = 0; k < rd->committed->len; k++) {
        SimItem it = { .is_event = false };
        plv_entry_copy(&it.e, &g_array_index(rd->committed, PlvEntry, k));
        g_array_append_val(nd->inbox, it);
    }
}

static void exec_node_init(Sim *s, uint32_t i, bool restarted)
{
    SimNode *nd = &s->node[i];
    PlvExecConfig c = {
        .self = i,
        .restarted = restarted,
        .suspect_ms = s->cfg.suspect_ticks,
        .election_ms = s->cfg.election_ticks,
        .syncvm_timeout_ms = SIM_SYNC_TIMEOUT,
        .max_sync_interval_ms = 12,
    };

    plv_exec_init(&nd->ex, &c);
    if (!nd->chain) {
        nd->chain = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        nd->outs = g_array_new(FALSE, FALSE, sizeof(SimOut));
        nd->inbox = g_array_new(FALSE, FALSE, sizeof(SimItem));
    }
    vm_discard(nd);
    for (guint k = 0; k < nd->inbox->len; k++) {
        SimItem *it = &g_array_index(nd->inbox, SimItem, k);
        if (!it->is_event) {
            plv_entry_clear(&it->e);
        }
    }
    g_array_set_size(nd->inbox, 0);
    if (nd->job.cut) {
        g_array_unref(nd->job.cut);
    }
    memset(&nd->job, 0, sizeof(nd->job));
    if (nd->covered) {
        g_array_unref(nd->covered);
        nd->covered = NULL;
    }
    nd->kept_valid = false;
    nd->handoff_deadline = 0;
    nd->proposed_at = 0;
    nd->pumping = false;
}

static void exec_node_free(SimNode *nd)
{
    if (!nd->chain) {
        return;
    }
    for (guint k = 0; k < nd->inbox->len; k++) {
        SimItem *it = &g_array_index(nd->inbox, SimItem, k);
        if (!it->is_event) {
            plv_entry_clear(&it->e);
        }
    }
    g_array_unref(nd->inbox);
    g_array_unref(nd->chain);
    g_array_unref(nd->outs);
    if (nd->job.cut) {
        g_array_unref(nd->job.cut);
    }
    if (nd->covered) {
        g_array_unref(nd->covered);
    }
}

/*
 * Faults must leave the VM with someone: the leader and its secondary
 * both execute, paired by a syncvm (f = 1 for the VM as for the log).
 * With one copy, losing its holder loses the VM, and a partition counts:
 * a holder cut off is replaced, and discards its copy when it rejoins as
 * a witness.
 */
/* No syncvm with a peer has completed yet, and nobody restarted: the
 * group is forming. A crash then (the first leader's, above all) must
 * not leave the VM lost for good (PLV_EXEC_BOOT_VM). */
static bool exec_never_protected(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (s->node[i].ex.syncs || s->node[i].inc > 1) {
            return false;
        }
    }
    return true;
}

static bool exec_protected(Sim *s)
{
    uint32_t l = sim_leader(s), sec;
    SimNode *ln, *sn;

    if (l == PLV_NODE_NONE) {
        return false;
    }
    /* as consensus has it, and as both executors have caught up to */
    ln = &s->node[l];
    sec = plv_paxos_secondary(ln->px);
    if (sec == PLV_NODE_NONE || sec == l || ln->ex.role != PLV_ROLE_LEADER ||
        !ln->ex.executing || ln->ex.secondary != sec || ln->ex.paired != sec) {
        return false;
    }
    sn = &s->node[sec];
    return sn->up && plv_paxos_role(sn->px) == PLV_ROLE_SECONDARY &&
           sn->ex.role == PLV_ROLE_SECONDARY && sn->ex.executing;
}

static bool exec_vm_held(Sim *s)
{
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (s->node[i].up && (s->node[i].ex.executing || s->node[i].ex.kept)) {
            return true;
        }
    }
    return false;
}

/* One fault at a time for the VM: no crash during a partition, no
 * partition while a node is down (sim.c), each only while protected. */
static bool exec_may_crash(Sim *s)
{
    return !s->heal_partition_at && (exec_protected(s) || exec_never_protected(s));
}

static bool exec_may_partition(Sim *s)
{
    if (s->prm.double_faults) {
        return true;
    }
    for (uint32_t i = 0; i < s->prm.n; i++) {
        if (!s->node[i].up) {
            return false;
        }
    }
    return exec_protected(s);
}

/*
 * As plover_request_syncvm: one proposal at a time, from the proposal to
 * the end of its execution; one lost to a view change is retried after
 * twice the syncvm timeout.
 */
static bool exec_may_propose(Sim *s, uint32_t i)
{
    SimNode *nd = &s->node[i];

    if (nd->proposed_at && s->now - nd->proposed_at < 2 * SIM_SYNC_TIMEOUT) {
        return false;
    }
    nd->proposed_at = MAX(s->now, 1);
    return true;
}

/* One tick of the executor side. */
static void exec_tick(Sim *s)
{
    deliver_bulk(s);
    exchanges_due(s);
    jobs_due(s);
    for (uint32_t i = 0; i < s->prm.n && s->res->ok; i++) {
        SimNode *nd = &s->node[i];
        if (nd->up && nd->handoff_deadline && s->now >= nd->handoff_deadline) {
            PlvExecReady rd;
            nd->handoff_deadline = 0;
            plv_exec_ready_init(&rd);
            snprintf(s->step_what, sizeof(s->step_what), "the handoff deadline");
            plv_exec_handoff_timeout(&nd->ex, &rd);
            exec_ready(s, i, &rd, NULL);
            plv_exec_ready_destroy(&rd);
        }
        pump(s, i);
    }
    check_witness(s);
}

/* The operator migrates leadership now and then. */
static void exec_load(Sim *s, uint32_t i)
{
    PlvExecReady rd;

    if (sunit(s) >= 0.01) {
        return;
    }
    plv_exec_ready_init(&rd);
    if (plv_exec_migrate_leader(&s->node[i].ex, &rd) == PLV_EXEC_MIGRATE_OK) {
        trace(s, "node %u: migrate leadership to %u", i, s->node[i].ex.secondary);
        s->res->migrations++;
    }
    exec_ready(s, i, &rd, NULL);
    plv_exec_ready_destroy(&rd);
}
