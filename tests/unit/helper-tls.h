/*
 * A throwaway PKI for the TLS tests, made with GnuTLS: a CA, and replica
 * credential directories named as QEMU's tls-creds-x509 reads them
 * (ca-cert.pem, server-cert.pem, server-key.pem).
 */
#ifndef PLOVER_TEST_HELPER_TLS_H
#define PLOVER_TEST_HELPER_TLS_H

typedef struct PlvTestPki PlvTestPki;

enum {
    PLV_TEST_CERT_OTHER_CA = 1,     /* signed by a CA nobody trusts */
    PLV_TEST_CERT_EXPIRED = 2,      /* expired yesterday */
};

/* A CA in a new temporary directory. */
PlvTestPki *plv_test_pki_new(void);
/*
 * A directory of credentials for a replica whose certificate names @name
 * (subjectAltName DNS, and CN), signed by the CA unless @flags say
 * otherwise. It trusts the PKI's CA. The path stays valid until free.
 */
const char *plv_test_pki_replica(PlvTestPki *p, const char *name, unsigned flags);
/* Removes the directory. */
void plv_test_pki_free(PlvTestPki *p);

#endif
