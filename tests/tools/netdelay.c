/*
 * netdelay: delay (and optionally drop) the packets an iptables NFQUEUE
 * rule hands over, for tests on kernels without tc netem.
 *
 *   netdelay --queue N --delay-ms D [--jitter-ms J] [--loss PCT] [--seed S]
 *
 * Every packet queued to N is held D ms plus a uniform 0..J ms, then
 * accepted; PCT percent are dropped instead. The kernel keeps the packets;
 * this process only decides when to give the verdict, so what is delayed
 * is the real packet on the real path. Jitter does not reorder.
 *
 * It prints "netdelay: ready" once bound, and on SIGTERM/SIGINT accepts
 * everything still held and prints how many packets it delayed and dropped.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnfnetlink/libnfnetlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

/* More than the kernel's default of 1024: a burst of syncvm pages held for
 * tens of ms must not overflow the queue (an overflow drops). */
#define QUEUE_MAXLEN 65536
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define NETLINK_RCVBUF (64u << 20)

typedef struct {
    uint64_t due_ns;
    uint32_t id;
} Held;

typedef struct {
    struct nfq_q_handle *qh;
    Held *fifo;                 /* ring, in arrival order (due times never decrease) */
    size_t head, len, cap;
    uint64_t last_due_ns;
    uint64_t delay_ns, jitter_ns;
    double loss;
    uint64_t rng;
    uint64_t delayed, dropped;
} Delay;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t next_rand(Delay *d)
{
    /* xorshift64*: reproducible with --seed */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 2685821657736338717ull;
}

static void fifo_push(Delay *d, Held h)
{
    if (d->len == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 1024;
        Held *n = malloc(cap * sizeof(*n));

        if (!n) {
            fprintf(stderr, "netdelay: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < d->len; i++) {
            n[i] = d->fifo[(d->head + i) % d->cap];
        }
        free(d->fifo);
        d->fifo = n;
        d->cap = cap;
        d->head = 0;
    }
    d->fifo[(d->head + d->len++) % d->cap] = h;
}

static Held fifo_pop(Delay *d)
{
    Held h = d->fifo[d->head];

    d->head = (d->head + 1) % d->cap;
    d->len--;
    return h;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg,
                     struct nfq_data *nfa, void *opaque)
{
    Delay *d = opaque;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    uint32_t id;

    (void)msg;
    if (!ph) {
        return 0;
    }
    id = ntohl(ph->packet_id);
    if (d->loss > 0 && (double)(next_rand(d) % 1000000) < d->loss * 10000.0) {
        d->dropped++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    /* Jitter varies the delay but never reorders: a packet leaves no
     * earlier than the one before it (as on a real path; reordering would
     * make TCP see losses that did not happen). */
    d->last_due_ns = MAX(d->last_due_ns, now_ns() + d->delay_ns +
                         (d->jitter_ns ? next_rand(d) % (d->jitter_ns + 1) : 0));
    fifo_push(d, (Held){ .due_ns = d->last_due_ns, .id = id });
    return 0;
}

/* Accept every held packet due by `t` (all of them when t is UINT64_MAX). */
static void release_due(Delay *d, uint64_t t)
{
    while (d->len && d->fifo[d->head].due_ns <= t) {
        Held h = fifo_pop(d);
        if (nfq_set_verdict(d->qh, h.id, NF_ACCEPT, 0, NULL) < 0) {
            fprintf(stderr, "netdelay: verdict for packet %u: %s\n", h.id, strerror(errno));
        }
        d->delayed++;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: netdelay --queue N --delay-ms D [--jitter-ms J] [--loss PCT] [--seed S]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "queue", required_argument, NULL, 'q' },
        { "delay-ms", required_argument, NULL, 'd' },
        { "jitter-ms", required_argument, NULL, 'j' },
        { "loss", required_argument, NULL, 'l' },
        { "seed", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    Delay d = { .rng = 0x9e3779b97f4a7c15ull };
    long queue = -1;
    double delay_ms = -1, jitter_ms = 0;
    struct nfq_handle *h;
    char buf[65536 + 4096] __attribute__((aligned));
    struct sigaction sa = { .sa_handler = on_signal };
    int c, fd;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        switch (c) {
        case 'q': queue = strtol(optarg, &end, 10); break;
        case 'd': delay_ms = strtod(optarg, &end); break;
        case 'j': jitter_ms = strtod(optarg, &end); break;
        case 'l': d.loss = strtod(optarg, &end); break;
        case 's': d.rng = strtoull(optarg, &end, 0) | 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (errno || !end || *end) {
            fprintf(stderr, "netdelay: bad value '%s'\n", optarg);
            return 2;
        }
    }
    if (optind != argc || queue < 0 || queue > 65535 || delay_ms < 0 || delay_ms > 10000 ||
        jitter_ms < 0 || jitter_ms > 10000 || d.loss < 0 || d.loss > 100) {
        usage(stderr);
        return 2;
    }
    d.delay_ns = (uint64_t)(delay_ms * 1e6);
    d.jitter_ns = (uint64_t)(jitter_ms * 1e6);

    h = nfq_open();
    if (!h) {
        fprintf(stderr, "netdelay: nfq_open: %s\n", strerror(errno));
        return 1;
    }
    d.qh = nfq_create_queue(h, (uint16_t)queue, on_packet, &d);
    if (!d.qh) {
        fprintf(stderr, "netdelay: queue %ld: %s (is it bound by another process?)\n",
                queue, strerror(errno));
        return 1;
    }
    /* The verdict needs only the packet id: copy no payload. */
    if (nfq_set_mode(d.qh, NFQNL_COPY_META, 0) < 0 ||
        nfq_set_queue_maxlen(d.qh, QUEUE_MAXLEN) < 0) {
        fprintf(stderr, "netdelay: configuring queue %ld: %s\n", queue, strerror(errno));
        return 1;
    }
    /* Each queued packet is one netlink message; a burst (a syncvm's pages
     * in flight) must not overflow the socket, or the kernel drops the
     * message and its packet waits for a verdict that never comes. */
    nfnl_rcvbufsiz(nfq_nfnlh(h), NETLINK_RCVBUF);
    fd = nfq_fd(h);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("netdelay: ready (queue %ld, delay %.1f ms, jitter %.1f ms, loss %.2f%%)\n",
           queue, delay_ms, jitter_ms, d.loss);
    fflush(stdout);

    while (!stop) {
        uint64_t t = now_ns();
        int timeout = 100;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n = 0;

        release_due(&d, t);
        if (d.len) {
            uint64_t due = d.fifo[d.head].due_ns;
            uint64_t wait = due > t ? due - t : 0;
            timeout = (int)((wait + 999999) / 1000000);
        }
        if (poll(&pfd, 1, timeout) <= 0) {
            continue;
        }
        /* a bounded batch, so that due verdicts are not starved */
        for (int k = 0; k < 256 && (n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0; k++) {
            nfq_handle_packet(h, buf, (int)n);
        }
        if (n < 0 && errno == ENOBUFS) {
            /* the socket overflowed: the kernel dropped some; go on */
            fprintf(stderr, "netdelay: netlink receive buffer overflow\n");
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            fprintf(stderr, "netdelay: recv: %s\n", strerror(errno));
            break;
        }
    }
    release_due(&d, UINT64_MAX);
    printf("netdelay: delayed %" PRIu64 " dropped %" PRIu64 "\n", d.delayed, d.dropped);
    nfq_destroy_queue(d.qh);
    nfq_close(h);
    free(d.fifo);
    return 0;
}
