/*
 * plover/config.h - the replica's configuration, as given by -plover.
 *
 * The option string is parsed here, outside QEMU, so that every error the
 * user can make is unit-tested. The QEMU glue adds the checks that need QEMU
 * (does the netdev exist, is the secret a secret object) on top.
 */
#ifndef PLOVER_CONFIG_H
#define PLOVER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

/* Three replicas today; the wire format and the consensus engine keep N a
 * parameter, the limit only bounds the array. */
#define PLV_MAX_REPLICAS 7
#define PLV_REPLICAS 3
/* Drives named in disks= (the default, all, has no such bound). */
#define PLV_MAX_DISKS 16

typedef enum PlvStartRole {
    PLV_START_AUTO,        /* agreed by consensus: the norm */
    PLV_START_LEADER,      /* a preference, still confirmed by consensus */
    PLV_START_SECONDARY,
    PLV_START_WITNESS,
} PlvStartRole;

typedef enum PlvTransportKind {
    PLV_TRANSPORT_TCP,
    PLV_TRANSPORT_RDMA,
} PlvTransportKind;

typedef struct PlvConfigPeer {
    char *host;            /* name or address, without brackets */
    uint16_t port;
} PlvConfigPeer;

typedef struct PlvConfig {
    PlvStartRole role;
    bool has_id;
    uint32_t id;                          /* index into peers[] */
    unsigned n_peers;
    PlvConfigPeer peers[PLV_MAX_REPLICAS];  /* every replica, this one included */
    char *netdev;                         /* id of the -netdev to replicate */
    PlvTransportKind transport;
    char *secret;                         /* id of a -object secret */
    /* id of a -object tls-creds-x509: the TCP links run TLS 1.3 (NULL:
     * plaintext, authenticated by the secret alone) */
    char *tls_creds;
    char *state;                          /* file keeping the incarnation */
    /* durable=on: the consensus state is kept in state.paxos, so that a
     * restart does not cost the replica its vote (docs/consensus.md) */
    bool durable;
    /* Drives replicated by syncvm: every writable drive of the VM (the
     * default, disks=all), none (disks=none), or those named. */
    bool disks_none;
    bool disks_all;                       /* given: the default anyway */
    unsigned n_disks;
    char *disks[PLV_MAX_DISKS];           /* -drive, device or node ids */

    /* Timeouts, in milliseconds unless said otherwise. */
    uint32_t heartbeat_ms;                /* leader heartbeat period */
    uint32_t suspect_ms;                  /* silence before a peer is suspected */
    uint32_t election_ms;                 /* election jitter range, phase-1 timeout */
    uint32_t syncvm_timeout_ms;           /* one syncvm attempt */
    uint32_t idle_threshold_us;           /* vCPU time per window below which the guest is idle */
    uint32_t idle_window_us;
    /* The secondary waits for its guest to go idle before a cut, at most this */
    uint32_t secondary_idle_wait_us;
    uint32_t max_sync_interval_ms;        /* upper bound between two syncvms */

    /* Bounds of the NIC's queues (KiB): past them packets are dropped. */
    uint32_t max_held_output_kib;         /* leader's held output */
    uint32_t max_pending_input_kib;       /* committed, not taken by the NIC */
    uint32_t reprotect_mbps;              /* a full syncvm's sends, Mbit/s; 0: any */
    uint32_t reprotect_rounds;            /* live pre-copy rounds, at most */
} PlvConfig;

/* Defaults for every field; role=auto, transport=tcp. */
void plv_config_init(PlvConfig *cfg);
void plv_config_clear(PlvConfig *cfg);

/*
 * Parse "key=value,key=value,...". A list value (peers) continues over the
 * following comma-separated tokens that have no '=' in them, so the natural
 * "peers=a:1,b:2,c:3,netdev=n0" works. Each error names the bad field in
 * one line. Fields may appear once. The result still needs
 * plv_config_validate().
 */
bool plv_config_parse(PlvConfig *cfg, const char *opts, GError **errp);

/* Set one field from its textual value. */
bool plv_config_set(PlvConfig *cfg, const char *key, const char *value,
                    GError **errp);

/*
 * Whole-configuration checks: required fields, id in range, three distinct
 * peers whose ports (each replica's port and port + 1, its syncvm link) do
 * not collide on one host, transport available in this build (have_rdma),
 * timeouts coherent.
 */
bool plv_config_validate(const PlvConfig *cfg, bool have_rdma, GError **errp);

/* The help text for -plover help, one line per field; g_free() it. */
char *plv_config_help(void);

const char *plv_start_role_name(PlvStartRole role);
const char *plv_transport_name(PlvTransportKind t);

#define PLV_CONFIG_ERROR plv_config_error_quark()
GQuark plv_config_error_quark(void);

#endif /* PLOVER_CONFIG_H */
