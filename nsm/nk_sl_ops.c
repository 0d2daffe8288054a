/* SPDX-License-Identifier: MIT */
/*
 * nk_sl_ops.c - ServiceLib dispatcher: one NQE from the down ring (CE->NSM)
 * becomes one stack operation. The CE is trusted-ish, but every index,
 * offset and length is still bounds-checked here, so a CE bug is an error
 * completion, never a write outside a region.
 */
#define _GNU_SOURCE
#include "nk_sl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif
#ifndef MPTCP_INFO
#define MPTCP_INFO 1
#endif
#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif

/* ---- addresses ---- */

void nk_sl_addr_from_sa(struct nk_addr *a, const struct sockaddr_storage *ss)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		a->family = AF_INET;
		a->port = in->sin_port;
		memcpy(a->addr, &in->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		a->family = AF_INET6;
		a->port = in6->sin6_port;
		a->flowinfo = in6->sin6_flowinfo;
		memcpy(a->addr, &in6->sin6_addr, 16);
		a->scope_id = in6->sin6_scope_id;
	}
}

int nk_sl_addr_to_sa(const struct nk_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = a->port;
		memcpy(&in->sin_addr, a->addr, 4);
		*len = sizeof(*in);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = a->port;
		in6->sin6_flowinfo = a->flowinfo;
		memcpy(&in6->sin6_addr, a->addr, 16);
		in6->sin6_scope_id = a->scope_id;
		*len = sizeof(*in6);
	} else if (a->family == AF_UNSPEC) {
		ss->ss_family = AF_UNSPEC; /* connect(AF_UNSPEC) dissolves a UDP association */
		*len = sizeof(struct sockaddr);
	} else {
		return -EAFNOSUPPORT;
	}
	return 0;
}

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* The VM's own address, as a sockaddr of the socket's family (port given). */
static void vm_sa(const struct nk_sl_vm *v, int domain, uint16_t port,
		  struct sockaddr_storage *ss, socklen_t *len)
{
	struct nk_addr a = { .family = (uint16_t)domain, .port = port };
	if (domain == AF_INET6) {
		/* A VM without an address keeps the true wildcard "::". */
		if (memcmp(v->ipv4, "\0\0\0\0", 4) != 0) {
			memcpy(a.addr, v4mapped_prefix, 12);
			memcpy(a.addr + 12, v->ipv4, 4);
		}
	} else {
		memcpy(a.addr, v->ipv4, 4);
	}
	nk_sl_addr_to_sa(&a, ss, len);
}

/* ---- guest loopback ----
 *
 * A guest's 127.0.0.0/8 (and ::1, ::ffff:127.0.0.0/104) is its VM's own
 * address in this namespace: connect/sendto there reach the VM's own
 * sockets, which is what a listener on 0.0.0.0 (= the VM's address) needs
 * to be reachable as localhost. Sockets bound to a loopback address are
 * marked `loop`: they accept connections and datagrams only from the VM's
 * own address, so neither the network nor another VM (another address)
 * reaches them, and the guest sees 127.0.0.1 for the VM's address on them. */

static bool is_loop(const struct nk_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };
	if (a->family == AF_INET)
		return a->addr[0] == 127;
	if (a->family == AF_INET6)
		return !memcmp(a->addr, v6lo, 16) ||
		       (!memcmp(a->addr, v4mapped_prefix, 12) && a->addr[12] == 127);
	return false;
}

static bool is_vm_addr(const struct nk_sl_vm *v, const struct nk_addr *a)
{
	if (a->family == AF_INET)
		return !memcmp(a->addr, v->ipv4, 4);
	return a->family == AF_INET6 && !memcmp(a->addr, v4mapped_prefix, 12) &&
	       !memcmp(a->addr + 12, v->ipv4, 4);
}

/* A VM without an address, or whose address is itself a loopback one (a
 * test without a network), has no separate loopback: 127.x stays 127.x. */
static bool vm_has_loop(const struct nk_sl_vm *v)
{
	return memcmp(v->ipv4, "\0\0\0\0", 4) != 0 && v->ipv4[0] != 127;
}

bool nk_sl_loop_dest(const struct nk_sl_vm *v, struct nk_addr *a)
{
	if (!is_loop(a) || !vm_has_loop(v))
		return false;
	if (a->family == AF_INET) {
		memcpy(a->addr, v->ipv4, 4);
	} else {
		memcpy(a->addr, v4mapped_prefix, 12);
		memcpy(a->addr + 12, v->ipv4, 4);
	}
	return true;
}

bool nk_sl_loop_peer_ok(const struct nk_sl_vm *v, const struct nk_addr *a)
{
	/* only called for loop sockets, which exist only when vm_has_loop */
	return is_vm_addr(v, a);
}

/* The VM's address as a loop socket's guest sees it: 127.0.0.1. */
void nk_sl_loop_report(const struct nk_sl_vm *v, struct nk_addr *a)
{
	if (!is_vm_addr(v, a))
		return;
	if (a->family == AF_INET) {
		static const uint8_t lo[4] = { 127, 0, 0, 1 };
		memcpy(a->addr, lo, 4);
	} else {
		a->addr[12] = 127;
		a->addr[13] = a->addr[14] = 0;
		a->addr[15] = 1;
	}
}

/* Guest bind address -> what we really bind: only the VM's own address (or
 * the wildcard, which means the VM's address) is allowed, and the guest's
 * loopback (the VM's address too, *loop set). */
static int translate_bind(const struct nk_sl_vm *v, const struct nk_addr *in,
			  struct sockaddr_storage *ss, socklen_t *len, bool *loop)
{
	static const uint8_t zero[16];
	*loop = is_loop(in) && vm_has_loop(v);
	if (*loop) {
		/* ::1 on an AF_INET6 socket: the VM has no IPv6 address. */
		if (in->family == AF_INET6 && memcmp(in->addr, v4mapped_prefix, 12) != 0)
			return -EADDRNOTAVAIL;
	} else if (in->family == AF_INET) {
		if (memcmp(in->addr, zero, 4) != 0 && memcmp(in->addr, v->ipv4, 4) != 0)
			return -EADDRNOTAVAIL;
	} else if (in->family == AF_INET6) {
		bool any = memcmp(in->addr, zero, 16) == 0;
		bool mapped = memcmp(in->addr, v4mapped_prefix, 12) == 0 &&
			      (memcmp(in->addr + 12, v->ipv4, 4) == 0 ||
			       memcmp(in->addr + 12, zero, 4) == 0);
		if (!any && !mapped)
			return -EADDRNOTAVAIL;
	} else {
		return -EAFNOSUPPORT;
	}
	vm_sa(v, in->family, in->port, ss, len);
	return 0;
}

/* Before listen/connect/sendto on an unbound socket: bind the VM's address
 * so the traffic carries the VM's own source address. */
int nk_sl_autobind(struct nk_sl *sl, struct nk_sl_sock *s, bool no_port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (s->bound)
		return 0;
	vm_sa(sl->vms[s->vm], s->domain, 0, &ss, &len);
	int r = sl->ops->bind(sl->st, s->h, (struct sockaddr *)&ss, len, no_port);
	if (r == 0)
		s->bound = true;
	return r;
}

/* ---- socket options ---- */

/* Options a guest may set: the usual application tunables. Everything else
 * is refused, because some options hand the kernel pointers (filters),
 * escape the namespace (SO_BINDTODEVICE, SO_MARK) or block the single
 * thread (SO_LINGER with a timeout). */
static bool setopt_allowed(int level, int name)
{
	static const int sol[] = { SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_LINGER,
				   SO_RCVBUF, SO_SNDBUF, SO_RCVLOWAT, SO_BROADCAST,
				   SO_OOBINLINE, SO_PRIORITY };
	static const int tcp[] = { TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE,
				   TCP_KEEPINTVL, TCP_KEEPCNT, TCP_SYNCNT, TCP_LINGER2,
				   TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP, TCP_QUICKACK,
				   TCP_USER_TIMEOUT, TCP_FASTOPEN, TCP_NOTSENT_LOWAT,
				   TCP_CONGESTION };
	static const int ip[] = { IP_TOS, IP_TTL, IP_MULTICAST_TTL, IP_MULTICAST_LOOP };
	static const int ip6[] = { IPV6_TCLASS, IPV6_UNICAST_HOPS, IPV6_V6ONLY };
	const int *set = NULL;
	size_t n = 0;
#define PICK(a) do { set = (a); n = sizeof(a) / sizeof((a)[0]); } while (0)
	switch (level) {
	case SOL_SOCKET: PICK(sol); break;
	case IPPROTO_TCP: PICK(tcp); break;
	case IPPROTO_IP: PICK(ip); break;
	case IPPROTO_IPV6: PICK(ip6); break;
	default: return false;
	}
#undef PICK
	for (size_t i = 0; i < n; i++)
		if (set[i] == name)
			return true;
	return false;
}

/* Reading options is harmless except the few whose optval carries user
 * pointers or reveals host firewall state (iptables get-ops, 64+). */
static bool getopt_allowed(int level, int name)
{
	switch (level) {
	case SOL_SOCKET:
	case IPPROTO_UDP:
		return true;
	case IPPROTO_TCP:
		return name != TCP_ZEROCOPY_RECEIVE;
	case IPPROTO_IP:
		return name < 64;
	case IPPROTO_IPV6:
		return name != 64 && name != 65 && name != 68 && name != 69;
	case SOL_MPTCP:
		return name == MPTCP_INFO;
	default:
		return false;
	}
}

static void op_setsockopt(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	struct nk_opt o = req->arg.opt;
	if (o.vlen > NK_OPT_INLINE) {
		nk_sl_complete(sl, req, -EINVAL);
		return;
	}
	if (o.level == IPPROTO_TCP && o.name == TCP_CONGESTION && !sl->allow_guest_cc) {
		nk_sl_complete(sl, req, -EPERM); /* the operator chose the cc */
		return;
	}
	if (!setopt_allowed(o.level, o.name)) {
		nk_sl_complete(sl, req, -ENOPROTOOPT);
		return;
	}
	if (o.level == SOL_SOCKET && o.name == SO_LINGER) {
		struct linger lg = { 0 };
		memcpy(&lg, o.val, o.vlen < sizeof(lg) ? o.vlen : sizeof(lg));
		if (o.vlen < sizeof(lg)) {
			nk_sl_complete(sl, req, -EINVAL);
			return;
		}
		/* A lingering close() would block this thread; close is already
		 * asynchronous and flushes, so only the abort form is applied. */
		if (lg.l_onoff && lg.l_linger > 0) {
			nk_sl_complete(sl, req, 0);
			return;
		}
	}
	nk_sl_complete(sl, req, sl->ops->setsockopt(sl->st, s->h, o.level, o.name, o.val, o.vlen));
}

static void op_getsockopt(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	struct nk_nqe c = *req;
	struct nk_opt *o = &c.arg.opt;
	if (!getopt_allowed(o->level, o->name)) {
		nk_sl_complete(sl, req, -ENOPROTOOPT);
		return;
	}
	if (req->chunk == NK_NO_CHUNK) {
		uint8_t buf[NK_OPT_INLINE];
		socklen_t len = o->vlen < NK_OPT_INLINE ? o->vlen : NK_OPT_INLINE;
		memcpy(buf, o->val, sizeof(buf));
		int r = sl->ops->getsockopt(sl->st, s->h, o->level, o->name, buf, &len);
		if (r == 0) {
			if (len > NK_OPT_INLINE)
				len = NK_OPT_INLINE;
			memcpy(o->val, buf, len);
			o->vlen = len;
		}
		nk_sl_complete(sl, &c, r < 0 ? r : (int32_t)len);
		return;
	}
	struct nk_sl_vm *v = sl->vms[s->vm];
	if (req->chunk >= v->nchunks || v->in_stash[req->chunk]) {
		sl->n_invalid++;
		nk_sl_complete(sl, req, -EINVAL);
		return;
	}
	/* The value goes to offset 0 of the guest's chunk, bounded by both the
	 * requested length and the chunk; the chunk travels back with this. */
	socklen_t len = o->vlen < v->chunk_size ? o->vlen : v->chunk_size;
	int r = sl->ops->getsockopt(sl->st, s->h, o->level, o->name,
				    nk_region_chunk(&v->reg, req->chunk), &len);
	if (r == 0) {
		if (len > v->chunk_size)
			len = v->chunk_size;
		o->vlen = len;
		c.off = 0;
		c.len = len;
	}
	nk_sl_complete(sl, &c, r < 0 ? r : (int32_t)len);
}

/* ---- requests ---- */

static void op_socket(struct nk_sl *sl, const struct nk_nqe *req)
{
	struct nk_sockargs a = req->arg.sock;
	int type = a.type & 0xf; /* strip SOCK_NONBLOCK/SOCK_CLOEXEC */
	int r = 0;

	if (!nk_sl_vm_find(sl, req->vm))
		r = -ENXIO;
	else if (a.domain != AF_INET && a.domain != AF_INET6)
		r = -EAFNOSUPPORT;
	else if (type == SOCK_STREAM) {
		if (a.protocol != 0 && a.protocol != IPPROTO_TCP && a.protocol != IPPROTO_MPTCP)
			r = -EPROTONOSUPPORT;
	} else if (type == SOCK_DGRAM) {
		if (a.protocol != 0 && a.protocol != IPPROTO_UDP)
			r = -EPROTONOSUPPORT;
	} else {
		r = -ESOCKTNOSUPPORT;
	}
	if (r < 0) {
		nk_sl_complete(sl, req, r);
		return;
	}
	struct nk_sl_sock *s = nk_sl_sock_open(sl, req->vm, a.domain, type, a.protocol, &r);
	nk_sl_complete(sl, req, s ? (int32_t)s->id : r);
}

static void op_bind(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct nk_nqe c = *req;
	bool loop = false;
	int r = translate_bind(sl->vms[s->vm], &req->arg.addr, &ss, &len, &loop);
	bool v6only_any = false;
	if (r == 0 && req->arg.addr.family == AF_INET6 &&
	    !memcmp(req->arg.addr.addr, (const uint8_t[16]){ 0 }, 16)) {
		int on = 0;
		socklen_t ol = sizeof(on);
		if (sl->ops->getsockopt(sl->st, s->h, IPPROTO_IPV6, IPV6_V6ONLY, &on, &ol) == 0 && on) {
			/* An IPv6-only wildcard (nginx's "listen [::]" next to
			 * "listen 80"): the VM has no IPv6 address, so it may bind
			 * but must never receive. Bound to [::1]:0, a port no
			 * client is told about; the guest sees [::]:its port. */
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			memset(in6, 0, sizeof(*in6));
			in6->sin6_family = AF_INET6;
			in6->sin6_addr = in6addr_loopback;
			len = sizeof(*in6);
			v6only_any = true;
		}
	}
	if (r == 0)
		r = sl->ops->bind(sl->st, s->h, (struct sockaddr *)&ss, len, false);
	if (r == 0) {
		s->bound = true;
		s->loop = loop;
		if (sl->ops->getsockname(sl->st, s->h, &ss, &len) == 0)
			nk_sl_addr_from_sa(&c.arg.addr, &ss);
		if (loop)
			nk_sl_loop_report(sl->vms[s->vm], &c.arg.addr);
		if (v6only_any) {
			c.arg.addr = req->arg.addr; /* [::]:port as asked */
			if (c.arg.addr.port == 0) /* some port: report the real one */
				c.arg.addr.port = ((struct sockaddr_in6 *)&ss)->sin6_port;
		}
		nk_sl_sock_update(sl, s); /* a bound UDP socket starts receiving */
	}
	nk_sl_complete(sl, &c, r);
}

static void op_listen(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	uint32_t backlog = req->arg.u32[0];
	if (backlog > 65535)
		backlog = 65535;
	int r = s->stream ? nk_sl_autobind(sl, s, false) : -EOPNOTSUPP;
	if (r == 0 && (s->state == NK_SLS_CONNECTING || s->state == NK_SLS_CONNECTED))
		r = -EINVAL;
	if (r == 0)
		r = sl->ops->listen(sl->st, s->h, (int)backlog);
	if (r == 0) {
		s->state = NK_SLS_LISTENING;
		nk_sl_sock_update(sl, s);
	}
	nk_sl_complete(sl, req, r);
}

static void op_connect(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct nk_nqe c = *req;
	int r = 0;

	if (s->state == NK_SLS_CONNECTING)
		r = -EALREADY;
	else if (s->stream && s->state == NK_SLS_CONNECTED)
		r = -EISCONN;
	else if (s->state == NK_SLS_LISTENING)
		r = -EINVAL;
	struct nk_addr to = req->arg.addr;
	bool loop = nk_sl_loop_dest(sl->vms[s->vm], &to);
	if (r == 0 && to.family == AF_INET6 && memcmp(to.addr, v4mapped_prefix, 12) != 0 &&
	    memcmp(to.addr, (const uint8_t[16]){ 0 }, 16) != 0)
		r = -ENETUNREACH; /* the VM has no IPv6 address nor route */
	if (r == 0)
		r = nk_sl_addr_to_sa(&to, &ss, &len);
	if (r == 0)
		r = nk_sl_autobind(sl, s, true);
	if (r == 0)
		r = sl->ops->connect(sl->st, s->h, (struct sockaddr *)&ss, len);
	uint64_t sess = req->off | (uint64_t)req->len << 32;
	if ((r == 0 || r == -EINPROGRESS) && s->stream && sess) {
		/* The peer is NetKernel-managed: open with a session hello. */
		s->sess = sess;
		nk_sl_sess_prefix(s, NK_SESS_NEW, sess, 0);
		s->hin_want = NK_SESS_ACK;
	}
	if (r == -EINPROGRESS) {
		s->state = NK_SLS_CONNECTING;
		s->conn_req = *req;
		s->conn_pending = true;
		nk_sl_sock_update(sl, s);
		return;
	}
	if (r == 0) {
		s->state = s->stream || req->arg.addr.family != AF_UNSPEC ? NK_SLS_CONNECTED
									  : NK_SLS_OPEN;
		if (s->stream)
			s->tx_err = 0;
		if (sl->ops->getsockname(sl->st, s->h, &ss, &len) == 0)
			nk_sl_addr_from_sa(&c.arg.addr, &ss);
		if (loop || s->loop)
			nk_sl_loop_report(sl->vms[s->vm], &c.arg.addr);
		nk_sl_sock_update(sl, s);
	}
	nk_sl_complete(sl, &c, r);
}

static void op_send(struct nk_sl *sl, const struct nk_nqe *req)
{
	struct nk_sl_vm *v = nk_sl_vm_find(sl, req->vm);
	struct nk_nqe c = *req;
	c.op = NK_OP_SEND_DONE;
	c.flags |= NK_NQF_COMPLETION;
	if (!v) {
		c.result = -ENXIO;
	} else if (req->chunk >= v->nchunks || v->in_stash[req->chunk] ||
		   req->off > v->chunk_size || req->len > v->chunk_size - req->off) {
		sl->n_invalid++;
		c.result = -EINVAL;
	} else {
		struct nk_sl_sock *s = nk_sl_sock_get(sl, req);
		int r = s && !s->closing ? 0 : -EBADF;
		/* sendto on an unbound UDP socket: fix the VM's source address. */
		if (r == 0 && !s->stream)
			r = nk_sl_autobind(sl, s, false);
		if (r == 0) {
			nk_sl_sock_send(sl, s, req);
			return;
		}
		c.result = r;
	}
	nk_sl_post(sl, &c); /* the chunk goes back even when the SEND is bad */
}

static void op_grant(struct nk_sl *sl, const struct nk_nqe *req)
{
	struct nk_sl_vm *v = nk_sl_vm_find(sl, req->vm);
	if (!v) {
		sl->n_invalid++;
		nk_sl_log(sl, "GRANT for unknown vm %u dropped", req->vm);
		return;
	}
	uint32_t n = req->len, rx_first = nk_geom_rx_first(&v->reg.g);
	if (n > 8) {
		sl->n_invalid++;
		n = 8;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t ch = req->arg.u32[i];
		/* Only RX chunks, each at most once: we write into them. */
		if (ch < rx_first || ch >= v->nchunks || v->in_stash[ch] || v->nstash >= v->nchunks) {
			sl->n_invalid++;
			continue;
		}
		v->in_stash[ch] = 1;
		v->stash[v->nstash++] = ch;
	}
	nk_sl_vm_wake(sl, v);
}

static void op_rx_credit(struct nk_sl *sl, const struct nk_nqe *req)
{
	struct nk_sl_sock *s = nk_sl_sock_get(sl, req);
	if (!s)
		return; /* credits for a socket already gone: nothing to do */
	s->rx_out -= req->len < s->rx_out ? req->len : s->rx_out;
	nk_sl_sock_update(sl, s);
}

void nk_sl_dispatch(struct nk_sl *sl, const struct nk_nqe *nqe)
{
	struct nk_sl_sock *s;

	switch (nqe->op) {
	case NK_OP_SOCKET:
		op_socket(sl, nqe);
		return;
	case NK_OP_SEND:
		op_send(sl, nqe);
		return;
	case NK_OP_GRANT:
		op_grant(sl, nqe);
		return;
	case NK_OP_RX_CREDIT:
		op_rx_credit(sl, nqe);
		return;
	case NK_OP_CLOSE:
		s = nk_sl_sock_get(sl, nqe);
		if (s && (nqe->flags & NK_NQF_ABORT)) {
			/* its VM is gone: nothing will read or finish this stream */
			s->abort = true;
			nk_sl_sock_drop(sl, s, true);
		} else if (s && !s->closing) {
			nk_sl_sock_close(sl, s);
		} else if (!s) {
			/* Unknown: answer anyway so the CE's table converges. */
			struct nk_nqe c = { .op = NK_OP_CLOSED, .vm = nqe->vm, .sock = nqe->sock,
					    .cookie = nqe->cookie, .chunk = NK_NO_CHUNK };
			nk_sl_post(sl, &c);
		}
		return;
	case NK_OP_MIGRATE:
		nk_sl_op_migrate(sl, nqe);
		return;
	case NK_OP_MIGRATE_OUT:
		s = nk_sl_sock_get(sl, nqe);
		if (s && !s->closing && s->stream)
			nk_sl_op_migrate_out(sl, s);
		return;
	case NK_OP_BIND:
	case NK_OP_LISTEN:
	case NK_OP_CONNECT:
	case NK_OP_SHUTDOWN:
	case NK_OP_SETSOCKOPT:
	case NK_OP_GETSOCKOPT:
		break;
	default:
		sl->n_invalid++;
		nk_sl_log(sl, "unexpected op %u on the down ring ignored", nqe->op);
		return;
	}
	s = nk_sl_sock_get(sl, nqe);
	if (!s || s->closing) {
		nk_sl_complete(sl, nqe, -EBADF);
		return;
	}
	switch (nqe->op) {
	case NK_OP_BIND: op_bind(sl, s, nqe); break;
	case NK_OP_LISTEN: op_listen(sl, s, nqe); break;
	case NK_OP_CONNECT: op_connect(sl, s, nqe); break;
	case NK_OP_SHUTDOWN: nk_sl_sock_shutdown(sl, s, nqe); break;
	case NK_OP_SETSOCKOPT: op_setsockopt(sl, s, nqe); break;
	case NK_OP_GETSOCKOPT: op_getsockopt(sl, s, nqe); break;
	}
}
