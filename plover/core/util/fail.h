/*
 * plover/core internal: set a GError and return false, in one statement,
 * for the validation code whose every branch ends in an error message.
 */
#ifndef PLOVER_CORE_FAIL_H
#define PLOVER_CORE_FAIL_H

#include <stdbool.h>
#include <glib.h>

bool plv_fail(GError **errp, GQuark domain, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

#endif /* PLOVER_CORE_FAIL_H */
