/*
 * AEAD for the RDMA ring records (docs/rdma.md, "Sealed records"):
 * AES-256-GCM through GnuTLS, one key and one nonce salt per direction of
 * a connection, both derived from the session key of the authenticated
 * handshake (plover/link-proto.h). The nonce is the salt and the record's
 * sequence number, which never repeats on a connection; the session key,
 * and so every key here, is new for every connection (both ends' random
 * nonces are in it), so no (key, nonce) pair ever comes back, reconnects
 * included.
 */
#ifndef PLOVER_RECORD_SEAL_H
#define PLOVER_RECORD_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLV_SEAL_TAG_LEN 16u      /* bytes a sealed record grows by */

typedef struct PlvRecordSeal PlvRecordSeal;

/*
 * The sealer of the direction written by @role ('D': the dialer, 'A': the
 * acceptor) of the connection whose handshake gave @session_key
 * (PLV_LINK_KEY_LEN bytes). NULL if GnuTLS refuses the cipher.
 */
PlvRecordSeal *plv_record_seal_new(const uint8_t *session_key, char role);
void plv_record_seal_free(PlvRecordSeal *s);

/* @len bytes of @in, encrypted, then the tag, to @out (@len +
 * PLV_SEAL_TAG_LEN bytes); @aad is authenticated with them. */
bool plv_record_seal(PlvRecordSeal *s, uint64_t seq, const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out);
/* The reverse, from @in (@len + PLV_SEAL_TAG_LEN bytes) to @out (@len):
 * false, and @out undefined, unless the tag checks for @seq and @aad. */
bool plv_record_open(PlvRecordSeal *s, uint64_t seq, const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_RECORD_SEAL_H */
