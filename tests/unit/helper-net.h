/*
 * Loopback helpers shared by the network unit tests.
 */
#ifndef PLOVER_TEST_HELPER_NET_H
#define PLOVER_TEST_HELPER_NET_H

#include <stdint.h>

#include "plover/link.h"

/* A plain blocking TCP connection to 127.0.0.1:@port (no handshake), or -1. */
int plv_test_raw_connect(uint16_t port);
/* The same from source address @src (any of 127.0.0.0/8 is local). */
int plv_test_raw_connect_from(const char *src, uint16_t port);

/* @rounds small frames over a link pair, alternately @a to @b and @b to
 * @a, each received within @timeout_ms with its type and bytes. */
void plv_test_link_exchange(PlvLink *a, PlvLink *b, int rounds, int timeout_ms);

#endif
