/*
 * plover/core internal: files that must survive a crash as written (the
 * incarnation file, the consensus store).
 */
#ifndef PLOVER_CORE_DURABLE_FILE_H
#define PLOVER_CORE_DURABLE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

/* write() until all of buf is written; false with errno set otherwise. */
bool plv_write_all(int fd, const void *buf, size_t len);

/*
 * Replace `path` with `len` bytes atomically and durably: written to
 * `path`.tmp, fsync'ed, renamed over `path`, and the directory fsync'ed.
 * A crash leaves the old contents or the new ones, never a torn file and
 * never a lost update. Errors name the file and the system's reason.
 */
bool plv_file_replace(const char *path, const void *data, size_t len, GError **errp);

/* fsync the directory that holds `path`. */
bool plv_dir_sync(const char *path, GError **errp);

#endif /* PLOVER_CORE_DURABLE_FILE_H */
