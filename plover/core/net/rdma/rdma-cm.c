/*
 * Small rdma_cm helpers shared by the RDMA transport and the bulk link.
 */
#include "net/rdma/rdma-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int plv_rdma_sockaddr(const char *host, uint16_t port,
                      struct sockaddr_storage *ss, GError **err)
{
    char ps[8];
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV }, *res;
    snprintf(ps, sizeof(ps), "%u", port);
    int r = getaddrinfo(host, ps, &hints, &res);
    if (r) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, MIN(res->ai_addrlen, sizeof(*ss)));
    freeaddrinfo(res);
    return 0;
}

struct rdma_event_channel *plv_rdma_event_channel(GError **err)
{
    struct rdma_event_channel *ec = rdma_create_event_channel();
    if (!ec) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "rdma_create_event_channel: %s (no RDMA device or "
                    "rdma_ucm not loaded?)", g_strerror(errno));
        return NULL;
    }
    int fl = fcntl(ec->fd, F_GETFL);
    if (fl < 0 || fcntl(ec->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO, "fcntl: %s",
                    g_strerror(errno));
        rdma_destroy_event_channel(ec);
        return NULL;
    }
    return ec;
}

struct rdma_cm_id *plv_rdma_listen_id(struct rdma_event_channel *ec,
                                      const char *host, uint16_t port,
                                      void *context, GError **err)
{
    struct sockaddr_storage ss;
    struct rdma_cm_id *id;
    if (plv_rdma_sockaddr(host, port, &ss, err) < 0) {
        return NULL;
    }
    if (rdma_create_id(ec, &id, context, RDMA_PS_TCP)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "rdma_create_id: %s", g_strerror(errno));
        return NULL;
    }
    if (rdma_bind_addr(id, (struct sockaddr *)&ss) || rdma_listen(id, 16)) {
        g_set_error(err, PLV_LINK_ERROR, PLV_LINK_ERROR_IO,
                    "rdma listen on %s:%u: %s (is there an RDMA device on "
                    "that address?)", host, port, g_strerror(errno));
        rdma_destroy_id(id);
        return NULL;
    }
    return id;
}

int plv_rdma_next_event(struct rdma_event_channel *ec, PlvRdmaCmEvent *ev)
{
    struct rdma_cm_event *e;
    if (rdma_get_cm_event(ec, &e)) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = e->event;
    ev->status = e->status;
    ev->id = e->id;
    ev->listen_id = e->listen_id;
    if (e->event == RDMA_CM_EVENT_CONNECT_REQUEST ||
        e->event == RDMA_CM_EVENT_ESTABLISHED) {
        ev->pdata_len = MIN(e->param.conn.private_data_len, sizeof(ev->pdata));
        if (e->param.conn.private_data) {
            memcpy(ev->pdata, e->param.conn.private_data, ev->pdata_len);
        } else {
            ev->pdata_len = 0;
        }
    }
    rdma_ack_cm_event(e);
    return 1;
}

void plv_rdma_conn_param(struct rdma_conn_param *cp, const uint8_t *pdata)
{
    memset(cp, 0, sizeof(*cp));
    cp->private_data = pdata;
    cp->private_data_len = PLV_RDMA_PDATA_LEN;
    cp->retry_count = 7;
    cp->rnr_retry_count = 7;    /* 7: retry forever while receives are reposted */
}
