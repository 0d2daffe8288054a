/* SPDX-License-Identifier: MIT */
/*
 * gl_sock.c - the control path: socket, bind, listen, connect, accept,
 * shutdown, and address conversion.
 *
 * Every function runs under nk_gl.lock with a reference on the socket.
 */
#include "nk_gl.h"

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the slot lock, shared by the processes of a VM ---- */

/* The word holds the owner's pid, so a process that died holding it (killed
 * between lock and unlock) does not wedge its siblings for ever. */
void nk_gl_slot_lock(struct nk_sock_slot *sl)
{
	uint32_t me = nk_gl.pid;
	for (unsigned i = 0;; i++) {
		uint32_t cur = 0;
		if (__atomic_compare_exchange_n(&sl->lock, &cur, me, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		if (i < 100)
			continue;
		if (cur != me && cur != 0 && (cur > 0x7fffffffu ||
		    (kill((pid_t)cur, 0) < 0 && errno == ESRCH))) {
			/* holder is gone (or the word is garbage): take over */
			if (__atomic_compare_exchange_n(&sl->lock, &cur, me, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return;
		}
		sched_yield();
	}
}

void nk_gl_slot_unlock(struct nk_sock_slot *sl)
{
	__atomic_store_n(&sl->lock, 0, __ATOMIC_RELEASE);
}

/* ---- addresses ---- */

int nk_gl_sa_to_addr(const struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len,
		     struct nk_addr *out, bool hot)
{
	int (*cp_in)(void *, const void *, size_t) = hot ? nk_gl_ucopy_in : nk_gl_copy_in;
	memset(out, 0, sizeof(*out));
	if (!sa || len < (socklen_t)sizeof(sa_family_t))
		return -EINVAL;
	sa_family_t fam;
	/* The caller's buffer may be unaligned, or not mapped (EFAULT). */
	if (cp_in(&fam, sa, sizeof(fam)) < 0)
		return -EFAULT;
	if (fam == AF_INET) {
		struct sockaddr_in in;
		if (len < (socklen_t)sizeof(in))
			return -EINVAL;
		/* An AF_INET6 socket accepts AF_INET only as ::ffff:a.b.c.d. */
		if (s->domain != AF_INET)
			return -EAFNOSUPPORT;
		if (cp_in(&in, sa, sizeof(in)) < 0)
			return -EFAULT;
		out->family = AF_INET;
		out->port = in.sin_port;
		memcpy(out->addr, &in.sin_addr, 4);
		return 0;
	}
	if (fam == AF_INET6) {
		struct sockaddr_in6 in6;
		memset(&in6, 0, sizeof(in6));
		if (len < 24) /* SIN6_LEN_RFC2133: no scope id, as Linux accepts */
			return -EINVAL;
		if (s->domain != AF_INET6)
			return -EAFNOSUPPORT;
		if (cp_in(&in6, sa, len < (socklen_t)sizeof(in6) ? len : sizeof(in6)) < 0)
			return -EFAULT;
		out->family = AF_INET6;
		out->port = in6.sin6_port;
		out->flowinfo = in6.sin6_flowinfo;
		memcpy(out->addr, &in6.sin6_addr, 16);
		out->scope_id = in6.sin6_scope_id;
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* a comes from shared memory: the caller copied it; validate before use.
 * Converts between the families so an AF_INET6 socket sees v4-mapped
 * addresses and an AF_INET socket plain ones. */
int nk_gl_addr_to_sa(const struct nk_gl_sock *s, const struct nk_addr *a,
		     struct sockaddr *sa, socklen_t *len, bool hot)
{
	int (*cp_in)(void *, const void *, size_t) = hot ? nk_gl_ucopy_in : nk_gl_copy_in;
	int (*cp_out)(void *, const void *, size_t) = hot ? nk_gl_ucopy_out : nk_gl_copy_out;
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	union { struct sockaddr_in in; struct sockaddr_in6 in6; } u;
	socklen_t n, ulen;

	if (cp_in(&ulen, len, sizeof(ulen)) < 0)
		return -EFAULT;
	if (ulen > 0x7fffffff) /* negative int in disguise */
		return -EINVAL;
	memset(&u, 0, sizeof(u));
	if (a->family != AF_INET && a->family != AF_INET6 && a->family != 0)
		return -EINVAL;
	if (s->domain == AF_INET) {
		u.in.sin_family = AF_INET;
		if (a->family == AF_INET) {
			u.in.sin_port = a->port;
			memcpy(&u.in.sin_addr, a->addr, 4);
		} else if (a->family == AF_INET6) {
			if (memcmp(a->addr, v4mapped, 12) != 0)
				return -EINVAL;
			u.in.sin_port = a->port;
			memcpy(&u.in.sin_addr, a->addr + 12, 4);
		}
		n = sizeof(u.in);
	} else {
		u.in6.sin6_family = AF_INET6;
		if (a->family == AF_INET) {
			u.in6.sin6_port = a->port;
			memcpy(&u.in6.sin6_addr, v4mapped, 12);
			memcpy((uint8_t *)&u.in6.sin6_addr + 12, a->addr, 4);
		} else if (a->family == AF_INET6) {
			u.in6.sin6_port = a->port;
			u.in6.sin6_flowinfo = a->flowinfo;
			memcpy(&u.in6.sin6_addr, a->addr, 16);
			u.in6.sin6_scope_id = a->scope_id;
		}
		n = sizeof(u.in6);
	}
	if (sa && cp_out(sa, &u, ulen < n ? ulen : n) < 0)
		return -EFAULT;
	/* as the kernel: the full length, even when truncated */
	return cp_out(len, &n, sizeof(n));
}

/* ---- socket ---- */

int nk_gl_socket(int domain, int type, int protocol)
{
	int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	nk_gl_lock();
	int e = nk_gl_attach();
	if (e < 0)
		goto out;
	int fd = nk_gl_reserve_fd();
	if (fd < 0) {
		e = fd;
		goto out;
	}
	struct nk_nqe q = { .op = NK_OP_SOCKET, .sock = NK_NO_SOCK, .chunk = NK_NO_CHUNK };
	struct nk_nqe resp;
	q.arg.sock = (struct nk_sockargs){ .domain = domain, .type = base, .protocol = protocol };
	e = nk_gl_request(&q, &resp);
	if (e == 0 && resp.result < 0)
		e = (resp.result > -4096) ? resp.result : -EIO;
	if (e == 0 && (uint32_t)resp.result >= nk_gl.reg.g.nsocks)
		e = -EIO; /* a socket id we cannot address: protocol violation */
	if (e < 0) {
		REAL(close)(fd);
		goto out;
	}
	struct nk_gl_sock *s = nk_gl_sock_new((uint32_t)resp.result, domain, base, protocol);
	if (!s || nk_gl_fd_set(fd, s) < 0) {
		free(s);
		struct nk_nqe c = { .op = NK_OP_CLOSE, .sock = (uint32_t)resp.result,
				    .chunk = NK_NO_CHUNK };
		(void)nk_gl_post(&c);
		REAL(close)(fd);
		e = -ENOMEM;
		goto out;
	}
	s->nonblock = (flags & SOCK_NONBLOCK) != 0;
	nk_gl_fd_set_cloexec(fd, (flags & SOCK_CLOEXEC) != 0);
	e = fd;
out:
	nk_gl_unlock();
	return e;
}

/* result of a synchronous op on s */
static int nk_gl_sock_op(struct nk_gl_sock *s, struct nk_nqe *q, struct nk_nqe *resp)
{
	if (nk_gl_slot_bad(s))
		return s->corrupt ? -EIO : (s->stale ? -EIO : -ECONNRESET);
	q->sock = s->id;
	q->chunk = NK_NO_CHUNK;
	int e = nk_gl_request(q, resp);
	if (e < 0)
		return e;
	if (resp->result < 0)
		return resp->result > -4096 ? resp->result : -EIO;
	return resp->result;
}

int nk_gl_bind(struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len)
{
	struct nk_nqe q = { .op = NK_OP_BIND }, resp;
	int e = nk_gl_sa_to_addr(s, sa, len, &q.arg.addr, false);
	if (e < 0)
		return e;
	e = nk_gl_sock_op(s, &q, &resp);
	return e < 0 ? e : 0;
}

int nk_gl_listen(struct nk_gl_sock *s, int backlog)
{
	struct nk_nqe q = { .op = NK_OP_LISTEN }, resp;
	if (s->conn != NK_GL_CONN_NONE)
		return -EINVAL;
	q.arg.u32[0] = backlog < 0 ? 0 : (uint32_t)backlog;
	int e = nk_gl_sock_op(s, &q, &resp);
	if (e < 0)
		return e;
	s->listening = true;
	s->ev_seq++;
	return 0;
}

static bool nk_gl_conn_settled(void *arg)
{
	struct nk_gl_sock *s = arg;
	return s->conn != NK_GL_CONN_PENDING || s->nfds == 0;
}

int nk_gl_connect(struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len)
{
	if (nk_gl_slot_bad(s))
		return s->corrupt || s->stale ? -EIO : -ECONNRESET;
	if (s->listening)
		return -EISCONN;
	if (s->conn == NK_GL_CONN_DONE)
		return -EISCONN;
	if (s->conn == NK_GL_CONN_PENDING) {
		if (s->nonblock)
			return -EALREADY;
	} else {
		struct nk_nqe q = { .op = NK_OP_CONNECT, .sock = s->id, .chunk = NK_NO_CHUNK };
		int e = nk_gl_sa_to_addr(s, sa, len, &q.arg.addr, false);
		if (e < 0)
			return e;
		/* Always asynchronous underneath: a blocking connect that is
		 * interrupted or times out keeps going, as in the kernel. */
		struct nk_gl_req *r = &s->conn_req;
		memset(r, 0, sizeof(*r));
		r->op = NK_OP_CONNECT;
		r->cookie = q.cookie = nk_gl_cookie();
		r->sock = s;
		s->refs++;
		s->conn = NK_GL_CONN_PENDING;
		s->so_error = 0;
		r->next = nk_gl.reqs;
		nk_gl.reqs = r;
		e = nk_gl_post(&q);
		if (e < 0) {
			for (struct nk_gl_req **pp = &nk_gl.reqs; *pp; pp = &(*pp)->next)
				if (*pp == r) {
					*pp = r->next;
					break;
				}
			s->conn = NK_GL_CONN_NONE;
			s->refs--;
			return e;
		}
		if (s->nonblock)
			return s->conn == NK_GL_CONN_DONE ? 0 : -EINPROGRESS;
	}
	struct timespec dl;
	bool has_dl = nk_gl_timeval_deadline(&s->sndtimeo, &dl);
	int w = nk_gl_wait_io(nk_gl_conn_settled, NULL, s, has_dl ? &dl : NULL);
	if (w == 0)
		return -EINPROGRESS; /* SO_SNDTIMEO expired, as Linux */
	if (w < 0)
		return w;
	if (s->nfds == 0)
		return -EBADF;
	if (s->conn == NK_GL_CONN_FAILED) {
		int e = s->so_error ? s->so_error : ECONNREFUSED;
		s->so_error = 0;
		s->seen_err_seq = __atomic_load_n(&s->slot->err_seq, __ATOMIC_ACQUIRE);
		return -e;
	}
	return 0;
}

/* ---- accept ---- */

static bool nk_gl_rx_nonempty(void *arg)
{
	struct nk_gl_sock *s = arg;
	uint32_t tail = __atomic_load_n(&s->slot->rx_tail, __ATOMIC_ACQUIRE);
	return tail != __atomic_load_n(&s->slot->rx_head, __ATOMIC_RELAXED) || s->nfds == 0 ||
	       __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE) == NK_SS_CLOSED;
}

/* A blocked accept() also returns once the listener is shut down for
 * reading, by any thread (Linux: EINVAL). */
static bool nk_gl_accept_wakeup(void *arg)
{
	return nk_gl_rx_nonempty(arg) || ((struct nk_gl_sock *)arg)->shut_rd;
}

/* Pop the head of a listener's rx ring. Returns the accepted id (>= 0),
 * -EAGAIN when empty, or -errno for an ERR entry / corrupt ring. */
static int64_t nk_gl_pop_accept(struct nk_gl_sock *s)
{
	struct nk_sock_slot *sl = s->slot;
	int64_t ret;
	nk_gl_slot_lock(sl);
	uint32_t tail = __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE);
	uint32_t head = __atomic_load_n(&sl->rx_head, __ATOMIC_RELAXED);
	if (tail - head > NK_SOCK_RX_ENTRIES) {
		s->corrupt = true;
		ret = -EIO;
	} else if (tail == head) {
		ret = -EAGAIN;
	} else {
		struct nk_rxent e;
		memcpy(&e, &sl->rx[head & (NK_SOCK_RX_ENTRIES - 1)], sizeof(e));
		if (e.type == NK_RX_ACCEPT && e.val < nk_gl.reg.g.nsocks)
			ret = e.val;
		else if (e.type == NK_RX_ERR)
			ret = (e.val > 0 && e.val < 4096) ? -(int64_t)e.val : -EIO;
		else
			ret = -EPROTO; /* anything else on a listener: skip it */
		__atomic_store_n(&sl->head_off, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&sl->rx_head, head + 1, __ATOMIC_RELEASE);
	}
	nk_gl_slot_unlock(sl);
	if (ret != -EAGAIN && ret != -EIO) {
		/* Return the entry; for ACCEPT this also claims the connection
		 * for our channel. */
		struct nk_nqe q = { .op = NK_OP_RX_DONE, .sock = s->id, .chunk = NK_NO_CHUNK };
		if (ret >= 0) {
			q.flags = NK_NQF_ACCEPT;
			q.arg.u32[0] = (uint32_t)ret;
		}
		int e = nk_gl_post(&q);
		if (e < 0)
			ret = e;
	}
	return ret;
}

int nk_gl_accept(struct nk_gl_sock *s, struct sockaddr *sa, socklen_t *len, int flags)
{
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	if (!s->listening || s->shut_rd)
		return -EINVAL; /* a listener shut down accepts no more, as Linux */
	if (sa && (!len || *len > 0x7fffffff))
		return -EINVAL;
	struct timespec dl;
	bool has_dl = nk_gl_timeval_deadline(&s->rcvtimeo, &dl);
	for (;;) {
		if (nk_gl_slot_bad(s))
			return s->corrupt || s->stale ? -EIO : -ECONNRESET;
		if (s->nfds == 0)
			return -EBADF;
		if (s->shut_rd)
			return -EINVAL; /* shut down while we waited */
		/* The fd first: running out of fds must not lose a connection. */
		int fd = nk_gl_reserve_fd();
		if (fd < 0)
			return fd;
		int64_t id = nk_gl_pop_accept(s);
		if (id >= 0) {
			struct nk_gl_sock *c = nk_gl_sock_new((uint32_t)id, s->domain, s->type,
							      s->protocol);
			if (!c || nk_gl_fd_set(fd, c) < 0) {
				free(c);
				struct nk_nqe q = { .op = NK_OP_CLOSE, .sock = (uint32_t)id,
						    .chunk = NK_NO_CHUNK };
				(void)nk_gl_post(&q);
				REAL(close)(fd);
				return -ENOMEM;
			}
			c->conn = NK_GL_CONN_DONE;
			c->nonblock = (flags & SOCK_NONBLOCK) != 0;
			nk_gl_fd_set_cloexec(fd, (flags & SOCK_CLOEXEC) != 0);
			if (sa) {
				struct nk_addr peer;
				memcpy(&peer, &c->slot->peer, sizeof(peer));
				if (nk_gl_addr_to_sa(c, &peer, sa, len, false) < 0)
					*len = 0; /* garbage peer: report none rather than lie */
			}
			return fd;
		}
		REAL(close)(fd);
		if (id == -EPROTO)
			continue;
		if (id != -EAGAIN)
			return (int)id;
		if (s->nonblock)
			return -EAGAIN;
		int w = nk_gl_wait_io(nk_gl_accept_wakeup, NULL, s, has_dl ? &dl : NULL);
		if (w == 0)
			return -EAGAIN;
		if (w < 0)
			return w;
		/* A listener the host closed (NSM lost) never gets another
		 * connection: report why instead of spinning on it. */
		struct nk_sock_slot *sl = s->slot;
		if (__atomic_load_n(&sl->state, __ATOMIC_ACQUIRE) == NK_SS_CLOSED &&
		    __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE) ==
			    __atomic_load_n(&sl->rx_head, __ATOMIC_RELAXED)) {
			int32_t err = __atomic_load_n(&sl->error, __ATOMIC_RELAXED);
			return (err > 0 && err < 4096) ? -err : -EINVAL;
		}
	}
}

/* ---- shutdown ---- */

int nk_gl_shutdown(struct nk_gl_sock *s, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	uint32_t st = __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE);
	if (!s->listening && st != NK_SS_CONNECTED && s->conn != NK_GL_CONN_DONE)
		return -ENOTCONN;
	struct nk_nqe q = { .op = NK_OP_SHUTDOWN }, resp;
	q.arg.u32[0] = (uint32_t)how;
	int e = nk_gl_sock_op(s, &q, &resp);
	if (e < 0)
		return e;
	if (how != SHUT_WR)
		s->shut_rd = true;
	if (how != SHUT_RD)
		s->shut_wr = true;
	s->ev_seq++;
	/* Threads of ours blocked in accept() or recv() on it return now,
	 * as on Linux; no NQE from the host would wake them. */
	if (how != SHUT_WR)
		nk_gl_wake_sleepers();
	return 0;
}
