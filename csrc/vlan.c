/*
 * vlan.c - which VLAN a frame belongs to, where it may go, and whether it
 * leaves tagged.  The rules are Open vSwitch's ("VLAN Configuration" in
 * vswitch.xml); tests/engine/test_vlan.py walks every row of that table.
 *
 *   mode             ingress                         egress
 *   access (tag)     untagged or VID 0 -> tag        only VLAN tag, untagged
 *   trunk            VID in trunks (untagged = 0)    VLAN in trunks, tagged
 *                                                    (VLAN 0 untagged)
 *   native-tagged    untagged/VID 0 -> tag,          tag or trunks, tagged
 *                    VID in trunks or = tag
 *   native-untagged  as native-tagged                untagged in VLAN tag
 *
 * An empty trunks set means every VLAN (trunk_all).  A priority tag (VID 0)
 * keeps its PCP and DEI bits on the VLAN it is assigned.
 */
#include "internal.h"

static inline bool trunked(const struct vs_port *p, uint16_t vlan)
{
    return p->trunk_all || (p->trunks[vlan >> 3] & (1u << (vlan & 7)));
}

bool vs_vlan_carries(const struct vs_port *p, uint16_t vlan)
{
    switch (p->vlan_mode) {
    case VS_VLAN_ACCESS:
        return vlan == p->tag;
    case VS_VLAN_TRUNK:
        return trunked(p, vlan);
    default:
        return vlan == p->tag || trunked(p, vlan);
    }
}

bool vs_vlan_egress_tagged(const struct vs_port *p, uint16_t vlan)
{
    if (vlan == 0 || p->vlan_mode == VS_VLAN_ACCESS)
        return false;
    if (p->vlan_mode == VS_VLAN_NATIVE_UNTAGGED && vlan == p->tag)
        return false;
    return true;
}

bool vs_vlan_ingress(const struct vs_port *p, struct vs_pkt *pkt,
                     const struct vs_parsed *ps)
{
    uint16_t vid = ps->ntags ? (ps->outer_tci & 0xfff) : 0;
    uint16_t prio = ps->ntags ? (ps->outer_tci & 0xf000) : 0;
    pkt->tag_len = ps->ntags ? VLAN_HLEN_ : 0;
    pkt->payload_off = 12 + pkt->tag_len;
    switch (p->vlan_mode) {
    case VS_VLAN_ACCESS:
        if (vid != 0)
            return false;
        pkt->vlan = p->tag;
        break;
    case VS_VLAN_TRUNK:
        if (!trunked(p, vid))
            return false;
        pkt->vlan = vid;
        break;
    default: /* native-tagged, native-untagged */
        if (vid == 0)
            pkt->vlan = p->tag;
        else if (vid == p->tag || trunked(p, vid))
            pkt->vlan = vid;
        else
            return false;
        break;
    }
    pkt->tci = (uint16_t)(prio | pkt->vlan);
    return true;
}
