/* SPDX-License-Identifier: MIT */
/*
 * gl_epoll.c - epoll over NetKernel sockets and kernel fds.
 *
 * The kernel's epoll cannot watch a NetKernel socket (its readiness is in
 * shared memory), so GuestLib keeps, per epoll fd, its own interest list of
 * NetKernel fds; kernel fds stay in the real epoll instance. epoll_wait
 * collects NetKernel readiness first, adds what the real epoll_wait(.., 0)
 * says, and when nothing is ready sleeps in one poll() on {epfd, down
 * doorbell}. Limits (documented): a NetKernel entry is keyed by fd number and
 * goes away when that fd is closed (Linux keeps it while a dup lives); an
 * epoll fd holding NetKernel entries does not itself become readable for an
 * enclosing poll/epoll.
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* What edge-triggered mode compares: any change of these is a new edge. */
struct nk_gl_epsig {
	uint32_t rx_tail, state, flags, err_seq, tx_done, ev_seq, tx_seq;
};

struct nk_gl_epent {
	int fd;
	struct nk_gl_sock *s;
	uint32_t events;
	epoll_data_t data;
	bool disabled;            /* EPOLLONESHOT fired, until EPOLL_CTL_MOD */
	bool reported;            /* ET: sig is valid */
	struct nk_gl_epsig sig;
};

struct nk_gl_ep {
	struct nk_gl_ep *next;
	int epfd;
	int n, cap;
	unsigned rr;              /* round-robin start: no entry starves others */
	struct nk_gl_epent *ents;
};

static struct nk_gl_ep *nk_gl_eps;
int nk_gl_nep;

static struct nk_gl_ep *nk_gl_ep_find(int epfd)
{
	for (struct nk_gl_ep *ep = nk_gl_eps; ep; ep = ep->next)
		if (ep->epfd == epfd)
			return ep;
	return NULL;
}

static void nk_gl_ep_remove(struct nk_gl_ep *ep, int i)
{
	nk_gl_sock_unref(ep->ents[i].s);
	ep->ents[i] = ep->ents[--ep->n];
}

static void nk_gl_ep_sig(struct nk_gl_sock *s, uint32_t events, struct nk_gl_epsig *g)
{
	struct nk_sock_slot *sl = s->slot;
	memset(g, 0, sizeof(*g));
	g->rx_tail = __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE);
	g->state = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
	g->flags = __atomic_load_n(&sl->flags, __ATOMIC_ACQUIRE);
	g->err_seq = __atomic_load_n(&sl->err_seq, __ATOMIC_ACQUIRE);
	g->tx_done = __atomic_load_n(&sl->tx_done, __ATOMIC_ACQUIRE);
	g->ev_seq = s->ev_seq;
	/* The TX window is shared by the process's sockets: a chunk returned
	 * by another socket can make this one writable again. */
	if (events & EPOLLOUT)
		g->tx_seq = nk_gl.tx_seq;
}

int nk_gl_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev, bool *handled)
{
	*handled = false;
	if (!nk_gl_fd_peek(fd))
		return 0;
	nk_gl_lock();
	struct nk_gl_sock *s = nk_gl_fd_peek(fd);
	if (!s) {
		nk_gl_unlock();
		return 0;
	}
	*handled = true;
	int ret = 0;
	if (epfd == fd || REAL(fcntl)(epfd, F_GETFD) < 0) {
		ret = epfd == fd ? -EINVAL : -EBADF;
		goto out;
	}
	if (op != EPOLL_CTL_DEL && !ev) {
		ret = -EFAULT;
		goto out;
	}
	struct nk_gl_ep *ep = nk_gl_ep_find(epfd);
	int i = -1;
	for (int k = 0; ep && k < ep->n; k++)
		if (ep->ents[k].fd == fd)
			i = k;
	switch (op) {
	case EPOLL_CTL_ADD:
		if (i >= 0) {
			ret = -EEXIST;
			break;
		}
		if (!ep) {
			ep = calloc(1, sizeof(*ep));
			if (!ep) {
				ret = -ENOMEM;
				break;
			}
			ep->epfd = epfd;
			ep->next = nk_gl_eps;
			nk_gl_eps = ep;
			__atomic_store_n(&nk_gl_nep, nk_gl_nep + 1, __ATOMIC_RELEASE);
		}
		if (ep->n == ep->cap) {
			int cap = ep->cap ? ep->cap * 2 : 8;
			struct nk_gl_epent *ne = realloc(ep->ents, (size_t)cap * sizeof(*ne));
			if (!ne) {
				ret = -ENOMEM;
				break;
			}
			ep->ents = ne;
			ep->cap = cap;
		}
		s->refs++;
		ep->ents[ep->n++] = (struct nk_gl_epent){ .fd = fd, .s = s, .events = ev->events,
							  .data = ev->data };
		break;
	case EPOLL_CTL_MOD:
		if (i < 0) {
			ret = -ENOENT;
			break;
		}
		ep->ents[i].events = ev->events;
		ep->ents[i].data = ev->data;
		ep->ents[i].disabled = false;
		ep->ents[i].reported = false; /* re-arming reports a present state */
		break;
	case EPOLL_CTL_DEL:
		if (i < 0)
			ret = -ENOENT;
		else
			nk_gl_ep_remove(ep, i);
		break;
	default:
		ret = -EINVAL;
	}
out:
	nk_gl_unlock();
	return ret;
}

/* Under lock: fd was closed; drop it from every interest list. */
void nk_gl_epoll_forget_fd(int fd)
{
	for (struct nk_gl_ep *ep = nk_gl_eps; ep; ep = ep->next)
		for (int i = ep->n - 1; i >= 0; i--)
			if (ep->ents[i].fd == fd)
				nk_gl_ep_remove(ep, i);
}

void nk_gl_epoll_close(int epfd)
{
	if (__atomic_load_n(&nk_gl_nep, __ATOMIC_ACQUIRE) == 0)
		return;
	nk_gl_lock();
	for (struct nk_gl_ep **pp = &nk_gl_eps; *pp; pp = &(*pp)->next) {
		struct nk_gl_ep *ep = *pp;
		if (ep->epfd != epfd)
			continue;
		*pp = ep->next;
		while (ep->n > 0)
			nk_gl_ep_remove(ep, ep->n - 1);
		free(ep->ents);
		free(ep);
		__atomic_store_n(&nk_gl_nep, nk_gl_nep - 1, __ATOMIC_RELEASE);
		break;
	}
	nk_gl_unlock();
}

/* Ready events of entry i, honouring ET/ONESHOT; consume = this is a
 * report (update edge state) rather than a check. */
static uint32_t nk_gl_ep_ready(struct nk_gl_epent *e, bool consume)
{
	if (e->disabled)
		return 0;
	uint32_t ev = nk_gl_readiness(e->s) & (e->events | EPOLLERR | EPOLLHUP);
	if (!ev)
		return 0;
	if (e->events & EPOLLET) {
		struct nk_gl_epsig g;
		nk_gl_ep_sig(e->s, e->events, &g);
		if (e->reported && memcmp(&g, &e->sig, sizeof(g)) == 0)
			return 0;
		if (consume) {
			e->sig = g;
			e->reported = true;
		}
	}
	if (consume && (e->events & EPOLLONESHOT))
		e->disabled = true;
	return ev;
}

static int nk_gl_ep_collect(struct nk_gl_ep *ep, struct epoll_event *evs, int max)
{
	int n = 0;
	if (ep->n == 0)
		return 0;
	unsigned start = ep->rr++ % (unsigned)ep->n;
	for (int k = 0; k < ep->n && n < max; k++) {
		struct nk_gl_epent *e = &ep->ents[(start + (unsigned)k) % (unsigned)ep->n];
		uint32_t ev = nk_gl_ep_ready(e, true);
		if (ev) {
			evs[n].events = ev;
			evs[n].data = e->data;
			n++;
		}
	}
	return n;
}

struct nk_gl_epwait { int epfd; };

static bool nk_gl_ep_check(void *arg)
{
	struct nk_gl_ep *ep = nk_gl_ep_find(((struct nk_gl_epwait *)arg)->epfd);
	for (int k = 0; ep && k < ep->n; k++)
		if (nk_gl_ep_ready(&ep->ents[k], false))
			return true;
	return !ep; /* closed under us: stop waiting */
}

/* EPOLLOUT asked of a socket without TX room: returned chunks may give it.
 * A socket with room needs no SEND_DONE: Linux raises no new EPOLLOUT edge
 * for freed send space either unless a write had found the buffer full. */
static bool nk_gl_ep_needs_tx(void *arg)
{
	struct nk_gl_ep *ep = nk_gl_ep_find(((struct nk_gl_epwait *)arg)->epfd);
	for (int k = 0; ep && k < ep->n; k++) {
		struct nk_gl_epent *e = &ep->ents[k];
		if ((e->events & EPOLLOUT) && !e->disabled && !nk_gl_writable(e->s))
			return true;
	}
	return false;
}

int nk_gl_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout,
		     const sigset_t *mask, bool *handled)
{
	*handled = false;
	if (__atomic_load_n(&nk_gl_nep, __ATOMIC_ACQUIRE) == 0)
		return 0;
	nk_gl_lock();
	if (!nk_gl_ep_find(epfd)) {
		nk_gl_unlock();
		return 0;
	}
	*handled = true;
	if (max <= 0 || !evs) {
		nk_gl_unlock();
		return -EINVAL;
	}
	struct timespec dl;
	if (timeout > 0)
		nk_gl_deadline(&dl, timeout);
	struct nk_gl_epwait wa = { .epfd = epfd };
	int ret;
	for (;;) {
		nk_gl_drain();
		struct nk_gl_ep *ep = nk_gl_ep_find(epfd);
		ret = ep ? nk_gl_ep_collect(ep, evs, max) : 0;
		if (ret < max) {
			int k = REAL(epoll_wait)(epfd, evs + ret, max - ret, 0);
			if (k < 0 && ret == 0) {
				ret = -errno;
				break;
			}
			if (k > 0)
				ret += k;
		}
		if (ret > 0 || timeout == 0)
			break;
		struct pollfd kp = { .fd = epfd, .events = POLLIN };
		int w = nk_gl_wait(nk_gl_ep_check, nk_gl_ep_needs_tx, &wa, timeout > 0 ? &dl : NULL, &kp, 1, mask);
		if (w == 0) {
			timeout = 0; /* one last collection, then report nothing */
			continue;
		}
		if (w == -ECONNRESET) {
			/* CoreEngine gone and no NetKernel entry left to report
			 * it: only kernel fds can still become ready. */
			long ms = timeout;
			if (timeout > 0) {
				struct timespec now;
				clock_gettime(CLOCK_MONOTONIC, &now);
				ms = (dl.tv_sec - now.tv_sec) * 1000 + (dl.tv_nsec - now.tv_nsec) / 1000000;
				if (ms < 0)
					ms = 0;
			}
			nk_gl_unlock();
			ret = REAL(epoll_pwait)(epfd, evs, max, (int)ms, mask);
			return ret < 0 ? -errno : ret;
		}
		if (w < 0) {
			ret = w;
			break;
		}
	}
	nk_gl_unlock();
	return ret;
}
