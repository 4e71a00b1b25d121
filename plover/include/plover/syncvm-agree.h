/*
 * plover/syncvm-agree.h — the two ends of a syncvm agree on its epoch and
 * direction before the engine runs.
 *
 * The leader sends HELLO (the epoch of the syncvm entry it executes,
 * whether it holds the VM, whether it wants a full copy, the epoch of
 * its last completed syncvm); the secondary answers REPLY (whether it
 * holds the VM, its last completed epoch), or SKIP (the epoch it is at)
 * when the HELLO is for an entry it has already left.
 *
 * Both ends execute the same log, each at its own pace, and an attempt
 * that failed on one end may still be waited for on the other. The rules
 * below keep them from waiting for an epoch the other has left behind:
 * without them the two can stay one entry apart for ever, each failing
 * the other's attempt (seen after a partition healed). Pure code: the
 * glue does the I/O, tests/unit/test-syncvm-agree.c simulates the pair.
 *
 * A full copy then goes in rounds: before each engine run the source
 * sends ROUND, which says whether the run is a pre-copy round (the
 * source's VM runs on; no device state) or the final run, which makes
 * the copy exact.
 *
 * Wire format (little endian): HELLO epoch u64, flags u8 (bit 0 has_vm,
 * bit 1 fresh), full u8, last u64 (18 B); REPLY flags u8 (as HELLO's),
 * last u64 (9 B); SKIP epoch u64 (8 B); ROUND round u32, final u8 (5 B).
 */
#ifndef PLOVER_SYNCVM_AGREE_H
#define PLOVER_SYNCVM_AGREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLV_SYNC_MSG_HELLO 0x5350u
#define PLV_SYNC_MSG_REPLY 0x5351u
#define PLV_SYNC_MSG_SKIP  0x5352u
#define PLV_SYNC_MSG_ROUND 0x5353u

#define PLV_SYNC_HELLO_LEN 18u
#define PLV_SYNC_REPLY_LEN 9u
#define PLV_SYNC_SKIP_LEN  8u
#define PLV_SYNC_ROUND_LEN 5u

typedef struct PlvSyncHello {
    uint64_t epoch;             /* of the syncvm entry the leader executes */
    bool has_vm;                /* the leader holds the replicated VM */
    bool full;                  /* the leader wants every page compared */
    uint64_t last;              /* the leader's last completed syncvm */
    bool fresh;                 /* never completed a syncvm with a peer,
                                 * and never restarted */
} PlvSyncHello;

typedef struct PlvSyncReply {
    bool has_vm;
    uint64_t last;
    bool fresh;                 /* as PlvSyncHello's */
} PlvSyncReply;

void plv_sync_hello_encode(const PlvSyncHello *h, uint8_t out[PLV_SYNC_HELLO_LEN]);
bool plv_sync_hello_decode(const uint8_t *p, size_t len, PlvSyncHello *h);
void plv_sync_reply_encode(const PlvSyncReply *r, uint8_t out[PLV_SYNC_REPLY_LEN]);
bool plv_sync_reply_decode(const uint8_t *p, size_t len, PlvSyncReply *r);
void plv_sync_skip_encode(uint64_t epoch, uint8_t out[PLV_SYNC_SKIP_LEN]);
bool plv_sync_skip_decode(const uint8_t *p, size_t len, uint64_t *epoch);

/* What a secondary waiting in syncvm @ours does with a HELLO for @hello. */
typedef enum PlvSyncHelloAction {
    PLV_SYNC_HELLO_ACCEPT,      /* ours: answer REPLY, run the engine */
    PLV_SYNC_HELLO_SKIP,        /* one we left: answer SKIP(ours), wait on */
    PLV_SYNC_HELLO_LATER,       /* one we have yet to reach: give ours up,
                                 * keep the HELLO for that entry */
} PlvSyncHelloAction;

PlvSyncHelloAction plv_sync_on_hello(uint64_t ours, uint64_t hello);

/*
 * The run that comes next in a full copy: pre-copy round @round (1, 2,
 * ...; the VM runs on at the source), or with @final the run that makes
 * the copy exact, after @round rounds (0: a copy made in one run).
 */
typedef struct PlvSyncRound {
    uint32_t round;
    bool final;
} PlvSyncRound;

void plv_sync_round_encode(const PlvSyncRound *r, uint8_t out[PLV_SYNC_ROUND_LEN]);
/* Rounds come in order: @want is the round a non-final ROUND must carry,
 * and a final one must say that @want - 1 rounds went before. */
bool plv_sync_round_decode(const uint8_t *p, size_t len, uint32_t want,
                           PlvSyncRound *r);

/* A leader in syncvm @ours given SKIP(@skip) gives @ours up if the
 * secondary is past it; any other SKIP is malformed. */
bool plv_sync_skip_valid(uint64_t ours, uint64_t skip);

/*
 * Direction and extent, the same on both ends. The VM flows from the end
 * that holds it (the leader, unless it was elected without a copy); the
 * copy is full unless both hold the VM as of the same completed syncvm.
 * *push: the leader sends. false if neither holds the VM.
 */
bool plv_sync_direction(const PlvSyncHello *leader, const PlvSyncReply *secondary,
                        bool *push, bool *full);

/*
 * Neither end holds the VM: may the leader boot it afresh? Only if
 * neither end ever completed a syncvm with a peer nor restarted. Any
 * syncvm that completed had two of the three replicas at its ends, so
 * one of these two would remember it; none did, so no output ever left
 * (outputs leave only once a syncvm with a secondary covers them) and a
 * VM booted again is one no client can tell from the lost one. This is
 * a group that lost its first leader, or its first leader's place,
 * before it was ever protected.
 */
bool plv_sync_fresh_boot(const PlvSyncHello *leader, const PlvSyncReply *secondary);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_SYNCVM_AGREE_H */
