/*
 * Page fingerprints and the hashing thread pool.
 *
 * A fingerprint is a 128-bit XXH3 hash keyed with a per-session secret that
 * both replicas derive from their link's session key. The guest never learns
 * the secret, so it cannot craft two different pages with equal
 * fingerprints that would make syncvm skip a divergent page.
 */
#ifndef PLOVER_PAGEHASH_H
#define PLOVER_PAGEHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plover/memview.h"

/* >= XXH3_SECRET_SIZE_MIN (136); 192 is XXH3's default secret size. */
#define PLV_HASH_SECRET_LEN 192

typedef struct PlvPageHash {
    uint64_t lo, hi;
} PlvPageHash;

static inline bool plv_page_hash_equal(const PlvPageHash *a,
                                       const PlvPageHash *b)
{
    return a->lo == b->lo && a->hi == b->hi;
}

typedef struct PlvHashKey {
    uint8_t secret[PLV_HASH_SECRET_LEN];
    PlvPageHash zero4k;         /* fingerprint of a zero 4 KiB page */
} PlvHashKey;

/*
 * Derives the fingerprint secret from a link's session key (both ends of
 * one connection get the same key, every connection a new one). The label
 * separates this use of the session key from any other.
 */
void plv_hash_key_derive(PlvHashKey *key, const uint8_t *session_key,
                         size_t session_key_len);

/* Keyed fingerprint of len bytes. */
PlvPageHash plv_page_hash(const PlvHashKey *key, const void *data,
                          size_t len);

/*
 * Sub-page fingerprints: a page is cut into PLV_PAGE_SUPERBLOCKS equal
 * super-blocks of PLV_SUPERBLOCK_BLOCKS blocks each (PLV_PAGE_BLOCKS in
 * all), and each gets a 32-bit fingerprint, so that two replicas can find
 * which blocks of a divergent page differ and send only those. They are
 * hints, not checks: the whole page's 128-bit fingerprint still decides
 * whether the rebuilt page is right. The seed is derived from the key and
 * a per-attempt salt (plv_block_seed), so a collision the guest cannot
 * predict anyway does not repeat on the next attempt.
 */
#define PLV_PAGE_SUPERBLOCKS 8
#define PLV_SUPERBLOCK_BLOCKS 8
#define PLV_PAGE_BLOCKS (PLV_PAGE_SUPERBLOCKS * PLV_SUPERBLOCK_BLOCKS)

uint64_t plv_block_seed(const PlvHashKey *key, uint64_t salt_a,
                        uint64_t salt_b);
/* Fingerprints of the n equal blocks of data[0, len) (len: n x 8 x k). */
void plv_block_hashes(uint64_t seed, const void *data, size_t len,
                      unsigned n, uint32_t *out);

/* True if the len bytes (a multiple of 8, 8-aligned) are all zero. */
bool plv_page_is_zero(const void *data, size_t len);

/* Keyed fingerprint of an all-zero page of len bytes. */
PlvPageHash plv_zero_page_hash(const PlvHashKey *key, size_t len);

/*
 * The same fingerprint as plv_page_hash, with a fast path for zero pages;
 * *is_zero tells whether the page was zero (the transfer sends those as a
 * marker, without data).
 */
PlvPageHash plv_page_hash_zero_aware(const PlvHashKey *key, const void *data,
                                     size_t len, bool *is_zero);

/* A page of a memory view: region index and page index in that region. */
typedef struct PlvPageRef {
    uint32_t region;
    uint32_t page;
} PlvPageRef;

typedef struct PlvHashPool PlvHashPool;

/* Threads used when the configuration says 0: all cores but one, at least 1. */
unsigned plv_hash_pool_default_threads(void);

/*
 * n_threads hashing threads in all: the caller of plv_hash_pool_run is one
 * of them, n_threads - 1 are started here. 0 means the default.
 */
PlvHashPool *plv_hash_pool_new(unsigned n_threads);
void plv_hash_pool_free(PlvHashPool *pool);
unsigned plv_hash_pool_threads(const PlvHashPool *pool);

/*
 * Runs fn over [0, n) split into chunks of `chunk` items, on all threads
 * of the pool; returns when every chunk is done. One run at a time per
 * pool (concurrent callers are serialized).
 */
typedef void (*PlvHashPoolFn)(void *opaque, uint64_t begin, uint64_t end);
void plv_hash_pool_run(PlvHashPool *pool, uint64_t n, uint64_t chunk,
                       PlvHashPoolFn fn, void *opaque);

/*
 * Fingerprints of the n pages refs[] of mv into out[] (and their zero flags
 * into zero[] when it is not NULL), in parallel on the pool.
 */
void plv_hash_pages(PlvHashPool *pool, const PlvHashKey *key,
                    const PlvMemView *mv, const PlvPageRef *refs, uint64_t n,
                    PlvPageHash *out, bool *zero);

#endif
