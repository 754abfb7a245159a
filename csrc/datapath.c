/*
 * datapath.c - the datapath object, its forwarding thread and the control
 * calls Python makes.
 *
 * Concurrency, in one rule: dp->lock guards everything in struct vs_dp.
 * The forwarding thread holds it while it handles the interfaces one
 * epoll_wait() reported (one burst of at most VS_BATCH frames each) and
 * drops it around epoll_wait().  Control calls take it for their whole
 * duration.  An uncontended lock costs tens of nanoseconds per burst, not
 * per frame; a control call waits at most one round of bursts.
 *
 * epoll events carry (generation << 32 | interface index).  An interface
 * deleted, and its slot perhaps reused, between epoll_wait() returning and
 * the thread taking the lock has another generation, so its stale event is
 * ignored instead of being read from a closed or different fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define WAKE_TOKEN UINT64_MAX
#define PERIODIC_MS 1000

/* --- clock ------------------------------------------------------------------ */

int64_t vs_now_ms_locked(struct vs_dp *dp)
{
    if (dp->fake_now_ms >= 0)
        return dp->fake_now_ms;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vs_dp_set_clock(vs_dp *dp, int64_t now_ms)
{
    pthread_mutex_lock(&dp->lock);
    dp->fake_now_ms = now_ms < 0 ? -1 : now_ms;
    pthread_mutex_unlock(&dp->lock);
}

int64_t vs_dp_now_ms(vs_dp *dp)
{
    pthread_mutex_lock(&dp->lock);
    int64_t t = vs_now_ms_locked(dp);
    pthread_mutex_unlock(&dp->lock);
    return t;
}

void vs_notify(struct vs_dp *dp)
{
    uint64_t one = 1;
    ssize_t r = write(dp->notify_fd, &one, sizeof one);
    (void)r;  /* a full eventfd counter is still readable: nothing lost */
}

/* --- lifecycle ---------------------------------------------------------------- */

vs_dp *vs_dp_new(void)
{
    vs_dp *dp = calloc(1, sizeof *dp);
    if (!dp)
        return NULL;
    dp->bufs = malloc((size_t)VS_BATCH * VS_BUF_SIZE);
    dp->seg_buf = malloc(VS_BUF_SIZE);
    dp->epfd = epoll_create1(EPOLL_CLOEXEC);
    dp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    dp->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!dp->bufs || !dp->seg_buf || dp->epfd < 0 || dp->wake_fd < 0 || dp->notify_fd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
    if (epoll_ctl(dp->epfd, EPOLL_CTL_ADD, dp->wake_fd, &ev) < 0)
        goto fail;
    pthread_mutex_init(&dp->lock, NULL);
    dp->fake_now_ms = -1;
    if (getrandom(&dp->seed, sizeof dp->seed, 0) != sizeof dp->seed)
        dp->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < VS_MAX_IFACES; i++)
        dp->ifaces[i].fd = -1;
    return dp;
fail:
    if (dp->epfd > 0)
        close(dp->epfd);
    if (dp->wake_fd > 0)
        close(dp->wake_fd);
    if (dp->notify_fd > 0)
        close(dp->notify_fd);
    free(dp->bufs);
    free(dp->seg_buf);
    free(dp);
    return NULL;
}

static void handle_event(struct vs_dp *dp, const struct epoll_event *ev)
{
    if (ev->data.u64 == WAKE_TOKEN) {
        uint64_t v;
        ssize_t r = read(dp->wake_fd, &v, sizeof v);
        (void)r;
        return;
    }
    uint32_t idx = (uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    if (idx >= VS_MAX_IFACES)
        return;
    struct vs_iface *in = &dp->ifaces[idx];
    if (!in->in_use || in->gen != gen || in->failed)
        return;
    if (ev->events & (EPOLLERR | EPOLLHUP)) {
        if (in->kind != VS_IFACE_PACKET) {
            /* A TAP whose device vanished (its namespace was deleted)
             * reports EPOLLERR for ever: stop polling it. */
            vs_iface_fail(dp, in);
            return;
        }
        int err;
        socklen_t l = sizeof err;
        getsockopt(in->fd, SOL_SOCKET, SO_ERROR, &err, &l); /* clears it */
    }
    int n = vs_rx_burst(dp, in);
    if (n > 0)
        vs_forward_batch(dp, in, dp->pkts, n);
}

static void run_periodic_locked(struct vs_dp *dp)
{
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    for (int b = 0; b < VS_MAX_BRIDGES; b++) {
        struct vs_bridge *br = dp->bridges[b];
        if (br)
            fdb_expire(&br->fdb, now_s, br->ports, br->n_ports);
    }
}

void vs_dp_run_periodic(vs_dp *dp)
{
    pthread_mutex_lock(&dp->lock);
    run_periodic_locked(dp);
    pthread_mutex_unlock(&dp->lock);
}

void vs_dp_set_busy_poll(vs_dp *dp, uint32_t usec)
{
    pthread_mutex_lock(&dp->lock);
    dp->busy_poll_us = usec;
    pthread_mutex_unlock(&dp->lock);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* How long to keep polling after a burst.  The window follows the gaps
 * between bursts (a moving average of them, observed whether the thread
 * was polling or asleep when the next frames came): twice the average gap,
 * at least 20 us, at most busy_poll_us -- and nothing at all when gaps are
 * longer than busy_poll_us on average, because polling through gaps it
 * cannot bridge would only burn a core.  So a request/response exchange
 * (gaps of tens of microseconds) never sleeps, while a trickle of traffic
 * never spins. */
static int64_t poll_window(const struct vs_dp *dp, int64_t avg_gap)
{
    int64_t cap = dp->busy_poll_us;
    if (cap == 0 || avg_gap > cap)
        return 0;
    int64_t w = 2 * avg_gap;
    return w < 20 ? 20 : (w > cap ? cap : w);
}

static void *loop(void *arg)
{
    struct vs_dp *dp = arg;
    struct epoll_event evs[64];
    int64_t spin_until = 0;   /* end of the polling window, microseconds */
    int64_t idle_since = 0;   /* when the last burst was done */
    int64_t avg_gap = 1000000;
    while (!dp->stop) {
        /* Inside the window, poll without sleeping; the lock is not held
         * while polling, so control calls are not kept waiting. */
        bool spinning = spin_until && now_us() < spin_until;
        int n = epoll_wait(dp->epfd, evs, 64, spinning ? 0 : PERIODIC_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (n == 0 && spinning) {
            /* Give the core to anyone runnable here (the namespaces'
             * processes, on a small machine): polling must only use time
             * nobody else wants. */
            sched_yield();
            continue;
        }
        int64_t woke = now_us();
        if (idle_since) {
            int64_t gap = woke - idle_since;
            int64_t cap = 4 * (int64_t)dp->busy_poll_us + 1;
            avg_gap = (3 * avg_gap + (gap < cap ? gap : cap)) / 4;
        }
        pthread_mutex_lock(&dp->lock);
        for (int i = 0; i < n; i++)
            handle_event(dp, &evs[i]);
        int64_t now = vs_now_ms_locked(dp);
        if (now >= dp->next_periodic_ms) {
            run_periodic_locked(dp);
            dp->next_periodic_ms = now + PERIODIC_MS;
        }
        int64_t window = n > 0 ? poll_window(dp, avg_gap) : 0;
        pthread_mutex_unlock(&dp->lock);
        idle_since = n > 0 ? now_us() : 0;
        spin_until = window ? idle_since + window : 0;
    }
    return NULL;
}

int vs_dp_start(vs_dp *dp)
{
    if (dp->running)
        return -EALREADY;
    dp->stop = false;
    /* The forwarding thread takes no signals: they belong to the control
     * plane's main thread (its asyncio loop handles SIGTERM).  A thread
     * inherits its creator's mask, so block everything around the create. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&dp->thread, NULL, loop, dp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        return -err;
    dp->running = true;
    return 0;
}

int vs_dp_stop(vs_dp *dp)
{
    if (!dp->running)
        return 0;
    dp->stop = true;
    uint64_t one = 1;
    ssize_t r = write(dp->wake_fd, &one, sizeof one);
    (void)r;
    pthread_join(dp->thread, NULL);
    dp->running = false;
    return 0;
}

int vs_dp_notify_fd(vs_dp *dp) { return dp->notify_fd; }

static void iface_release(struct vs_dp *dp, int i);
static void port_release(struct vs_dp *dp, int p);

void vs_dp_free(vs_dp *dp)
{
    if (!dp)
        return;
    vs_dp_stop(dp);
    for (int p = 0; p < VS_MAX_PORTS; p++)
        if (dp->ports[p].in_use)
            port_release(dp, p);
    for (int b = 0; b < VS_MAX_BRIDGES; b++) {
        if (dp->bridges[b]) {
            fdb_destroy(&dp->bridges[b]->fdb);
            free(dp->bridges[b]);
        }
    }
    close(dp->epfd);
    close(dp->wake_fd);
    close(dp->notify_fd);
    pthread_mutex_destroy(&dp->lock);
    free(dp->bufs);
    free(dp->seg_buf);
    free(dp);
}

/* --- lookups shared by the control calls (lock held) ------------------------- */

static struct vs_bridge *get_br(struct vs_dp *dp, int br)
{
    if (br < 0 || br >= VS_MAX_BRIDGES)
        return NULL;
    return dp->bridges[br];
}

static struct vs_port *get_port(struct vs_dp *dp, int p)
{
    if (p < 0 || p >= VS_MAX_PORTS || !dp->ports[p].in_use)
        return NULL;
    return &dp->ports[p];
}

static struct vs_iface *get_iface(struct vs_dp *dp, int i)
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
        port_release(dp, br->ports[br->n_ports - 1]);
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

static void port_release(struct vs_dp *dp, int p)
{
    struct vs_port *port = &dp->ports[p];
    while (port->n_members)
        iface_release(dp, port->members[port->n_members - 1]);
    struct vs_bridge *br = dp->bridges[port->bridge];
    if (br) {
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
    port_release(dp, p);
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
    if (mode < VS_BOND_NONE || mode > VS_BOND_BALANCE_SLB)
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

static void iface_release(struct vs_dp *dp, int i)
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
    if (!ifc->failed)
        epoll_ctl(dp->epfd, EPOLL_CTL_DEL, ifc->fd, NULL);
    close(ifc->fd);
    ifc->fd = -1;
    ifc->in_use = false;
}

static int iface_add_locked(struct vs_dp *dp, int p, int fd, int kind,
                            uint32_t flags, uint32_t mtu)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    if (kind != VS_IFACE_FD && kind != VS_IFACE_PACKET)
        return -EINVAL;
    if (mtu < 68 || mtu > VS_MAX_FRAME)
        return -EINVAL;
    if (port->n_members >= VS_MAX_BOND_MEMBERS ||
        (port->bond_mode == VS_BOND_NONE && port->n_members >= 1))
        return -EBUSY;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
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
        if (epoll_ctl(dp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
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
    pthread_mutex_lock(&dp->lock);
    int rc = iface_add_locked(dp, p, fd, kind, flags, mtu);
    pthread_mutex_unlock(&dp->lock);
    if (rc < 0)
        close(fd);   /* ownership passed to us whatever happens */
    return rc;
}

static int iface_del_locked(struct vs_dp *dp, int i)
{
    if (!get_iface(dp, i))
        return -ENOENT;
    iface_release(dp, i);
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

static int inject_locked(struct vs_dp *dp, int i, const uint8_t *frame,
                         size_t len)
{
    struct vs_iface *in = get_iface(dp, i);
    if (!in)
        return -ENOENT;
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
            return 0;
        }
        pkt->len = (uint32_t)(len - hdr);
        memcpy(buf + VS_HEADROOM, frame + hdr, pkt->len);
    }
    pkt->data = buf + VS_HEADROOM;
    int64_t now = vs_now_ms_locked(dp);
    if (now >= dp->next_periodic_ms) {
        run_periodic_locked(dp);
        dp->next_periodic_ms = now + PERIODIC_MS;
    }
    vs_forward_batch(dp, in, pkt, 1);
    return 0;
}

int vs_dp_inject(vs_dp *dp, int i, const uint8_t *frame, size_t len)
{
    LOCKED(inject_locked(dp, i, frame, len));
}

/* --- FDB ------------------------------------------------------------------- */

static int fdb_add_static_locked(struct vs_dp *dp, int b, int p,
                                 uint16_t vlan, const uint8_t *mac)
{
    struct vs_bridge *br = get_br(dp, b);
    struct vs_port *port = get_port(dp, p);
    if (!br || !port || port->bridge != b)
        return -ENOENT;
    if (vlan > 4095 || vs_mac_is_group(mac))
        return -EINVAL;
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    return fdb_add_static(&br->fdb, fdb_key(vlan, vs_mac_to_u64(mac)),
                             (uint16_t)p, now_s, br->ports, br->n_ports);
}

int vs_fdb_add_static(vs_dp *dp, int br, int port, uint16_t vlan,
                      const uint8_t *mac)
{
    LOCKED(fdb_add_static_locked(dp, br, port, vlan, mac));
}

static int fdb_del_locked(struct vs_dp *dp, int b, uint16_t vlan,
                          const uint8_t *mac)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    return fdb_remove(&br->fdb, fdb_key(vlan, vs_mac_to_u64(mac)));
}

int vs_fdb_del(vs_dp *dp, int br, uint16_t vlan, const uint8_t *mac)
{
    LOCKED(fdb_del_locked(dp, br, vlan, mac));
}

static int fdb_flush_locked(struct vs_dp *dp, int b, int p)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    if (p >= 0 && (!get_port(dp, p) || dp->ports[p].bridge != b))
        return -ENOENT;
    return fdb_flush(&br->fdb, p);
}

int vs_fdb_flush(vs_dp *dp, int br, int port)
{
    LOCKED(fdb_flush_locked(dp, br, port));
}

static int fdb_dump_locked(struct vs_dp *dp, int b, struct vs_fdb_entry *out,
                           int max)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    struct vs_fdb *f = &br->fdb;
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    int n = 0;
    for (uint32_t s = 0; s <= f->mask; s++) {
        const struct vs_fdb_slot *sl = &f->slots[s];
        if (!sl->key)
            continue;
        if (n < max) {
            const struct vs_fdb_ent *x = &f->ents[sl->entry];
            uint64_t m = sl->key & 0xffffffffffffULL;
            for (int k = 0; k < 6; k++)
                out[n].mac[k] = (uint8_t)(m >> (40 - 8 * k));
            out[n].vlan = (uint16_t)((sl->key >> 48) & 0xfff);
            out[n].port = sl->port;
            out[n].age = now_s - x->last_seen;
            out[n].is_static = x->is_static;
        }
        n++;
    }
    return n;
}

int vs_fdb_dump(vs_dp *dp, int br, struct vs_fdb_entry *out, int max)
{
    LOCKED(fdb_dump_locked(dp, br, out, max));
}

static int fdb_stats_locked(struct vs_dp *dp, int b, struct vs_fdb_stats *o)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    struct vs_fdb *f = &br->fdb;
    o->entries = f->n_entries;
    o->static_entries = f->n_static;
    o->max_entries = f->max_entries;
    o->aging = f->aging;
    o->learned = f->learned;
    o->expired = f->expired;
    o->evicted = f->evicted;
    o->moved = f->moved;
    return 0;
}

int vs_fdb_stats(vs_dp *dp, int br, struct vs_fdb_stats *out)
{
    LOCKED(fdb_stats_locked(dp, br, out));
}

static int fdb_lookup_locked(struct vs_dp *dp, int b, uint16_t vlan,
                             const uint8_t *mac)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    uint64_t key = fdb_key(vlan, vs_mac_to_u64(mac));
    int64_t s = fdb_find(&br->fdb, key, fdb_hash(&br->fdb, key));
    return s < 0 ? -ENOENT : br->fdb.slots[s].port;
}

int vs_fdb_lookup(vs_dp *dp, int br, uint16_t vlan, const uint8_t *mac)
{
    LOCKED(fdb_lookup_locked(dp, br, vlan, mac));
}

/* --- microbenchmarks --------------------------------------------------------- */

/* Learns in windows of VS_BATCH keys, prefetching each window's slots
 * first: the same pattern as vs_forward_batch. */
int vs_fdb_bench_learn(vs_dp *dp, int b, int p, const uint64_t *keys, int n)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br || !get_port(dp, p))
        return -ENOENT;
    struct vs_fdb *f = &br->fdb;
    uint32_t now_s = (uint32_t)(vs_now_ms_locked(dp) / 1000);
    uint64_t k[VS_BATCH];
    uint32_t h[VS_BATCH];
    for (int i = 0; i < n; i += VS_BATCH) {
        int m = n - i < VS_BATCH ? n - i : VS_BATCH;
        for (int j = 0; j < m; j++) {
            k[j] = VS_FDB_USED | (keys[i + j] & 0x0fffffffffffffffULL);
            h[j] = fdb_hash(f, k[j]);
            fdb_prefetch(f, h[j]);
        }
        for (int j = 0; j < m; j++)
            fdb_learn(f, k[j], h[j], (uint16_t)p, now_s, br->ports, br->n_ports);
    }
    return n;
}

/* Looks up in windows of VS_BATCH keys, hashing and prefetching a window
 * before probing it: the same pattern as vs_forward_batch. */
int vs_fdb_bench_lookup(vs_dp *dp, int b, const uint64_t *keys, int n)
{
    struct vs_bridge *br = get_br(dp, b);
    if (!br)
        return -ENOENT;
    struct vs_fdb *f = &br->fdb;
    int found = 0;
    uint64_t k[VS_BATCH];
    uint32_t h[VS_BATCH];
    for (int i = 0; i < n; i += VS_BATCH) {
        int m = n - i < VS_BATCH ? n - i : VS_BATCH;
        for (int j = 0; j < m; j++) {
            k[j] = VS_FDB_USED | (keys[i + j] & 0x0fffffffffffffffULL);
            h[j] = fdb_hash(f, k[j]);
            fdb_prefetch(f, h[j]);
        }
        for (int j = 0; j < m; j++)
            found += fdb_find(f, k[j], h[j]) >= 0;
    }
    return found;
}

void vs_dp_set_dry_run(vs_dp *dp, int on)
{
    pthread_mutex_lock(&dp->lock);
    dp->dry_run = on != 0;
    pthread_mutex_unlock(&dp->lock);
}

/* Load frames [k, k+m) into the batch buffers. */
static void bench_load(struct vs_dp *dp, struct vs_iface *in, const uint8_t **f,
                       const uint32_t *lens, int k, int m)
{
    size_t hdr = in->vnet ? VS_VNET_HDR_LEN : 0;
    for (int j = 0; j < m; j++) {
        uint32_t len = lens[k + j];
        struct vs_pkt *pkt = &dp->pkts[j];
        memset(&pkt->vnet, 0, sizeof pkt->vnet);
        if (hdr && len >= hdr)
            memcpy(&pkt->vnet, *f, hdr);
        pkt->data = dp->bufs + (size_t)j * VS_BUF_SIZE + VS_HEADROOM;
        pkt->len = len >= hdr ? (uint32_t)(len - hdr) : 0;
        if (pkt->len > VS_MAX_FRAME)
            pkt->len = VS_MAX_FRAME;
        memcpy(pkt->data, *f + hdr, pkt->len);
        *f += len;
    }
}

long vs_bench_forward(vs_dp *dp, int i, const uint8_t *frames,
                      const uint32_t *lens, int n, int rounds)
{
    struct vs_iface *in = get_iface(dp, i);
    if (!in)
        return -ENOENT;
    long done = 0;
    const uint8_t *f = frames;
    if (n <= VS_BATCH) {
        /* One batch: loaded once, so only the decision is timed.  (The
         * forwarding path only ever changes a buffer to finish a checksum,
         * which is idempotent.) */
        bench_load(dp, in, &f, lens, 0, n);
        for (int r = 0; r < rounds; r++) {
            vs_forward_batch(dp, in, dp->pkts, n);
            done += n;
        }
        return done;
    }
    for (int r = 0; r < rounds; r++) {
        f = frames;
        for (int k = 0; k < n; k += VS_BATCH) {
            int m = n - k < VS_BATCH ? n - k : VS_BATCH;
            bench_load(dp, in, &f, lens, k, m);
            vs_forward_batch(dp, in, dp->pkts, m);
            done += m;
        }
    }
    return done;
}

long vs_bench_bond_select(vs_dp *dp, int p, const uint64_t *keys, int n)
{
    struct vs_port *port = get_port(dp, p);
    if (!port)
        return -ENOENT;
    long sum = 0;
    struct vs_pkt pkt;
    uint8_t frame[ETH_HLEN_];
    memset(&pkt, 0, sizeof pkt);
    memset(frame, 0, sizeof frame);
    pkt.data = frame;
    pkt.len = ETH_HLEN_;
    for (int i = 0; i < n; i++) {
        uint64_t k = keys[i];
        for (int b = 0; b < 6; b++)
            frame[6 + b] = (uint8_t)(k >> (40 - 8 * b));
        pkt.vlan = (uint16_t)((k >> 48) & 0xfff);
        sum += vs_bond_output_iface(dp, port, &pkt);
    }
    return sum;
}
