/*
 * frame.c - bounds-checked parsing of untrusted Ethernet frames.
 *
 * Every read is preceded by a length check against len; nothing past
 * frame[len - 1] is ever touched.  Recognised: Ethernet II with up to two
 * tags, 802.1Q (0x8100) or 802.1ad (0x88a8), in either position (Open
 * vSwitch accepts both TPIDs in both places too).  A third tag is left as
 * payload: the switch only ever needs the outer tag and the next one.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static inline bool is_tpid(uint16_t t)
{
    return t == TPID_8021Q || t == TPID_8021AD;
}

int vs_parse(const uint8_t *frame, uint32_t len, struct vs_parsed *out)
{
    memset(out, 0, sizeof *out);
    if (len < ETH_HLEN_)
        return -1 - VS_DROP_RUNT;
    uint32_t off = 12;
    uint16_t type = vs_rd16(frame + off);
    if (is_tpid(type)) {
        if (len < off + VLAN_HLEN_ + 2)
            return -1 - VS_DROP_RUNT;
        out->ntags = 1;
        out->outer_tpid = type;
        out->outer_tci = vs_rd16(frame + off + 2);
        off += VLAN_HLEN_;
        type = vs_rd16(frame + off);
        if (is_tpid(type)) {
            if (len < off + VLAN_HLEN_ + 2)
                return -1 - VS_DROP_RUNT;
            out->ntags = 2;
            out->inner_tpid = type;
            out->inner_tci = vs_rd16(frame + off + 2);
            off += VLAN_HLEN_;
            type = vs_rd16(frame + off);
        }
    }
    out->ethertype = type;
    out->l3_offset = (uint16_t)(off + 2);
    return 0;
}

int vs_frame_parse(const uint8_t *frame, size_t len, struct vs_parsed *out)
{
    if (len > VS_MAX_FRAME)
        len = VS_MAX_FRAME;   /* no frame we read is longer */
    return vs_parse(frame, (uint32_t)len, out);
}

long vs_bench_parse(const uint8_t *frame, size_t len, int n)
{
    struct vs_parsed p;
    long sum = 0;
    for (int i = 0; i < n; i++) {
        if (vs_parse(frame, (uint32_t)len, &p) == 0)
            sum += p.l3_offset;
        __asm__ volatile("" : : "g"(frame) : "memory");  /* keep the loop */
    }
    return sum;
}

static const char *const drop_names[VS_DROP__COUNT] = {
    [VS_DROP_RUNT] = "runt",
    [VS_DROP_OVERSIZE] = "oversize",
    [VS_DROP_BAD_VNET_HDR] = "bad_vnet_hdr",
    [VS_DROP_RESERVED_DST] = "reserved_dst",
    [VS_DROP_VLAN] = "vlan",
    [VS_DROP_SAME_PORT] = "same_port",
    [VS_DROP_BOND] = "bond",
    [VS_DROP_NO_GSO] = "no_gso",
    [VS_DROP_TX_ERROR] = "tx_error",
    [VS_DROP_IFACE_DOWN] = "iface_down",
    [VS_DROP_NO_MEMBER] = "no_member",
    [VS_DROP_MIRROR_PORT] = "mirror_port",
};

const char *vs_drop_reason_name(int reason)
{
    if (reason < 0 || reason >= VS_DROP__COUNT)
        return NULL;
    return drop_names[reason];
}

_Static_assert(VS_DROP__COUNT <= VS_DROP_SLOTS, "too many drop reasons");
