/*
 * tunnel.h - VXLAN tunnel interfaces (tunnel.c): what the rest of the
 * engine calls.  Every function runs with dp->lock held (the forwarding
 * thread's batch, or a control call).
 */
#ifndef VS_TUNNEL_H
#define VS_TUNNEL_H

#include "internal.h"

/* epoll tokens whose low 32 bits are >= this are tunnel sockets; the
 * high 32 bits carry the socket's generation, as for interfaces. */
#define VS_TUNSOCK_TOKEN 0x10000u

/* Forwarding: send pkt out of tunnel interface out (of port op).  unicast:
 * the destination MAC is learned on op, so only its remote gets it. */
void vs_tunnel_output(struct vs_dp *dp, struct vs_pkt *pkt, struct vs_port *op,
                      struct vs_iface *out, struct vs_iface *in, bool unicast);
/* Forwarding: pkt's source MAC was just learned on tunnel interface in;
 * record the remote it came from. */
void vs_tunnel_learned(struct vs_dp *dp, struct vs_iface *in,
                       struct vs_fdb *fdb, const struct vs_pkt *pkt);
/* Send every queued encapsulated frame (called by vs_tx_flush). */
void vs_tunnel_flush(struct vs_dp *dp);
/* A tunnel socket is readable: receive, decapsulate, forward. */
void vs_tunnel_rx(struct vs_dp *dp, uint32_t sock, uint32_t gen);
/* Once a second: refresh each remote's route (source address, path MTU). */
void vs_tunnel_periodic(struct vs_dp *dp);
/* Interface going away: release its share of the socket. */
void vs_tunnel_release(struct vs_dp *dp, struct vs_iface *ifc);
void vs_tunnels_free(struct vs_dp *dp);
/* The IPv4 address of remote index r of port p, or 0. */
uint32_t vs_tunnel_remote_ip(struct vs_dp *dp, int p, uint8_t r);

#endif
