/* SPDX-License-Identifier: MIT */
#include "nk_validate.h"

#include <errno.h>
#include <sys/socket.h>

#define BAD(msg)                \
	do {                    \
		*why = (msg);   \
		return -EINVAL; \
	} while (0)

int nk_validate_addr(const struct nk_addr *a)
{
	if (a->family != AF_INET && a->family != AF_INET6)
		return -EAFNOSUPPORT;
	return 0;
}

static int chunk_in_tx(const struct nk_geom *g, uint32_t chan, uint32_t c)
{
	return c - nk_geom_tx_first(g, chan) < g->tx_per_chan; /* unsigned wrap rejects below */
}

static int chunk_in_rx(const struct nk_geom *g, uint32_t c)
{
	return c - nk_geom_rx_first(g) < g->nrx;
}

static int span_ok(const struct nk_geom *g, uint32_t off, uint32_t len)
{
	return off < g->chunk_size && len <= g->chunk_size - off;
}

int nk_validate_guest_nqe(const struct nk_geom *g, uint32_t chan, const struct nk_nqe *n,
			  const char **why)
{
	*why = "";
	if (chan >= g->nchan)
		BAD("channel out of range");
	if (n->flags & ~(NK_NQF_ACCEPT | NK_NQF_ASYNC))
		BAD("unknown or host-only flags");
	if ((n->flags & NK_NQF_ASYNC) && n->op != NK_OP_SETSOCKOPT)
		BAD("NK_NQF_ASYNC on an op other than SETSOCKOPT");
	if (n->op != NK_OP_SOCKET && n->sock >= g->nsocks)
		BAD("socket id out of range");
	/* Only these ops carry a chunk; any other must say so, so that no
	 * garbage index is ever forwarded. */
	if (n->chunk != NK_NO_CHUNK && n->op != NK_OP_SEND && n->op != NK_OP_GETSOCKOPT &&
	    n->op != NK_OP_RX_DONE)
		BAD("chunk given for an op that carries none");
	switch (n->op) {
	case NK_OP_SOCKET:
		if (n->arg.sock.domain != AF_INET && n->arg.sock.domain != AF_INET6)
			BAD("socket domain not AF_INET/AF_INET6");
		if (n->arg.sock.type != SOCK_STREAM && n->arg.sock.type != SOCK_DGRAM)
			BAD("socket type not SOCK_STREAM/SOCK_DGRAM");
		return 0;
	case NK_OP_BIND:
	case NK_OP_CONNECT:
		if (nk_validate_addr(&n->arg.addr) < 0)
			BAD("address family not AF_INET/AF_INET6");
		return 0;
	case NK_OP_LISTEN:
	case NK_OP_CLOSE:
		return 0;
	case NK_OP_SHUTDOWN:
		if (n->arg.u32[0] > 2)
			BAD("shutdown how not SHUT_RD/WR/RDWR");
		return 0;
	case NK_OP_SETSOCKOPT:
		if (n->arg.opt.vlen > NK_OPT_INLINE)
			BAD("setsockopt value too long");
		return 0;
	case NK_OP_GETSOCKOPT:
		if (n->chunk == NK_NO_CHUNK) {
			if (n->arg.opt.vlen > NK_OPT_INLINE)
				BAD("getsockopt inline value too long");
		} else if (!chunk_in_tx(g, chan, n->chunk)) {
			BAD("getsockopt chunk not in the channel's TX partition");
		}
		return 0;
	case NK_OP_SEND:
		if (!chunk_in_tx(g, chan, n->chunk))
			BAD("send chunk not in the channel's TX partition");
		/* len 0 is a zero-length datagram (on a stream, a no-op). */
		if (!span_ok(g, n->off, n->len))
			BAD("send offset/length outside the chunk");
		return 0;
	case NK_OP_RX_DONE:
		if (n->flags & NK_NQF_ACCEPT) {
			if (n->arg.u32[0] >= g->nsocks)
				BAD("accepted socket id out of range");
			if (n->chunk != NK_NO_CHUNK)
				BAD("accept entry carries no chunk");
		} else if (n->chunk != NK_NO_CHUNK && !chunk_in_rx(g, n->chunk)) {
			BAD("returned chunk is not an RX chunk");
		}
		return 0;
	default:
		BAD("op not allowed from a guest");
	}
}

int nk_validate_nsm_nqe(const struct nk_geom *vg, const struct nk_nqe *n, const char **why)
{
	*why = "";
	if (!vg)
		BAD("NQE names an unknown VM");
	if (n->chunk != NK_NO_CHUNK) {
		if (n->chunk >= nk_geom_nchunks(vg))
			BAD("chunk index out of range");
		if (!span_ok(vg, n->off, n->len) && n->op != NK_OP_GETSOCKOPT)
			BAD("offset/length outside the chunk");
	}
	switch (n->op) {
	case NK_OP_RX_DATA:
		/* len 0: a zero-length datagram, still one entry. */
		if (!chunk_in_rx(vg, n->chunk))
			BAD("RX_DATA without an RX chunk");
		return 0;
	case NK_OP_SEND_DONE:
		if (n->chunk == NK_NO_CHUNK || chunk_in_rx(vg, n->chunk))
			BAD("SEND_DONE without a TX chunk");
		return 0;
	case NK_OP_NEWCONN:
		if (nk_validate_addr(&n->arg.conn.peer) < 0)
			BAD("NEWCONN peer address family");
		return 0;
	case NK_OP_RX_FIN:
	case NK_OP_RX_ERR:
	case NK_OP_CLOSED:
	case NK_OP_MIGRATE_ACK:
		return 0;
	default:
		if (n->flags & NK_NQF_COMPLETION)
			return 0;
		BAD("op not allowed from an NSM");
	}
}
