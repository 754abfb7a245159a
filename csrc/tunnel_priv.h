/*
 * tunnel_priv.h - what tunnel.c and tunnel_tx.c share: the tunnel state,
 * the transmit queue, and one's complement sums.  Private to those two.
 */
#ifndef VS_TUNNEL_PRIV_H
#define VS_TUNNEL_PRIV_H

#include <netinet/in.h>
#include <string.h>
#include <sys/uio.h>

#include "tunnel.h"

#define MAX_TUNSOCKS 64
#define VXLAN_HLEN 8
#define OUTER_HLEN 36        /* IPv4 20 + UDP 8 + VXLAN 8 */
#define TXQ 512
#define HDR_ROOM 192         /* outer headers + a segment's inner headers */
#define MAX_SEGMENTS 1024
#define DEFAULT_TTL 64
#define SPORT_MIN 32768      /* the kernel's default ip_local_port_range */
#define SPORT_MAX 61000
#define ROUTES_PER_TICK 32   /* remotes whose route is refreshed per second */
#define VXLAN_FLAG_I 0x08
#define ICMP_DATA_MAX 548    /* 576 - IPv4 header - ICMP header */

struct remote {
    uint32_t ip, src;        /* network byte order; src 0: no route */
    uint32_t path_mtu;       /* of the route to ip; 0 unknown */
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_errors;
};

struct vs_tunnel {
    struct vs_tunnel_cfg cfg;
    /* The inner MTU, for what we send.  The interface's own mtu is the
     * largest frame: what arrives was reassembled by the kernel already and
     * is taken whatever its size, as the kernel's vxlan device takes it. */
    uint32_t mtu;
    uint16_t sock;
    uint8_t n_remotes;
    struct remote remotes[VS_MAX_REMOTES];
};

#define GSO_SOCKS 16          /* UDP GSO: sending sockets, one per source port */
#define GSO_CHUNK 64          /* segments per UDP_SEGMENT send */

struct tunsock {
    bool in_use;
    int fd;
    int gso_fds[GSO_SOCKS];   /* UDP GSO senders bound to local_ip; 0: not yet */
    uint32_t gen;
    uint32_t local_ip;
    uint16_t port;
    uint16_t users;
};

/* One datagram waiting to leave: iov[0] is hdr (outer headers and the
 * inner bytes we rewrote), the rest slices of a received frame. */
#define TX_IOV 6
struct txent {
    struct sockaddr_in to;
    uint16_t iface;
    uint8_t remote;
    uint8_t niov;            /* 0: not sent (fragmented into later entries) */
    bool counts;             /* the datagram that counts the frame as sent */
    uint32_t len;            /* inner frame bytes, for the counters */
    struct iovec iov[TX_IOV];
    uint8_t hdr[HDR_ROOM] __attribute__((aligned(8)));
};

/* A GSO segment being sent: VXLAN and inner headers, and its payload. */
struct gso_seg {
    uint8_t hdr[HDR_ROOM];
    uint32_t hlen;
    const uint8_t *payload;
    uint32_t n;
    uint32_t isum;            /* sum of the inner frame, for the outer checksum */
    uint16_t sport;
};

struct vs_tunnels {
    /* Each tunnel interface's state, by interface id: kept here rather than
     * in struct vs_iface so that struct stays three cache lines for every
     * other port (the forwarding decision touches it per output). */
    struct vs_tunnel *of[VS_MAX_IFACES];
    struct gso_seg segs[GSO_CHUNK];
    int raw_fd;              /* IPPROTO_RAW: we write the whole IPv4 header */
    int route_fd;            /* UDP, connected only to ask the routing table */
    uint16_t ip_id;
    uint16_t n_tun;
    uint32_t route_cursor;
    struct tunsock socks[MAX_TUNSOCKS];
    uint16_t tun_ifaces[VS_MAX_IFACES];
    uint8_t rx_remote[VS_BATCH];    /* remote of dp->pkts[i] while forwarding */
    uint8_t rx_vxh[VS_BATCH][VXLAN_HLEN];
    int ntx;
    struct txent txq[TXQ];
};

static inline struct vs_tunnel *TUN(const struct vs_dp *dp, const struct vs_iface *ifc)
{
    return dp->tunnels->of[ifc - dp->ifaces];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* --- checksums -------------------------------------------------------------
 * One's complement sums as 16-bit big-endian words, kept unfolded in 32
 * bits by callers.  sum_be() reads 8 bytes at a time in host order (the
 * sum is byte-order independent up to a final swap, RFC 1071). */

static inline uint32_t fold32(uint64_t s)
{
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    uint32_t x = (uint32_t)s;
    x = (x & 0xffff) + (x >> 16);
    x = (x & 0xffff) + (x >> 16);
    return x;
}

static inline uint32_t swap16(uint32_t x)
{
    return ((x & 0xff) << 8) | ((x >> 8) & 0xff);
}

/* Sum of n bytes starting at an even offset, folded to 16 bits. */
static inline uint32_t sum_be(const uint8_t *p, uint32_t n)
{
    uint64_t s = 0;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
    if (n) {
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        s += w;
    }
    uint32_t f = fold32(s);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    f = swap16(f);
#endif
    return f;
}

/* Add the sum of a piece that starts at byte offset `at` of the summed
 * region: a piece at an odd offset contributes its bytes swapped. */
static inline uint32_t sum_at(uint32_t acc, uint32_t piece, uint32_t at)
{
    return acc + ((at & 1) ? swap16(piece) : piece);
}

static inline uint16_t finish(uint32_t s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

#endif
