/*
 * plover/sockutil.h — small socket and deadline helpers shared by the link
 * and the transports (one place for address resolution and socket options).
 */
#ifndef PLOVER_SOCKUTIL_H
#define PLOVER_SOCKUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

struct sockaddr;

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

/* An IP address without its port: what a connection's source is told by. */
typedef struct PlvIpAddr {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t bytes[16];          /* 4 or 16 of them, network order */
} PlvIpAddr;

/* @sa's address, an IPv4-mapped IPv6 one as IPv4 (what a dual-stack
 * listener reports for IPv4 clients); false if @sa is not IP. */
bool plv_ip_addr_from_sockaddr(const struct sockaddr *sa, PlvIpAddr *out);
bool plv_ip_addr_equal(const PlvIpAddr *a, const PlvIpAddr *b);
/* @a as text (inet_ntop) into @buf of @len (>= 46) bytes; "?" if unset. */
void plv_ip_addr_format(const PlvIpAddr *a, char *buf, size_t len);

/*
 * The addresses of a set of hosts: which sources may be peers. Hosts are
 * added as given and resolved once, by plv_addr_set_resolve() (blocking).
 * Until then, or if a host does not resolve (with a warning), the set
 * cannot tell and contains every address: better a stranger gets a
 * handshake than a replica is locked out.
 */
typedef struct PlvAddrSet PlvAddrSet;
PlvAddrSet *plv_addr_set_new(void);
void plv_addr_set_add_host(PlvAddrSet *s, const char *host);
void plv_addr_set_resolve(PlvAddrSet *s);
bool plv_addr_set_contains(const PlvAddrSet *s, const PlvIpAddr *a);
void plv_addr_set_free(PlvAddrSet *s);

#ifdef __cplusplus
}
#endif

#endif /* PLOVER_SOCKUTIL_H */
