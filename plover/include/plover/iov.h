/*
 * Byte ranges of an iovec array, for the senders that cut a message into
 * records of their own (TLS records, RDMA ring records).
 */
#ifndef PLOVER_IOV_H
#define PLOVER_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Copy @n bytes of @iov, starting at byte @from, to @dst. */
void plv_iov_copy(uint8_t *dst, const struct iovec *iov, int iovcnt,
                  size_t from, size_t n);

/* @n bytes of @iov from byte @from on, contiguous: in place if they lie in
 * one iovec, else copied to @scratch (at least @n bytes). */
const uint8_t *plv_iov_span(const struct iovec *iov, int iovcnt, size_t from,
                            size_t n, uint8_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_IOV_H */
