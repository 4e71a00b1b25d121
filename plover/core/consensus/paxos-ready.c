/* PlvReady (the output of a consensus step), role names, config defaults. */
#include "plover/paxos.h"

void plv_paxos_config_default(PlvPaxosConfig *cfg)
{
    *cfg = (PlvPaxosConfig){
        .self = 0,
        .n = 3,
        .incarnation = PLV_INC_INITIAL,
        .heartbeat_ticks = 2,
        .suspect_ticks = 10,
        .election_ticks = 10,
        .n_err_threshold = 3,
        .max_batch_bytes = 64 * 1024,
        .max_queue_bytes = 16 << 20,
        .log_capacity = 4096,
        .catchup_max = 64,
        .seed = 1,
    };
}

const char *plv_role_name(PlvRole r)
{
    switch (r) {
    case PLV_ROLE_RECOVERING: return "recovering";
    case PLV_ROLE_WITNESS:    return "witness";
    case PLV_ROLE_SECONDARY:  return "secondary";
    case PLV_ROLE_CANDIDATE:  return "candidate";
    case PLV_ROLE_LEADER:     return "leader";
    }
    return "invalid";
}

static void free_out(gpointer p)
{
    PlvOutMsg *om = p;
    plv_msg_clear(&om->msg);
    g_free(om);
}

void plv_ready_init(PlvReady *rd)
{
    rd->msgs = g_ptr_array_new_with_free_func(free_out);
    rd->committed = g_array_new(FALSE, FALSE, sizeof(PlvEntry));
    rd->events = g_array_new(FALSE, FALSE, sizeof(PlvEvent));
    plv_durable_init(&rd->stable);
}

void plv_ready_clear(PlvReady *rd)
{
    g_ptr_array_set_size(rd->msgs, 0);
    for (guint i = 0; i < rd->committed->len; i++) {
        plv_entry_clear(&g_array_index(rd->committed, PlvEntry, i));
    }
    g_array_set_size(rd->committed, 0);
    g_array_set_size(rd->events, 0);
    plv_durable_clear(&rd->stable);
}

void plv_ready_destroy(PlvReady *rd)
{
    if (!rd->msgs) {
        return;
    }
    plv_ready_clear(rd);
    g_ptr_array_unref(rd->msgs);
    g_array_free(rd->committed, TRUE);
    g_array_free(rd->events, TRUE);
    plv_durable_destroy(&rd->stable);
    rd->msgs = NULL;
}
