/*
 * plover/paxos-store.h - the consensus state a replica keeps on disk.
 *
 * An acceptor that forgets what it promised or accepted breaks Paxos, so
 * a replica that restarts without this file must wait for the group to
 * admit it (docs/consensus.md, "Restart safety"), which needs the two
 * others. With it, a restarted replica votes again at once: two replicas
 * that restart while the third runs on bring the group back.
 *
 * The file is a sequence of frames of the wire format (plover/wire.h):
 * each is a PROMISE the replica writes to itself, carrying its promised
 * view (hdr.vid and vid), that view's leader's incarnation (hdr.to_inc),
 * whether it votes (PLV_HDR_ADMITTED in hdr.flags),
 * its truncation point (snap) and entries written to its log. hdr.from
 * is the replica, hdr.inc the incarnation that wrote the file, hdr.to
 * the next replica (the codec refuses from == to; it means nothing here).
 * Replaying the frames in order with plv_durable_apply() gives back the
 * state. Each start rewrites the file for its own incarnation before any
 * link opens, with room after the state (zeros, at least 4 MiB); every
 * append overwrites that room in place and is fdatasync'ed before the
 * messages that depend on it leave; when the room is used up, the state
 * is rewritten (compacted) into a new file.
 */
#ifndef PLOVER_PAXOS_STORE_H
#define PLOVER_PAXOS_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "plover/paxos.h"

G_BEGIN_DECLS

typedef struct PlvPaxosStore PlvPaxosStore;

/* A write this slow holds the replica's messages back for a fifth of the
 * default suspect-ms: it is counted, and the driver says so. */
#define PLV_STORE_SLOW_US 20000

/*
 * Open the store of replica `id` (a group of `n` >= 2) at `path` for this
 * start's incarnation `inc`. If the file holds what an earlier
 * incarnation of this replica wrote while it voted (plv_durable_votes),
 * *img (initialized by the caller) gets it and *restored is true; otherwise *why_not (g_free it) says why
 * nothing was restored ("none kept", or what is wrong with the file: the
 * replica then starts as an amnesiac restart, which is always safe). The
 * file is rewritten for `inc` before this returns. NULL with errp set if
 * the file cannot be read or written, or belongs to another replica. For
 * a new group (inc == PLV_INC_INITIAL) a file there is not read: it is
 * another group's, and is replaced.
 */
PlvPaxosStore *plv_paxos_store_open(const char *path, uint32_t id, uint32_t n,
                                    uint64_t inc, PlvDurable *img, bool *restored,
                                    char **why_not, GError **errp);
/* Append a record of changes (PlvReady.stable) and fdatasync it. False
 * with errp set on an I/O error: the caller must then stop speaking for
 * this replica (what it promised may not be on disk). */
bool plv_paxos_store_append(PlvPaxosStore *st, const PlvDurable *chg, GError **errp);
void plv_paxos_store_free(PlvPaxosStore *st);

typedef struct {
    uint64_t appends;           /* records written and synced */
    uint64_t bytes;             /* bytes appended */
    uint64_t compactions;       /* rewrites after growth */
    uint64_t sync_us_max;       /* longest write + fdatasync */
    uint64_t sync_us_total;
    uint64_t slow_syncs;        /* writes that took PLV_STORE_SLOW_US or more */
} PlvPaxosStoreStats;
void plv_paxos_store_stats(const PlvPaxosStore *st, PlvPaxosStoreStats *out);

G_END_DECLS

#endif /* PLOVER_PAXOS_STORE_H */
