/*
 * Writes one valid frame per message type (and per entry op) into the
 * directory given as argv[1]: the fuzzer's seed corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include "plover/wire.h"

static void put(const char *dir, const char *name, const PlvMsg *m)
{
    GByteArray *b = g_byte_array_new();
    char *path = g_strdup_printf("%s/%s", dir, name);
    GError *err = NULL;

    if (!plv_wire_encode(m, b, &err) ||
        !g_file_set_contents(path, (const char *)b->data, b->len, &err)) {
        fprintf(stderr, "%s: %s\n", path, err->message);
        exit(1);
    }
    g_free(path);
    g_byte_array_unref(b);
}

static void add(PlvMsg *m, uint64_t index, uint8_t op, GBytes *payload)
{
    PlvEntry e = { .index = index, .vid = 0x201, .op = op, .payload = payload };
    plv_msg_add_entry(m, &e);
    plv_entry_clear(&e);
}

int main(int argc, char **argv)
{
    GByteArray *batch = g_byte_array_new();
    const char *dir;

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    g_mkdir_with_parents(dir, 0755);
    plv_batch_init(batch);
    plv_batch_add(batch, "abc", 3);
    plv_batch_add(batch, "", 0);
    for (int t = PLV_MSG_PREPARE; t < PLV_MSG__MAX; t++) {
        PlvMsg m;
        char *name = g_strdup_printf("seed-%s", plv_msg_type_name(t));

        plv_msg_init(&m, t);
        m.hdr = (PlvMsgHdr){ .from = 0, .to = 1, .inc = 1, .vid = 0x100, .commit = 3,
                             .last = 4, .flags = PLV_HDR_ADMITTED };
        m.vid = 0x200;
        m.index = 2;
        m.count = 8;
        if (t == PLV_MSG_PROMISE || t == PLV_MSG_CATCHUP_RESP) {
            m.has_snap = true;
            m.snap = (PlvSnapMeta){ .index = 2, .vid = 0x100, .n = 3, .secondary = 1,
                                    .inc = { 1, 1, 2 } };
        }
        if (t == PLV_MSG_PROMISE || t == PLV_MSG_ACCEPT || t == PLV_MSG_CATCHUP_RESP) {
            add(&m, 3, PLV_OP_NOOP, NULL);
            add(&m, 4, PLV_OP_SECOND, plv_op_second_payload(1));
            add(&m, 5, PLV_OP_INPUT, g_bytes_new(batch->data, batch->len));
            add(&m, 6, PLV_OP_SYNCVM, plv_op_syncvm_payload(9));
            add(&m, 7, PLV_OP_CONFIG, plv_op_config_payload(2, 3));
            add(&m, 8, PLV_OP_END, NULL);
        }
        if (t == PLV_MSG_FORWARD) {
            add(&m, 1, PLV_OP_INPUT, g_bytes_new(batch->data, batch->len));
        }
        put(dir, name, &m);
        plv_msg_clear(&m);
        g_free(name);
    }
    g_byte_array_unref(batch);
    return 0;
}
