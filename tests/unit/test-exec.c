/*
 * The executor's rules, one scenario each (plover/exec.h). The simulation
 * (test-exec-sim) checks what they add up to; these pin the actions.
 */
#include <check.h>
#include <glib.h>
#include "plover/bytes.h"
#include "plover/exec.h"
#include "helper-run.h"

typedef struct {
    PlvExec x;
    PlvExecReady rd;
    uint64_t index;
} T;

/* Replica @self, a later incarnation if @restarted. */
static void t_init_as(T *t, uint32_t self, bool restarted)
{
    PlvExecConfig c = {
        .self = self, .restarted = restarted, .suspect_ms = 100,
        .election_ms = 200, .syncvm_timeout_ms = 1000, .max_sync_interval_ms = 50,
    };

    plv_exec_init(&t->x, &c);
    plv_exec_ready_init(&t->rd);
    t->index = 0;
}

static void t_init(T *t, uint32_t self)
{
    t_init_as(t, self, false);
}

static void t_done(T *t)
{
    plv_exec_ready_destroy(&t->rd);
}

/* The actions since the last call, as "name name ...". */
static char *t_actions(T *t)
{
    GString *s = g_string_new(NULL);

    for (size_t k = 0; k < t->rd.n; k++) {
        g_string_append_printf(s, "%s%s", k ? " " : "",
                               plv_exec_action_name(t->rd.a[k].kind));
    }
    return g_string_free(s, FALSE);
}

static const PlvExecAction *t_find(T *t, PlvExecActionKind k)
{
    for (size_t i = 0; i < t->rd.n; i++) {
        if (t->rd.a[i].kind == k) {
            return &t->rd.a[i];
        }
    }
    return NULL;
}

#define ck_actions(t, want) do {                                    \
        char *got_ = t_actions(t);                                  \
        ck_assert_msg(strcmp(got_, want) == 0, "actions \"%s\", want \"%s\"", \
                      got_, want);                                  \
        g_free(got_);                                               \
        plv_exec_ready_clear(&(t)->rd);                             \
    } while (0)

static void t_entry(T *t, PlvOp op, const void *payload, size_t len)
{
    PlvEntry e = { .index = ++t->index, .op = op,
                   .payload = len ? g_bytes_new(payload, len) : NULL };

    plv_exec_committed(&t->x, &e, &t->rd);
    if (e.payload) {
        g_bytes_unref(e.payload);
    }
}

static void t_second(T *t, uint32_t id)
{
    uint8_t p[4];

    plv_put_u32(p, id);
    t_entry(t, PLV_OP_SECOND, p, 4);
}

static void t_syncvm(T *t, uint64_t epoch)
{
    uint8_t p[8];

    plv_put_u64(p, epoch);
    t_entry(t, PLV_OP_SYNCVM, p, 8);
}

static void t_input(T *t)
{
    t_entry(t, PLV_OP_INPUT, "x", 1);
}

static void t_sync_ok(T *t, uint64_t held)
{
    PlvExecSyncResult r = { .ok = true, .held = held };

    plv_exec_sync_done(&t->x, &r, &t->rd);
}

/* Node 0 leads view 1 of a new group, node 1 is its secondary. */
static void t_leading(T *t)
{
    t_init(t, 0);
    plv_exec_view(&t->x, 1, 0, &t->rd);
    plv_exec_role(&t->x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0, &t->rd);
    ck_actions(t, "drop-link start-vm");
    ck_assert(t->x.executing);
    t_second(t, 1);
    ck_actions(t, "drop-link request-syncvm");
}

/* Node 0 leads, paired with secondary 1 by a first syncvm whose cut held
 * @held outputs; the actions so far are cleared. */
static void t_paired_leader(T *t, uint64_t held)
{
    t_leading(t);
    t_syncvm(t, 1);
    t_sync_ok(t, held);
    plv_exec_ready_clear(&t->rd);
}

/* Node 1, the secondary of leader 0, holds the VM after its first syncvm. */
static void t_synced_secondary(T *t)
{
    t_init(t, 1);
    plv_exec_view(&t->x, 1, 0, &t->rd);
    t_second(t, 1);
    ck_assert(t->x.full_sync_pending && !t->x.executing);
    t_syncvm(t, 1);
    ck_assert(!t_find(t, PLV_EXEC_SYNCVM)->sync.leader);
    ck_assert(t_find(t, PLV_EXEC_SYNCVM)->sync.hello.full);
    plv_exec_ready_clear(&t->rd);
    t_sync_ok(t, 0);
    ck_actions(t, "resume applied-syncvm drop-outputs syncvm-over");
    ck_assert(t->x.executing && !t->x.full_sync_pending);
}

START_TEST(test_first_leader_boots_and_syncs)
{
    T t;
    const PlvExecAction *a;

    t_leading(&t);
    t_input(&t);
    ck_actions(&t, "inject");
    t_syncvm(&t, 1);
    a = t_find(&t, PLV_EXEC_SYNCVM);
    ck_assert_ptr_nonnull(a);
    ck_assert(a->sync.leader && a->sync.hello.has_vm && !a->sync.hello.full);
    ck_assert(!a->sync.may_run_on);     /* never paired with this secondary yet */
    ck_actions(&t, "syncvm");
    /* everything after it waits, even inputs: the VM is stopped */
    ck_assert(plv_exec_must_wait(&t.x, PLV_OP_INPUT, false));
    ck_assert(plv_exec_must_wait(&t.x, PLV_OP_NOOP, true));
    t_sync_ok(&t, 3);
    a = t_find(&t, PLV_EXEC_RELEASE);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(a->count, 3);
    ck_actions(&t, "reset-err resume applied-syncvm release syncvm-over");
    ck_assert(!plv_exec_must_wait(&t.x, PLV_OP_INPUT, false));
    ck_assert_uint_eq(t.x.epoch, 1);
    /* paired now: the next cut lets the VM run on, and inputs through */
    t_syncvm(&t, 2);
    a = t_find(&t, PLV_EXEC_SYNCVM);
    ck_assert(a->sync.may_run_on && a->sync.hello.last == 1);
    ck_assert(!plv_exec_must_wait(&t.x, PLV_OP_INPUT, true));
    ck_assert(plv_exec_must_wait(&t.x, PLV_OP_SYNCVM, true));
    t_done(&t);
}
END_TEST

/*
 * The first leader (0) is deposed before its first syncvm with its
 * secondary (1) completed: 1 leads without a copy, and its new secondary
 * (2) has none either. Neither ever completed a syncvm with a peer, so
 * no output ever left: the agreement says boot (plv_sync_fresh_boot),
 * and the new leader boots the VM again and copies it in full next.
 */
START_TEST(test_never_protected_vm_boots_again)
{
    T t;
    const PlvExecAction *a;
    PlvExecSyncResult boot = { .boot = true };

    t_init(&t, 1);
    plv_exec_view(&t.x, 1, 0, &t.rd);
    t_second(&t, 1);
    t_input(&t);                /* the first leader's VM took it */
    plv_exec_ready_clear(&t.rd);
    plv_exec_view(&t.x, 2, 1, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_SECONDARY, PLV_ROLE_LEADER, 0, &t.rd);
    ck_assert(!t.x.executing);
    ck_actions(&t, "drop-link request-syncvm");     /* a pull */
    t_second(&t, 2);
    plv_exec_ready_clear(&t.rd);
    t_syncvm(&t, 1);
    a = t_find(&t, PLV_EXEC_SYNCVM);
    ck_assert(a->sync.leader && !a->sync.hello.has_vm && a->sync.hello.fresh);
    plv_exec_ready_clear(&t.rd);
    plv_exec_sync_done(&t.x, &boot, &t.rd);
    ck_actions(&t, "drop-outputs boot-vm syncvm-over request-syncvm");
    ck_assert(t.x.executing && t.x.full_sync_pending);
    t_syncvm(&t, 2);
    a = t_find(&t, PLV_EXEC_SYNCVM);
    ck_assert(a->sync.hello.has_vm && a->sync.hello.full);
    plv_exec_ready_clear(&t.rd);
    t_sync_ok(&t, 0);
    ck_assert(t_find(&t, PLV_EXEC_RELEASE));
    plv_exec_ready_clear(&t.rd);
    /* protected now: a later syncvm says so */
    t_syncvm(&t, 3);
    ck_assert(!t_find(&t, PLV_EXEC_SYNCVM)->sync.hello.fresh);
    t_done(&t);
}
END_TEST

/*
 * Node 0 leads, protected once with node 1; node 1 is lost and node 2
 * named; the copy to node 2 fails as @fail says. Then node 0 loses its
 * majority too (the third replica out as well).
 */
static void t_lone_leader(T *t, const PlvExecSyncResult *fail)
{
    t_leading(t);
    t_syncvm(t, 1);
    plv_exec_ready_clear(&t->rd);
    t_sync_ok(t, 0);
    plv_exec_ready_clear(&t->rd);
    t_second(t, 2);
    t_syncvm(t, 2);
    ck_assert(t_find(t, PLV_EXEC_SYNCVM)->sync.hello.has_vm);
    plv_exec_ready_clear(&t->rd);
    plv_exec_sync_done(&t->x, fail, &t->rd);
    plv_exec_ready_clear(&t->rd);
    plv_exec_role(&t->x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t->rd);
}

/*
 * The lone leader: its secondary (a witness until named) said it held no
 * VM, or never answered, and the copy to it failed before the device
 * state left, so no other replica holds the VM. It keeps its own, stopped, through the others' entries, and runs
 * it again once named secondary (the leader pulls it) or leading again.
 */
START_TEST(test_lone_leader_keeps_the_only_copy)
{
    PlvExecSyncResult before_devstate = { .peer_answered = true };
    PlvExecSyncResult silent = { 0 };
    T t;

    t_lone_leader(&t, &silent);
    ck_actions(&t, "drop-link forward keep-vm");
    t_done(&t);
    t_lone_leader(&t, &before_devstate);
    ck_actions(&t, "drop-link forward keep-vm");
    ck_assert(!t.x.executing && t.x.kept);
    /* node 2 leads without a VM: its syncvm with node 1 changes nothing here */
    plv_exec_view(&t.x, 2, 2, &t.rd);
    t_syncvm(&t, 3);
    ck_actions(&t, "syncvm-over handoff-cancel");
    ck_assert(t.x.kept);
    t_input(&t);
    ck_actions(&t, "");
    /* ... then names node 0 its secondary: the copy runs again */
    t_second(&t, 0);
    ck_actions(&t, "drop-link start-vm");
    ck_assert(t.x.executing && !t.x.kept);
    t_syncvm(&t, 4);
    ck_assert(t_find(&t, PLV_EXEC_SYNCVM)->sync.hello.has_vm);
    t_done(&t);

    /* or it leads again, and runs on from its copy */
    t_lone_leader(&t, &before_devstate);
    plv_exec_ready_clear(&t.rd);
    plv_exec_view(&t.x, 3, 0, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0, &t.rd);
    ck_actions(&t, "drop-link handoff-cancel start-vm announce");
    ck_assert(t.x.executing && !t.x.kept);
    t_done(&t);
}
END_TEST

/*
 * A leader's syncvm in flight is moot once consensus deposed it (the glue
 * then gives it up at once); not while it is a candidate, which may be
 * the leader re-preparing its view, nor a secondary's, nor once over.
 */
START_TEST(test_deposed_leader_syncvm_is_moot)
{
    T t;

    t_leading(&t);
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_WITNESS));   /* none yet */
    t_syncvm(&t, 1);
    ck_assert(t_find(&t, PLV_EXEC_SYNCVM)->sync.leader);
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_LEADER));
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_CANDIDATE));
    ck_assert(plv_exec_sync_moot(&t.x, PLV_ROLE_WITNESS));
    ck_assert(plv_exec_sync_moot(&t.x, PLV_ROLE_SECONDARY));
    ck_assert(plv_exec_sync_moot(&t.x, PLV_ROLE_RECOVERING));
    t_sync_ok(&t, 0);
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_WITNESS));
    t_done(&t);

    t_synced_secondary(&t);
    t_syncvm(&t, 2);
    ck_assert(!t_find(&t, PLV_EXEC_SYNCVM)->sync.leader);
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_LEADER));
    ck_assert(!plv_exec_sync_moot(&t.x, PLV_ROLE_WITNESS));
    t_done(&t);
}
END_TEST

/* Node 1, secondary of node 0 as of syncvm 1, takes over in view 2. */
static void t_took_over(T *t)
{
    t_synced_secondary(t);
    plv_exec_view(&t->x, 2, 1, &t->rd);
    plv_exec_role(&t->x, PLV_ROLE_SECONDARY, PLV_ROLE_LEADER, 0, &t->rd);
}

/*
 * Its secondary may hold the VM too (and may be gone with the witness):
 * the copy is kept provisionally, against the view it led, and consensus
 * is told to prefer this replica (kept_vid).
 */
START_TEST(test_lone_leader_keeps_a_copy_another_may_hold_provisionally)
{
    const PlvExecSyncResult may_hold[] = {
        { .peer_answered = true, .peer_may_apply = true },  /* ACK lost? */
        { .peer_answered = true, .peer_has_vm = true },     /* holds one */
    };
    PlvExecSyncResult silent = { 0 };
    T t;

    for (size_t k = 0; k < G_N_ELEMENTS(may_hold); k++) {
        t_lone_leader(&t, &may_hold[k]);
        ck_actions(&t, "drop-link forward keep-vm");
        ck_assert(!t.x.executing && t.x.kept && t.x.kept_provisional);
        ck_assert_uint_eq(t.x.kept_vid, 1);
        t_done(&t);
    }
    /* Node 1, secondary of node 0, takes over and is alone before it
     * names a secondary: node 0 may still run its copy. */
    t_took_over(&t);
    plv_exec_ready_clear(&t.rd);
    plv_exec_role(&t.x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t.rd);
    ck_actions(&t, "drop-link forward keep-vm");
    ck_assert(t.x.kept && t.x.kept_provisional);
    ck_assert_uint_eq(t.x.kept_vid, 2);
    t_done(&t);
    /* ... or names node 0 again, which says nothing before node 1 is
     * alone. */
    t_took_over(&t);
    t_second(&t, 0);
    t_syncvm(&t, 2);
    plv_exec_ready_clear(&t.rd);
    plv_exec_sync_done(&t.x, &silent, &t.rd);
    plv_exec_ready_clear(&t.rd);
    plv_exec_role(&t.x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t.rd);
    ck_actions(&t, "drop-link forward keep-vm");
    ck_assert(t.x.kept && t.x.kept_provisional);
    t_done(&t);
    /* A leader that never completed a syncvm keeps nothing: a pair of
     * fresh replicas may boot the VM again (plv_sync_fresh_boot). */
    t_leading(&t);
    plv_exec_role(&t.x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t.rd);
    ck_actions(&t, "drop-link forward handoff-cancel discard");
    ck_assert(!t.x.kept);
    t_done(&t);
}
END_TEST

/*
 * The provisional copy runs again only if this replica leads again and
 * its phase 1 saw no view newer than the one it led promised to another
 * replica. Learning of another's newer view, being named secondary, or a
 * snapshot drops it: the others went on without it.
 */
START_TEST(test_provisional_copy_used_only_if_nothing_newer)
{
    const PlvExecSyncResult holds = { .peer_answered = true, .peer_has_vm = true };
    T t;

    /* leads again; the newest view promised to another is older than its own */
    t_lone_leader(&t, &holds);
    plv_exec_ready_clear(&t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 1, &t.rd);
    ck_actions(&t, "drop-link handoff-cancel start-vm announce");
    ck_assert(t.x.executing && !t.x.kept && !t.x.kept_provisional);
    ck_assert_uint_eq(t.x.kept_stale, 0);
    t_done(&t);

    /* leads again, but an acceptor of its phase 1 had promised view 0x202
     * to another replica: dropped; elected without a copy, it pulls one */
    t_lone_leader(&t, &holds);
    plv_exec_ready_clear(&t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0x202, &t.rd);
    ck_actions(&t, "drop-link discard request-syncvm");
    ck_assert(!t.x.executing && !t.x.kept && t.x.full_sync_pending);
    ck_assert_uint_eq(t.x.kept_stale, 1);
    t_done(&t);

    /* another replica leads a newer view */
    t_lone_leader(&t, &holds);
    plv_exec_ready_clear(&t.rd);
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    ck_actions(&t, "discard");
    ck_assert(!t.x.kept);
    t_done(&t);

    /* named secondary: by a leader with a VM of its own, or one that went
     * on without this one; the next syncvm copies every page */
    t_lone_leader(&t, &holds);
    plv_exec_ready_clear(&t.rd);
    t_second(&t, 0);
    ck_actions(&t, "discard drop-link");
    ck_assert(!t.x.kept && !t.x.executing && t.x.full_sync_pending);
    t_done(&t);

    /* a snapshot: the log went on past it */
    t_lone_leader(&t, &holds);
    plv_exec_ready_clear(&t.rd);
    plv_exec_needs_snapshot(&t.x, 40, 1, &t.rd);
    ck_actions(&t, "discard stop-vm install-snapshot");
    ck_assert(!t.x.kept);
    t_done(&t);

    /* the only copy is kept whatever view is learned (a leader without
     * one may name it secondary and pull it); leading again, it is
     * checked too: a replaced secondary may have gone on with its own */
    t_lone_leader(&t, &(PlvExecSyncResult){ 0 });
    plv_exec_ready_clear(&t.rd);
    ck_assert(t.x.kept && !t.x.kept_provisional);
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    ck_actions(&t, "");
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0x202, &t.rd);
    ck_actions(&t, "drop-link discard request-syncvm");
    ck_assert(!t.x.kept && !t.x.executing);
    t_done(&t);
}
END_TEST

/* A restarted replica cannot know what its former life completed. */
START_TEST(test_restarted_is_never_fresh)
{
    T t;

    t_init_as(&t, 1, true);
    plv_exec_view(&t.x, 1, 0, &t.rd);
    t_second(&t, 1);
    plv_exec_ready_clear(&t.rd);
    t_syncvm(&t, 1);
    ck_assert(!t_find(&t, PLV_EXEC_SYNCVM)->sync.hello.fresh);
    t_done(&t);
}
END_TEST

/* The guest powered off on the leader: its syncvm released what was said
 * before; the end stops every replica's VM and drops what came after. */
START_TEST(test_end_stops_every_replica)
{
    T t;

    t_paired_leader(&t, 2);
    t_entry(&t, PLV_OP_END, NULL, 0);
    ck_actions(&t, "stop-vm drop-outputs end");
    ck_assert(!t.x.executing);
    t_done(&t);

    t_synced_secondary(&t);
    t_input(&t);
    ck_actions(&t, "inject");
    t_entry(&t, PLV_OP_END, NULL, 0);
    ck_actions(&t, "stop-vm drop-outputs end");
    ck_assert(!t.x.executing);
    t_done(&t);
}
END_TEST

/* Found by the simulation (seed 17998): outputs released with no second
 * copy of the state they came from could be contradicted later. */
START_TEST(test_leader_alone_holds_outputs)
{
    T t;

    t_init(&t, 0);
    plv_exec_view(&t.x, 1, 0, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0, &t.rd);
    ck_actions(&t, "drop-link start-vm");
    t_input(&t);
    t_syncvm(&t, 1);
    ck_actions(&t, "inject syncvm-alone applied-syncvm syncvm-over");
    ck_assert_uint_eq(t.x.epoch, 1);
    /* the first syncvm with a secondary releases what is held */
    t_second(&t, 1);
    t_syncvm(&t, 2);
    t_sync_ok(&t, 5);
    ck_assert_uint_eq(t_find(&t, PLV_EXEC_RELEASE)->count, 5);
    t_done(&t);
}
END_TEST

START_TEST(test_failed_syncvm_keeps_outputs)
{
    T t;
    PlvExecSyncResult r = { .ok = false };

    t_leading(&t);
    t_syncvm(&t, 1);
    plv_exec_ready_clear(&t.rd);
    plv_exec_sync_done(&t.x, &r, &t.rd);
    /* counted against the secondary, nothing released, the VM runs on */
    ck_actions(&t, "add-err resume syncvm-over");
    ck_assert_uint_eq(t.x.epoch, 0);
    ck_assert_uint_eq(t.x.paired, PLV_NODE_NONE);
    t_done(&t);
}
END_TEST

START_TEST(test_secondary_drops_and_takes_over)
{
    T t;

    t_synced_secondary(&t);
    /* the leader dies: this secondary leads from its own state */
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_SECONDARY, PLV_ROLE_LEADER, 0, &t.rd);
    ck_actions(&t, "drop-link handoff-cancel start-vm announce");
    t_done(&t);
}
END_TEST

START_TEST(test_elected_without_copy_pulls)
{
    T t;

    t_init(&t, 2);
    plv_exec_view(&t.x, 1, 0, &t.rd);
    t_input(&t);                        /* a VM exists somewhere */
    ck_actions(&t, "");
    plv_exec_view(&t.x, 0x202, 2, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0, &t.rd);
    ck_actions(&t, "drop-link request-syncvm");
    ck_assert(!t.x.executing && t.x.full_sync_pending);
    t_done(&t);
}
END_TEST

START_TEST(test_left_out_discards)
{
    T t;

    /* a replaced secondary discards at once, not at the next syncvm */
    t_synced_secondary(&t);
    t_second(&t, 2);
    ck_actions(&t, "drop-link handoff-cancel discard");
    ck_assert(!t.x.executing);
    t_done(&t);

    /* a deposed leader discards when it learns it is a witness */
    t_leading(&t);
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t.rd);
    ck_actions(&t, "drop-link forward handoff-cancel discard");
    t_done(&t);
}
END_TEST

/* Found by the simulation: a secondary that lagged into a snapshot kept
 * the outputs of its own VM, and sent them once it led alone. */
START_TEST(test_snapshot_drops_what_the_vm_said)
{
    T t;

    t_synced_secondary(&t);
    plv_exec_needs_snapshot(&t.x, 40, 1, &t.rd);
    ck_actions(&t, "discard install-snapshot");
    ck_assert(!t.x.executing && t.x.full_sync_pending);
    /* elected while the log still names it secondary: alone, no VM */
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_WITNESS, PLV_ROLE_LEADER, 0, &t.rd);
    ck_actions(&t, "drop-link request-syncvm");
    t_syncvm(&t, 5);
    ck_actions(&t, "syncvm-over");
    ck_assert_uint_eq(t.x.epoch, 1);
    t_done(&t);
}
END_TEST

START_TEST(test_commit_failed_discards)
{
    T t;
    PlvExecSyncResult r = { .commit_failed = true };

    t_synced_secondary(&t);
    t_syncvm(&t, 2);
    plv_exec_ready_clear(&t.rd);
    plv_exec_sync_done(&t.x, &r, &t.rd);
    ck_actions(&t, "handoff-cancel discard syncvm-over");
    ck_assert(!t.x.executing && t.x.full_sync_pending);
    t_done(&t);
}
END_TEST

START_TEST(test_migrate_leader)
{
    T t;
    const PlvExecAction *a;

    t_leading(&t);
    ck_assert_int_eq(plv_exec_migrate_leader(&t.x, &t.rd), PLV_EXEC_MIGRATE_NO_SECONDARY);
    t_syncvm(&t, 1);
    t_sync_ok(&t, 0);
    plv_exec_ready_clear(&t.rd);
    ck_assert_int_eq(plv_exec_migrate_leader(&t.x, &t.rd), PLV_EXEC_MIGRATE_OK);
    ck_assert_int_eq(plv_exec_migrate_leader(&t.x, &t.rd), PLV_EXEC_MIGRATE_IN_PROGRESS);
    a = t_find(&t, PLV_EXEC_HANDOFF_TIMER);
    ck_assert_uint_eq(a->ms, 2 * 1000 + 50);
    ck_actions(&t, "request-syncvm handoff-timer");
    /* the handoff's syncvm keeps the VM stopped, then hands over */
    t_syncvm(&t, 2);
    ck_assert(t_find(&t, PLV_EXEC_SYNCVM)->sync.handoff);
    ck_assert(!t_find(&t, PLV_EXEC_SYNCVM)->sync.may_run_on);
    plv_exec_ready_clear(&t.rd);
    t_sync_ok(&t, 0);
    ck_actions(&t, "reset-err applied-syncvm release handoff-timer transfer syncvm-over");
    ck_assert_int_eq(t.x.handoff, PLV_EXEC_HANDOFF_TRANSFERRING);
    /* a witness while transferring keeps the VM; named secondary, done */
    plv_exec_view(&t.x, 0x201, 1, &t.rd);
    plv_exec_role(&t.x, PLV_ROLE_LEADER, PLV_ROLE_WITNESS, 0, &t.rd);
    ck_actions(&t, "drop-link forward");
    t_second(&t, 0);
    ck_actions(&t, "drop-link handoff-done handoff-cancel start-vm");
    ck_assert_uint_eq(t.x.handoffs, 1);
    ck_assert(t.x.executing);
    t_done(&t);
}
END_TEST

/* The deadline passes while the handoff's own syncvm is in flight: the
 * handoff is given up when that syncvm ends, and nothing is transferred. */
START_TEST(test_handoff_deadline_during_its_syncvm)
{
    T t;

    t_paired_leader(&t, 0);
    ck_assert_int_eq(plv_exec_migrate_leader(&t.x, &t.rd), PLV_EXEC_MIGRATE_OK);
    plv_exec_ready_clear(&t.rd);
    t_syncvm(&t, 2);
    ck_assert(t_find(&t, PLV_EXEC_SYNCVM)->sync.handoff);
    plv_exec_ready_clear(&t.rd);
    plv_exec_handoff_timeout(&t.x, &t.rd);
    ck_actions(&t, "");
    t_sync_ok(&t, 2);
    ck_assert_ptr_null(t_find(&t, PLV_EXEC_TRANSFER));
    ck_actions(&t, "reset-err resume applied-syncvm release syncvm-over "
                   "handoff-cancel handoff-given-up start-vm");
    ck_assert_int_eq(t.x.handoff, PLV_EXEC_HANDOFF_NONE);
    t_done(&t);
}
END_TEST

START_TEST(test_handoff_refused_runs_on)
{
    T t;

    t_paired_leader(&t, 0);
    plv_exec_migrate_leader(&t.x, &t.rd);
    t_syncvm(&t, 2);
    t_sync_ok(&t, 0);
    plv_exec_ready_clear(&t.rd);
    plv_exec_transfer_failed(&t.x, &t.rd);
    ck_actions(&t, "handoff-cancel start-vm");
    ck_assert_int_eq(t.x.handoff, PLV_EXEC_HANDOFF_NONE);
    t_done(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("rules");

    tcase_add_test(tc, test_first_leader_boots_and_syncs);
    tcase_add_test(tc, test_leader_alone_holds_outputs);
    tcase_add_test(tc, test_end_stops_every_replica);
    tcase_add_test(tc, test_never_protected_vm_boots_again);
    tcase_add_test(tc, test_restarted_is_never_fresh);
    tcase_add_test(tc, test_lone_leader_keeps_the_only_copy);
    tcase_add_test(tc, test_deposed_leader_syncvm_is_moot);
    tcase_add_test(tc, test_lone_leader_keeps_a_copy_another_may_hold_provisionally);
    tcase_add_test(tc, test_provisional_copy_used_only_if_nothing_newer);
    tcase_add_test(tc, test_failed_syncvm_keeps_outputs);
    tcase_add_test(tc, test_secondary_drops_and_takes_over);
    tcase_add_test(tc, test_elected_without_copy_pulls);
    tcase_add_test(tc, test_left_out_discards);
    tcase_add_test(tc, test_snapshot_drops_what_the_vm_said);
    tcase_add_test(tc, test_commit_failed_discards);
    tcase_add_test(tc, test_migrate_leader);
    tcase_add_test(tc, test_handoff_deadline_during_its_syncvm);
    tcase_add_test(tc, test_handoff_refused_runs_on);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
