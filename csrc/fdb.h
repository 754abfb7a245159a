/*
 * fdb.h - the MAC learning table of one bridge.
 *
 * Keyed by (VLAN, MAC) packed in 64 bits: bit 63 marks a used slot, bits
 * 48..59 hold the VLAN, bits 0..47 the MAC.  Design and measurements are in
 * fdb.c's opening comment.
 */
#ifndef VS_FDB_H
#define VS_FDB_H

#include <stdbool.h>
#include <stdint.h>

#include "vswitch.h"

#define VS_FDB_NIL UINT32_MAX
#define VS_FDB_USED (1ULL << 63)

/* The open-addressed index: 16 bytes, four to a cache line.  The port and a
 * 16-bit copy of the last-seen second sit beside the key so a lookup, and a
 * learn that finds nothing to change, touch this one line only. */
struct vs_fdb_slot {
    uint64_t key;      /* 0: empty */
    uint32_t entry;    /* index into ents */
    uint16_t port;
    uint16_t stamp;    /* low 16 bits of ents[entry].last_seen */
};

/* Entries live at stable indices (slots move when a neighbour is deleted)
 * and are linked, per port, from least to most recently seen. */
struct vs_fdb_ent {
    uint64_t key;
    uint32_t prev, next;  /* per-port LRU list, or the free list (next) */
    uint32_t last_seen;   /* seconds of the datapath clock */
    uint16_t port;
    uint8_t is_static;
    uint8_t in_use;
};

struct vs_fdb {
    struct vs_fdb_slot *slots;
    uint32_t mask;            /* number of slots - 1 */
    struct vs_fdb_ent *ents;
    uint32_t max_entries;
    uint32_t free_head;
    uint32_t n_entries;       /* static ones included */
    uint32_t n_static;
    uint32_t aging;           /* seconds */
    uint64_t seed;
    uint64_t learned, expired, evicted, moved;
    /* Learned (evictable) entries per port, least recently seen first. */
    uint32_t lru_head[VS_MAX_PORTS];
    uint32_t lru_tail[VS_MAX_PORTS];
    uint32_t count[VS_MAX_PORTS];
};

static inline uint64_t fdb_key(uint16_t vlan, uint64_t mac48)
{
    return VS_FDB_USED | ((uint64_t)(vlan & 0xfff) << 48) | mac48;
}

/* Seeded 64-bit finaliser (the MurmurHash3 fmix64 constants).  The seed is
 * random per datapath so that a namespace cannot precompute MACs that all
 * land in one probe chain. */
static inline uint32_t fdb_hash(const struct vs_fdb *f, uint64_t key)
{
    uint64_t k = key ^ f->seed;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static inline void fdb_prefetch(const struct vs_fdb *f, uint32_t hash)
{
    __builtin_prefetch(&f->slots[hash & f->mask]);
}

/* Slot index holding key, or -1. */
static inline int64_t fdb_find(const struct vs_fdb *f, uint64_t key,
                                  uint32_t hash)
{
    uint32_t i = hash & f->mask;
    for (;;) {
        uint64_t k = f->slots[i].key;
        if (k == key)
            return i;
        if (k == 0)
            return -1;
        i = (i + 1) & f->mask;
    }
}

/* The entry a new one would evict from a full table (the least recently
 * seen of the port holding the most learned entries), or VS_FDB_NIL. */
uint32_t fdb_victim(const struct vs_fdb *f, const uint16_t *ports, int n_ports);

int fdb_init(struct vs_fdb *f, uint32_t max_entries, uint32_t aging,
                uint64_t seed);
void fdb_destroy(struct vs_fdb *f);

/* Learn key on port at time now_s.  ports/n_ports: the bridge's ports, the
 * candidates for fair eviction when the table is full. */
void fdb_learn(struct vs_fdb *f, uint64_t key, uint32_t hash,
                  uint16_t port, uint32_t now_s, const uint16_t *ports,
                  int n_ports);
int fdb_add_static(struct vs_fdb *f, uint64_t key, uint16_t port,
                      uint32_t now_s, const uint16_t *ports, int n_ports);
int fdb_remove(struct vs_fdb *f, uint64_t key);
/* Learned entries of port (all ports when port < 0); returns the count. */
int fdb_flush(struct vs_fdb *f, int port);
/* Every entry of port, static ones too (the port is going away). */
void fdb_forget_port(struct vs_fdb *f, uint16_t port);
int fdb_expire(struct vs_fdb *f, uint32_t now_s, const uint16_t *ports,
                  int n_ports);
int fdb_resize(struct vs_fdb *f, uint32_t max_entries,
                  const uint16_t *ports, int n_ports);

#endif
