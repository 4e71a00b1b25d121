/*
 * zstd for syncvm (plover/zstd-codec.h). The streaming API is used on
 * both sides because it honours a one-frame prefix and lets the decoder
 * stop at the output's end, so a hostile frame cannot make it write past
 * the length the message announced.
 */
#include "plover/zstd-codec.h"

#include <zstd.h>

struct PlvZstd {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
    int level;
};

/* Window large enough for a frame to reach back over its reference. */
#define ZSTD_MAX_WINDOW_LOG 27

PlvZstd *plv_zstd_new(int level)
{
    PlvZstd *z = g_new0(PlvZstd, 1);

    z->level = level;
    return z;
}

void plv_zstd_free(PlvZstd *z)
{
    if (z) {
        ZSTD_freeCCtx(z->c);
        ZSTD_freeDCtx(z->d);
        g_free(z);
    }
}

static unsigned window_log(size_t n)
{
    unsigned log = 10;

    while (log < ZSTD_MAX_WINDOW_LOG && ((size_t)1 << log) < n) {
        log++;
    }
    return log;
}

static bool use_ref(size_t ref_len, size_t len)
{
    return ref_len > 0 && ref_len + len <= PLV_ZSTD_MAX_REF;
}

int plv_zstd_compress(PlvZstd *z, GByteArray *out, const void *src,
                      size_t len, const void *ref, size_t ref_len)
{
    size_t start = out->len, bound = ZSTD_compressBound(len), n;

    if (!z->c && !(z->c = ZSTD_createCCtx())) {
        return -1;
    }
    ZSTD_CCtx_reset(z->c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, z->level);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 0);
    if (use_ref(ref_len, len)) {
        ZSTD_CCtx_setParameter(z->c, ZSTD_c_windowLog,
                               window_log(ref_len + len));
        if (ZSTD_isError(ZSTD_CCtx_refPrefix(z->c, ref, ref_len))) {
            return -1;
        }
    }
    g_byte_array_set_size(out, start + bound);
    n = ZSTD_compress2(z->c, out->data + start, bound, src, len);
    if (ZSTD_isError(n)) {
        g_byte_array_set_size(out, start);
        return -1;
    }
    g_byte_array_set_size(out, start + n);
    return 0;
}

int plv_zstd_decompress(PlvZstd *z, void *dst, size_t dst_len,
                        const void *src, size_t len, const void *ref,
                        size_t ref_len, GError **err)
{
    ZSTD_inBuffer in = { .src = src, .size = len };
    ZSTD_outBuffer out = { .dst = dst, .size = dst_len };
    size_t rc;

    if (!z->d && !(z->d = ZSTD_createDCtx())) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_NOMEM,
                    "zstd: no decompression context");
        return -1;
    }
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_and_parameters);
    /* No larger window than an honest frame of this length needs. */
    ZSTD_DCtx_setParameter(z->d, ZSTD_d_windowLogMax,
                           window_log(ref_len + dst_len));
    if (use_ref(ref_len, dst_len) &&
        ZSTD_isError(ZSTD_DCtx_refPrefix(z->d, ref, ref_len))) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "zstd: reference refused");
        return -1;
    }
    rc = ZSTD_decompressStream(z->d, &out, &in);
    if (ZSTD_isError(rc)) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "zstd: %s",
                    ZSTD_getErrorName(rc));
        return -1;
    }
    /* 0: the frame ended; it must also be the whole input and output. */
    if (rc != 0 || in.pos != len || out.pos != dst_len) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "zstd: frame of %zu bytes gives %zu, expected %zu%s",
                    len, out.pos, dst_len,
                    rc != 0 ? " (or more)" : "");
        return -1;
    }
    return 0;
}
