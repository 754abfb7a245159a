/*
 * upcall.c - the channel that carries frames from the engine to the
 * control plane (Open vSwitch's upcall path, kept small): capture copies,
 * frames an interface claims for a protocol (LACP), sampled frames.
 *
 * One ring of bytes, preallocated with the datapath, so a frame is queued
 * with one copy and no allocation.  A record is a struct vs_upcall followed
 * by up to snaplen bytes of the frame, padded to 8 bytes; a record never
 * wraps: when it does not fit before the end of the ring, the rest of the
 * ring is skipped (marked by a PAD header when there is room for one).
 * Variable-length records let the same 4 MiB hold ~30000 small frames or
 * ~60 whole 64 KB GSO frames, which fixed slots could not.
 *
 * Producers hold dp->lock already (the forwarding thread, or a control call
 * that forwards: vs_dp_inject); the queue's own lock orders them against
 * the consumer, Python's vs_upcall_recv(), which takes only that lock.  The
 * eventfd is readable exactly while the ring holds records: written when a
 * record lands in an empty ring, read back when the ring is emptied, both
 * under the queue lock.  So a steady stream costs no system call per frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PAD_REASON UINT32_MAX
#define HDR ((uint32_t)sizeof(struct vs_upcall))

_Static_assert(sizeof(struct vs_upcall) % 8 == 0, "upcall header keeps records aligned");
_Static_assert((VS_UPCALL_QUEUE_BYTES & (VS_UPCALL_QUEUE_BYTES - 1)) == 0,
               "ring size is a power of two");

static inline uint32_t align8(uint32_t n) { return (n + 7u) & ~7u; }

/* Capture copies and samples may use this much of the ring; protocol frames
 * all of it, so a capture that Python cannot keep up with never costs LACP
 * a PDU. */
static inline uint32_t room_for(const struct vs_upcall_queue *q, uint32_t reason)
{
    return reason == VS_UPCALL_SLOW_PROTO ? q->size : q->size / 4 * 3;
}

int vs_upcall_init(struct vs_upcall_queue *q)
{
    memset(q, 0, sizeof *q);
    q->size = VS_UPCALL_QUEUE_BYTES;
    q->ring = malloc(q->size);
    q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!q->ring || q->fd < 0) {
        free(q->ring);
        if (q->fd >= 0)
            close(q->fd);
        q->ring = NULL;
        q->fd = -1;
        return -ENOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    q->stats.capacity_bytes = q->size;
    return 0;
}

void vs_upcall_destroy(struct vs_upcall_queue *q)
{
    if (!q->ring)
        return;
    close(q->fd);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    q->ring = NULL;
}

static void signal_ready(struct vs_upcall_queue *q)
{
    if (q->signalled)
        return;
    uint64_t one = 1;
    ssize_t r = write(q->fd, &one, sizeof one);
    (void)r;   /* a full counter is still readable: nothing is lost */
    q->signalled = true;
}

static void reset_ready(struct vs_upcall_queue *q)
{
    if (!q->signalled)
        return;
    uint64_t v;
    ssize_t r = read(q->fd, &v, sizeof v);
    (void)r;
    q->signalled = false;
}

static void copy_frame(uint8_t *dst, const struct iovec *iov, int iovcnt,
                       uint32_t skip, uint32_t n)
{
    for (int i = 0; i < iovcnt && n; i++) {
        const uint8_t *p = iov[i].iov_base;
        uint32_t len = (uint32_t)iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        p += skip;
        len -= skip;
        skip = 0;
        uint32_t k = len < n ? len : n;
        memcpy(dst, p, k);
        dst += k;
        n -= k;
    }
}

bool vs_upcall_put(struct vs_dp *dp, struct vs_upcall *meta,
                   const struct iovec *iov, int iovcnt, uint32_t skip,
                   uint32_t snaplen)
{
    struct vs_upcall_queue *q = &dp->upq;
    uint32_t reason = meta->reason < VS_UPCALL_SLOTS ? meta->reason : VS_UPCALL_SLOTS - 1;
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    total = total > skip ? total - skip : 0;
    if (total > VS_MAX_FRAME)
        total = VS_MAX_FRAME;
    meta->orig_len = (uint32_t)total;
    meta->len = meta->orig_len < snaplen ? meta->orig_len : snaplen;
    meta->reserved = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    meta->time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

    uint32_t need = align8(HDR + meta->len);
    pthread_mutex_lock(&q->lock);
    uint32_t pos = (uint32_t)(q->tail & (q->size - 1));
    uint32_t to_end = q->size - pos;
    uint32_t pad = need > to_end ? to_end : 0;
    uint64_t used = q->tail - q->head;
    if (used + pad + need > room_for(q, reason)) {
        q->stats.dropped[reason]++;
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    if (pad) {
        if (pad >= HDR) {
            struct vs_upcall mark = {.reason = PAD_REASON};
            memcpy(q->ring + pos, &mark, HDR);
        }
        q->tail += pad;
        pos = 0;
    }
    memcpy(q->ring + pos, meta, HDR);
    copy_frame(q->ring + pos + HDR, iov, iovcnt, skip, meta->len);
    q->tail += need;
    q->count++;
    q->stats.queued[reason]++;
    signal_ready(q);
    pthread_mutex_unlock(&q->lock);
    return true;
}

int vs_upcall_recv(vs_dp *dp, struct vs_upcall *meta, uint8_t *buf,
                   uint32_t buflen)
{
    struct vs_upcall_queue *q = &dp->upq;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        if (q->head == q->tail) {
            reset_ready(q);
            pthread_mutex_unlock(&q->lock);
            return 0;
        }
        uint32_t pos = (uint32_t)(q->head & (q->size - 1));
        uint32_t to_end = q->size - pos;
        if (to_end < HDR) {
            q->head += to_end;       /* too little room for even a PAD mark */
            continue;
        }
        memcpy(meta, q->ring + pos, HDR);
        if (meta->reason == PAD_REASON) {
            q->head += to_end;
            continue;
        }
        uint32_t n = meta->len < buflen ? meta->len : buflen;
        if (n)
            memcpy(buf, q->ring + pos + HDR, n);
        q->head += align8(HDR + meta->len);
        meta->len = n;
        q->count--;
        if (q->head == q->tail)
            reset_ready(q);
        pthread_mutex_unlock(&q->lock);
        return 1;
    }
}

int vs_upcall_fd(vs_dp *dp) { return dp->upq.fd; }

int vs_upcall_stats(vs_dp *dp, struct vs_upcall_stats *out)
{
    struct vs_upcall_queue *q = &dp->upq;
    pthread_mutex_lock(&q->lock);
    *out = q->stats;
    out->pending = q->count;
    out->pending_bytes = (uint32_t)(q->tail - q->head);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

/* --- producers in the forwarding path ---------------------------------------- */

static void fill(struct vs_dp *dp, struct vs_upcall *m, uint32_t reason,
                 const struct vs_iface *ifc, uint32_t direction)
{
    memset(m, 0, sizeof *m);
    m->reason = reason;
    m->port = ifc->port;
    m->bridge = dp->ports[ifc->port].bridge;
    m->iface = (int32_t)(ifc - dp->ifaces);
    m->direction = direction;
}

void vs_upcall_capture_rx(struct vs_dp *dp, struct vs_iface *in,
                          const struct vs_pkt *pkts, int n)
{
    struct vs_upcall m;
    for (int i = 0; i < n; i++) {
        struct iovec iov = {.iov_base = pkts[i].data, .iov_len = pkts[i].len};
        fill(dp, &m, VS_UPCALL_CAPTURE, in, VS_UPCALL_RX);
        vs_upcall_put(dp, &m, &iov, 1, 0, in->capture);
    }
}

void vs_upcall_capture_tx(struct vs_dp *dp, struct vs_iface *out,
                          const struct iovec *iov, int iovcnt, uint32_t skip)
{
    struct vs_upcall m;
    fill(dp, &m, VS_UPCALL_CAPTURE, out, VS_UPCALL_TX);
    vs_upcall_put(dp, &m, iov, iovcnt, skip, out->capture);
}

void vs_upcall_claimed(struct vs_dp *dp, struct vs_iface *in,
                       const struct vs_pkt *pkt)
{
    struct vs_upcall m;
    struct iovec iov = {.iov_base = pkt->data, .iov_len = pkt->len};
    in->stats.rx_upcall++;
    if (dp->trace) {
        vs_trace_step(dp, VS_TRACE_CLAIMED, (int)in->claim, 0, 0);
        return;
    }
    fill(dp, &m, VS_UPCALL_SLOW_PROTO, in, VS_UPCALL_RX);
    vs_upcall_put(dp, &m, &iov, 1, 0, VS_MAX_FRAME);
}

/* --- control calls (datapath lock) ---------------------------------------------- */

static int set_claim_locked(struct vs_dp *dp, int i, uint32_t claims)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    if (claims & ~(uint32_t)VS_CLAIM_LACP)
        return -EINVAL;
    ifc->claim = claims;
    return 0;
}

int vs_iface_set_claim(vs_dp *dp, int i, uint32_t claims)
{
    LOCKED(set_claim_locked(dp, i, claims));
}

static int set_capture_locked(struct vs_dp *dp, int i, uint32_t snaplen)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    ifc->capture = snaplen > VS_MAX_FRAME ? VS_MAX_FRAME : snaplen;
    return 0;
}

int vs_iface_set_capture(vs_dp *dp, int i, uint32_t snaplen)
{
    LOCKED(set_capture_locked(dp, i, snaplen));
}
