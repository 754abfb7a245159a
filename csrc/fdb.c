/*
 * fdb.c - MAC learning table: open addressing plus per-port LRU lists.
 *
 * Why this shape:
 *  - Lookups dominate (two per frame: learn the source, find the
 *    destination), so the index is a flat array of 16-byte slots probed
 *    linearly, kept at most half full (slots = next power of two >= 2 x
 *    max_entries).  A hit costs one cache line; the forwarding loop hashes a
 *    whole batch first and prefetches every home slot, so the misses of a
 *    large table overlap instead of queueing (bench/micro measures this).
 *  - Deletion uses backward shift, so there are no tombstones and probe
 *    chains never degrade, however long the table churns.
 *  - Entries sit at stable indices in a second array, linked per port from
 *    least to most recently seen.  A learn that finds the entry already on
 *    the right port, seen this second, reads one slot and writes nothing;
 *    only the first frame of each second relinks the entry to the tail.
 *    That keeps each list ordered by last_seen, so:
 *      aging looks at list heads only, and
 *      eviction ("the least recently used entry of the port that holds the
 *      most entries", Open vSwitch's fairness rule) is the head of the
 *      longest list.
 *  - Static entries are in the index but in no list: they never age, are
 *    never evicted and never move, but count against max_entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fdb.h"

static uint32_t slots_for(uint32_t max_entries)
{
    uint32_t n = 16;
    while (n < 2 * (uint64_t)max_entries)
        n <<= 1;
    return n;
}

static int alloc_tables(struct vs_fdb *f, uint32_t max_entries)
{
    uint32_t n_slots = slots_for(max_entries);
    f->slots = calloc(n_slots, sizeof *f->slots);
    f->ents = calloc(max_entries, sizeof *f->ents);
    if (!f->slots || !f->ents) {
        free(f->slots);
        free(f->ents);
        return -ENOMEM;
    }
    f->mask = n_slots - 1;
    f->max_entries = max_entries;
    for (uint32_t i = 0; i < max_entries; i++)
        f->ents[i].next = i + 1 < max_entries ? i + 1 : VS_FDB_NIL;
    f->free_head = 0;
    f->n_entries = f->n_static = 0;
    for (int p = 0; p < VS_MAX_PORTS; p++) {
        f->lru_head[p] = f->lru_tail[p] = VS_FDB_NIL;
        f->count[p] = 0;
    }
    return 0;
}

int fdb_init(struct vs_fdb *f, uint32_t max_entries, uint32_t aging,
                uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->aging = aging;
    f->seed = seed;
    return alloc_tables(f, max_entries);
}

void fdb_destroy(struct vs_fdb *f)
{
    free(f->slots);
    free(f->ents);
    f->slots = NULL;
    f->ents = NULL;
}

/* --- per-port LRU lists ---------------------------------------------------- */

static void lru_unlink(struct vs_fdb *f, uint32_t e)
{
    struct vs_fdb_ent *x = &f->ents[e];
    if (x->prev != VS_FDB_NIL)
        f->ents[x->prev].next = x->next;
    else
        f->lru_head[x->port] = x->next;
    if (x->next != VS_FDB_NIL)
        f->ents[x->next].prev = x->prev;
    else
        f->lru_tail[x->port] = x->prev;
    f->count[x->port]--;
}

static void lru_append(struct vs_fdb *f, uint32_t e)
{
    struct vs_fdb_ent *x = &f->ents[e];
    uint16_t p = x->port;
    x->next = VS_FDB_NIL;
    x->prev = f->lru_tail[p];
    if (x->prev != VS_FDB_NIL)
        f->ents[x->prev].next = e;
    else
        f->lru_head[p] = e;
    f->lru_tail[p] = e;
    f->count[p]++;
}

/* --- index ----------------------------------------------------------------- */

/* Backward-shift deletion: pull later members of the probe chain into the
 * hole while their home position allows it, so lookups never need
 * tombstones. */
static void slot_delete(struct vs_fdb *f, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & f->mask;
        if (f->slots[j].key == 0)
            break;
        uint32_t home = fdb_hash(f, f->slots[j].key) & f->mask;
        if (((j - home) & f->mask) >= ((j - i) & f->mask)) {
            f->slots[i] = f->slots[j];
            i = j;
        }
    }
    f->slots[i].key = 0;
}

static void slot_insert(struct vs_fdb *f, uint64_t key, uint32_t hash,
                        uint32_t e)
{
    uint32_t i = hash & f->mask;
    while (f->slots[i].key != 0)
        i = (i + 1) & f->mask;
    f->slots[i].key = key;
    f->slots[i].entry = e;
    f->slots[i].port = f->ents[e].port;
    f->slots[i].stamp = (uint16_t)f->ents[e].last_seen;
}

/* Remove entry e, whose index slot is s. */
static void remove_entry(struct vs_fdb *f, uint32_t e, uint32_t s)
{
    struct vs_fdb_ent *x = &f->ents[e];
    if (x->is_static)
        f->n_static--;
    else
        lru_unlink(f, e);
    slot_delete(f, s);
    x->in_use = 0;
    x->next = f->free_head;
    f->free_head = e;
    f->n_entries--;
}

static void remove_entry_by_key(struct vs_fdb *f, uint32_t e)
{
    uint64_t key = f->ents[e].key;
    int64_t s = fdb_find(f, key, fdb_hash(f, key));
    if (s >= 0)
        remove_entry(f, e, (uint32_t)s);
}

uint32_t fdb_victim(const struct vs_fdb *f, const uint16_t *ports, int n_ports)
{
    int best = -1;
    uint32_t best_count = 0;
    for (int i = 0; i < n_ports; i++) {
        uint16_t p = ports[i];
        if (f->count[p] > best_count) {
            best_count = f->count[p];
            best = p;
        }
    }
    return best < 0 ? VS_FDB_NIL : f->lru_head[best];
}

static bool evict_one(struct vs_fdb *f, const uint16_t *ports, int n_ports)
{
    uint32_t e = fdb_victim(f, ports, n_ports);
    if (e == VS_FDB_NIL)
        return false;
    remove_entry_by_key(f, e);
    f->evicted++;
    return true;
}

static int new_entry(struct vs_fdb *f, uint64_t key, uint32_t hash,
                     uint16_t port, uint32_t now_s, bool is_static,
                     const uint16_t *ports, int n_ports)
{
    if (f->n_entries >= f->max_entries && !evict_one(f, ports, n_ports))
        return -ENOSPC;
    uint32_t e = f->free_head;
    struct vs_fdb_ent *x = &f->ents[e];
    f->free_head = x->next;
    x->key = key;
    x->port = port;
    x->last_seen = now_s;
    x->is_static = is_static;
    x->in_use = 1;
    if (is_static) {
        x->prev = x->next = VS_FDB_NIL;
        f->n_static++;
    } else {
        lru_append(f, e);
    }
    slot_insert(f, key, hash, e);
    f->n_entries++;
    return 0;
}

void fdb_learn(struct vs_fdb *f, uint64_t key, uint32_t hash,
                  uint16_t port, uint32_t now_s, const uint16_t *ports,
                  int n_ports)
{
    int64_t s = fdb_find(f, key, hash);
    if (s < 0) {
        if (new_entry(f, key, hash, port, now_s, false, ports, n_ports) == 0)
            f->learned++;
        return;
    }
    struct vs_fdb_slot *slot = &f->slots[s];
    if (slot->port == port && slot->stamp == (uint16_t)now_s)
        return;  /* the common case: nothing to write */
    struct vs_fdb_ent *x = &f->ents[slot->entry];
    if (x->is_static)
        return;  /* static entries neither move nor age */
    lru_unlink(f, slot->entry);
    if (x->port != port) {
        x->port = port;
        slot->port = port;
        f->moved++;
    }
    x->last_seen = now_s;
    slot->stamp = (uint16_t)now_s;
    lru_append(f, slot->entry);
}

int fdb_add_static(struct vs_fdb *f, uint64_t key, uint16_t port,
                      uint32_t now_s, const uint16_t *ports, int n_ports)
{
    uint32_t hash = fdb_hash(f, key);
    int64_t s = fdb_find(f, key, hash);
    if (s >= 0) {
        /* Replace whatever is there: a learned entry becomes static, a
         * static one may be moved by the administrator. */
        remove_entry(f, f->slots[s].entry, (uint32_t)s);
    }
    return new_entry(f, key, hash, port, now_s, true, ports, n_ports);
}

int fdb_remove(struct vs_fdb *f, uint64_t key)
{
    int64_t s = fdb_find(f, key, fdb_hash(f, key));
    if (s < 0)
        return -ENOENT;
    remove_entry(f, f->slots[s].entry, (uint32_t)s);
    return 0;
}

int fdb_flush(struct vs_fdb *f, int port)
{
    int n = 0;
    int lo = port < 0 ? 0 : port, hi = port < 0 ? VS_MAX_PORTS - 1 : port;
    for (int p = lo; p <= hi; p++) {
        while (f->lru_head[p] != VS_FDB_NIL) {
            remove_entry_by_key(f, f->lru_head[p]);
            n++;
        }
    }
    return n;
}

void fdb_forget_port(struct vs_fdb *f, uint16_t port)
{
    fdb_flush(f, port);
    if (f->n_static == 0)
        return;
    for (uint32_t e = 0; e < f->max_entries; e++) {
        struct vs_fdb_ent *x = &f->ents[e];
        if (x->in_use && x->is_static && x->port == port)
            remove_entry_by_key(f, e);
    }
}

int fdb_expire(struct vs_fdb *f, uint32_t now_s, const uint16_t *ports,
                  int n_ports)
{
    int n = 0;
    for (int i = 0; i < n_ports; i++) {
        uint16_t p = ports[i];
        while (f->lru_head[p] != VS_FDB_NIL) {
            uint32_t e = f->lru_head[p];
            if (now_s - f->ents[e].last_seen < f->aging)
                break;
            remove_entry_by_key(f, e);
            n++;
        }
    }
    f->expired += n;
    return n;
}

int fdb_resize(struct vs_fdb *f, uint32_t max_entries,
                  const uint16_t *ports, int n_ports)
{
    if (max_entries == 0 || max_entries > VS_MAX_FDB_ENTRIES)
        return -EINVAL;
    if (f->n_static > max_entries)
        return -ENOSPC;
    struct vs_fdb next;
    memset(&next, 0, sizeof next);
    next.aging = f->aging;
    next.seed = f->seed;
    next.learned = f->learned;
    next.expired = f->expired;
    next.moved = f->moved;
    int err = alloc_tables(&next, max_entries);
    if (err)
        return err;
    /* Only now that nothing can fail: evict fairly down to the new size,
     * then move entries over, each port's list in order so LRU order and
     * timestamps survive. */
    while (f->n_entries > max_entries && evict_one(f, ports, n_ports))
        ;
    next.evicted = f->evicted;
    for (uint32_t e = 0; e < f->max_entries; e++) {
        struct vs_fdb_ent *x = &f->ents[e];
        if (x->in_use && x->is_static)
            new_entry(&next, x->key, fdb_hash(&next, x->key), x->port,
                      x->last_seen, true, NULL, 0);
    }
    for (int p = 0; p < VS_MAX_PORTS; p++) {
        for (uint32_t e = f->lru_head[p]; e != VS_FDB_NIL; e = f->ents[e].next) {
            struct vs_fdb_ent *x = &f->ents[e];
            new_entry(&next, x->key, fdb_hash(&next, x->key), x->port,
                      x->last_seen, false, NULL, 0);
        }
    }
    fdb_destroy(f);
    *f = next;
    return 0;
}
