/*
 * tunnel.c - VXLAN (RFC 7348) tunnel interfaces over an IPv4 underlay.
 *
 * A tunnel is an interface of a port, like a TAP, except that it has no fd
 * of its own:
 *
 *  - Receiving: one UDP socket per (local_ip, dst_port), shared by every
 *    tunnel with that address and port, polled by the forwarding thread
 *    like any interface (its epoll token is VS_TUNSOCK_TOKEN + index).  One
 *    recvmmsg() reads a batch; each datagram's VXLAN header goes into a
 *    small array and its inner frame straight to where forwarding expects a
 *    frame (scatter read: nothing is moved).  The sender's address and the
 *    VNI choose the tunnel interface; runs of frames for the same one are
 *    forwarded together.  Anything else is counted by reason on the tunnel
 *    that the sender belongs to (unknown_remote, when it belongs to none,
 *    goes to the socket's first tunnel).  IP_FREEBIND lets the socket be
 *    bound before local_ip is on any interface: frames arrive once it is.
 *
 *  - Sending: one raw IPv4 socket (IPPROTO_RAW) for the datapath.  We write
 *    the whole outer header, so each datagram gets what the kernel's vxlan
 *    device would give it: a UDP source port hashed from the inner flow (in
 *    32768..60999, for ECMP), TTL 64 (or the tunnel's), DF clear unless
 *    asked for, and the UDP checksum computed here, complete -- a kernel UDP
 *    socket would leave it to the underlay device, and a veth hands such
 *    "partial" checksums over unfinished, which Open vSwitch's userspace
 *    datapath drops.  Datagrams wait in a queue and leave with one
 *    sendmmsg() per batch; each is two pieces, its headers (outer, plus the
 *    few inner bytes that change) and a slice of the received frame, so the
 *    inner frame is never copied by us (the kernel copies it once into its
 *    socket buffer).
 *
 *  - Large TCP segments (virtio-net GSO, from a TAP) are cut here to the
 *    tunnel's inner MTU the same way: per segment, rewritten headers plus a
 *    slice of the payload; the payload's sum is taken once and serves both
 *    the inner TCP checksum and the outer UDP one.
 *
 *  - MTU, as the kernel's vxlan device does it: a frame whose L3 packet is
 *    larger than the inner MTU gets, when it is IPv4 with DF, an ICMP
 *    "fragmentation needed" (with the tunnel's MTU) written back to the port
 *    it came from, from the original destination's addresses; otherwise
 *    the outer packet is fragmented here (a raw socket refuses to).
 *
 *  - Head-end replication: a flooded frame is queued once per remote; a
 *    known unicast only to the remote its MAC was learned from (the FDB
 *    entry keeps the remote's index).  A frame never goes back out of the
 *    tunnel port it came in by (forward.c skips the input port).
 *
 * Thread safety: every function here runs with dp->lock held -- from the
 * forwarding thread (rx, output, flush, periodic) or from a control call
 * (add, set remotes, stats, release) -- so they never run concurrently.
 * The transmit queue is empty between batches (vs_tx_flush runs at the
 * end of each), so control calls never find entries that point into
 * buffers or tunnels they change.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tunnel.h"

#define MAX_TUNSOCKS 64
#define VXLAN_HLEN 8
#define OUTER_HLEN 36        /* IPv4 20 + UDP 8 + VXLAN 8 */
#define TXQ 512
#define HDR_ROOM 192         /* outer headers + a segment's inner headers */
#define MAX_SEGMENTS 1024
#define DEFAULT_TTL 64
#define SPORT_MIN 32768      /* the kernel's default ip_local_port_range */
#define SPORT_MAX 61000
#define ROUTES_PER_TICK 32   /* remotes whose route is refreshed per second */
#define VXLAN_FLAG_I 0x08
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define ICMP_DATA_MAX 548    /* 576 - IPv4 header - ICMP header */

struct remote {
    uint32_t ip, src;        /* network byte order; src 0: no route */
    uint32_t path_mtu;       /* of the route to ip; 0 unknown */
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_errors;
};

struct vs_tunnel {
    struct vs_tunnel_cfg cfg;
    /* The inner MTU, for what we send.  The interface's own mtu is the
     * largest frame: what arrives was reassembled by the kernel already and
     * is taken whatever its size, as the kernel's vxlan device takes it. */
    uint32_t mtu;
    uint16_t sock;
    uint8_t n_remotes;
    struct remote remotes[VS_MAX_REMOTES];
};

#define GSO_SOCKS 16          /* UDP GSO: sending sockets, one per source port */
#define GSO_CHUNK 64          /* segments per UDP_SEGMENT send */

struct tunsock {
    bool in_use;
    int fd;
    int gso_fds[GSO_SOCKS];   /* UDP GSO senders bound to local_ip; 0: not yet */
    uint32_t gen;
    uint32_t local_ip;
    uint16_t port;
    uint16_t users;
};

/* One datagram waiting to leave: iov[0] is hdr (outer headers and the
 * inner bytes we rewrote), the rest slices of a received frame. */
#define TX_IOV 6
struct txent {
    struct sockaddr_in to;
    uint16_t iface;
    uint8_t remote;
    uint8_t niov;            /* 0: not sent (fragmented into later entries) */
    bool counts;             /* the datagram that counts the frame as sent */
    uint32_t len;            /* inner frame bytes, for the counters */
    struct iovec iov[TX_IOV];
    uint8_t hdr[HDR_ROOM] __attribute__((aligned(8)));
};

/* A GSO segment being sent: VXLAN and inner headers, and its payload. */
struct gso_seg {
    uint8_t hdr[HDR_ROOM];
    uint32_t hlen;
    const uint8_t *payload;
    uint32_t n;
    uint32_t isum;            /* sum of the inner frame, for the outer checksum */
    uint16_t sport;
};

struct vs_tunnels {
    /* Each tunnel interface's state, by interface id: kept here rather than
     * in struct vs_iface so that struct stays three cache lines for every
     * other port (the forwarding decision touches it per output). */
    struct vs_tunnel *of[VS_MAX_IFACES];
    struct gso_seg segs[GSO_CHUNK];
    int raw_fd;              /* IPPROTO_RAW: we write the whole IPv4 header */
    int route_fd;            /* UDP, connected only to ask the routing table */
    uint16_t ip_id;
    uint16_t n_tun;
    uint32_t route_cursor;
    struct tunsock socks[MAX_TUNSOCKS];
    uint16_t tun_ifaces[VS_MAX_IFACES];
    uint8_t rx_remote[VS_BATCH];    /* remote of dp->pkts[i] while forwarding */
    uint8_t rx_vxh[VS_BATCH][VXLAN_HLEN];
    int ntx;
    struct txent txq[TXQ];
};

static inline struct vs_tunnel *TUN(const struct vs_dp *dp, const struct vs_iface *ifc)
{
    return dp->tunnels->of[ifc - dp->ifaces];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* --- checksums -------------------------------------------------------------
 * One's complement sums as 16-bit big-endian words, kept unfolded in 32
 * bits by callers.  sum_be() reads 8 bytes at a time in host order (the
 * sum is byte-order independent up to a final swap, RFC 1071). */

static uint32_t fold32(uint64_t s)
{
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    uint32_t x = (uint32_t)s;
    x = (x & 0xffff) + (x >> 16);
    x = (x & 0xffff) + (x >> 16);
    return x;
}

static inline uint32_t swap16(uint32_t x)
{
    return ((x & 0xff) << 8) | ((x >> 8) & 0xff);
}

/* Sum of n bytes starting at an even offset, folded to 16 bits. */
static uint32_t sum_be(const uint8_t *p, uint32_t n)
{
    uint64_t s = 0;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
    if (n) {
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        s += w;
    }
    uint32_t f = fold32(s);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    f = swap16(f);
#endif
    return f;
}

/* Add the sum of a piece that starts at byte offset `at` of the summed
 * region: a piece at an odd offset contributes its bytes swapped. */
static inline uint32_t sum_at(uint32_t acc, uint32_t piece, uint32_t at)
{
    return acc + ((at & 1) ? swap16(piece) : piece);
}

static inline uint16_t finish(uint32_t s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* --- state ------------------------------------------------------------------ */

static struct vs_tunnels *tunnels(struct vs_dp *dp, int *err)
{
    if (dp->tunnels)
        return dp->tunnels;
    struct vs_tunnels *T = calloc(1, sizeof *T);
    if (!T) {
        *err = -ENOMEM;
        return NULL;
    }
    T->raw_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
    T->route_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (T->raw_fd < 0 || T->route_fd < 0) {
        *err = -errno;
        if (T->raw_fd >= 0)
            close(T->raw_fd);
        if (T->route_fd >= 0)
            close(T->route_fd);
        free(T);
        return NULL;
    }
    /* Room for a few 64 KB segments cut into datagrams between flushes. */
    int sz = 4 << 20;
    if (setsockopt(T->raw_fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(T->raw_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    T->ip_id = (uint16_t)(dp->seed >> 16);
    dp->tunnels = T;
    return T;
}

void vs_tunnels_free(struct vs_dp *dp)
{
    struct vs_tunnels *T = dp->tunnels;
    if (!T)
        return;
    for (int i = 0; i < MAX_TUNSOCKS; i++) {
        if (!T->socks[i].in_use)
            continue;
        close(T->socks[i].fd);
        for (int k = 0; k < GSO_SOCKS; k++)
            if (T->socks[i].gso_fds[k] > 0)
                close(T->socks[i].gso_fds[k]);
    }
    close(T->raw_fd);
    close(T->route_fd);
    free(T);
    dp->tunnels = NULL;
}

/* The shared receiving socket for (local_ip, port), opened on first use. */
static int sock_get(struct vs_dp *dp, struct vs_tunnels *T, uint32_t local_ip,
                    uint16_t port)
{
    int free_idx = -1;
    for (int i = 0; i < MAX_TUNSOCKS; i++) {
        struct tunsock *s = &T->socks[i];
        if (s->in_use && s->local_ip == local_ip && s->port == port) {
            s->users++;
            return i;
        }
        if (!s->in_use && free_idx < 0)
            free_idx = i;
    }
    if (free_idx < 0)
        return -ENOSPC;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, sz = 4 << 20;
    /* SO_REUSEADDR: a socket on the wildcard address and one on a given
     * address may share the port (the kernel delivers to the more specific). */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = local_ip};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct tunsock *s = &T->socks[free_idx];
    uint32_t gen = s->gen + 1;
    struct epoll_event ev = {
        .events = EPOLLIN,
        .data.u64 = ((uint64_t)gen << 32) | (VS_TUNSOCK_TOKEN + (uint32_t)free_idx),
    };
    if (epoll_ctl(dp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *s = (struct tunsock){.in_use = true, .fd = fd, .gen = gen, .local_ip = local_ip,
                          .port = port, .users = 1};   /* gso_fds: none yet */
    return free_idx;
}

static void sock_put(struct vs_dp *dp, struct vs_tunnels *T, int i)
{
    struct tunsock *s = &T->socks[i];
    if (--s->users)
        return;
    epoll_ctl(dp->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    for (int k = 0; k < GSO_SOCKS; k++)
        if (s->gso_fds[k] > 0)
            close(s->gso_fds[k]);
    memset(s->gso_fds, 0, sizeof s->gso_fds);
    s->in_use = false;
    s->fd = -1;
}

/* Which source address and path MTU the routing table gives for r now. */
static void refresh_route(struct vs_tunnels *T, const struct vs_tunnel *t,
                          struct remote *r)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(t->cfg.dst_port),
                            .sin_addr.s_addr = r->ip};
    r->src = 0;
    r->path_mtu = 0;
    if (connect(T->route_fd, (struct sockaddr *)&a, sizeof a) == 0) {
        struct sockaddr_in me;
        socklen_t l = sizeof me;
        if (getsockname(T->route_fd, (struct sockaddr *)&me, &l) == 0)
            r->src = me.sin_addr.s_addr;
        int mtu = 0;
        socklen_t ml = sizeof mtu;
        if (getsockopt(T->route_fd, IPPROTO_IP, IP_MTU, &mtu, &ml) == 0 && mtu > 0)
            r->path_mtu = (uint32_t)mtu;
    }
    struct sockaddr un = {.sa_family = AF_UNSPEC};
    connect(T->route_fd, &un, sizeof un);
    if (t->cfg.local_ip)
        r->src = t->cfg.local_ip;
}

void vs_tunnel_periodic(struct vs_dp *dp)
{
    struct vs_tunnels *T = dp->tunnels;
    if (!T || !T->n_tun)
        return;
    /* Round robin over all remotes, a bounded number per tick, so many
     * tunnels never make one tick long. */
    uint32_t total = 0;
    for (int k = 0; k < T->n_tun; k++)
        total += T->of[T->tun_ifaces[k]]->n_remotes;
    if (!total)
        return;
    for (uint32_t done = 0; done < ROUTES_PER_TICK && done < total; done++) {
        uint32_t c = T->route_cursor++ % total;
        for (int k = 0; k < T->n_tun; k++) {
            struct vs_tunnel *t = T->of[T->tun_ifaces[k]];
            if (c < t->n_remotes) {
                refresh_route(T, t, &t->remotes[c]);
                break;
            }
            c -= t->n_remotes;
        }
    }
}

/* --- control ---------------------------------------------------------------- */

static int find_remote(const struct vs_tunnel *t, uint32_t ip)
{
    for (int i = 0; i < t->n_remotes; i++)
        if (t->remotes[i].ip == ip)
            return i;
    return -1;
}

static int check_remotes(const uint32_t *remotes, int n)
{
    if (n < 1 || n > VS_MAX_REMOTES || !remotes)
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        if (remotes[i] == 0 || remotes[i] == 0xffffffffu)
            return -EINVAL;
        for (int j = 0; j < i; j++)
            if (remotes[j] == remotes[i])
                return -EINVAL;
    }
    return 0;
}

/* Another tunnel on the same socket with the same VNI and a remote in
 * common would make incoming frames ambiguous. */
static bool clashes(struct vs_dp *dp, struct vs_tunnels *T, const struct vs_tunnel *self,
                    int sock, uint32_t vni, const uint32_t *remotes, int n)
{
    for (int k = 0; k < T->n_tun; k++) {
        const struct vs_tunnel *o = T->of[T->tun_ifaces[k]];
        if (o == self || o->sock != sock || o->cfg.vni != vni)
            continue;
        for (int i = 0; i < n; i++)
            if (find_remote(o, remotes[i]) >= 0)
                return true;
    }
    return false;
}

static void set_remotes(struct vs_tunnels *T, struct vs_tunnel *t, const uint32_t *remotes,
                        int n)
{
    struct remote old[VS_MAX_REMOTES];
    int n_old = t->n_remotes;
    memcpy(old, t->remotes, sizeof old);
    for (int i = 0; i < n; i++) {
        struct remote *r = &t->remotes[i];
        memset(r, 0, sizeof *r);
        r->ip = remotes[i];
        for (int j = 0; j < n_old; j++)
            if (old[j].ip == remotes[i])
                *r = old[j];   /* a remote that stays keeps its counters */
        refresh_route(T, t, r);
    }
    t->n_remotes = (uint8_t)n;
}

static int tunnel_add_locked(struct vs_dp *dp, int p, const struct vs_tunnel_cfg *cfg,
                             const uint32_t *remotes, int n, uint32_t mtu)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (port->n_members || port->bond_mode != VS_BOND_NONE)
        return -EBUSY;
    if (!cfg || cfg->vni > 0xffffff || cfg->dst_port == 0 ||
        (cfg->flags & ~(uint32_t)(VS_TUN_F_CSUM | VS_TUN_F_DF | VS_TUN_F_UDP_GSO)))
        return -EINVAL;
    if (mtu < 68 || mtu > VS_MAX_FRAME - OUTER_HLEN - 64)
        return -EINVAL;
    int err = check_remotes(remotes, n);
    if (err)
        return err;
    struct vs_tunnels *T = tunnels(dp, &err);
    if (!T)
        return err;
    int sock = sock_get(dp, T, cfg->local_ip, cfg->dst_port);
    if (sock < 0)
        return sock;
    if (clashes(dp, T, NULL, sock, cfg->vni, remotes, n)) {
        sock_put(dp, T, sock);
        return -EEXIST;
    }
    struct vs_tunnel *t = calloc(1, sizeof *t);
    if (!t) {
        sock_put(dp, T, sock);
        return -ENOMEM;
    }
    t->cfg = *cfg;
    if (!t->cfg.ttl)
        t->cfg.ttl = DEFAULT_TTL;
    t->sock = (uint16_t)sock;
    t->mtu = mtu;
    int i = vs_iface_add_locked(dp, p, -1, VS_IFACE_VXLAN, 0, VS_MAX_FRAME);
    if (i < 0) {
        free(t);
        sock_put(dp, T, sock);
        return i;
    }
    T->of[i] = t;
    T->tun_ifaces[T->n_tun++] = (uint16_t)i;
    set_remotes(T, t, remotes, n);
    return i;
}

int vs_tunnel_add(vs_dp *dp, int port, const struct vs_tunnel_cfg *cfg,
                  const uint32_t *remotes, int n_remotes, uint32_t mtu)
{
    LOCKED(tunnel_add_locked(dp, port, cfg, remotes, n_remotes, mtu));
}

void vs_tunnel_release(struct vs_dp *dp, struct vs_iface *ifc)
{
    struct vs_tunnels *T = dp->tunnels;
    int i = (int)(ifc - dp->ifaces);
    for (int k = 0; k < T->n_tun; k++) {
        if (T->tun_ifaces[k] == i) {
            T->tun_ifaces[k] = T->tun_ifaces[--T->n_tun];
            break;
        }
    }
    struct vs_tunnel **t = &T->of[i];
    sock_put(dp, T, (*t)->sock);
    free(*t);
    *t = NULL;
}

static int set_remotes_locked(struct vs_dp *dp, int i, const uint32_t *remotes, int n)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc || ifc->kind != VS_IFACE_VXLAN)
        return -ENOENT;
    int err = check_remotes(remotes, n);
    if (err)
        return err;
    struct vs_tunnel *t = TUN(dp, ifc);
    if (clashes(dp, dp->tunnels, t, t->sock, t->cfg.vni, remotes, n))
        return -EEXIST;
    /* Learned MACs follow their remote to its new index, or are forgotten
     * with it. */
    uint8_t map[VS_MAX_REMOTES];
    for (int r = 0; r < t->n_remotes; r++) {
        map[r] = VS_FDB_NO_REMOTE;
        for (int j = 0; j < n; j++)
            if (remotes[j] == t->remotes[r].ip)
                map[r] = (uint8_t)j;
    }
    struct vs_fdb *f = &dp->bridges[dp->ports[ifc->port].bridge]->fdb;
    uint32_t e = f->lru_head[ifc->port];
    while (e != VS_FDB_NIL) {
        struct vs_fdb_ent *x = &f->ents[e];
        uint32_t next = x->next;
        if (x->remote < t->n_remotes) {
            x->remote = map[x->remote];
            if (x->remote == VS_FDB_NO_REMOTE)
                fdb_remove(f, x->key);
        }
        e = next;
    }
    set_remotes(dp->tunnels, t, remotes, n);
    return 0;
}

int vs_tunnel_set_remotes(vs_dp *dp, int iface, const uint32_t *remotes, int n)
{
    LOCKED(set_remotes_locked(dp, iface, remotes, n));
}

static int remote_stats_locked(struct vs_dp *dp, int i, struct vs_remote_stats *out,
                               int max)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc || ifc->kind != VS_IFACE_VXLAN)
        return -ENOENT;
    struct vs_tunnel *t = TUN(dp, ifc);
    for (int r = 0; r < t->n_remotes && r < max; r++) {
        const struct remote *x = &t->remotes[r];
        out[r] = (struct vs_remote_stats){
            .ip = x->ip, .src_ip = x->src, .rx_packets = x->rx_packets,
            .rx_bytes = x->rx_bytes, .tx_packets = x->tx_packets,
            .tx_bytes = x->tx_bytes, .tx_errors = x->tx_errors};
    }
    return t->n_remotes;
}

int vs_tunnel_remote_stats(vs_dp *dp, int iface, struct vs_remote_stats *out, int max)
{
    LOCKED(remote_stats_locked(dp, iface, out, max));
}

uint32_t vs_tunnel_remote_ip(struct vs_dp *dp, int p, uint8_t r)
{
    struct vs_port *port = &dp->ports[p];
    if (!port->n_members || dp->ifaces[port->members[0]].kind != VS_IFACE_VXLAN)
        return 0;
    const struct vs_tunnel *t = dp->tunnels->of[port->members[0]];
    return t && r < t->n_remotes ? t->remotes[r].ip : 0;
}

/* --- transmit --------------------------------------------------------------- */

/* The UDP source port: a hash of the inner flow (addresses, protocol and
 * ports when it has them, else the MACs and ethertype), so one flow keeps
 * one path and different flows spread over ECMP paths. */
static uint16_t flow_sport(const struct vs_dp *dp, const struct vs_pkt *pkt)
{
    const uint8_t *d = pkt->data;
    uint32_t l3 = pkt->l3_offset, len = pkt->len;
    uint16_t et = vs_rd16(d + l3 - 2);
    uint64_t h = dp->seed ^ et;
    uint32_t l4 = 0;
    uint8_t proto = 0;
    if (et == 0x0800 && len >= l3 + 20 && (d[l3] >> 4) == 4) {
        uint64_t a;
        memcpy(&a, d + l3 + 12, 8);
        h ^= a;
        proto = d[l3 + 9];
        bool frag = (vs_rd16(d + l3 + 6) & 0x3fff) != 0;
        if (!frag)
            l4 = l3 + (d[l3] & 0xf) * 4u;
    } else if (et == 0x86dd && len >= l3 + 40) {
        uint64_t a[4];
        memcpy(a, d + l3 + 8, 32);
        h ^= a[0] ^ (a[1] * 31) ^ (a[2] * 131) ^ (a[3] * 1031);
        proto = d[l3 + 6];
        l4 = l3 + 40;
    } else {
        uint64_t a;
        memcpy(&a, d, 8);
        h ^= a ^ ((uint64_t)vs_rd16(d + 8) << 16 | vs_rd16(d + 10));
    }
    h ^= (uint64_t)proto << 56;
    if (l4 && (proto == 6 || proto == 17 || proto == 132) && len >= l4 + 4)
        h ^= (uint64_t)rd32(d + l4) << 24;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint16_t)((((h & 0xffffffffu) * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN);
}

/* The largest outer packet toward rem: its route's MTU, or else the inner
 * MTU plus the 50 bytes of encapsulation. */
static inline uint32_t outer_mtu(const struct vs_tunnel *t, const struct remote *rem)
{
    return rem->path_mtu ? rem->path_mtu : t->mtu + 50;
}

/* Queue entries a datagram of total bytes toward rem takes (fragments
 * point into an entry that is itself not sent). */
static int slots_needed(const struct vs_tunnel *t, const struct remote *rem, uint32_t total)
{
    uint32_t mtu = outer_mtu(t, rem);
    if (total <= mtu || (t->cfg.flags & VS_TUN_F_DF))
        return 1;
    uint32_t step = (mtu - 20) & ~7u;
    return 1 + (int)((total - 20 + step - 1) / step);
}

/* A free queue entry for a datagram that takes `need` entries: the queue
 * is flushed first when they do not fit; NULL when they never would. */
static struct txent *tx_slot(struct vs_dp *dp, int need)
{
    if (need > TXQ)
        return NULL;
    struct vs_tunnels *T = dp->tunnels;
    if (T->ntx + need > TXQ)
        vs_tunnel_flush(dp);
    return &T->txq[T->ntx];
}

/* Outer IPv4 + UDP + VXLAN headers into h, for an inner frame of inner_len
 * bytes whose sum (as it lies after the VXLAN header) is inner_sum. */
static void outer_hdr(uint8_t *h, const struct vs_tunnel *t, const struct remote *r,
                      uint32_t inner_len, uint16_t sport, uint32_t inner_sum)
{
    uint32_t ulen = 16 + inner_len;
    h[0] = 0x45;
    h[1] = 0;
    wr16(h + 2, (uint16_t)(20 + ulen));   /* the kernel fills it in too */
    wr16(h + 4, 0);                        /* set when queued (commit) */
    wr16(h + 6, (t->cfg.flags & VS_TUN_F_DF) ? 0x4000 : 0);
    h[8] = t->cfg.ttl;
    h[9] = 17;
    wr16(h + 10, 0);                       /* the kernel computes it */
    memcpy(h + 12, &r->src, 4);            /* 0: the kernel chooses */
    memcpy(h + 16, &r->ip, 4);
    uint8_t *u = h + 20;
    wr16(u, sport);
    wr16(u + 2, t->cfg.dst_port);
    wr16(u + 4, (uint16_t)ulen);
    wr16(u + 6, 0);
    uint8_t *v = h + 28;
    memset(v, 0, VXLAN_HLEN);
    v[0] = VXLAN_FLAG_I;
    v[4] = (uint8_t)(t->cfg.vni >> 16);
    v[5] = (uint8_t)(t->cfg.vni >> 8);
    v[6] = (uint8_t)t->cfg.vni;
    /* Without a known source address the pseudo-header cannot be summed:
     * send no checksum (0 is allowed over IPv4) rather than a wrong one. */
    if ((t->cfg.flags & VS_TUN_F_CSUM) && r->src) {
        uint32_t s = sum_be(h + 12, 8) + 17 + ulen + sum_be(u, 16) + inner_sum;
        uint16_t c = finish(s);
        wr16(u + 6, c ? c : 0xffff);
    }
}

/* Cut the queued datagram e (whose IPv4 total length exceeds mtu) into
 * fragments that point into it; e itself is then not sent. */
static void fragment(struct vs_dp *dp, struct txent *e, uint32_t mtu)
{
    struct vs_tunnels *T = dp->tunnels;
    /* What follows the IPv4 header, as pieces. */
    struct iovec rest[TX_IOV];
    int nrest = 0;
    uint32_t plen = 0;
    rest[nrest++] = (struct iovec){e->hdr + 20, e->iov[0].iov_len - 20};
    for (int k = 1; k < e->niov; k++)
        rest[nrest++] = e->iov[k];
    for (int k = 0; k < nrest; k++)
        plen += (uint32_t)rest[k].iov_len;
    uint32_t step = (mtu - 20) & ~7u;
    uint16_t id = vs_rd16(e->hdr + 4);
    e->niov = 0;
    int piece = 0;
    size_t in_piece = 0;
    bool first = true;
    for (uint32_t off = 0; off < plen; off += step) {
        uint32_t n = plen - off < step ? plen - off : step;
        struct txent *f = &T->txq[T->ntx++];
        f->to = e->to;
        f->iface = e->iface;
        f->remote = e->remote;
        f->counts = first && e->counts;
        f->len = e->len;
        first = false;
        memcpy(f->hdr, e->hdr, 20);
        wr16(f->hdr + 2, (uint16_t)(20 + n));
        uint16_t frag = (uint16_t)((off >> 3) | (off + n < plen ? 0x2000 : 0));
        wr16(f->hdr + 4, id);
        wr16(f->hdr + 6, frag);
        f->iov[0] = (struct iovec){f->hdr, 20};
        int k = 1;
        uint32_t left = n;
        while (left && k < TX_IOV) {
            size_t avail = rest[piece].iov_len - in_piece;
            size_t take = avail < left ? avail : left;
            f->iov[k++] = (struct iovec){(uint8_t *)rest[piece].iov_base + in_piece, take};
            left -= (uint32_t)take;
            in_piece += take;
            if (in_piece == rest[piece].iov_len) {
                piece++;
                in_piece = 0;
            }
        }
        f->niov = (uint8_t)k;
    }
}

/* Queue the datagram being built in the next slot: hdr holds the outer
 * headers and hlen - OUTER_HLEN inner bytes, tail the rest of the frame. */
static void commit(struct vs_dp *dp, struct vs_iface *out, int r, uint32_t hlen,
                   const uint8_t *tail, uint32_t tail_len)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    struct remote *rem = &t->remotes[r];
    struct txent *e = &T->txq[T->ntx++];
    e->to = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = rem->ip};
    e->iface = (uint16_t)(out - dp->ifaces);
    e->remote = (uint8_t)r;
    e->counts = true;
    e->len = hlen - OUTER_HLEN + tail_len;
    /* Our own IP id: the kernel would hash one per datagram otherwise (4 %
     * of the cost of sending, measured); a datapath-wide counter is unique
     * enough for the reassembly window of fragments (RFC 6864). */
    if (++T->ip_id == 0)
        T->ip_id = 1;
    wr16(e->hdr + 4, T->ip_id);
    e->iov[0] = (struct iovec){e->hdr, hlen};
    e->niov = 1;
    if (tail_len)
        e->iov[e->niov++] = (struct iovec){(void *)tail, tail_len};
    uint32_t total = hlen + tail_len;
    uint32_t mtu = outer_mtu(t, rem);
    if (total > mtu && !(t->cfg.flags & VS_TUN_F_DF))
        fragment(dp, e, mtu);
}

void vs_tunnel_flush(struct vs_dp *dp)
{
    struct vs_tunnels *T = dp->tunnels;
    if (!T || T->ntx == 0)
        return;
    struct mmsghdr msgs[TXQ];
    uint16_t which[TXQ];
    int m = 0;
    for (int i = 0; i < T->ntx; i++) {
        struct txent *e = &T->txq[i];
        if (!e->niov)
            continue;
        memset(&msgs[m], 0, sizeof msgs[m]);
        msgs[m].msg_hdr.msg_name = &e->to;
        msgs[m].msg_hdr.msg_namelen = sizeof e->to;
        msgs[m].msg_hdr.msg_iov = e->iov;
        msgs[m].msg_hdr.msg_iovlen = e->niov;
        which[m++] = (uint16_t)i;
    }
    int sent = 0;
    while (sent < m) {
        int r = dp->dry_run ? m - sent
                            : sendmmsg(T->raw_fd, msgs + sent, (unsigned)(m - sent),
                                       MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        int upto = r < 0 ? sent + 1 : sent + r;
        for (int j = sent; j < upto; j++) {
            struct txent *e = &T->txq[which[j]];
            struct vs_iface *ifc = &dp->ifaces[e->iface];
            struct vs_tunnel *t = T->of[e->iface];
            struct remote *rem = t ? &t->remotes[e->remote] : NULL;
            if (r < 0) {
                /* No route, a full socket buffer, a refused size: this
                 * datagram is lost and counted; the others still go. */
                ifc->stats.drops[VS_DROP_TX_ERROR]++;
                if (rem)
                    rem->tx_errors++;
            } else if (e->counts) {
                ifc->stats.tx_packets++;
                ifc->stats.tx_bytes += e->len;
                if (rem) {
                    rem->tx_packets++;
                    rem->tx_bytes += e->len;
                }
            }
        }
        sent = upto;
    }
    T->ntx = 0;
}

/* The L2 header of the frame as port op sends it (tag pushed, popped or
 * left), written to h; returns its length.  h gets the MACs, the tag if
 * any, and whatever lies between the original tag and `upto` (an inner tag,
 * the ethertype, and for segments the L3/L4 headers). */
static uint32_t inner_l2(const struct vs_pkt *pkt, bool tagged, uint8_t *h, uint32_t upto)
{
    memcpy(h, pkt->data, 12);
    uint32_t n = 12;
    if (tagged) {
        h[n++] = TPID_8021Q >> 8;
        h[n++] = TPID_8021Q & 0xff;
        h[n++] = (uint8_t)(pkt->tci >> 8);
        h[n++] = (uint8_t)pkt->tci;
    }
    uint32_t from = pkt->tag_len ? pkt->payload_off : 12;
    memcpy(h + n, pkt->data + from, upto - from);
    return n + upto - from;
}

/* ICMP "fragmentation needed" back to the sender of an IPv4 packet with DF
 * that does not fit the tunnel, as the kernel's vxlan device answers for a
 * bridged packet: from the original destination's MAC and address, with
 * the original IPv4 header and the start of its payload.  Returns false
 * when the packet must not be answered (an ICMP error, a broadcast, a
 * fragment's tail). */
static bool frag_needed(struct vs_dp *dp, const struct vs_pkt *pkt, struct vs_iface *in,
                        uint32_t mtu)
{
    const uint8_t *d = pkt->data;
    uint32_t l3 = pkt->l3_offset;
    uint32_t ihl = (d[l3] & 0xf) * 4u;
    if (in->kind == VS_IFACE_VXLAN || in->failed || ihl < 20 || pkt->len < l3 + ihl ||
        vs_mac_is_group(d) || vs_mac_is_group(d + 6))
        return false;
    if ((vs_rd16(d + l3 + 6) & 0x1fff) != 0)
        return false;                        /* not the first fragment */
    const uint8_t *saddr = d + l3 + 12, *daddr = d + l3 + 16;
    if (saddr[0] == 0 || saddr[0] >= 224 || daddr[0] >= 224)
        return false;
    if (d[l3 + 9] == 1 && pkt->len >= l3 + ihl + 1) {
        uint8_t type = d[l3 + ihl];
        if (type != 0 && type != 8 && type != 13 && type != 14)
            return false;                    /* never answer an ICMP error */
    }
    uint8_t buf[18 + 28 + ICMP_DATA_MAX];
    bool tagged = vs_vlan_egress_tagged(&dp->ports[in->port], pkt->vlan);
    memcpy(buf, d + 6, 6);
    memcpy(buf + 6, d, 6);
    uint32_t o = 12;
    if (tagged) {
        wr16(buf + o, TPID_8021Q);
        wr16(buf + o + 2, pkt->tci);
        o += 4;
    }
    wr16(buf + o, 0x0800);
    o += 2;
    uint32_t data = pkt->len - l3 < ICMP_DATA_MAX ? pkt->len - l3 : ICMP_DATA_MAX;
    uint8_t *ip = buf + o, *ic = ip + 20;
    memset(ip, 0, 28);
    ip[0] = 0x45;
    wr16(ip + 2, (uint16_t)(28 + data));
    ip[8] = 64;
    ip[9] = 1;
    memcpy(ip + 12, daddr, 4);
    memcpy(ip + 16, saddr, 4);
    wr16(ip + 10, finish(sum_be(ip, 20)));
    ic[0] = 3;   /* destination unreachable */
    ic[1] = 4;   /* fragmentation needed and DF set */
    wr16(ic + 6, (uint16_t)mtu);
    memcpy(ic + 8, d + l3, data);
    wr16(ic + 2, finish(sum_be(ic, 8 + data)));
    struct iovec iov = {buf, o + 28 + data};
    vs_iface_write(dp, in, NULL, &iov, 1, (uint32_t)iov.iov_len);
    return true;
}

/* A frame that is not a GSO segment: one datagram per remote, two pieces
 * each (headers with the L2 header we may have changed, then the rest of
 * the frame as received). */
static void output_frame(struct vs_dp *dp, struct vs_pkt *pkt, bool tagged,
                         struct vs_iface *out, struct vs_iface *in, int only)
{
    struct vs_tunnel *t = TUN(dp, out);
    if (pkt->vnet.flags & VNET_F_NEEDS_CSUM) {
        /* Finished in the shared buffer (right for every output); what was
         * queued before still describes it as partial, so it leaves first. */
        vs_tx_flush(dp);
        vs_vnet_complete_csum(pkt);
    }
    uint32_t l3len = pkt->len - pkt->l3_offset;
    if (l3len > t->mtu) {
        bool v4 = vs_rd16(pkt->data + pkt->l3_offset - 2) == 0x0800 &&
                  pkt->len >= pkt->l3_offset + 20u;
        if (v4 && (pkt->data[pkt->l3_offset + 6] & 0x40)) {
            out->stats.drops[frag_needed(dp, pkt, in, t->mtu) ? VS_DROP_FRAG_NEEDED
                                                                 : VS_DROP_OVERSIZE]++;
            return;
        }
        if (t->cfg.flags & VS_TUN_F_DF) {   /* may not fragment the outer packet */
            out->stats.drops[VS_DROP_OVERSIZE]++;
            return;
        }
    }
    /* What we rewrite: the L2 header, when the tag changes. */
    uint8_t l2[24];
    uint32_t l2len = 0;
    const uint8_t *tail = pkt->data;
    uint32_t tail_len = pkt->len;
    bool has_tag = pkt->tag_len && vs_rd16(pkt->data + 14) == pkt->tci;
    if (tagged != (pkt->tag_len != 0) || (tagged && !has_tag)) {
        l2len = inner_l2(pkt, tagged, l2, pkt->tag_len ? pkt->payload_off : 12);
        tail = pkt->data + (pkt->tag_len ? pkt->payload_off : 12);
        tail_len = pkt->len - (uint32_t)(tail - pkt->data);
    }
    uint32_t isum = 0;
    if (t->cfg.flags & VS_TUN_F_CSUM) {
        isum = l2len ? sum_be(l2, l2len) : 0;
        isum = sum_at(isum, sum_be(tail, tail_len), l2len);
    }
    uint16_t sport = flow_sport(dp, pkt);
    int first = only >= 0 ? only : 0, last = only >= 0 ? only : t->n_remotes - 1;
    for (int r = first; r <= last; r++) {
        struct txent *e = tx_slot(dp, slots_needed(t, &t->remotes[r],
                                                   OUTER_HLEN + l2len + tail_len));
        if (!e) {
            out->stats.drops[VS_DROP_OVERSIZE]++;
            continue;
        }
        outer_hdr(e->hdr, t, &t->remotes[r], l2len + tail_len, sport, isum);
        memcpy(e->hdr + OUTER_HLEN, l2, l2len);
        commit(dp, out, r, OUTER_HLEN + l2len, tail, tail_len);
    }
}

/* A virtio-net GSO frame: cut into segments that fit the inner MTU, each
 * sent to every remote chosen as rewritten headers + a payload slice. */
/* UDP GSO: the pool of sending sockets of a tunnel socket's address, one
 * per source port, opened on first use. */
static int gso_fd(struct vs_tunnels *T, struct tunsock *ts, uint16_t sport)
{
    int k = sport % GSO_SOCKS;
    if (ts->gso_fds[k] > 0)
        return ts->gso_fds[k];
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1, dont = IP_PMTUDISC_DONT, sz = 4 << 20;
    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = ts->local_ip};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    (void)T;
    ts->gso_fds[k] = fd;
    return fd;
}

/* One sendmsg() with UDP_SEGMENT: m VXLAN datagrams of seg_size bytes
 * (the last may be shorter), each the segment's headers then its payload
 * slice; the kernel cuts them apart and writes IP and UDP headers (and the
 * UDP checksum, or leaves it to the device). */
static void send_udp_gso(struct vs_dp *dp, struct vs_iface *out, int r,
                         const struct gso_seg *segs, int m, uint32_t seg_size)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    struct remote *rem = &t->remotes[r];
    struct tunsock *ts = &T->socks[t->sock];
    int fd = gso_fd(T, ts, segs[0].sport);
    struct iovec iov[2 * GSO_CHUNK];
    uint64_t bytes = 0;
    for (int j = 0; j < m; j++) {
        iov[2 * j] = (struct iovec){(void *)segs[j].hdr, segs[j].hlen};
        iov[2 * j + 1] = (struct iovec){(void *)segs[j].payload, segs[j].n};
        bytes += segs[j].hlen - VXLAN_HLEN + segs[j].n;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(t->cfg.dst_port),
                             .sin_addr.s_addr = rem->ip};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr mh = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = iov,
                        .msg_iovlen = (size_t)(2 * m), .msg_control = c.buf,
                        .msg_controllen = sizeof c.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gs = (uint16_t)seg_size;
    memcpy(CMSG_DATA(cm), &gs, sizeof gs);
    cm = CMSG_NXTHDR(&mh, cm);
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_TTL;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int ttl = t->cfg.ttl;
    memcpy(CMSG_DATA(cm), &ttl, sizeof ttl);
    ssize_t rc = 0;
    if (!dp->dry_run) {
        if (fd < 0)
            rc = -1;
        else
            do {
                rc = sendmsg(fd, &mh, MSG_DONTWAIT);
            } while (rc < 0 && errno == EINTR);
    }
    if (rc < 0) {
        out->stats.drops[VS_DROP_TX_ERROR] += (uint64_t)m;
        rem->tx_errors += (uint64_t)m;
        return;
    }
    out->stats.tx_packets += (uint64_t)m;
    out->stats.tx_bytes += bytes;
    rem->tx_packets += (uint64_t)m;
    rem->tx_bytes += bytes;
}

/* A virtio-net GSO frame: cut into segments that fit the inner MTU, each
 * sent to every remote chosen as rewritten headers + a payload slice: in
 * the raw socket's queue, or (udp_gso) GSO_CHUNK at a time in one
 * UDP_SEGMENT send per remote. */
static void output_gso(struct vs_dp *dp, struct vs_pkt *pkt, bool tagged,
                       struct vs_iface *out, int only)
{
    struct vs_tunnels *T = dp->tunnels;
    struct vs_tunnel *t = TUN(dp, out);
    uint8_t gso = pkt->vnet.gso_type & ~VNET_GSO_ECN;
    struct l4_layout lay;
    if (!vs_gso_layout(pkt, gso, &lay)) {
        out->stats.drops[VS_DROP_NO_GSO]++;
        return;
    }
    bool tcp = gso != VNET_GSO_UDP_L4;
    bool udp_gso = tcp && (t->cfg.flags & (VS_TUN_F_UDP_GSO | VS_TUN_F_DF)) == VS_TUN_F_UDP_GSO;
    uint32_t hl = lay.payload - lay.l3;      /* L3 + L4 headers */
    uint32_t mss = pkt->vnet.gso_size;
    /* cut to the inner MTU; with UDP GSO also to what the route carries,
     * since every datagram of the send must fit it whole */
    uint32_t limit = t->mtu;
    if (udp_gso) {
        uint32_t l2 = 14 + (tagged ? 4 : 0) + (lay.l3 - (pkt->tag_len ? pkt->payload_off : 12) - 2);
        for (int r = 0; r < t->n_remotes; r++) {
            uint32_t om = outer_mtu(t, &t->remotes[r]);
            if (om < OUTER_HLEN + l2 + limit)
                limit = om > OUTER_HLEN + l2 ? om - OUTER_HLEN - l2 : 0;
        }
    }
    if (tcp && hl + mss > limit)
        mss = limit > hl ? limit - hl : 0;
    uint32_t total = pkt->len - lay.payload;
    uint32_t nseg = total == 0 ? 1 : (mss ? (total + mss - 1) / mss : 0);
    if (mss == 0 || nseg > MAX_SEGMENTS) {
        out->stats.drops[VS_DROP_NO_GSO]++;
        return;
    }
    /* The segment's headers, built once and patched per segment. */
    uint8_t tmpl[HDR_ROOM - OUTER_HLEN];
    uint32_t hlen = inner_l2(pkt, tagged, tmpl, lay.payload);
    uint32_t l3 = hlen - hl, l4 = l3 + (lay.l4 - lay.l3);
    const uint8_t *d = pkt->data;
    uint32_t seq = tcp ? rd32(d + lay.l4 + 4) : 0;
    uint16_t ip_id = lay.v6 ? 0 : vs_rd16(d + lay.l3 + 4);
    uint8_t tcp_flags = tcp ? d[lay.l4 + 13] : 0;
    uint16_t sport = flow_sport(dp, pkt);
    /* pseudo-header addresses of the inner L4 checksum */
    uint32_t psum = lay.v6 ? sum_be(tmpl + l3 + 8, 32) : sum_be(tmpl + l3 + 12, 8);
    int first = only >= 0 ? only : 0, last = only >= 0 ? only : t->n_remotes - 1;
    uint32_t chunk = GSO_CHUNK;
    if (udp_gso) {
        vs_tunnel_flush(dp);   /* what was queued before leaves before */
        /* one send carries at most 64 KB of UDP payload */
        uint32_t fit = 65000 / (VXLAN_HLEN + hlen + mss);
        chunk = fit < chunk ? (fit ? fit : 1) : chunk;
    }

    for (uint32_t base = 0; base < nseg; base += chunk) {
        int m = nseg - base < chunk ? (int)(nseg - base) : (int)chunk;
        struct gso_seg *segs = T->segs;
        for (int j = 0; j < m; j++) {
            uint32_t i = base + (uint32_t)j;
            uint32_t off = i * mss;
            uint32_t n = total - off < mss ? total - off : mss;
            const uint8_t *payload = d + lay.payload + off;
            uint32_t l4_len = hlen - l4 + n;
            uint8_t *h = tmpl;
            if (lay.v6) {
                wr16(h + l3 + 4, (uint16_t)l4_len);
            } else {
                wr16(h + l3 + 2, (uint16_t)(hlen - l3 + n));
                wr16(h + l3 + 4, (uint16_t)(ip_id + i));
                wr16(h + l3 + 10, 0);
                wr16(h + l3 + 10, finish(sum_be(h + l3, l4 - l3)));
            }
            uint32_t csum_at;
            if (!tcp) {
                wr16(h + l4 + 4, (uint16_t)l4_len);
                csum_at = l4 + 6;
            } else {
                wr32(h + l4 + 4, seq + off);
                uint8_t flags = tcp_flags;
                if (i + 1 < nseg)
                    flags &= (uint8_t)~0x09;   /* FIN, PSH only on the last */
                if (i > 0)
                    flags &= (uint8_t)~0x80;   /* CWR only on the first */
                h[l4 + 13] = flags;
                csum_at = l4 + 16;
            }
            wr16(h + csum_at, 0);
            uint32_t pay = sum_be(payload, n);
            uint32_t s = psum + lay.proto + l4_len + sum_be(h + l4, hlen - l4);
            s = sum_at(s, pay, hlen - l4);
            uint16_t c = finish(s);
            if (c == 0 && !tcp)
                c = 0xffff;
            wr16(h + csum_at, c);
            struct gso_seg *g = &segs[j];
            /* a VXLAN header, then the segment's headers */
            memcpy(g->hdr, (const uint8_t[8]){VXLAN_FLAG_I, 0, 0, 0,
                                              (uint8_t)(t->cfg.vni >> 16),
                                              (uint8_t)(t->cfg.vni >> 8),
                                              (uint8_t)t->cfg.vni, 0}, VXLAN_HLEN);
            memcpy(g->hdr + VXLAN_HLEN, h, hlen);
            g->hlen = VXLAN_HLEN + hlen;
            g->payload = payload;
            g->n = n;
            g->sport = sport;
            g->isum = (t->cfg.flags & VS_TUN_F_CSUM) ? sum_at(sum_be(h, hlen), pay, hlen) : 0;
        }
        for (int r = first; r <= last; r++) {
            if (udp_gso) {
                send_udp_gso(dp, out, r, segs, m, VXLAN_HLEN + hlen + mss);
                continue;
            }
            for (int j = 0; j < m; j++) {
                struct gso_seg *g = &segs[j];
                struct txent *e = tx_slot(dp, slots_needed(t, &t->remotes[r],
                                                           OUTER_HLEN + hlen + g->n));
                if (!e) {
                    out->stats.drops[VS_DROP_OVERSIZE]++;
                    continue;
                }
                outer_hdr(e->hdr, t, &t->remotes[r], hlen + g->n, sport, g->isum);
                memcpy(e->hdr + OUTER_HLEN, g->hdr + VXLAN_HLEN, hlen);
                commit(dp, out, r, OUTER_HLEN + hlen, g->payload, g->n);
            }
        }
    }
}

void vs_tunnel_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                      struct vs_iface *out, struct vs_iface *in, bool unicast)
{
    struct vs_tunnel *t = TUN(dp, out);
    int only = -1;
    if (unicast) {
        /* The remote the destination was learned from; none (a static
         * entry) means all of them. */
        struct vs_fdb *f = &dp->bridges[op->bridge]->fdb;
        int64_t s = fdb_find(f, pkt->dst_key, pkt->dst_hash);
        if (s >= 0) {
            uint8_t r = f->ents[f->slots[s].entry].remote;
            if (r < t->n_remotes)
                only = r;
        }
    }
    bool tagged = vs_vlan_egress_tagged(op, pkt->vlan);
    if (vs_vnet_is_gso(&pkt->vnet))
        output_gso(dp, pkt, tagged, out, only);
    else
        output_frame(dp, pkt, tagged, out, in, only);
}

/* --- receive ---------------------------------------------------------------- */

void vs_tunnel_learned(struct vs_dp *dp, struct vs_iface *in, struct vs_fdb *fdb,
                       const struct vs_pkt *pkt)
{
    struct vs_tunnels *T = dp->tunnels;
    long idx = pkt - dp->pkts;
    if (!T || idx < 0 || idx >= VS_BATCH)
        return;
    int64_t s = fdb_find(fdb, pkt->src_key, pkt->src_hash);
    if (s < 0 || fdb->slots[s].port != in->port)
        return;
    struct vs_fdb_ent *x = &fdb->ents[fdb->slots[s].entry];
    if (!x->is_static)
        x->remote = T->rx_remote[idx];
}

/* What a received frame's inner TCP/UDP checksum says, as metadata.
 *
 * A kernel peer hands its vxlan device segments whose inner checksum is
 * still "partial" (offloaded: the field holds only the pseudo-header sum),
 * and over a veth underlay they reach our UDP socket that way -- often as
 * whole 64 KB TCP segments, since the kernel delivers a tunnel GSO packet
 * to a plain UDP socket without cutting it.  The socket gives the bytes
 * but loses the offsets that say what is left to do, so they are found
 * again here: when the field holds exactly the pseudo-header sum, the
 * frame becomes what a TAP would have handed us (virtio-net NEEDS_CSUM,
 * and GSO with the MSS the tunnel carries when it is larger than that).
 * Outputs that take offloads pass it on untouched; the others get it
 * finished or segmented by the usual code (forward.c, gso.c, output_gso
 * here).  No byte of payload is read: a complete checksum that happens to
 * equal the pseudo-header sum is finished to the same value. */
static void inner_offload(struct vs_pkt *pkt, const struct vs_tunnel *t)
{
    struct vs_parsed ps;
    if (vs_parse(pkt->data, pkt->len, &ps) < 0)
        return;
    const uint8_t *d = pkt->data;
    uint32_t l3 = ps.l3_offset, l4, l4_len;
    uint8_t proto;
    uint32_t pseudo;
    bool v6 = ps.ethertype == 0x86dd;
    if (ps.ethertype == 0x0800) {
        if (pkt->len < l3 + 20 || (d[l3] >> 4) != 4)
            return;
        uint32_t ihl = (d[l3] & 0xf) * 4u, tot = vs_rd16(d + l3 + 2);
        if (ihl < 20 || tot < ihl || l3 + tot > pkt->len || (vs_rd16(d + l3 + 6) & 0x3fff))
            return;   /* fragments: their checksum covers the whole datagram */
        proto = d[l3 + 9];
        l4 = l3 + ihl;
        l4_len = tot - ihl;
        pseudo = sum_be(d + l3 + 12, 8);
    } else if (v6) {
        if (pkt->len < l3 + 40)
            return;
        proto = d[l3 + 6];   /* extension headers: left as they are */
        l4 = l3 + 40;
        l4_len = vs_rd16(d + l3 + 4);
        if (l4 + l4_len > pkt->len)
            return;
        pseudo = sum_be(d + l3 + 8, 32);
    } else {
        return;
    }
    uint32_t off;
    if (proto == 6 && l4_len >= 20)
        off = 16;
    else if (proto == 17 && l4_len >= 8)
        off = 6;
    else
        return;
    uint16_t partial = (uint16_t)(0xffff ^ finish(pseudo + proto + l4_len));
    if (vs_rd16(d + l4 + off) != partial)
        return;   /* complete (or wrong): the receiver checks it */
    struct vs_vnet_hdr *h = &pkt->vnet;
    h->flags = VNET_F_NEEDS_CSUM;
    h->csum_start = (uint16_t)l4;
    h->csum_offset = (uint16_t)off;
    uint32_t thl = proto == 6 ? (d[l4 + 12] >> 4) * 4u : 8;
    if (proto == 6 && thl >= 20 && l4 + thl <= pkt->len && pkt->len - l3 > t->mtu &&
        t->mtu > l4 + thl - l3) {
        /* a TCP segment larger than one frame of the tunnel */
        h->gso_type = v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4;
        h->gso_size = (uint16_t)(t->mtu - (l4 + thl - l3));
        h->hdr_len = (uint16_t)(l4 + thl);
    }
}

/* Count a datagram that goes no further on interface ifc (if any). */
static inline void rx_drop(struct vs_iface *ifc, int reason, uint32_t len)
{
    if (!ifc)
        return;
    ifc->stats.rx_packets++;
    ifc->stats.rx_bytes += len;
    ifc->stats.drops[reason]++;
}

void vs_tunnel_rx(struct vs_dp *dp, uint32_t sidx, uint32_t gen)
{
    struct vs_tunnels *T = dp->tunnels;
    if (!T || sidx >= MAX_TUNSOCKS)
        return;
    struct tunsock *ts = &T->socks[sidx];
    if (!ts->in_use || ts->gen != gen)
        return;
    struct mmsghdr msgs[VS_BATCH];
    struct iovec iov[VS_BATCH][2];
    struct sockaddr_in from[VS_BATCH];
    for (int i = 0; i < VS_BATCH; i++) {
        iov[i][0] = (struct iovec){T->rx_vxh[i], VXLAN_HLEN};
        iov[i][1] = (struct iovec){dp->bufs + (size_t)i * VS_BUF_SIZE + VS_HEADROOM,
                                   VS_MAX_FRAME + 1};
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        msgs[i].msg_hdr.msg_iov = iov[i];
        msgs[i].msg_hdr.msg_iovlen = 2;
    }
    int got;
    do {
        got = recvmmsg(ts->fd, msgs, VS_BATCH, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    if (got <= 0)
        return;

    /* The socket's tunnels, and the first of them (where strangers count). */
    struct vs_iface *tuns[VS_MAX_IFACES];
    int nt = 0;
    for (int k = 0; k < T->n_tun; k++) {
        struct vs_iface *ifc = &dp->ifaces[T->tun_ifaces[k]];
        if (TUN(dp, ifc)->sock == sidx)
            tuns[nt++] = ifc;
    }
    int n = 0, run = 0;
    struct vs_iface *run_ifc = NULL;
    for (int i = 0; i < got; i++) {
        uint32_t len = msgs[i].msg_len;
        uint32_t ip = from[i].sin_addr.s_addr;
        const uint8_t *vx = T->rx_vxh[i];
        /* Which tunnels know the sender; which of them has this VNI. */
        struct vs_iface *known = NULL, *match = NULL;
        int rem = -1;
        uint32_t vni = len >= VXLAN_HLEN ? (uint32_t)vx[4] << 16 | vx[5] << 8 | vx[6] : 0;
        for (int k = 0; k < nt && !match; k++) {
            int r = find_remote(TUN(dp, tuns[k]), ip);
            if (r < 0)
                continue;
            if (!known)
                known = tuns[k];
            if (TUN(dp, tuns[k])->cfg.vni == vni) {
                match = tuns[k];
                rem = r;
            }
        }
        uint32_t inner = len >= VXLAN_HLEN ? len - VXLAN_HLEN : 0;
        if (!known) {
            rx_drop(nt ? tuns[0] : NULL, VS_DROP_UNKNOWN_REMOTE, inner);
            continue;
        }
        if (len < VXLAN_HLEN) {
            rx_drop(known, VS_DROP_VXLAN_CUT, 0);
            continue;
        }
        /* As the kernel: the I flag and nothing else, reserved bits zero. */
        if (vx[0] != VXLAN_FLAG_I || vx[1] || vx[2] || vx[3] || vx[7]) {
            rx_drop(known, VS_DROP_BAD_VXLAN, inner);
            continue;
        }
        if (!match) {
            rx_drop(known, VS_DROP_WRONG_VNI, inner);
            continue;
        }
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || inner > VS_MAX_FRAME) {
            rx_drop(match, VS_DROP_OVERSIZE, inner);
            continue;
        }
        struct remote *r = &TUN(dp, match)->remotes[rem];
        r->rx_packets++;
        r->rx_bytes += inner;
        if (run_ifc && match != run_ifc) {
            vs_forward_batch(dp, run_ifc, dp->pkts + run, n - run);
            run = n;
        }
        run_ifc = match;
        struct vs_pkt *pkt = &dp->pkts[n];
        memset(&pkt->vnet, 0, sizeof pkt->vnet);
        pkt->data = dp->bufs + (size_t)i * VS_BUF_SIZE + VS_HEADROOM;
        pkt->len = inner;
        inner_offload(pkt, TUN(dp, match));
        T->rx_remote[n] = (uint8_t)rem;
        n++;
    }
    if (run_ifc && n > run)
        vs_forward_batch(dp, run_ifc, dp->pkts + run, n - run);
    memset(T->rx_remote, VS_FDB_NO_REMOTE, sizeof T->rx_remote);
}
