/*
 * datapath.c - the datapath object: its lifecycle, its clock and its
 * forwarding thread (control calls are in control.c and fdb_ctl.c).
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
    if (vs_upcall_init(&dp->upq) < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
    if (epoll_ctl(dp->epfd, EPOLL_CTL_ADD, dp->wake_fd, &ev) < 0)
        goto fail;
    pthread_mutex_init(&dp->lock, NULL);
    dp->fake_now_ms = -1;
    dp->tc.mirror = -1;
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

void vs_run_periodic_locked(struct vs_dp *dp)
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
    vs_run_periodic_locked(dp);
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
        int n = epoll_wait(dp->epfd, evs, 64, spinning ? 0 : VS_PERIODIC_MS);
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
            vs_run_periodic_locked(dp);
            dp->next_periodic_ms = now + VS_PERIODIC_MS;
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

void vs_dp_free(vs_dp *dp)
{
    if (!dp)
        return;
    vs_dp_stop(dp);
    for (int p = 0; p < VS_MAX_PORTS; p++)
        if (dp->ports[p].in_use)
            vs_port_release(dp, p);
    for (int b = 0; b < VS_MAX_BRIDGES; b++) {
        if (dp->bridges[b]) {
            vs_flow_release(dp->bridges[b]);
            fdb_destroy(&dp->bridges[b]->fdb);
            free(dp->bridges[b]);
        }
    }
    close(dp->epfd);
    close(dp->wake_fd);
    close(dp->notify_fd);
    vs_upcall_destroy(&dp->upq);
    pthread_mutex_destroy(&dp->lock);
    free(dp->bufs);
    free(dp->seg_buf);
    free(dp);
}
