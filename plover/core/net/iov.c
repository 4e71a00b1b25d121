/*
 * Byte ranges of an iovec array (see plover/iov.h).
 */
#include "plover/iov.h"

#include <string.h>

void plv_iov_copy(uint8_t *dst, const struct iovec *iov, int iovcnt,
                  size_t from, size_t n)
{
    for (int i = 0; i < iovcnt && n; i++) {
        if (from >= iov[i].iov_len) {
            from -= iov[i].iov_len;
            continue;
        }
        size_t k = iov[i].iov_len - from < n ? iov[i].iov_len - from : n;
        memcpy(dst, (const uint8_t *)iov[i].iov_base + from, k);
        dst += k;
        n -= k;
        from = 0;
    }
}

const uint8_t *plv_iov_span(const struct iovec *iov, int iovcnt, size_t from,
                            size_t n, uint8_t *scratch)
{
    size_t off = from;
    for (int i = 0; i < iovcnt; i++) {
        if (off < iov[i].iov_len) {
            if (iov[i].iov_len - off >= n) {
                return (const uint8_t *)iov[i].iov_base + off;
            }
            break;
        }
        off -= iov[i].iov_len;
    }
    plv_iov_copy(scratch, iov, iovcnt, from, n);
    return scratch;
}
