/*
 * Loopback helpers shared by the network unit tests.
 */
#include "helper-net.h"

#include <check.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int plv_test_raw_connect(uint16_t port)
{
    return plv_test_raw_connect_from(NULL, port);
}

int plv_test_raw_connect_from(const char *src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    struct sockaddr_in from = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd >= 0 && src) {
        inet_pton(AF_INET, src, &from.sin_addr);
        if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
            close(fd);
            return -1;
        }
    }
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void plv_test_link_exchange(PlvLink *a, PlvLink *b, int rounds, int timeout_ms)
{
    GByteArray *pl = g_byte_array_new();
    uint16_t type;
    for (int i = 0; i < rounds; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "message %d", i);
        struct iovec iov[2] = { { msg, 4 }, { msg + 4, n - 4 } };
        ck_assert_int_eq(plv_link_send(i % 2 ? a : b, i, iov, 2, NULL), 0);
        ck_assert_int_eq(plv_link_recv(i % 2 ? b : a, &type, pl, timeout_ms, NULL), 0);
        ck_assert_uint_eq(type, i);
        ck_assert_uint_eq(pl->len, n);
        ck_assert_mem_eq(pl->data, msg, n);
    }
    g_byte_array_unref(pl);
}
