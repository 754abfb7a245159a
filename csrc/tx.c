/*
 * tx.c - writing frames out.
 *
 * A TAP takes one frame per write() (it has no sendmmsg), and writing into
 * it runs the receiving namespace's stack at once, so TAP output is written
 * immediately.  An AF_PACKET socket does take sendmmsg(): while a batch is
 * being forwarded (dp->stage_tx), its frames wait in a small queue and
 * leave together, one system call per interface per batch, in order.  The
 * queue holds copies of the virtio-net header and the VLAN tag; the frame
 * bytes stay in the receive buffers, which is why forward.c flushes before
 * the batch's buffers are reused and before it changes a buffer in place.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static inline void count_tx(struct vs_iface *out, uint32_t len)
{
    out->stats.tx_packets++;
    out->stats.tx_bytes += len;
}

/* A write the kernel refused.  A TAP whose device is administratively down
 * answers EIO, an AF_PACKET socket on a down device ENETDOWN: those frames
 * met an interface that is down, not a failed write. */
static inline void count_tx_refused(struct vs_iface *out, int err)
{
    bool down = err == ENETDOWN || (err == EIO && out->kind == VS_IFACE_FD);
    out->stats.drops[down ? VS_DROP_IFACE_DOWN : VS_DROP_TX_ERROR]++;
}

int vs_iface_write(struct vs_dp *dp, struct vs_iface *out,
                   const struct vs_vnet_hdr *vnet, struct iovec *iov,
                   int iovcnt, uint32_t frame_len)
{
    struct iovec v[5];
    struct vs_vnet_hdr zero;
    int k = 0;
    if (out->vnet) {
        if (!vnet) {
            memset(&zero, 0, sizeof zero);
            vnet = &zero;
        }
        v[k].iov_base = (void *)vnet;
        v[k].iov_len = VS_VNET_HDR_LEN;
        k++;
    }
    for (int i = 0; i < iovcnt && k < 5; i++)
        v[k++] = iov[i];
    if (dp->dry_run) {
        count_tx(out, frame_len);
        return 0;
    }
    ssize_t r;
    do {
        r = writev(out->fd, v, k);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno;
        count_tx_refused(out, err);
        return -err;
    }
    count_tx(out, frame_len);
    if (out->capture)
        vs_upcall_capture_tx(dp, out, v, k, out->vnet ? VS_VNET_HDR_LEN : 0);
    return 0;
}

void vs_tx(struct vs_dp *dp, struct vs_iface *out,
           const struct vs_vnet_hdr *vnet, const struct vs_parts *fp)
{
    uint32_t len = fp->head_len + (fp->tag ? 4 : 0) + fp->tail_len;
    if (!(dp->stage_tx && out->kind == VS_IFACE_PACKET)) {
        struct iovec iov[3];
        int n = 0;
        iov[n].iov_base = (void *)fp->head;
        iov[n++].iov_len = fp->head_len;
        if (fp->tag) {
            iov[n].iov_base = (void *)fp->tag;
            iov[n++].iov_len = 4;
        }
        if (fp->tail_len) {
            iov[n].iov_base = (void *)fp->tail;
            iov[n++].iov_len = fp->tail_len;
        }
        vs_iface_write(dp, out, vnet, iov, n, len);
        return;
    }
    if (dp->ntx == VS_TXQ)
        vs_tx_flush(dp);
    struct vs_txent *e = &dp->txq[dp->ntx++];
    e->iface = (uint16_t)(out - dp->ifaces);
    e->len = len;
    int n = 0;
    if (out->vnet) {
        if (vnet)
            e->hdr = *vnet;
        else
            memset(&e->hdr, 0, sizeof e->hdr);
        e->iov[n].iov_base = &e->hdr;
        e->iov[n++].iov_len = VS_VNET_HDR_LEN;
    }
    e->iov[n].iov_base = (void *)fp->head;
    e->iov[n++].iov_len = fp->head_len;
    if (fp->tag) {
        memcpy(e->tag, fp->tag, 4);
        e->iov[n].iov_base = e->tag;
        e->iov[n++].iov_len = 4;
    }
    if (fp->tail_len) {
        e->iov[n].iov_base = (void *)fp->tail;
        e->iov[n++].iov_len = fp->tail_len;
    }
    e->niov = (uint8_t)n;
}

/* Send the queued frames of one interface; a frame the kernel refuses is
 * counted and skipped, the rest still go. */
static void send_queued(struct vs_dp *dp, struct vs_iface *out,
                        struct mmsghdr *msgs, const uint32_t *lens, int m)
{
    if (dp->dry_run) {
        for (int i = 0; i < m; i++)
            count_tx(out, lens[i]);
        return;
    }
    int sent = 0;
    while (sent < m) {
        int r = sendmmsg(out->fd, msgs + sent, (unsigned)(m - sent), MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            count_tx_refused(out, errno);
            sent++;
            continue;
        }
        for (int i = sent; i < sent + r; i++) {
            count_tx(out, lens[i]);
            if (out->capture)
                vs_upcall_capture_tx(dp, out, msgs[i].msg_hdr.msg_iov,
                                     (int)msgs[i].msg_hdr.msg_iovlen,
                                     out->vnet ? VS_VNET_HDR_LEN : 0);
        }
        sent += r;
    }
}

void vs_tx_flush(struct vs_dp *dp)
{
    int n = dp->ntx;
    if (n == 0)
        return;
    bool done[VS_TXQ] = {false};
    struct mmsghdr msgs[VS_TXQ];
    uint32_t lens[VS_TXQ];
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        uint16_t ifc = dp->txq[i].iface;
        int m = 0;
        for (int j = i; j < n; j++) {
            struct vs_txent *e = &dp->txq[j];
            if (done[j] || e->iface != ifc)
                continue;
            memset(&msgs[m], 0, sizeof msgs[m]);
            msgs[m].msg_hdr.msg_iov = e->iov;
            msgs[m].msg_hdr.msg_iovlen = e->niov;
            lens[m] = e->len;
            m++;
            done[j] = true;
        }
        send_queued(dp, &dp->ifaces[ifc], msgs, lens, m);
    }
    dp->ntx = 0;
}
