/*
 * The consensus log kept in memory: entries snap.index+1 .. last, with
 * holes (an acceptor may accept slot i+1 without having seen slot i).
 * Everything up to snap.index is summarized by the snapshot meta.
 */
#ifndef PLOVER_PAXOS_LOG_H
#define PLOVER_PAXOS_LOG_H

#include "plover/wire.h"

typedef struct {
    PlvSnapMeta snap;
    GPtrArray *ents;    /* PlvEntry* or NULL; ents[k] is index snap.index+1+k */
} PlvLog;

void plv_log_init(PlvLog *l, uint32_t n);
void plv_log_destroy(PlvLog *l);
/* NULL when absent, truncated or beyond the end. */
PlvEntry *plv_log_get(const PlvLog *l, uint64_t index);
/* Store a copy of e at e->index (> snap.index), replacing what was there. */
void plv_log_put(PlvLog *l, const PlvEntry *e);
/* Highest index held (snap.index when empty). */
uint64_t plv_log_last(const PlvLog *l);
size_t plv_log_len(const PlvLog *l);
/* Drop entries up to m->index and make m the snapshot meta. */
void plv_log_truncate(PlvLog *l, const PlvSnapMeta *m);

#endif
