/*
 * The replicated NIC path: a net filter on the tap netdev.
 *
 * Input hook (packets the tap sends towards the guest): the leader submits
 * each one to consensus and returns at once; no replica hands a tap packet
 * to its guest directly. Committed inputs come back through
 * plover_net_inject(), in log order, on the leader and the secondary.
 *
 * Output guard (packets the guest sends): the leader holds them until the
 * syncvm that covers them completes, then sends them. The secondary holds
 * its own too, but only as long as they may become the replicated ones:
 * each syncvm it applies drops those it held (the leader's state replaced
 * the one that said them), and should it take over before the next
 * syncvm, its first syncvm as leader releases them (clients then need
 * not wait for a retransmission). A replica that does not execute drops
 * everything, so only one copy of the VM ever speaks.
 *
 * Everything runs on the main loop with the BQL held (tap reads, virtio
 * transmit and the consensus dispatch all do).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"
#include "system/runstate.h"
#include "net/filter.h"
#include "net/net.h"
#include "net/eth.h"
#include "plover/bytes.h"
#include "plover-state.h"
#include "trace.h"

#define TYPE_PLOVER_FILTER "plover-filter"
OBJECT_DECLARE_SIMPLE_TYPE(PloverFilter, PLOVER_FILTER)

struct PloverFilter {
    NetFilterState parent_obj;
};

/*
 * Bounds. Every queue here grows only while syncvms do not complete (a
 * stalled or failing secondary) or the guest does not read its NIC; past
 * a soft bound the leader asks for a syncvm, past a hard one
 * (max-held-output-kib, max-pending-input-kib) packets are dropped and
 * counted, as a congested link would drop them: the guest's and the
 * clients' transports retransmit. Memory stays bounded whatever the
 * network does.
 */
/* Held output beyond which the leader asks for a syncvm at once. */
#define PLOVER_OUTPUT_SYNC_BYTES (256 * 1024)
/* Held output beyond which a secondary (which cannot ask for a syncvm)
 * stops keeping it. */
#define PLOVER_SECONDARY_HOLD_BYTES (16 * 1024 * 1024)

static size_t plover_output_cap(const PloverState *s)
{
    size_t cap = (size_t)s->cfg.max_held_output_kib * 1024;

    return s->exec.role == PLV_ROLE_LEADER ? cap : MIN(cap, PLOVER_SECONDARY_HOLD_BYTES);
}

static size_t plover_output_sync_bytes(const PloverState *s)
{
    return MIN(PLOVER_OUTPUT_SYNC_BYTES, plover_output_cap(s) / 2);
}

/* Committed input the NIC has not taken, at most; past a quarter of it
 * the leader asks for a syncvm, which carries the queue to the secondary
 * and lets the output held meanwhile go. */
static size_t plover_input_cap(const PloverState *s)
{
    return (size_t)s->cfg.max_pending_input_kib * 1024;
}

/* Retry period while the guest NIC cannot take an input. */
#define PLOVER_INPUT_RETRY_NS (1 * SCALE_MS)

static PloverPacket *plover_packet_alloc(size_t len, unsigned flags)
{
    PloverPacket *p = g_malloc(sizeof(*p) + len);

    p->len = len;
    p->flags = flags;
    return p;
}

static PloverPacket *plover_packet_copy(const uint8_t *data, size_t len)
{
    PloverPacket *p = plover_packet_alloc(len, QEMU_NET_PACKET_FLAG_NONE);

    memcpy(p->data, data, len);
    return p;
}

static PloverPacket *plover_packet_new(const struct iovec *iov, int iovcnt,
                                       unsigned flags)
{
    size_t len = iov_size(iov, iovcnt);
    PloverPacket *p = plover_packet_alloc(len, flags);

    iov_to_buf(iov, iovcnt, 0, p->data, len);
    return p;
}

static bool plover_is_acting_leader(const PloverState *s)
{
    return s->exec.role == PLV_ROLE_LEADER && s->exec.executing;
}

/*
 * A replica that led until recently still gets the guest's traffic until
 * the segment learns (from the new leader's announcement) where the MAC
 * now is; dropping it would cost each client a TCP retransmission timeout.
 * Within a short window it forwards frames addressed to the guest's MAC to
 * the leader. Only unicast to the guest: broadcasts reach the leader's own
 * tap too, and must not be submitted twice.
 */
void plover_net_forward_for_a_while(PloverState *s)
{
    s->net.forward_until_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                          PLOVER_FORWARD_WINDOW_MS * SCALE_MS;
}

static bool plover_should_forward(PloverState *s, const struct iovec *iov, int iovcnt)
{
    NICState *nic;
    uint8_t dst[ETH_ALEN];
    int off;

    if (qemu_clock_get_ns(QEMU_CLOCK_REALTIME) >= s->net.forward_until_ns ||
        !s->net.nc->peer || s->net.nc->peer->info->type != NET_CLIENT_DRIVER_NIC) {
        return false;
    }
    nic = qemu_get_nic(s->net.nc->peer);
    off = qemu_get_vnet_hdr_len(s->net.nc);
    return iov_to_buf(iov, iovcnt, off, dst, ETH_ALEN) == ETH_ALEN &&
           memcmp(dst, nic->conf->macaddr.a, ETH_ALEN) == 0;
}

static ssize_t plover_filter_receive_iov(NetFilterState *nf,
                                         NetClientState *sender,
                                         unsigned flags,
                                         const struct iovec *iov,
                                         int iovcnt,
                                         NetPacketSent *sent_cb)
{
    PloverState *s = plover_state();
    size_t size = iov_size(iov, iovcnt);

    if (sender == nf->netdev) {
        /* From the tap: an input. It reaches a guest only once committed. */
        bool lead = plover_is_acting_leader(s);

        if (lead || plover_should_forward(s, iov, iovcnt)) {
            g_autofree PloverPacket *p = plover_packet_new(iov, iovcnt, flags);
            int r = lead ? plv_driver_submit(s->driver, p->data, p->len)
                         : plv_driver_forward(s->driver, p->data, p->len);

            if (r < 0) {
                /* Back-pressure or a leadership change: the sender's
                 * transport retransmits, as after any packet loss. */
                s->net.inputs_refused++;
            } else if (lead) {
                s->net.inputs_submitted++;
            } else {
                s->net.inputs_forwarded++;
            }
        } else {
            s->net.inputs_ignored++;
        }
        return size;
    }

    /* From the guest: an output. */
    if (!s->exec.executing) {
        s->net.outputs_dropped++;
    } else if (s->net.outputs_bytes && s->net.outputs_bytes + size > plover_output_cap(s)) {
        /* (An empty queue takes any packet, however large: a cap below
         * one GSO frame must not block the guest for good.) */
        s->net.outputs_dropped++;
        s->net.outputs_over_cap++;
    } else {
        g_queue_push_tail(&s->net.outputs, plover_packet_new(iov, iovcnt, flags));
        qatomic_set(&s->net.outputs_bytes, s->net.outputs_bytes + size);
        s->net.outputs_peak_bytes = MAX(s->net.outputs_peak_bytes, s->net.outputs_bytes);
    }
    if (s->net.outputs_bytes >= plover_output_sync_bytes(s) && s->exec.role == PLV_ROLE_LEADER) {
        s->net.size_triggers += plover_request_syncvm(s, "output");
    }
    return size;
}

static void plover_net_flush_inputs(PloverState *s)
{
    NetFilterState *nf;

    if (!s->net.filter) {
        return;     /* shutting down: the NIC path is gone */
    }
    nf = NETFILTER(s->net.filter);
    while (!g_queue_is_empty(&s->net.inputs)) {
        PloverPacket *p;
        struct iovec iov;

        if (!runstate_is_running() || !s->net.nc->peer ||
            !qemu_can_receive_packet(s->net.nc->peer)) {
            timer_mod(s->net.input_retry,
                      qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + PLOVER_INPUT_RETRY_NS);
            return;
        }
        p = g_queue_pop_head(&s->net.inputs);
        s->net.inputs_bytes -= p->len;
        iov.iov_base = p->data;
        iov.iov_len = p->len;
        /* Past every filter after ours, to the NIC, as the tap would. */
        qemu_netfilter_pass_to_next(s->net.nc, QEMU_NET_PACKET_FLAG_NONE, &iov, 1, nf);
        s->net.inputs_injected++;
        g_free(p);
    }
}

static void plover_input_retry(void *opaque)
{
    plover_net_flush_inputs(opaque);
}

void plover_net_inject(PloverState *s, const uint8_t *pkt, size_t len)
{
    size_t before = s->net.inputs_bytes, soft = plover_input_cap(s) / 4;

    if (s->net.inputs_bytes && s->net.inputs_bytes + len > plover_input_cap(s)) {
        s->net.inputs_over_cap++;
    } else {
        g_queue_push_tail(&s->net.inputs, plover_packet_copy(pkt, len));
        s->net.inputs_bytes += len;
    }
    /* Once as the level is crossed: a guest that does not read its NIC
     * keeps the queue up, and a syncvm per packet would only slow it. */
    if (before < soft && s->net.inputs_bytes >= soft && s->exec.role == PLV_ROLE_LEADER) {
        s->net.size_triggers += plover_request_syncvm(s, "input");
    }
    plover_net_flush_inputs(s);
}

void plover_net_clear_inputs(PloverState *s)
{
    g_queue_clear_full(&s->net.inputs, g_free);
    s->net.inputs_bytes = 0;
}

void plover_net_release_outputs(PloverState *s, size_t count)
{
    NetFilterState *nf;

    if (!s->net.filter) {
        return;
    }
    nf = NETFILTER(s->net.filter);
    while (count-- && !g_queue_is_empty(&s->net.outputs)) {
        PloverPacket *p = g_queue_pop_head(&s->net.outputs);
        struct iovec iov = { .iov_base = p->data, .iov_len = p->len };

        qatomic_set(&s->net.outputs_bytes, s->net.outputs_bytes - p->len);
        if (s->net.nc->peer) {
            qemu_netfilter_pass_to_next(s->net.nc->peer, p->flags, &iov, 1, nf);
        }
        s->net.outputs_released++;
        g_free(p);
    }
}

void plover_net_drop_outputs(PloverState *s)
{
    s->net.outputs_dropped += g_queue_get_length(&s->net.outputs);
    g_queue_clear_full(&s->net.outputs, g_free);
    qatomic_set(&s->net.outputs_bytes, 0);
}

/*
 * Inputs committed but not yet taken by the guest NIC are part of the
 * replicated state: they travel with the device state, so that the
 * secondary's queue becomes the leader's. Format: u32 count, then per
 * packet u32 length and the bytes (little endian).
 */
void plover_net_save_inputs(PloverState *s, GByteArray *out)
{
    plv_append_u32(out, g_queue_get_length(&s->net.inputs));
    for (GList *l = s->net.inputs.head; l; l = l->next) {
        PloverPacket *p = l->data;

        plv_append_u32(out, p->len);
        g_byte_array_append(out, p->data, p->len);
    }
}

bool plover_net_load_inputs(PloverState *s, const uint8_t *p, size_t len)
{
    PlvReader rd = plv_reader(p, len);
    GQueue q = G_QUEUE_INIT;
    size_t bytes = 0;
    uint32_t n;

    if (!plv_read_u32(&rd, &n)) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *pkt;
        uint32_t plen;

        if (!plv_read_u32(&rd, &plen) || !plv_read_bytes(&rd, plen, &pkt)) {
            g_queue_clear_full(&q, g_free);
            return false;
        }
        g_queue_push_tail(&q, plover_packet_copy(pkt, plen));
        bytes += plen;
    }
    if (plv_reader_left(&rd)) {
        g_queue_clear_full(&q, g_free);
        return false;
    }
    plover_net_clear_inputs(s);
    s->net.inputs = q;
    s->net.inputs_bytes = bytes;
    return true;
}

bool plover_net_setup(PloverState *s, Error **errp)
{
    Object *obj;

    s->net.nc = qemu_find_netdev(s->cfg.netdev);
    g_queue_init(&s->net.inputs);
    g_queue_init(&s->net.outputs);
    s->net.input_retry = timer_new_ns(QEMU_CLOCK_REALTIME, plover_input_retry, s);
    /* First in the chain: nothing may see a tap packet before consensus. */
    obj = object_new_with_props(TYPE_PLOVER_FILTER, object_get_objects_root(),
                                "plover-filter", errp,
                                "netdev", s->cfg.netdev,
                                "queue", "all",
                                "position", "head",
                                NULL);
    if (!obj) {
        return false;
    }
    /* The objects root holds the only reference. */
    s->net.filter = PLOVER_FILTER(obj);
    return true;
}

/*
 * QEMU deletes net filters early in its shutdown, while the main loop may
 * still dispatch consensus outputs: from here on nothing is injected or
 * released, and the replica stops taking consensus outputs.
 */
static void plover_filter_cleanup(NetFilterState *nf)
{
    PloverState *s = plover_state();

    if (s->net.filter != PLOVER_FILTER(nf)) {
        return;
    }
    s->net.filter = NULL;
    timer_del(s->net.input_retry);
    if (s->driver) {
        qemu_set_fd_handler(plv_driver_event_fd(s->driver), NULL, NULL, NULL);
    }
}

static void plover_filter_class_init(ObjectClass *oc, void *data)
{
    NetFilterClass *nfc = NETFILTER_CLASS(oc);

    nfc->receive_iov = plover_filter_receive_iov;
    nfc->cleanup = plover_filter_cleanup;
}

static const TypeInfo plover_filter_info = {
    .name = TYPE_PLOVER_FILTER,
    .parent = TYPE_NETFILTER,
    .class_init = plover_filter_class_init,
    .instance_size = sizeof(PloverFilter),
};

static void plover_filter_register_types(void)
{
    type_register_static(&plover_filter_info);
}

type_init(plover_filter_register_types);
