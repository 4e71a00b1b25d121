/*
 * PlvDurable: what an acceptor keeps across a restart, as a record of
 * changes (PlvReady.stable) and as an image (the state a restart restores).
 * Applying records in the order they were made to an empty image gives
 * the image the node would have had: the promise is the last one, the
 * truncation the highest, and each index holds the last entry written there.
 */
#include <string.h>
#include "plover/paxos.h"

void plv_durable_init(PlvDurable *d)
{
    memset(d, 0, sizeof(*d));
    d->ents = g_array_new(FALSE, FALSE, sizeof(PlvEntry));
}

void plv_durable_clear(PlvDurable *d)
{
    GArray *ents = d->ents;

    for (guint i = 0; ents && i < ents->len; i++) {
        plv_entry_clear(&g_array_index(ents, PlvEntry, i));
    }
    if (ents) {
        g_array_set_size(ents, 0);
    }
    memset(d, 0, sizeof(*d));
    d->ents = ents;
}

void plv_durable_destroy(PlvDurable *d)
{
    if (!d->ents) {
        return;
    }
    plv_durable_clear(d);
    g_array_free(d->ents, TRUE);
    d->ents = NULL;
}

/* Position of the first entry whose index is >= index (binary search). */
static guint lower_bound(const GArray *ents, uint64_t index)
{
    guint lo = 0, hi = ents->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (g_array_index(ents, PlvEntry, mid).index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

bool plv_durable_votes(const PlvDurable *img)
{
    return img->voter;
}

void plv_durable_apply(PlvDurable *img, const PlvDurable *chg)
{
    img->voter = chg->voter;
    img->promised = chg->promised;
    img->promised_inc = chg->promised_inc;
    img->promised_other = chg->promised_other;
    if (chg->has_snap && (!img->has_snap || chg->snap.index > img->snap.index)) {
        guint drop = lower_bound(img->ents, chg->snap.index + 1);
        for (guint i = 0; i < drop; i++) {
            plv_entry_clear(&g_array_index(img->ents, PlvEntry, i));
        }
        g_array_remove_range(img->ents, 0, drop);
        img->has_snap = true;
        img->snap = chg->snap;
    }
    for (guint k = 0; k < chg->ents->len; k++) {
        const PlvEntry *e = &g_array_index(chg->ents, PlvEntry, k);
        guint at;
        PlvEntry c;

        if (img->has_snap && e->index <= img->snap.index) {
            continue;
        }
        at = lower_bound(img->ents, e->index);
        plv_entry_copy(&c, e);
        if (at < img->ents->len && g_array_index(img->ents, PlvEntry, at).index == e->index) {
            plv_entry_clear(&g_array_index(img->ents, PlvEntry, at));
            g_array_index(img->ents, PlvEntry, at) = c;
        } else {
            g_array_insert_val(img->ents, at, c);
        }
    }
}
