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
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static inline void drop(struct vs_iface *ifc, int reason)
{
    ifc->stats.drops[reason]++;
}

int vs_iface_write(struct vs_dp *dp, struct vs_iface *out,
                   const struct vs_vnet_hdr *vnet, struct iovec *iov,
                   int iovcnt, uint32_t frame_len)
{
    (void)dp;
    struct iovec v[5];
    struct vs_vnet_hdr zero;
    int k = 0;
    if (out->vnet) {
        if (!vnet) {
            memset(&zero, 0, sizeof zero);
            vnet = &zero;
        }
        v[k].iov_base = (void *)vnet;
        v[k].iov_len = VS_VNET_HDR_LEN;
        k++;
    }
    for (int i = 0; i < iovcnt && k < 5; i++)
        v[k++] = iov[i];
    ssize_t r;
    do {
        r = writev(out->fd, v, k);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        drop(out, VS_DROP_TX_ERROR);
        return -errno;
    }
    out->stats.tx_packets++;
    out->stats.tx_bytes += frame_len;
    return 0;
}

/* Send pkt out of port op (which carries pkt->vlan or the frame would not
 * have got here for a flood).  unicast: count a VLAN mismatch as a drop. */
static void output_port(struct vs_dp *dp, struct vs_pkt *pkt,
                        struct vs_port *op, bool unicast,
                        struct vs_iface *in)
{
    if (!vs_vlan_carries(op, pkt->vlan)) {
        if (unicast)
            drop(in, VS_DROP_VLAN);
        return;
    }
    if (op->n_members == 0 && !unicast)
        return;  /* a port still being set up, or whose device failed to
                    attach: nothing to flood to, nothing dropped */
    int oi = vs_bond_output_iface(dp, op, pkt);
    if (oi < 0) {
        drop(in, VS_DROP_NO_MEMBER);
        return;
    }
    struct vs_iface *out = &dp->ifaces[oi];
    if (out->failed || !out->enabled) {
        drop(out, VS_DROP_IFACE_DOWN);
        return;
    }
    bool gso = vs_vnet_is_gso(&pkt->vnet);
    if (!out->vnet) {
        if (gso) {
            drop(out, VS_DROP_NO_GSO);
            return;
        }
        vs_vnet_complete_csum(pkt);
    }

    uint8_t tag[4];
    struct iovec iov[3];
    int n;
    uint32_t len;
    bool tagged = vs_vlan_egress_tagged(op, pkt->vlan);
    if (tagged && !(pkt->tag_len && vs_rd16(pkt->data + 14) == pkt->tci)) {
        /* push, or rewrite a tag that carries another VID (priority tag) */
        tag[0] = TPID_8021Q >> 8;
        tag[1] = TPID_8021Q & 0xff;
        tag[2] = (uint8_t)(pkt->tci >> 8);
        tag[3] = (uint8_t)pkt->tci;
        iov[0].iov_base = pkt->data;
        iov[0].iov_len = 12;
        iov[1].iov_base = tag;
        iov[1].iov_len = 4;
        iov[2].iov_base = pkt->data + pkt->payload_off;
        iov[2].iov_len = pkt->len - pkt->payload_off;
        n = 3;
        len = pkt->len - pkt->tag_len + 4;
    } else if (!tagged && pkt->tag_len) {
        iov[0].iov_base = pkt->data;
        iov[0].iov_len = 12;
        iov[1].iov_base = pkt->data + pkt->payload_off;
        iov[1].iov_len = pkt->len - pkt->payload_off;
        n = 2;
        len = pkt->len - pkt->tag_len;
    } else {
        iov[0].iov_base = pkt->data;
        iov[0].iov_len = pkt->len;
        n = 1;
        len = pkt->len;
    }
    uint32_t l2 = pkt->l3_offset - pkt->tag_len + (tagged ? 4 : 0);
    if (!gso && len - l2 > out->mtu) {
        drop(out, VS_DROP_OVERSIZE);
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
    vs_iface_write(dp, out, &h, iov, n, len);
}

static void flood(struct vs_dp *dp, struct vs_bridge *br, struct vs_pkt *pkt,
                  struct vs_iface *in)
{
    for (int i = 0; i < br->n_ports; i++) {
        uint16_t p = br->ports[i];
        if (p != in->port)
            output_port(dp, pkt, &dp->ports[p], false, in);
    }
}

static inline bool reserved_dst(const uint8_t *d)
{
    /* 01:80:c2:00:00:00-0f: STP, LACP, pause, 802.1X... never forwarded by
     * a bridge (802.1D), left for the control plane. */
    return d[0] == 0x01 && d[1] == 0x80 && d[2] == 0xc2 && d[3] == 0 &&
           d[4] == 0 && (d[5] & 0xf0) == 0;
}

/* First pass: true if the frame may be forwarded. */
static bool classify(struct vs_dp *dp, struct vs_iface *in,
                     struct vs_port *inp, struct vs_fdb *fdb,
                     struct vs_pkt *pkt)
{
    (void)dp;
    if (in->vnet && !vs_vnet_valid(&pkt->vnet, pkt->len)) {
        drop(in, VS_DROP_BAD_VNET_HDR);
        return false;
    }
    struct vs_parsed ps;
    if (vs_parse(pkt->data, pkt->len, &ps) < 0) {
        drop(in, VS_DROP_RUNT);
        return false;
    }
    pkt->l3_offset = ps.l3_offset;
    if (!vs_vnet_is_gso(&pkt->vnet) && pkt->len - ps.l3_offset > in->mtu) {
        drop(in, VS_DROP_OVERSIZE);
        return false;
    }
    if (reserved_dst(pkt->data)) {
        drop(in, VS_DROP_RESERVED_DST);
        return false;
    }
    if (!vs_vlan_ingress(inp, pkt, &ps)) {
        drop(in, VS_DROP_VLAN);
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

static inline bool learnable(const uint8_t *src)
{
    static const uint8_t zero[6];
    return !vs_mac_is_group(src) && memcmp(src, zero, 6) != 0;
}

void vs_forward_batch(struct vs_dp *dp, struct vs_iface *in,
                      struct vs_pkt *pkts, int n)
{
    struct vs_port *inp = &dp->ports[in->port];
    struct vs_bridge *br = dp->bridges[inp->bridge];
    struct vs_fdb *fdb = &br->fdb;
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    bool ok[VS_BATCH];

    for (int i = 0; i < n; i++) {
        in->stats.rx_packets++;
        in->stats.rx_bytes += pkts[i].len;
        ok[i] = classify(dp, in, inp, fdb, &pkts[i]);
    }
    for (int i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        struct vs_pkt *pkt = &pkts[i];
        if (!in->enabled) {
            drop(in, VS_DROP_BOND);
            continue;
        }
        if (inp->bond_mode != VS_BOND_NONE) {
            int64_t s = fdb_find(fdb, pkt->src_key, pkt->src_hash);
            int learned = s >= 0 ? fdb->slots[s].port : -1;
            if (!vs_bond_admissible(dp, inp, in, pkt, learned)) {
                drop(in, VS_DROP_BOND);
                continue;
            }
        }
        if (learnable(pkt->data + 6))
            fdb_learn(fdb, pkt->src_key, pkt->src_hash, in->port, now_s,
                         br->ports, br->n_ports);
        if (vs_mac_is_group(pkt->data)) {
            flood(dp, br, pkt, in);
            continue;
        }
        int64_t s = fdb_find(fdb, pkt->dst_key, pkt->dst_hash);
        if (s < 0) {
            flood(dp, br, pkt, in);
        } else if (fdb->slots[s].port == in->port) {
            drop(in, VS_DROP_SAME_PORT);
        } else {
            output_port(dp, pkt, &dp->ports[fdb->slots[s].port], true, in);
        }
    }
}
