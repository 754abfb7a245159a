/*
 * tunnel.c - VXLAN (RFC 7348) tunnel interfaces over an IPv4 underlay: their
 * sockets, control calls and receiving.  Sending is tunnel_tx.c's.
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
 *  - A received frame's MAC is learned with the remote it came from (the
 *    FDB entry keeps the remote's index), so known unicast goes back to
 *    that remote only.
 *
 * Thread safety: every function here and in tunnel_tx.c runs with dp->lock
 * held -- from the forwarding thread (rx, output, flush, periodic) or from
 * a control call (add, set remotes, stats, release) -- so they never run
 * concurrently.  The transmit queue is empty between batches (vs_tx_flush
 * runs at the end of each), so control calls never find entries that point
 * into buffers or tunnels they change.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tunnel_priv.h"

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
