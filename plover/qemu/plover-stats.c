/*
 * The replica's figures in QEMU's query-stats (provider "plover", target
 * "vm"), for monitoring that knows QEMU's stats schema but not
 * query-plover's. The values are query-plover's own, read from the
 * PloverInfo it builds, so the two never disagree. docs/operations.md
 * lists the stats and the numbers "role" takes.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-plover.h"
#include "system/stats.h"
#include "plover-state.h"

enum {
    PLOVER_STAT_ROLE,
    PLOVER_STAT_EXECUTING,
    PLOVER_STAT_VIEW,
    PLOVER_STAT_COMMIT_INDEX,
    PLOVER_STAT_N_ERR,
    PLOVER_STAT_SYNCVM_COUNT,
    PLOVER_STAT_SYNCVM_FULL_COUNT,
    PLOVER_STAT_SYNCVM_FAILURES,
    PLOVER_STAT_SYNCVM_LAST_PAUSE,
    PLOVER_STAT_SYNCVM_MAX_PAUSE,
    PLOVER_STAT_SYNCVM_PAUSED,
    PLOVER_STAT_SYNCVM_MAX_BQL_HOLD,
    PLOVER_STAT_SYNCVM_BYTES_SENT,
    PLOVER_STAT_SYNCVM_BYTES_RECEIVED,
    PLOVER_STAT__MAX
};

typedef struct PloverStatDesc {
    const char *name;
    StatsType type;
    bool has_unit;
    StatsUnit unit;
    int16_t exponent;           /* base 10 */
} PloverStatDesc;

#define PLOVER_STAT(n, t) { .name = (n), .type = STATS_TYPE_##t }
#define PLOVER_STAT_UNIT(n, t, u, e) \
    { .name = (n), .type = STATS_TYPE_##t, .has_unit = true, \
      .unit = STATS_UNIT_##u, .exponent = (e) }

static const PloverStatDesc plover_stats[PLOVER_STAT__MAX] = {
    [PLOVER_STAT_ROLE] = PLOVER_STAT("role", INSTANT),
    [PLOVER_STAT_EXECUTING] = PLOVER_STAT_UNIT("executing", INSTANT, BOOLEAN, 0),
    [PLOVER_STAT_VIEW] = PLOVER_STAT("view", CUMULATIVE),
    [PLOVER_STAT_COMMIT_INDEX] = PLOVER_STAT("commit-index", CUMULATIVE),
    [PLOVER_STAT_N_ERR] = PLOVER_STAT("n-err", INSTANT),
    [PLOVER_STAT_SYNCVM_COUNT] = PLOVER_STAT("syncvm-count", CUMULATIVE),
    [PLOVER_STAT_SYNCVM_FULL_COUNT] = PLOVER_STAT("syncvm-full-count", CUMULATIVE),
    [PLOVER_STAT_SYNCVM_FAILURES] = PLOVER_STAT("syncvm-failures", CUMULATIVE),
    [PLOVER_STAT_SYNCVM_LAST_PAUSE] =
        PLOVER_STAT_UNIT("syncvm-last-pause", INSTANT, SECONDS, -6),
    [PLOVER_STAT_SYNCVM_MAX_PAUSE] =
        PLOVER_STAT_UNIT("syncvm-max-pause", PEAK, SECONDS, -6),
    [PLOVER_STAT_SYNCVM_PAUSED] =
        PLOVER_STAT_UNIT("syncvm-paused", CUMULATIVE, SECONDS, -6),
    [PLOVER_STAT_SYNCVM_MAX_BQL_HOLD] =
        PLOVER_STAT_UNIT("syncvm-max-bql-hold", PEAK, SECONDS, -6),
    [PLOVER_STAT_SYNCVM_BYTES_SENT] =
        PLOVER_STAT_UNIT("syncvm-bytes-sent", CUMULATIVE, BYTES, 0),
    [PLOVER_STAT_SYNCVM_BYTES_RECEIVED] =
        PLOVER_STAT_UNIT("syncvm-bytes-received", CUMULATIVE, BYTES, 0),
};

/* Per other replica N: "link-up-N", its consensus link is up. */
static const PloverStatDesc plover_stat_link =
    PLOVER_STAT_UNIT(NULL, INSTANT, BOOLEAN, 0);

/* Stats are numbers: "role" as one, stable whatever PloverRole's order. */
static uint64_t plover_stat_role(PloverRole r)
{
    switch (r) {
    case PLOVER_ROLE_LEADER:
        return 1;
    case PLOVER_ROLE_SECONDARY:
        return 2;
    case PLOVER_ROLE_WITNESS:
        return 3;
    case PLOVER_ROLE_RECOVERING:
        return 4;
    default:
        return 0;               /* none */
    }
}

static void plover_stat_values(const PloverInfo *i, uint64_t v[PLOVER_STAT__MAX])
{
    const PloverSyncvmInfo *y = i->syncvm;

    v[PLOVER_STAT_ROLE] = plover_stat_role(i->role);
    v[PLOVER_STAT_EXECUTING] = i->executing;
    v[PLOVER_STAT_VIEW] = i->vid;
    v[PLOVER_STAT_COMMIT_INDEX] = i->has_commit_index ? i->commit_index : 0;
    v[PLOVER_STAT_N_ERR] = i->n_err;
    v[PLOVER_STAT_SYNCVM_COUNT] = y->count;
    v[PLOVER_STAT_SYNCVM_FULL_COUNT] = y->full_count;
    v[PLOVER_STAT_SYNCVM_FAILURES] = y->failures;
    v[PLOVER_STAT_SYNCVM_LAST_PAUSE] = MAX(y->last_pause_us, 0);
    v[PLOVER_STAT_SYNCVM_MAX_PAUSE] = MAX(y->pause_max_us, 0);
    v[PLOVER_STAT_SYNCVM_PAUSED] = MAX(y->paused_us, 0);
    v[PLOVER_STAT_SYNCVM_MAX_BQL_HOLD] = MAX(y->bql_hold_max_us, 0);
    v[PLOVER_STAT_SYNCVM_BYTES_SENT] = y->total_bytes_sent;
    v[PLOVER_STAT_SYNCVM_BYTES_RECEIVED] = y->total_bytes_received;
}

static char *plover_stat_link_name(uint32_t peer)
{
    return g_strdup_printf("link-up-%" PRIu32, peer);
}

static void plover_stat_append(StatsList ***tail, const PloverStatDesc *d,
                               char *name, uint64_t value)
{
    Stats *st = g_new0(Stats, 1);

    st->name = name;
    st->value = g_new0(StatsValue, 1);
    if (d->has_unit && d->unit == STATS_UNIT_BOOLEAN) {
        st->value->type = QTYPE_QBOOL;
        st->value->u.boolean = value;
    } else {
        st->value->type = QTYPE_QNUM;
        st->value->u.scalar = value;
    }
    QAPI_LIST_APPEND(*tail, st);
}

static void plover_stats_cb(StatsResultList **result, StatsTarget target,
                            strList *names, strList *targets, Error **errp)
{
    g_autoptr(PloverInfo) info = NULL;
    uint64_t v[PLOVER_STAT__MAX];
    StatsList *list = NULL, **tail = &list;

    if (target != STATS_TARGET_VM) {
        return;
    }
    info = qmp_query_plover(errp);
    if (!info || !info->enabled) {
        return;
    }
    plover_stat_values(info, v);
    for (unsigned k = 0; k < PLOVER_STAT__MAX; k++) {
        if (apply_str_list_filter(plover_stats[k].name, names)) {
            plover_stat_append(&tail, &plover_stats[k],
                               g_strdup(plover_stats[k].name), v[k]);
        }
    }
    for (PloverPeerInfoList *p = info->peers; p; p = p->next) {
        char *name;

        if (p->value->state == PLOVER_PEER_STATE_LOCAL) {
            continue;
        }
        name = plover_stat_link_name(p->value->id);
        if (!apply_str_list_filter(name, names)) {
            g_free(name);
            continue;
        }
        plover_stat_append(&tail, &plover_stat_link, name,
                           p->value->state == PLOVER_PEER_STATE_UP);
    }
    if (list) {
        add_stats_entry(result, STATS_PROVIDER_PLOVER, NULL, list);
    }
}

static void plover_schema_append(StatsSchemaValueList ***tail,
                                 const PloverStatDesc *d, char *name)
{
    StatsSchemaValue *sv = g_new0(StatsSchemaValue, 1);

    sv->name = name;
    sv->type = d->type;
    sv->has_unit = d->has_unit;
    sv->unit = d->unit;
    sv->exponent = d->exponent;
    if (d->exponent) {
        sv->has_base = true;
        sv->base = 10;
    }
    QAPI_LIST_APPEND(*tail, sv);
}

static void plover_stats_schemas_cb(StatsSchemaList **result, Error **errp)
{
    PloverState *s = plover_state();
    StatsSchemaValueList *list = NULL, **tail = &list;

    for (unsigned k = 0; k < PLOVER_STAT__MAX; k++) {
        plover_schema_append(&tail, &plover_stats[k],
                             g_strdup(plover_stats[k].name));
    }
    for (uint32_t peer = 0; peer < s->cfg.n_peers; peer++) {
        if (peer != s->cfg.id) {
            plover_schema_append(&tail, &plover_stat_link,
                                 plover_stat_link_name(peer));
        }
    }
    add_stats_schema(result, STATS_PROVIDER_PLOVER, STATS_TARGET_VM, list);
}

void plover_stats_register(void)
{
    add_stats_callbacks(STATS_PROVIDER_PLOVER, plover_stats_cb,
                        plover_stats_schemas_cb);
}
