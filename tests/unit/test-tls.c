/*
 * Tests for TLS on the TCP links (plover/tls.h): blocking links and the
 * background acceptor, with certificates a throwaway CA signs at the
 * start of each test. Loopback only.
 */
#include <check.h>
#include <string.h>
#include <unistd.h>

#include "helper-net.h"
#include "helper-run.h"
#include "helper-tls.h"
#include "plover/link-acceptor.h"
#include "plover/link-proto.h"
#include "plover/tls.h"

static const uint8_t SECRET[] = "correct horse battery staple";
#define CHAN PLV_LINK_CHANNEL_SYNCVM

/* Credentials from @dir that expect replica 10 and 20 to be named so. */
static PlvTls *tls_from(const char *dir)
{
    GError *err = NULL;
    PlvTls *t = plv_tls_new_from_dir(dir, NULL, &err);
    ck_assert_msg(t, "%s", err ? err->message : "?");
    plv_tls_set_peer_name(t, 10, "replica-10");
    plv_tls_set_peer_name(t, 20, "replica-20");
    return t;
}

typedef struct {
    int lfd;
    PlvTls *tls;
    PlvLink *link;
    GError *err;
} AcceptJob;

static gpointer accept_thread(gpointer opaque)
{
    AcceptJob *j = opaque;
    j->link = plv_link_accept_tls(j->lfd, 20, CHAN, SECRET, sizeof(SECRET),
                                  j->tls, 5000, &j->err);
    return NULL;
}

/* Dial (id 10, @dial_tls) an acceptor (id 20, @accept_tls); either may be
 * NULL (plaintext). *c, *s: the links, or NULL with *cerr, *serr. */
static void dial_pair(PlvTls *dial_tls, PlvTls *accept_tls, PlvLink **c,
                      GError **cerr, PlvLink **s, GError **serr)
{
    GError *err = NULL;
    AcceptJob j = { .tls = accept_tls };
    j.lfd = plv_link_listen("127.0.0.1", 0, &err);
    ck_assert_int_ge(j.lfd, 0);
    uint16_t port = plv_link_local_port(j.lfd);
    GThread *t = g_thread_new("accept", accept_thread, &j);
    *c = plv_link_connect_tls("127.0.0.1", port, 10, 20, CHAN, SECRET,
                              sizeof(SECRET), dial_tls, 5000, cerr);
    g_thread_join(t);
    *s = j.link;
    *serr = j.err;
    close(j.lfd);
}

typedef struct {
    PlvLink *l;
    const struct iovec *iov;
    int iovcnt;
    int r;
} SendJob;

static gpointer send_thread(gpointer opaque)
{
    SendJob *j = opaque;
    j->r = plv_link_send(j->l, 77, j->iov, j->iovcnt, NULL);
    return NULL;
}

/* Small frames both ways, then a 4 MiB one of page iovecs. */
static void check_frames(PlvLink *a, PlvLink *b)
{
    plv_test_link_exchange(a, b, 50, 2000);
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    /* A syncvm-sized frame of page iovecs (more than a socket buffer, so
     * sends meet EAGAIN): sent from a thread, read here. */
    enum { PAGES = 1024 };
    static uint8_t pages[PAGES][4096];
    static struct iovec iov[PAGES];
    for (int p = 0; p < PAGES; p++) {
        memset(pages[p], p * 7 + 1, sizeof(pages[p]));
        pages[p][0] = p;
        iov[p] = (struct iovec){ pages[p], sizeof(pages[p]) };
    }
    SendJob snd = { .l = a, .iov = iov, .iovcnt = PAGES, .r = -1 };
    GThread *t = g_thread_new("send", send_thread, &snd);
    ck_assert_int_eq(plv_link_recv(b, &type, pl, 5000, NULL), 0);
    g_thread_join(t);
    ck_assert_int_eq(snd.r, 0);
    ck_assert_uint_eq(type, 77);
    ck_assert_uint_eq(pl->len, sizeof(pages));
    ck_assert_mem_eq(pl->data, pages, sizeof(pages));
    g_byte_array_free(pl, TRUE);
}

START_TEST(tls_link_frames)
{
    PlvTestPki *pki = plv_test_pki_new();
    PlvTls *t10 = tls_from(plv_test_pki_replica(pki, "replica-10", 0));
    PlvTls *t20 = tls_from(plv_test_pki_replica(pki, "replica-20", 0));
    PlvLink *c, *s;
    GError *cerr = NULL, *serr = NULL;

    dial_pair(t10, t20, &c, &cerr, &s, &serr);
    ck_assert_msg(c, "%s", cerr ? cerr->message : "?");
    ck_assert_msg(s, "%s", serr ? serr->message : "?");
    ck_assert_uint_eq(plv_link_peer_id(c), 20);
    ck_assert_uint_eq(plv_link_peer_id(s), 10);
    ck_assert_mem_eq(plv_link_session_key(c), plv_link_session_key(s),
                     PLV_LINK_KEY_LEN);
    for (int i = 0; i < 2; i++) {
        char *d = plv_tls_conn_describe(plv_link_tls(i ? s : c));
        ck_assert_msg(g_str_has_prefix(d, "(TLS1.3)"), "%s", d);
        g_free(d);
    }
    check_frames(c, s);
    plv_link_close(c);
    plv_link_close(s);
    plv_tls_unref(t10);
    plv_tls_unref(t20);
    plv_test_pki_free(pki);
}
END_TEST

/* @dialer_flags: the dialer's certificate; @dialer_name: the name in it.
 * Both ends must fail; returns the acceptor's reason (free it). */
static char *refused(unsigned dialer_flags, const char *dialer_name)
{
    PlvTestPki *pki = plv_test_pki_new();
    PlvTls *t10 = tls_from(plv_test_pki_replica(pki, dialer_name, dialer_flags));
    PlvTls *t20 = tls_from(plv_test_pki_replica(pki, "replica-20", 0));
    PlvLink *c, *s;
    GError *cerr = NULL, *serr = NULL;

    dial_pair(t10, t20, &c, &cerr, &s, &serr);
    ck_assert_ptr_null(s);
    ck_assert_msg(g_error_matches(serr, PLV_LINK_ERROR, PLV_LINK_ERROR_AUTH),
                  "%s", serr ? serr->message : "?");
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(cerr);
    char *why = g_strdup(serr->message);
    g_clear_error(&cerr);
    g_clear_error(&serr);
    plv_tls_unref(t10);
    plv_tls_unref(t20);
    plv_test_pki_free(pki);
    return why;
}

START_TEST(tls_unknown_ca_refused)
{
    char *why = refused(PLV_TEST_CERT_OTHER_CA, "replica-10");
    ck_assert_msg(strstr(why, "certificate is refused") &&
                  strstr(why, "issuer"), "%s", why);
    g_free(why);
}
END_TEST

START_TEST(tls_expired_refused)
{
    char *why = refused(PLV_TEST_CERT_EXPIRED, "replica-10");
    ck_assert_msg(strstr(why, "certificate is refused") && strstr(why, "expired"),
                  "%s", why);
    g_free(why);
}
END_TEST

/* A valid certificate of another replica cannot claim replica 10. */
START_TEST(tls_other_replicas_certificate_refused)
{
    char *why = refused(0, "replica-30");
    ck_assert_msg(strstr(why, "claims to be replica 10") &&
                  strstr(why, "replica-30") && strstr(why, "'replica-10'"),
                  "%s", why);
    g_free(why);
}
END_TEST

START_TEST(tls_plaintext_refused_both_ways)
{
    PlvTestPki *pki = plv_test_pki_new();
    PlvTls *t = tls_from(plv_test_pki_replica(pki, "replica-20", 0));
    PlvLink *c, *s;
    GError *cerr = NULL, *serr = NULL;

    /* A plaintext dialer at a TLS acceptor. */
    dial_pair(NULL, t, &c, &cerr, &s, &serr);
    ck_assert_ptr_null(c);
    ck_assert_ptr_null(s);
    ck_assert_msg(serr && strstr(serr->message, "plaintext"), "%s",
                  serr ? serr->message : "?");
    g_clear_error(&cerr);
    g_clear_error(&serr);

    /* A TLS dialer at a plaintext acceptor. */
    dial_pair(t, NULL, &c, &cerr, &s, &serr);
    ck_assert_ptr_null(c);
    ck_assert_ptr_null(s);
    ck_assert_msg(serr && strstr(serr->message, "speaks TLS"), "%s",
                  serr ? serr->message : "?");
    ck_assert_msg(cerr && strstr(cerr->message, "TLS handshake"), "%s",
                  cerr ? cerr->message : "?");
    g_clear_error(&cerr);
    g_clear_error(&serr);
    plv_tls_unref(t);
    plv_test_pki_free(pki);
}
END_TEST

/* The syncvm port's acceptor: a good replica's link is delivered, a bad
 * certificate is counted and never is. */
START_TEST(tls_acceptor_counts_refusals)
{
    PlvTestPki *pki = plv_test_pki_new();
    PlvTls *ta = tls_from(plv_test_pki_replica(pki, "replica-20", 0));
    PlvTls *good = tls_from(plv_test_pki_replica(pki, "replica-10", 0));
    PlvTls *bad = tls_from(plv_test_pki_replica(pki, "replica-10",
                                                PLV_TEST_CERT_OTHER_CA));
    GError *err = NULL;
    int fd = plv_link_listen("127.0.0.1", 0, &err);
    ck_assert_int_ge(fd, 0);
    uint16_t port = plv_link_local_port(fd);
    PlvLinkAcceptorConfig cfg = {
        .listen_fd = fd, .self_id = 20, .channel = CHAN, .n_peers = 30,
        .secret = SECRET, .secret_len = sizeof(SECRET), .tls = ta,
        .handshake_timeout_ms = 2000, .io_timeout_ms = 2000,
    };
    PlvLinkAcceptor *a = plv_link_acceptor_new(&cfg, &err);
    ck_assert_msg(a, "%s", err ? err->message : "?");
    plv_tls_unref(ta);          /* the acceptor holds its own reference */

    PlvLink *l = plv_link_connect_tls("127.0.0.1", port, 10, 20, CHAN, SECRET,
                                      sizeof(SECRET), bad, 2000, &err);
    ck_assert_ptr_null(l);
    g_clear_error(&err);
    PlvLinkAcceptorStats st;
    for (int i = 0; i < 200; i++) {
        plv_link_acceptor_get_stats(a, &st);
        if (st.tls_refused) {
            break;
        }
        g_usleep(10 * 1000);
    }
    ck_assert_uint_eq(st.tls_refused, 1);
    ck_assert(!plv_link_acceptor_ready(a, 10));

    l = plv_link_connect_tls("127.0.0.1", port, 10, 20, CHAN, SECRET,
                             sizeof(SECRET), good, 2000, &err);
    ck_assert_msg(l, "%s", err ? err->message : "?");
    PlvLink *in = plv_link_acceptor_take(a, 10, 2000);
    ck_assert_ptr_nonnull(in);
    check_frames(l, in);
    plv_link_acceptor_get_stats(a, &st);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(st.tls_refused, 1);
    plv_link_close(l);
    plv_link_close(in);
    plv_link_acceptor_free(a);
    plv_tls_unref(good);
    plv_tls_unref(bad);
    plv_test_pki_free(pki);
}
END_TEST

START_TEST(tls_bad_priority_refused)
{
    PlvTestPki *pki = plv_test_pki_new();
    GError *err = NULL;
    PlvTls *t = plv_tls_new_from_dir(plv_test_pki_replica(pki, "r", 0),
                                     "NO-SUCH-PRIORITY", &err);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err->message, "TLS priority"), "%s", err->message);
    g_clear_error(&err);
    t = plv_tls_new_from_dir("/nonexistent", NULL, &err);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err->message, "ca-cert.pem"), "%s", err->message);
    g_clear_error(&err);
    plv_test_pki_free(pki);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, tls_link_frames);
    tcase_add_test(tc, tls_unknown_ca_refused);
    tcase_add_test(tc, tls_expired_refused);
    tcase_add_test(tc, tls_other_replicas_certificate_refused);
    tcase_add_test(tc, tls_plaintext_refused_both_ways);
    tcase_add_test(tc, tls_acceptor_counts_refusals);
    tcase_add_test(tc, tls_bad_priority_refused);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
