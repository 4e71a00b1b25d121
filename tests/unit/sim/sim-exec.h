/*
 * Types of the executor half of the simulation (sim-exec.c), which
 * SimNode and Sim embed.
 */
#ifndef PLOVER_TEST_SIM_EXEC_H
#define PLOVER_TEST_SIM_EXEC_H

#include "plover/exec.h"

/* How long each end of a syncvm waits (ticks; the glue: syncvm-timeout-ms). */
#define SIM_SYNC_TIMEOUT 12
#define SIM_HANDOFF_MS_PER_TICK 1

/* Deliberately broken executors: the checks must catch each. */
typedef enum {
    SIM_BROKEN_NONE,
    SIM_BROKEN_RELEASE_AT_CUT,          /* leader releases before the secondary applied */
    SIM_BROKEN_RELEASE_ON_SECONDARY,    /* secondary sends what it should drop */
    SIM_BROKEN_KEEP_VM,                 /* a replica left out keeps its VM */
    SIM_BROKEN_SECOND_KEEPS_VM,         /* a replaced secondary runs on */
    SIM_BROKEN_BOOT_ANY,                /* a leader boots a lost VM even
                                         * if it was protected */
    SIM_BROKEN_KEEP_ANY,                /* a leader stepping down keeps its
                                         * VM as if it were the only copy */
    SIM_BROKEN_KEEP_UNCHECKED,          /* ... provisionally, but runs it
                                         * again without phase 1's check */
    SIM_BROKEN__MAX,
} SimBroken;

/* An output of the model VM: the state it came from, and its input. */
typedef struct {
    uint64_t n, h;
    uint64_t pkt;
} SimOut;

typedef enum {
    SIM_JOB_NONE,
    SIM_JOB_HELLO,      /* leader: HELLO sent, waiting for REPLY or SKIP */
    SIM_JOB_WAIT,       /* secondary: waiting for the leader's HELLO */
    SIM_JOB_ENGINE,     /* agreed; the engine runs */
} SimJobState;

typedef struct {
    SimJobState st;
    PlvExecSync sync;
    uint64_t deadline;
    GArray *cut;        /* this end's chain at its cut */
    uint64_t cut_base;  /* its base then */
    uint64_t held;      /* leader: outputs held at the cut */
    uint64_t xid;       /* the exchange, in ENGINE */
    bool answered;      /* leader: the REPLY came ... */
    bool peer_has_vm;   /* ... saying the secondary holds a VM */
} SimJob;

enum { SIM_BULK_HELLO, SIM_BULK_REPLY, SIM_BULK_SKIP };

typedef struct {
    uint64_t at, seq;
    uint32_t from, to;
    uint64_t to_inc;
    int type;
    PlvSyncHello hello;
    PlvSyncReply reply;
    uint64_t epoch;     /* REPLY: the epoch it answers; SKIP: where it is */
    uint64_t xid;       /* REPLY: the exchange the secondary started */
} SimBulk;

enum {
    SIM_X_OK,
    SIM_X_FAIL,         /* both ends fail before the target wrote anything */
    SIM_X_ACK_LOST,     /* the target applied; the source never heard */
    SIM_X_COMMIT_FAIL,  /* the target failed after writing part of it */
};

typedef struct {
    uint64_t id;
    uint32_t leader, sec, src, dst;
    uint64_t leader_inc, sec_inc;
    uint64_t epoch;
    bool full;
    int outcome;
    uint64_t done_at;
    bool live;
} SimExchange;

typedef struct {
    bool is_event;
    PlvEvent ev;
    PlvEntry e;
} SimItem;

#endif
