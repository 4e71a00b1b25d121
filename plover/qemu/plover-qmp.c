/*
 * QMP commands of the replica (schema: plover/qemu/qapi/plover.json).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-plover.h"
#include "plover-state.h"

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

static PloverPeerInfoList *plover_peers_info(const PloverState *s)
{
    PloverPeerInfoList *head = NULL, **tail = &head;

    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        PloverPeerInfo *p = g_new0(PloverPeerInfo, 1);

        p->id = i;
        p->host = g_strdup(s->cfg.peers[i].host);
        p->port = s->cfg.peers[i].port;
        p->state = i == s->cfg.id ? PLOVER_PEER_STATE_LOCAL : PLOVER_PEER_STATE_UNKNOWN;
        QAPI_LIST_APPEND(tail, p);
    }
    return head;
}

static PloverTimeouts *plover_timeouts_info(const PlvConfig *cfg)
{
    PloverTimeouts *t = g_new0(PloverTimeouts, 1);

    t->heartbeat_ms = cfg->heartbeat_ms;
    t->suspect_ms = cfg->suspect_ms;
    t->syncvm_timeout_ms = cfg->syncvm_timeout_ms;
    t->idle_threshold_us = cfg->idle_threshold_us;
    t->idle_window_us = cfg->idle_window_us;
    t->max_sync_interval_ms = cfg->max_sync_interval_ms;
    return t;
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
    info->role = s->role;
    info->has_vid = true;
    info->vid = s->vid;
    info->has_epoch = true;
    info->epoch = s->epoch;
    info->has_n_err = true;
    info->n_err = s->n_err;
    info->netdev = g_strdup(s->cfg.netdev);
    info->has_transport = true;
    info->transport = s->cfg.transport == PLV_TRANSPORT_RDMA ?
        PLOVER_TRANSPORT_RDMA : PLOVER_TRANSPORT_TCP;
    info->secret = g_strdup(s->cfg.secret);
    info->has_peers = true;
    info->peers = plover_peers_info(s);
    info->timeouts = plover_timeouts_info(&s->cfg);
    return info;
}
