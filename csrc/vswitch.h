/*
 * vswitch.h - the one public API of the vswitch C engine.
 *
 * Everything Python may call is declared here and nowhere else.  The file
 * is read twice: by the C compiler (through the include guard) and by
 * cffi's cdef() in csrc/build_engine.py, which drops the preprocessor
 * lines other than "#define NAME NUMBER".  So: plain declarations only,
 * no macros with arguments, no inline code, and every symbol starts with
 * "vs_" or "VS_".
 *
 * Object model (the Open vSwitch one, kept small):
 *   datapath  - one per daemon; owns the forwarding thread and one lock.
 *   bridge    - a MAC-learning domain with its own FDB.
 *   port      - a logical port of a bridge: VLAN configuration, FDB
 *               entries point at ports.  A plain port has one interface,
 *               a bond several.
 *   interface - a file descriptor frames are read from and written to
 *               (a TAP, an AF_PACKET socket, or in tests a socketpair).
 *
 * Thread safety: every function below takes the datapath lock, which the
 * forwarding thread holds while it processes one batch of received frames
 * and releases around epoll_wait().  A control call therefore waits for at
 * most one batch, and never observes a half-forwarded frame.  The only
 * exceptions are the pure functions (vs_frame_parse, vs_drop_reason_name,
 * vs_fdb_bench_*), which touch no shared state or say so.
 *
 * Errors: functions returning int give >= 0 on success and -errno on
 * failure; vswitch/datapath.py turns the latter into VswitchError.
 */
#ifndef VSWITCH_H
#define VSWITCH_H

#include <stddef.h>
#include <stdint.h>

#define VS_MAX_BRIDGES 256
#define VS_MAX_PORTS 1024
#define VS_MAX_IFACES 1024
#define VS_MAX_BOND_MEMBERS 16
#define VS_MAX_FDB_ENTRIES 4194304
#define VS_DEFAULT_MAC_AGING 300
#define VS_DEFAULT_MAC_TABLE_SIZE 8192
#define VS_VNET_HDR_LEN 10
#define VS_MAX_FRAME 65535
#define VS_DROP_SLOTS 32
#define VS_SLB_BUCKETS 256

/* How an interface's file descriptor is read. */
enum vs_iface_kind {
    VS_IFACE_FD = 1,      /* read()/write() of whole frames: TAP, socketpair */
    VS_IFACE_PACKET = 2,  /* AF_PACKET socket: VLAN tag may arrive in auxdata */
    VS_IFACE_VXLAN = 3    /* a VXLAN tunnel (vs_tunnel_add): no fd of its own */
};

/* Interface flags (vs_iface_add). */
#define VS_IFACE_F_VNET_HDR 1   /* every frame is preceded by a virtio_net_hdr */
#define VS_IFACE_F_NO_OFFLOAD 2 /* send it no GSO frame, no partial checksum */

/* VLAN modes, as in Open vSwitch's Port table. */
enum vs_vlan_mode {
    VS_VLAN_TRUNK = 0,
    VS_VLAN_ACCESS = 1,
    VS_VLAN_NATIVE_TAGGED = 2,
    VS_VLAN_NATIVE_UNTAGGED = 3
};

/* Bond modes.  VS_BOND_NONE is a plain port with exactly one interface. */
enum vs_bond_mode {
    VS_BOND_NONE = 0,
    VS_BOND_ACTIVE_BACKUP = 1,
    VS_BOND_BALANCE_SLB = 2,
    VS_BOND_BALANCE_TCP = 3    /* L3/L4 flow hash (vs_tcp_hash); needs LACP */
};

/* Why a frame was dropped.  Counted per interface: ingress reasons on the
 * interface the frame came in on, egress reasons on the one it would have
 * left by.  vs_drop_reason_name() gives the short name used in port/stats. */
enum vs_drop_reason {
    VS_DROP_RUNT = 0,          /* shorter than the headers it announces */
    VS_DROP_OVERSIZE = 1,      /* payload beyond the interface MTU (no GSO) */
    VS_DROP_BAD_VNET_HDR = 2,  /* virtio-net header that cannot describe it */
    VS_DROP_RESERVED_DST = 3,  /* 01:80:c2:00:00:0x link-local control */
    VS_DROP_VLAN = 4,          /* VLAN not carried by the port */
    VS_DROP_SAME_PORT = 5,     /* destination learned on the input port */
    VS_DROP_BOND = 6,          /* not admissible on this bond member */
    VS_DROP_NO_GSO = 7,        /* output cannot take a segmented frame */
    VS_DROP_TX_ERROR = 8,      /* write()/send() failed (queue full, gone) */
    VS_DROP_IFACE_DOWN = 9,    /* output interface failed, disabled or down */
    VS_DROP_NO_MEMBER = 10,    /* bond has no enabled member */
    VS_DROP_MIRROR_PORT = 11,  /* received on, or learned on, a port reserved
                                * for a mirror's output */
    /* VXLAN tunnels (tunnel.c) */
    VS_DROP_UNKNOWN_REMOTE = 12, /* datagram from an address no tunnel knows */
    VS_DROP_WRONG_VNI = 13,    /* from a known remote, with a VNI it has no port for */
    VS_DROP_BAD_VXLAN = 14,    /* VXLAN flags other than I, or reserved bits set */
    VS_DROP_VXLAN_CUT = 15,    /* datagram shorter than the VXLAN header */
    VS_DROP_FRAG_NEEDED = 16,  /* too big for the tunnel with DF: ICMP sent back */
    VS_DROP__COUNT = 17
};

/* Every frame read from an interface is counted once in rx_packets and
 * then exactly once more: in rx_forwarded (sent on, or flooded, possibly to
 * nobody), in rx_upcall (claimed by the control plane) or in one of the
 * drops[] of that interface.  Drops on the way out (an output that cannot
 * take it) count on the output interface. */
struct vs_iface_stats {
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t rx_forwarded;
    uint64_t rx_upcall;     /* claimed for the control plane (vs_iface_set_claim) */
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t drops[VS_DROP_SLOTS];   /* indexed by enum vs_drop_reason */
};

/* Interface state bits (vs_iface_state). */
#define VS_IFACE_S_FAILED 1    /* read/poll error: removed from the poll set */
#define VS_IFACE_S_ENABLED 2   /* may carry traffic (bond member enabled) */

struct vs_fdb_entry {
    uint8_t mac[6];
    uint16_t vlan;
    int32_t port;
    uint32_t age;        /* seconds since last seen */
    uint8_t is_static;
    uint32_t remote_ip;  /* tunnel ports: the remote it was learned from
                            (network byte order); 0 otherwise */
};

struct vs_fdb_stats {
    uint32_t entries;
    uint32_t static_entries;
    uint32_t max_entries;
    uint32_t aging;
    uint64_t learned;
    uint64_t expired;
    uint64_t evicted;
    uint64_t moved;
};

/* Result of parsing one Ethernet frame (vs_frame_parse). */
struct vs_parsed {
    uint16_t ntags;        /* 802.1Q/802.1ad tags recognised, 0..2 */
    uint16_t outer_tpid;   /* 0 when untagged */
    uint16_t outer_tci;
    uint16_t inner_tpid;
    uint16_t inner_tci;
    uint16_t ethertype;    /* after the tags */
    uint16_t l3_offset;    /* bytes from the start of the frame */
};

typedef struct vs_dp vs_dp;

/* --- pure helpers -------------------------------------------------------- */

/* Parse len bytes of an Ethernet frame.  Returns 0, or -1 - VS_DROP_RUNT
 * when the frame is shorter than the headers it announces.  Reads nothing
 * outside frame[0..len). */
int vs_frame_parse(const uint8_t *frame, size_t len, struct vs_parsed *out);
const char *vs_drop_reason_name(int reason);

/* --- datapath ------------------------------------------------------------ */

vs_dp *vs_dp_new(void);
/* Stops the thread if running, closes every interface fd, frees all. */
void vs_dp_free(vs_dp *dp);
int vs_dp_start(vs_dp *dp);
int vs_dp_stop(vs_dp *dp);
/* An eventfd that becomes readable when an interface changes state (for
 * example a TAP whose device vanished).  Owned by the datapath. */
int vs_dp_notify_fd(vs_dp *dp);
/* Replace the clock: now_ms >= 0 freezes time at that value (tests advance
 * it by calling again); now_ms < 0 returns to CLOCK_MONOTONIC. */
void vs_dp_set_clock(vs_dp *dp, int64_t now_ms);
int64_t vs_dp_now_ms(vs_dp *dp);
/* After a wake-up that brought frames, keep polling (without sleeping) for
 * a while before blocking again, so a reply or an ACK that comes back soon
 * is forwarded without a thread wake-up.  The window adapts to the gaps
 * between bursts; usec caps it, and gaps longer than usec on average turn
 * polling off.  0 never polls. */
void vs_dp_set_busy_poll(vs_dp *dp, uint32_t usec);
/* Run the periodic work (FDB aging) now, as the thread does every second. */
void vs_dp_run_periodic(vs_dp *dp);

/* --- bridges -------------------------------------------------------------- */

int vs_br_add(vs_dp *dp, uint32_t mac_table_size, uint32_t mac_aging);
int vs_br_del(vs_dp *dp, int br);
int vs_br_set_mac_aging(vs_dp *dp, int br, uint32_t seconds);
/* Shrinking evicts learned entries fairly; fails with -ENOSPC when the
 * static entries alone exceed the new size. */
int vs_br_set_mac_table_size(vs_dp *dp, int br, uint32_t entries);

/* --- ports ---------------------------------------------------------------- */

int vs_port_add(vs_dp *dp, int br);
/* Deletes the port, its interfaces (closing their fds) and its FDB entries. */
int vs_port_del(vs_dp *dp, int port);
/* trunks: 512-byte bitmap of VLANs 0..4095, or NULL for "all VLANs".
 * Flushes the port's learned FDB entries. */
int vs_port_set_vlan(vs_dp *dp, int port, int mode, int tag,
                     const uint8_t *trunks);
int vs_port_set_bond_mode(vs_dp *dp, int port, int mode);
/* Active member for active-backup (and broadcast ingress of balance-slb);
 * iface must belong to the port, -1 clears it. */
int vs_port_set_active(vs_dp *dp, int port, int iface);
/* *iface = the active member, or -1 when there is none. */
int vs_port_get_active(vs_dp *dp, int port, int *iface);
/* Point hash bucket 0..255 (balance-slb or balance-tcp) at a member
 * interface of the port. */
int vs_port_set_slb_bucket(vs_dp *dp, int port, int bucket, int iface);
/* Bytes hashed into each bucket since the last call; resets them. */
int vs_port_take_slb_loads(vs_dp *dp, int port, uint64_t *loads256);
/* The balance-slb bucket (0..255) a source MAC and VLAN hash to. */
int vs_slb_hash(const uint8_t *mac, uint16_t vlan);
/* The balance-tcp bucket (0..255) of a frame: a symmetric hash of its IP
 * addresses, protocol and TCP/UDP/SCTP ports (of its MACs and VLAN when it
 * is not IP).  Pure; reads nothing outside frame[0..len). */
int vs_tcp_hash(const uint8_t *frame, size_t len, uint16_t vlan);
/* LACP holds (1) or not (0) on this bond: with it the far end treats the
 * members as one link, so frames are accepted on every enabled member
 * instead of by the bond mode's admissibility rules. */
int vs_port_set_lag(vs_dp *dp, int port, int on);
/* After a failover: for every MAC learned on another port of the bridge, in
 * a VLAN this port carries, send one RARP (ethertype 0x8035, to broadcast,
 * from that MAC, tagged as the port tags that VLAN) on the member that
 * frames from that MAC now leave by, so upstream switches re-learn at once.
 * Returns how many were sent. */
int vs_port_send_learning_packets(vs_dp *dp, int port);

/* --- interfaces ------------------------------------------------------------ */

/* Attach fd to port.  The datapath owns fd from here on, also on failure
 * (it is closed then).  The fd is made non-blocking. */
int vs_iface_add(vs_dp *dp, int port, int fd, int kind, uint32_t flags,
                 uint32_t mtu);
int vs_iface_del(vs_dp *dp, int iface);
int vs_iface_set_mtu(vs_dp *dp, int iface, uint32_t mtu);
/* Bond member enabled (1) or disabled (0); a disabled member neither
 * sends nor receives. */
int vs_iface_set_enabled(vs_dp *dp, int iface, int enabled);
int vs_iface_state(vs_dp *dp, int iface);
int vs_iface_stats(vs_dp *dp, int iface, struct vs_iface_stats *out);

/* Send one raw frame (with a virtio-net header first when the interface has
 * one) out of iface, bypassing forwarding: learning packets after failover. */
int vs_iface_send(vs_dp *dp, int iface, const uint8_t *frame, size_t len);
/* Process one frame as if it had just been read from iface: the whole
 * forwarding path, outputs written to the other interfaces' fds.  For tests
 * and tools; the fast path never goes through Python. */
int vs_dp_inject(vs_dp *dp, int iface, const uint8_t *frame, size_t len);

/* --- the upcall channel (upcall.c) ------------------------------------------
 *
 * Frames for the control plane leave the engine through one bounded queue,
 * Open vSwitch's upcall path kept small: capture copies, protocol frames an
 * interface claims (LACPDUs), sampled frames (sFlow).  The queue is a ring
 * of VS_UPCALL_QUEUE_BYTES preallocated with the datapath; the forwarding
 * thread copies a frame into it (never allocating) and Python drains it.
 * When the ring is full the frame is dropped and counted per reason.
 * Capture copies and samples may fill only three quarters of the ring, so a
 * busy capture never crowds out protocol frames.  Frames from the control
 * plane go the other way through vs_iface_send().
 *
 * Thread safety: the queue has its own small lock, taken by a producer (the
 * forwarding thread, or a control call that forwards) for one copy and by
 * vs_upcall_recv() for one copy.  vs_upcall_recv() and vs_upcall_stats()
 * never take the datapath lock, so draining never waits for a batch and
 * never holds up forwarding for longer than one copy. */

enum vs_upcall_reason {
    VS_UPCALL_CAPTURE = 0,     /* copy of a frame crossing an interface with
                                * capture on (vs_iface_set_capture) */
    VS_UPCALL_SLOW_PROTO = 1,  /* a frame claimed from forwarding by
                                * vs_iface_set_claim (LACP) */
    VS_UPCALL_SAMPLE = 2,      /* a sampled frame (sFlow); args[] say more */
    VS_UPCALL__COUNT = 3
};
#define VS_UPCALL_SLOTS 8
#define VS_UPCALL_QUEUE_BYTES 4194304

/* Direction of an upcall's frame on its interface. */
#define VS_UPCALL_RX 0          /* received on the interface */
#define VS_UPCALL_TX 1          /* sent by the interface */

/* Claims (vs_iface_set_claim): frames an interface hands to the control
 * plane instead of dropping them as reserved_dst. */
#define VS_CLAIM_LACP 1         /* to 01:80:c2:00:00:02, ethertype 0x8809 */

struct vs_upcall {
    uint32_t reason;        /* enum vs_upcall_reason */
    int32_t bridge;         /* engine ids */
    int32_t port;
    int32_t iface;
    uint32_t direction;     /* VS_UPCALL_RX or VS_UPCALL_TX */
    uint32_t orig_len;      /* the frame's length on the wire (no vnet header) */
    uint32_t len;           /* bytes of it copied (snap length, buffer size) */
    uint32_t reserved;
    int64_t time_ns;        /* CLOCK_REALTIME when it was queued */
    uint64_t args[4];       /* reason-specific; zero for capture and LACP */
};

struct vs_upcall_stats {
    uint64_t queued[VS_UPCALL_SLOTS];   /* by reason */
    uint64_t dropped[VS_UPCALL_SLOTS];  /* queue full: Python fell behind */
    uint32_t pending;                   /* upcalls waiting now */
    uint32_t pending_bytes;             /* ring bytes they use */
    uint32_t capacity_bytes;
    uint32_t reserved;
};

/* An eventfd, owned by the datapath, readable while upcalls wait. */
int vs_upcall_fd(vs_dp *dp);
/* Take the oldest upcall: 1 with *meta filled and min(len, buflen) bytes
 * of its frame in buf (meta->len says how many), or 0 when the queue is
 * empty. */
int vs_upcall_recv(vs_dp *dp, struct vs_upcall *meta, uint8_t *buf,
                   uint32_t buflen);
int vs_upcall_stats(vs_dp *dp, struct vs_upcall_stats *out);
/* claims: VS_CLAIM_* bits (0 claims nothing).  A claimed frame is counted
 * in rx_upcall and queued as VS_UPCALL_SLOW_PROTO, whatever the interface's
 * bond state: the protocol that decides that state needs it. */
int vs_iface_set_claim(vs_dp *dp, int iface, uint32_t claims);
/* Copy every frame the interface receives or sends (as on the wire: VLAN
 * tags in place, a GSO frame whole, no virtio-net header) to the queue as
 * VS_UPCALL_CAPTURE, at most snaplen bytes of each; 0 turns it off.  Off,
 * it costs one predictable branch per burst received and per frame sent. */
int vs_iface_set_capture(vs_dp *dp, int iface, uint32_t snaplen);

/* --- mirrors (mirror.c) -------------------------------------------------------
 *
 * Open vSwitch's Mirror table.  A frame is selected by a mirror when it
 * enters by a port in select_src (after its VLAN is known, even if it is
 * dropped later) or leaves by a port in select_dst (select_all: every
 * port), and its VLAN is in select_vlan.  Selected frames are outputs of
 * the same forwarding decision: to output_port (tagged as that port tags
 * the frame's VLAN), or, for output_vlan (RSPAN), to every port carrying
 * that VLAN with the tag set to it (frames already in output_vlan are not
 * mirrored).  A destination gets one copy per frame however many mirrors
 * select it.  An output port is out of normal forwarding: nothing is
 * flooded or sent to it, what it receives is dropped (mirror_port). */
#define VS_MAX_MIRRORS 32
#define VS_PORT_BITMAP_BYTES 128        /* VS_MAX_PORTS bits */

struct vs_mirror_config {
    uint8_t select_all;
    uint8_t all_vlans;                  /* 1: select_vlan empty, every VLAN */
    uint16_t reserved;
    int32_t output_port;                /* engine port of the bridge, or -1 */
    int32_t output_vlan;                /* 1..4094, or 0 with output_port */
    uint8_t select_src[VS_PORT_BITMAP_BYTES];   /* bitmaps of engine port ids */
    uint8_t select_dst[VS_PORT_BITMAP_BYTES];
    uint8_t select_vlan[512];           /* bitmap of VLANs 0..4095 */
};

struct vs_mirror_stats {
    uint64_t tx_packets;                /* frames mirrored (once per frame) */
    uint64_t tx_bytes;
};

/* Create or replace mirror slot 0..VS_MAX_MIRRORS-1 of bridge br (a
 * replaced mirror keeps its counters).  Every selected port and the output
 * port must be ports of br.  A port that becomes an output loses its
 * learned MACs.  A port deleted later leaves every mirror's selection, and
 * a mirror whose output port is deleted stops mirroring. */
int vs_mirror_set(vs_dp *dp, int br, int slot,
                  const struct vs_mirror_config *cfg);
int vs_mirror_del(vs_dp *dp, int br, int slot);
int vs_mirror_stats(vs_dp *dp, int br, int slot, struct vs_mirror_stats *out);

/* --- trace (trace.c) ------------------------------------------------------------
 *
 * vs_dp_trace runs one frame through the forwarding code itself (the same
 * functions as vs_dp_inject) with a recorder attached, and writes, learns
 * and counts nothing: it says what the engine would do now.  Steps are
 * codes with up to three numbers; vswitch/trace.py puts them into words. */
enum vs_trace_kind {
    VS_TRACE_RECEIVE = 1,      /* a: iface, b: port, c: frame length */
    VS_TRACE_PARSE = 2,        /* a: tags, b: outer VID or -1, c: ethertype */
    VS_TRACE_VLAN = 3,         /* a: VLAN assigned, b: port's vlan mode, c: TCI */
    VS_TRACE_CLAIMED = 4,      /* a: VS_CLAIM_* that took it up to the control plane */
    VS_TRACE_BOND_ADMIT = 5,   /* a: admitted 0/1, b: bond mode, c: active iface */
    VS_TRACE_LEARN = 6,        /* a: port, b: VLAN, c: port it was on (-1 new,
                                *    -2 a static entry elsewhere: not moved) */
    VS_TRACE_NO_LEARN = 7,     /* a: 1 group source, 2 all-zero source */
    VS_TRACE_FDB_HIT = 8,      /* a: port, b: VLAN, c: 1 static */
    VS_TRACE_FLOOD = 9,        /* a: 1 unknown unicast, 2 group destination */
    VS_TRACE_SKIP = 10,        /* flood passes port a by: b = 1 VLAN not carried,
                                *    2 no member, 3 mirror output port */
    VS_TRACE_MIRROR = 11,      /* mirror a selected it: b = 1 source port,
                                *    2 destination port, 3 all; c: output VLAN
                                *    (RSPAN), 0 for an output port */
    VS_TRACE_DROP = 12,        /* a: enum vs_drop_reason, b: iface charged */
    VS_TRACE_OUTPUT = 13,      /* a: port, b: iface (member), c: index in outputs[] */
    VS_TRACE_EVICT = 14        /* the table is full: learning pushes out the oldest
                                *    entry of port a (VLAN b) */
};
#define VS_TRACE_MAX_STEPS 128

struct vs_trace_step {
    int32_t kind;
    int32_t a, b, c;
};

struct vs_trace_output {
    int32_t port;
    int32_t iface;             /* the member it leaves by */
    uint16_t vlan;             /* the VLAN it is in there */
    uint8_t tagged;            /* leaves with an 802.1Q tag */
    uint8_t reserved;
    int32_t mirror;            /* mirror slot whose copy this is, or -1 */
};

struct vs_trace {
    int32_t drop;              /* the frame's drop reason, or -1: charged to the
                                * input, or what stopped its only output */
    int32_t in_iface;
    uint32_t n_steps;
    uint32_t steps_lost;       /* beyond VS_TRACE_MAX_STEPS */
    uint32_t n_outputs;
    struct vs_trace_step steps[VS_TRACE_MAX_STEPS];
    struct vs_trace_output outputs[VS_MAX_PORTS];
};

/* frame: the Ethernet frame alone, as if it arrived on iface with no
 * offload metadata (no virtio-net header).  0 with *out filled, or -errno. */
int vs_dp_trace(vs_dp *dp, int iface, const uint8_t *frame, size_t len,
                struct vs_trace *out);

/* --- FDB ------------------------------------------------------------------- */

int vs_fdb_add_static(vs_dp *dp, int br, int port, uint16_t vlan,
                      const uint8_t *mac);
/* Removes a learned or static entry; -ENOENT when absent. */
int vs_fdb_del(vs_dp *dp, int br, uint16_t vlan, const uint8_t *mac);
/* Removes learned entries (of one port, or all when port < 0); static
 * entries are configuration and stay.  Returns how many were removed. */
int vs_fdb_flush(vs_dp *dp, int br, int port);
/* Copies up to max entries; returns the total number (may exceed max). */
int vs_fdb_dump(vs_dp *dp, int br, struct vs_fdb_entry *out, int max);
int vs_fdb_stats(vs_dp *dp, int br, struct vs_fdb_stats *out);
/* The port a (vlan, mac) is learned on, or -ENOENT. */
int vs_fdb_lookup(vs_dp *dp, int br, uint16_t vlan, const uint8_t *mac);

/* --- VXLAN tunnels (tunnel.c) -------------------------------------------------
 *
 * A tunnel is an interface of a port, like a TAP, but with no fd of its
 * own: frames leave as VXLAN over UDP to each remote (head-end
 * replication for floods; known unicast to the remote the MAC was learned
 * from) and arrive on a UDP socket bound to local_ip:dst_port that every
 * tunnel with that address and port shares, told apart by VNI and by the
 * sender's address.  IPv4 underlay only.  Addresses are in network byte
 * order, ports in host byte order. */
#define VS_MAX_REMOTES 64
#define VS_TUN_F_CSUM 1     /* compute the outer UDP checksum (the kernel's udpcsum) */
#define VS_TUN_F_DF 2       /* set DF on the outer header (oversize frames then drop) */
#define VS_TUN_F_UDP_GSO 4  /* send 64 KB TCP segments as one UDP_SEGMENT send */

struct vs_tunnel_cfg {
    uint32_t vni;           /* 0 .. 2^24 - 1 */
    uint32_t local_ip;      /* 0: any address of the daemon's namespace */
    uint16_t dst_port;
    uint8_t ttl;            /* 0: 64 */
    uint32_t flags;         /* VS_TUN_F_* */
};

struct vs_remote_stats {
    uint32_t ip;
    uint32_t src_ip;        /* the source address the route to ip picks, 0 none */
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t tx_errors;
};

/* Attach a tunnel interface to port (which must have none).  mtu is the
 * inner MTU (the underlay's minus 50).  Opens or shares the receiving UDP
 * socket; -EADDRINUSE and the like come from its bind().  Returns the
 * interface id. */
int vs_tunnel_add(vs_dp *dp, int port, const struct vs_tunnel_cfg *cfg,
                  const uint32_t *remotes, int n_remotes, uint32_t mtu);
/* Replace the remote list.  Learned MACs keep their remote when it stays
 * and are forgotten when it goes; counters of remaining remotes are kept. */
int vs_tunnel_set_remotes(vs_dp *dp, int iface, const uint32_t *remotes,
                          int n_remotes);
/* Copies up to max remotes' counters; returns the number of remotes. */
int vs_tunnel_remote_stats(vs_dp *dp, int iface, struct vs_remote_stats *out,
                           int max);

/* --- flow accounting (flow.c) ------------------------------------------------ */

/* Each bridge has up to VS_FLOW_CACHES flow caches, off until configured:
 * the control plane uses cache 0 for NetFlow v5 and 1 for IPFIX. */
#define VS_FLOW_CACHES 2
#define VS_FLOW_MAX_FLOWS 1048576
/* Output "ports" of a flow that was not sent to one port (Open vSwitch's
 * NF_OUT_FLOOD and NF_OUT_DROP). */
#define VS_FLOW_OUT_FLOOD 65535
#define VS_FLOW_OUT_DROP 65533
/* Flow cache flags. */
#define VS_FLOW_F_IPV4_ONLY 1   /* NetFlow v5: IPv4 only, no VLAN or MACs in the key */
/* Why a record was written (IPFIX flowEndReason). */
#define VS_FLOW_END_IDLE 1
#define VS_FLOW_END_ACTIVE 2
#define VS_FLOW_END_FORCED 4

struct vs_flow_config {
    uint32_t max_flows;          /* preallocated; frames of flows beyond it: no_room */
    uint32_t sampling;           /* 1 = every frame, N = one frame in N */
    uint32_t idle_timeout_ms;    /* > 0 */
    uint32_t active_timeout_ms;  /* 0 = none */
    uint32_t flags;              /* VS_FLOW_F_* */
};

/* One flow's counts since its last record.  Ports are ofport numbers
 * (vs_port_set_ofport); times are the datapath clock (vs_dp_now_ms). */
struct vs_flow_record {
    uint8_t src[16];        /* IPv4 address in the first 4 bytes */
    uint8_t dst[16];
    uint8_t src_mac[6];     /* zero in an IPv4-only cache */
    uint8_t dst_mac[6];
    uint16_t in_port;
    uint16_t out_port;      /* or VS_FLOW_OUT_FLOOD / VS_FLOW_OUT_DROP */
    uint16_t vlan;
    uint16_t ethertype;
    uint16_t src_port;
    uint16_t dst_port;      /* ICMP: type * 256 + code */
    uint8_t proto;
    uint8_t tos;
    uint8_t tcp_flags;
    uint8_t end_reason;     /* VS_FLOW_END_* */
    uint64_t packets;       /* sampled frames (segments of an offloaded one) */
    uint64_t bytes;         /* IP bytes */
    int64_t first_ms;
    int64_t last_ms;
};

struct vs_flow_stats {
    uint32_t flows;          /* in the cache now */
    uint32_t max_flows;
    uint64_t packets;        /* accounted */
    uint64_t unsampled;      /* passed over by sampling */
    uint64_t created;
    uint64_t expired_idle;   /* records written, by reason */
    uint64_t expired_active;
    uint64_t flushed;
    uint64_t no_room;        /* packets whose new flow did not fit */
    uint64_t skipped;        /* not for this cache (not IPv4, for NetFlow) */
    uint64_t truncated;      /* IP or L4 header cut short: keyed with what is there */
    uint64_t fragments;      /* later fragments: keyed without ports */
    uint64_t bad_length;     /* IP length beyond the frame: its bytes counted */
};

/* cfg NULL turns the cache off.  Turning it on (or changing it) starts an
 * empty cache, allocated now; collect with flush first to keep the flows. */
int vs_flow_configure(vs_dp *dp, int br, int cache,
                      const struct vs_flow_config *cfg);
/* Write up to max records of flows that are due: idle ones (removed),
 * active ones past the active timeout (their counts restart), or with
 * flush every flow (removed).  Returns how many; call again while it
 * returns max.  -ENOTCONN when the cache is off. */
int vs_flow_collect(vs_dp *dp, int br, int cache, int flush,
                    struct vs_flow_record *out, int max);
int vs_flow_stats(vs_dp *dp, int br, int cache, struct vs_flow_stats *out);
/* sFlow packet samples: one frame in rate on average (random skips), its
 * first header_bytes queued as VS_UPCALL_SAMPLE with args = {input ofport,
 * output ofport (or VS_FLOW_OUT_FLOOD / _DROP), the input port's sample
 * pool, samples lost so far}.  rate 0 turns sampling off. */
int vs_flow_set_sampling(vs_dp *dp, int br, uint32_t rate, uint32_t header_bytes);
/* seen_sampled_dropped[3]: frames seen, samples queued, samples lost
 * (upcall queue full).  -ENOTCONN when sampling is off. */
int vs_flow_sampling_stats(vs_dp *dp, int br, uint64_t *seen_sampled_dropped);
/* The number flows, samples and collectors know a port by (0..65532). */
int vs_port_set_ofport(vs_dp *dp, int port, int ofport);

/* --- microbenchmark entry points (no lock: call with the thread stopped) ---- */

/* Learn n keys ((vlan << 48) | mac as a 48-bit big-endian number) on port. */
int vs_fdb_bench_learn(vs_dp *dp, int br, int port, const uint64_t *keys,
                       int n);
/* Look up n keys; returns how many were found. */
int vs_fdb_bench_lookup(vs_dp *dp, int br, const uint64_t *keys, int n);
/* Parse the same frame n times; returns the sum of l3 offsets. */
long vs_bench_parse(const uint8_t *frame, size_t len, int n);
/* Dry run: the forwarding path decides everything and counts, but writes
 * nothing (what vs_bench_forward measures). */
void vs_dp_set_dry_run(vs_dp *dp, int on);
/* Run n frames (packed back to back, lengths in lens, each as iface would
 * read it) through the whole forwarding decision, in batches, rounds times.
 * Returns the number of frames processed. */
long vs_bench_forward(vs_dp *dp, int iface, const uint8_t *frames,
                      const uint32_t *lens, int n, int rounds);
/* Choose the egress member of bond port for n (vlan << 48 | mac) keys;
 * returns the sum of the chosen interface ids. */
long vs_bench_bond_select(vs_dp *dp, int port, const uint64_t *keys, int n);

#endif
