/*
 * fdb_ctl.c - the FDB's control calls: static entries, deletion, flushing,
 * dumps and statistics.  Each takes dp->lock (see datapath.c).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "tunnel.h"


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
            out[n].remote_ip = vs_tunnel_remote_ip(dp, sl->port, x->remote);
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
