/*
 * bond.c - which member of a port a frame leaves by, and whether a frame
 * arriving on a member may enter at all (Open vSwitch's bonding.rst).
 *
 *   active-backup: send on the active member only; accept on it only.
 *   balance-slb:   send on the member its (source MAC, VLAN) bucket points
 *                  at; accept broadcast/multicast on the active member only,
 *                  and drop unicast whose source is learned on another port
 *                  (our own frame coming back through the upstream switch).
 *   balance-tcp:   send on the member its L3/L4 flow's bucket points at
 *                  (vs_tcp_hash); only ever used with LACP negotiated.
 *   LACP negotiated (port->lag): the far end holds the members as one link
 *                  and never sends a frame back to us, so every frame is
 *                  accepted on every enabled member (Open vSwitch's rule).
 *
 * The control plane decides which members are enabled, which is active,
 * where each hash bucket points and whether LACP holds; this file only
 * reads those choices.
 */
#include <string.h>

#include "internal.h"

static inline bool usable(const struct vs_dp *dp, int i)
{
    return i >= 0 && dp->ifaces[i].in_use && dp->ifaces[i].enabled &&
           !dp->ifaces[i].failed;
}

int vs_slb_hash(const uint8_t *mac, uint16_t vlan)
{
    uint64_t k = vs_mac_to_u64(mac) | ((uint64_t)(vlan & 0xfff) << 48);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (int)(k & (VS_SLB_BUCKETS - 1));
}

static inline uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline uint64_t rd32(const uint8_t *p)
{
    return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) |
           ((uint64_t)p[2] << 8) | (uint64_t)p[3];
}

/* balance-tcp's hash, Open vSwitch's "symmetric L3/L4": the XOR of source
 * and destination addresses, the protocol, and for TCP, UDP and SCTP (not
 * in a fragment) the XOR of the ports -- so both directions of a flow hash
 * alike.  Frames that are not IP hash their L2 header the same symmetric
 * way (MACs and VLAN).  l3 is the offset after the tags (the ethertype is
 * the two bytes before it); every read is checked against len. */
static int l3l4_bucket(const uint8_t *d, uint32_t len, uint32_t l3,
                       uint16_t vlan)
{
    uint64_t h = 0;
    uint8_t proto = 0;
    uint32_t l4 = 0;
    uint16_t type = l3 >= ETH_HLEN_ && l3 <= len ? vs_rd16(d + l3 - 2) : 0;
    if (type == 0x0800 && len >= l3 + 20 && (d[l3] >> 4) == 4) {
        uint32_t ihl = (uint32_t)(d[l3] & 0x0f) * 4;
        proto = d[l3 + 9];
        h = rd32(d + l3 + 12) ^ rd32(d + l3 + 16);
        bool frag = (vs_rd16(d + l3 + 6) & 0x3fff) != 0;
        if (ihl >= 20 && !frag)
            l4 = l3 + ihl;
    } else if (type == 0x86dd && len >= l3 + 40 && (d[l3] >> 4) == 6) {
        proto = d[l3 + 6];
        for (uint32_t i = 0; i < 16; i += 4)
            h = mix64(h ^ rd32(d + l3 + 8 + i) ^ rd32(d + l3 + 24 + i));
        l4 = l3 + 40;     /* extension headers: no ports (proto says so) */
    } else {
        /* not IP (or a cut IP header): the L2 header, symmetric */
        uint64_t macs = len >= 12 ? vs_mac_to_u64(d) ^ vs_mac_to_u64(d + 6) : 0;
        return (int)(mix64(macs ^ ((uint64_t)(vlan & 0xfff) << 48) ^
                           ((uint64_t)type << 32)) & (VS_SLB_BUCKETS - 1));
    }
    h = mix64(h ^ ((uint64_t)proto << 40));
    if ((proto == 6 || proto == 17 || proto == 132) && l4 && len >= l4 + 4)
        h = mix64(h ^ (vs_rd16(d + l4) ^ vs_rd16(d + l4 + 2)));
    return (int)(h & (VS_SLB_BUCKETS - 1));
}

int vs_tcp_hash(const uint8_t *frame, size_t len, uint16_t vlan)
{
    struct vs_parsed ps;
    if (len > VS_MAX_FRAME)
        len = VS_MAX_FRAME;
    if (vs_parse(frame, (uint32_t)len, &ps) < 0)
        return l3l4_bucket(frame, (uint32_t)len, 0, vlan);
    return l3l4_bucket(frame, (uint32_t)len, ps.l3_offset, vlan);
}

/* The member a hash bucket points at, or the active one while the bucket
 * points nowhere usable (a member just disabled, before the control plane
 * moves its buckets). */
static inline int bucket_member(struct vs_dp *dp, const struct vs_port *p,
                                int b)
{
    int i = p->slb_bucket[b];
    if (i != VS_UNUSED && usable(dp, i))
        return i;
    return usable(dp, p->active) ? p->active : -1;
}

int vs_bond_output_iface(struct vs_dp *dp, struct vs_port *p,
                         const struct vs_pkt *pkt)
{
    switch (p->bond_mode) {
    case VS_BOND_NONE:
        return p->n_members ? p->members[0] : -1;
    case VS_BOND_ACTIVE_BACKUP:
        return usable(dp, p->active) ? p->active : -1;
    case VS_BOND_BALANCE_TCP: {
        int b = l3l4_bucket(pkt->data, pkt->len, pkt->l3_offset, pkt->vlan);
        p->slb_load[b] += pkt->len;
        return bucket_member(dp, p, b);
    }
    default: {
        int b = vs_slb_hash(pkt->data + 6, pkt->vlan);
        p->slb_load[b] += pkt->len;
        int i = p->slb_bucket[b];
        if (i != VS_UNUSED && usable(dp, i))
            return i;
        return usable(dp, p->active) ? p->active : -1;
    }
    }
}

/* The member frames from (mac, vlan) leave by; no traffic is accounted. */
static int member_for(struct vs_dp *dp, const struct vs_port *p,
                      const uint8_t *mac, uint16_t vlan)
{
    switch (p->bond_mode) {
    case VS_BOND_NONE:
        return p->n_members ? p->members[0] : -1;
    case VS_BOND_ACTIVE_BACKUP:
    case VS_BOND_BALANCE_TCP:   /* no learning packets under LACP: active */
        return usable(dp, p->active) ? p->active : -1;
    default: {
        int i = p->slb_bucket[vs_slb_hash(mac, vlan)];
        if (i != VS_UNUSED && usable(dp, i))
            return i;
        return usable(dp, p->active) ? p->active : -1;
    }
    }
}

/* RARP "request reverse" as Open vSwitch composes it: the station's MAC as
 * sender and target, addresses zero; padded to the 60-byte minimum. */
static uint32_t compose_rarp(uint8_t *buf, const uint8_t *mac, bool tagged,
                             uint16_t tci)
{
    static const uint8_t arp_hdr[8] = {0, 1, 8, 0, 6, 4, 0, 3};
    uint32_t off = 0;
    memset(buf, 0, 64);
    memset(buf, 0xff, 6);
    memcpy(buf + 6, mac, 6);
    off = 12;
    if (tagged) {
        buf[off++] = TPID_8021Q >> 8;
        buf[off++] = TPID_8021Q & 0xff;
        buf[off++] = (uint8_t)(tci >> 8);
        buf[off++] = (uint8_t)tci;
    }
    buf[off++] = 0x80;
    buf[off++] = 0x35;
    memcpy(buf + off, arp_hdr, 8);
    off += 8;
    memcpy(buf + off, mac, 6);          /* sender hardware address */
    off += 6 + 4;                       /* sender protocol address 0 */
    memcpy(buf + off, mac, 6);          /* target hardware address */
    off += 6 + 4;                       /* target protocol address 0 */
    return off < 60 ? 60 : off;
}

int vs_bond_learning_packets_locked(struct vs_dp *dp, int port_id)
{
    struct vs_port *p = &dp->ports[port_id];
    struct vs_fdb *f = &dp->bridges[p->bridge]->fdb;
    uint8_t frame[64];
    int sent = 0;
    for (uint32_t s = 0; s <= f->mask; s++) {
        const struct vs_fdb_slot *sl = &f->slots[s];
        if (!sl->key || sl->port == port_id)
            continue;
        uint16_t vlan = (uint16_t)((sl->key >> 48) & 0xfff);
        if (!vs_vlan_carries(p, vlan))
            continue;
        uint8_t mac[6];
        for (int k = 0; k < 6; k++)
            mac[k] = (uint8_t)(sl->key >> (40 - 8 * k));
        int m = member_for(dp, p, mac, vlan);
        if (m < 0)
            continue;
        uint32_t len = compose_rarp(frame, mac, vs_vlan_egress_tagged(p, vlan),
                                    vlan);
        struct iovec iov = {.iov_base = frame, .iov_len = len};
        if (vs_iface_write(dp, &dp->ifaces[m], NULL, &iov, 1, len) == 0)
            sent++;
    }
    return sent;
}

bool vs_bond_admissible(struct vs_dp *dp, const struct vs_port *p,
                        const struct vs_iface *in, const struct vs_pkt *pkt,
                        int learned_port)
{
    int self = (int)(in - dp->ifaces);
    if (p->lag)
        return in->enabled;
    switch (p->bond_mode) {
    case VS_BOND_NONE:
        return true;
    case VS_BOND_BALANCE_TCP:
        return false;      /* balance-tcp without LACP carries nothing */
    case VS_BOND_ACTIVE_BACKUP:
        return self == p->active;
    default:
        if (vs_mac_is_group(pkt->data))
            return self == p->active;
        return learned_port < 0 || learned_port == in->port;
    }
}
