/* SPDX-License-Identifier: MIT */
/*
 * gl_opt.c - socket options, names, fcntl and ioctl on NetKernel sockets.
 *
 * Options that describe the socket object itself (type, domain, errors,
 * timeouts) are answered locally: the host has nothing to add and a round
 * trip would only cost latency. Everything else is forwarded to the NSM's
 * real socket, value inline (<= NK_OPT_INLINE bytes) or, for large
 * getsockopt values such as TCP_INFO, through one of our TX chunks.
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>

/* Copy a local value out to the caller's (val, *len), as getsockopt does:
 * truncated to *len, *len set to what was written; EFAULT for bad pointers. */
static int nk_gl_put_val(void *val, socklen_t *len, const void *v, socklen_t size)
{
	socklen_t ulen;
	if (!len)
		return -EINVAL;
	if (nk_gl_copy_in(&ulen, len, sizeof(ulen)) < 0)
		return -EFAULT;
	if (ulen > 0x7fffffff)
		return -EINVAL;
	socklen_t n = ulen < size ? ulen : size;
	if (val && nk_gl_copy_out(val, v, n) < 0)
		return -EFAULT;
	return nk_gl_copy_out(len, &n, sizeof(n));
}

static int nk_gl_put_int(void *val, socklen_t *len, int v)
{
	return nk_gl_put_val(val, len, &v, sizeof(v));
}

static int nk_gl_get_local(struct nk_gl_sock *s, int name, void *val, socklen_t *len)
{
	switch (name) {
	case SO_ERROR: {
		/* A failed connect's own error first; either way the error
		 * counts as reported, so POLLERR stops. */
		int e = s->so_error;
		s->so_error = 0;
		uint32_t seq = __atomic_load_n(&s->slot->err_seq, __ATOMIC_ACQUIRE);
		int32_t se = __atomic_load_n(&s->slot->error, __ATOMIC_RELAXED);
		if (!e && seq != s->seen_err_seq && se > 0 && se < 4096)
			e = se;
		s->seen_err_seq = seq;
		if (s->conn == NK_GL_CONN_FAILED)
			s->conn = NK_GL_CONN_NONE; /* a new connect may be tried */
		s->ev_seq++;
		return nk_gl_put_int(val, len, e);
	}
	case SO_TYPE: return nk_gl_put_int(val, len, s->type);
	case SO_DOMAIN: return nk_gl_put_int(val, len, s->domain);
	case SO_PROTOCOL:
		return nk_gl_put_int(val, len, s->protocol ? s->protocol :
					       s->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
	case SO_ACCEPTCONN: return nk_gl_put_int(val, len, s->listening);
	case SO_RCVTIMEO:
	case SO_SNDTIMEO: {
		struct timeval tv = name == SO_RCVTIMEO ? s->rcvtimeo : s->sndtimeo;
		return nk_gl_put_val(val, len, &tv, sizeof(tv));
	}
	}
	return 1; /* not local */
}

int nk_gl_getsockopt(struct nk_gl_sock *s, int level, int name, void *val, socklen_t *len)
{
	if (!len)
		return -EFAULT;
	if (level == SOL_SOCKET) {
		int r = nk_gl_get_local(s, name, val, len);
		if (r <= 0)
			return r;
	}
	socklen_t ulen;
	if (nk_gl_copy_in(&ulen, len, sizeof(ulen)) < 0)
		return -EFAULT;
	if (ulen > 0x7fffffff)
		return -EINVAL;
	if (nk_gl_slot_bad(s))
		return (s->corrupt || s->stale) ? -EIO : -ECONNRESET;
	struct nk_nqe q = { .op = NK_OP_GETSOCKOPT, .sock = s->id, .chunk = NK_NO_CHUNK }, resp;
	uint32_t want = ulen, cs = nk_gl.reg.g.chunk_size;
	q.arg.opt.level = level;
	q.arg.opt.name = name;
	q.arg.opt.vlen = want < NK_OPT_INLINE ? want : NK_OPT_INLINE;
	uint32_t chunk = NK_NO_CHUNK;
	/* Large values come back in a chunk of ours; if none is free now,
	 * fall back to the inline (truncated) value rather than block. */
	if (want > NK_OPT_INLINE && nk_pool_get(&nk_gl.pool, &chunk)) {
		q.chunk = chunk;
		q.arg.opt.vlen = want < cs ? want : cs;
		memset(nk_region_chunk(&nk_gl.reg, chunk), 0, q.arg.opt.vlen);
	}
	uint32_t asked = q.arg.opt.vlen;
	int e = nk_gl_request(&q, &resp);
	if (e == 0 && resp.result < 0)
		e = resp.result > -4096 ? resp.result : -EIO;
	if (e == 0 && (uint32_t)resp.result > asked)
		e = -EIO; /* longer than the room we gave: protocol violation */
	if (e == 0) {
		socklen_t n = (socklen_t)resp.result;
		if (val && nk_gl_copy_out(val, chunk != NK_NO_CHUNK ? nk_region_chunk(&nk_gl.reg, chunk)
								    : resp.arg.opt.val, n) < 0)
			e = -EFAULT;
		else if (nk_gl_copy_out(len, &n, sizeof(n)) < 0)
			e = -EFAULT;
	}
	/* The chunk came back with the completion (or never left us). */
	if (chunk != NK_NO_CHUNK && (e != -ECONNRESET || nk_gl.state == NK_GL_ATTACHED))
		(void)nk_pool_put(&nk_gl.pool, chunk);
	return e;
}

static int nk_gl_set_timeo(struct timeval *dst, const void *val, socklen_t len)
{
	struct timeval tv;
	if (!val || len < sizeof(tv))
		return -EINVAL;
	if (nk_gl_copy_in(&tv, val, sizeof(tv)) < 0)
		return -EFAULT;
	if (tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -EDOM;
	if (tv.tv_sec < 0)
		tv.tv_sec = tv.tv_usec = 0; /* Linux: negative = no timeout */
	*dst = tv;
	return 0;
}

/* Options a server may set around every response (nginx's tcp_nopush sets
 * TCP_CORK before and clears it after each one), which Linux cannot refuse
 * on a stream socket given an int: any int is a valid value and the socket's
 * state does not matter. These return 0 at once and their SETSOCKOPT goes
 * without waiting for the completion, saving two round trips through the
 * CoreEngine and the NSM per response. Order is kept: a later getsockopt or
 * SEND follows it through the same rings. Every NSM's stack must accept
 * them on stream sockets (the kernel stacks do; docs/ARCHITECTURE.md); a
 * refusal anyway is counted in nk_gl.async_failed. */
static bool nk_gl_opt_async(const struct nk_gl_sock *s, int level, int name, socklen_t len)
{
	if (s->type != SOCK_STREAM || len < sizeof(int))
		return false;
	if (level == IPPROTO_TCP)
		return name == TCP_NODELAY || name == TCP_CORK;
	return level == SOL_SOCKET && name == SO_KEEPALIVE;
}

int nk_gl_setsockopt(struct nk_gl_sock *s, int level, int name, const void *val, socklen_t len)
{
	if (level == SOL_SOCKET && name == SO_RCVTIMEO)
		return nk_gl_set_timeo(&s->rcvtimeo, val, len);
	if (level == SOL_SOCKET && name == SO_SNDTIMEO)
		return nk_gl_set_timeo(&s->sndtimeo, val, len);
	if (level == SOL_SOCKET && (name == SO_TYPE || name == SO_DOMAIN || name == SO_PROTOCOL ||
				    name == SO_ERROR || name == SO_ACCEPTCONN))
		return -ENOPROTOOPT; /* read-only, as in Linux */
	if (len > NK_OPT_INLINE)
		return -EINVAL; /* no option GuestLib forwards needs more */
	if (len && !val)
		return -EFAULT;
	if (nk_gl_slot_bad(s))
		return (s->corrupt || s->stale) ? -EIO : -ECONNRESET;
	struct nk_nqe q = { .op = NK_OP_SETSOCKOPT, .sock = s->id, .chunk = NK_NO_CHUNK }, resp;
	q.arg.opt.level = level;
	q.arg.opt.name = name;
	q.arg.opt.vlen = len;
	if (len && nk_gl_copy_in(q.arg.opt.val, val, len) < 0)
		return -EFAULT;
	if (nk_gl_opt_async(s, level, name, len)) {
		/* Drain first: completions nobody waits for must not pile up
		 * in the down ring (NK_GL_ASYNC_MAX bounds them). */
		nk_gl_drain();
		if (nk_gl.async_out < NK_GL_ASYNC_MAX) {
			q.flags = NK_NQF_ASYNC;
			q.cookie = nk_gl_cookie();
			int e = nk_gl_post(&q);
			if (e == 0)
				nk_gl.async_out++;
			return e;
		}
	}
	int e = nk_gl_request(&q, &resp);
	if (e == 0 && resp.result < 0)
		e = resp.result > -4096 ? resp.result : -EIO;
	return e < 0 ? e : 0;
}

int nk_gl_getname(struct nk_gl_sock *s, bool peer, struct sockaddr *sa, socklen_t *len)
{
	if (!len)
		return -EFAULT;
	if (nk_gl_slot_bad(s) && (s->corrupt || s->stale))
		return -EIO;
	struct nk_addr a;
	/* Copy first: the host may rewrite the line while we convert it. */
	memcpy(&a, peer ? &s->slot->peer : &s->slot->local, sizeof(a));
	if (peer && a.family == 0)
		return -ENOTCONN;
	return nk_gl_addr_to_sa(s, &a, sa, len, false);
}

int nk_gl_fcntl(struct nk_gl_sock *s, int fd, int cmd, unsigned long arg)
{
	switch (cmd) {
	case F_GETFL:
		return O_RDWR | (s->nonblock ? O_NONBLOCK : 0);
	case F_SETFL:
		/* O_NONBLOCK is GuestLib state; the eventfd stays non-blocking. */
		s->nonblock = (arg & O_NONBLOCK) != 0;
		s->ev_seq++;
		return 0;
	case F_GETFD:
		return nk_gl_fd_cloexec(fd) ? FD_CLOEXEC : 0;
	case F_SETFD:
		/* The reserved fd stays close-on-exec whatever the app asks: an
		 * exec'd program must never inherit it as a plain eventfd
		 * (it would read and write the counter, silently). The app's
		 * view is kept in the fd table. */
		nk_gl_fd_set_cloexec(fd, (arg & FD_CLOEXEC) != 0);
		return 0;
	default: {
		/* The rest act on the reserved fd itself. */
		int r = REAL(fcntl)(fd, cmd, arg);
		return r < 0 ? -errno : r;
	}
	}
}

int nk_gl_ioctl(struct nk_gl_sock *s, unsigned long req, void *arg)
{
	switch (req) {
	case FIONBIO: {
		int v;
		if (!arg)
			return -EFAULT;
		memcpy(&v, arg, sizeof(v));
		s->nonblock = v != 0;
		return 0;
	}
	case FIONREAD: { /* = SIOCINQ */
		if (!arg)
			return -EFAULT;
		if (s->listening)
			return -EINVAL;
		int v = (int)nk_gl_rx_bytes(s);
		memcpy(arg, &v, sizeof(v));
		return 0;
	}
	case SIOCOUTQ: {
		if (!arg)
			return -EFAULT;
		int v = (int)(s->tx_inflight * nk_gl.reg.g.chunk_size);
		memcpy(arg, &v, sizeof(v));
		return 0;
	}
	case SIOCATMARK: {
		int v = 0;
		if (!arg)
			return -EFAULT;
		memcpy(arg, &v, sizeof(v));
		return 0;
	}
	}
	return -ENOTTY;
}
