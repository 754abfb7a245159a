/*
 * control.c - the control calls on bridges, ports and interfaces.
 *
 * Each public function takes dp->lock for its whole duration (see the
 * concurrency rule in datapath.c) and calls a *_locked twin that does the
 * work; errors are -errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"
#include "tunnel.h"

/* --- bridges -------------------------------------------------------------- */

static int br_add_locked(struct vs_dp *dp, uint32_t size, uint32_t aging)
{
    if (size == 0 || size > VS_MAX_FDB_ENTRIES || aging == 0)
        return -EINVAL;
    for (int b = 0; b < VS_MAX_BRIDGES; b++) {
        if (dp->bridges[b])
            continue;
        struct vs_bridge *br = calloc(1, sizeof *br);
        if (!br)
            return -ENOMEM;
        int err = fdb_init(&br->fdb, size, aging, dp->seed ^ (uint64_t)b);
        if (err) {
            free(br);
            return err;
        }
        br->in_use = true;
        dp->bridges[b] = br;
        return b;
    }
    return -ENOSPC;
}

int vs_br_add(vs_dp *dp, uint32_t size, uint32_t aging)
{
    LOCKED(br_add_locked(dp, size, aging));
}

static int br_del_locked(struct vs_dp *dp, int b)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    while (br->n_ports)
        vs_port_release(dp, br->ports[br->n_ports - 1]);
    vs_flow_release(br);
    fdb_destroy(&br->fdb);
    free(br);
    dp->bridges[b] = NULL;
    return 0;
}

int vs_br_del(vs_dp *dp, int br) { LOCKED(br_del_locked(dp, br)); }

static int br_set_aging_locked(struct vs_dp *dp, int b, uint32_t s)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (s == 0)
        return -EINVAL;
    br->fdb.aging = s;
    return 0;
}

int vs_br_set_mac_aging(vs_dp *dp, int br, uint32_t s)
{
    LOCKED(br_set_aging_locked(dp, br, s));
}

static int br_set_size_locked(struct vs_dp *dp, int b, uint32_t n)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    return fdb_resize(&br->fdb, n, br->ports, br->n_ports);
}

int vs_br_set_mac_table_size(vs_dp *dp, int br, uint32_t n)
{
    LOCKED(br_set_size_locked(dp, br, n));
}

/* --- ports ----------------------------------------------------------------- */

static int port_add_locked(struct vs_dp *dp, int b)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    for (int p = 0; p < VS_MAX_PORTS; p++) {
        struct vs_port *port = &dp->ports[p];
        if (port->in_use)
            continue;
        memset(port, 0, sizeof *port);
        port->in_use = true;
        port->bridge = (uint16_t)b;
        port->vlan_mode = VS_VLAN_TRUNK;
        port->trunk_all = true;
        port->active = -1;
        for (int k = 0; k < VS_SLB_BUCKETS; k++)
            port->slb_bucket[k] = VS_UNUSED;
        br->ports[br->n_ports++] = (uint16_t)p;
        return p;
    }
    return -ENOSPC;
}

int vs_port_add(vs_dp *dp, int br) { LOCKED(port_add_locked(dp, br)); }

void vs_port_release(struct vs_dp *dp, int p)
{
    struct vs_port *port = &dp->ports[p];
    while (port->n_members)
        vs_iface_release(dp, port->members[port->n_members - 1]);
    struct vs_bridge *br = dp->bridges[port->bridge];
    if (br) {
        vs_mirror_forget_port(dp, br, p);
        fdb_forget_port(&br->fdb, (uint16_t)p);
        for (int i = 0; i < br->n_ports; i++) {
            if (br->ports[i] == p) {
                br->ports[i] = br->ports[--br->n_ports];
                break;
            }
        }
    }
    port->in_use = false;
}

static int port_del_locked(struct vs_dp *dp, int p)
{
    if (!get_port(dp, p))
        return -ENOENT;
    vs_port_release(dp, p);
    return 0;
}

int vs_port_del(vs_dp *dp, int p) { LOCKED(port_del_locked(dp, p)); }

static int port_set_vlan_locked(struct vs_dp *dp, int p, int mode, int tag,
                                const uint8_t *trunks)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (mode < VS_VLAN_TRUNK || mode > VS_VLAN_NATIVE_UNTAGGED)
        return -EINVAL;
    if (mode != VS_VLAN_TRUNK && (tag < 1 || tag > 4094))
        return -EINVAL;
    port->vlan_mode = (uint8_t)mode;
    port->tag = mode == VS_VLAN_TRUNK ? 0 : (uint16_t)tag;
    port->trunk_all = trunks == NULL;
    if (trunks)
        memcpy(port->trunks, trunks, sizeof port->trunks);
    else
        memset(port->trunks, 0, sizeof port->trunks);
    fdb_flush(&dp->bridges[port->bridge]->fdb, p);
    return 0;
}

int vs_port_set_vlan(vs_dp *dp, int p, int mode, int tag,
                     const uint8_t *trunks)
{
    LOCKED(port_set_vlan_locked(dp, p, mode, tag, trunks));
}

static int port_set_bond_mode_locked(struct vs_dp *dp, int p, int mode)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (mode < VS_BOND_NONE || mode > VS_BOND_BALANCE_TCP)
        return -EINVAL;
    if (mode == VS_BOND_NONE && port->n_members > 1)
        return -EBUSY;
    port->bond_mode = (uint8_t)mode;
    return 0;
}

int vs_port_set_bond_mode(vs_dp *dp, int p, int mode)
{
    LOCKED(port_set_bond_mode_locked(dp, p, mode));
}

static bool is_member(const struct vs_port *port, int i)
{
    for (int k = 0; k < port->n_members; k++)
        if (port->members[k] == i)
            return true;
    return false;
}

static int port_set_active_locked(struct vs_dp *dp, int p, int i)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (i >= 0 && !is_member(port, i))
        return -EINVAL;
    port->active = (int16_t)(i < 0 ? -1 : i);
    return 0;
}

int vs_port_set_active(vs_dp *dp, int p, int i)
{
    LOCKED(port_set_active_locked(dp, p, i));
}

static int port_get_active_locked(struct vs_dp *dp, int p, int *iface)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    *iface = port->active;
    return 0;
}

int vs_port_get_active(vs_dp *dp, int p, int *iface)
{
    LOCKED(port_get_active_locked(dp, p, iface));
}

static int port_set_slb_locked(struct vs_dp *dp, int p, int b, int i)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (b < 0 || b >= VS_SLB_BUCKETS || (i >= 0 && !is_member(port, i)))
        return -EINVAL;
    port->slb_bucket[b] = (uint16_t)(i < 0 ? VS_UNUSED : i);
    return 0;
}

int vs_port_set_slb_bucket(vs_dp *dp, int p, int b, int i)
{
    LOCKED(port_set_slb_locked(dp, p, b, i));
}

static int port_take_loads_locked(struct vs_dp *dp, int p, uint64_t *loads)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    memcpy(loads, port->slb_load, sizeof port->slb_load);
    memset(port->slb_load, 0, sizeof port->slb_load);
    return 0;
}

int vs_port_take_slb_loads(vs_dp *dp, int p, uint64_t *loads)
{
    LOCKED(port_take_loads_locked(dp, p, loads));
}

static int port_set_lag_locked(struct vs_dp *dp, int p, int on)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    port->lag = on != 0;
    return 0;
}

int vs_port_set_lag(vs_dp *dp, int p, int on)
{
    LOCKED(port_set_lag_locked(dp, p, on));
}

static int learning_locked(struct vs_dp *dp, int p)
{
    if (!get_port(dp, p))
        return -ENOENT;
    return vs_bond_learning_packets_locked(dp, p);
}

int vs_port_send_learning_packets(vs_dp *dp, int p)
{
    LOCKED(learning_locked(dp, p));
}

/* --- interfaces -------------------------------------------------------------- */

void vs_iface_release(struct vs_dp *dp, int i)
{
    struct vs_iface *ifc = &dp->ifaces[i];
    struct vs_port *port = &dp->ports[ifc->port];
    for (int k = 0; k < port->n_members; k++) {
        if (port->members[k] == i) {
            port->members[k] = port->members[--port->n_members];
            break;
        }
    }
    if (port->active == i)
        port->active = -1;
    for (int b = 0; b < VS_SLB_BUCKETS; b++)
        if (port->slb_bucket[b] == i)
            port->slb_bucket[b] = VS_UNUSED;
    if (ifc->kind == VS_IFACE_VXLAN)
        vs_tunnel_release(dp, ifc);   /* its socket may be shared: fd is -1 */
    if (ifc->fd >= 0) {
        if (!ifc->failed)
            epoll_ctl(dp->epfd, EPOLL_CTL_DEL, ifc->fd, NULL);
        close(ifc->fd);
    }
    ifc->fd = -1;
    ifc->in_use = false;
}

/* Also tunnel.c's way in: a VS_IFACE_VXLAN interface comes with fd -1
 * (its socket is shared and polled apart). */
int vs_iface_add_locked(struct vs_dp *dp, int p, int fd, int kind,
                        uint32_t flags, uint32_t mtu)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (kind != VS_IFACE_FD && kind != VS_IFACE_PACKET &&
        !(kind == VS_IFACE_VXLAN && fd < 0))
        return -EINVAL;
    if (mtu < 68 || mtu > VS_MAX_FRAME)
        return -EINVAL;
    if (port->n_members >= VS_MAX_BOND_MEMBERS ||
        (port->bond_mode == VS_BOND_NONE && port->n_members >= 1))
        return -EBUSY;
    int fl = fd < 0 ? 0 : fcntl(fd, F_GETFL);
    if (fd >= 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -errno;
    for (int i = 0; i < VS_MAX_IFACES; i++) {
        struct vs_iface *ifc = &dp->ifaces[i];
        if (ifc->in_use)
            continue;
        uint32_t gen = ifc->gen + 1;
        memset(ifc, 0, sizeof *ifc);
        ifc->gen = gen;
        ifc->in_use = true;
        ifc->kind = (uint8_t)kind;
        ifc->vnet = flags & VS_IFACE_F_VNET_HDR;
        ifc->no_offload = flags & VS_IFACE_F_NO_OFFLOAD;
        ifc->enabled = true;
        ifc->port = (uint16_t)p;
        ifc->mtu = mtu;
        ifc->fd = fd;
        struct epoll_event ev = {
            .events = EPOLLIN,
            .data.u64 = ((uint64_t)gen << 32) | (uint32_t)i,
        };
        if (fd >= 0 && epoll_ctl(dp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int err = -errno;
            ifc->in_use = false;
            ifc->fd = -1;
            return err;
        }
        port->members[port->n_members++] = (uint16_t)i;
        return i;
    }
    return -ENOSPC;
}

int vs_iface_add(vs_dp *dp, int p, int fd, int kind, uint32_t flags,
                 uint32_t mtu)
{
    int rc = -EINVAL;
    pthread_mutex_lock(&dp->lock);
    if (fd >= 0 && kind != VS_IFACE_VXLAN)   /* tunnels: vs_tunnel_add */
        rc = vs_iface_add_locked(dp, p, fd, kind, flags, mtu);
    pthread_mutex_unlock(&dp->lock);
    if (rc < 0 && fd >= 0)
        close(fd);   /* ownership passed to us whatever happens */
    return rc;
}

static int iface_del_locked(struct vs_dp *dp, int i)
{
    if (!get_iface(dp, i))
        return -ENOENT;
    vs_iface_release(dp, i);
    return 0;
}

int vs_iface_del(vs_dp *dp, int i) { LOCKED(iface_del_locked(dp, i)); }

static int iface_set_mtu_locked(struct vs_dp *dp, int i, uint32_t mtu)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    if (mtu < 68 || mtu > VS_MAX_FRAME)
        return -EINVAL;
    ifc->mtu = mtu;
    return 0;
}

int vs_iface_set_mtu(vs_dp *dp, int i, uint32_t mtu)
{
    LOCKED(iface_set_mtu_locked(dp, i, mtu));
}

static int iface_set_enabled_locked(struct vs_dp *dp, int i, int enabled)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    ifc->enabled = enabled != 0;
    return 0;
}

int vs_iface_set_enabled(vs_dp *dp, int i, int enabled)
{
    LOCKED(iface_set_enabled_locked(dp, i, enabled));
}

static int iface_state_locked(struct vs_dp *dp, int i)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    return (ifc->failed ? VS_IFACE_S_FAILED : 0) |
           (ifc->enabled ? VS_IFACE_S_ENABLED : 0);
}

int vs_iface_state(vs_dp *dp, int i) { LOCKED(iface_state_locked(dp, i)); }

static int iface_stats_locked(struct vs_dp *dp, int i,
                              struct vs_iface_stats *out)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    *out = ifc->stats;
    return 0;
}

int vs_iface_stats(vs_dp *dp, int i, struct vs_iface_stats *out)
{
    LOCKED(iface_stats_locked(dp, i, out));
}

static int iface_send_locked(struct vs_dp *dp, int i, const uint8_t *frame,
                             size_t len)
{
    struct vs_iface *ifc = get_iface(dp, i);
    if (!ifc)
        return -ENOENT;
    size_t hdr = ifc->vnet ? VS_VNET_HDR_LEN : 0;
    if (len < hdr + ETH_HLEN_ || len > hdr + VS_MAX_FRAME)
        return -EINVAL;
    if (ifc->failed)
        return -ENETDOWN;
    if (ifc->kind == VS_IFACE_VXLAN)
        return -EOPNOTSUPP;
    /* The caller's bytes already hold the header when the interface has
     * one: write them as they are. */
    struct iovec iov = {.iov_base = (void *)(frame + hdr), .iov_len = len - hdr};
    return vs_iface_write(dp, ifc, hdr ? (const void *)frame : NULL, &iov, 1,
                          (uint32_t)(len - hdr));
}

int vs_iface_send(vs_dp *dp, int i, const uint8_t *frame, size_t len)
{
    LOCKED(iface_send_locked(dp, i, frame, len));
}

bool vs_load_frame(struct vs_dp *dp, struct vs_iface *in, const uint8_t *frame,
                   size_t len)
{
    struct vs_pkt *pkt = &dp->pkts[0];
    uint8_t *buf = dp->bufs;
    memset(&pkt->vnet, 0, sizeof pkt->vnet);
    size_t hdr = in->vnet ? VS_VNET_HDR_LEN : 0;
    if (len < hdr) {
        pkt->len = 0;   /* a read this short is a runt */
    } else {
        if (hdr)
            memcpy(&pkt->vnet, frame, hdr);
        if (len - hdr > VS_MAX_FRAME) {
            in->stats.rx_packets++;
            in->stats.drops[VS_DROP_OVERSIZE]++;
            return false;
        }
        pkt->len = (uint32_t)(len - hdr);
        memcpy(buf + VS_HEADROOM, frame + hdr, pkt->len);
    }
    pkt->data = buf + VS_HEADROOM;
    return true;
}

static int inject_locked(struct vs_dp *dp, int i, const uint8_t *frame,
                         size_t len)
{
    struct vs_iface *in = get_iface(dp, i);
    if (!in)
        return -ENOENT;
    if (!vs_load_frame(dp, in, frame, len))
        return 0;
    struct vs_pkt *pkt = &dp->pkts[0];
    int64_t now = vs_now_ms_locked(dp);
    if (now >= dp->next_periodic_ms) {
        vs_run_periodic_locked(dp);
        dp->next_periodic_ms = now + VS_PERIODIC_MS;
    }
    vs_forward_batch(dp, in, pkt, 1);
    return 0;
}

int vs_dp_inject(vs_dp *dp, int i, const uint8_t *frame, size_t len)
{
    LOCKED(inject_locked(dp, i, frame, len));
}
