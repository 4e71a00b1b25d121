/* In-memory consensus log with holes and a truncation point. */
#include <string.h>
#include "consensus/paxos-log.h"

static void free_entry(gpointer p)
{
    if (p) {
        plv_entry_clear(p);
        g_free(p);
    }
}

void plv_log_init(PlvLog *l, uint32_t n)
{
    memset(&l->snap, 0, sizeof(l->snap));
    l->snap.n = n;
    l->snap.secondary = PLV_NODE_NONE;
    l->ents = g_ptr_array_new_with_free_func(free_entry);
}

void plv_log_destroy(PlvLog *l)
{
    g_ptr_array_unref(l->ents);
    l->ents = NULL;
}

PlvEntry *plv_log_get(const PlvLog *l, uint64_t index)
{
    uint64_t k;
    if (index <= l->snap.index) {
        return NULL;
    }
    k = index - l->snap.index - 1;
    return k < l->ents->len ? g_ptr_array_index(l->ents, k) : NULL;
}

void plv_log_put(PlvLog *l, const PlvEntry *e)
{
    uint64_t k;
    PlvEntry *c;

    g_assert(e->index > l->snap.index);
    k = e->index - l->snap.index - 1;
    while (l->ents->len <= k) {
        g_ptr_array_add(l->ents, NULL);
    }
    c = g_new(PlvEntry, 1);
    plv_entry_copy(c, e);
    free_entry(g_ptr_array_index(l->ents, k));
    g_ptr_array_index(l->ents, k) = c;
}

uint64_t plv_log_last(const PlvLog *l)
{
    return l->snap.index + l->ents->len;
}

size_t plv_log_len(const PlvLog *l)
{
    return l->ents->len;
}

void plv_log_truncate(PlvLog *l, const PlvSnapMeta *m)
{
    uint64_t drop;

    if (m->index <= l->snap.index) {
        return;
    }
    drop = m->index - l->snap.index;
    if (drop >= l->ents->len) {
        g_ptr_array_set_size(l->ents, 0);
    } else {
        g_ptr_array_remove_range(l->ents, 0, (guint)drop);
    }
    l->snap = *m;
}
