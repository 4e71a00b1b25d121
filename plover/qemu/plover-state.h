/*
 * The replica of this QEMU process, shared by the glue's files.
 *
 * QEMU runs one VM per process and -plover may be given once, so the glue
 * keeps one PloverState; plover/core itself has no global state.
 *
 * Threads: everything here is touched on the main loop thread with the BQL
 * held, except the fields marked "atomic" (read by the idle detector), and
 * while a syncvm job is in flight (job != NULL): the syncvm thread then
 * owns the job's results, the bulk link and its HELLO, the staged device
 * state and the memory view's bitmaps, and the main loop leaves them
 * alone until the job comes back (plover-sync.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PLOVER_QEMU_STATE_H
#define PLOVER_QEMU_STATE_H

#include "qemu/thread.h"
#include "qemu/timer.h"
#include "net/net.h"
#include "net/filter.h"
#include "net/announce.h"
#include "plover/config.h"
#include "plover/driver.h"
#include "plover/exec.h"
#include "plover/link.h"
#include "plover/memview.h"
#include "plover/pagehash.h"
#include "plover/syncvm.h"
#include "plover/syncvm-agree.h"
#include "plover/latency-window.h"
#include "qapi/qapi-types-plover.h"

typedef struct PloverFilter PloverFilter;
typedef struct PloverSnapshot PloverSnapshot;
typedef struct PloverDivergence PloverDivergence;
typedef struct PloverDisk PloverDisk;

/* Exit status of a replica that dies by x-plover-inject-fault. */
#define PLOVER_FAULT_EXIT_STATUS 70

/* How long a replica that stopped leading forwards the guest's traffic
 * that still reaches its tap (the new leader announces itself at its
 * first syncvm, within milliseconds; this covers slow segments). */
#define PLOVER_FORWARD_WINDOW_MS 2000

/* One packet waiting in a plover queue (input not yet injected, or output
 * not yet released). */
typedef struct PloverPacket {
    size_t len;
    /* QEMU_NET_PACKET_FLAG_*: an output keeps its sender's flags. A RAW
     * packet (qemu_announce_self's RARP) has no virtio-net header, and a
     * tap with vnet_hdr must be told so, or it reads the first bytes of
     * the frame as that header and sends garbage. */
    unsigned flags;
    uint8_t data[];
} PloverPacket;

typedef struct PloverSyncStats {
    uint64_t count;             /* completed syncvms */
    uint64_t failures;
    uint64_t skews;             /* of which: the two ends were at different syncvms */
    uint64_t commit_failures;   /* of which: loading the device state failed here */
    uint64_t abandoned;         /* of which: given up as a deposed leader */
    int64_t last_commit_us;     /* loading the device state, last syncvm */
    uint64_t full;              /* completed full syncvms */
    PlvSyncvmStats last;
    /* sums for the means */
    int64_t sum_compute_us, sum_compare_us, sum_transfer_us, sum_apply_us;
    int64_t sum_total_us;
    uint64_t sum_dirty, sum_same, sum_divergent, sum_bytes;
    uint64_t sum_received, sum_delta_pages, sum_page_raw;
    /* Both directions, by what the bytes carry (PLV_SVM_BYTES_*). */
    uint64_t sum_by_kind[PLV_SVM_BYTES_KINDS];
    PlvLatencyWindow bytes;     /* sent by this replica, per syncvm */
    PlvLatencyWindow exchange;  /* both directions, per syncvm */
    int64_t last_pause_us;      /* VM stopped, whole syncvm incl. dirty sync */
    PlvLatencyWindow pause;     /* this replica's VM stopped per syncvm (us) */
    int64_t paused_us;          /* all of them */
    int64_t first_cut_us;       /* QEMU_CLOCK_REALTIME of the first syncvm */
    PlvLatencyWindow release;   /* leader: cut to release of its outputs */
    PlvLatencyWindow lag;       /* leader: cut to the secondary's reply */
    uint64_t snapshots;         /* leader: syncvms the VM ran on through */
    uint64_t precopy_rounds;      /* source: pre-copy rounds run */
    uint64_t precopy_final_pages; /* ... the union of the last final run after them */
    uint64_t disk_blocks_union;   /* disk blocks read for the unions */
    uint64_t disk_blocks_written; /* target: disk blocks written */
    /* The syncvm thread's holds of the BQL (us): the main loop, QMP
     * among it, waits out each one. */
    PlvLatencyWindow bql_hold;
    /* ... the most CPU time one of them took: the syncvm's own work in
     * it, without the time the host ran other threads meanwhile. */
    int64_t bql_hold_cpu_max_us;
} PloverSyncStats;

/*
 * Secondary: a syncvm entry reached, whose cut waits for the guest to
 * finish the work of the inputs before it (plover-replica.c).
 */
typedef struct PloverIdleWait {
    bool armed;
    PlvExecSync sync;           /* the syncvm the executor asked for */
    int64_t since_ns, deadline_ns;  /* QEMU_CLOCK_REALTIME */
    QEMUTimer *timer;           /* polls the guest until idle or deadline */
    uint64_t waits;             /* cuts that looked for idle first */
    uint64_t bounded;           /* ... of which the bound ended the wait */
    PlvLatencyWindow waited;    /* how long each waited (us) */
} PloverIdleWait;

/*
 * One syncvm in flight (plover-sync.c). The main loop takes the cut and
 * hands the job to the syncvm thread, which runs link, agreement and
 * engine without the BQL and hands it back through a bottom half.
 */
typedef struct PloverSyncJob {
    /* set on the main loop at the cut */
    uint64_t index;             /* of the syncvm entry in the log */
    uint64_t epoch;
    bool leader;                /* this replica leads the pair */
    bool snapshot;              /* leader: the engine reads the snapshot;
                                 * only vCPUs and clock stopped at the cut */
    bool cow;                   /* ... and the VM runs on from the cut */
    bool handoff;               /* leader: stays paused (handoff point) */
    bool precopy;               /* leader: no cut yet; a full copy goes in
                                 * rounds while the VM runs, then the cut */
    PlvSyncHello hello;         /* what this end tells the other */
    size_t held;                /* leader: outputs held at the cut */
    GByteArray *devstate;       /* leader: device state at the cut; source:
                                 * the blob the engine sent */
    char *digest;               /* leader: RAM digest at the cut (tests) */
    char *digest_parts;         /* ... that of each part of RAM */
    char *disk_digest;          /* ... and the drives' (NULL: none) */
    int64_t t_stop_us;          /* QEMU_CLOCK_REALTIME, VM stopped (0: not yet) */
    int64_t t_resume_us;        /* VM running again (0: still stopped) */
    /* set by the syncvm thread */
    bool ok;
    bool skew;                  /* the ends were at different entries */
    bool boot;                  /* no VM at either end, never protected */
    bool commit_failed;         /* target: RAM or devices of two states */
    bool full;
    bool source;                /* the VM flowed from this end */
    Error *err;
    PlvSyncvmStats st;
    uint32_t rounds;            /* pre-copy rounds before the final run */
    PlvSyncvmStats rounds_st;   /* their bytes, summed */
    int64_t t_agreed_us;        /* leader: the secondary replied */
    bool answered;              /* leader: the REPLY came ... */
    bool peer_has_vm;           /* ... saying the secondary holds a VM */
    bool devstate_sent;         /* source: the device state went, so the
                                 * target may have applied the copy */
    int64_t t_collect_us, t_engine_us;
    /* main loop, under syncvm.bulk_lock: why the job was abandoned (a
     * static string; NULL: it was not). See plover_sync_abandon. */
    const char *abandoned;
} PloverSyncJob;

/*
 * The net filter on the replicated tap: its queues, timer and counters.
 * Written by plover-net.c only (the others read, or call its functions).
 */
typedef struct PloverNet {
    NetClientState *nc;       /* the tap */
    PloverFilter *filter;
    GQueue inputs;            /* committed, not yet accepted by the NIC */
    size_t inputs_bytes;
    QEMUTimer *input_retry;
    GQueue outputs;           /* leader and secondary: guest output held
                               * until a syncvm (only the leader sends it) */
    size_t outputs_bytes;     /* atomic */
    size_t outputs_peak_bytes;    /* the most ever held */
    uint64_t outputs_released, outputs_dropped;
    uint64_t inputs_submitted, inputs_refused, inputs_injected, inputs_ignored;
    uint64_t inputs_forwarded;
    uint64_t inputs_over_cap, outputs_over_cap;  /* dropped at a bound */
    /* Until then, tap packets for the guest are forwarded to the leader:
     * this replica led until recently, and the network may still send
     * the guest's traffic here. */
    int64_t forward_until_ns;
    uint64_t size_triggers;   /* syncvms asked for by a queue's size */
} PloverNet;

/*
 * syncvm: the memory view, the bulk link, the job in flight and its
 * thread, the snapshot, the device-state bases, the figures. Written by
 * plover-sync.c only, and by the syncvm thread where plover-sync.c says.
 */
typedef struct PloverSyncvm {
    GPtrArray *ram_blocks;    /* RAMBlock*: region i of mv is ram_blocks[i] */
    PlvMemView *mv;
    PlvHashPool *pool;
    struct PloverBulkListener *bulk_listener;
    PlvBulkLink *bulk;
    uint32_t bulk_peer;       /* the other end of bulk, PLV_NODE_NONE if none */
    /* The syncvm thread changes bulk under it; the main loop cancels the
     * job's link under it (plover_sync_abandon). I/O needs no lock. */
    QemuMutex bulk_lock;
    /* secondary: a leader's HELLO for a syncvm this replica has yet to reach */
    PlvSyncHello sync_hello;
    bool sync_hello_kept;
    GByteArray *staged_devstate;  /* secondary: loaded after the pages */
    /* The device state of the last good syncvm here (sent or applied):
     * the next one may go as a delta against it (syncvm.h). */
    GByteArray *devstate_base;
    PloverSyncStats stats;
    PloverSnapshot *snap;         /* leader: RAM at the cut, copy-on-write */
    /* PloverDisk*, the replicated drives: regions of mv after RAM's
     * (plover-disk.c; the syncvm thread takes the BQL to use them). */
    GPtrArray *disks;
    uint64_t disk_shadow_touched; /* syncvm thread */
    /* A full syncvm this replica is the source of (query-plover's
     * progress): atomics, written by the syncvm thread. */
    bool full_active;
    int64_t full_start_us;        /* g_get_monotonic_time() */
    uint64_t full_sent;           /* bytes sent so far */
    PloverDivergence *divergence; /* secondary: what its divergent pages were */
    QemuThread sync_thread;
    QemuSemaphore sync_go;        /* a job for the syncvm thread */
    QemuSemaphore cut_done;       /* a pre-copy's cut, taken on the main loop */
    uint32_t full_round;          /* atomic: the pre-copy round being sent */
    /*
     * QEMU is exiting (BQL): its cleanup tears the devices down and then
     * drops the BQL before exit(), so the syncvm thread must not take the
     * BQL to save or load device state any more.
     */
    Notifier shutdown_notifier;
    bool exiting;
    int64_t bql_since_us;         /* the syncvm thread took the BQL (BQL) */
    int64_t bql_since_cpu_us;     /* ... its CPU time then */
    PloverSyncJob *job;           /* in flight; main loop sets and clears */
} PloverSyncvm;

/* What the operator and the guest said about running (plover-runctl.c). */
typedef struct PloverRunControl {
    bool hold;                /* -S or a monitor's stop: the VM stays stopped */
    bool vm_wanted;           /* the executor's last word: run it or not */
    bool powered_off;         /* leader: the guest powered off; group ends */
    bool ending;              /* the end is committed: shutdown goes through */
    bool syncvm_stop;         /* stopping the VM for a syncvm (no event) */
    bool told_running;        /* the last STOP or RESUME event sent */
    uint64_t refused;         /* stop, system_powerdown meant for the leader */
} PloverRunControl;

typedef struct PloverState {
    bool configured;          /* -plover was given and parsed */
    bool initialized;         /* plover_init() resolved netdev and secret */
    PlvConfig cfg;
    uint8_t *secret;          /* contents of the -object secret */
    size_t secret_len;
    PlvTls *tls;              /* from tls-creds; NULL: the links run plaintext */
    uint64_t incarnation;     /* of this start, from the state file */
    /* Consensus state on disk (state=FILE.paxos): handed to the driver,
     * with what a restart restored (restored_state). */
    PlvPaxosStore *paxos_store;
    PlvDurable paxos_img;
    bool restored_state;
    char *paxos_path;         /* state=FILE.paxos, with durable=on */

    /* Consensus: the driver thread. */
    PlvDriver *driver;
    uint64_t applied_index;   /* last committed entry executed here */
    AnnounceTimer announce_timer;  /* RARPs after taking over as leader */

    /*
     * The executor (plover/exec.h): role, view, the executing pair, whether
     * this replica executes, the handoff. Stepped and read on the main
     * loop; plover-replica.c steps it and performs its actions, and
     * publishes what the idle thread reads (atomic).
     */
    PlvExec exec;
    PlvExecReady exec_rd;
    uint64_t kept_told;         /* PlvExec.kept_vid consensus was told */
    uint64_t kept_stale_told;   /* PlvExec.kept_stale already reported */
    bool exec_leads;              /* atomic */
    bool exec_full_sync_pending;  /* atomic */
    QEMUTimer *handoff_timer; /* gives up a handoff that did not happen */
    int64_t handoff_start_ns;
    uint64_t next_epoch;      /* leader: epoch of the next proposal */
    bool sync_proposed;       /* atomic: leader proposed, not yet executed */
    int64_t last_sync_ns;     /* atomic: QEMU_CLOCK_REALTIME */

    PloverIdleWait idle_wait;     /* plover-replica.c: a secondary's cut
                                   * waiting for its guest to idle */
    PloverNet net;                /* plover-net.c */
    PloverSyncvm syncvm;          /* plover-sync.c */
    uint64_t n_err;
    bool record_digests;      /* x-plover-ram-digest record=true */
    PloverFault fault;        /* x-plover-inject-fault */
    GQueue digests;           /* PloverDigest*, at syncvms, newest last */

    PloverRunControl run;         /* plover-runctl.c */

    /* Idle detector (plover-idle.c). */
    QemuThread idle_thread;
    bool idle_stop;           /* atomic */
    int64_t idle_seen_ns;     /* atomic: end of the last idle window */
    bool idle_running;
    uint64_t idle_triggers, bound_triggers;
} PloverState;

PloverState *plover_state(void);

/* plover-stats.c: query-stats, provider "plover" */
void plover_stats_register(void);

/* plover-replica.c */
PloverRole plover_qapi_role(PlvRole r);
bool plover_replica_start(PloverState *s, Error **errp);
bool plover_request_syncvm(PloverState *s, const char *why);
bool plover_migrate_leader(PloverState *s, Error **errp);

/* plover-net.c */
bool plover_net_setup(PloverState *s, Error **errp);
void plover_net_inject(PloverState *s, const uint8_t *pkt, size_t len);
void plover_net_release_outputs(PloverState *s, size_t count);
void plover_net_forward_for_a_while(PloverState *s);
void plover_net_drop_outputs(PloverState *s);
void plover_net_clear_inputs(PloverState *s);
void plover_net_save_inputs(PloverState *s, GByteArray *out);
bool plover_net_load_inputs(PloverState *s, const uint8_t *p, size_t len);

/* plover-runctl.c */
void plover_runctl_setup(PloverState *s, bool autostart_given);
void plover_runctl_end(PloverState *s);
void plover_start_vm(PloverState *s);
void plover_stop_vm(void);
void plover_stop_vm_for_syncvm(void);
void plover_exec_sync_done(PloverState *s, PloverSyncJob *j);

/* plover-sync.c */
bool plover_sync_setup(PloverState *s, Error **errp);
bool plover_lock_devices(PloverState *s, GError **err);
void plover_unlock_devices(PloverState *s, const char *what);
void plover_sync_start_dirty_log(PloverState *s);
void plover_sync_start(PloverState *s, const PlvExecSync *sync);
void plover_sync_job_free(PloverSyncJob *j);
void plover_sync_resume_vm(PloverState *s, PloverSyncJob *j);
void plover_sync_account_pause(PloverState *s, PloverSyncJob *j);
void plover_sync_account_alone(PloverState *s);
void plover_sync_drop_link(PloverState *s);
void plover_sync_abandon(PloverState *s, const char *why);
char *plover_ram_digest(char **parts);

/* plover-disk.c */
bool plover_disk_setup(PloverState *s, PlvMemView *mv, Error **errp);
void plover_disk_teardown(PloverState *s);
void plover_disk_cut(PloverState *s, PlvMemView *mv, bool run_on);
void plover_disk_undrain(PloverState *s);
void plover_disk_close(PloverState *s);
int plover_disk_load_union(PloverState *s, const PlvPageRef *refs, uint32_t n,
                           GError **err);
int plover_disk_write(PloverState *s, const PlvPageRef *written, uint32_t n,
                      GError **err);
char *plover_disk_digest(PloverState *s, Error **errp);
PloverDiskInfoList *plover_disk_query(PloverState *s);

/* plover-snapshot.c */
PloverSnapshot *plover_snapshot_new(GPtrArray *ram_blocks, PlvMemView *mv,
                                    Error **errp);
void plover_snapshot_free(PloverSnapshot *sn);
void plover_snapshot_arm(PloverSnapshot *sn, PlvMemView *ram_mv);
void plover_snapshot_disarm(PloverSnapshot *sn);
PlvMemView *plover_snapshot_view(PloverSnapshot *sn);
int plover_snapshot_union(void *opaque, const PlvPageRef *refs, uint32_t n,
                          GError **err);
uint64_t plover_snapshot_cow_pages(PloverSnapshot *sn);

/* plover-divergence.c */
PloverDivergence *plover_divergence_new(void);
bool plover_divergence_enabled(PloverDivergence *d);
void plover_divergence_add(PloverDivergence *d, const PlvPageRef *ref,
                           const uint8_t *mine, const uint8_t *leader,
                           uint32_t page_size);

/* plover-idle.c */
void plover_idle_start(PloverState *s);

#endif
