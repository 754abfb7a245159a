/*
 * bond.c - which member of a port a frame leaves by, and whether a frame
 * arriving on a member may enter at all (Open vSwitch's bonding.rst).
 *
 *   active-backup: send on the active member only; accept on it only.
 *   balance-slb:   send on the member its (source MAC, VLAN) bucket points
 *                  at; accept broadcast/multicast on the active member only,
 *                  and drop unicast whose source is learned on another port
 *                  (our own frame coming back through the upstream switch).
 *
 * The control plane decides which members are enabled, which is active and
 * where each SLB bucket points; this file only reads those choices.
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

int vs_bond_output_iface(struct vs_dp *dp, struct vs_port *p,
                         const struct vs_pkt *pkt)
{
    switch (p->bond_mode) {
    case VS_BOND_NONE:
        return p->n_members ? p->members[0] : -1;
    case VS_BOND_ACTIVE_BACKUP:
        return usable(dp, p->active) ? p->active : -1;
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
    switch (p->bond_mode) {
    case VS_BOND_NONE:
        return true;
    case VS_BOND_ACTIVE_BACKUP:
        return self == p->active;
    default:
        if (vs_mac_is_group(pkt->data))
            return self == p->active;
        return learned_port < 0 || learned_port == in->port;
    }
}
