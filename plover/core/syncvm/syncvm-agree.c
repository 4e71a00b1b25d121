/*
 * syncvm agreement: codec and rules (see plover/syncvm-agree.h).
 */
#include "plover/syncvm-agree.h"
#include "plover/bytes.h"

void plv_sync_hello_encode(const PlvSyncHello *h, uint8_t out[PLV_SYNC_HELLO_LEN])
{
    plv_put_u64(out, h->epoch);
    out[8] = h->has_vm | h->fresh << 1;
    out[9] = h->full;
    plv_put_u64(out + 10, h->last);
}

bool plv_sync_hello_decode(const uint8_t *p, size_t len, PlvSyncHello *h)
{
    if (len != PLV_SYNC_HELLO_LEN || p[8] > 3 || p[9] > 1) {
        return false;
    }
    h->epoch = plv_get_u64(p);
    h->has_vm = p[8] & 1;
    h->fresh = p[8] >> 1;
    h->full = p[9];
    h->last = plv_get_u64(p + 10);
    return true;
}

void plv_sync_reply_encode(const PlvSyncReply *r, uint8_t out[PLV_SYNC_REPLY_LEN])
{
    out[0] = r->has_vm | r->fresh << 1;
    plv_put_u64(out + 1, r->last);
}

bool plv_sync_reply_decode(const uint8_t *p, size_t len, PlvSyncReply *r)
{
    if (len != PLV_SYNC_REPLY_LEN || p[0] > 3) {
        return false;
    }
    r->has_vm = p[0] & 1;
    r->fresh = p[0] >> 1;
    r->last = plv_get_u64(p + 1);
    return true;
}

void plv_sync_skip_encode(uint64_t epoch, uint8_t out[PLV_SYNC_SKIP_LEN])
{
    plv_put_u64(out, epoch);
}

bool plv_sync_skip_decode(const uint8_t *p, size_t len, uint64_t *epoch)
{
    if (len != PLV_SYNC_SKIP_LEN) {
        return false;
    }
    *epoch = plv_get_u64(p);
    return true;
}

void plv_sync_round_encode(const PlvSyncRound *r, uint8_t out[PLV_SYNC_ROUND_LEN])
{
    plv_put_u32(out, r->round);
    out[4] = r->final;
}

bool plv_sync_round_decode(const uint8_t *p, size_t len, uint32_t want,
                           PlvSyncRound *r)
{
    if (len != PLV_SYNC_ROUND_LEN || p[4] > 1) {
        return false;
    }
    r->round = plv_get_u32(p);
    r->final = p[4];
    return r->round == (r->final ? want - 1 : want);
}

PlvSyncHelloAction plv_sync_on_hello(uint64_t ours, uint64_t hello)
{
    if (hello == ours) {
        return PLV_SYNC_HELLO_ACCEPT;
    }
    /* Epochs only grow along the log: an older HELLO is an attempt the
     * leader has not given up yet, a newer one an entry we will reach. */
    return hello < ours ? PLV_SYNC_HELLO_SKIP : PLV_SYNC_HELLO_LATER;
}

bool plv_sync_skip_valid(uint64_t ours, uint64_t skip)
{
    return skip > ours;
}

bool plv_sync_direction(const PlvSyncHello *leader, const PlvSyncReply *secondary,
                        bool *push, bool *full)
{
    *push = leader->has_vm;
    *full = leader->full || !leader->has_vm || !secondary->has_vm ||
            leader->last != secondary->last;
    return leader->has_vm || secondary->has_vm;
}

bool plv_sync_fresh_boot(const PlvSyncHello *leader, const PlvSyncReply *secondary)
{
    return !leader->has_vm && !secondary->has_vm && leader->fresh && secondary->fresh;
}
