/*
 * plover/sockutil.h — small socket and deadline helpers shared by the link
 * and the transports (one place for address resolution and socket options).
 */
#ifndef PLOVER_SOCKUTIL_H
#define PLOVER_SOCKUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Deadlines are g_get_monotonic_time() microseconds. */
#define PLV_DEADLINE_NONE INT64_MAX

/* Deadline @timeout_ms from now; < 0 means none. */
int64_t plv_deadline_from_timeout(int timeout_ms);
/* Milliseconds left (rounded up) for poll(): -1 if no deadline, >= 0 else. */
int plv_deadline_remaining_ms(int64_t deadline);

/*
 * Non-blocking, close-on-exec TCP socket with connect() started to host:port.
 * Returns the fd (connection possibly still in progress) or -1.
 */
int plv_sock_connect_start(const char *host, uint16_t port, GError **err);
/* Wait for a started connect to finish: 0 connected, -1 failed/timed out. */
int plv_sock_connect_wait(int fd, int timeout_ms, GError **err);
/* Result of a finished non-blocking connect (SO_ERROR): 0 or an errno. */
int plv_sock_connect_result(int fd);

/* Non-blocking, close-on-exec listening socket; port 0 picks a free one. */
int plv_sock_listen(const char *host, uint16_t port, GError **err);
uint16_t plv_sock_local_port(int fd);

/* Options every plover TCP connection gets (TCP_NODELAY, keepalive). */
void plv_sock_tune(int fd);

/*
 * The addresses a set of host names resolve to, for telling a configured
 * peer's connection from a stranger's before it costs anything. Compares
 * IP addresses only (ports differ per connection); an IPv4 peer matches
 * its IPv4-mapped IPv6 form too. Hosts that do not resolve are skipped
 * and named in *unresolved (may be NULL).
 */
typedef struct PlvAddrSet PlvAddrSet;

PlvAddrSet *plv_addr_set_new(const char *const *hosts, unsigned n_hosts,
                             GString *unresolved);
bool plv_addr_set_contains(const PlvAddrSet *set, const void *sockaddr,
                           unsigned sockaddr_len);
void plv_addr_set_free(PlvAddrSet *set);
/* True if both socket addresses carry the same IP address. */
bool plv_sockaddr_same_ip(const void *a, unsigned alen, const void *b, unsigned blen);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_SOCKUTIL_H */
