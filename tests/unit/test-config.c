/*
 * -plover option parsing: every accepted form and every error message.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "plover/config.h"
#include "helper-run.h"

#define GOOD "id=1,peers=10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001,netdev=net0,secret=s0," \
    "state=/var/lib/plover/r1.state"

/* Parse and validate; returns the error message or NULL. */
static char *try(const char *opts, bool have_rdma, PlvConfig *out)
{
    PlvConfig cfg;
    GError *err = NULL;
    char *msg = NULL;

    plv_config_init(&cfg);
    if (!plv_config_parse(&cfg, opts, &err) ||
        !plv_config_validate(&cfg, have_rdma, &err)) {
        msg = g_strdup(err->message);
        g_error_free(err);
    }
    if (out) {
        *out = cfg;
    } else {
        plv_config_clear(&cfg);
    }
    return msg;
}

static void expect_error(const char *opts, const char *want)
{
    g_autofree char *msg = try(opts, true, NULL);

    ck_assert_msg(msg != NULL, "'%s' was accepted", opts);
    ck_assert_str_eq(msg, want);
}

START_TEST(test_accepts_full_line)
{
    PlvConfig cfg;
    char *msg = try("role=auto," GOOD ",transport=tcp", false, &cfg);

    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert_int_eq(cfg.role, PLV_START_AUTO);
    ck_assert_uint_eq(cfg.id, 1);
    ck_assert_uint_eq(cfg.n_peers, 3);
    ck_assert_str_eq(cfg.peers[2].host, "10.0.0.3");
    ck_assert_uint_eq(cfg.peers[2].port, 7001);
    ck_assert_str_eq(cfg.netdev, "net0");
    ck_assert_str_eq(cfg.secret, "s0");
    ck_assert_int_eq(cfg.transport, PLV_TRANSPORT_TCP);
    ck_assert_uint_eq(cfg.suspect_ms, 100);
    ck_assert_uint_eq(cfg.election_ms, 100);
    ck_assert_str_eq(cfg.state, "/var/lib/plover/r1.state");
    plv_config_clear(&cfg);
}
END_TEST

START_TEST(test_accepts_names_ipv6_and_timeouts)
{
    PlvConfig cfg;
    char *msg = try("id=0,peers=[fd00::1]:7001,host-b.example:7002,c:7003,"
                    "netdev=n.0,secret=key_1,state=s,role=witness,heartbeat-ms=5,"
                    "suspect-ms=50,max-sync-interval-ms=20,max-held-output-kib=64,"
                    "max-pending-input-kib=8", false, &cfg);

    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert_str_eq(cfg.peers[0].host, "fd00::1");
    ck_assert_str_eq(cfg.peers[1].host, "host-b.example");
    ck_assert_int_eq(cfg.role, PLV_START_WITNESS);
    ck_assert_uint_eq(cfg.heartbeat_ms, 5);
    ck_assert_uint_eq(cfg.suspect_ms, 50);
    ck_assert_uint_eq(cfg.max_sync_interval_ms, 20);
    ck_assert_uint_eq(cfg.max_held_output_kib, 64);
    ck_assert_uint_eq(cfg.max_pending_input_kib, 8);
    plv_config_clear(&cfg);
}
END_TEST

START_TEST(test_rdma_depends_on_build)
{
    g_autofree char *with = try(GOOD ",transport=rdma", true, NULL);
    g_autofree char *without = try(GOOD ",transport=rdma", false, NULL);

    ck_assert_msg(with == NULL, "%s", with);
    ck_assert_str_eq(without, "transport: rdma is not available in this build "
                     "(built with --disable-rdma)");
}
END_TEST

START_TEST(test_tls_creds)
{
    PlvConfig cfg;
    char *msg = try(GOOD ",tls-creds=tls0", false, &cfg);

    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert_str_eq(cfg.tls_creds, "tls0");
    plv_config_clear(&cfg);
    ck_assert_ptr_null(cfg.tls_creds);

    /* On RDMA it seals the ring records. */
    g_autofree char *rdma = try(GOOD ",tls-creds=tls0,transport=rdma", true, NULL);
    ck_assert_msg(rdma == NULL, "%s", rdma);
    g_autofree char *bad = try(GOOD ",tls-creds=", false, NULL);
    ck_assert_ptr_nonnull(bad);
    ck_assert_msg(g_str_has_prefix(bad, "tls-creds: "), "%s", bad);
}
END_TEST

START_TEST(test_field_errors)
{
    expect_error("role=boss," GOOD,
                 "role: invalid value 'boss' (expected auto, leader, secondary or witness)");
    expect_error("transport=udp," GOOD, "transport: invalid value 'udp' (expected tcp or rdma)");
    expect_error("id=x,peers=a:1,b:1,c:1,netdev=n,secret=s",
                 "id: 'x' is not a replica index (0..6)");
    expect_error("id=-1,peers=a:1,b:1,c:1,netdev=n,secret=s",
                 "id: '-1' is not a replica index (0..6)");
    expect_error("id=3,peers=a:1,b:1,c:1,netdev=n,secret=s",
                 "id: 3 is out of range (0..2, an index into peers)");
    expect_error("peers=a:1,b:1,c:1,netdev=n,secret=s",
                 "id: required (this replica's index in peers, 0..2)");
    expect_error("id=0,netdev=n,secret=s",
                 "peers: required (host:port of all 3 replicas, this one included)");
    expect_error("id=0,peers=a:1,b:1,netdev=n,secret=s",
                 "peers: 2 given, exactly 3 required (this replica included)");
    expect_error("id=0,peers=a:1,b:1,c:1,d:1,netdev=n,secret=s",
                 "peers: 4 given, exactly 3 required (this replica included)");
    expect_error("id=0,peers=a:1,b:2,a:1,netdev=n,secret=s", "peers: a:1 is given twice");
    expect_error("id=0,peers=a,b:1,c:1", "peers: 'a' has no port (expected host:port)");
    expect_error("id=0,peers=a:0,b:1,c:1", "peers: 'a:0' has an invalid port (expected 1..65535)");
    expect_error("id=0,peers=a:99999,b:1,c:1",
                 "peers: 'a:99999' has an invalid port (expected 1..65535)");
    expect_error("id=0,peers=:5,b:1,c:1", "peers: ':5' has an empty host");
    expect_error("id=0,peers=a b:5,b:1,c:1", "peers: 'a b:5' has an invalid host name");
    expect_error("id=0,peers=[fd00::1:5,b:1,c:1",
                 "peers: '[fd00::1:5' is not host:port or [address]:port");
    expect_error("id=0,peers=[zz::1]:5,b:1,c:1", "peers: '[zz::1]:5' has an invalid IPv6 address");
    expect_error("id=0,peers=a:1,b:1,c:1,secret=s",
                 "netdev: required (id of the -netdev whose traffic is replicated)");
    expect_error("id=0,peers=a:1,b:1,c:1,netdev=n",
                 "secret: required (id of a -object secret shared by the replicas)");
    expect_error("id=0,peers=a:1,b:1,c:1,netdev=n,secret=s",
                 "state: required (file where this replica keeps its incarnation "
                 "across restarts)");
    expect_error("netdev=9net," GOOD, "netdev: '9net' is not a valid QEMU id");
    expect_error(GOOD ",secret=s1", "secret: given more than once");
    expect_error("id=0,id=1", "id: given more than once");
    expect_error("color=blue," GOOD, "unknown field 'color' (-plover help lists the fields)");
    expect_error("role=", "role: empty value");
    expect_error("", "empty option string (-plover help lists the fields)");
    expect_error("role=auto,,id=1", "empty field (two commas in a row?)");
    expect_error("auto,id=1", "'auto': expected key=value");
    expect_error("=auto", "'=auto': missing field name");
    expect_error(GOOD ",heartbeat-ms=0", "heartbeat-ms: '0' is not a number in 1..60000");
    expect_error(GOOD ",heartbeat-ms=100,suspect-ms=100",
                 "suspect-ms: 100 must be longer than heartbeat-ms (100)");
    expect_error(GOOD ",idle-threshold-us=2000,idle-window-us=1000",
                 "idle-threshold-us: 2000 exceeds idle-window-us (1000)");
    /* The leader would time out waiting for a secondary that waits. */
    expect_error(GOOD ",secondary-idle-wait-us=600000,syncvm-timeout-ms=1000",
                 "secondary-idle-wait-us: 600000 is more than half of "
                 "syncvm-timeout-ms (1000 ms)");
}
END_TEST

START_TEST(test_peer_port_refusals)
{
    expect_error("id=0,peers=a:1,b:65535,c:1,netdev=n,secret=s,state=f",
                 "peers: replica 1's port 65535 leaves no port for its syncvm link (port+1)");
    /* 65534 still leaves 65535 for the syncvm link. */
    g_autofree char *top = try("id=0,peers=a:65534,b:65534,c:1,netdev=n,secret=s,state=f",
                               true, NULL);
    ck_assert_msg(top == NULL, "%s", top);
    expect_error("id=0,peers=h:7000,b:1,h:7001,netdev=n,secret=s,state=f",
                 "peers: replicas 0 and 2 on h use ports 7000/7001 and 7001/7002, "
                 "which overlap");
    expect_error("id=0,peers=b:1,h:7001,H:7000,netdev=n,secret=s,state=f",
                 "peers: replicas 1 and 2 on h use ports 7001/7002 and 7000/7001, "
                 "which overlap");
    /* The loopback names are one host. */
    expect_error("id=0,peers=localhost:7000,127.0.0.1:7000,[::1]:7010,netdev=n,"
                 "secret=s,state=f",
                 "peers: replicas 0 and 1 on localhost use ports 7000/7001 and "
                 "7000/7001, which overlap");
    expect_error("id=0,peers=127.0.0.1:7000,[::1]:7001,c:1,netdev=n,secret=s,state=f",
                 "peers: replicas 0 and 1 on 127.0.0.1 use ports 7000/7001 and "
                 "7001/7002, which overlap");
    /* Two apart is enough on one host; other hosts may share ports. */
    g_autofree char *ok = try("id=0,peers=127.0.0.1:7000,localhost:7002,[::1]:7004,"
                              "netdev=n,secret=s,state=f", true, NULL);
    ck_assert_msg(ok == NULL, "%s", ok);
    g_autofree char *ok2 = try("id=0,peers=a:7000,b:7001,c:7000,netdev=n,secret=s,state=f",
                               true, NULL);
    ck_assert_msg(ok2 == NULL, "%s", ok2);
}
END_TEST

START_TEST(test_other_refusals)
{
    /* Brackets hold a literal IPv6 address, not a name. */
    expect_error("id=0,peers=[abc]:5,b:1,c:1", "peers: '[abc]:5' has an invalid IPv6 address");
    expect_error("id=0,peers=[1.2.3.4]:5,b:1,c:1",
                 "peers: '[1.2.3.4]:5' has an invalid IPv6 address");
    expect_error("id=0,peers=[]:5,b:1,c:1", "peers: '[]:5' has an empty host");
    expect_error("id=0,peers=a:+5,b:1,c:1", "peers: 'a:+5' has an invalid port (expected 1..65535)");
    expect_error("id=0,peers=a:1,A:1,c:1,netdev=n,secret=s,state=f", "peers: A:1 is given twice");
    expect_error("id=7," GOOD, "id: '7' is not a replica index (0..6)");
    /* A queue bound too small for one packet would drop every packet. */
    expect_error(GOOD ",max-held-output-kib=2",
                 "max-held-output-kib: '2' is not a number in 4..4194304");
    expect_error(GOOD ",max-pending-input-kib=1048577",
                 "max-pending-input-kib: '1048577' is not a number in 4..1048576");
    expect_error(GOOD ",reprotect-rounds=65",
                 "reprotect-rounds: '65' is not a number in 0..64");
    /* No timeout may be 0: each would make a loop spin or never fire. */
    const char *zero[] = { "heartbeat-ms", "suspect-ms", "election-ms", "syncvm-timeout-ms",
                           "idle-threshold-us", "idle-window-us", "max-sync-interval-ms" };
    for (size_t i = 0; i < G_N_ELEMENTS(zero); i++) {
        g_autofree char *opts = g_strdup_printf(GOOD ",%s=0", zero[i]);
        g_autofree char *msg = try(opts, true, NULL);
        g_autofree char *want = g_strdup_printf("%s: '0' is not a number in", zero[i]);
        ck_assert_msg(msg && g_str_has_prefix(msg, want), "%s: %s", opts, msg);
    }
}
END_TEST

START_TEST(test_disks)
{
    PlvConfig cfg;
    char *msg = try(GOOD ",disks=drive0,virtio-disk1,transport=tcp", true, &cfg);

    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert_uint_eq(cfg.n_disks, 2);
    ck_assert_str_eq(cfg.disks[0], "drive0");
    ck_assert_str_eq(cfg.disks[1], "virtio-disk1");
    ck_assert(!cfg.disks_none);
    plv_config_clear(&cfg);

    msg = try(GOOD ",disks=none", true, &cfg);
    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert(cfg.disks_none);
    ck_assert_uint_eq(cfg.n_disks, 0);
    plv_config_clear(&cfg);

    msg = try(GOOD, true, &cfg);
    ck_assert_msg(msg == NULL, "%s", msg);
    ck_assert(!cfg.disks_none);
    ck_assert_uint_eq(cfg.n_disks, 0);
    plv_config_clear(&cfg);

    expect_error(GOOD ",disks=none,d0", "disks: 'all' and 'none' cannot be "
                 "combined with other entries");
    expect_error(GOOD ",disks=d0,all", "disks: 'all' and 'none' cannot be "
                 "combined with other entries");
    expect_error(GOOD ",disks=all,d0", "disks: 'all' and 'none' cannot be "
                 "combined with other entries");
    expect_error(GOOD ",disks=d0,d0", "disks: 'd0' is given twice");
    expect_error(GOOD ",disks=0bad", "disks: '0bad' is not a valid QEMU id");
    expect_error(GOOD ",disks=d0,disks=d1", "disks: given more than once");
    expect_error(GOOD ",disks=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q",
                 "disks: more than 16 drives named");
}
END_TEST

START_TEST(test_help_lists_every_field)
{
    g_autofree char *help = plv_config_help();
    const char *fields[] = { "role=", "id=", "peers=", "netdev=", "transport=", "secret=",
                             "state=", "heartbeat-ms=", "suspect-ms=", "election-ms=", "syncvm-timeout-ms=",
                             "idle-threshold-us=", "idle-window-us=", "max-sync-interval-ms=",
                             "max-held-output-kib=", "max-pending-input-kib=",
                             "secondary-idle-wait-us=", "disks=", "reprotect-mbps=",
                             "reprotect-rounds=" };

    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        ck_assert_msg(strstr(help, fields[i]), "help lacks %s", fields[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, test_accepts_full_line);
    tcase_add_test(tc, test_accepts_names_ipv6_and_timeouts);
    tcase_add_test(tc, test_rdma_depends_on_build);
    tcase_add_test(tc, test_tls_creds);
    tcase_add_test(tc, test_field_errors);
    tcase_add_test(tc, test_peer_port_refusals);
    tcase_add_test(tc, test_other_refusals);
    tcase_add_test(tc, test_help_lists_every_field);
    tcase_add_test(tc, test_disks);
    suite_add_tcase(s, tc);
    return plv_test_run(s);
}
