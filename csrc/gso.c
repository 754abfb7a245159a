/*
 * gso.c - software segmentation, for outputs that cannot take a 64 KB
 * segment described by a virtio-net header (a socketpair in tests, a system
 * port without PACKET_VNET_HDR, a port with offloads turned off).
 *
 * The common path never comes here: TAPs and AF_PACKET sockets with a
 * virtio-net header take GSO frames as they are, which is what makes TCP
 * fast.  This is the slow path, so it favours obviously-correct over fast:
 * each segment is built whole in a scratch buffer (headers copied, payload
 * copied, lengths/ids/sequence numbers/checksums rewritten) and then leaves
 * through the same output code as any other frame.
 *
 * The headers are untrusted (a test can hand any virtio-net header with any
 * bytes), so every offset is checked against the frame before use and the
 * number of segments is bounded.
 */
#include <string.h>

#include "internal.h"

#define MAX_SEGMENTS 1024
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t sum)
{
    while (n > 1) {
        sum += (uint32_t)((p[0] << 8) | p[1]);
        p += 2;
        n -= 2;
    }
    if (n)
        sum += (uint32_t)(p[0] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

bool vs_gso_layout(const struct vs_pkt *pkt, uint8_t gso, struct l4_layout *lay)
{
    uint32_t l3 = pkt->l3_offset, len = pkt->len;
    uint16_t ethertype = vs_rd16(pkt->data + l3 - 2);
    const uint8_t *d = pkt->data;
    lay->l3 = l3;
    if (ethertype == 0x0800) {
        if (len < l3 + 20 || (d[l3] >> 4) != 4)
            return false;
        uint32_t ihl = (d[l3] & 0xf) * 4u;
        if (ihl < 20 || len < l3 + ihl)
            return false;
        lay->v6 = false;
        lay->proto = d[l3 + 9];
        lay->l4 = l3 + ihl;
    } else if (ethertype == 0x86dd) {
        if (len < l3 + 40 || (d[l3] >> 4) != 6)
            return false;
        lay->v6 = true;
        lay->proto = d[l3 + 6];    /* no extension headers on this path */
        lay->l4 = l3 + 40;
    } else {
        return false;
    }
    if (gso == VNET_GSO_TCPV4 || gso == VNET_GSO_TCPV6) {
        if (lay->proto != IPPROTO_TCP_ || lay->v6 != (gso == VNET_GSO_TCPV6) ||
            len < lay->l4 + 20)
            return false;
        uint32_t thl = (d[lay->l4 + 12] >> 4) * 4u;
        if (thl < 20 || len < lay->l4 + thl)
            return false;
        lay->payload = lay->l4 + thl;
    } else if (gso == VNET_GSO_UDP_L4) {
        if (lay->proto != IPPROTO_UDP_ || len < lay->l4 + 8)
            return false;
        lay->payload = lay->l4 + 8;
    } else {
        return false;   /* UFO (IP fragmentation) is not offered by our TAPs */
    }
    return true;
}

/* Pseudo-header sum of the L4 segment of length l4_len. */
static uint32_t pseudo_sum(const uint8_t *seg, const struct l4_layout *lay,
                           uint32_t l4_len)
{
    uint32_t sum;
    if (lay->v6)
        sum = sum16(seg + lay->l3 + 8, 32, 0);
    else
        sum = sum16(seg + lay->l3 + 12, 8, 0);
    return sum + lay->proto + (l4_len & 0xffff) + (l4_len >> 16);
}

int vs_gso_segment(struct vs_dp *dp, struct vs_pkt *pkt, vs_segment_fn emit,
                   void *ctx)
{
    uint8_t gso = pkt->vnet.gso_type & ~VNET_GSO_ECN;
    struct l4_layout lay;
    uint32_t mss = pkt->vnet.gso_size;
    if (mss == 0 || !vs_gso_layout(pkt, gso, &lay))
        return -1;
    uint32_t total = pkt->len - lay.payload;
    uint32_t nseg = total == 0 ? 1 : (total + mss - 1) / mss;
    if (nseg > MAX_SEGMENTS || lay.payload + mss > VS_BUF_SIZE - VS_HEADROOM)
        return -1;

    const uint8_t *d = pkt->data;
    uint8_t *seg = dp->seg_buf + VS_HEADROOM;
    uint32_t seq = gso == VNET_GSO_UDP_L4 ? 0 : rd32(d + lay.l4 + 4);
    uint16_t ip_id = lay.v6 ? 0 : vs_rd16(d + lay.l3 + 4);
    uint8_t tcp_flags = gso == VNET_GSO_UDP_L4 ? 0 : d[lay.l4 + 13];

    for (uint32_t i = 0; i < nseg; i++) {
        uint32_t off = i * mss;
        uint32_t n = total - off < mss ? total - off : mss;
        bool last = i + 1 == nseg;
        memcpy(seg, d, lay.payload);
        memcpy(seg + lay.payload, d + lay.payload + off, n);
        uint32_t seg_len = lay.payload + n;
        uint32_t l4_len = seg_len - lay.l4;

        if (lay.v6) {
            wr16(seg + lay.l3 + 4, (uint16_t)(seg_len - lay.l3 - 40));
        } else {
            wr16(seg + lay.l3 + 2, (uint16_t)(seg_len - lay.l3));
            wr16(seg + lay.l3 + 4, (uint16_t)(ip_id + i));
            wr16(seg + lay.l3 + 10, 0);
            wr16(seg + lay.l3 + 10, fold(sum16(seg + lay.l3, lay.l4 - lay.l3, 0)));
        }
        uint32_t csum_at;
        if (gso == VNET_GSO_UDP_L4) {
            wr16(seg + lay.l4 + 4, (uint16_t)l4_len);
            csum_at = lay.l4 + 6;
        } else {
            wr32(seg + lay.l4 + 4, seq + off);
            uint8_t flags = tcp_flags;
            if (!last)
                flags &= (uint8_t)~0x09;   /* FIN, PSH only on the last */
            if (i > 0)
                flags &= (uint8_t)~0x80;   /* CWR only on the first */
            seg[lay.l4 + 13] = flags;
            csum_at = lay.l4 + 16;
        }
        wr16(seg + csum_at, 0);
        uint16_t c = fold(sum16(seg + lay.l4, l4_len, pseudo_sum(seg, &lay, l4_len)));
        if (c == 0 && gso == VNET_GSO_UDP_L4)
            c = 0xffff;   /* 0 means "no checksum" in UDP */
        wr16(seg + csum_at, c);

        struct vs_pkt s = *pkt;
        s.data = seg;
        s.len = seg_len;
        memset(&s.vnet, 0, sizeof s.vnet);
        s.vnet.flags = VNET_F_DATA_VALID;
        emit(dp, &s, ctx);
    }
    return (int)nseg;
}
