/*
 * -plover: the option, its QEMU-side checks, and the replica's start-up.
 *
 * The option string itself is parsed by plover/core (plv_config_*), where
 * every error message is unit-tested; this file adds what needs QEMU: the
 * netdev and the secret object must exist, and the secret must be readable;
 * tls-creds must name a tls-creds-x509 object made for a server endpoint.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/help_option.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "system/system.h"
#include "net/net.h"
#include "net/tap.h"
#include "crypto/secret_common.h"
#include "crypto/tlscredsx509.h"
/* The certificate credentials the object loaded (QCryptoTLSCredsX509.data):
 * the replica links are sockets of plover/core, not QIOChannels. */
#include "crypto/tlscredspriv.h"
#include "system/plover.h"
#include "plover/incarnation.h"
#include "plover/paxos-store.h"
#include "plover/link.h"
#include "plover-state.h"
#include "trace.h"

#ifdef PLOVER_HAVE_RDMA
#define PLOVER_RDMA_BUILT true
#else
#define PLOVER_RDMA_BUILT false
#endif

static PloverState the_replica;

PloverState *plover_state(void)
{
    return &the_replica;
}

bool plover_parse_opts(const char *optarg, Error **errp)
{
    PloverState *s = plover_state();
    g_autoptr(GError) gerr = NULL;

    if (is_help_option(optarg)) {
        g_autofree char *help = plv_config_help();
        printf("%s", help);
        exit(0);
    }
    if (s->configured) {
        error_setg(errp, "-plover may be given only once");
        return false;
    }
    plv_config_init(&s->cfg);
    if (!plv_config_parse(&s->cfg, optarg, &gerr) ||
        !plv_config_validate(&s->cfg, PLOVER_RDMA_BUILT, &gerr)) {
        error_setg(errp, "%s", gerr->message);
        plv_config_clear(&s->cfg);
        return false;
    }
    s->configured = true;
    return true;
}

/* "'hostnet0' (tap), 'user0' (user)": the netdevs there are. */
static char *plover_netdev_list(void)
{
    NetClientState *ncs[MAX_QUEUE_NUM];
    int n = qemu_find_net_clients_except(NULL, ncs, NET_CLIENT_DRIVER_NIC,
                                         MAX_QUEUE_NUM);
    GString *list = g_string_new(NULL);

    for (int i = 0; i < MIN(n, MAX_QUEUE_NUM); i++) {
        g_string_append_printf(list, "%s'%s' (%s)", i ? ", " : "",
                               ncs[i]->name,
                               NetClientDriver_str(ncs[i]->info->type));
    }
    return g_string_free(list, FALSE);
}

static bool plover_check_netdev(const PlvConfig *cfg, Error **errp)
{
    NetClientState *nc = qemu_find_netdev(cfg->netdev);

    if (!nc) {
        g_autofree char *list = plover_netdev_list();

        /* libvirt names a NIC's netdev "host" + the device's alias:
         * hostnet0 for <interface> number 0 (docs/libvirt.md). */
        error_setg(errp, "-plover: netdev: no -netdev with id '%s'; %s%s",
                   cfg->netdev, *list ? "the netdevs are " : "there is no netdev",
                   list);
        return false;
    }
    /* Inputs are taken off the tap's receive path (PLOVER's tap_send hook). */
    if (nc->info->type != NET_CLIENT_DRIVER_TAP) {
        error_setg(errp, "-plover: netdev: '%s' is a %s netdev; a tap netdev is required",
                   cfg->netdev, NetClientDriver_str(nc->info->type));
        return false;
    }
    /* vhost-net moves packets in the kernel, past the tap's receive path. */
    if (tap_get_vhost_net(nc)) {
        error_setg(errp, "-plover: netdev: tap '%s' has vhost=on; replicated "
                   "inputs need vhost=off (libvirt: <driver name='qemu'/>)",
                   cfg->netdev);
        return false;
    }
    return true;
}

/*
 * Guest NICs and CPUs exist only once the machine is complete (and the
 * first reset, which loads firmware and kernel into RAM, comes after this):
 * check the NIC, map RAM, log dirty pages and start the replica now.
 */
static void plover_machine_done(Notifier *n, void *data)
{
    PloverState *s = plover_state();
    NetClientState *nc = qemu_find_netdev(s->cfg.netdev);
    Error *err = NULL;

    if (!nc || !nc->peer) {
        error_report("-plover: netdev: '%s' is not connected to a guest NIC",
                     s->cfg.netdev);
        exit(1);
    }
    if (!plover_net_setup(s, &err) || !plover_sync_setup(s, &err)) {
        error_report_err(err);
        exit(1);
    }
    plover_sync_start_dirty_log(s);
    if (!plover_replica_start(s, &err)) {
        error_report_err(err);
        exit(1);
    }
}

static Notifier plover_machine_done_notifier = {
    .notify = plover_machine_done,
};

static bool plover_load_secret(PloverState *s, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(),
                                                s->cfg.secret);

    if (!obj || !object_dynamic_cast(obj, TYPE_QCRYPTO_SECRET_COMMON)) {
        error_setg(errp, "-plover: secret: no -object secret with id '%s'",
                   s->cfg.secret);
        return false;
    }
    if (qcrypto_secret_lookup(s->cfg.secret, &s->secret, &s->secret_len, errp) < 0) {
        error_prepend(errp, "-plover: secret: ");
        return false;
    }
    if (s->secret_len < PLV_LINK_MIN_SECRET_LEN) {
        error_setg(errp, "-plover: secret: '%s' is %zu bytes; at least %u are required",
                   s->cfg.secret, s->secret_len, PLV_LINK_MIN_SECRET_LEN);
        return false;
    }
    return true;
}

/*
 * tls-creds: the object's certificate and key (endpoint=server, since a
 * replica accepts links; it dials with the same certificate), its CA, its
 * priority string. Each replica's certificate must name its host in peers.
 */
static bool plover_load_tls(PloverState *s, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    const char *id = s->cfg.tls_creds;
    Object *obj;
    QCryptoTLSCreds *creds;

    if (!id) {
        return true;
    }
    obj = object_resolve_path_component(object_get_objects_root(), id);
    if (!obj || !object_dynamic_cast(obj, TYPE_QCRYPTO_TLS_CREDS_X509)) {
        error_setg(errp, "-plover: tls-creds: no -object tls-creds-x509 with id '%s'",
                   id);
        return false;
    }
    creds = QCRYPTO_TLS_CREDS(obj);
    if (creds->endpoint != QCRYPTO_TLS_CREDS_ENDPOINT_SERVER) {
        error_setg(errp, "-plover: tls-creds: '%s' must have endpoint=server "
                   "(a replica accepts links, and dials with the same certificate)",
                   id);
        return false;
    }
    if (!creds->verifyPeer) {
        error_setg(errp, "-plover: tls-creds: '%s' has verify-peer=off; the "
                   "replicas must verify each other's certificates", id);
        return false;
    }
    s->tls = plv_tls_new(QCRYPTO_TLS_CREDS_X509(obj)->data,
                         creds->priority ? creds->priority : CONFIG_TLS_PRIORITY,
                         &gerr);
    if (!s->tls) {
        error_setg(errp, "-plover: tls-creds: %s", gerr->message);
        return false;
    }
    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        plv_tls_set_peer_name(s->tls, i, s->cfg.peers[i].host);
    }
    if (s->cfg.transport == PLV_TRANSPORT_RDMA) {
        info_report("-plover: tls-creds with transport=rdma: ring records are "
                    "sealed with AES-256-GCM keyed from the secret's handshake; "
                    "certificates are not exchanged over RDMA");
    }
    return true;
}

/*
 * The consensus state kept beside the state file. With it a restarted
 * replica votes again at once, as the acceptor it was; without it (the
 * first start, or a file that cannot be trusted) it waits for the group
 * to admit it (docs/consensus.md). Opened, and rewritten for this
 * incarnation, before any link opens.
 */
static bool plover_open_paxos_store(PloverState *s, Error **errp)
{
    g_autofree char *why_not = NULL;
    g_autoptr(GError) gerr = NULL;

    plv_durable_init(&s->paxos_img);
    if (!s->cfg.durable) {
        return true;
    }
    s->paxos_path = g_strdup_printf("%s.paxos", s->cfg.state);
    s->paxos_store = plv_paxos_store_open(s->paxos_path, s->cfg.id, s->cfg.n_peers,
                                          s->incarnation, &s->paxos_img,
                                          &s->restored_state, &why_not, &gerr);
    if (!s->paxos_store) {
        error_setg(errp, "-plover: consensus state: %s", gerr->message);
        return false;
    }
    if (s->restored_state) {
        info_report("plover: replica %u restarted as incarnation %" PRIu64
                    " with its consensus state (promised view %#" PRIx64
                    ", %u entries past index %" PRIu64 "): it votes at once",
                    s->cfg.id, s->incarnation, s->paxos_img.promised,
                    s->paxos_img.ents->len,
                    s->paxos_img.has_snap ? s->paxos_img.snap.index : 0);
    } else if (s->incarnation != PLV_INC_INITIAL) {
        warn_report("plover: replica %u restarted as incarnation %" PRIu64
                    " without its consensus state (%s): it votes once the "
                    "group admits it", s->cfg.id, s->incarnation, why_not);
    }
    return true;
}

bool plover_init(Error **errp)
{
    PloverState *s = plover_state();
    g_autoptr(GError) gerr = NULL;

    if (!s->configured) {
        return true;
    }
    if (!plover_check_netdev(&s->cfg, errp) || !plover_load_secret(s, errp) ||
        !plover_load_tls(s, errp)) {
        return false;
    }
    /* Before any link opens: a restart must never reuse an incarnation. */
    if (!plv_incarnation_next(s->cfg.state, s->cfg.id, &s->incarnation, &gerr)) {
        error_setg(errp, "-plover: %s", gerr->message);
        return false;
    }
    if (!plover_open_paxos_store(s, errp)) {
        return false;
    }
    trace_plover_configured(s->cfg.id, plv_start_role_name(s->cfg.role),
                            s->cfg.netdev, plv_transport_name(s->cfg.transport),
                            s->incarnation);
    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        trace_plover_peer(i, s->cfg.peers[i].host, s->cfg.peers[i].port,
                          i == s->cfg.id);
    }
    /* The guest runs only where consensus says (plover-replica.c), and
     * not while -S or a monitor's stop holds it (plover-runctl.c). */
    plover_runctl_setup(s, autostart);
    autostart = 0;
    qemu_add_machine_init_done_notifier(&plover_machine_done_notifier);
    plover_stats_register();
    s->initialized = true;
    return true;
}
