/*
 * vnet.c - the virtio-net header that TAPs (IFF_VNET_HDR) and AF_PACKET
 * sockets (PACKET_VNET_HDR) put before each frame.  It lets a namespace
 * hand over a 64 KB TCP segment with its checksum still to do; passing it
 * through untouched to another port that speaks the header is what makes
 * TCP fast (see bench/).  Here: validating headers we did not write, and
 * finishing a checksum for an output that cannot take a partial one.
 */
#include "internal.h"

bool vs_vnet_is_gso(const struct vs_vnet_hdr *h)
{
    return (h->gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
}

bool vs_vnet_valid(const struct vs_vnet_hdr *h, uint32_t frame_len)
{
    uint8_t gso = h->gso_type & ~VNET_GSO_ECN;
    if (gso != VNET_GSO_NONE && gso != VNET_GSO_TCPV4 &&
        gso != VNET_GSO_TCPV6 && gso != VNET_GSO_UDP &&
        gso != VNET_GSO_UDP_L4)
        return false;
    if (gso == VNET_GSO_NONE && (h->gso_type & VNET_GSO_ECN))
        return false;
    if (h->flags & VNET_F_NEEDS_CSUM) {
        /* The checksum field must lie inside the frame, after the
         * Ethernet header. */
        uint32_t end = (uint32_t)h->csum_start + h->csum_offset + 2;
        if (h->csum_start < ETH_HLEN_ || end > frame_len)
            return false;
    }
    if (gso != VNET_GSO_NONE) {
        if (h->gso_size == 0 || !(h->flags & VNET_F_NEEDS_CSUM))
            return false;
    }
    return true;
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

/* The checksum field holds the pseudo-header sum; the one's complement sum
 * from csum_start to the end, folded and inverted, replaces it.  Valid for
 * every output, so it is done once in the shared buffer and the header
 * stops asking for it. */
void vs_vnet_complete_csum(struct vs_pkt *pkt)
{
    struct vs_vnet_hdr *h = &pkt->vnet;
    if (!(h->flags & VNET_F_NEEDS_CSUM))
        return;
    uint32_t start = h->csum_start, field = start + h->csum_offset;
    uint32_t sum = sum16(pkt->data + start, pkt->len - start, 0);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t c = (uint16_t)~sum;
    if (c == 0 && h->csum_offset == 6)
        c = 0xffff;   /* UDP: 0 would mean "no checksum" */
    pkt->data[field] = (uint8_t)(c >> 8);
    pkt->data[field + 1] = (uint8_t)c;
    h->flags = (uint8_t)((h->flags & ~VNET_F_NEEDS_CSUM) | VNET_F_DATA_VALID);
}
