/*
 * plover/core internal: plv_fail() (fail.h).
 */
#include "util/fail.h"

bool plv_fail(GError **errp, GQuark domain, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (errp) {
        *errp = g_error_new_valist(domain, 0, fmt, ap);
    }
    va_end(ap);
    return false;
}
