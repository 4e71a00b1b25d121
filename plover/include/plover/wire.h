/*
 * plover wire codec: the messages the consensus replicas exchange.
 *
 * Frame (all integers little-endian):
 *
 *   offset  size  field
 *   0       4     magic     "PLVR" (0x52564c50 read as LE u32)
 *   4       1     version   PLV_WIRE_VERSION
 *   5       1     type      PlvMsgType
 *   6       2     reserved  must be 0
 *   8       4     length    payload length in bytes (<= PLV_WIRE_MAX_PAYLOAD)
 *   12      len   payload   common header, then the type's body
 *   12+len  8     checksum  XXH64 (seed 0) of bytes [0, 12+len)
 *
 * The checksum catches corruption, not forgery: peers authenticate at the
 * transport (shared secret / TLS), which is where a MAC belongs.
 *
 * Every decoder checks every length, count and enum against the bytes that
 * are actually there and returns an error (never aborts) for anything that
 * is malformed: truncated, oversized, trailing garbage, unknown type/op,
 * out-of-range node id, malformed entry payloads.
 */
#ifndef PLOVER_WIRE_H
#define PLOVER_WIRE_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

G_BEGIN_DECLS

#define PLV_WIRE_MAGIC        0x52564c50u   /* "PLVR" on the wire */
#define PLV_WIRE_VERSION      2   /* 2: PROMISE other_vid, PREPARE kept_vid */
#define PLV_WIRE_HDR_LEN      12            /* magic..length */
#define PLV_WIRE_TRAILER_LEN  8             /* checksum */
#define PLV_WIRE_MAX_PAYLOAD  (64u << 20)   /* one frame, 64 MiB */
#define PLV_WIRE_MAX_ENTRIES  65536         /* entries in one message */
#define PLV_WIRE_MAX_PACKETS  65536         /* packets in one input batch */

/* Cluster size limit: node ids are 0..n-1, n <= PLV_MAX_NODES. */
#define PLV_MAX_NODES         9
#define PLV_NODE_NONE         0xffffffffu

/*
 * A view id (vid) is a ballot: (round << 8) | leader id. Two candidates
 * never share a vid, so a vid names its one possible leader. vid 0 = none.
 */
static inline uint32_t plv_vid_leader(uint64_t vid) { return (uint32_t)(vid & 0xff); }
static inline uint64_t plv_vid_round(uint64_t vid) { return vid >> 8; }
static inline uint64_t plv_vid_make(uint64_t round, uint32_t leader)
{
    return (round << 8) | (leader & 0xff);
}

#define PLV_WIRE_ERROR (plv_wire_error_quark())
GQuark plv_wire_error_quark(void);

typedef enum {
    PLV_WIRE_ERR_SHORT = 1,     /* fewer bytes than the frame/field needs */
    PLV_WIRE_ERR_MAGIC,
    PLV_WIRE_ERR_VERSION,
    PLV_WIRE_ERR_TYPE,          /* unknown message type */
    PLV_WIRE_ERR_LENGTH,        /* length field too large / trailing bytes */
    PLV_WIRE_ERR_CHECKSUM,
    PLV_WIRE_ERR_FIELD,         /* bad enum, node id, count or entry payload */
    PLV_WIRE_ERR__COUNT
} PlvWireErr;

/* Operations carried by log entries. */
typedef enum {
    PLV_OP_NOOP = 1,    /* new leader's barrier when nothing is recovered */
    PLV_OP_SECOND,      /* payload: u32 node id of the new secondary */
    PLV_OP_INPUT,       /* payload: input batch (see plv_batch_*) */
    PLV_OP_SYNCVM,      /* payload: u64 epoch */
    PLV_OP_CONFIG,      /* payload: u32 node id, u64 incarnation (admit) */
    PLV_OP_END,         /* no payload: the guest powered off; the group ends */
    PLV_OP__MAX
} PlvOp;

/*
 * One log entry. vid is its viewstamp: the view in which the copy held
 * here was proposed. payload is immutable and shared (GBytes), may be NULL
 * when empty.
 */
typedef struct {
    uint64_t index;
    uint64_t vid;
    uint8_t op;         /* PlvOp */
    GBytes *payload;
} PlvEntry;

/*
 * Replicated state at a truncation point: what a node needs, besides the
 * VM state, to continue from index+1 without the entries up to index.
 */
typedef struct {
    uint64_t index;                 /* last entry covered (a syncvm) */
    uint64_t vid;                   /* viewstamp of that entry */
    uint64_t epoch;                 /* syncvm epoch at index */
    uint32_t secondary;             /* PLV_NODE_NONE if none */
    uint32_t n;                     /* cluster size */
    uint64_t inc[PLV_MAX_NODES];    /* admitted incarnation per node */
} PlvSnapMeta;

typedef enum {
    PLV_MSG_PREPARE = 1,    /* candidate -> all: phase 1a for view vid */
    PLV_MSG_PROMISE,        /* phase 1b: ok + accepted entries, or refusal */
    PLV_MSG_ACCEPT,         /* leader -> all: phase 2a, entries + commit */
    PLV_MSG_ACCEPTED,       /* phase 2b: acked up to index in vid */
    PLV_MSG_HEARTBEAT,      /* everyone -> everyone: liveness + status */
    PLV_MSG_CATCHUP_REQ,    /* learner -> peer: committed entries from index */
    PLV_MSG_CATCHUP_RESP,   /* committed entries and/or snapshot meta */
    PLV_MSG_FORWARD,        /* non-leader -> leader: input entries to submit */
    PLV_MSG__MAX
} PlvMsgType;

/* Header flags: the sender's status. */
enum {
    PLV_HDR_ADMITTED     = 1u << 0,  /* its incarnation is admitted: it votes */
    PLV_HDR_SNAP_PENDING = 1u << 1,  /* it waits for a state transfer */
    PLV_HDR_LEADER       = 1u << 2,  /* it leads view hdr.vid */
    PLV_HDR_HANDOFF      = 1u << 3,  /* leader -> its secondary: take over now */
    PLV_HDR_PROBE        = 1u << 4,  /* PREPARE/PROMISE of a pre-vote: no state changes */
    PLV_HDR_VOTER        = 1u << 5,  /* not admitted yet, but it votes: its
                                      * promises survived its restart */
    PLV_HDR__ALL         = 0x3fu,
};

/* Common header: every message carries the sender's status. */
typedef struct {
    uint32_t from;
    uint32_t to;
    uint64_t inc;           /* sender's incarnation */
    uint64_t vid;           /* sender's promised (highest known) view */
    uint64_t commit;        /* sender's commit index */
    uint64_t last;          /* sender's last log index */
    uint64_t applied;       /* index of the last syncvm it applied (0: none) */
    uint64_t to_inc;        /* replies: incarnation of the node whose request
                             * this answers (0: not a reply). A restarted node
                             * drops answers meant for its former self. */
    uint32_t flags;         /* PLV_HDR_* */
} PlvMsgHdr;

typedef struct {
    PlvMsgType type;
    PlvMsgHdr hdr;
    /*
     * Body fields; which ones a type uses:
     *   PREPARE       vid (the new view), kept_vid
     *   PROMISE       vid, ok, other_vid, entries (index > candidate's
     *                 commit), has_snap/snap (when the promiser truncated
     *                 past it)
     *   ACCEPT        vid, index (commit), trunc, entries
     *   ACCEPTED      vid, ok, index (last index acked)
     *   HEARTBEAT     vid, trunc
     *   CATCHUP_REQ   index (first wanted), count (max entries)
     *   CATCHUP_RESP  entries (committed), has_snap/snap
     * Unused fields are zero/NULL and are neither encoded nor decoded.
     */
    uint64_t vid;
    /* PROMISE: the highest view the promiser ever promised to a node other
     * than vid's leader (0: none). A kept VM is stale if a phase 1 saw one
     * newer than the view it ran in (docs/exec.md, "Both others lost"). */
    uint64_t other_vid;
    /* PREPARE: the view in which the VM the candidate keeps last ran (0:
     * it keeps none); acceptors prefer the candidate with the newest. */
    uint64_t kept_vid;
    uint64_t index;
    uint64_t trunc;
    uint32_t count;
    bool ok;
    bool has_snap;
    PlvSnapMeta snap;
    GArray *entries;        /* of PlvEntry, NULL when none */
} PlvMsg;

/* Zero *m (type 0: invalid until set). */
void plv_msg_init(PlvMsg *m, PlvMsgType type);
/* Release entries and zero *m. Safe on an initialized or zeroed msg. */
void plv_msg_clear(PlvMsg *m);
/* Deep-enough copy: entries array is new, payloads are shared refs. */
void plv_msg_copy(PlvMsg *dst, const PlvMsg *src);
/* Append a copy of e (takes a new ref on its payload). */
void plv_msg_add_entry(PlvMsg *m, const PlvEntry *e);
const char *plv_msg_type_name(int type);

/* Entry helpers. */
void plv_entry_copy(PlvEntry *dst, const PlvEntry *src);
void plv_entry_clear(PlvEntry *e);
size_t plv_entry_payload_len(const PlvEntry *e);
const uint8_t *plv_entry_payload(const PlvEntry *e, size_t *len);
/* Same op and payload bytes (index/vid not compared). */
bool plv_entry_same_value(const PlvEntry *a, const PlvEntry *b);
/* Check the op and that the payload has the op's exact shape. */
bool plv_entry_valid(const PlvEntry *e, GError **err);

/* Payload builders/readers for the fixed-shape ops. */
GBytes *plv_op_second_payload(uint32_t id);
GBytes *plv_op_syncvm_payload(uint64_t epoch);
GBytes *plv_op_config_payload(uint32_t id, uint64_t inc);
bool plv_op_second_get(const PlvEntry *e, uint32_t *id);
bool plv_op_syncvm_get(const PlvEntry *e, uint64_t *epoch);
bool plv_op_config_get(const PlvEntry *e, uint32_t *id, uint64_t *inc);

/*
 * Input batch payload: u32 count, then count x (u32 len, len bytes).
 * A builder appends packets; the iterator walks a validated payload.
 */
void plv_batch_init(GByteArray *b);                 /* writes count 0 */
void plv_batch_add(GByteArray *b, const void *pkt, uint32_t len);
uint32_t plv_batch_count(const uint8_t *p, size_t len);
bool plv_batch_valid(const uint8_t *p, size_t len);
typedef struct {
    const uint8_t *p;
    size_t len;
    size_t off;
    uint32_t left;
} PlvBatchIter;
void plv_batch_iter_init(PlvBatchIter *it, const uint8_t *p, size_t len);
/* The packets of an input entry (its payload is the batch). */
void plv_batch_iter_entry(PlvBatchIter *it, const PlvEntry *e);
/* Next packet; false at the end (or on a malformed batch). */
bool plv_batch_next(PlvBatchIter *it, const uint8_t **pkt, uint32_t *len);

/*
 * Encode m as one frame appended to out. Returns false (and sets err)
 * only if m itself is invalid (bad type/op/node id, too large).
 */
bool plv_wire_encode(const PlvMsg *m, GByteArray *out, GError **err);

/*
 * Decode exactly one frame occupying buf[0, len). On success fills *out
 * (which the caller clears with plv_msg_clear) and returns 0; on error
 * returns -1 with err set (a PLV_WIRE_ERR_* code) and *out cleared.
 * n_nodes bounds hdr.from/hdr.to and snapshot sizes (PLV_MAX_NODES if 0).
 */
int plv_wire_decode(const uint8_t *buf, size_t len, uint32_t n_nodes,
                    PlvMsg *out, GError **err);

/*
 * Stream framing: with `have` bytes buffered at buf, return the total
 * size of the first frame (header + payload + checksum) once its header
 * is in, 0 if more bytes are needed to know, or -1 (err set) when the
 * header is already invalid (bad magic/version/length): drop the stream.
 */
ssize_t plv_wire_frame_len(const uint8_t *buf, size_t have, GError **err);

/* Per-connection/replica decode error counters (no global state). */
typedef struct {
    uint64_t ok;
    uint64_t bad[PLV_WIRE_ERR__COUNT];  /* indexed by PlvWireErr */
    uint64_t bad_total;
} PlvWireStats;
/* Count one decode result: err NULL = success. */
void plv_wire_stats_note(PlvWireStats *s, const GError *err);

G_END_DECLS

#endif /* PLOVER_WIRE_H */
