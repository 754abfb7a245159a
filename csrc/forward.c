/*
 * forward.c - the forwarding decision for a batch of frames from one
 * interface, and writing them out.
 *
 * Two passes over the batch.  The first parses, checks and classifies each
 * frame and prefetches the FDB slots of its source and destination; the
 * second learns, looks up and writes.  By the time the second pass reaches
 * a frame, its slots are (usually) in cache, even for a table of a million
 * entries.
 *
 * Output never copies a frame: a VLAN tag is pushed or popped by writing
 * the frame in up to three pieces with writev() (MACs, new tag, the rest),
 * and the virtio-net header's offsets move by the same four bytes.
 *
 * Mirrors are outputs of the same decision: the mirrors a frame selects
 * (by the port it came in on, the ports it goes out of, its VLAN) get it
 * once the normal outputs are done (mirror.c).  vs_dp_trace runs this very
 * code with a recorder (dp->trace) that notes each step; its hooks are the
 * lines that begin "if (tracing)".  tracing is read from
 * dp->trace once per burst and once per output and passed down, so the
 * common path tests a register, not memory that every counter update
 * might have changed (the engine is built with -fno-strict-aliasing).
 */
#include <string.h>

#include "internal.h"

static inline void drop(struct vs_dp *dp, struct vs_iface *ifc, int reason)
{
    ifc->stats.drops[reason]++;
    if (dp->trace)
        vs_trace_drop(dp, ifc, reason);
}

/* Write pkt to out as port op tags its VLAN: the frame is never copied, a
 * tag is pushed or popped by writing it in up to three pieces. */
static void emit(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                 struct vs_iface *out, bool tracing)
{
    uint8_t tag[4];
    struct vs_parts fp = {.head = pkt->data, .head_len = pkt->len};
    bool tagged = vs_vlan_egress_tagged(op, pkt->vlan);
    if (tagged && !(pkt->tag_len && vs_rd16(pkt->data + 14) == pkt->tci)) {
        /* push, or rewrite a tag that carries another VID (priority tag) */
        tag[0] = TPID_8021Q >> 8;
        tag[1] = TPID_8021Q & 0xff;
        tag[2] = (uint8_t)(pkt->tci >> 8);
        tag[3] = (uint8_t)pkt->tci;
        fp.head_len = 12;
        fp.tag = tag;
        fp.tail = pkt->data + pkt->payload_off;
        fp.tail_len = pkt->len - pkt->payload_off;
    } else if (!tagged && pkt->tag_len) {
        fp.head_len = 12;
        fp.tail = pkt->data + pkt->payload_off;
        fp.tail_len = pkt->len - pkt->payload_off;
    }
    uint32_t len = fp.head_len + (fp.tag ? 4 : 0) + fp.tail_len;
    uint32_t l2 = pkt->l3_offset - pkt->tag_len + (tagged ? 4 : 0);
    if (!vs_vnet_is_gso(&pkt->vnet) && len - l2 > out->mtu) {
        drop(dp, out, VS_DROP_OVERSIZE);
        return;
    }
    if (tracing) {
        vs_trace_output(dp, op, out, pkt->vlan, tagged);
        return;
    }
    struct vs_vnet_hdr h = pkt->vnet;
    if (len != pkt->len) {
        int delta = (int)len - (int)pkt->len;
        if (h.flags & VNET_F_NEEDS_CSUM)
            h.csum_start = (uint16_t)(h.csum_start + delta);
        if (h.hdr_len)
            h.hdr_len = (uint16_t)(h.hdr_len + delta);
    }
    vs_tx(dp, out, &h, &fp);
}

struct segment_out {
    struct vs_port *op;
    struct vs_iface *out;
};

static void emit_segment(struct vs_dp *dp, struct vs_pkt *seg, void *ctx)
{
    struct segment_out *so = ctx;
    emit(dp, seg, so->op, so->out, false);
}

static inline bool takes_offloads(const struct vs_iface *out)
{
    return out->vnet && !out->no_offload;
}

/* vs_port_output's body, inlined into the forwarding pass (output_port). */
static inline bool port_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                               bool unicast, struct vs_iface *in, bool tracing)
{
    if (op->n_members == 0) {
        if (unicast)
            drop(dp, in, VS_DROP_NO_MEMBER);
        else if (tracing)
            vs_trace_step(dp, VS_TRACE_SKIP, (int)(op - dp->ports), 2, 0);
        return unicast;  /* flood: a port still being set up, or whose device
                            failed to attach, is no destination */
    }
    int oi = vs_bond_output_iface(dp, op, pkt);
    if (oi < 0) {
        /* a bond with no usable member */
        drop(dp, unicast ? in : &dp->ifaces[op->members[0]], VS_DROP_NO_MEMBER);
        return unicast;
    }
    struct vs_iface *out = &dp->ifaces[oi];
    if (out->failed || !out->enabled) {
        drop(dp, out, VS_DROP_IFACE_DOWN);
        return false;
    }
    if (!takes_offloads(out) && !tracing) {
        if (vs_vnet_is_gso(&pkt->vnet)) {
            /* Segments are built one by one in a single scratch buffer:
             * they must leave at once, not wait in the transmit queue. */
            struct segment_out so = {op, out};
            bool staging = dp->stage_tx;
            dp->stage_tx = false;
            if (vs_gso_segment(dp, pkt, emit_segment, &so) < 0)
                drop(dp, out, VS_DROP_NO_GSO);
            dp->stage_tx = staging;
            return false;
        }
        if (pkt->vnet.flags & VNET_F_NEEDS_CSUM) {
            /* Finished once in the shared buffer, which is right for every
             * output -- but copies queued earlier still say "partial", so
             * they go out first. */
            vs_tx_flush(dp);
            vs_vnet_complete_csum(pkt);
        }
    }
    emit(dp, pkt, op, out, tracing);
    return false;
}

bool vs_port_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                    bool unicast, struct vs_iface *in)
{
    return port_output(dp, pkt, op, unicast, in, dp->trace != NULL);
}

/* Send pkt out of port op.  For a flood, a port that does not carry the
 * VLAN is simply not a destination.  For unicast, a frame that cannot go
 * at all is the input's drop: returns true when it counted one there. */
static bool output_port(struct vs_dp *dp, struct vs_pkt *pkt,
                        struct vs_port *op, bool unicast,
                        struct vs_iface *in, bool tracing)
{
    if (!vs_vlan_carries(op, pkt->vlan)) {
        if (unicast)
            drop(dp, in, VS_DROP_VLAN);
        else if (tracing)
            vs_trace_step(dp, VS_TRACE_SKIP, (int)(op - dp->ports), 1, 0);
        return unicast;
    }
    dp->mirror_hits |= op->mirror_dst;
    return port_output(dp, pkt, op, unicast, in, tracing);
}

static void flood(struct vs_dp *dp, struct vs_bridge *br, struct vs_pkt *pkt,
                  struct vs_iface *in, bool tracing)
{
    for (int i = 0; i < br->n_ports; i++) {
        uint16_t p = br->ports[i];
        if (p == in->port)
            continue;
        if (!dp->ports[p].mirror_out)
            output_port(dp, pkt, &dp->ports[p], false, in, tracing);
        else if (tracing)
            vs_trace_step(dp, VS_TRACE_SKIP, p, 3, 0);
    }
}

static inline bool reserved_dst(const uint8_t *d)
{
    /* 01:80:c2:00:00:00-0f: STP, LACP, pause, 802.1X... never forwarded by
     * a bridge (802.1D), left for the control plane. */
    return d[0] == 0x01 && d[1] == 0x80 && d[2] == 0xc2 && d[3] == 0 &&
           d[4] == 0 && (d[5] & 0xf0) == 0;
}

/* A link-local frame the control plane asked for (vs_iface_set_claim):
 * LACPDUs are slow-protocol frames (ethertype 0x8809) to 01:80:c2:00:00:02. */
static inline bool claimed(const struct vs_iface *in, const uint8_t *d,
                           const struct vs_parsed *ps)
{
    return (in->claim & VS_CLAIM_LACP) && d[5] == 0x02 && ps->ethertype == 0x8809;
}

/* First pass: true if the frame may be forwarded. */
static bool classify(struct vs_dp *dp, struct vs_iface *in,
                     struct vs_port *inp, struct vs_fdb *fdb,
                     struct vs_pkt *pkt)
{
    if (in->vnet && !vs_vnet_valid(&pkt->vnet, pkt->len)) {
        drop(dp, in, VS_DROP_BAD_VNET_HDR);
        return false;
    }
    struct vs_parsed ps;
    if (vs_parse(pkt->data, pkt->len, &ps) < 0) {
        drop(dp, in, VS_DROP_RUNT);
        return false;
    }
    pkt->l3_offset = ps.l3_offset;
    if (!vs_vnet_is_gso(&pkt->vnet) && pkt->len - ps.l3_offset > in->mtu) {
        drop(dp, in, VS_DROP_OVERSIZE);
        return false;
    }
    if (reserved_dst(pkt->data)) {
        if (in->claim && claimed(in, pkt->data, &ps))
            vs_upcall_claimed(dp, in, pkt);
        else
            drop(dp, in, VS_DROP_RESERVED_DST);
        return false;
    }
    if (!vs_vlan_ingress(inp, pkt, &ps)) {
        drop(dp, in, VS_DROP_VLAN);
        return false;
    }
    pkt->dst_key = fdb_key(pkt->vlan, vs_mac_to_u64(pkt->data));
    pkt->src_key = fdb_key(pkt->vlan, vs_mac_to_u64(pkt->data + 6));
    pkt->dst_hash = fdb_hash(fdb, pkt->dst_key);
    pkt->src_hash = fdb_hash(fdb, pkt->src_key);
    fdb_prefetch(fdb, pkt->src_hash);
    fdb_prefetch(fdb, pkt->dst_hash);
    return true;
}

static void learn(struct vs_dp *dp, struct vs_bridge *br, struct vs_iface *in,
                  const struct vs_pkt *pkt, uint32_t now_s, bool tracing)
{
    static const uint8_t zero[6];
    const uint8_t *src = pkt->data + 6;
    if (vs_mac_is_group(src) || memcmp(src, zero, 6) == 0) {
        if (tracing)
            vs_trace_step(dp, VS_TRACE_NO_LEARN, vs_mac_is_group(src) ? 1 : 2, 0, 0);
        return;
    }
    if (tracing)
        vs_trace_learn(dp, br, pkt, in->port);
    else
        fdb_learn(&br->fdb, pkt->src_key, pkt->src_hash, in->port, now_s,
                  br->ports, br->n_ports);
}

/* The port pkt's destination is learned on, or -1 to flood. */
static inline int lookup(struct vs_dp *dp, const struct vs_fdb *fdb,
                         const struct vs_pkt *pkt, bool tracing)
{
    if (vs_mac_is_group(pkt->data))
        return -1;
    int64_t s = fdb_find(fdb, pkt->dst_key, pkt->dst_hash);
    if (tracing)
        return vs_trace_lookup(dp, fdb, pkt, s);
    return s < 0 ? -1 : fdb->slots[s].port;
}

/* Second pass, one frame that passed classify(): admit, learn, look up,
 * send. */
static void forward_one(struct vs_dp *dp, struct vs_bridge *br,
                        struct vs_iface *in, struct vs_port *inp,
                        struct vs_pkt *pkt, uint32_t now_s, bool tracing)
{
    struct vs_fdb *fdb = &br->fdb;
    pkt->out_port = VS_FLOW_OUT_DROP;   /* where it went, for flow.c */
    if (tracing)
        vs_trace_step(dp, VS_TRACE_VLAN, pkt->vlan, inp->vlan_mode, pkt->tci);
    if (!in->enabled) {
        drop(dp, in, VS_DROP_BOND);
        return;
    }
    if (inp->bond_mode != VS_BOND_NONE) {
        int64_t s = fdb_find(fdb, pkt->src_key, pkt->src_hash);
        int learned = s >= 0 ? fdb->slots[s].port : -1;
        bool ok = vs_bond_admissible(dp, inp, in, pkt, learned);
        if (tracing)
            vs_trace_step(dp, VS_TRACE_BOND_ADMIT, ok, inp->bond_mode, inp->active);
        if (!ok) {
            drop(dp, in, VS_DROP_BOND);
            return;
        }
    }
    learn(dp, br, in, pkt, now_s, tracing);
    int dst = lookup(dp, fdb, pkt, tracing);
    if (dst < 0) {
        if (tracing)
            vs_trace_step(dp, VS_TRACE_FLOOD, vs_mac_is_group(pkt->data) ? 2 : 1, 0, 0);
        in->stats.rx_forwarded++;
        pkt->out_port = VS_FLOW_OUT_FLOOD;
        flood(dp, br, pkt, in, tracing);
        return;
    }
    struct vs_port *op = &dp->ports[dst];
    if (op == inp)
        drop(dp, in, VS_DROP_SAME_PORT);
    else if (op->mirror_out)
        drop(dp, in, VS_DROP_MIRROR_PORT);
    else if (!output_port(dp, pkt, op, true, in, tracing)) {
        in->stats.rx_forwarded++;
        pkt->out_port = (uint16_t)dst;
    }
}

void vs_forward_batch(struct vs_dp *dp, struct vs_iface *in,
                      struct vs_pkt *pkts, int n)
{
    struct vs_port *inp = &dp->ports[in->port];
    struct vs_bridge *br = dp->bridges[inp->bridge];
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    bool ok[VS_BATCH];
    const bool tracing = dp->trace != NULL;
    dp->stage_tx = true;
    if (in->capture && !tracing)
        vs_upcall_capture_rx(dp, in, pkts, n);

    for (int i = 0; i < n; i++) {
        in->stats.rx_packets++;
        in->stats.rx_bytes += pkts[i].len;
        /* a port reserved for a mirror's output sends nothing anywhere */
        ok[i] = !inp->mirror_out ? classify(dp, in, inp, &br->fdb, &pkts[i])
                                 : (drop(dp, in, VS_DROP_MIRROR_PORT), false);
    }
    for (int i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        dp->mirror_hits = 0;
        forward_one(dp, br, in, inp, &pkts[i], now_s, tracing);
        if (br->mirrors_on)
            vs_mirror_frame(dp, br, in, &pkts[i],
                            inp->mirror_src | br->mirror_all | dp->mirror_hits);
    }
    /* Flow accounting (flow.c), while the burst is still in cache; a
     * trace accounts nothing. */
    if (br->flow_on && !tracing)
        vs_flow_batch(dp, br, in, pkts, ok, n);
    /* The received buffers the queue points into are reused by the next
     * burst: everything leaves now. */
    vs_tx_flush(dp);
    dp->stage_tx = false;
}
