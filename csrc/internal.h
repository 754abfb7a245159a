/*
 * internal.h - structures shared by the engine's .c files.  Not part of the
 * API: Python never sees these.
 */
#ifndef VS_INTERNAL_H
#define VS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vswitch.h"
#include "fdb.h"

#define VS_UNUSED 0xffff

/* How often the periodic work (FDB aging) runs, milliseconds. */
#define VS_PERIODIC_MS 1000

/* Frames read in one go from one interface before the loop moves on: the
 * fairness budget, and the size of the prefetch window of FDB lookups. */
#define VS_BATCH 32

/* Room before the Ethernet header so an AF_PACKET frame whose VLAN tag came
 * out of band can get it back in place by moving 12 bytes. */
#define VS_HEADROOM 64
#define VS_BUF_SIZE (VS_HEADROOM + VS_MAX_FRAME + 64)

#define ETH_HLEN_ 14
#define VLAN_HLEN_ 4
#define TPID_8021Q 0x8100
#define TPID_8021AD 0x88a8

/* struct virtio_net_hdr, as the kernel reads and writes it (little endian
 * on every machine we run on). */
struct vs_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
} __attribute__((packed));

#define VNET_F_NEEDS_CSUM 1
#define VNET_F_DATA_VALID 2
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_UDP 3
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_ECN 0x80

struct vs_iface {
    bool in_use;
    uint8_t kind;
    bool vnet;           /* frames carry a virtio_net_hdr */
    bool failed;         /* poll/read error: out of the poll set */
    bool enabled;        /* bond member enabled; always true for plain ports */
    bool no_offload;     /* takes neither GSO frames nor partial checksums */
    uint16_t port;
    uint32_t gen;        /* bumped on reuse: stale epoll events are ignored */
    uint32_t mtu;
    int fd;              /* -1 for a tunnel: its socket is shared (tunnel.c) */
    uint32_t capture;    /* snap length of capture copies; 0: off (upcall.c) */
    uint32_t claim;      /* VS_CLAIM_* bits (upcall.c) */
    struct vs_iface_stats stats;
};

struct vs_port {
    bool in_use;
    uint16_t bridge;
    /* VLAN configuration (Open vSwitch semantics, see vlan.c). */
    uint8_t vlan_mode;
    uint16_t tag;
    bool trunk_all;
    uint8_t trunks[512];
    /* Members: one interface for a plain port, several for a bond. */
    uint8_t bond_mode;
    bool lag;                             /* LACP negotiated (bond.c) */
    uint8_t n_members;
    uint16_t members[VS_MAX_BOND_MEMBERS];
    int16_t active;                       /* iface id, -1 none */
    uint16_t slb_bucket[VS_SLB_BUCKETS];  /* iface id per hash bucket */
    uint64_t slb_load[VS_SLB_BUCKETS];
    /* Mirrors (mirror.c): those selecting frames that enter or leave here,
     * and whether this port is some mirror's output. */
    uint32_t mirror_src, mirror_dst;
    bool mirror_out;
    uint16_t ofport;                      /* flow export's port number */
};

struct vs_mirror {
    bool in_use;
    bool select_all;
    bool all_vlans;
    int32_t output_port;     /* -1: none (or its port was deleted) */
    uint16_t output_vlan;    /* 0: none */
    uint32_t dup;            /* mirrors with the same destination, itself too */
    uint8_t src[VS_PORT_BITMAP_BYTES];
    uint8_t dst[VS_PORT_BITMAP_BYTES];
    uint8_t vlans[512];
    struct vs_mirror_stats stats;
};

struct vs_bridge {
    bool in_use;
    uint16_t n_ports;
    uint16_t ports[VS_MAX_PORTS];
    struct vs_fdb fdb;
    uint32_t mirrors_on;     /* slots in use: zero, and mirrors cost one branch */
    uint32_t mirror_all;     /* slots with select_all */
    struct vs_mirror mirrors[VS_MAX_MIRRORS];
    bool flow_on;                         /* flows[] or sampler configured */
    struct vs_flow_cache *flows[VS_FLOW_CACHES];
    struct vs_sflow_sampler *sampler;     /* sFlow packet samples (flow.c) */
};

/* A frame to send, in up to three pieces: head, an optional 4-byte tag,
 * tail.  How VLAN push and pop avoid copying. */
struct vs_parts {
    const uint8_t *head;
    uint32_t head_len;
    const uint8_t *tag;     /* NULL: none */
    const uint8_t *tail;
    uint32_t tail_len;
};

/* A frame waiting in the transmit queue of an AF_PACKET interface; its
 * header and tag are copies, the rest points into receive buffers. */
#define VS_TXQ 64
struct vs_txent {
    uint16_t iface;
    uint8_t niov;
    uint8_t tag[4];
    struct vs_vnet_hdr hdr;
    uint32_t len;
    struct iovec iov[4];
};

/* One received frame and what the engine learned about it. */
struct vs_pkt {
    uint8_t *data;           /* Ethernet header */
    uint32_t len;
    struct vs_vnet_hdr vnet; /* zeroed when the input has none */
    uint16_t vlan;           /* VLAN the frame belongs to on this bridge */
    uint16_t tci;            /* tag control info to use when tagging */
    uint16_t tag_len;        /* bytes of outer tag present in data (0 or 4) */
    uint16_t payload_off;    /* offset of what follows the outer tag */
    uint16_t l3_offset;
    uint64_t src_key, dst_key;
    uint32_t src_hash, dst_hash;
    uint16_t out_port;       /* port id, VS_FLOW_OUT_FLOOD or _DROP (flows) */
};

/* The upcall ring (upcall.c).  head and tail count bytes from the start
 * and only grow; a record sits at (offset % size), 8-byte aligned: a
 * struct vs_upcall then its frame.  Guarded by its own lock. */
struct vs_upcall_queue {
    pthread_mutex_t lock;
    uint8_t *ring;
    uint32_t size;           /* a power of two */
    uint64_t head, tail;
    uint32_t count;
    bool signalled;          /* fd made readable and not yet reset */
    int fd;                  /* eventfd */
    struct vs_upcall_stats stats;
};

struct vs_dp {
    pthread_mutex_t lock;
    pthread_t thread;
    bool running;
    volatile bool stop;
    int epfd;
    int wake_fd;      /* eventfd: wakes the loop (stop) */
    int notify_fd;    /* eventfd: tells the control plane to look */
    int64_t fake_now_ms;
    uint32_t busy_poll_us;
    int64_t next_periodic_ms;
    uint64_t seed;

    struct vs_upcall_queue upq;

    struct vs_bridge *bridges[VS_MAX_BRIDGES];
    struct vs_port ports[VS_MAX_PORTS];
    struct vs_iface ifaces[VS_MAX_IFACES];

    /* Receive buffers of the forwarding thread (or of an injecting caller:
     * both run under the lock, so they never use them at the same time). */
    uint8_t *bufs;                  /* VS_BATCH * VS_BUF_SIZE */
    uint8_t *seg_buf;               /* one segment being built (gso.c) */
    bool dry_run;                   /* microbenchmarks: decide, do not write */
    /* vs_dp_trace's recorder; NULL on the real path.  While it is set the
     * forwarding code writes, learns and counts nothing that lasts (what it
     * counts is put back afterwards, see trace.c): code added to the
     * forwarding pass must check it before changing state. */
    struct vs_trace *trace;
    struct {
        int mirror;                 /* mirror slot being output, or -1 */
        int out_drop;               /* last drop charged to an output, or -1 */
        uint64_t src_key;           /* what learning would have done: the key, */
        int src_port;               /* the port it would be on (-1: none), */
        uint64_t evicted;           /* the key it would have pushed out */
    } tc;
    uint32_t mirror_hits;           /* select_dst mirrors of this frame's outputs */
    bool stage_tx;                  /* queue AF_PACKET output (tx.c) */
    struct vs_tunnels *tunnels;     /* tunnel sockets and queues (tunnel.c) */
    int ntx;
    struct vs_txent txq[VS_TXQ];
    struct vs_pkt pkts[VS_BATCH];
};

/* frame.c */
int vs_parse(const uint8_t *frame, uint32_t len, struct vs_parsed *out);

/* vlan.c */
bool vs_vlan_ingress(const struct vs_port *p, struct vs_pkt *pkt,
                     const struct vs_parsed *parsed);
bool vs_vlan_carries(const struct vs_port *p, uint16_t vlan);
bool vs_vlan_egress_tagged(const struct vs_port *p, uint16_t vlan);

/* vnet.c */
bool vs_vnet_valid(const struct vs_vnet_hdr *h, uint32_t frame_len);
void vs_vnet_complete_csum(struct vs_pkt *pkt);
bool vs_vnet_is_gso(const struct vs_vnet_hdr *h);

/* gso.c */
/* Layout of a GSO frame's L3/L4 headers, validated against its length. */
struct l4_layout {
    bool v6;
    uint32_t l3, l4, payload;   /* offsets from the Ethernet header */
    uint8_t proto;
};
bool vs_gso_layout(const struct vs_pkt *pkt, uint8_t gso, struct l4_layout *lay);
typedef void (*vs_segment_fn)(struct vs_dp *dp, struct vs_pkt *seg, void *ctx);
/* Cut a GSO frame into MSS-sized frames with complete checksums, calling
 * emit for each; -1 (nothing emitted) when its headers do not allow it. */
int vs_gso_segment(struct vs_dp *dp, struct vs_pkt *pkt, vs_segment_fn emit,
                   void *ctx);

/* bond.c */
int vs_bond_output_iface(struct vs_dp *dp, struct vs_port *p,
                         const struct vs_pkt *pkt);
int vs_bond_learning_packets_locked(struct vs_dp *dp, int port);
bool vs_bond_admissible(struct vs_dp *dp, const struct vs_port *p,
                        const struct vs_iface *in, const struct vs_pkt *pkt,
                        int learned_port);

/* forward.c */
void vs_forward_batch(struct vs_dp *dp, struct vs_iface *in,
                      struct vs_pkt *pkts, int n);
/* Send pkt out of port op as forwarding does (bond member, offloads,
 * tagging), without the VLAN membership check: mirrors use it.  unicast:
 * a drop is the input's.  true when it counted a drop on in. */
bool vs_port_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                    bool unicast, struct vs_iface *in);

/* mirror.c */
/* Send pkt to the destinations of the mirrors in candidates that select
 * its VLAN (lock held). */
void vs_mirror_frame(struct vs_dp *dp, struct vs_bridge *br,
                     struct vs_iface *in, struct vs_pkt *pkt,
                     uint32_t candidates);
/* A port is going away: out of every selection, outputs stop. */
void vs_mirror_forget_port(struct vs_dp *dp, struct vs_bridge *br, int port);

/* trace.c: the recorder's hooks, called only when dp->trace is set. */
void vs_trace_step(struct vs_dp *dp, int kind, int a, int b, int c);
void vs_trace_drop(struct vs_dp *dp, const struct vs_iface *ifc, int reason);
void vs_trace_output(struct vs_dp *dp, const struct vs_port *op,
                     const struct vs_iface *out, uint16_t vlan, bool tagged);
/* What learning would do with pkt's source on port (nothing is learned). */
void vs_trace_learn(struct vs_dp *dp, const struct vs_bridge *br,
                    const struct vs_pkt *pkt, int port);
/* The destination lookup as it would be had learning happened: the port
 * (or -1) given slot s of the real lookup. */
int vs_trace_lookup(struct vs_dp *dp, const struct vs_fdb *fdb,
                    const struct vs_pkt *pkt, int64_t s);
#define TRACE(dp, kind, a, b, c)                               \
    do {                                                       \
        if (__builtin_expect((dp)->trace != NULL, 0))          \
            vs_trace_step((dp), (kind), (a), (b), (c));        \
    } while (0)

/* flow.c: account a forwarded burst (ok[i]: frame i passed ingress checks,
 * pkts[i].out_port: where it went); free a bridge's caches. */
void vs_flow_batch(struct vs_dp *dp, struct vs_bridge *br,
                   const struct vs_iface *in, const struct vs_pkt *pkts,
                   const bool *ok, int n);
void vs_flow_release(struct vs_bridge *br);

/* tx.c */
int vs_iface_write(struct vs_dp *dp, struct vs_iface *out,
                   const struct vs_vnet_hdr *vnet, struct iovec *iov,
                   int iovcnt, uint32_t frame_len);
void vs_tx(struct vs_dp *dp, struct vs_iface *out,
           const struct vs_vnet_hdr *vnet, const struct vs_parts *fp);
void vs_tx_flush(struct vs_dp *dp);

/* io.c */
int vs_rx_burst(struct vs_dp *dp, struct vs_iface *in);
void vs_iface_fail(struct vs_dp *dp, struct vs_iface *ifc);

/* control.c */
int vs_iface_add_locked(struct vs_dp *dp, int p, int fd, int kind,
                        uint32_t flags, uint32_t mtu);

/* upcall.c */
int vs_upcall_init(struct vs_upcall_queue *q);
void vs_upcall_destroy(struct vs_upcall_queue *q);
/* Queue a frame for the control plane (lock held: the producers are the
 * forwarding thread and control calls that forward, never both at once).
 * The caller fills meta's reason, bridge, port, iface, direction and args;
 * orig_len, len and time_ns are set here.  The frame is the iov pieces
 * less their first skip bytes (a virtio-net header); at most snaplen bytes
 * are copied.  false: the ring had no room, counted as dropped. */
bool vs_upcall_put(struct vs_dp *dp, struct vs_upcall *meta,
                   const struct iovec *iov, int iovcnt, uint32_t skip,
                   uint32_t snaplen);
/* Capture copies of frames received (a burst) or sent (one frame as iov
 * pieces); called only when ifc->capture is set. */
void vs_upcall_capture_rx(struct vs_dp *dp, struct vs_iface *in,
                          const struct vs_pkt *pkts, int n);
void vs_upcall_capture_tx(struct vs_dp *dp, struct vs_iface *out,
                          const struct iovec *iov, int iovcnt, uint32_t skip);
/* A frame the interface claimed (LACP): queued, counted in rx_upcall. */
void vs_upcall_claimed(struct vs_dp *dp, struct vs_iface *in,
                       const struct vs_pkt *pkt);

/* datapath.c */
int64_t vs_now_ms_locked(struct vs_dp *dp);
void vs_notify(struct vs_dp *dp);

/* Control-call helpers (lock held): the object for an id, or NULL. */
static inline struct vs_bridge *get_br(struct vs_dp *dp, int br)
{
    if (br < 0 || br >= VS_MAX_BRIDGES)
        return NULL;
    return dp->bridges[br];
}

static inline struct vs_port *get_port(struct vs_dp *dp, int p)
{
    if (p < 0 || p >= VS_MAX_PORTS || !dp->ports[p].in_use)
        return NULL;
    return &dp->ports[p];
}

static inline struct vs_iface *get_iface(struct vs_dp *dp, int i)
{
    if (i < 0 || i >= VS_MAX_IFACES || !dp->ifaces[i].in_use)
        return NULL;
    return &dp->ifaces[i];
}

#define LOCKED(expr)                       \
    do {                                   \
        pthread_mutex_lock(&dp->lock);     \
        int rc_ = (expr);                  \
        pthread_mutex_unlock(&dp->lock);   \
        return rc_;                        \
    } while (0)


void vs_port_release(struct vs_dp *dp, int p);
/* Put a frame as in would read it into the first receive buffer (pkts[0]);
 * false when it is too big (counted). */
bool vs_load_frame(struct vs_dp *dp, struct vs_iface *in, const uint8_t *frame,
                   size_t len);
void vs_iface_release(struct vs_dp *dp, int i);
void vs_run_periodic_locked(struct vs_dp *dp);

static inline uint16_t vs_rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint64_t vs_mac_to_u64(const uint8_t *m)
{
    return ((uint64_t)m[0] << 40) | ((uint64_t)m[1] << 32) |
           ((uint64_t)m[2] << 24) | ((uint64_t)m[3] << 16) |
           ((uint64_t)m[4] << 8) | (uint64_t)m[5];
}

static inline bool vs_mac_is_group(const uint8_t *m) { return m[0] & 1; }

#endif
