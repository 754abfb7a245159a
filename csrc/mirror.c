/*
 * mirror.c - port mirroring with Open vSwitch's semantics (the Mirror
 * table of vswitch.xml; ofproto-dpif-xlate.c's mirror_packet()).
 *
 * Configuration is kept per bridge in up to VS_MAX_MIRRORS slots and
 * folded into per-port bit masks when it changes (mirror_src, mirror_dst,
 * mirror_out), so the forwarding pass never walks the mirror table to know
 * whether a frame is selected: it ORs the masks of the ports it touches
 * (forward.c) and calls vs_mirror_frame() with them.  A bridge without
 * mirrors costs one branch per frame (br->mirrors_on).
 *
 * Thread safety: configuration calls take the datapath lock like every
 * control call; vs_mirror_frame() runs in the forwarding pass, which holds
 * it.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static inline bool bit(const uint8_t *map, unsigned i)
{
    return map[i >> 3] & (1u << (i & 7));
}

static inline void clear_bit(uint8_t *map, unsigned i)
{
    map[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

static bool same_destination(const struct vs_mirror *a, const struct vs_mirror *b)
{
    return a->output_port >= 0 ? a->output_port == b->output_port
                               : (b->output_port < 0 && a->output_vlan == b->output_vlan);
}

/* Fold the mirror slots into the bridge's and its ports' masks. */
static void recompute(struct vs_dp *dp, struct vs_bridge *br)
{
    br->mirrors_on = 0;
    br->mirror_all = 0;
    for (int m = 0; m < VS_MAX_MIRRORS; m++) {
        struct vs_mirror *mi = &br->mirrors[m];
        if (!mi->in_use)
            continue;
        br->mirrors_on |= 1u << m;
        if (mi->select_all)
            br->mirror_all |= 1u << m;
    }
    for (int m = 0; m < VS_MAX_MIRRORS; m++) {
        struct vs_mirror *mi = &br->mirrors[m];
        mi->dup = 0;
        if (!mi->in_use)
            continue;
        for (int k = 0; k < VS_MAX_MIRRORS; k++)
            if (br->mirrors[k].in_use && same_destination(mi, &br->mirrors[k]))
                mi->dup |= 1u << k;
    }
    for (int i = 0; i < br->n_ports; i++) {
        uint16_t p = br->ports[i];
        struct vs_port *port = &dp->ports[p];
        port->mirror_src = port->mirror_dst = 0;
        port->mirror_out = false;
        for (int m = 0; m < VS_MAX_MIRRORS; m++) {
            const struct vs_mirror *mi = &br->mirrors[m];
            if (!mi->in_use)
                continue;
            if (bit(mi->src, p))
                port->mirror_src |= 1u << m;
            if (bit(mi->dst, p))
                port->mirror_dst |= 1u << m;
            if (mi->output_port == p)
                port->mirror_out = true;
        }
    }
}

static bool port_of(const struct vs_dp *dp, int br, int p)
{
    return p >= 0 && p < VS_MAX_PORTS && dp->ports[p].in_use && dp->ports[p].bridge == br;
}

static int mirror_set_locked(struct vs_dp *dp, int b, int slot,
                             const struct vs_mirror_config *cfg)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (slot < 0 || slot >= VS_MAX_MIRRORS)
        return -EINVAL;
    bool to_port = cfg->output_port >= 0;
    if (to_port == (cfg->output_vlan != 0))
        return -EINVAL;                       /* exactly one destination */
    if (to_port && !port_of(dp, b, cfg->output_port))
        return -EINVAL;
    if (!to_port && (cfg->output_vlan < 1 || cfg->output_vlan > 4094))
        return -EINVAL;
    for (int p = 0; p < VS_MAX_PORTS; p++)
        if ((bit(cfg->select_src, p) || bit(cfg->select_dst, p)) && !port_of(dp, b, p))
            return -EINVAL;

    struct vs_mirror *mi = &br->mirrors[slot];
    if (!mi->in_use)
        memset(&mi->stats, 0, sizeof mi->stats);
    mi->in_use = true;
    mi->select_all = cfg->select_all != 0;
    mi->all_vlans = cfg->all_vlans != 0;
    mi->output_port = to_port ? cfg->output_port : -1;
    mi->output_vlan = to_port ? 0 : (uint16_t)cfg->output_vlan;
    memcpy(mi->src, cfg->select_src, sizeof mi->src);
    memcpy(mi->dst, cfg->select_dst, sizeof mi->dst);
    memcpy(mi->vlans, cfg->select_vlan, sizeof mi->vlans);
    recompute(dp, br);
    if (to_port)   /* nothing is learned on an output port: forget what was */
        fdb_flush(&br->fdb, cfg->output_port);
    return 0;
}

int vs_mirror_set(vs_dp *dp, int br, int slot, const struct vs_mirror_config *cfg)
{
    LOCKED(mirror_set_locked(dp, br, slot, cfg));
}

static int mirror_del_locked(struct vs_dp *dp, int b, int slot)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (slot < 0 || slot >= VS_MAX_MIRRORS || !br->mirrors[slot].in_use)
        return -ENOENT;
    memset(&br->mirrors[slot], 0, sizeof br->mirrors[slot]);
    recompute(dp, br);
    return 0;
}

int vs_mirror_del(vs_dp *dp, int br, int slot)
{
    LOCKED(mirror_del_locked(dp, br, slot));
}

static int mirror_stats_locked(struct vs_dp *dp, int b, int slot,
                               struct vs_mirror_stats *out)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (slot < 0 || slot >= VS_MAX_MIRRORS || !br->mirrors[slot].in_use)
        return -ENOENT;
    *out = br->mirrors[slot].stats;
    return 0;
}

int vs_mirror_stats(vs_dp *dp, int br, int slot, struct vs_mirror_stats *out)
{
    LOCKED(mirror_stats_locked(dp, br, slot, out));
}

void vs_mirror_forget_port(struct vs_dp *dp, struct vs_bridge *br, int port)
{
    if (!br->mirrors_on)
        return;
    for (int m = 0; m < VS_MAX_MIRRORS; m++) {
        struct vs_mirror *mi = &br->mirrors[m];
        clear_bit(mi->src, (unsigned)port);
        clear_bit(mi->dst, (unsigned)port);
        if (mi->output_port == port)
            mi->output_port = -1;   /* kept, but mirrors nowhere */
    }
    recompute(dp, br);
}

/* --- the forwarding pass ---------------------------------------------------- */

static int why(const struct vs_bridge *br, const struct vs_port *inp, int m)
{
    uint32_t b = 1u << m;
    return (inp->mirror_src & b) ? 1 : (br->mirror_all & b) ? 3 : 2;
}

void vs_mirror_frame(struct vs_dp *dp, struct vs_bridge *br, struct vs_iface *in,
                     struct vs_pkt *pkt, uint32_t candidates)
{
    const struct vs_port *inp = &dp->ports[in->port];
    uint32_t done = 0;
    candidates &= br->mirrors_on;
    while (candidates) {
        int m = __builtin_ctz(candidates);
        candidates &= candidates - 1;
        struct vs_mirror *mi = &br->mirrors[m];
        if ((done >> m) & 1)
            continue;      /* its destination has the frame already */
        if (!mi->all_vlans && !bit(mi->vlans, pkt->vlan))
            continue;
        done |= mi->dup;
        TRACE(dp, VS_TRACE_MIRROR, m, why(br, inp, m), mi->output_vlan);
        if (!dp->trace) {
            mi->stats.tx_packets++;
            mi->stats.tx_bytes += pkt->len;
        }
        dp->tc.mirror = m;
        if (mi->output_port >= 0) {
            vs_port_output(dp, pkt, &dp->ports[mi->output_port], false, in);
        } else if (mi->output_vlan && mi->output_vlan != pkt->vlan) {
            /* RSPAN: every port that carries output_vlan (but the mirror
             * outputs) gets the frame in that VLAN, the input port too, as
             * in Open vSwitch. */
            uint16_t vlan = pkt->vlan, tci = pkt->tci;
            pkt->vlan = mi->output_vlan;
            pkt->tci = (uint16_t)((tci & 0xf000) | mi->output_vlan);
            for (int i = 0; i < br->n_ports; i++) {
                struct vs_port *op = &dp->ports[br->ports[i]];
                if (!op->mirror_out && vs_vlan_carries(op, pkt->vlan))
                    vs_port_output(dp, pkt, op, false, in);
            }
            pkt->vlan = vlan;
            pkt->tci = tci;
        }
        dp->tc.mirror = -1;
    }
}
