/*
 * plover/incarnation.h - the replica's incarnation, kept across restarts.
 *
 * A replica keeps its consensus state in memory only. After a restart it
 * has forgotten what it promised, so it must not vote until the group
 * admits it again (docs/consensus.md, "Restarts"); the group tells the
 * restarted node from its former life by a larger incarnation number.
 * That number is the one thing that has to survive a restart: it lives in
 * a small state file, written and flushed to disk before the replica
 * speaks to anyone.
 */
#ifndef PLOVER_INCARNATION_H
#define PLOVER_INCARNATION_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

G_BEGIN_DECLS

#define PLV_INCARNATION_ERROR plv_incarnation_error_quark()
GQuark plv_incarnation_error_quark(void);

/*
 * The incarnation of this start of replica `id`: PLV_INC_INITIAL when
 * `path` does not exist (the group is being created), one more than the
 * stored value otherwise. The new value is on disk (written to a
 * temporary file, fsync'ed, renamed, directory fsync'ed) before this
 * returns true. A file of another replica or one that does not parse is
 * an error: guessing could make a restarted node vote with forgotten
 * promises.
 */
bool plv_incarnation_next(const char *path, uint32_t id, uint64_t *inc,
                          GError **errp);

G_END_DECLS

#endif /* PLOVER_INCARNATION_H */
