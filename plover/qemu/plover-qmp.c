/*
 * QMP commands of the replica (schema: plover/qemu/qapi/plover.json).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/clone-visitor.h"
#include "qapi/qapi-commands-plover.h"
#include "qapi/qapi-visit-plover.h"
#include "plover-state.h"
#include "plover-bulk.h"

static PloverRole plover_role_of(PlvStartRole r)
{
    switch (r) {
    case PLV_START_LEADER:
        return PLOVER_ROLE_LEADER;
    case PLV_START_SECONDARY:
        return PLOVER_ROLE_SECONDARY;
    case PLV_START_WITNESS:
        return PLOVER_ROLE_WITNESS;
    case PLV_START_AUTO:
    default:
        return PLOVER_ROLE_AUTO;
    }
}

static PloverRole plover_current_role(const PloverState *s)
{
    return s->driver ? plover_qapi_role(s->exec.role) : PLOVER_ROLE_NONE;
}

static PloverPeerState plover_peer_state(PlvPeerLinkState st)
{
    switch (st) {
    case PLV_PEER_LINK_UP:
        return PLOVER_PEER_STATE_UP;
    case PLV_PEER_LINK_CONNECTING:
        return PLOVER_PEER_STATE_CONNECTING;
    default:
        return PLOVER_PEER_STATE_DOWN;
    }
}

static PloverPeerInfoList *plover_peers_info(const PloverState *s)
{
    PloverPeerInfoList *head = NULL, **tail = &head;
    PlvPeerLinkInfo links[PLV_MAX_REPLICAS];
    int64_t now = g_get_monotonic_time();

    if (s->driver) {
        plv_driver_peer_links(s->driver, links, s->cfg.n_peers);
    }
    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        PloverPeerInfo *p = g_new0(PloverPeerInfo, 1);

        p->id = i;
        p->host = g_strdup(s->cfg.peers[i].host);
        p->port = s->cfg.peers[i].port;
        if (i == s->cfg.id) {
            p->state = PLOVER_PEER_STATE_LOCAL;
        } else if (!s->driver) {
            p->state = PLOVER_PEER_STATE_UNKNOWN;
        } else {
            p->state = plover_peer_state(links[i].state);
            if (links[i].last_heard_us) {
                p->has_last_heard_ms = true;
                p->last_heard_ms = MAX(0, now - links[i].last_heard_us) / 1000;
            }
        }
        QAPI_LIST_APPEND(tail, p);
    }
    return head;
}

static PloverTimeouts *plover_timeouts_info(const PlvConfig *cfg)
{
    PloverTimeouts *t = g_new0(PloverTimeouts, 1);

    t->heartbeat_ms = cfg->heartbeat_ms;
    t->suspect_ms = cfg->suspect_ms;
    t->election_ms = cfg->election_ms;
    t->syncvm_timeout_ms = cfg->syncvm_timeout_ms;
    t->idle_threshold_us = cfg->idle_threshold_us;
    t->idle_window_us = cfg->idle_window_us;
    t->max_sync_interval_ms = cfg->max_sync_interval_ms;
    return t;
}

/* The full syncvm this replica is sending, if any (syncvm thread's atomics). */
static PloverFullProgress *plover_full_progress(PloverState *s)
{
    PloverFullProgress *p;
    uint64_t bound = 0, rate = (uint64_t)s->cfg.reprotect_mbps * 1000000 / 8;

    if (!qatomic_read(&s->syncvm.full_active)) {
        return NULL;
    }
    for (unsigned i = 0; i < plv_memview_n_regions(s->syncvm.mv); i++) {
        const PlvMemRegion *r = plv_memview_region_const(s->syncvm.mv, i);

        bound += r->n_pages * (uint64_t)r->page_size;
    }
    p = g_new0(PloverFullProgress, 1);
    p->elapsed_ms = (g_get_monotonic_time() -
                     qatomic_read(&s->syncvm.full_start_us)) / 1000;
    p->round = qatomic_read(&s->syncvm.full_round);
    p->bytes_sent = qatomic_read(&s->syncvm.full_sent);
    p->bytes_bound = bound;
    if (rate) {
        p->has_eta_max_ms = true;
        p->eta_max_ms = (bound > p->bytes_sent ? bound - p->bytes_sent : 0) *
                        1000 / rate;
    }
    return p;
}

static PloverSyncvmInfo *plover_syncvm_info(PloverState *s)
{
    const PloverSyncStats *a = &s->syncvm.stats;
    PloverSyncvmInfo *i = g_new0(PloverSyncvmInfo, 1);
    uint64_t n = MAX(a->count, 1);
    int64_t wall = qemu_clock_get_us(QEMU_CLOCK_REALTIME) - a->first_cut_us;

    i->count = a->count;
    i->failures = a->failures;
    i->skews = a->skews;
    i->commit_failures = a->commit_failures;
    i->abandoned = a->abandoned;
    i->full_count = a->full;
    i->dirty_pages = a->last.dirty_union;
    i->same_page_rate = a->count ? a->last.same_rate : 0;
    i->mean_same_page_rate = a->sum_dirty ? (double)a->sum_same / a->sum_dirty : 0;
    i->divergent_pages = a->last.divergent_pages;
    i->bytes_sent = a->last.bytes_sent;
    i->total_bytes_sent = a->sum_bytes;
    i->last_compute_us = a->last.t_compute_us;
    i->last_compare_us = a->last.t_compare_us;
    i->last_transfer_us = a->last.t_transfer_us;
    i->last_apply_us = a->last.t_apply_us;
    i->last_total_us = a->last.t_total_us;
    i->last_pause_us = a->last_pause_us;
    i->mean_compute_us = a->sum_compute_us / n;
    i->mean_compare_us = a->sum_compare_us / n;
    i->mean_transfer_us = a->sum_transfer_us / n;
    i->mean_apply_us = a->sum_apply_us / n;
    i->mean_total_us = a->sum_total_us / n;
    i->pause_p50_us = plv_latency_quantile(&a->pause, 0.5);
    i->pause_p99_us = plv_latency_quantile(&a->pause, 0.99);
    i->pause_max_us = a->pause.max;
    i->paused_us = a->paused_us;
    i->paused_share = a->first_cut_us && wall > 0 ? (double)a->paused_us / wall : 0;
    i->release_p50_us = plv_latency_quantile(&a->release, 0.5);
    i->release_p99_us = plv_latency_quantile(&a->release, 0.99);
    i->secondary_lag_p50_us = plv_latency_quantile(&a->lag, 0.5);
    i->secondary_lag_p99_us = plv_latency_quantile(&a->lag, 0.99);
    i->snapshot_count = a->snapshots;
    i->disk_blocks_union = a->disk_blocks_union;
    i->precopy_rounds = a->precopy_rounds;
    i->precopy_final_pages = a->precopy_final_pages;
    i->disk_blocks_written = a->disk_blocks_written;
    i->full_progress = plover_full_progress(s);
    i->in_flight = s->syncvm.job != NULL;
    i->cow_pages = s->syncvm.snap ? plover_snapshot_cow_pages(s->syncvm.snap) : 0;
    i->bql_hold_p99_us = plv_latency_quantile(&a->bql_hold, 0.99);
    i->bql_hold_max_us = a->bql_hold.max;
    i->bql_hold_cpu_max_us = a->bql_hold_cpu_max_us;
    i->total_bytes_received = a->sum_received;
    i->bytes_p50 = plv_latency_quantile(&a->bytes, 0.5);
    i->bytes_p90 = plv_latency_quantile(&a->bytes, 0.9);
    i->exchange_bytes_p50 = plv_latency_quantile(&a->exchange, 0.5);
    i->exchange_bytes_p90 = plv_latency_quantile(&a->exchange, 0.9);
    i->bytes_by_kind = g_new0(PloverSyncvmBytes, 1);
    i->bytes_by_kind->bitmaps = a->sum_by_kind[PLV_SVM_BYTES_BITMAP];
    i->bytes_by_kind->fingerprints = a->sum_by_kind[PLV_SVM_BYTES_FINGERPRINTS];
    i->bytes_by_kind->page_data = a->sum_by_kind[PLV_SVM_BYTES_PAGES];
    i->bytes_by_kind->device_state = a->sum_by_kind[PLV_SVM_BYTES_DEVSTATE];
    i->bytes_by_kind->control = a->sum_by_kind[PLV_SVM_BYTES_CONTROL];
    i->delta_pages = a->sum_delta_pages;
    i->page_data_raw_bytes = a->sum_page_raw;
    i->secondary_idle_waits = s->idle_wait.waits;
    i->secondary_idle_wait_bounded = s->idle_wait.bounded;
    i->secondary_idle_wait_p50_us = plv_latency_quantile(&s->idle_wait.waited, 0.5);
    i->secondary_idle_wait_p99_us = plv_latency_quantile(&s->idle_wait.waited, 0.99);
    return i;
}

static PloverNetInfo *plover_net_info(const PloverState *s)
{
    PloverNetInfo *i = g_new0(PloverNetInfo, 1);

    i->inputs_submitted = s->net.inputs_submitted;
    i->inputs_refused = s->net.inputs_refused;
    i->inputs_ignored = s->net.inputs_ignored;
    i->inputs_forwarded = s->net.inputs_forwarded;
    i->inputs_injected = s->net.inputs_injected;
    i->outputs_held = g_queue_get_length((GQueue *)&s->net.outputs);
    i->outputs_released = s->net.outputs_released;
    i->outputs_dropped = s->net.outputs_dropped;
    i->idle_triggers = s->idle_triggers;
    i->bound_triggers = s->bound_triggers;
    i->size_triggers = s->net.size_triggers;
    i->outputs_held_bytes = qatomic_read(&s->net.outputs_bytes);
    i->outputs_held_peak_bytes = s->net.outputs_peak_bytes;
    i->outputs_over_cap = s->net.outputs_over_cap;
    i->inputs_pending_bytes = s->net.inputs_bytes;
    i->inputs_over_cap = s->net.inputs_over_cap;
    return i;
}

static PloverListenerInfo *plover_listener_info(const PlvLinkAcceptorStats *st)
{
    PloverListenerInfo *i = g_new0(PloverListenerInfo, 1);

    i->accepted = st->accepted;
    i->strangers = st->strangers;
    i->failed = st->failed;
    i->tls_refused = st->tls_refused;
    i->timed_out = st->timed_out;
    i->evicted = st->evicted;
    i->replaced = st->replaced;
    return i;
}

static PloverLinksInfo *plover_links_info(PloverState *s)
{
    PloverLinksInfo *i = g_new0(PloverLinksInfo, 1);
    PlvLinkAcceptorStats st = { 0 };

    if (s->syncvm.bulk_listener) {
        plover_bulk_listener_stats(s->syncvm.bulk_listener, &st);
    }
    i->syncvm = plover_listener_info(&st);
    if (s->driver) {
        PlvDriverStats ds;

        plv_driver_stats(s->driver, &ds);
        i->consensus_strangers = ds.transport.rejected_strangers;
        i->consensus_evicted = ds.transport.pending_evicted;
        i->consensus_auth_failures = ds.transport.auth_failures;
        i->consensus_tls_refused = ds.transport.tls_refused;
    }
    return i;
}

static PloverConsensusStateInfo *plover_consensus_state_info(PloverState *s)
{
    PloverConsensusStateInfo *i = g_new0(PloverConsensusStateInfo, 1);
    PlvDriverStats ds;

    i->file = g_strdup(s->paxos_path);
    i->restored = s->restored_state;
    plv_driver_stats(s->driver, &ds);
    i->writes = ds.store.appends;
    i->bytes = ds.store.bytes;
    i->compactions = ds.store.compactions;
    i->sync_max_us = ds.store.sync_us_max;
    i->sync_mean_us = ds.store.appends ? ds.store.sync_us_total / ds.store.appends : 0;
    i->slow_syncs = ds.store.slow_syncs;
    i->failed = ds.store_failed;
    return i;
}

PloverInfo *qmp_query_plover(Error **errp)
{
    PloverState *s = plover_state();
    PloverInfo *info = g_new0(PloverInfo, 1);

    info->enabled = s->initialized;
    if (!s->initialized) {
        return info;
    }
    info->has_id = true;
    info->id = s->cfg.id;
    info->has_configured_role = true;
    info->configured_role = plover_role_of(s->cfg.role);
    info->has_role = true;
    info->role = plover_current_role(s);
    info->has_vid = true;
    info->vid = s->exec.vid;
    info->has_epoch = true;
    info->epoch = s->exec.epoch;
    info->has_n_err = true;
    info->n_err = s->n_err;
    info->netdev = g_strdup(s->cfg.netdev);
    info->has_transport = true;
    info->transport = s->cfg.transport == PLV_TRANSPORT_RDMA ?
        PLOVER_TRANSPORT_RDMA : PLOVER_TRANSPORT_TCP;
    info->secret = g_strdup(s->cfg.secret);
    info->tls_creds = g_strdup(s->cfg.tls_creds);
    info->state = g_strdup(s->cfg.state);
    info->has_incarnation = true;
    info->incarnation = s->incarnation;
    if (s->driver && s->cfg.durable) {
        info->consensus_state = plover_consensus_state_info(s);
    }
    info->has_handoffs = true;
    info->handoffs = s->exec.handoffs;
    info->has_peers = true;
    info->peers = plover_peers_info(s);
    info->timeouts = plover_timeouts_info(&s->cfg);
    if (s->exec.leader != PLV_NODE_NONE && s->driver) {
        info->has_leader = true;
        info->leader = s->exec.leader;
    }
    if (s->exec.secondary != PLV_NODE_NONE && s->driver) {
        info->has_secondary = true;
        info->secondary = s->exec.secondary;
    }
    info->has_executing = true;
    info->executing = s->exec.executing;
    info->has_kept = true;
    info->kept = s->exec.kept;
    info->has_kept_provisional = true;
    info->kept_provisional = s->exec.kept_provisional;
    info->has_kept_stale = true;
    info->kept_stale = s->exec.kept_stale;
    if (s->driver) {
        info->has_commit_index = true;
        info->commit_index = plv_driver_commit_index(s->driver);
    }
    info->syncvm = plover_syncvm_info(s);
    info->net = plover_net_info(s);
    info->links = plover_links_info(s);
    info->disks = plover_disk_query(s);
    info->has_disks = info->disks != NULL;
    info->run_control = g_new0(PloverRunControlInfo, 1);
    info->run_control->held = s->run.hold;
    info->run_control->vm_wanted = s->run.vm_wanted;
    info->run_control->powered_off = s->run.powered_off;
    info->run_control->refused = s->run.refused;
    return info;
}

PloverDigestList *qmp_x_plover_ram_digest(bool has_record, bool record,
                                          Error **errp)
{
    PloverState *s = plover_state();
    PloverDigestList *head = NULL, **tail = &head;
    PloverDigest *now;
    Error *err = NULL;

    if (!s->initialized) {
        error_setg(errp, "plover is not enabled (no -plover option)");
        return NULL;
    }
    if (has_record) {
        s->record_digests = record;
    }
    now = g_new0(PloverDigest, 1);
    now->digest = plover_ram_digest(&now->ram_parts);
    now->disks = plover_disk_digest(s, &err);
    if (err) {
        error_propagate(errp, err);
        qapi_free_PloverDigest(now);
        return NULL;
    }
    QAPI_LIST_APPEND(tail, now);
    for (GList *l = s->digests.head; l; l = l->next) {
        QAPI_LIST_APPEND(tail, QAPI_CLONE(PloverDigest, l->data));
    }
    return head;
}

void qmp_plover_migrate_leader(Error **errp)
{
    PloverState *s = plover_state();

    if (!s->initialized) {
        error_setg(errp, "plover is not enabled (no -plover option)");
        return;
    }
    plover_migrate_leader(s, errp);
}

void qmp_x_plover_inject_fault(PloverFault fault, Error **errp)
{
    PloverState *s = plover_state();

    if (!s->initialized) {
        error_setg(errp, "plover is not enabled (no -plover option)");
        return;
    }
    s->fault = fault;
}
