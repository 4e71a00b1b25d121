/*
 * Room for a new unauthenticated connection (see plover/pending-slots.h).
 */
#include "plover/pending-slots.h"

/* Is @a a better connection to push out than @b (NULL: none yet)? */
static bool better_victim(const PlvPendingSlot *a, const PlvPendingSlot *b)
{
    return !b || (a->heard != b->heard ? !a->heard : a->since < b->since);
}

int plv_pending_victim(PlvPendingSlot *const *slots, unsigned n, unsigned max,
                       unsigned per_addr, const PlvIpAddr *src)
{
    int any = -1, here = -1;
    unsigned n_here = 0;

    for (unsigned i = 0; i < n; i++) {
        if (better_victim(slots[i], any < 0 ? NULL : slots[any])) {
            any = i;
        }
        if (plv_ip_addr_equal(&slots[i]->src, src)) {
            n_here++;
            if (better_victim(slots[i], here < 0 ? NULL : slots[here])) {
                here = i;
            }
        }
    }
    if (n_here >= per_addr) {
        return here;
    }
    return n >= max ? any : -1;
}
