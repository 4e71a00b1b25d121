/*
 * A throwaway PKI for the TLS tests (see helper-tls.h).
 */
#include "helper-tls.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <time.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

typedef struct {
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
} KeyCert;

struct PlvTestPki {
    char *dir;
    KeyCert ca, other_ca;
    unsigned serial;
    GPtrArray *paths;
};

#define OK(expr) g_assert_cmpint((expr), >=, 0)

static void make_key(KeyCert *kc)
{
    OK(gnutls_x509_privkey_init(&kc->key));
    OK(gnutls_x509_privkey_generate(kc->key, GNUTLS_PK_ECDSA,
                                    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
                                    0));
    OK(gnutls_x509_crt_init(&kc->crt));
    OK(gnutls_x509_crt_set_version(kc->crt, 3));
    OK(gnutls_x509_crt_set_key(kc->crt, kc->key));
}

static void set_common(PlvTestPki *p, KeyCert *kc, const char *cn,
                       time_t from, time_t until)
{
    unsigned char serial[4] = { 0, 0, 0, (unsigned char)++p->serial };
    OK(gnutls_x509_crt_set_serial(kc->crt, serial, sizeof(serial)));
    OK(gnutls_x509_crt_set_dn_by_oid(kc->crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                     cn, strlen(cn)));
    OK(gnutls_x509_crt_set_activation_time(kc->crt, from));
    OK(gnutls_x509_crt_set_expiration_time(kc->crt, until));
}

static void make_ca(PlvTestPki *p, KeyCert *ca, const char *cn)
{
    time_t now = time(NULL);
    make_key(ca);
    set_common(p, ca, cn, now - 3600, now + 86400);
    OK(gnutls_x509_crt_set_basic_constraints(ca->crt, 1, -1));
    OK(gnutls_x509_crt_set_key_usage(ca->crt, GNUTLS_KEY_KEY_CERT_SIGN |
                                               GNUTLS_KEY_CRL_SIGN));
    OK(gnutls_x509_crt_sign2(ca->crt, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0));
}

static void write_pem(const char *dir, const char *file, gnutls_datum_t *d)
{
    char *path = g_build_filename(dir, file, NULL);
    g_assert_true(g_file_set_contents(path, (char *)d->data, d->size, NULL));
    g_free(path);
    gnutls_free(d->data);
}

PlvTestPki *plv_test_pki_new(void)
{
    PlvTestPki *p = g_new0(PlvTestPki, 1);
    p->dir = g_dir_make_tmp("plover-pki-XXXXXX", NULL);
    g_assert_nonnull(p->dir);
    p->paths = g_ptr_array_new_with_free_func(g_free);
    make_ca(p, &p->ca, "plover test CA");
    make_ca(p, &p->other_ca, "someone else's CA");
    return p;
}

const char *plv_test_pki_replica(PlvTestPki *p, const char *name, unsigned flags)
{
    time_t now = time(NULL);
    KeyCert kc, *ca = flags & PLV_TEST_CERT_OTHER_CA ? &p->other_ca : &p->ca;
    gnutls_datum_t d;

    make_key(&kc);
    if (flags & PLV_TEST_CERT_EXPIRED) {
        set_common(p, &kc, name, now - 2 * 86400, now - 86400);
    } else {
        set_common(p, &kc, name, now - 3600, now + 86400);
    }
    OK(gnutls_x509_crt_set_basic_constraints(kc.crt, 0, -1));
    OK(gnutls_x509_crt_set_key_usage(kc.crt, GNUTLS_KEY_DIGITAL_SIGNATURE));
    OK(gnutls_x509_crt_set_key_purpose_oid(kc.crt, GNUTLS_KP_TLS_WWW_SERVER, 0));
    OK(gnutls_x509_crt_set_key_purpose_oid(kc.crt, GNUTLS_KP_TLS_WWW_CLIENT, 0));
    OK(gnutls_x509_crt_set_subject_alt_name(kc.crt, GNUTLS_SAN_DNSNAME, name,
                                            strlen(name), GNUTLS_FSAN_SET));
    OK(gnutls_x509_crt_sign2(kc.crt, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0));

    char *sub = g_strdup_printf("%s-%u", name, p->serial);
    char *dir = g_build_filename(p->dir, sub, NULL);
    g_free(sub);
    g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
    OK(gnutls_x509_crt_export2(p->ca.crt, GNUTLS_X509_FMT_PEM, &d));
    write_pem(dir, "ca-cert.pem", &d);
    OK(gnutls_x509_crt_export2(kc.crt, GNUTLS_X509_FMT_PEM, &d));
    write_pem(dir, "server-cert.pem", &d);
    OK(gnutls_x509_privkey_export2(kc.key, GNUTLS_X509_FMT_PEM, &d));
    write_pem(dir, "server-key.pem", &d);
    gnutls_x509_crt_deinit(kc.crt);
    gnutls_x509_privkey_deinit(kc.key);
    g_ptr_array_add(p->paths, dir);
    return dir;
}

static void rm_rf(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);
    if (d) {
        const char *n;
        while ((n = g_dir_read_name(d))) {
            char *c = g_build_filename(path, n, NULL);
            rm_rf(c);
            g_free(c);
        }
        g_dir_close(d);
    }
    g_remove(path);
}

void plv_test_pki_free(PlvTestPki *p)
{
    KeyCert *cas[] = { &p->ca, &p->other_ca };
    for (unsigned i = 0; i < G_N_ELEMENTS(cas); i++) {
        gnutls_x509_crt_deinit(cas[i]->crt);
        gnutls_x509_privkey_deinit(cas[i]->key);
    }
    rm_rf(p->dir);
    g_ptr_array_unref(p->paths);
    g_free(p->dir);
    g_free(p);
}
