/*
 * trace.c - what would the engine do with this frame?  (Open vSwitch's
 * ofproto/trace, for a learning switch.)
 *
 * vs_dp_trace() runs the frame through vs_forward_batch() itself, the code
 * real frames take, with a recorder attached (dp->trace).  The hooks in the
 * forwarding code note each decision here instead of acting on it: emit()
 * records an output instead of writing, learn() says what learning would
 * do instead of doing it, capture and upcalls stay quiet.  What the pass
 * still counts (receive and drop counters, SLB bucket loads) is saved
 * before and put back after, so a trace leaves no trace.  The real path
 * pays one never-taken branch per hook: dp->trace is NULL there.
 *
 * Thread safety: vs_dp_trace holds the datapath lock for the whole run,
 * like vs_dp_inject, so the forwarding thread never sees dp->trace set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void vs_trace_step(struct vs_dp *dp, int kind, int a, int b, int c)
{
    struct vs_trace *t = dp->trace;
    if (t->n_steps >= VS_TRACE_MAX_STEPS) {
        t->steps_lost++;
        return;
    }
    t->steps[t->n_steps++] = (struct vs_trace_step){kind, a, b, c};
}

void vs_trace_drop(struct vs_dp *dp, const struct vs_iface *ifc, int reason)
{
    struct vs_trace *t = dp->trace;
    int i = (int)(ifc - dp->ifaces);
    vs_trace_step(dp, VS_TRACE_DROP, reason, i, 0);
    if (i == t->in_iface) {
        if (t->drop < 0)
            t->drop = reason;
    } else {
        dp->tc.out_drop = reason;
    }
}

void vs_trace_output(struct vs_dp *dp, const struct vs_port *op,
                     const struct vs_iface *out, uint16_t vlan, bool tagged)
{
    struct vs_trace *t = dp->trace;
    int port = (int)(op - dp->ports), iface = (int)(out - dp->ifaces);
    if (t->n_outputs < VS_MAX_PORTS) {
        t->outputs[t->n_outputs] = (struct vs_trace_output){
            .port = port, .iface = iface, .vlan = vlan, .tagged = tagged,
            .mirror = dp->tc.mirror};
        t->n_outputs++;
    }
    vs_trace_step(dp, VS_TRACE_OUTPUT, port, iface, (int)t->n_outputs - 1);
}

/* Learning is not done, but its effect on this frame's own lookup is
 * worked out, so the trace stays true: a frame to its own source address
 * finds it where it was just learned, and a new address in a full table
 * pushes out the entry fdb_learn() would evict (which may be the
 * destination). */
void vs_trace_learn(struct vs_dp *dp, const struct vs_bridge *br,
                    const struct vs_pkt *pkt, int port)
{
    const struct vs_fdb *fdb = &br->fdb;
    int64_t s = fdb_find(fdb, pkt->src_key, pkt->src_hash);
    int was = -1;
    dp->tc.src_key = pkt->src_key;
    dp->tc.src_port = port;
    if (s >= 0) {
        was = fdb->slots[s].port;
        if (was != port && fdb->ents[fdb->slots[s].entry].is_static) {
            dp->tc.src_port = was;
            was = -2;    /* a static entry never moves */
        }
    } else if (fdb->n_entries >= fdb->max_entries) {
        uint32_t e = fdb_victim(fdb, br->ports, br->n_ports);
        if (e == VS_FDB_NIL) {
            dp->tc.src_port = -1;    /* full of static entries: not learned */
        } else {
            dp->tc.evicted = fdb->ents[e].key;
            vs_trace_step(dp, VS_TRACE_EVICT, fdb->ents[e].port,
                          (int)((fdb->ents[e].key >> 48) & 0xfff), 0);
        }
    }
    vs_trace_step(dp, VS_TRACE_LEARN, port, pkt->vlan, was);
}

int vs_trace_lookup(struct vs_dp *dp, const struct vs_fdb *fdb,
                    const struct vs_pkt *pkt, int64_t s)
{
    int port = -1, is_static = 0;
    if (dp->tc.src_key && pkt->dst_key == dp->tc.src_key) {
        port = dp->tc.src_port;
        is_static = s >= 0 && fdb->ents[fdb->slots[s].entry].is_static;
    } else if (s >= 0 && pkt->dst_key != dp->tc.evicted) {
        port = fdb->slots[s].port;
        is_static = fdb->ents[fdb->slots[s].entry].is_static;
    }
    if (port >= 0)
        vs_trace_step(dp, VS_TRACE_FDB_HIT, port, pkt->vlan, is_static);
    return port;
}

/* What a forwarding pass may count, so it can be put back. */
struct saved {
    struct vs_iface_stats ifaces[VS_MAX_IFACES];
    uint16_t n_ports;
    uint16_t ports[VS_MAX_PORTS];
    uint64_t slb_load[];     /* n_ports * VS_SLB_BUCKETS, balance-slb ports only */
};

static struct saved *save(struct vs_dp *dp, const struct vs_bridge *br)
{
    struct saved *sv = malloc(sizeof *sv + (size_t)br->n_ports * sizeof dp->ports[0].slb_load);
    if (!sv)
        return NULL;
    for (int i = 0; i < VS_MAX_IFACES; i++)
        if (dp->ifaces[i].in_use)
            sv->ifaces[i] = dp->ifaces[i].stats;
    sv->n_ports = br->n_ports;
    for (int k = 0; k < br->n_ports; k++) {
        sv->ports[k] = br->ports[k];
        memcpy(&sv->slb_load[(size_t)k * VS_SLB_BUCKETS], dp->ports[br->ports[k]].slb_load,
               sizeof dp->ports[0].slb_load);
    }
    return sv;
}

static void restore(struct vs_dp *dp, const struct saved *sv)
{
    for (int i = 0; i < VS_MAX_IFACES; i++)
        if (dp->ifaces[i].in_use)
            dp->ifaces[i].stats = sv->ifaces[i];
    for (int k = 0; k < sv->n_ports; k++)
        memcpy(dp->ports[sv->ports[k]].slb_load, &sv->slb_load[(size_t)k * VS_SLB_BUCKETS],
               sizeof dp->ports[0].slb_load);
}

static int trace_locked(struct vs_dp *dp, int i, const uint8_t *frame, size_t len,
                        struct vs_trace *out)
{
    struct vs_iface *in = get_iface(dp, i);
    if (!in)
        return -ENOENT;
    struct vs_bridge *br = dp->bridges[dp->ports[in->port].bridge];
    if (len > VS_MAX_FRAME)
        return -EMSGSIZE;
    struct saved *sv = save(dp, br);
    if (!sv)
        return -ENOMEM;
    memset(out, 0, sizeof *out);
    out->drop = -1;
    out->in_iface = i;
    dp->tc.out_drop = -1;
    dp->tc.mirror = -1;
    dp->tc.src_key = dp->tc.evicted = 0;
    dp->trace = out;
    struct vs_pkt *pkt = &dp->pkts[0];
    memset(&pkt->vnet, 0, sizeof pkt->vnet);
    pkt->data = dp->bufs + VS_HEADROOM;
    pkt->len = (uint32_t)len;
    memcpy(pkt->data, frame, len);
    /* What classify() finds out first is noted here, from the same parser,
     * so the forwarding pass needs no hook before its VLAN decision. */
    vs_trace_step(dp, VS_TRACE_RECEIVE, i, in->port, (int)len);
    struct vs_parsed ps;
    if (vs_parse(pkt->data, pkt->len, &ps) == 0)
        vs_trace_step(dp, VS_TRACE_PARSE, ps.ntags, ps.ntags ? ps.outer_tci & 0xfff : -1,
                      ps.ethertype);
    vs_forward_batch(dp, in, pkt, 1);
    dp->trace = NULL;
    restore(dp, sv);
    free(sv);
    /* A frame that went nowhere because its one output could not take it
     * (a member down, too big) was dropped there. */
    if (out->drop < 0 && out->n_outputs == 0)
        out->drop = dp->tc.out_drop;
    return 0;
}

int vs_dp_trace(vs_dp *dp, int i, const uint8_t *frame, size_t len,
                struct vs_trace *out)
{
    LOCKED(trace_locked(dp, i, frame, len, out));
}
