/*
 * syncvm wire messages: encoders and validating decoders.
 *
 * Every message starts with the same header (all integers little-endian):
 *   version u16, flags u16, attempt u32, vid u64, epoch u64
 * flags: PLV_SVM_FLAG_FULL (set by the leader on BITMAP: send every dirty
 * page without comparing fingerprints; the baseline the benchmark measures).
 * The frame type (PLV_SVM_MSG_*) travels in the link's frame header.
 *
 * Bodies:
 *   BITMAP   n_regions u32, then per region: id u32, page_size u32,
 *            n_pages u64, encoding u8 (0 raw, 1 sparse), n_entries u32,
 *            raw: n_entries (= words of the region) x u64;
 *            sparse: n_entries x (word index u32, word u64), indices rising;
 *            then the sender's device-state base: length u64,
 *            fingerprint lo u64, hi u64 (length 0: none)
 *   HASHES   first u32, count u32, count x (lo u64, hi u64)
 *            fingerprints of union pages [first, first + count)
 *   BLOCKREQ count u32, count x (union index u32, PLV_PAGE_SUPERBLOCKS x
 *            u32): divergent pages (indices rising across the transfer)
 *            with the leader's super-block fingerprints of each
 *   BLOCKHASHES first u32 (the request's first index), count u32 (the
 *            request's count), then per page: mask u8 (the super-blocks
 *            whose fingerprints differ here), and for each bit set, from
 *            the lowest, PLV_SUPERBLOCK_BLOCKS x u32: the secondary's
 *            block fingerprints of that super-block
 *   PAGES    count u32, encoding u8 (0 raw, 1 zstd), data_len u32 (the
 *            data's length decoded), count x record, then the data
 *            (raw: data_len bytes; zstd: one frame giving data_len bytes).
 *            record: union index u32, kind u8, fingerprint lo u64, hi u64,
 *            and for DELTA a block mask u64. Data per record: DATA the
 *            page, DELTA the masked blocks (page_size / PLV_PAGE_BLOCKS
 *            each, in order), ZERO nothing. Indices rise within and across
 *            PAGES messages of one transfer; the fingerprint of the whole
 *            page (0 in FULL mode, where DELTA is refused) is checked on
 *            the secondary before the page is staged
 *   DEVSTATE offset u64, then bytes of the encoded device state at offset
 *   EOF      n_pages u32, n_zero u32, devstate_len u64, union digest
 *            (lo u64, hi u64), device-state fingerprint (lo u64, hi u64),
 *            devstate encoding u8 (0 raw, 1 zstd, 2 zstd against the base
 *            both announced), devstate_wire_len u64; devstate_len and the
 *            fingerprint are of the blob decoded
 *   ACK      n_pages u32, devstate_len u64
 *   NACK     code u32, reason_len u16, reason (UTF-8, not terminated)
 *
 * The union of the dirty bitmaps is ordered region by region, page by page;
 * both replicas build the same list, so pages are named by their position
 * in it ("union index"). Decoders check every length, count and index
 * against the memory view and the union before the caller touches memory.
 */
#ifndef PLOVER_SYNCVM_MSG_H
#define PLOVER_SYNCVM_MSG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "plover/memview.h"
#include "plover/pagehash.h"

#define PLV_SVM_VERSION 2
#define PLV_SVM_FLAG_FULL 0x0001u
#define PLV_SVM_KNOWN_FLAGS PLV_SVM_FLAG_FULL

enum {
    PLV_SVM_MSG_BITMAP = 0x5301,
    PLV_SVM_MSG_HASHES,
    PLV_SVM_MSG_PAGES,
    PLV_SVM_MSG_DEVSTATE,
    PLV_SVM_MSG_EOF,
    PLV_SVM_MSG_ACK,
    PLV_SVM_MSG_NACK,
    PLV_SVM_MSG_BLOCKREQ,
    PLV_SVM_MSG_BLOCKHASHES,
};

/* What a message carries, for the byte accounting. */
typedef enum PlvSvmBytesKind {
    PLV_SVM_BYTES_BITMAP,
    PLV_SVM_BYTES_FINGERPRINTS,     /* HASHES, BLOCKHASHES */
    PLV_SVM_BYTES_PAGES,
    PLV_SVM_BYTES_DEVSTATE,
    PLV_SVM_BYTES_CONTROL,          /* BLOCKREQ, EOF, ACK, NACK */
    PLV_SVM_BYTES_KINDS
} PlvSvmBytesKind;

PlvSvmBytesKind plv_svm_bytes_kind(uint16_t type);

#define PLV_SVM_HDR_LEN        24
#define PLV_SVM_HASH_LEN       16
#define PLV_SVM_PAGE_REC_LEN   21    /* DELTA: + 8 (mask) */
#define PLV_SVM_EOF_LEN        57
#define PLV_SVM_BASE_LEN       24    /* BITMAP's device-state base */
/* Records per PAGES, data per PAGES decoded, indices per BLOCKREQ. */
#define PLV_SVM_MAX_PAGE_RECS  256u
#define PLV_SVM_MAX_PAGES_DATA (4u << 20)
#define PLV_SVM_MAX_BLOCKREQ   4096u
#define PLV_SVM_BITMAP_REG_LEN 21    /* per-region fixed part of BITMAP */
#define PLV_SVM_MAX_REASON     200

enum { PLV_SVM_PAGE_DATA = 0, PLV_SVM_PAGE_ZERO = 1, PLV_SVM_PAGE_DELTA = 2 };
/* Encodings of PAGES data and of the device state. */
enum { PLV_SVM_ENC_RAW = 0, PLV_SVM_ENC_ZSTD = 1, PLV_SVM_ENC_ZSTD_BASE = 2 };
enum { PLV_SVM_BITMAP_RAW = 0, PLV_SVM_BITMAP_SPARSE = 1 };

#define PLV_SVM_ERROR (plv_svm_error_quark())
GQuark plv_svm_error_quark(void);

typedef enum PlvSvmErrorCode {
    PLV_SVM_ERROR_MALFORMED = 1, /* bad length, count, index or field */
    PLV_SVM_ERROR_VERSION,       /* unknown message version */
    PLV_SVM_ERROR_STALE,         /* vid/epoch/attempt older than ours */
    PLV_SVM_ERROR_FUTURE,        /* vid/epoch newer than ours */
    PLV_SVM_ERROR_LAYOUT,        /* peer's memory layout differs */
    PLV_SVM_ERROR_UNEXPECTED,    /* message type not valid in this phase */
    PLV_SVM_ERROR_TIMEOUT,       /* peer too slow (after retries) */
    PLV_SVM_ERROR_PEER,          /* the peer reported a failure (NACK) */
    PLV_SVM_ERROR_LINK,          /* the channel failed */
    PLV_SVM_ERROR_DEVSTATE,      /* device state could not be taken/applied */
    /*
     * The secondary could not commit (load the device state) after it
     * wrote the pages: fatal, guest memory has changed.
     */
    PLV_SVM_ERROR_COMMIT,
    /* The source could not give the run the pages of its cut. */
    PLV_SVM_ERROR_SNAPSHOT,
} PlvSvmErrorCode;

typedef struct PlvSvmHdr {
    uint16_t flags;
    uint32_t attempt;
    uint64_t vid;
    uint64_t epoch;
} PlvSvmHdr;

/* The union of both dirty bitmaps as an ordered page list. */
typedef struct PlvSvmUnion {
    PlvPageRef *refs;
    uint32_t n;
} PlvSvmUnion;

/* Builds the page list of per-region bitmaps (one per region of mv). */
void plv_svm_union_build(PlvSvmUnion *u, const PlvMemView *mv,
                         const PlvBitmap *bitmaps);
void plv_svm_union_clear(PlvSvmUnion *u);
/*
 * Keyed digest of the union bitmaps: both sides must have built the same
 * union, or page indices would name different pages on the two sides.
 */
PlvPageHash plv_svm_union_digest(const PlvHashKey *key, const PlvMemView *mv,
                                 const PlvBitmap *bitmaps);

void plv_svm_put_hdr(GByteArray *out, const PlvSvmHdr *h);
/* Checks version and flags; body and body_len: what follows. */
int plv_svm_get_hdr(const uint8_t *buf, size_t len, PlvSvmHdr *h,
                    const uint8_t **body, size_t *body_len, GError **err);

/*
 * The device state a replica holds from its last syncvm, which the leader
 * may send the next one against (len 0: none).
 */
typedef struct PlvSvmBase {
    uint64_t len;
    PlvPageHash hash;           /* keyed fingerprint */
} PlvSvmBase;

/* BITMAP: bitmaps[] has one bitmap per region of mv. */
void plv_svm_encode_bitmap(GByteArray *out, const PlvSvmHdr *h,
                           const PlvMemView *mv, const PlvBitmap *bitmaps,
                           const PlvSvmBase *base);
/*
 * Checks the peer's layout against mv and ORs the peer's bits into
 * bitmaps[] (one per region of mv) only once the whole body is valid;
 * *base: the peer's device-state base.
 */
int plv_svm_decode_bitmap(const uint8_t *body, size_t len,
                          const PlvMemView *mv, PlvBitmap *bitmaps,
                          PlvSvmBase *base, GError **err);

/*
 * BLOCKREQ: sb[i * PLV_PAGE_SUPERBLOCKS ...] are the super-block
 * fingerprints of page index[i].
 */
void plv_svm_encode_blockreq(GByteArray *out, const PlvSvmHdr *h,
                             const uint32_t *index, const uint32_t *sb,
                             uint32_t count);
/*
 * Indices (room for PLV_SVM_MAX_BLOCKREQ, and as many times
 * PLV_PAGE_SUPERBLOCKS in sb) rising, >= min_index and < n_union.
 */
int plv_svm_decode_blockreq(const uint8_t *body, size_t len,
                            uint32_t n_union, uint32_t min_index,
                            uint32_t *index, uint32_t *sb, uint32_t *count,
                            GError **err);

/*
 * BLOCKHASHES: per page i, masks[i] and the block fingerprints
 * blocks[i * PLV_PAGE_BLOCKS + s * PLV_SUPERBLOCK_BLOCKS ...] of each
 * super-block s in the mask (the others are not sent).
 */
void plv_svm_encode_blockhashes(GByteArray *out, const PlvSvmHdr *h,
                                uint32_t first, const uint8_t *masks,
                                const uint32_t *blocks, uint32_t count);
/* Must answer the request (first, count) exactly. */
int plv_svm_decode_blockhashes(const uint8_t *body, size_t len,
                               uint32_t first, uint32_t count,
                               uint8_t *masks, uint32_t *blocks,
                               GError **err);

/* HASHES */
void plv_svm_encode_hashes(GByteArray *out, const PlvSvmHdr *h,
                           uint32_t first, const PlvPageHash *hashes,
                           uint32_t count);
/* Requires first == expect_first and first + count <= n_union. */
int plv_svm_decode_hashes(const uint8_t *body, size_t len,
                          uint32_t expect_first, uint32_t n_union,
                          PlvPageHash *out, uint32_t *count, GError **err);

/* PAGES: the caller sends the encoded part followed by the data. */
typedef struct PlvSvmPageRec {
    uint32_t index;             /* union index */
    uint8_t kind;               /* PLV_SVM_PAGE_DATA, _ZERO or _DELTA */
    PlvPageHash hash;           /* the leader's fingerprint of the page */
    uint64_t mask;              /* DELTA: the blocks that follow */
    const uint8_t *data;        /* into the decoded data; NULL for ZERO */
} PlvSvmPageRec;

/* Bytes of data a record carries. */
size_t plv_svm_rec_data_len(const PlvSvmPageRec *rec, uint32_t page_size);
/* Bytes of a PAGES body before its data: count, encoding, records. */
size_t plv_svm_pages_head_len(const PlvSvmPageRec *recs, uint32_t count);

void plv_svm_encode_pages_head(GByteArray *out, const PlvSvmHdr *h,
                               const PlvSvmPageRec *recs, uint32_t count,
                               uint8_t encoding, uint32_t data_len);
/*
 * Fills recs (room for PLV_SVM_MAX_PAGE_RECS, or for the union indices
 * from min_index on if fewer) after checking: count,
 * indices rising and >= min_index, < u->n, kinds known (DELTA with a
 * non-empty mask, and not with allow_delta false), data_len at most
 * PLV_SVM_MAX_PAGES_DATA and equal to what the records carry, and the
 * data exactly that long: raw, or a zstd frame (decoded with z into
 * *decoded, which the records then point into).
 */
typedef struct PlvZstd PlvZstd;
int plv_svm_decode_pages(const uint8_t *body, size_t len,
                         const PlvMemView *mv, const PlvSvmUnion *u,
                         uint32_t min_index, bool allow_delta, PlvZstd *z,
                         GByteArray *decoded, PlvSvmPageRec *recs,
                         uint32_t *count, GError **err);

/* DEVSTATE */
void plv_svm_encode_devstate_head(GByteArray *out, const PlvSvmHdr *h,
                                  uint64_t offset);
int plv_svm_decode_devstate(const uint8_t *body, size_t len,
                            uint64_t expect_offset, uint64_t max_len,
                            const uint8_t **data, size_t *data_len,
                            GError **err);

/* EOF */
typedef struct PlvSvmEof {
    uint32_t n_pages, n_zero;
    uint64_t devstate_len;      /* the blob, decoded */
    PlvPageHash union_digest;   /* plv_svm_union_digest of the leader */
    PlvPageHash devstate_hash;  /* keyed fingerprint of the blob, decoded */
    uint8_t devstate_enc;       /* PLV_SVM_ENC_* */
    uint64_t devstate_wire_len; /* bytes in DEVSTATE messages */
} PlvSvmEof;

void plv_svm_encode_eof(GByteArray *out, const PlvSvmHdr *h,
                        const PlvSvmEof *e);
int plv_svm_decode_eof(const uint8_t *body, size_t len, PlvSvmEof *e,
                       GError **err);

/* ACK */
void plv_svm_encode_ack(GByteArray *out, const PlvSvmHdr *h, uint32_t n_pages,
                        uint64_t devstate_len);
int plv_svm_decode_ack(const uint8_t *body, size_t len, uint32_t *n_pages,
                       uint64_t *devstate_len, GError **err);

/* NACK */
void plv_svm_encode_nack(GByteArray *out, const PlvSvmHdr *h, uint32_t code,
                         const char *reason);
/* *reason: a new string with non-printable bytes replaced. */
int plv_svm_decode_nack(const uint8_t *body, size_t len, uint32_t *code,
                        char **reason, GError **err);

const char *plv_svm_msg_name(uint16_t type);

#endif
