/*
 * io.c - reading a burst of frames from one interface.
 *
 * TAPs do not support recvmmsg (see KERNEL-NOTES.md), so a burst is reads
 * until EAGAIN or VS_BATCH frames, whichever comes first; AF_PACKET sockets
 * get one recvmmsg() per burst.  The budget keeps one busy interface from
 * starving the others (epoll is level-triggered, so what is left is
 * reported again at once).  The virtio-net header is
 * read into the frame's metadata by a separate iovec, so the Ethernet
 * header always starts VS_HEADROOM bytes into the buffer.
 */
#include <errno.h>
#include <linux/if_packet.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

void vs_iface_fail(struct vs_dp *dp, struct vs_iface *ifc)
{
    if (ifc->failed)
        return;
    ifc->failed = true;
    epoll_ctl(dp->epfd, EPOLL_CTL_DEL, ifc->fd, NULL);
    vs_notify(dp);
}

/* veth and most NICs strip the VLAN tag on receive and report it beside the
 * frame; put it back where it was so forwarding sees the frame as sent. */
static void restore_vlan_tag(struct vs_pkt *pkt, const struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)mh); c;
         c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
        if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA ||
            c->cmsg_len < CMSG_LEN(sizeof(struct tpacket_auxdata)))
            continue;
        struct tpacket_auxdata aux;
        memcpy(&aux, CMSG_DATA(c), sizeof aux);
        if (!(aux.tp_status & TP_STATUS_VLAN_VALID) || pkt->len < 12)
            return;
        uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID)
                            ? aux.tp_vlan_tpid
                            : TPID_8021Q;
        memmove(pkt->data - VLAN_HLEN_, pkt->data, 12);
        pkt->data -= VLAN_HLEN_;
        pkt->data[12] = (uint8_t)(tpid >> 8);
        pkt->data[13] = (uint8_t)tpid;
        pkt->data[14] = (uint8_t)(aux.tp_vlan_tci >> 8);
        pkt->data[15] = (uint8_t)aux.tp_vlan_tci;
        pkt->len += VLAN_HLEN_;
        if (pkt->vnet.flags & VNET_F_NEEDS_CSUM)
            pkt->vnet.csum_start += VLAN_HLEN_;
        if (pkt->vnet.hdr_len)
            pkt->vnet.hdr_len += VLAN_HLEN_;
        return;
    }
}

/* Read one frame from a TAP or socketpair into pkt; 1 or -errno. */
static int read_one(struct vs_iface *in, struct vs_pkt *pkt, uint8_t *buf)
{
    struct iovec iov[2];
    int k = 0;
    memset(&pkt->vnet, 0, sizeof pkt->vnet);
    if (in->vnet) {
        iov[k].iov_base = &pkt->vnet;
        iov[k].iov_len = VS_VNET_HDR_LEN;
        k++;
    }
    /* One byte more than the largest frame: a read that fills it was
     * truncated, so the frame was too big. */
    iov[k].iov_base = buf + VS_HEADROOM;
    iov[k].iov_len = VS_MAX_FRAME + 1;
    k++;
    pkt->data = buf + VS_HEADROOM;

    ssize_t r = readv(in->fd, iov, k);
    if (r < 0)
        return -errno;
    if (in->vnet && (size_t)r < VS_VNET_HDR_LEN) {
        memset(&pkt->vnet, 0, sizeof pkt->vnet);
        pkt->len = 0;   /* a runt */
    } else {
        pkt->len = (uint32_t)(r - (in->vnet ? VS_VNET_HDR_LEN : 0));
    }
    return 1;
}

/* AF_PACKET: one recvmmsg() for the whole burst.  Each message gets its
 * own virtio-net header slot, frame buffer, address (to tell our own
 * transmissions apart on kernels without PACKET_IGNORE_OUTGOING) and
 * control buffer (the VLAN tag the kernel took out). */
static int rx_packet_burst(struct vs_dp *dp, struct vs_iface *in)
{
    struct mmsghdr msgs[VS_BATCH];
    struct iovec iov[VS_BATCH][2];
    struct sockaddr_ll sll[VS_BATCH];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } cbuf[VS_BATCH];
    for (int i = 0; i < VS_BATCH; i++) {
        struct vs_pkt *pkt = &dp->pkts[i];
        uint8_t *buf = dp->bufs + (size_t)i * VS_BUF_SIZE;
        int k = 0;
        memset(&pkt->vnet, 0, sizeof pkt->vnet);
        if (in->vnet) {
            iov[i][k].iov_base = &pkt->vnet;
            iov[i][k++].iov_len = VS_VNET_HDR_LEN;
        }
        iov[i][k].iov_base = buf + VS_HEADROOM;
        iov[i][k++].iov_len = VS_MAX_FRAME + 1;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &sll[i];
        msgs[i].msg_hdr.msg_namelen = sizeof sll[i];
        msgs[i].msg_hdr.msg_iov = iov[i];
        msgs[i].msg_hdr.msg_iovlen = (size_t)k;
        msgs[i].msg_hdr.msg_control = cbuf[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof cbuf[i].buf;
    }
    int r;
    do {
        r = recvmmsg(in->fd, msgs, VS_BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return 0;   /* EAGAIN, or ENETDOWN while the device is down: see below */
    int n = 0;
    for (int i = 0; i < r; i++) {
        if (sll[i].sll_pkttype == PACKET_OUTGOING)
            continue;
        /* Compact: message i's frame becomes pkts[n] (its buffer stays). */
        struct vs_pkt *pkt = &dp->pkts[n];
        if (n != i)
            pkt->vnet = dp->pkts[i].vnet;
        pkt->data = dp->bufs + (size_t)i * VS_BUF_SIZE + VS_HEADROOM;
        uint32_t got = msgs[i].msg_len;
        uint32_t hdr = in->vnet ? VS_VNET_HDR_LEN : 0;
        pkt->len = got < hdr ? 0 : got - hdr;
        if (pkt->len > VS_MAX_FRAME) {
            in->stats.rx_packets++;
            in->stats.drops[VS_DROP_OVERSIZE]++;
            continue;
        }
        restore_vlan_tag(pkt, &msgs[i].msg_hdr);
        n++;
    }
    return n;
}

int vs_rx_burst(struct vs_dp *dp, struct vs_iface *in)
{
    if (in->kind == VS_IFACE_PACKET)
        return rx_packet_burst(dp, in);
    int n = 0;
    while (n < VS_BATCH) {
        struct vs_pkt *pkt = &dp->pkts[n];
        int r = read_one(in, pkt, dp->bufs + (size_t)n * VS_BUF_SIZE);
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN || r == -EWOULDBLOCK)
            break;
        if (r < 0) {
            /* A TAP or socket that errors is finished.  (An AF_PACKET socket
             * instead reports ENETDOWN while its device is down and recovers
             * by itself; its deletion is noticed over netlink.) */
            vs_iface_fail(dp, in);
            break;
        }
        if (pkt->len > VS_MAX_FRAME) {
            in->stats.rx_packets++;
            in->stats.drops[VS_DROP_OVERSIZE]++;
            continue;
        }
        n++;
    }
    return n;
}
