/*
 * The state file that keeps a replica's incarnation across restarts.
 *
 * Format, one field per line, so an operator can read it:
 *     plover-state 1
 *     id 2
 *     incarnation 7
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plover/incarnation.h"
#include "plover/paxos.h"
#include "util/durable-file.h"
#include "util/fail.h"

G_DEFINE_QUARK(plv-incarnation-error-quark, plv_incarnation_error)

#define fail(errp, ...) plv_fail(errp, PLV_INCARNATION_ERROR, __VA_ARGS__)

/* "KEY VALUE" with VALUE a decimal number in [min, max]. */
static bool parse_line(const char *line, const char *key, guint64 min, guint64 max,
                       guint64 *out)
{
    size_t kl = strlen(key);

    return line && !strncmp(line, key, kl) && line[kl] == ' ' &&
           g_ascii_string_to_unsigned(line + kl + 1, 10, min, max, out, NULL);
}

/* Parse the file's text; false if it is not a state file of replica `id`. */
static bool parse_state(const char *path, const char *text, uint32_t id,
                        uint64_t *inc, GError **errp)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    guint n = g_strv_length(lines);
    guint64 version, file_id, value;

    /* Three lines, each ending in a newline: a torn write does not parse. */
    if (n != 4 || lines[3][0] ||
        !parse_line(lines[0], "plover-state", 1, 1, &version) ||
        !parse_line(lines[1], "id", 0, G_MAXUINT32, &file_id) ||
        !parse_line(lines[2], "incarnation", PLV_INC_INITIAL, G_MAXUINT64 - 1, &value)) {
        return fail(errp, "state: '%s' is not a plover state file "
                    "(expected 'plover-state 1', 'id N', 'incarnation N')", path);
    }
    if (file_id != id) {
        return fail(errp, "state: '%s' belongs to replica %u, not to replica %u",
                    path, (unsigned)file_id, id);
    }
    *inc = value;
    return true;
}

/* A crash leaves the old value or the new one, never a torn file and
 * never a lost update. */
static bool store_state(const char *path, uint32_t id, uint64_t inc, GError **errp)
{
    g_autofree char *text = g_strdup_printf("plover-state 1\nid %u\nincarnation %"
                                            G_GUINT64_FORMAT "\n", id, (guint64)inc);

    if (!plv_file_replace(path, text, strlen(text), errp)) {
        g_prefix_error(errp, "state: ");
        return false;
    }
    return true;
}

bool plv_incarnation_next(const char *path, uint32_t id, uint64_t *inc,
                          GError **errp)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) gerr = NULL;
    uint64_t next = PLV_INC_INITIAL;

    if (g_file_get_contents(path, &text, NULL, &gerr)) {
        uint64_t prev = 0;
        if (!parse_state(path, text, id, &prev, errp)) {
            return false;
        }
        next = prev + 1;
    } else if (!g_error_matches(gerr, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        return fail(errp, "state: cannot read '%s': %s", path, gerr->message);
    }
    if (!store_state(path, id, next, errp)) {
        return false;
    }
    *inc = next;
    return true;
}
