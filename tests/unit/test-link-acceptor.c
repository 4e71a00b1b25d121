/*
 * Tests for the background link acceptor (plover/link-acceptor.h):
 * strangers, idle and silent sockets cost a genuine peer nothing.
 * Loopback only.
 */
#include <check.h>
#include <poll.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "helper-net.h"
#include "helper-run.h"
#include "plover/link-acceptor.h"
#include "plover/pending-slots.h"

static const uint8_t SECRET[] = "correct horse battery staple";
static const uint8_t OTHER[] = "incorrect horse battery staple";

typedef struct Fixture {
    PlvLinkAcceptor *a;
    uint16_t port;
} Fixture;

/* An acceptor for replica 0 of 3 on 127.0.0.1, allowing @allowed. */
static Fixture acceptor(const char *allowed, int handshake_ms)
{
    PlvAddrSet *set = NULL;
    GError *err = NULL;
    Fixture f;
    int fd = plv_link_listen("127.0.0.1", 0, &err);

    ck_assert_int_ge(fd, 0);
    f.port = plv_link_local_port(fd);
    if (allowed) {
        set = plv_addr_set_new();
        plv_addr_set_add_host(set, allowed);
        plv_addr_set_resolve(set);
    }
    PlvLinkAcceptorConfig cfg = {
        .listen_fd = fd,
        .self_id = 0,
        .channel = PLV_LINK_CHANNEL_SYNCVM,
        .n_peers = 3,
        .allowed = set,
        .secret = SECRET,
        .secret_len = sizeof(SECRET),
        .handshake_timeout_ms = handshake_ms,
        .io_timeout_ms = 2000,
    };
    f.a = plv_link_acceptor_new(&cfg, &err);
    ck_assert_ptr_nonnull(f.a);
    return f;
}

static PlvLink *dial(uint16_t port, uint32_t id, const uint8_t *secret,
                     size_t len)
{
    GError *err = NULL;
    PlvLink *l = plv_link_connect("127.0.0.1", port, id, 0, PLV_LINK_CHANNEL_SYNCVM,
                                  secret, len, 2000, &err);
    g_clear_error(&err);
    return l;
}

static PlvLinkAcceptorStats stats(Fixture *f)
{
    PlvLinkAcceptorStats st;
    plv_link_acceptor_get_stats(f->a, &st);
    return st;
}

/* True once the peer's end of @fd is closed (EOF or reset) within
 * @timeout_ms; whatever the peer sent before is skipped. */
static bool closed_by_peer(int fd, int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + timeout_ms * 1000;

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int left = (end - g_get_monotonic_time()) / 1000;
        char buf[256];
        if (left <= 0 || poll(&pfd, 1, left) != 1) {
            return false;
        }
        if (read(fd, buf, sizeof(buf)) <= 0) {
            return true;
        }
    }
}

static PlvIpAddr ip4(uint8_t last)
{
    PlvIpAddr a = { .family = AF_INET, .bytes = { 10, 0, 0, last } };
    return a;
}

/* Room while there is some; then the address's own idle socket, its
 * oldest, then (all taken) an idle socket of anyone before a handshake. */
START_TEST(pending_victim_rules)
{
    PlvPendingSlot s[4] = {
        { .src = ip4(1), .since = 10, .heard = true },
        { .src = ip4(1), .since = 20, .heard = false },
        { .src = ip4(2), .since = 5, .heard = true },
        { .src = ip4(3), .since = 30, .heard = false },
    };
    PlvPendingSlot *p[4] = { &s[0], &s[1], &s[2], &s[3] };
    PlvIpAddr a1 = ip4(1), a2 = ip4(2), a4 = ip4(4);

    ck_assert_int_eq(plv_pending_victim(p, 3, 8, 4, &a1), -1);
    ck_assert_int_eq(plv_pending_victim(p, 4, 8, 2, &a1), 1);  /* idle, not the older dialer */
    ck_assert_int_eq(plv_pending_victim(p, 4, 8, 1, &a2), 2);
    ck_assert_int_eq(plv_pending_victim(p, 4, 4, 2, &a4), 1);  /* oldest idle of all */
    s[1].heard = s[3].heard = true;
    ck_assert_int_eq(plv_pending_victim(p, 4, 4, 2, &a4), 2);  /* all at work: oldest */
}
END_TEST

START_TEST(stranger_closed_before_a_slot)
{
    Fixture f = acceptor("127.0.0.2", 5000);
    int fd = plv_test_raw_connect(f.port);

    ck_assert_int_ge(fd, 0);
    ck_assert(closed_by_peer(fd, 2000));
    ck_assert_uint_eq(stats(&f).strangers, 1);
    close(fd);
    plv_link_acceptor_free(f.a);
}
END_TEST

START_TEST(peer_link_taken)
{
    Fixture f = acceptor("127.0.0.1", 2000);
    PlvLink *c = dial(f.port, 2, SECRET, sizeof(SECRET));
    PlvLink *s;
    GByteArray *in = g_byte_array_new();
    struct iovec iov = { .iov_base = (void *)"ping", .iov_len = 4 };
    uint16_t type;

    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(plv_link_acceptor_take(f.a, 1, 0));
    s = plv_link_acceptor_take(f.a, 2, 2000);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(plv_link_peer_id(s), 2);
    ck_assert_int_eq(plv_link_send(c, 7, &iov, 1, NULL), 0);
    ck_assert_int_eq(plv_link_recv(s, &type, in, 2000, NULL), 0);
    ck_assert_uint_eq(type, 7);
    ck_assert_uint_eq(in->len, 4);
    ck_assert_uint_eq(stats(&f).accepted, 1);
    g_byte_array_unref(in);
    plv_link_close(c);
    plv_link_close(s);
    plv_link_acceptor_free(f.a);
}
END_TEST

/* Idle sockets from a peer's own address fill every slot: the genuine
 * dial still gets through, pushing the oldest out. */
START_TEST(idle_sockets_do_not_lock_a_peer_out)
{
    Fixture f = acceptor("127.0.0.1", 10000);
    int idle[3 * PLV_ACCEPTOR_MAX_PENDING];
    PlvLink *c, *s;

    for (unsigned i = 0; i < G_N_ELEMENTS(idle); i++) {
        idle[i] = plv_test_raw_connect(f.port);
        ck_assert_int_ge(idle[i], 0);
    }
    c = dial(f.port, 1, SECRET, sizeof(SECRET));
    ck_assert_ptr_nonnull(c);
    s = plv_link_acceptor_take(f.a, 1, 2000);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_ge(stats(&f).evicted, G_N_ELEMENTS(idle) - PLV_ACCEPTOR_MAX_PER_ADDR);
    for (unsigned i = 0; i < G_N_ELEMENTS(idle); i++) {
        close(idle[i]);
    }
    plv_link_close(c);
    plv_link_close(s);
    plv_link_acceptor_free(f.a);
}
END_TEST

START_TEST(silent_socket_times_out)
{
    Fixture f = acceptor(NULL, 200);
    int fd = plv_test_raw_connect(f.port);

    ck_assert_int_ge(fd, 0);
    ck_assert(closed_by_peer(fd, 3000));
    ck_assert_uint_eq(stats(&f).timed_out, 1);
    close(fd);
    plv_link_acceptor_free(f.a);
}
END_TEST

START_TEST(wrong_secret_never_delivered)
{
    Fixture f = acceptor("127.0.0.1", 2000);

    ck_assert_ptr_null(dial(f.port, 1, OTHER, sizeof(OTHER)));
    ck_assert_ptr_null(plv_link_acceptor_take(f.a, 1, 300));
    ck_assert_uint_eq(stats(&f).failed, 1);
    ck_assert_uint_eq(stats(&f).accepted, 0);
    plv_link_acceptor_free(f.a);
}
END_TEST

/* A peer that dials twice: the newer link is the one handed out. */
START_TEST(newest_link_replaces_untaken)
{
    Fixture f = acceptor("127.0.0.1", 2000);
    PlvLink *c1 = dial(f.port, 1, SECRET, sizeof(SECRET));
    PlvLink *c2, *s;
    PlvLinkAcceptorStats st;

    ck_assert_ptr_nonnull(c1);
    for (int i = 0; i < 200 && !plv_link_acceptor_ready(f.a, 1); i++) {
        g_usleep(10 * 1000);
    }
    c2 = dial(f.port, 1, SECRET, sizeof(SECRET));
    ck_assert_ptr_nonnull(c2);
    for (int i = 0; i < 200 && (stats(&f).accepted < 2 || stats(&f).replaced < 1); i++) {
        g_usleep(10 * 1000);
    }
    st = stats(&f);
    ck_assert_uint_eq(st.accepted, 2);
    ck_assert_uint_eq(st.replaced, 1);
    s = plv_link_acceptor_take(f.a, 1, 0);
    ck_assert_ptr_nonnull(s);
    ck_assert(!memcmp(plv_link_session_key(s), plv_link_session_key(c2),
                      PLV_LINK_KEY_LEN));
    ck_assert_ptr_null(plv_link_acceptor_take(f.a, 1, 0));
    plv_link_close(c1);
    plv_link_close(c2);
    plv_link_close(s);
    plv_link_acceptor_free(f.a);
}
END_TEST

/* Write all of @len bytes to a blocking socket. */
static void write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        ck_assert_int_gt(n, 0);
        p += n;
        len -= n;
    }
}

/* Drive @hs over the blocking socket @fd until it wants input it cannot
 * have yet (stop_before_auth: before our AUTH goes out) or is done. */
static void pump(PlvHandshake *hs, int fd, bool stop_before_auth)
{
    for (;;) {
        const uint8_t *out;
        size_t n = plv_handshake_output(hs, &out);
        if (n) {
            if (stop_before_auth && n == PLV_LINK_AUTH_LEN) {
                return;
            }
            write_all(fd, out, n);
            plv_handshake_output_done(hs, n);
            continue;
        }
        size_t want = plv_handshake_want(hs), used;
        if (!want) {
            return;
        }
        uint8_t in[PLV_LINK_HELLO_LEN];
        ssize_t r = read(fd, in, MIN(want, sizeof(in)));
        ck_assert_int_gt(r, 0);
        ck_assert_int_ge(plv_handshake_input(hs, in, r, &used, NULL), 0);
    }
}

/* A flood of idle sockets from the dialer's own address, arriving while
 * the dialer is in the middle of its handshake, pushes out the idle ones
 * and never the dialer. */
START_TEST(idle_flood_spares_a_handshake_under_way)
{
    Fixture f = acceptor("127.0.0.1", 10000);
    int fd = plv_test_raw_connect(f.port);
    PlvHandshake *hs = plv_handshake_new(true, 1, PLV_LINK_CHANNEL_SYNCVM, SECRET,
                                         sizeof(SECRET));
    int idle[3 * PLV_ACCEPTOR_MAX_PENDING];

    ck_assert_int_ge(fd, 0);
    pump(hs, fd, true);             /* HELLOs crossed; our AUTH not sent */
    for (unsigned i = 0; i < G_N_ELEMENTS(idle); i++) {
        idle[i] = plv_test_raw_connect(f.port);
        ck_assert_int_ge(idle[i], 0);
    }
    for (int i = 0; i < 200 && stats(&f).evicted < G_N_ELEMENTS(idle) - 1; i++) {
        g_usleep(10 * 1000);
    }
    pump(hs, fd, false);
    ck_assert(plv_handshake_done(hs));
    PlvLink *s = plv_link_acceptor_take(f.a, 1, 2000);
    ck_assert_ptr_nonnull(s);
    plv_link_close(s);
    for (unsigned i = 0; i < G_N_ELEMENTS(idle); i++) {
        close(idle[i]);
    }
    plv_handshake_free(hs);
    close(fd);
    plv_link_acceptor_free(f.a);
}
END_TEST

/* Our own id, or one past the group, is refused after authentication. */
/* A consensus link is no syncvm link, whatever the secret. */
START_TEST(other_channel_refused)
{
    Fixture f = acceptor("127.0.0.1", 2000);
    GError *err = NULL;
    PlvLink *c = plv_link_connect("127.0.0.1", f.port, 1, 0, PLV_LINK_CHANNEL_CONSENSUS,
                                  SECRET, sizeof(SECRET), 2000, &err);

    ck_assert_ptr_null(c);
    g_clear_error(&err);
    ck_assert_ptr_null(plv_link_acceptor_take(f.a, 1, 300));
    ck_assert_uint_eq(stats(&f).accepted, 0);
    plv_link_acceptor_free(f.a);
}
END_TEST

START_TEST(foreign_ids_refused)
{
    Fixture f = acceptor("127.0.0.1", 2000);
    PlvLink *self = dial(f.port, 0, SECRET, sizeof(SECRET));
    PlvLink *far = dial(f.port, 3, SECRET, sizeof(SECRET));

    for (int i = 0; i < 200 && stats(&f).failed < 2; i++) {
        g_usleep(10 * 1000);
    }
    ck_assert_uint_eq(stats(&f).failed, 2);
    ck_assert_uint_eq(stats(&f).accepted, 0);
    plv_link_close(self);
    plv_link_close(far);
    plv_link_acceptor_free(f.a);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("link-acceptor");
    TCase *tc = tcase_create("acceptor");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pending_victim_rules);
    tcase_add_test(tc, stranger_closed_before_a_slot);
    tcase_add_test(tc, peer_link_taken);
    tcase_add_test(tc, idle_sockets_do_not_lock_a_peer_out);
    tcase_add_test(tc, idle_flood_spares_a_handshake_under_way);
    tcase_add_test(tc, silent_socket_times_out);
    tcase_add_test(tc, wrong_secret_never_delivered);
    tcase_add_test(tc, newest_link_replaces_untaken);
    tcase_add_test(tc, other_channel_refused);
    tcase_add_test(tc, foreign_ids_refused);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
