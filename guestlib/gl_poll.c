/* SPDX-License-Identifier: MIT */
/*
 * gl_poll.c - readiness of NetKernel sockets, poll/ppoll and select/pselect
 * over any mix of NetKernel sockets and kernel fds.
 *
 * Readiness lives in the socket slot (shared memory) plus a little local
 * state; it is computed, never stored. Kernel fds go to the real poll: first
 * with a zero timeout, then, when nothing at all is ready, together with our
 * down doorbell in the single sleeping poll of nk_gl_wait().
 */
#include "nk_gl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What Linux's tcp_poll would say, from the slot. */
uint32_t nk_gl_readiness(struct nk_gl_sock *s)
{
	if (s->stale || s->corrupt || nk_gl.state != NK_GL_ATTACHED)
		return POLLERR | POLLHUP;
	struct nk_sock_slot *sl = s->slot;
	uint32_t tail = __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE);
	uint32_t head = __atomic_load_n(&sl->rx_head, __ATOMIC_RELAXED);
	uint32_t st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
	uint32_t fl = __atomic_load_n(&sl->flags, __ATOMIC_ACQUIRE);
	uint32_t seq = __atomic_load_n(&sl->err_seq, __ATOMIC_ACQUIRE);
	uint32_t ev = 0;

	if (tail - head > NK_SOCK_RX_ENTRIES)
		return POLLERR | POLLHUP; /* corrupt ring: let the app find EIO */
	if (seq != s->seen_err_seq || s->so_error)
		ev |= POLLERR;
	if (s->listening) {
		if (tail != head)
			ev |= POLLIN | POLLRDNORM;
		if (st == NK_SS_CLOSED)
			ev |= POLLIN | POLLHUP;
		return ev;
	}
	bool closed = st == NK_SS_CLOSED || (fl & NK_SF_RESET);
	if (tail != head || closed || s->eof || (fl & NK_SF_RX_FIN) || s->shut_rd)
		ev |= POLLIN | POLLRDNORM;
	if ((fl & NK_SF_RX_FIN) || s->eof || closed || s->shut_rd)
		ev |= POLLRDHUP;
	if (closed || ((fl & NK_SF_RX_FIN || s->eof) && s->shut_wr))
		ev |= POLLHUP;
	bool connected = st == NK_SS_CONNECTED || s->conn == NK_GL_CONN_DONE;
	if (closed || s->shut_wr || s->conn == NK_GL_CONN_FAILED || s->send_err) {
		/* writes fail at once: Linux reports them writable */
		ev |= POLLOUT | POLLWRNORM;
	} else if (connected) {
		if (nk_gl_writable(s))
			ev |= POLLOUT | POLLWRNORM;
	} else if (s->conn == NK_GL_CONN_NONE) {
		ev |= POLLOUT | POLLHUP; /* a fresh socket: TCP_CLOSE */
	}
	if (s->conn == NK_GL_CONN_FAILED)
		ev |= POLLHUP;
	return ev;
}

/* ---- poll ---- */

struct nk_gl_pollctx {
	struct pollfd *fds;
	nfds_t n;
	struct nk_gl_sock **socks; /* per entry: the socket or NULL */
};

static int nk_gl_poll_scan(struct nk_gl_pollctx *c)
{
	int ready = 0;
	for (nfds_t i = 0; i < c->n; i++) {
		if (!c->socks[i])
			continue;
		uint32_t ev = nk_gl_readiness(c->socks[i]);
		c->fds[i].revents = (short)(ev & ((uint16_t)c->fds[i].events | POLLERR | POLLHUP));
		ready += c->fds[i].revents != 0;
	}
	return ready;
}

static bool nk_gl_poll_check(void *arg)
{
	struct nk_gl_pollctx *c = arg;
	for (nfds_t i = 0; i < c->n; i++)
		if (c->socks[i] && (nk_gl_readiness(c->socks[i]) &
				    ((uint16_t)c->fds[i].events | POLLERR | POLLHUP)))
			return true;
	return false;
}

/* POLLOUT asked of a socket without TX room: returned chunks may give it. */
static bool nk_gl_poll_needs_tx(void *arg)
{
	struct nk_gl_pollctx *c = arg;
	for (nfds_t i = 0; i < c->n; i++)
		if (c->socks[i] && (c->fds[i].events & POLLOUT) && !nk_gl_writable(c->socks[i]))
			return true;
	return false;
}

/* *handled = false: no NetKernel fd in the set; the caller uses real poll. */
int nk_gl_poll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
	       const sigset_t *mask, bool *handled)
{
	nfds_t nnk = 0;
	*handled = false;
	for (nfds_t i = 0; i < n; i++)
		nnk += nk_gl_fd_peek(fds[i].fd) != NULL;
	if (nnk == 0)
		return 0;
	*handled = true;
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L))
		return -EINVAL;

	struct nk_gl_sock **socks = calloc(n, sizeof(*socks));
	struct pollfd *kfds = calloc(n - nnk + 1, sizeof(*kfds));
	nfds_t *kidx = calloc(n - nnk + 1, sizeof(*kidx));
	int ret;
	if (!socks || !kfds || !kidx) {
		ret = -ENOMEM;
		goto out_free;
	}
	nk_gl_lock();
	nfds_t nk = 0;
	for (nfds_t i = 0; i < n; i++) {
		fds[i].revents = 0;
		struct nk_gl_sock *s = nk_gl_fd_peek(fds[i].fd);
		if (s) {
			s->refs++; /* a concurrent close must not free it */
			socks[i] = s;
		} else {
			kfds[nk] = fds[i];
			kidx[nk++] = i;
		}
	}
	struct nk_gl_pollctx c = { .fds = fds, .n = n, .socks = socks };
	struct timespec dl;
	if (ts) {
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += ts->tv_sec;
		dl.tv_nsec += ts->tv_nsec;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	for (;;) {
		nk_gl_drain();
		ret = nk_gl_poll_scan(&c);
		int kr = nk ? REAL(poll)(kfds, nk, 0) : 0;
		if (kr < 0) {
			ret = -errno;
			break;
		}
		for (nfds_t k = 0; k < nk; k++)
			fds[kidx[k]].revents = kfds[k].revents;
		ret += kr;
		if (ret > 0 || (ts && ts->tv_sec == 0 && ts->tv_nsec == 0))
			break;
		int w = nk_gl_wait(nk_gl_poll_check, nk_gl_poll_needs_tx, &c, ts ? &dl : NULL, kfds, nk, mask);
		if (w < 0 && w != -ECONNRESET) {
			ret = w;
			break;
		}
		if (w == 0) {
			/* timed out: one last look so a late event is not lost */
			ret = nk_gl_poll_scan(&c);
			if (ret == 0)
				break;
		}
		/* ECONNRESET: the next scan reports every NK fd as ERR|HUP */
	}
	for (nfds_t i = 0; i < n; i++)
		if (socks[i])
			nk_gl_sock_unref(socks[i]);
	nk_gl_unlock();
out_free:
	free(socks);
	free(kfds);
	free(kidx);
	return ret;
}

/* ---- select ---- */

/* Raw bit access: FD_ISSET's fortify check aborts on fd >= FD_SETSIZE, and
 * callers may pass bigger (allocated) sets. */
#define NK_NFDBITS (8 * (int)sizeof(__fd_mask))
static inline bool nk_fd_isset(const fd_set *s, int fd)
{
	return s && (__FDS_BITS(s)[fd / NK_NFDBITS] & ((__fd_mask)1 << (fd % NK_NFDBITS)));
}
static inline void nk_fd_set(fd_set *s, int fd)
{
	__FDS_BITS(s)[fd / NK_NFDBITS] |= ((__fd_mask)1 << (fd % NK_NFDBITS));
}

int nk_gl_select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timespec *ts,
		 const sigset_t *mask, bool *handled)
{
	*handled = false;
	if (nfds < 0 || nfds > NK_GL_FD_MAX)
		return 0; /* the real select reports EINVAL */
	int any = 0, cnt = 0;
	for (int fd = 0; fd < nfds; fd++) {
		bool in = nk_fd_isset(r, fd) || nk_fd_isset(w, fd) || nk_fd_isset(e, fd);
		cnt += in;
		any += in && nk_gl_fd_peek(fd);
	}
	if (!any)
		return 0;
	*handled = true;
	struct pollfd *pf = calloc((size_t)cnt, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	int k = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = (short)((nk_fd_isset(r, fd) ? POLLIN | POLLRDNORM : 0) |
				   (nk_fd_isset(w, fd) ? POLLOUT | POLLWRNORM : 0) |
				   (nk_fd_isset(e, fd) ? POLLPRI : 0));
		if (ev)
			pf[k++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool h;
	int ret = nk_gl_poll(pf, (nfds_t)cnt, ts, mask, &h);
	if (ret >= 0) {
		for (int i = 0; i < cnt; i++)
			if (pf[i].revents & POLLNVAL)
				ret = -EBADF;
	}
	if (ret >= 0) {
		size_t bytes = ((size_t)nfds + NK_NFDBITS - 1) / NK_NFDBITS * sizeof(__fd_mask);
		if (r) memset(r, 0, bytes);
		if (w) memset(w, 0, bytes);
		if (e) memset(e, 0, bytes);
		ret = 0;
		for (int i = 0; i < cnt; i++) {
			short re = pf[i].revents, ev = pf[i].events;
			/* the kernel's POLLIN_SET / POLLOUT_SET / POLLEX_SET */
			if ((ev & POLLIN) && (re & (POLLIN | POLLRDNORM | POLLHUP | POLLERR))) {
				nk_fd_set(r, pf[i].fd);
				ret++;
			}
			if ((ev & POLLOUT) && (re & (POLLOUT | POLLWRNORM | POLLERR))) {
				nk_fd_set(w, pf[i].fd);
				ret++;
			}
			if ((ev & POLLPRI) && (re & POLLPRI)) {
				nk_fd_set(e, pf[i].fd);
				ret++;
			}
		}
	}
	if (ts) { /* Linux writes back the time left */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long left = (ts->tv_sec - (now.tv_sec - start.tv_sec)) * 1000000000LL +
				 (ts->tv_nsec - (now.tv_nsec - start.tv_nsec));
		if (left < 0)
			left = 0;
		ts->tv_sec = left / 1000000000LL;
		ts->tv_nsec = left % 1000000000LL;
	}
	free(pf);
	return ret;
}
