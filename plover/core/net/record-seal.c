/*
 * AES-256-GCM for the RDMA ring records (see plover/record-seal.h).
 */
#include "plover/record-seal.h"
#include "plover/bytes.h"
#include "plover/link.h"

#include <string.h>
#include <glib.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#define NONCE_LEN 12u
#define SALT_LEN  4u

struct PlvRecordSeal {
    gnutls_aead_cipher_hd_t h;
    uint8_t salt[SALT_LEN];
};

/* HMAC-SHA256(@key, @label || 0 || @role) into @out (32 bytes). */
static void derive(const uint8_t *key, const char *label, char role,
                   uint8_t out[32])
{
    GHmac *m = g_hmac_new(G_CHECKSUM_SHA256, key, PLV_LINK_KEY_LEN);
    gsize len = 32;
    g_hmac_update(m, (const guchar *)label, strlen(label) + 1);
    g_hmac_update(m, (const guchar *)&role, 1);
    g_hmac_get_digest(m, out, &len);
    g_hmac_unref(m);
}

PlvRecordSeal *plv_record_seal_new(const uint8_t *session_key, char role)
{
    PlvRecordSeal *s = g_new0(PlvRecordSeal, 1);
    uint8_t k[32], salt[32];
    derive(session_key, "plover-rdma-aead-key", role, k);
    derive(session_key, "plover-rdma-aead-salt", role, salt);
    memcpy(s->salt, salt, SALT_LEN);
    gnutls_datum_t d = { .data = k, .size = sizeof(k) };
    int r = gnutls_aead_cipher_init(&s->h, GNUTLS_CIPHER_AES_256_GCM, &d);
    explicit_bzero(k, sizeof(k));
    explicit_bzero(salt, sizeof(salt));
    if (r < 0) {
        g_free(s);
        return NULL;
    }
    return s;
}

void plv_record_seal_free(PlvRecordSeal *s)
{
    if (s) {
        gnutls_aead_cipher_deinit(s->h);
        g_free(s);
    }
}

static void nonce_of(const PlvRecordSeal *s, uint64_t seq, uint8_t n[NONCE_LEN])
{
    memcpy(n, s->salt, SALT_LEN);
    plv_put_u64(n + SALT_LEN, seq);
}

bool plv_record_seal(PlvRecordSeal *s, uint64_t seq, const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out)
{
    uint8_t n[NONCE_LEN];
    size_t out_len = len + PLV_SEAL_TAG_LEN;
    nonce_of(s, seq, n);
    return gnutls_aead_cipher_encrypt(s->h, n, sizeof(n), aad, aad_len,
                                      PLV_SEAL_TAG_LEN, in, len, out,
                                      &out_len) == 0 &&
           out_len == len + PLV_SEAL_TAG_LEN;
}

bool plv_record_open(PlvRecordSeal *s, uint64_t seq, const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out)
{
    uint8_t n[NONCE_LEN];
    size_t out_len = len;
    nonce_of(s, seq, n);
    return gnutls_aead_cipher_decrypt(s->h, n, sizeof(n), aad, aad_len,
                                      PLV_SEAL_TAG_LEN, in,
                                      len + PLV_SEAL_TAG_LEN, out,
                                      &out_len) == 0 && out_len == len;
}
