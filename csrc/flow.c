/*
 * flow.c - flow accounting: the per-bridge flow caches that NetFlow v5 and
 * IPFIX export (vswitch/flowexport/ turns their records into datagrams).
 *
 * Where it runs.  vs_forward_batch() decides every frame of a burst, then
 * hands the burst here when the bridge has a cache turned on (one branch
 * per burst when none is: br->flow_on).  The frames are still in cache, the
 * lock is already held.  Each cache updates one entry per (sampled) frame;
 * nothing is allocated per frame: a cache's table and entries are allocated
 * once, when export is turned on, and a frame whose flow does not fit is
 * counted (no_room) instead.
 *
 * Keys, as Open vSwitch keys its NetFlow flows (ofproto/netflow.c: input
 * port, IPv4 source and destination, protocol, ports -- or ICMP type and
 * code in the destination port, type * 256 + code -- and ToS; we key on the
 * DSCP bits so ECN marks do not split a TCP connection), plus, for IPFIX,
 * the VLAN, the MACs, the ethertype and IPv6 addresses.  The output port is
 * not part of the key: like OVS, a flow records the output of its latest
 * frame, with OVS's sentinels for a flood (65535) and a drop (65533).
 *
 * Parsing is bounds-checked against the frame: IPv4 with options, IPv6's
 * fixed header (extension headers are not walked: the next-header value is
 * the protocol), fragments (only the first one has ports; later ones are
 * keyed with ports 0), a cut L3 or L4 header (keyed with what is there,
 * counted as truncated), an IP length beyond the frame (the bytes present
 * are counted, as bad_length).  Bytes are IP bytes (what NetFlow
 * collectors expect: header and payload, no Ethernet header or padding);
 * a segmentation-offload frame counts as the packets it becomes on the
 * wire, with their headers.
 *
 * Expiry is driven by the control plane: vs_flow_collect() removes flows
 * idle for idle_timeout, cuts long ones at active_timeout (the counts so
 * far are reported and restart from zero), and writes records for them.
 *
 * sFlow packet samples come from the same pass: a bridge's sampler picks
 * one frame in `rate` on average (a random skip between 1 and 2 * rate - 1,
 * as sFlow asks, so periodic traffic cannot hide from it) and queues its
 * first bytes on the upcall channel (VS_UPCALL_SAMPLE, csrc/upcall.c) with
 * the input and output ofports and the input port's sample pool.
 *
 * Thread safety: every public function takes dp->lock (the forwarding
 * thread holds it for the whole burst, so vs_flow_batch() runs under it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd

struct flow_key {
    uint8_t src[16];      /* IPv4 in the first 4 bytes */
    uint8_t dst[16];
    uint8_t smac[6];
    uint8_t dmac[6];
    uint16_t in_port;     /* ofport number */
    uint16_t vlan;
    uint16_t ethertype;
    uint16_t sport;
    uint16_t dport;       /* ICMP: type * 256 + code */
    uint8_t proto;
    uint8_t dscp;
};
_Static_assert(sizeof(struct flow_key) == 56, "flow_key has no padding");

struct flow_entry {
    struct flow_key key;
    uint64_t packets;
    uint64_t bytes;
    int64_t first_ms;      /* first frame since the last report */
    int64_t last_ms;
    uint32_t slot;         /* where the table points at this entry */
    uint16_t out_port;
    uint8_t tos;           /* full ToS byte of the first frame */
    uint8_t tcp_flags;
};

struct vs_sflow_sampler {
    uint32_t rate;
    uint32_t header;            /* bytes of each frame copied */
    uint32_t skip;              /* frames left until the next sample */
    uint64_t rng;
    uint64_t seen, sampled, dropped;
    uint32_t pool[VS_MAX_PORTS];   /* per input port: frames it could sample */
};

struct vs_flow_cache {
    struct vs_flow_config cfg;
    uint32_t mask;              /* table size - 1 */
    uint32_t *table;            /* entry index + 1, 0 = empty */
    struct flow_entry *entries; /* dense: [0, n) in use */
    uint32_t n;
    uint32_t countdown;         /* frames left until the next sample */
    uint64_t seed;
    struct vs_flow_stats st;
};

/* --- the table ------------------------------------------------------------ */

/* Seven independent multiplications (they pipeline, where a chained mix
 * would wait for each), then one final mix: about a third of the latency
 * of a word-by-word chain, and every key bit still reaches the result. */
static uint32_t key_hash(const struct vs_flow_cache *fc, const struct flow_key *k)
{
    static const uint64_t m[7] = {
        0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL,
        0xd6e8feb86659fd93ULL, 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL,
        0x8ebc6af09c88c6e3ULL};
    uint64_t w[7];
    memcpy(w, k, sizeof w);
    uint64_t h = fc->seed;
    for (int i = 0; i < 7; i++)
        h ^= (w[i] ^ m[i]) * m[(i + 3) % 7];
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static int64_t find(const struct vs_flow_cache *fc, const struct flow_key *k,
                    uint32_t h, uint32_t *free_slot)
{
    for (uint32_t s = h & fc->mask;; s = (s + 1) & fc->mask) {
        uint32_t e = fc->table[s];
        if (!e) {
            *free_slot = s;
            return -1;
        }
        if (!memcmp(&fc->entries[e - 1].key, k, sizeof *k))
            return e - 1;
    }
}

/* Remove entry i: backward-shift deletion keeps linear probing correct,
 * then the last entry moves into the hole so entries stay dense. */
static void remove_entry(struct vs_flow_cache *fc, uint32_t i)
{
    uint32_t hole = fc->entries[i].slot;
    fc->table[hole] = 0;
    for (uint32_t s = (hole + 1) & fc->mask; fc->table[s]; s = (s + 1) & fc->mask) {
        uint32_t e = fc->table[s] - 1;
        uint32_t home = key_hash(fc, &fc->entries[e].key) & fc->mask;
        /* move it back if its home is not in (hole, s] */
        if (((s - home) & fc->mask) >= ((s - hole) & fc->mask)) {
            fc->table[hole] = e + 1;
            fc->entries[e].slot = hole;
            fc->table[s] = 0;
            hole = s;
        }
    }
    uint32_t last = --fc->n;
    if (i != last) {
        fc->entries[i] = fc->entries[last];
        fc->table[fc->entries[i].slot] = i + 1;
    }
}

/* --- parsing ------------------------------------------------------------------ */

struct l3info {
    uint32_t ip_len;     /* IP bytes (header + payload) counted */
    uint32_t hdr_len;    /* IP + L4 header bytes, repeated per GSO segment */
    uint8_t tcp_flags;
};

/* Fill the L4 part of the key from l4[0..avail). */
static void parse_l4(struct vs_flow_cache *fc, struct flow_key *k,
                     const uint8_t *l4, uint32_t avail, struct l3info *li)
{
    switch (k->proto) {
    case IPPROTO_TCP_:
        if (avail < 20) {
            fc->st.truncated++;
            return;
        }
        k->sport = vs_rd16(l4);
        k->dport = vs_rd16(l4 + 2);
        li->tcp_flags = l4[13];
        li->hdr_len += (uint32_t)(l4[12] >> 4) * 4;
        return;
    case IPPROTO_UDP_:
        if (avail < 8) {
            fc->st.truncated++;
            return;
        }
        k->sport = vs_rd16(l4);
        k->dport = vs_rd16(l4 + 2);
        li->hdr_len += 8;
        return;
    case IPPROTO_ICMP_:
    case IPPROTO_ICMPV6_:
        if (avail < 2) {
            fc->st.truncated++;
            return;
        }
        k->dport = (uint16_t)(l4[0] << 8 | l4[1]);
        return;
    default:
        return;
    }
}

/* Key the frame; false when this cache does not take it (NetFlow v5 takes
 * IPv4 only).  len counts from the Ethernet header; l3 is where the IP
 * header starts. */
static bool make_key(struct vs_flow_cache *fc, const struct vs_pkt *pkt,
                     uint16_t ofport, struct flow_key *k, struct l3info *li)
{
    const uint8_t *f = pkt->data;
    uint32_t l3 = pkt->l3_offset, len = pkt->len;
    uint16_t type = vs_rd16(f + l3 - 2);
    bool ipv4_only = fc->cfg.flags & VS_FLOW_F_IPV4_ONLY;
    if (ipv4_only && type != ETH_IPV4) {
        fc->st.skipped++;
        return false;
    }
    memset(k, 0, sizeof *k);
    memset(li, 0, sizeof *li);
    k->in_port = ofport;
    k->ethertype = type;
    if (!ipv4_only) {
        k->vlan = pkt->vlan;
        memcpy(k->dmac, f, 6);
        memcpy(k->smac, f + 6, 6);
    }
    uint32_t avail = len - l3;
    const uint8_t *ip = f + l3;
    if (type == ETH_IPV4) {
        if (avail < 20 || (ip[0] >> 4) != 4 || (ip[0] & 15) < 5) {
            fc->st.truncated++;
            li->ip_len = avail;
            return true;
        }
        uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
        uint32_t tot = vs_rd16(ip + 2);
        memcpy(k->src, ip + 12, 4);
        memcpy(k->dst, ip + 16, 4);
        k->proto = ip[9];
        k->dscp = ip[1] & 0xfc;
        if (tot > avail || tot < ihl) {
            /* a GSO frame's total length may be 0 or stale: trust the
             * frame; anything else is a lie we count */
            if (!vs_vnet_is_gso(&pkt->vnet))
                fc->st.bad_length++;
            tot = avail;
        }
        li->ip_len = tot;
        li->hdr_len = ihl;
        if (ihl > avail) {
            fc->st.truncated++;
            return true;
        }
        uint16_t frag = vs_rd16(ip + 6);
        if (frag & 0x1fff) {           /* not the first fragment: no ports */
            fc->st.fragments++;
            return true;
        }
        parse_l4(fc, k, ip + ihl, tot - ihl, li);
    } else if (type == ETH_IPV6) {
        if (avail < 40 || (ip[0] >> 4) != 6) {
            fc->st.truncated++;
            li->ip_len = avail;
            return true;
        }
        uint32_t tot = 40u + vs_rd16(ip + 4);
        memcpy(k->src, ip + 8, 16);
        memcpy(k->dst, ip + 24, 16);
        k->proto = ip[6];
        k->dscp = (uint8_t)(((ip[0] << 4) | (ip[1] >> 4)) & 0xfc);
        if (tot > avail) {
            if (!vs_vnet_is_gso(&pkt->vnet))
                fc->st.bad_length++;
            tot = avail;
        }
        li->ip_len = tot;
        li->hdr_len = 40;
        parse_l4(fc, k, ip + 40, tot - 40, li);
    } else {
        li->ip_len = avail;   /* not IP: the L2 payload */
    }
    return true;
}

/* --- accounting ------------------------------------------------------------------ */

static inline uint8_t tos_of(const struct vs_pkt *pkt, const struct flow_key *k)
{
    const uint8_t *ip = pkt->data + pkt->l3_offset;
    if (pkt->len - pkt->l3_offset < 2)
        return 0;
    if (k->ethertype == ETH_IPV4)
        return ip[1];
    if (k->ethertype == ETH_IPV6)
        return (uint8_t)((ip[0] << 4) | (ip[1] >> 4));
    return 0;
}

static void account(struct vs_flow_cache *fc, const struct vs_pkt *pkt,
                    uint16_t ofport, uint16_t out, int64_t now)
{
    struct flow_key k;
    struct l3info li;
    if (!make_key(fc, pkt, ofport, &k, &li))
        return;
    uint64_t packets = 1, bytes = li.ip_len;
    if (vs_vnet_is_gso(&pkt->vnet) && pkt->vnet.gso_size &&
        li.ip_len > li.hdr_len) {
        /* one frame here, this many on the wire */
        uint32_t payload = li.ip_len - li.hdr_len;
        packets = (payload + pkt->vnet.gso_size - 1) / pkt->vnet.gso_size;
        bytes += (packets - 1) * li.hdr_len;
    }
    uint32_t h = key_hash(fc, &k), slot = 0;
    int64_t e = find(fc, &k, h, &slot);
    struct flow_entry *fe;
    if (e < 0) {
        if (fc->n >= fc->cfg.max_flows) {
            fc->st.no_room += packets;
            return;
        }
        e = fc->n++;
        fe = &fc->entries[e];
        memset(fe, 0, sizeof *fe);
        fe->key = k;
        fe->slot = slot;
        fc->table[slot] = (uint32_t)e + 1;
        fc->st.created++;
    } else {
        fe = &fc->entries[e];
    }
    if (fe->packets == 0) {
        fe->first_ms = now;
        fe->tos = tos_of(pkt, &k);
    }
    fe->packets += packets;
    fe->bytes += bytes;
    fe->last_ms = now;
    fe->out_port = out;
    fe->tcp_flags |= li.tcp_flags;
    fc->st.packets += packets;
}

static inline uint16_t out_ofport(const struct vs_dp *dp, uint16_t out)
{
    if (out == VS_FLOW_OUT_FLOOD || out == VS_FLOW_OUT_DROP)
        return out;
    return dp->ports[out].ofport;
}

static uint32_t next_skip(struct vs_sflow_sampler *sp)
{
    if (sp->rate <= 1)
        return 1;
    sp->rng ^= sp->rng << 13;     /* xorshift64 */
    sp->rng ^= sp->rng >> 7;
    sp->rng ^= sp->rng << 17;
    return 1 + (uint32_t)(sp->rng % (2ull * sp->rate - 1));
}

static void sample(struct vs_dp *dp, struct vs_sflow_sampler *sp,
                   const struct vs_iface *in, const struct vs_pkt *pkts,
                   const bool *ok, int n, uint16_t ofport)
{
    for (int i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        sp->seen++;
        sp->pool[in->port]++;
        if (--sp->skip)
            continue;
        sp->skip = next_skip(sp);
        struct vs_upcall meta = {
            .reason = VS_UPCALL_SAMPLE,
            .port = in->port,
            .iface = (int32_t)(in - dp->ifaces),
            .direction = VS_UPCALL_RX,
            .args = {ofport, out_ofport(dp, pkts[i].out_port), sp->pool[in->port],
                     sp->dropped},
        };
        meta.bridge = dp->ports[in->port].bridge;
        struct iovec iov = {.iov_base = pkts[i].data, .iov_len = pkts[i].len};
        if (vs_upcall_put(dp, &meta, &iov, 1, 0, sp->header))
            sp->sampled++;
        else
            sp->dropped++;
    }
}

void vs_flow_batch(struct vs_dp *dp, struct vs_bridge *br,
                   const struct vs_iface *in, const struct vs_pkt *pkts,
                   const bool *ok, int n)
{
    int64_t now = vs_now_ms_locked(dp);
    uint16_t ofport = dp->ports[in->port].ofport;
    if (br->sampler)
        sample(dp, br->sampler, in, pkts, ok, n, ofport);
    for (int c = 0; c < VS_FLOW_CACHES; c++) {
        struct vs_flow_cache *fc = br->flows[c];
        if (!fc)
            continue;
        for (int i = 0; i < n; i++) {
            if (!ok[i])
                continue;
            if (fc->cfg.sampling > 1 && --fc->countdown) {
                fc->st.unsampled++;
                continue;
            }
            fc->countdown = fc->cfg.sampling;
            account(fc, &pkts[i], ofport, out_ofport(dp, pkts[i].out_port), now);
        }
    }
}

/* --- control ----------------------------------------------------------------------- */

static void cache_free(struct vs_flow_cache *fc)
{
    if (!fc)
        return;
    free(fc->table);
    free(fc->entries);
    free(fc);
}

void vs_flow_release(struct vs_bridge *br)
{
    for (int c = 0; c < VS_FLOW_CACHES; c++) {
        cache_free(br->flows[c]);
        br->flows[c] = NULL;
    }
    free(br->sampler);
    br->sampler = NULL;
    br->flow_on = false;
}

static void update_flow_on(struct vs_bridge *br)
{
    br->flow_on = br->sampler != NULL;
    for (int k = 0; k < VS_FLOW_CACHES; k++)
        br->flow_on |= br->flows[k] != NULL;
}

static int configure_locked(struct vs_dp *dp, int b, int c,
                            const struct vs_flow_config *cfg)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (c < 0 || c >= VS_FLOW_CACHES)
        return -EINVAL;
    if (cfg && (cfg->max_flows == 0 || cfg->max_flows > VS_FLOW_MAX_FLOWS ||
                cfg->sampling == 0 || cfg->idle_timeout_ms == 0))
        return -EINVAL;
    struct vs_flow_cache *fc = NULL;
    if (cfg) {
        fc = calloc(1, sizeof *fc);
        uint32_t size = 16;
        while (size < cfg->max_flows * 2)
            size <<= 1;
        if (fc) {
            fc->table = calloc(size, sizeof *fc->table);
            fc->entries = malloc((size_t)cfg->max_flows * sizeof *fc->entries);
        }
        if (!fc || !fc->table || !fc->entries) {
            cache_free(fc);
            return -ENOMEM;
        }
        fc->cfg = *cfg;
        fc->mask = size - 1;
        fc->countdown = cfg->sampling;
        fc->seed = dp->seed ^ ((uint64_t)b << 8 | (uint64_t)c);
        fc->st.max_flows = cfg->max_flows;
    }
    /* Replacing a cache drops its flows: the control plane collects them
     * (vs_flow_collect with flush) before it reconfigures. */
    cache_free(br->flows[c]);
    br->flows[c] = fc;
    update_flow_on(br);
    return 0;
}

int vs_flow_configure(vs_dp *dp, int br, int cache,
                      const struct vs_flow_config *cfg)
{
    LOCKED(configure_locked(dp, br, cache, cfg));
}

static void fill_record(const struct flow_entry *fe, int reason,
                        struct vs_flow_record *r)
{
    const struct flow_key *k = &fe->key;
    memcpy(r->src, k->src, 16);
    memcpy(r->dst, k->dst, 16);
    memcpy(r->src_mac, k->smac, 6);
    memcpy(r->dst_mac, k->dmac, 6);
    r->in_port = k->in_port;
    r->out_port = fe->out_port;
    r->vlan = k->vlan;
    r->ethertype = k->ethertype;
    r->src_port = k->sport;
    r->dst_port = k->dport;
    r->proto = k->proto;
    r->tos = fe->tos;
    r->tcp_flags = fe->tcp_flags;
    r->end_reason = (uint8_t)reason;
    r->packets = fe->packets;
    r->bytes = fe->bytes;
    r->first_ms = fe->first_ms;
    r->last_ms = fe->last_ms;
}

static int collect_locked(struct vs_dp *dp, int b, int c, int flush,
                          struct vs_flow_record *out, int max)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (c < 0 || c >= VS_FLOW_CACHES || max < 0)
        return -EINVAL;
    struct vs_flow_cache *fc = br->flows[c];
    if (!fc)
        return -ENOTCONN;
    int64_t now = vs_now_ms_locked(dp);
    int64_t idle = (int64_t)fc->cfg.idle_timeout_ms;
    int64_t active = (int64_t)fc->cfg.active_timeout_ms;
    int got = 0;
    for (uint32_t i = 0; i < fc->n && got < max;) {
        struct flow_entry *fe = &fc->entries[i];
        int reason = 0;
        bool remove = false;
        if (flush) {
            reason = VS_FLOW_END_FORCED;
            remove = true;
        } else if (now - fe->last_ms >= idle) {
            reason = VS_FLOW_END_IDLE;
            remove = true;
        } else if (active && fe->packets && now - fe->first_ms >= active) {
            reason = VS_FLOW_END_ACTIVE;
        }
        if (!reason) {
            i++;
            continue;
        }
        if (fe->packets) {
            fill_record(fe, reason, &out[got++]);
            if (reason == VS_FLOW_END_ACTIVE)
                fc->st.expired_active++;
            else if (reason == VS_FLOW_END_IDLE)
                fc->st.expired_idle++;
            else
                fc->st.flushed++;
        }
        if (remove) {
            remove_entry(fc, i);   /* entry i is now another one: look again */
        } else {
            fe->packets = fe->bytes = 0;
            fe->tcp_flags = 0;
            i++;
        }
    }
    return got;
}

int vs_flow_collect(vs_dp *dp, int br, int cache, int flush,
                    struct vs_flow_record *out, int max)
{
    LOCKED(collect_locked(dp, br, cache, flush, out, max));
}

static int stats_locked(struct vs_dp *dp, int b, int c, struct vs_flow_stats *out)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (c < 0 || c >= VS_FLOW_CACHES)
        return -EINVAL;
    struct vs_flow_cache *fc = br->flows[c];
    if (!fc)
        return -ENOTCONN;
    *out = fc->st;
    out->flows = fc->n;
    return 0;
}

int vs_flow_stats(vs_dp *dp, int br, int cache, struct vs_flow_stats *out)
{
    LOCKED(stats_locked(dp, br, cache, out));
}

static int set_ofport_locked(struct vs_dp *dp, int p, int ofport)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (ofport < 0 || ofport >= VS_FLOW_OUT_DROP)
        return -EINVAL;
    port->ofport = (uint16_t)ofport;
    return 0;
}

int vs_port_set_ofport(vs_dp *dp, int port, int ofport)
{
    LOCKED(set_ofport_locked(dp, port, ofport));
}

static int set_sampling_locked(struct vs_dp *dp, int b, uint32_t rate, uint32_t header)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (rate && (header < ETH_HLEN_ || header > VS_MAX_FRAME))
        return -EINVAL;
    if (!rate) {
        free(br->sampler);
        br->sampler = NULL;
    } else {
        if (!br->sampler) {
            br->sampler = calloc(1, sizeof *br->sampler);
            if (!br->sampler)
                return -ENOMEM;
            br->sampler->rng = dp->seed ^ 0x5f1f1ba5e5ULL ^ (uint64_t)b;
            if (!br->sampler->rng)
                br->sampler->rng = 1;
        }
        br->sampler->rate = rate;
        br->sampler->header = header;
        br->sampler->skip = next_skip(br->sampler);
    }
    update_flow_on(br);
    return 0;
}

int vs_flow_set_sampling(vs_dp *dp, int br, uint32_t rate, uint32_t header_bytes)
{
    LOCKED(set_sampling_locked(dp, br, rate, header_bytes));
}

static int sampling_stats_locked(struct vs_dp *dp, int b, uint64_t *out3)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (!br->sampler)
        return -ENOTCONN;
    out3[0] = br->sampler->seen;
    out3[1] = br->sampler->sampled;
    out3[2] = br->sampler->dropped;
    return 0;
}

int vs_flow_sampling_stats(vs_dp *dp, int br, uint64_t *seen_sampled_dropped)
{
    LOCKED(sampling_stats_locked(dp, br, seen_sampled_dropped));
}
