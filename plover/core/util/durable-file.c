/* Files that must survive a crash as written (see durable-file.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/durable-file.h"
#include "util/fail.h"

#define fail(errp, ...) plv_fail(errp, G_FILE_ERROR, __VA_ARGS__)

bool plv_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = EIO;
            }
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

bool plv_dir_sync(const char *path, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd < 0 || fsync(dfd) < 0) {
        int e = errno;
        if (dfd >= 0) {
            close(dfd);
        }
        return fail(errp, "cannot flush directory '%s': %s", dir, g_strerror(e));
    }
    close(dfd);
    return true;
}

bool plv_file_replace(const char *path, const void *data, size_t len, GError **errp)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        return fail(errp, "cannot create '%s': %s", tmp, g_strerror(errno));
    }
    if (!plv_write_all(fd, data, len) || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fail(errp, "cannot write '%s': %s", tmp, g_strerror(e));
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return fail(errp, "cannot rename '%s' to '%s': %s", tmp, path, g_strerror(e));
    }
    return plv_dir_sync(path, errp);
}
