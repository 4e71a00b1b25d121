/*
 * Tests for the peer table (plover/peer-table.h), the connection policy
 * both consensus transports share, driven without sockets: connections are
 * bare PlvPeerConns, and the ops record what the table asks of a transport.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "helper-run.h"
#include "plover/link-proto.h"
#include "plover/peer-table.h"

static const uint8_t SECRET[] = "peer table test secret";

typedef struct {
    PlvPeerTable tab;           /* first: the "transport" begins with it */
    GPtrArray *dialed;          /* PlvPeer * the table asked to dial */
    GPtrArray *released;        /* PlvPeerConn * closed */
    unsigned freed;
    GArray *events;             /* PlvTransportEvent (data not kept) */
} Fx;

static void fx_dial(PlvPeerTable *tab, PlvPeer *p)
{
    Fx *f = (Fx *)tab;
    g_ptr_array_add(f->dialed, p);
    PlvPeerConn *c = g_new0(PlvPeerConn, 1);
    plv_peer_table_dialing(&f->tab, c, p, PLV_PEER_CONN_CONNECTING);
}

static void fx_release(PlvPeerTable *tab, PlvPeerConn *c)
{
    Fx *f = (Fx *)tab;
    ck_assert_int_eq(c->state, PLV_PEER_CONN_DEAD);
    g_ptr_array_add(f->released, c);
}

static void fx_free(PlvPeerTable *tab, PlvPeerConn *c)
{
    ((Fx *)tab)->freed++;
    g_free(c);
}

static void fx_event(PlvPeerTable *tab, void *data_ptr, uint32_t events)
{
    ck_abort_msg("no fd of the transport's in the set");
}

static const PlvPeerTableOps fx_ops = {
    .dial = fx_dial, .release = fx_release, .free = fx_free, .event = fx_event,
};

static void on_event(void *opaque, const PlvTransportEvent *ev)
{
    Fx *f = opaque;
    g_array_append_val(f->events, *ev);
}

/* Replica @self of ids 0..n-1, replica i at 127.0.0.(i+1). */
static Fx *fx_new(uint32_t self, unsigned n)
{
    static char hosts[8][16];
    PlvPeerAddr peers[8];
    for (unsigned i = 0; i < n; i++) {
        snprintf(hosts[i], sizeof(hosts[i]), "127.0.0.%u", i + 1);
        peers[i] = (PlvPeerAddr){ .id = i, .host = hosts[i], .port = 1000 + i };
    }
    PlvPeerTableConfig cfg = {
        .name = "test", .self_id = self, .peers = peers, .n_peers = n,
        .secret = SECRET, .secret_len = sizeof(SECRET),
        .backoff_min_ms = 100, .backoff_max_ms = 400, .seed = 42,
        .ops = fx_ops,
    };
    GError *err = NULL;
    Fx *f = plv_peer_table_new(sizeof(Fx), &cfg, &err);
    ck_assert_msg(f, "%s", err ? err->message : "?");
    ck_assert_int_eq(plv_peer_table_start(&f->tab, &err), 0);
    f->dialed = g_ptr_array_new();
    f->released = g_ptr_array_new();
    f->events = g_array_new(FALSE, FALSE, sizeof(PlvTransportEvent));
    plv_peer_table_wait_begin(&f->tab, -1, on_event, f);
    return f;
}

static void fx_free_all(Fx *f)
{
    plv_peer_table_wait_end(&f->tab);
    plv_peer_table_close_all(&f->tab);
    g_ptr_array_unref(f->dialed);
    g_ptr_array_unref(f->released);
    g_array_unref(f->events);
    plv_peer_table_free(&f->tab);
}

static PlvIpAddr ip(unsigned last)
{
    PlvIpAddr a = { .family = AF_INET, .bytes = { 127, 0, 0, last } };
    return a;
}

/* An accepted connection from 127.0.0.@last, admitted. */
static PlvPeerConn *accept_from(Fx *f, unsigned last)
{
    PlvIpAddr src = ip(last);
    if (!plv_peer_table_admit(&f->tab, &src)) {
        return NULL;
    }
    PlvPeerConn *c = g_new0(PlvPeerConn, 1);
    plv_peer_table_accepted(&f->tab, c, PLV_PEER_CONN_HANDSHAKE, &src);
    return c;
}

static PlvTransportEvent event(Fx *f, guint i)
{
    ck_assert_uint_lt(i, f->events->len);
    return g_array_index(f->events, PlvTransportEvent, i);
}

START_TEST(config_is_checked)
{
    PlvPeerAddr twice[2] = { { .id = 0, .host = "127.0.0.1" },
                             { .id = 0, .host = "127.0.0.2" } };
    PlvPeerTableConfig cfg = {
        .name = "test", .self_id = 0, .peers = twice, .n_peers = 2,
        .secret = SECRET, .secret_len = sizeof(SECRET), .ops = fx_ops,
    };
    GError *err = NULL;
    ck_assert_ptr_null(plv_peer_table_new(sizeof(Fx), &cfg, &err));
    ck_assert(g_error_matches(err, PLV_LINK_ERROR, PLV_LINK_ERROR_INVALID));
    g_clear_error(&err);
    cfg.n_peers = 1;
    cfg.self_id = 1;
    ck_assert_ptr_null(plv_peer_table_new(sizeof(Fx), &cfg, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "test transport"));
    g_clear_error(&err);
    cfg.self_id = 0;
    cfg.secret_len = PLV_LINK_MIN_SECRET_LEN - 1;
    ck_assert_ptr_null(plv_peer_table_new(sizeof(Fx), &cfg, &err));
    g_clear_error(&err);
}
END_TEST

/* Only the higher ids are dialed; a dial redials, backing off with jitter
 * up to the cap, and its deadline counts as an auth failure only once the
 * handshake had started. */
START_TEST(lower_id_dials_with_backoff)
{
    Fx *f = fx_new(1, 3);
    plv_peer_table_maintain(&f->tab);
    ck_assert_uint_eq(f->dialed->len, 1);
    PlvPeer *p = g_ptr_array_index(f->dialed, 0);
    ck_assert_uint_eq(p->id, 2);
    PlvPeerLinkInfo li;
    plv_peer_table_link(&f->tab.base, 2, &li);
    ck_assert_int_eq(li.state, PLV_PEER_LINK_CONNECTING);
    /* The default dial limit is the handshake timeout. */
    int64_t left = p->conn->deadline - g_get_monotonic_time();
    ck_assert_int_le(left, PLV_HANDSHAKE_TIMEOUT_MS * 1000);
    ck_assert_int_gt(left, (PLV_HANDSHAKE_TIMEOUT_MS - 500) * 1000);

    int expect[] = { 100, 200, 400, 400 };
    for (unsigned i = 0; i < G_N_ELEMENTS(expect); i++) {
        p->conn->deadline = 0;
        int64_t before = g_get_monotonic_time();
        plv_peer_table_maintain(&f->tab);
        ck_assert_ptr_null(p->conn);
        int64_t delay = p->next_dial - before;
        ck_assert_int_ge(delay, expect[i] * 750);
        ck_assert_int_le(delay, expect[i] * 1250 + 100000);
        p->next_dial = 0;
        plv_peer_table_maintain(&f->tab);
        ck_assert_ptr_nonnull(p->conn);
    }
    PlvTransportStats st;
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.auth_failures, 0);
    p->conn->state = PLV_PEER_CONN_HANDSHAKE;
    p->conn->deadline = 0;
    plv_peer_table_maintain(&f->tab);
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.auth_failures, 1);
    ck_assert_uint_eq(f->events->len, 0);
    plv_peer_table_bury(&f->tab);
    ck_assert_uint_eq(f->freed, f->released->len);
    fx_free_all(f);
}
END_TEST

/* Up, replaced by a fresh connection from the peer, down; a peer that is
 * not whom we dialed or that should not dial us is refused. */
START_TEST(up_replace_down)
{
    Fx *f = fx_new(1, 3);
    PlvPeerConn *a = accept_from(f, 1);
    ck_assert(plv_peer_table_up(&f->tab, a, 0, 1234));
    ck_assert(plv_peer_table_peer_up(&f->tab.base, 0));
    ck_assert_uint_eq(f->tab.pending->len, 0);
    PlvPeerLinkInfo li;
    plv_peer_table_link(&f->tab.base, 0, &li);
    ck_assert_int_eq(li.state, PLV_PEER_LINK_UP);
    ck_assert_int_eq(li.last_heard_us, 1234);

    PlvPeerConn *b = accept_from(f, 1);
    ck_assert(plv_peer_table_up(&f->tab, b, 0, 0));
    ck_assert_int_eq(a->state, PLV_PEER_CONN_DEAD);
    ck_assert_ptr_eq(f->tab.peers[0].conn, b);
    ck_assert_int_eq(event(f, 0).kind, PLV_TRANSPORT_PEER_UP);
    ck_assert_int_eq(event(f, 1).kind, PLV_TRANSPORT_PEER_DOWN);
    ck_assert_int_eq(event(f, 2).kind, PLV_TRANSPORT_PEER_UP);

    /* Peer 2 must be dialed by us, not dial us. */
    PlvPeerConn *c = accept_from(f, 3);
    ck_assert(!plv_peer_table_up(&f->tab, c, 2, 0));
    ck_assert_int_eq(c->state, PLV_PEER_CONN_DEAD);
    /* Our dial to 2 answered by 0. */
    plv_peer_table_maintain(&f->tab);
    PlvPeerConn *d = f->tab.peers[2].conn;
    ck_assert(!plv_peer_table_up(&f->tab, d, 0, 0));
    ck_assert_ptr_null(f->tab.peers[2].conn);

    uint8_t msg[] = "hi";
    plv_peer_table_frame(&f->tab, b, PLV_PEER_MSG_TYPE, msg, sizeof(msg), 5678);
    plv_peer_table_frame(&f->tab, b, PLV_PEER_MSG_TYPE + 1, msg, sizeof(msg), 5679);
    ck_assert_int_eq(event(f, 3).kind, PLV_TRANSPORT_MESSAGE);
    ck_assert_uint_eq(event(f, 3).len, sizeof(msg));
    ck_assert_ptr_eq(plv_peer_table_send_conn(&f->tab, 0, 10), b);
    ck_assert_ptr_null(plv_peer_table_send_conn(&f->tab, 0, PLV_LINK_MAX_PAYLOAD + 1));
    ck_assert_ptr_null(plv_peer_table_send_conn(&f->tab, 2, 10));
    ck_assert_int_eq(plv_peer_table_queued(&f->tab, 10), 0);
    ck_assert_int_eq(plv_peer_table_dropped(&f->tab), -1);

    plv_peer_table_close(&f->tab, b);
    ck_assert_int_eq(event(f, 4).kind, PLV_TRANSPORT_PEER_DOWN);
    ck_assert_uint_eq(f->events->len, 5);
    PlvTransportStats st;
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.connects, 2);
    ck_assert_uint_eq(st.reconnects, 1);
    ck_assert_uint_eq(st.disconnects, 2);
    ck_assert_uint_eq(st.unknown_peers, 2);
    ck_assert_uint_eq(st.frames_in, 1);
    ck_assert_uint_eq(st.bytes_in, sizeof(msg));
    ck_assert_uint_eq(st.malformed_dropped, 1);
    ck_assert_uint_eq(st.frames_out, 1);
    ck_assert_uint_eq(st.send_dropped, 1);
    plv_peer_table_link(&f->tab.base, 0, &li);
    ck_assert_int_eq(li.state, PLV_PEER_LINK_DOWN);
    ck_assert_int_eq(li.last_heard_us, 5679);
    fx_free_all(f);
}
END_TEST

/* Strangers get no slot; one address holds at most PENDING_PER_ADDR, the
 * table at most MAX_PENDING; an idle connection makes room before one
 * that spoke. */
START_TEST(pending_slots)
{
    Fx *f = fx_new(6, 7);          /* peers at 127.0.0.1 to .6 */
    ck_assert_ptr_null(accept_from(f, 9));
    PlvTransportStats st;
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.rejected_strangers, 1);

    PlvPeerConn *first = accept_from(f, 1);
    first->slot.heard = true;
    for (unsigned i = 1; i < PLV_PEER_PENDING_PER_ADDR; i++) {
        accept_from(f, 1);
    }
    ck_assert_uint_eq(f->released->len, 0);
    accept_from(f, 1);         /* pushes out the oldest idle one */
    ck_assert_uint_eq(f->released->len, 1);
    ck_assert_ptr_ne(g_ptr_array_index(f->released, 0), first);
    ck_assert_uint_eq(f->tab.pending->len, PLV_PEER_PENDING_PER_ADDR);

    for (unsigned a = 2; f->tab.pending->len < PLV_PEER_MAX_PENDING; a++) {
        for (unsigned i = 0; i < PLV_PEER_PENDING_PER_ADDR &&
                             f->tab.pending->len < PLV_PEER_MAX_PENDING; i++) {
            accept_from(f, a);
        }
    }
    ck_assert_uint_eq(f->released->len, 1);
    ck_assert_ptr_nonnull(accept_from(f, 6));     /* full: someone goes */
    ck_assert_uint_eq(f->released->len, 2);
    ck_assert_uint_eq(f->tab.pending->len, PLV_PEER_MAX_PENDING);
    ck_assert_int_eq(first->state, PLV_PEER_CONN_HANDSHAKE);
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.pending_evicted, 2);

    /* Past its deadline, a pending handshake failed. */
    first->deadline = 0;
    plv_peer_table_maintain(&f->tab);
    ck_assert_int_eq(first->state, PLV_PEER_CONN_DEAD);
    plv_peer_table_stats(&f->tab.base, &st);
    ck_assert_uint_eq(st.auth_failures, 1);
    ck_assert_uint_eq(f->tab.pending->len, PLV_PEER_MAX_PENDING - 1);
    fx_free_all(f);
}
END_TEST

START_TEST(wakeup_is_seen)
{
    Fx *f = fx_new(0, 1);
    ck_assert(!plv_peer_table_wait_done(&f->tab));
    ck_assert_int_eq(plv_peer_table_sleep(&f->tab, g_get_monotonic_time()), 0);
    ck_assert(!plv_peer_table_wait_done(&f->tab));
    plv_peer_table_wakeup(&f->tab.base);
    ck_assert_int_eq(plv_peer_table_sleep(&f->tab, PLV_DEADLINE_NONE), 0);
    ck_assert(plv_peer_table_wait_done(&f->tab));
    ck_assert_int_eq(plv_peer_table_wait_end(&f->tab), 0);
    ck_assert(!plv_peer_table_wait_done(&f->tab));
    ck_assert(!plv_peer_table_in_wait(&f->tab));
    plv_peer_table_wait_begin(&f->tab, 0, on_event, f);
    fx_free_all(f);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("peer-table");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, config_is_checked);
    tcase_add_test(tc, lower_id_dials_with_backoff);
    tcase_add_test(tc, up_replace_down);
    tcase_add_test(tc, pending_slots);
    tcase_add_test(tc, wakeup_is_seen);
    suite_add_tcase(su, tc);
    return plv_test_run(su);
}
