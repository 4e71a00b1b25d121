/*
 * The replica of this QEMU process, shared by the glue's files.
 *
 * QEMU runs one VM per process and -plover may be given once, so the glue
 * keeps one PloverState; plover/core itself has no global state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PLOVER_QEMU_STATE_H
#define PLOVER_QEMU_STATE_H

#include "plover/config.h"
#include "qapi/qapi-types-plover.h"

typedef struct PloverState {
    bool configured;          /* -plover was given and parsed */
    bool initialized;         /* plover_init() resolved netdev and secret */
    PlvConfig cfg;
    uint8_t *secret;          /* contents of the -object secret */
    size_t secret_len;
    PloverRole role;
    uint64_t vid;
    uint64_t epoch;
    uint64_t n_err;
} PloverState;

PloverState *plover_state(void);

#endif
