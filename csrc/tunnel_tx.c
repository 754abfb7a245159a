/*
 * tunnel_tx.c - sending on VXLAN tunnel interfaces (tunnel.c has the rest).
 *
 *  - One raw IPv4 socket (IPPROTO_RAW) for the datapath.  We write the
 *    whole outer header, so each datagram gets what the kernel's vxlan
 *    device would give it: a UDP source port hashed from the inner flow (in
 *    32768..60999, for ECMP), TTL 64 (or the tunnel's), DF clear unless
 *    asked for, and the UDP checksum computed here, complete -- a kernel UDP
 *    socket would leave it to the underlay device, and a veth hands such
 *    "partial" checksums over unfinished, which Open vSwitch's userspace
 *    datapath drops.  Datagrams wait in a queue and leave with one
 *    sendmmsg() per batch; each is two pieces, its headers (outer, plus the
 *    few inner bytes that change) and a slice of the received frame, so the
 *    inner frame is never copied by us (the kernel copies it once into its
 *    socket buffer).
 *
 *  - Large TCP segments (virtio-net GSO, from a TAP) are cut here to the
 *    tunnel's inner MTU the same way: per segment, rewritten headers plus a
 *    slice of the payload; the payload's sum is taken once and serves both
 *    the inner TCP checksum and the outer UDP one.  With udp_gso, the
 *    segments of a 64 KB frame leave instead in one UDP_SEGMENT send per
 *    remote, and the kernel writes the outer headers.
 *
 *  - MTU, as the kernel's vxlan device does it: a frame whose L3 packet is
 *    larger than the inner MTU gets, when it is IPv4 with DF, an ICMP
 *    "fragmentation needed" (with the tunnel's MTU) written back to the port
 *    it came from, from the original destination's addresses; otherwise
 *    the outer packet is fragmented here (a raw socket refuses to).
 *
 *  - Head-end replication: a flooded frame is queued once per remote; a
 *    known unicast only to the remote its MAC was learned from.  A frame
 *    never goes back out of the tunnel port it came in by (forward.c skips
 *    the input port).
 *
 * Thread safety: as tunnel.c (dp->lock held throughout).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tunnel_priv.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* --- transmit --------------------------------------------------------------- */

/* The UDP source port: a hash of the inner flow (addresses, protocol and
 * ports when it has them, else the MACs and ethertype), so one flow keeps
 * one path and different flows spread over ECMP paths. */
static uint16_t flow_sport(const struct vs_dp *dp, const struct vs_pkt *pkt)
{
    const uint8_t *d = pkt->data;
    uint32_t l3 = pkt->l3_offset, len = pkt->len;
    uint16_t et = vs_rd16(d + l3 - 2);
    uint64_t h = dp->seed ^ et;
    uint32_t l4 = 0;
    uint8_t proto = 0;
    if (et == 0x0800 && len >= l3 + 20 && (d[l3] >> 4) == 4) {
        uint64_t a;
        memcpy(&a, d + l3 + 12, 8);
        h ^= a;
        proto = d[l3 + 9];
        bool frag = (vs_rd16(d + l3 + 6) & 0x3fff) != 0;
        if (!frag)
            l4 = l3 + (d[l3] & 0xf) * 4u;
    } else if (et == 0x86dd && len >= l3 + 40) {
        uint64_t a[4];
        memcpy(a, d + l3 + 8, 32);
        h ^= a[0] ^ (a[1] * 31) ^ (a[2] * 131) ^ (a[3] * 1031);
        proto = d[l3 + 6];
        l4 = l3 + 40;
    } else {
        uint64_t a;
        memcpy(&a, d, 8);
        h ^= a ^ ((uint64_t)vs_rd16(d + 8) << 16 | vs_rd16(d + 10));
    }
    h ^= (uint64_t)proto << 56;
    if (l4 && (proto == 6 || proto == 17 || proto == 132) && len >= l4 + 4)
        h ^= (uint64_t)rd32(d + l4) << 24;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint16_t)((((h & 0xffffffffu) * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN);
}

/* The largest outer packet toward rem: its route's MTU, or else the inner
 * MTU plus the 50 bytes of encapsulation. */
static inline uint32_t outer_mtu(const struct vs_tunnel *t, const struct remote *rem)
{
    return rem->path_mtu ? rem->path_mtu : t->mtu + 50;
}

/* Queue entries a datagram of total bytes toward rem takes (fragments
 * point into an entry that is itself not sent). */
static int slots_needed(const struct vs_tunnel *t, const struct remote *rem, uint32_t total)
{
    uint32_t mtu = outer_mtu(t, rem);
    if (total <= mtu || (t->cfg.flags & VS_TUN_F_DF))
        return 1;
    uint32_t step = (mtu - 20) & ~7u;
    return 1 + (int)((total - 20 + step - 1) / step);
}

/* A free queue entry for a datagram that takes `need` entries: the queue
 * is flushed first when they do not fit; NULL when they never would. */
static struct txent *tx_slot(struct vs_dp *dp, int need)
{
    if (need > TXQ)
        return NULL;
    struct vs_tunnels *T = dp->tunnels;
    if (T->ntx + need > TXQ)
        vs_tunnel_flush(dp);
    return &T->txq[T->ntx];
}

/* Outer IPv4 + UDP + VXLAN headers into h, for an inner frame of inner_len
 * bytes whose sum (as it lies after the VXLAN header) is inner_sum. */
static void outer_hdr(uint8_t *h, const struct vs_tunnel *t, const struct remote *r,
                      uint32_t inner_len, uint16_t sport, uint32_t inner_sum)
{
    uint32_t ulen = 16 + inner_len;
    h[0] = 0x45;
    h[1] = 0;
    wr16(h + 2, (uint16_t)(20 + ulen));   /* the kernel fills it in too */
    wr16(h + 4, 0);                        /* set when queued (commit) */
    wr16(h + 6, (t->cfg.flags & VS_TUN_F_DF) ? 0x4000 : 0);
    h[8] = t->cfg.ttl;
    h[9] = 17;
    wr16(h + 10, 0);                       /* the kernel computes it */
    memcpy(h + 12, &r->src, 4);            /* 0: the kernel chooses */
    memcpy(h + 16, &r->ip, 4);
    uint8_t *u = h + 20;
    wr16(u, sport);
    wr16(u + 2, t->cfg.dst_port);
    wr16(u + 4, (uint16_t)ulen);
    wr16(u + 6, 0);
    uint8_t *v = h + 28;
    memset(v, 0, VXLAN_HLEN);
    v[0] = VXLAN_FLAG_I;
    v[4] = (uint8_t)(t->cfg.vni >> 16);
    v[5] = (uint8_t)(t->cfg.vni >> 8);
    v[6] = (uint8_t)t->cfg.vni;
    /* Without a known source address the pseudo-header cannot be summed:
     * send no checksum (0 is allowed over IPv4) rather than a wrong one. */
    if ((t->cfg.flags & VS_TUN_F_CSUM) && r->src) {
        uint32_t s = sum_be(h + 12, 8) + 17 + ulen + sum_be(u, 16) + inner_sum;
        uint16_t c = finish(s);
        wr16(u + 6, c ? c : 0xffff);
    }
}

/* Cut the queued datagram e (whose IPv4 total length exceeds mtu) into
 * fragments that point into it; e itself is then not sent. */
static void fragment(struct vs_dp *dp, struct txent *e, uint32_t mtu)
{
    struct vs_tunnels *T = dp->tunnels;
    /* What follows the IPv4 header, as pieces. */
    struct iovec rest[TX_IOV];
    int nrest = 0;
    uint32_t plen = 0;
    rest[nrest++] = (struct iovec){e->hdr + 20, e->iov[0].iov_len - 20};
    for (int k = 1; k < e->niov; k++)
        rest[nrest++] = e->iov[k];
    for (int k = 0; k < nrest; k++)
        plen += (uint32_t)rest[k].iov_len;
    uint32_t step = (mtu - 20) & ~7u;
    uint16_t id = vs_rd16(e->hdr + 4);
    e->niov = 0;
    int piece = 0;
    size_t in_piece = 0;
    bool first = true;
    for (uint32_t off = 0; off < plen; off += step) {
        uint32_t n = plen - off < step ? plen - off : step;
        struct txent *f = &T->txq[T->ntx++];
        f->to = e->to;
        f->iface = e->iface;
        f->remote = e->remote;
        f->counts = first && e->counts;
        f->len = e->len;
        first = false;
        memcpy(f->hdr, e->hdr, 20);
        wr16(f->hdr + 2, (uint16_t)(20 + n));
        uint16_t frag = (uint16_t)((off >> 3) | (off + n < plen ? 0x2000 : 0));
        wr16(f->hdr + 4, id);
        wr16(f->hdr + 6, frag);
        f->iov[0] = (struct iovec){f->hdr, 20};
        int k = 1;
        uint32_t left = n;
        while (left && k < TX_IOV) {
            size_t avail = rest[piece].iov_len - in_piece;
            size_t take = avail < left ? avail : left;
            f->iov[k++] = (struct iovec){(uint8_t *)rest[piece].iov_base + in_piece, take};
            left -= (uint32_t)take;
            in_piece += take;
            if (in_piece == rest[piece].iov_len) {
                piece++;
                in_piece = 0;
            }
        }
        f->niov = (uint8_t)k;
    }
}

/* Queue the datagram being built in the next slot: hdr holds the outer
 * headers and hlen - OUTER_HLEN inner bytes, tail the rest of the frame. */
static void commit(struct vs_dp *dp, struct vs_iface *out, int r, uint32_t hlen,
                   const uint8_t *tail, uint32_t tail_len)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    struct remote *rem = &t->remotes[r];
    struct txent *e = &T->txq[T->ntx++];
    e->to = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = rem->ip};
    e->iface = (uint16_t)(out - dp->ifaces);
    e->remote = (uint8_t)r;
    e->counts = true;
    e->len = hlen - OUTER_HLEN + tail_len;
    /* Our own IP id: the kernel would hash one per datagram otherwise (4 %
     * of the cost of sending, measured); a datapath-wide counter is unique
     * enough for the reassembly window of fragments (RFC 6864). */
    if (++T->ip_id == 0)
        T->ip_id = 1;
    wr16(e->hdr + 4, T->ip_id);
    e->iov[0] = (struct iovec){e->hdr, hlen};
    e->niov = 1;
    if (tail_len)
        e->iov[e->niov++] = (struct iovec){(void *)tail, tail_len};
    uint32_t total = hlen + tail_len;
    uint32_t mtu = outer_mtu(t, rem);
    if (total > mtu && !(t->cfg.flags & VS_TUN_F_DF))
        fragment(dp, e, mtu);
}

void vs_tunnel_flush(struct vs_dp *dp)
{
    struct vs_tunnels *T = dp->tunnels;
    if (!T || T->ntx == 0)
        return;
    struct mmsghdr msgs[TXQ];
    uint16_t which[TXQ];
    int m = 0;
    for (int i = 0; i < T->ntx; i++) {
        struct txent *e = &T->txq[i];
        if (!e->niov)
            continue;
        memset(&msgs[m], 0, sizeof msgs[m]);
        msgs[m].msg_hdr.msg_name = &e->to;
        msgs[m].msg_hdr.msg_namelen = sizeof e->to;
        msgs[m].msg_hdr.msg_iov = e->iov;
        msgs[m].msg_hdr.msg_iovlen = e->niov;
        which[m++] = (uint16_t)i;
    }
    int sent = 0;
    while (sent < m) {
        int r = dp->dry_run ? m - sent
                            : sendmmsg(T->raw_fd, msgs + sent, (unsigned)(m - sent),
                                       MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        int upto = r < 0 ? sent + 1 : sent + r;
        for (int j = sent; j < upto; j++) {
            struct txent *e = &T->txq[which[j]];
            struct vs_iface *ifc = &dp->ifaces[e->iface];
            struct vs_tunnel *t = T->of[e->iface];
            struct remote *rem = t ? &t->remotes[e->remote] : NULL;
            if (r < 0) {
                /* No route, a full socket buffer, a refused size: this
                 * datagram is lost and counted; the others still go. */
                ifc->stats.drops[VS_DROP_TX_ERROR]++;
                if (rem)
                    rem->tx_errors++;
            } else if (e->counts) {
                ifc->stats.tx_packets++;
                ifc->stats.tx_bytes += e->len;
                if (rem) {
                    rem->tx_packets++;
                    rem->tx_bytes += e->len;
                }
            }
        }
        sent = upto;
    }
    T->ntx = 0;
}

/* The L2 header of the frame as port op sends it (tag pushed, popped or
 * left), written to h; returns its length.  h gets the MACs, the tag if
 * any, and whatever lies between the original tag and `upto` (an inner tag,
 * the ethertype, and for segments the L3/L4 headers). */
static uint32_t inner_l2(const struct vs_pkt *pkt, bool tagged, uint8_t *h, uint32_t upto)
{
    memcpy(h, pkt->data, 12);
    uint32_t n = 12;
    if (tagged) {
        h[n++] = TPID_8021Q >> 8;
        h[n++] = TPID_8021Q & 0xff;
        h[n++] = (uint8_t)(pkt->tci >> 8);
        h[n++] = (uint8_t)pkt->tci;
    }
    uint32_t from = pkt->tag_len ? pkt->payload_off : 12;
    memcpy(h + n, pkt->data + from, upto - from);
    return n + upto - from;
}

/* ICMP "fragmentation needed" back to the sender of an IPv4 packet with DF
 * that does not fit the tunnel, as the kernel's vxlan device answers for a
 * bridged packet: from the original destination's MAC and address, with
 * the original IPv4 header and the start of its payload.  Returns false
 * when the packet must not be answered (an ICMP error, a broadcast, a
 * fragment's tail). */
static bool frag_needed(struct vs_dp *dp, const struct vs_pkt *pkt, struct vs_iface *in,
                        uint32_t mtu)
{
    const uint8_t *d = pkt->data;
    uint32_t l3 = pkt->l3_offset;
    uint32_t ihl = (d[l3] & 0xf) * 4u;
    if (in->kind == VS_IFACE_VXLAN || in->failed || ihl < 20 || pkt->len < l3 + ihl ||
        vs_mac_is_group(d) || vs_mac_is_group(d + 6))
        return false;
    if ((vs_rd16(d + l3 + 6) & 0x1fff) != 0)
        return false;                        /* not the first fragment */
    const uint8_t *saddr = d + l3 + 12, *daddr = d + l3 + 16;
    if (saddr[0] == 0 || saddr[0] >= 224 || daddr[0] >= 224)
        return false;
    if (d[l3 + 9] == 1 && pkt->len >= l3 + ihl + 1) {
        uint8_t type = d[l3 + ihl];
        if (type != 0 && type != 8 && type != 13 && type != 14)
            return false;                    /* never answer an ICMP error */
    }
    uint8_t buf[18 + 28 + ICMP_DATA_MAX];
    bool tagged = vs_vlan_egress_tagged(&dp->ports[in->port], pkt->vlan);
    memcpy(buf, d + 6, 6);
    memcpy(buf + 6, d, 6);
    uint32_t o = 12;
    if (tagged) {
        wr16(buf + o, TPID_8021Q);
        wr16(buf + o + 2, pkt->tci);
        o += 4;
    }
    wr16(buf + o, 0x0800);
    o += 2;
    uint32_t data = pkt->len - l3 < ICMP_DATA_MAX ? pkt->len - l3 : ICMP_DATA_MAX;
    uint8_t *ip = buf + o, *ic = ip + 20;
    memset(ip, 0, 28);
    ip[0] = 0x45;
    wr16(ip + 2, (uint16_t)(28 + data));
    ip[8] = 64;
    ip[9] = 1;
    memcpy(ip + 12, daddr, 4);
    memcpy(ip + 16, saddr, 4);
    wr16(ip + 10, finish(sum_be(ip, 20)));
    ic[0] = 3;   /* destination unreachable */
    ic[1] = 4;   /* fragmentation needed and DF set */
    wr16(ic + 6, (uint16_t)mtu);
    memcpy(ic + 8, d + l3, data);
    wr16(ic + 2, finish(sum_be(ic, 8 + data)));
    struct iovec iov = {buf, o + 28 + data};
    vs_iface_write(dp, in, NULL, &iov, 1, (uint32_t)iov.iov_len);
    return true;
}

/* The frame as the port sends it, in two pieces: the L2 header we rewrote
 * into l2 (*l2len bytes, 0 when the tag does not change), and the rest as
 * received (returned, *tail_len bytes). */
static const uint8_t *as_sent(const struct vs_pkt *pkt, bool tagged, uint8_t l2[24],
                              uint32_t *l2len, uint32_t *tail_len)
{
    bool has_tag = pkt->tag_len && vs_rd16(pkt->data + 14) == pkt->tci;
    *l2len = 0;
    *tail_len = pkt->len;
    if (tagged == (pkt->tag_len != 0) && !(tagged && !has_tag))
        return pkt->data;
    uint32_t from = pkt->tag_len ? pkt->payload_off : 12;
    *l2len = inner_l2(pkt, tagged, l2, from);
    *tail_len = pkt->len - from;
    return pkt->data + from;
}

/* A frame that is not a GSO segment: one datagram per remote, two pieces
 * each (headers with the L2 header we may have changed, then the rest of
 * the frame as received). */
static void output_frame(struct vs_dp *dp, struct vs_pkt *pkt, bool tagged,
                         struct vs_iface *out, struct vs_iface *in, int only)
{
    struct vs_tunnel *t = TUN(dp, out);
    if (pkt->vnet.flags & VNET_F_NEEDS_CSUM) {
        /* Finished in the shared buffer (right for every output); what was
         * queued before still describes it as partial, so it leaves first. */
        vs_tx_flush(dp);
        vs_vnet_complete_csum(pkt);
    }
    uint32_t l3len = pkt->len - pkt->l3_offset;
    if (l3len > t->mtu) {
        bool v4 = vs_rd16(pkt->data + pkt->l3_offset - 2) == 0x0800 &&
                  pkt->len >= pkt->l3_offset + 20u;
        if (v4 && (pkt->data[pkt->l3_offset + 6] & 0x40)) {
            out->stats.drops[frag_needed(dp, pkt, in, t->mtu) ? VS_DROP_FRAG_NEEDED
                                                                 : VS_DROP_OVERSIZE]++;
            return;
        }
        if (t->cfg.flags & VS_TUN_F_DF) {   /* may not fragment the outer packet */
            out->stats.drops[VS_DROP_OVERSIZE]++;
            return;
        }
    }
    uint8_t l2[24];
    uint32_t l2len, tail_len;
    const uint8_t *tail = as_sent(pkt, tagged, l2, &l2len, &tail_len);
    uint32_t isum = 0;
    if (t->cfg.flags & VS_TUN_F_CSUM) {
        isum = l2len ? sum_be(l2, l2len) : 0;
        isum = sum_at(isum, sum_be(tail, tail_len), l2len);
    }
    uint16_t sport = flow_sport(dp, pkt);
    int first = only >= 0 ? only : 0, last = only >= 0 ? only : t->n_remotes - 1;
    for (int r = first; r <= last; r++) {
        struct txent *e = tx_slot(dp, slots_needed(t, &t->remotes[r],
                                                   OUTER_HLEN + l2len + tail_len));
        if (!e) {
            out->stats.drops[VS_DROP_OVERSIZE]++;
            continue;
        }
        outer_hdr(e->hdr, t, &t->remotes[r], l2len + tail_len, sport, isum);
        memcpy(e->hdr + OUTER_HLEN, l2, l2len);
        commit(dp, out, r, OUTER_HLEN + l2len, tail, tail_len);
    }
}

/* A virtio-net GSO frame: cut into segments that fit the inner MTU, each
 * sent to every remote chosen as rewritten headers + a payload slice. */
/* UDP GSO: the pool of sending sockets of a tunnel socket's address, one
 * per source port, opened on first use. */
static int gso_fd(struct vs_tunnels *T, struct tunsock *ts, uint16_t sport)
{
    int k = sport % GSO_SOCKS;
    if (ts->gso_fds[k] > 0)
        return ts->gso_fds[k];
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1, dont = IP_PMTUDISC_DONT, sz = 4 << 20;
    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = ts->local_ip};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    (void)T;
    ts->gso_fds[k] = fd;
    return fd;
}

/* One sendmsg() with UDP_SEGMENT: m VXLAN datagrams of seg_size bytes
 * (the last may be shorter), each the segment's headers then its payload
 * slice; the kernel cuts them apart and writes IP and UDP headers (and the
 * UDP checksum, or leaves it to the device). */
static void send_udp_gso(struct vs_dp *dp, struct vs_iface *out, int r,
                         const struct gso_seg *segs, int m, uint32_t seg_size)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    struct remote *rem = &t->remotes[r];
    struct tunsock *ts = &T->socks[t->sock];
    int fd = gso_fd(T, ts, segs[0].sport);
    struct iovec iov[2 * GSO_CHUNK];
    uint64_t bytes = 0;
    for (int j = 0; j < m; j++) {
        iov[2 * j] = (struct iovec){(void *)segs[j].hdr, segs[j].hlen};
        iov[2 * j + 1] = (struct iovec){(void *)segs[j].payload, segs[j].n};
        bytes += segs[j].hlen - VXLAN_HLEN + segs[j].n;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(t->cfg.dst_port),
                             .sin_addr.s_addr = rem->ip};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr mh = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = iov,
                        .msg_iovlen = (size_t)(2 * m), .msg_control = c.buf,
                        .msg_controllen = sizeof c.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gs = (uint16_t)seg_size;
    memcpy(CMSG_DATA(cm), &gs, sizeof gs);
    cm = CMSG_NXTHDR(&mh, cm);
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_TTL;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int ttl = t->cfg.ttl;
    memcpy(CMSG_DATA(cm), &ttl, sizeof ttl);
    ssize_t rc = 0;
    if (!dp->dry_run) {
        if (fd < 0)
            rc = -1;
        else
            do {
                rc = sendmsg(fd, &mh, MSG_DONTWAIT);
            } while (rc < 0 && errno == EINTR);
    }
    if (rc < 0) {
        out->stats.drops[VS_DROP_TX_ERROR] += (uint64_t)m;
        rem->tx_errors += (uint64_t)m;
        return;
    }
    out->stats.tx_packets += (uint64_t)m;
    out->stats.tx_bytes += bytes;
    rem->tx_packets += (uint64_t)m;
    rem->tx_bytes += bytes;
}

/* A virtio-net GSO frame: cut into segments that fit the inner MTU, each
 * sent to every remote chosen as rewritten headers + a payload slice: in
 * the raw socket's queue, or (udp_gso) GSO_CHUNK at a time in one
 * UDP_SEGMENT send per remote. */
static void output_gso(struct vs_dp *dp, struct vs_pkt *pkt, bool tagged,
                       struct vs_iface *out, int only)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    uint8_t gso = pkt->vnet.gso_type & ~VNET_GSO_ECN;
    struct l4_layout lay;
    if (!vs_gso_layout(pkt, gso, &lay)) {
        out->stats.drops[VS_DROP_NO_GSO]++;
        return;
    }
    bool tcp = gso != VNET_GSO_UDP_L4;
    bool udp_gso = tcp && (t->cfg.flags & (VS_TUN_F_UDP_GSO | VS_TUN_F_DF)) == VS_TUN_F_UDP_GSO;
    uint32_t hl = lay.payload - lay.l3;      /* L3 + L4 headers */
    uint32_t mss = pkt->vnet.gso_size;
    /* cut to the inner MTU; with UDP GSO also to what the route carries,
     * since every datagram of the send must fit it whole */
    uint32_t limit = t->mtu;
    if (udp_gso) {
        uint32_t l2 = 14 + (tagged ? 4 : 0) + (lay.l3 - (pkt->tag_len ? pkt->payload_off : 12) - 2);
        for (int r = 0; r < t->n_remotes; r++) {
            uint32_t om = outer_mtu(t, &t->remotes[r]);
            if (om < OUTER_HLEN + l2 + limit)
                limit = om > OUTER_HLEN + l2 ? om - OUTER_HLEN - l2 : 0;
        }
    }
    if (tcp && hl + mss > limit)
        mss = limit > hl ? limit - hl : 0;
    uint32_t total = pkt->len - lay.payload;
    uint32_t nseg = total == 0 ? 1 : (mss ? (total + mss - 1) / mss : 0);
    if (mss == 0 || nseg > MAX_SEGMENTS) {
        out->stats.drops[VS_DROP_NO_GSO]++;
        return;
    }
    /* The segment's headers, built once and patched per segment. */
    uint8_t tmpl[HDR_ROOM - OUTER_HLEN];
    uint32_t hlen = inner_l2(pkt, tagged, tmpl, lay.payload);
    uint32_t l3 = hlen - hl, l4 = l3 + (lay.l4 - lay.l3);
    const uint8_t *d = pkt->data;
    uint32_t seq = tcp ? rd32(d + lay.l4 + 4) : 0;
    uint16_t ip_id = lay.v6 ? 0 : vs_rd16(d + lay.l3 + 4);
    uint8_t tcp_flags = tcp ? d[lay.l4 + 13] : 0;
    uint16_t sport = flow_sport(dp, pkt);
    /* pseudo-header addresses of the inner L4 checksum */
    uint32_t psum = lay.v6 ? sum_be(tmpl + l3 + 8, 32) : sum_be(tmpl + l3 + 12, 8);
    int first = only >= 0 ? only : 0, last = only >= 0 ? only : t->n_remotes - 1;
    uint32_t chunk = GSO_CHUNK;
    if (udp_gso) {
        vs_tunnel_flush(dp);   /* what was queued before leaves before */
        /* one send carries at most 64 KB of UDP payload */
        uint32_t fit = 65000 / (VXLAN_HLEN + hlen + mss);
        chunk = fit < chunk ? (fit ? fit : 1) : chunk;
    }

    for (uint32_t base = 0; base < nseg; base += chunk) {
        int m = nseg - base < chunk ? (int)(nseg - base) : (int)chunk;
        struct gso_seg *segs = T->segs;
        for (int j = 0; j < m; j++) {
            uint32_t i = base + (uint32_t)j;
            uint32_t off = i * mss;
            uint32_t n = total - off < mss ? total - off : mss;
            const uint8_t *payload = d + lay.payload + off;
            uint32_t l4_len = hlen - l4 + n;
            uint8_t *h = tmpl;
            if (lay.v6) {
                wr16(h + l3 + 4, (uint16_t)l4_len);
            } else {
                wr16(h + l3 + 2, (uint16_t)(hlen - l3 + n));
                wr16(h + l3 + 4, (uint16_t)(ip_id + i));
                wr16(h + l3 + 10, 0);
                wr16(h + l3 + 10, finish(sum_be(h + l3, l4 - l3)));
            }
            uint32_t csum_at;
            if (!tcp) {
                wr16(h + l4 + 4, (uint16_t)l4_len);
                csum_at = l4 + 6;
            } else {
                wr32(h + l4 + 4, seq + off);
                uint8_t flags = tcp_flags;
                if (i + 1 < nseg)
                    flags &= (uint8_t)~0x09;   /* FIN, PSH only on the last */
                if (i > 0)
                    flags &= (uint8_t)~0x80;   /* CWR only on the first */
                h[l4 + 13] = flags;
                csum_at = l4 + 16;
            }
            wr16(h + csum_at, 0);
            uint32_t pay = sum_be(payload, n);
            uint32_t s = psum + lay.proto + l4_len + sum_be(h + l4, hlen - l4);
            s = sum_at(s, pay, hlen - l4);
            uint16_t c = finish(s);
            if (c == 0 && !tcp)
                c = 0xffff;
            wr16(h + csum_at, c);
            struct gso_seg *g = &segs[j];
            /* a VXLAN header, then the segment's headers */
            memcpy(g->hdr, (const uint8_t[8]){VXLAN_FLAG_I, 0, 0, 0,
                                              (uint8_t)(t->cfg.vni >> 16),
                                              (uint8_t)(t->cfg.vni >> 8),
                                              (uint8_t)t->cfg.vni, 0}, VXLAN_HLEN);
            memcpy(g->hdr + VXLAN_HLEN, h, hlen);
            g->hlen = VXLAN_HLEN + hlen;
            g->payload = payload;
            g->n = n;
            g->sport = sport;
            g->isum = (t->cfg.flags & VS_TUN_F_CSUM) ? sum_at(sum_be(h, hlen), pay, hlen) : 0;
        }
        for (int r = first; r <= last; r++) {
            if (udp_gso) {
                send_udp_gso(dp, out, r, segs, m, VXLAN_HLEN + hlen + mss);
                continue;
            }
            for (int j = 0; j < m; j++) {
                struct gso_seg *g = &segs[j];
                struct txent *e = tx_slot(dp, slots_needed(t, &t->remotes[r],
                                                           OUTER_HLEN + hlen + g->n));
                if (!e) {
                    out->stats.drops[VS_DROP_OVERSIZE]++;
                    continue;
                }
                outer_hdr(e->hdr, t, &t->remotes[r], hlen + g->n, sport, g->isum);
                memcpy(e->hdr + OUTER_HLEN, g->hdr + VXLAN_HLEN, hlen);
                commit(dp, out, r, OUTER_HLEN + hlen, g->payload, g->n);
            }
        }
    }
}

void vs_tunnel_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                      struct vs_iface *out, struct vs_iface *in, bool unicast)
{
    struct vs_tunnel *t = TUN(dp, out);
    int only = -1;
    if (unicast) {
        /* The remote the destination was learned from; none (a static
         * entry) means all of them. */
        struct vs_fdb *f = &dp->bridges[op->bridge]->fdb;
        int64_t s = fdb_find(f, pkt->dst_key, pkt->dst_hash);
        if (s >= 0) {
            uint8_t r = f->ents[f->slots[s].entry].remote;
            if (r < t->n_remotes)
                only = r;
        }
    }
    bool tagged = vs_vlan_egress_tagged(op, pkt->vlan);
    if (out->capture) {
        /* a capture on a tunnel port sees the inner frame, once, as the port
         * sends it (before replication and segmentation), as tcpdump on a
         * kernel vxlan device does */
        uint8_t l2[24];
        uint32_t l2len, tail_len;
        const uint8_t *tail = as_sent(pkt, tagged, l2, &l2len, &tail_len);
        struct iovec iov[2] = {{l2, l2len}, {(void *)tail, tail_len}};
        vs_upcall_capture_tx(dp, out, l2len ? iov : iov + 1, l2len ? 2 : 1, 0);
    }
    if (vs_vnet_is_gso(&pkt->vnet))
        output_gso(dp, pkt, tagged, out, only);
    else
        output_frame(dp, pkt, tagged, out, in, only);
}
