/*
 * libFuzzer target for the wire decoder.
 *
 * Each input is tried twice: as is (so magic, version, length and checksum
 * rejections are exercised) and resealed with a correct length and
 * checksum (so the fuzzer reaches the field decoders behind the checksum).
 * Whatever decodes must encode again and decode to an equal frame: the
 * codec is its own oracle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "plover/bytes.h"
#include "plover/wire.h"

static void check_roundtrip(const PlvMsg *m, uint32_t n_nodes)
{
    GByteArray *a = g_byte_array_new();
    GByteArray *b = g_byte_array_new();
    PlvMsg d;

    if (!plv_wire_encode(m, a, NULL)) {
        abort();        /* decoded messages are always encodable */
    }
    if (plv_wire_decode(a->data, a->len, n_nodes, &d, NULL) != 0) {
        abort();
    }
    if (!plv_wire_encode(&d, b, NULL) || a->len != b->len ||
        memcmp(a->data, b->data, a->len) != 0) {
        abort();
    }
    plv_msg_clear(&d);
    g_byte_array_unref(a);
    g_byte_array_unref(b);
}

static void try_decode(const uint8_t *buf, size_t len, uint32_t n_nodes)
{
    PlvMsg m;
    GError *err = NULL;
    PlvWireStats st = { 0 };

    if (plv_wire_decode(buf, len, n_nodes, &m, &err) == 0) {
        check_roundtrip(&m, n_nodes);
        plv_msg_clear(&m);
    } else if (!err || m.entries) {
        abort();        /* errors always say why and leave nothing behind */
    }
    plv_wire_stats_note(&st, err);
    if (st.ok + st.bad_total != 1) {
        abort();
    }
    g_clear_error(&err);
    (void)plv_wire_frame_len(buf, len, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    size_t plen;
    uint64_t h;
    /* the first byte picks the cluster size the decoder is told */
    uint32_t n_nodes = size ? 1 + data[0] % PLV_MAX_NODES : 3;

    try_decode(data, size, n_nodes);
    if (size < PLV_WIRE_HDR_LEN + PLV_WIRE_TRAILER_LEN ||
        size - PLV_WIRE_HDR_LEN - PLV_WIRE_TRAILER_LEN > PLV_WIRE_MAX_PAYLOAD) {
        return 0;
    }
    copy = malloc(size);
    memcpy(copy, data, size);
    plen = size - PLV_WIRE_HDR_LEN - PLV_WIRE_TRAILER_LEN;
    copy[0] = 'P'; copy[1] = 'L'; copy[2] = 'V'; copy[3] = 'R';
    copy[4] = PLV_WIRE_VERSION;
    copy[6] = copy[7] = 0;
    plv_put_u32(copy + 8, (uint32_t)plen);
    h = XXH64(copy, PLV_WIRE_HDR_LEN + plen, 0);
    plv_put_u64(copy + PLV_WIRE_HDR_LEN + plen, h);
    try_decode(copy, size, 3);
    free(copy);
    return 0;
}
