/*
 * bench.c - entry points for the microbenchmarks (bench/micro): loops over
 * many items in C, so that the cost of a cffi call is spread thin.  They
 * take no lock: call them with the forwarding thread stopped.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"


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
