/*
 * Parsing and validation of the -plover option string.
 *
 * Every message names the field it is about first ("id: ..."), so that the
 * one line QEMU prints tells the operator exactly what to fix.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "plover/config.h"
#include "util/fail.h"

G_DEFINE_QUARK(plv-config-error-quark, plv_config_error)

typedef struct NumField {
    const char *key;
    size_t offset;       /* of a uint32_t inside PlvConfig */
    uint32_t min, max;
    uint32_t def;
    const char *help;
} NumField;

static const NumField num_fields[] = {
    { "heartbeat-ms", G_STRUCT_OFFSET(PlvConfig, heartbeat_ms), 1, 60000, 5,
      "leader heartbeat period" },
    { "suspect-ms", G_STRUCT_OFFSET(PlvConfig, suspect_ms), 2, 600000, 100,
      "silence after which a peer is suspected (PLOVER uses 100 ms)" },
    { "election-ms", G_STRUCT_OFFSET(PlvConfig, election_ms), 1, 600000, 100,
      "range of the random delay before standing for election; phase-1 timeout" },
    { "syncvm-timeout-ms", G_STRUCT_OFFSET(PlvConfig, syncvm_timeout_ms), 10, 600000, 1000,
      "longest wait for one syncvm message before the attempt fails" },
    { "idle-threshold-us", G_STRUCT_OFFSET(PlvConfig, idle_threshold_us), 1, 1000000, 100,
      "vCPU time per window below which the guest counts as idle" },
    { "idle-window-us", G_STRUCT_OFFSET(PlvConfig, idle_window_us), 10, 10000000, 1000,
      "idle detector sampling window" },
    { "secondary-idle-wait-us", G_STRUCT_OFFSET(PlvConfig, secondary_idle_wait_us), 0, 1000000, 2000,
      "longest the secondary lets its guest finish its work before a syncvm's cut (0: cut at once)" },
    { "max-sync-interval-ms", G_STRUCT_OFFSET(PlvConfig, max_sync_interval_ms), 1, 600000, 50,
      "longest wait between two syncvms, idle or not" },
    { "max-held-output-kib", G_STRUCT_OFFSET(PlvConfig, max_held_output_kib), 4, 4194304, 65536,
      "guest output the leader holds at most; past it packets are dropped" },
    { "max-pending-input-kib", G_STRUCT_OFFSET(PlvConfig, max_pending_input_kib), 4, 1048576, 16384,
      "committed input the guest NIC has not taken, at most; past it packets are dropped" },
    { "reprotect-mbps", G_STRUCT_OFFSET(PlvConfig, reprotect_mbps), 0, 1000000, 0,
      "what a full syncvm (re-protection) sends at most, in Mbit/s (0: no cap)" },
    { "reprotect-rounds", G_STRUCT_OFFSET(PlvConfig, reprotect_rounds), 0, 64, 8,
      "pre-copy rounds of a re-protection while the VM runs, at most (0: the VM stops for the whole copy)" },
};

static uint32_t *num_field_ptr(PlvConfig *cfg, const NumField *f)
{
    return G_STRUCT_MEMBER_P(cfg, f->offset);
}

#define fail(errp, ...) plv_fail(errp, PLV_CONFIG_ERROR, __VA_ARGS__)

void plv_config_init(PlvConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->role = PLV_START_AUTO;
    cfg->transport = PLV_TRANSPORT_TCP;
    for (size_t i = 0; i < G_N_ELEMENTS(num_fields); i++) {
        *num_field_ptr(cfg, &num_fields[i]) = num_fields[i].def;
    }
}

void plv_config_clear(PlvConfig *cfg)
{
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        g_free(cfg->peers[i].host);
    }
    for (unsigned i = 0; i < cfg->n_disks; i++) {
        g_free(cfg->disks[i]);
    }
    g_free(cfg->netdev);
    g_free(cfg->secret);
    g_free(cfg->tls_creds);
    g_free(cfg->state);
    plv_config_init(cfg);
}

static const char *const role_names[] = {
    [PLV_START_AUTO] = "auto",
    [PLV_START_LEADER] = "leader",
    [PLV_START_SECONDARY] = "secondary",
    [PLV_START_WITNESS] = "witness",
};

static const char *const transport_names[] = {
    [PLV_TRANSPORT_TCP] = "tcp",
    [PLV_TRANSPORT_RDMA] = "rdma",
};

const char *plv_start_role_name(PlvStartRole role)
{
    return (unsigned)role < G_N_ELEMENTS(role_names) ? role_names[role] : "?";
}

const char *plv_transport_name(PlvTransportKind t)
{
    return (unsigned)t < G_N_ELEMENTS(transport_names) ? transport_names[t] : "?";
}

static bool is_host_char(char c)
{
    return g_ascii_isalnum(c) || c == '.' || c == '-' || c == '_';
}

/* "host:port" or "[v6addr]:port". */
static bool parse_peer(const char *s, PlvConfigPeer *out, GError **errp)
{
    const char *colon;
    g_autofree char *host = NULL;
    guint64 port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            return fail(errp, "peers: '%s' is not host:port or [address]:port", s);
        }
        struct in6_addr a6;
        host = g_strndup(s + 1, close - s - 1);
        colon = close + 1;
        /* Brackets promise a literal address: "[abc]" would otherwise be
         * taken for a host name and fail only when dialed. */
        if (host[0] && inet_pton(AF_INET6, host, &a6) != 1) {
            return fail(errp, "peers: '%s' has an invalid IPv6 address", s);
        }
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            return fail(errp, "peers: '%s' has no port (expected host:port)", s);
        }
        host = g_strndup(s, colon - s);
        for (const char *p = host; *p; p++) {
            if (!is_host_char(*p)) {
                return fail(errp, "peers: '%s' has an invalid host name", s);
            }
        }
    }
    if (!host[0]) {
        return fail(errp, "peers: '%s' has an empty host", s);
    }
    if (!g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &port, NULL)) {
        return fail(errp, "peers: '%s' has an invalid port (expected 1..65535)", s);
    }
    out->host = g_steal_pointer(&host);
    out->port = (uint16_t)port;
    return true;
}

static bool add_peer(PlvConfig *cfg, const char *value, GError **errp)
{
    if (cfg->n_peers == PLV_MAX_REPLICAS) {
        return fail(errp, "peers: more than %d entries", PLV_MAX_REPLICAS);
    }
    if (!parse_peer(value, &cfg->peers[cfg->n_peers], errp)) {
        return false;
    }
    cfg->n_peers++;
    return true;
}

static bool parse_enum(const char *key, const char *value,
                       const char *const *names, size_t n, int *out,
                       const char *expected, GError **errp)
{
    for (size_t i = 0; i < n; i++) {
        if (names[i] && !strcmp(value, names[i])) {
            *out = (int)i;
            return true;
        }
    }
    return fail(errp, "%s: invalid value '%s' (expected %s)", key, value, expected);
}

static bool parse_id_string(const char *key, const char *value, char **out,
                            GError **errp)
{
    /* QEMU ids: a letter, then letters, digits, '-', '.', '_'. */
    if (!g_ascii_isalpha(value[0])) {
        return fail(errp, "%s: '%s' is not a valid QEMU id", key, value);
    }
    for (const char *p = value; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return fail(errp, "%s: '%s' is not a valid QEMU id", key, value);
        }
    }
    g_free(*out);
    *out = g_strdup(value);
    return true;
}

/* disks=all | none | ID[,ID...] (the list goes on like peers'). */
static bool add_disk(PlvConfig *cfg, const char *value, GError **errp)
{
    bool word = !strcmp(value, "all") || !strcmp(value, "none");

    if (cfg->disks_none || cfg->disks_all || (word && cfg->n_disks)) {
        return fail(errp, "disks: 'all' and 'none' cannot be combined with "
                    "other entries");
    }
    if (word) {
        cfg->disks_none = !strcmp(value, "none");
        cfg->disks_all = !cfg->disks_none;
        return true;
    }
    if (cfg->n_disks == PLV_MAX_DISKS) {
        return fail(errp, "disks: more than %d drives named", PLV_MAX_DISKS);
    }
    for (unsigned i = 0; i < cfg->n_disks; i++) {
        if (!strcmp(cfg->disks[i], value)) {
            return fail(errp, "disks: '%s' is given twice", value);
        }
    }
    if (!parse_id_string("disks", value, &cfg->disks[cfg->n_disks], errp)) {
        return false;
    }
    cfg->n_disks++;
    return true;
}

bool plv_config_set(PlvConfig *cfg, const char *key, const char *value,
                    GError **errp)
{
    if (!value[0]) {
        return fail(errp, "%s: empty value", key);
    }
    if (!strcmp(key, "role")) {
        int r = 0;
        if (!parse_enum(key, value, role_names, G_N_ELEMENTS(role_names), &r,
                        "auto, leader, secondary or witness", errp)) {
            return false;
        }
        cfg->role = (PlvStartRole)r;
        return true;
    }
    if (!strcmp(key, "transport")) {
        int t = 0;
        if (!parse_enum(key, value, transport_names, G_N_ELEMENTS(transport_names),
                        &t, "tcp or rdma", errp)) {
            return false;
        }
        cfg->transport = (PlvTransportKind)t;
        return true;
    }
    if (!strcmp(key, "id")) {
        guint64 id;
        if (!g_ascii_string_to_unsigned(value, 10, 0, PLV_MAX_REPLICAS - 1, &id, NULL)) {
            return fail(errp, "id: '%s' is not a replica index (0..%d)", value,
                        PLV_MAX_REPLICAS - 1);
        }
        cfg->id = (uint32_t)id;
        cfg->has_id = true;
        return true;
    }
    if (!strcmp(key, "peers")) {
        return add_peer(cfg, value, errp);
    }
    if (!strcmp(key, "disks")) {
        return add_disk(cfg, value, errp);
    }
    if (!strcmp(key, "netdev")) {
        return parse_id_string(key, value, &cfg->netdev, errp);
    }
    if (!strcmp(key, "secret")) {
        return parse_id_string(key, value, &cfg->secret, errp);
    }
    if (!strcmp(key, "tls-creds")) {
        return parse_id_string(key, value, &cfg->tls_creds, errp);
    }
    if (!strcmp(key, "state")) {
        g_free(cfg->state);
        cfg->state = g_strdup(value);
        return true;
    }
    if (!strcmp(key, "durable")) {
        if (strcmp(value, "on") && strcmp(value, "off")) {
            return fail(errp, "durable: '%s' is not on or off", value);
        }
        cfg->durable = !strcmp(value, "on");
        return true;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(num_fields); i++) {
        const NumField *f = &num_fields[i];
        guint64 v;
        if (strcmp(key, f->key)) {
            continue;
        }
        if (!g_ascii_string_to_unsigned(value, 10, f->min, f->max, &v, NULL)) {
            return fail(errp, "%s: '%s' is not a number in %u..%u", key, value,
                        f->min, f->max);
        }
        *num_field_ptr(cfg, f) = (uint32_t)v;
        return true;
    }
    return fail(errp, "unknown field '%s' (-plover help lists the fields)", key);
}

bool plv_config_parse(PlvConfig *cfg, const char *opts, GError **errp)
{
    g_auto(GStrv) tokens = NULL;
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    const char *list_key = NULL;

    if (!opts || !opts[0]) {
        return fail(errp, "empty option string (-plover help lists the fields)");
    }
    tokens = g_strsplit(opts, ",", -1);
    for (char **t = tokens; *t; t++) {
        char *eq = strchr(*t, '=');

        if (!eq) {
            if (!(*t)[0]) {
                return fail(errp, "empty field (two commas in a row?)");
            }
            if (!list_key) {
                return fail(errp, "'%s': expected key=value", *t);
            }
            if (!plv_config_set(cfg, list_key, *t, errp)) {
                return false;
            }
            continue;
        }
        *eq = '\0';
        if (!(*t)[0]) {
            return fail(errp, "'=%s': missing field name", eq + 1);
        }
        if (g_hash_table_contains(seen, *t)) {
            return fail(errp, "%s: given more than once", *t);
        }
        g_hash_table_add(seen, *t);
        if (!plv_config_set(cfg, *t, eq + 1, errp)) {
            return false;
        }
        list_key = !strcmp(*t, "peers") ? "peers" :
                   !strcmp(*t, "disks") ? "disks" : NULL;
    }
    return true;
}

static bool is_loopback_name(const char *host)
{
    return !g_ascii_strcasecmp(host, "localhost") || !strcmp(host, "127.0.0.1") ||
           !strcmp(host, "::1");
}

/* Same machine, as far as the strings tell without asking DNS. */
static bool same_host(const char *a, const char *b)
{
    return !g_ascii_strcasecmp(a, b) || (is_loopback_name(a) && is_loopback_name(b));
}

/*
 * Each replica listens on its port and, for its syncvm bulk link, on
 * port + 1: both must exist and no two replicas on one host may share one.
 */
static bool check_peer_ports(const PlvConfig *cfg, GError **errp)
{
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        const PlvConfigPeer *q = &cfg->peers[i];
        if (q->port == 65535) {
            return fail(errp, "peers: replica %u's port 65535 leaves no port for "
                        "its syncvm link (port+1)", i);
        }
        for (unsigned j = 0; j < i; j++) {
            const PlvConfigPeer *p = &cfg->peers[j];
            if (!same_host(p->host, q->host) || abs(p->port - q->port) > 1) {
                continue;
            }
            if (p->port == q->port && !g_ascii_strcasecmp(p->host, q->host)) {
                return fail(errp, "peers: %s:%u is given twice", q->host, q->port);
            }
            return fail(errp, "peers: replicas %u and %u on %s use ports %u/%u and "
                        "%u/%u, which overlap", j, i, p->host, p->port,
                        p->port + 1, q->port, q->port + 1);
        }
    }
    return true;
}

bool plv_config_validate(const PlvConfig *cfg, bool have_rdma, GError **errp)
{
    if (cfg->n_peers == 0) {
        return fail(errp, "peers: required (host:port of all %d replicas, this one included)",
                    PLV_REPLICAS);
    }
    if (cfg->n_peers != PLV_REPLICAS) {
        return fail(errp, "peers: %u given, exactly %d required (this replica included)",
                    cfg->n_peers, PLV_REPLICAS);
    }
    if (!check_peer_ports(cfg, errp)) {
        return false;
    }
    if (!cfg->has_id) {
        return fail(errp, "id: required (this replica's index in peers, 0..%u)",
                    cfg->n_peers - 1);
    }
    if (cfg->id >= cfg->n_peers) {
        return fail(errp, "id: %u is out of range (0..%u, an index into peers)",
                    cfg->id, cfg->n_peers - 1);
    }
    if (!cfg->netdev) {
        return fail(errp, "netdev: required (id of the -netdev whose traffic is replicated)");
    }
    if (!cfg->secret) {
        return fail(errp, "secret: required (id of a -object secret shared by the replicas)");
    }
    if (!cfg->state) {
        return fail(errp, "state: required (file where this replica keeps its "
                    "incarnation across restarts)");
    }
    if (cfg->transport == PLV_TRANSPORT_RDMA && !have_rdma) {
        return fail(errp, "transport: rdma is not available in this build "
                    "(built with --disable-rdma)");
    }
    if (cfg->suspect_ms <= cfg->heartbeat_ms) {
        return fail(errp, "suspect-ms: %u must be longer than heartbeat-ms (%u)",
                    cfg->suspect_ms, cfg->heartbeat_ms);
    }
    if (cfg->idle_threshold_us > cfg->idle_window_us) {
        return fail(errp, "idle-threshold-us: %u exceeds idle-window-us (%u)",
                    cfg->idle_threshold_us, cfg->idle_window_us);
    }
    /* The leader waits for the secondary's cut within syncvm-timeout-ms. */
    if ((uint64_t)cfg->secondary_idle_wait_us * 2 >
        (uint64_t)cfg->syncvm_timeout_ms * 1000) {
        return fail(errp, "secondary-idle-wait-us: %u is more than half of "
                    "syncvm-timeout-ms (%u ms)", cfg->secondary_idle_wait_us,
                    cfg->syncvm_timeout_ms);
    }
    return true;
}

char *plv_config_help(void)
{
    GString *s = g_string_new(
        "-plover role=auto,id=N,peers=HOST:PORT,HOST:PORT,HOST:PORT,netdev=ID,secret=ID,"
        "state=FILE[,...]\n"
        "  role=auto|leader|secondary|witness  starting role (default auto: agreed by consensus)\n"
        "  id=N                 this replica's index in peers (0..2)\n"
        "  peers=H:P,H:P,H:P    all three replicas, this one included, same order everywhere\n"
        "  netdev=ID            the -netdev whose traffic is replicated\n"
        "  disks=all|none|ID,ID  drives replicated by syncvm (default all: every\n"
        "                       writable drive of the VM; an ID is a -drive id,\n"
        "                       a device id or a node name)\n"
        "  transport=tcp|rdma   replica links (default tcp)\n"
        "  secret=ID            a -object secret shared by the replicas (authenticates peers)\n"
        "  tls-creds=ID         a -object tls-creds-x509 (endpoint=server): every replica\n"
        "                       link runs TLS 1.3, each replica's certificate naming its\n"
        "                       host in peers; with transport=rdma, ring records are\n"
        "                       sealed with AES-256-GCM instead (default: neither)\n"
        "  state=FILE           this replica's incarnation, kept across restarts; created\n"
        "                       when missing (a new group); never delete it while the\n"
        "                       other replicas run\n"
        "  durable=on|off       keep what the replica promised and accepted in FILE.paxos,\n"
        "                       synced before its messages leave, so that it votes again\n"
        "                       at once after a restart (default off: two replicas\n"
        "                       restarted at once then wait for an operator)\n");

    /* Numeric fields come from the parser's own table, so help cannot drift. */
    for (size_t i = 0; i < G_N_ELEMENTS(num_fields); i++) {
        g_autofree char *k = g_strdup_printf("%s=N", num_fields[i].key);
        g_string_append_printf(s, "  %-20s %s (default %u)\n", k,
                               num_fields[i].help, num_fields[i].def);
    }
    return g_string_free(s, FALSE);
}
