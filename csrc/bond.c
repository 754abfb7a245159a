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
