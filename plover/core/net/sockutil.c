/*
 * Socket and deadline helpers (see plover/sockutil.h).
 */
#include "plover/sockutil.h"
#include "plover/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int64_t plv_deadline_from_timeout(int timeout_ms)
{
    if (timeout_ms < 0) {
        return PLV_DEADLINE_NONE;
    }
    return g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
}

int plv_deadline_remaining_ms(int64_t deadline)
{
    if (deadline == PLV_DEADLINE_NONE) {
        return -1;
    }
    int64_t left = deadline - g_get_monotonic_time();
    if (left <= 0) {
        return 0;
    }
    return (int)MIN((left + 999) / 1000, (int64_t)G_MAXINT);
}

static struct addrinfo *resolve(const char *host, uint16_t port, bool passive,
                                GError **err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    char portstr[8];
    struct addrinfo *res = NULL;
    snprintf(portstr, sizeof(portstr), "%u", port);
    int r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "cannot resolve %s:%u: %s", host ? host : "*", port,
                    gai_strerror(r));
        return NULL;
    }
    return res;
}

void plv_sock_tune(int fd)
{
    int one = 1;
    /* Consensus messages are small and latency-bound: never Nagle them. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/*
 * Try each address of host:port with a fresh non-blocking socket until
 * @setup (connect or bind+listen) accepts one. Returns the fd or -1.
 */
static int sock_open(const char *host, uint16_t port, bool passive,
                     int (*setup)(int fd, const struct addrinfo *ai),
                     const char *what, GError **err)
{
    struct addrinfo *res = resolve(host, port, passive, err);
    if (!res) {
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (setup(fd, ai) == 0) {
            break;
        }
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "%s %s:%u: %s",
                    what, host ? host : "*", port, g_strerror(e));
    }
    return fd;
}

static int setup_connect(int fd, const struct addrinfo *ai)
{
    plv_sock_tune(fd);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
        return 0;
    }
    return -1;
}

int plv_sock_connect_start(const char *host, uint16_t port, GError **err)
{
    return sock_open(host, port, false, setup_connect, "connect to", err);
}

int plv_sock_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) {
        return errno;
    }
    return e;
}

int plv_sock_connect_wait(int fd, int timeout_ms, GError **err)
{
    int64_t deadline = plv_deadline_from_timeout(timeout_ms);
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int r = poll(&pfd, 1, plv_deadline_remaining_ms(deadline));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "poll: %s",
                        g_strerror(errno));
            return -1;
        }
        if (r == 0) {
            g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_TIMED_OUT,
                        "connect timed out");
            return -1;
        }
        break;
    }
    int e = plv_sock_connect_result(fd);
    if (e) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "connect: %s",
                    g_strerror(e));
        return -1;
    }
    return 0;
}

static int setup_listen(int fd, const struct addrinfo *ai)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) {
        return 0;
    }
    return -1;
}

int plv_sock_listen(const char *host, uint16_t port, GError **err)
{
    return sock_open(host, port, true, setup_listen, "listen on", err);
}

uint16_t plv_sock_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

bool plv_ip_addr_from_sockaddr(const struct sockaddr *sa, PlvIpAddr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa && sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            out->family = AF_INET;
            memcpy(out->bytes, a6->s6_addr + 12, 4);
        } else {
            out->family = AF_INET6;
            memcpy(out->bytes, a6->s6_addr, 16);
        }
        return true;
    }
    return false;
}

void plv_ip_addr_format(const PlvIpAddr *a, char *buf, size_t len)
{
    if ((a->family != AF_INET && a->family != AF_INET6) ||
        !inet_ntop(a->family, a->bytes, buf, len)) {
        g_strlcpy(buf, "?", len);
    }
}

bool plv_ip_addr_equal(const PlvIpAddr *a, const PlvIpAddr *b)
{
    return a->family == b->family && !memcmp(a->bytes, b->bytes, sizeof(a->bytes));
}

struct PlvAddrSet {
    GPtrArray *hosts;           /* as given */
    GArray *addrs;              /* of PlvIpAddr, once resolved */
    bool resolved, any;         /* any: a host did not resolve */
};

PlvAddrSet *plv_addr_set_new(void)
{
    PlvAddrSet *s = g_new0(PlvAddrSet, 1);
    s->hosts = g_ptr_array_new_with_free_func(g_free);
    s->addrs = g_array_new(FALSE, FALSE, sizeof(PlvIpAddr));
    return s;
}

void plv_addr_set_add_host(PlvAddrSet *s, const char *host)
{
    g_ptr_array_add(s->hosts, g_strdup(host));
}

/* Every address of @host into s->addrs; false if it does not resolve. */
static bool add_addrs(PlvAddrSet *s, const char *host)
{
    GError *err = NULL;
    struct addrinfo *res = resolve(host, 0, false, &err);
    if (!res) {
        g_warning("plover: %s; accepting connections from any address",
                  err->message);
        g_error_free(err);
        return false;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        PlvIpAddr a;
        if (plv_ip_addr_from_sockaddr(ai->ai_addr, &a)) {
            g_array_append_val(s->addrs, a);
        }
    }
    freeaddrinfo(res);
    return true;
}

void plv_addr_set_resolve(PlvAddrSet *s)
{
    for (guint i = 0; i < s->hosts->len && !s->resolved; i++) {
        /* Leaving a host out would lock its replica out for good. */
        s->any = !add_addrs(s, g_ptr_array_index(s->hosts, i));
        if (s->any) {
            break;
        }
    }
    s->resolved = true;
}

bool plv_addr_set_contains(const PlvAddrSet *s, const PlvIpAddr *a)
{
    if (!s->resolved || s->any) {
        return true;
    }
    for (guint i = 0; i < s->addrs->len; i++) {
        if (plv_ip_addr_equal(&g_array_index(s->addrs, PlvIpAddr, i), a)) {
            return true;
        }
    }
    return false;
}

void plv_addr_set_free(PlvAddrSet *s)
{
    if (s) {
        g_ptr_array_unref(s->hosts);
        g_array_unref(s->addrs);
        g_free(s);
    }
}
