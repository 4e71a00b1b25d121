/*
 * zstd for syncvm: the data of PAGES and the device state, optionally
 * against a reference both ends hold (the previous syncvm's device state),
 * which zstd uses as a prefix: a blob that changed in a few places encodes
 * to a few hundred bytes, and one that moved (a section grew) still finds
 * its long matches.
 */
#ifndef PLOVER_ZSTD_CODEC_H
#define PLOVER_ZSTD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

/* A reference larger than this (with the data) is not used. */
#define PLV_ZSTD_MAX_REF (64u << 20)

typedef struct PlvZstd PlvZstd;     /* contexts, reused; one thread at a time */

PlvZstd *plv_zstd_new(int level);
void plv_zstd_free(PlvZstd *z);

/*
 * Appends one frame of src[0, len) to out, against ref[0, ref_len) if
 * ref_len > 0 (and small enough). Returns 0, or -1 if zstd failed (the
 * caller then sends the data raw).
 */
int plv_zstd_compress(PlvZstd *z, GByteArray *out, const void *src,
                      size_t len, const void *ref, size_t ref_len);

/*
 * Decodes one frame of src[0, len) that must give exactly dst_len bytes
 * into dst (never writing past it), against the same reference the
 * sender used. -1 with a one-line reason in err otherwise.
 */
int plv_zstd_decompress(PlvZstd *z, void *dst, size_t dst_len,
                        const void *src, size_t len, const void *ref,
                        size_t ref_len, GError **err);

#endif
