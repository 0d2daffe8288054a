/* SPDX-License-Identifier: MIT */
/*
 * gl_fd.c - the fd table, socket lifetime, close and dup.
 *
 * Every NetKernel socket owns a reserved kernel fd (an eventfd), so fd
 * numbers stay unique in the process and select()'s FD_SETSIZE holds. The
 * table maps that fd to the socket object. It is two-level (1024 pages of
 * 1024 entries, pages allocated on demand and never freed) so readers need
 * no lock and no re-allocation can pull a page away from under them.
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PAGE_BITS 10
#define PAGE_SIZE_ (1 << PAGE_BITS)
#define NPAGES (NK_GL_FD_MAX >> PAGE_BITS)

static struct nk_gl_sock **nk_gl_fdtab[NPAGES];

/* Bit 0 of an entry: the application cleared FD_CLOEXEC on this fd (socket
 * objects come from calloc, so bit 0 of their address is free). */
#define NK_GL_FD_INHERIT ((uintptr_t)1)

static inline struct nk_gl_sock *nk_gl_fd_untag(struct nk_gl_sock *p)
{
	return (struct nk_gl_sock *)((uintptr_t)p & ~NK_GL_FD_INHERIT);
}

struct nk_gl_sock *nk_gl_fd_peek(int fd)
{
	if (fd < 0 || fd >= NK_GL_FD_MAX)
		return NULL;
	struct nk_gl_sock **page = __atomic_load_n(&nk_gl_fdtab[fd >> PAGE_BITS], __ATOMIC_ACQUIRE);
	if (!page)
		return NULL;
	return nk_gl_fd_untag(__atomic_load_n(&page[fd & (PAGE_SIZE_ - 1)], __ATOMIC_ACQUIRE));
}

bool nk_gl_fd_cloexec(int fd)
{
	if (!nk_gl_fd_peek(fd))
		return false;
	uintptr_t v = (uintptr_t)nk_gl_fdtab[fd >> PAGE_BITS][fd & (PAGE_SIZE_ - 1)];
	return !(v & NK_GL_FD_INHERIT);
}

void nk_gl_fd_set_cloexec(int fd, bool on)
{
	struct nk_gl_sock *s = nk_gl_fd_peek(fd);
	if (!s)
		return;
	uintptr_t v = (uintptr_t)s | (on ? 0 : NK_GL_FD_INHERIT);
	__atomic_store_n(&nk_gl_fdtab[fd >> PAGE_BITS][fd & (PAGE_SIZE_ - 1)],
			 (struct nk_gl_sock *)v, __ATOMIC_RELEASE);
}

int nk_gl_fd_set(int fd, struct nk_gl_sock *s)
{
	if (fd < 0 || fd >= NK_GL_FD_MAX)
		return -EMFILE;
	struct nk_gl_sock **page = nk_gl_fdtab[fd >> PAGE_BITS];
	if (!page) {
		page = calloc(PAGE_SIZE_, sizeof(*page));
		if (!page)
			return -ENOMEM;
		__atomic_store_n(&nk_gl_fdtab[fd >> PAGE_BITS], page, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&page[fd & (PAGE_SIZE_ - 1)], s, __ATOMIC_RELEASE);
	s->nfds++;
	s->refs++;
	return 0;
}

void nk_gl_fd_clear(int fd)
{
	struct nk_gl_sock **page;
	if (fd < 0 || fd >= NK_GL_FD_MAX || !(page = nk_gl_fdtab[fd >> PAGE_BITS]))
		return;
	__atomic_store_n(&page[fd & (PAGE_SIZE_ - 1)], NULL, __ATOMIC_RELEASE);
}

/* fork child: every socket inherited from the parent is held by no channel of
 * ours. Walk allocated pages only, so fork stays cheap. */
void nk_gl_fd_mark_stale(void)
{
	for (int p = 0; p < NPAGES; p++) {
		if (!nk_gl_fdtab[p])
			continue;
		for (int i = 0; i < PAGE_SIZE_; i++)
			if (nk_gl_fdtab[p][i])
				nk_gl_fd_untag(nk_gl_fdtab[p][i])->stale = true;
	}
}

/* The child has its own channel holding every inherited socket: only the
 * parent's in-flight chunks and requests are not the child's. */
void nk_gl_fd_fork_keep(void)
{
	for (int p = 0; p < NPAGES; p++) {
		if (!nk_gl_fdtab[p])
			continue;
		for (int i = 0; i < PAGE_SIZE_; i++) {
			struct nk_gl_sock *s = nk_gl_fd_untag(nk_gl_fdtab[p][i]);
			if (s) {
				s->tx_inflight = 0;
				s->refs = s->nfds;
			}
		}
	}
}

struct nk_gl_sock *nk_gl_sock_new(uint32_t id, int domain, int type, int protocol)
{
	struct nk_gl_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = id;
	s->slot = nk_region_slot(&nk_gl.reg, id);
	s->domain = domain;
	s->type = type;
	s->protocol = protocol;
	s->seen_err_seq = __atomic_load_n(&s->slot->err_seq, __ATOMIC_ACQUIRE);
	/* Adopt the slot (nk_abi.h, rx_start): the guest line outlives the
	 * slot's previous user, who may have left unread entries (a FIN!) or
	 * closed in the middle of an entry. This incarnation's entries start at
	 * rx_start; nobody has read them yet (new socket, or just claimed by
	 * our accept), so the offset is 0. */
	__atomic_store_n(&s->slot->head_off, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->slot->rx_head, __atomic_load_n(&s->slot->rx_start, __ATOMIC_ACQUIRE),
			 __ATOMIC_RELEASE);
	return s;
}

struct nk_gl_sock *nk_gl_get(int fd)
{
	if (!nk_gl_fd_peek(fd))
		return NULL;
	nk_gl_lock();
	struct nk_gl_sock *s = nk_gl_fd_peek(fd); /* re-check: a close may have won */
	if (!s) {
		nk_gl_unlock();
		return NULL;
	}
	s->refs++;
	return s;
}

void nk_gl_sock_unref(struct nk_gl_sock *s)
{
	if (--s->refs == 0)
		free(s);
}

void nk_gl_put(struct nk_gl_sock *s)
{
	nk_gl_sock_unref(s);
	nk_gl_unlock();
}

/* The last fd of this process for the socket went away: tell the CoreEngine
 * this channel no longer holds it. The host reclaims unconsumed rx chunks, so
 * no RX_DONE is needed for entries still in the ring. */
static void nk_gl_sock_last_fd(struct nk_gl_sock *s)
{
	if (s->stale || nk_gl.state != NK_GL_ATTACHED)
		return;
	struct nk_nqe q = { .op = NK_OP_CLOSE, .sock = s->id, .chunk = NK_NO_CHUNK };
	(void)nk_gl_post(&q);
}

void nk_gl_fd_drop(int fd)
{
	struct nk_gl_sock *s = nk_gl_fd_peek(fd);
	if (!s)
		return;
	nk_gl_fd_clear(fd);
	nk_gl_epoll_forget_fd(fd);
	s->refs++; /* posting CLOSE may drop the lock briefly */
	if (--s->nfds == 0)
		nk_gl_sock_last_fd(s);
	s->refs--; /* the ref the table entry held... */
	nk_gl_sock_unref(s); /* ...and ours */
}

int nk_gl_reserve_fd(void)
{
	int fd = REAL(eventfd)(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fd >= NK_GL_FD_MAX) {
		REAL(close)(fd);
		return -EMFILE;
	}
	return fd;
}

int nk_gl_close(int fd)
{
	nk_gl_lock();
	if (!nk_gl_fd_peek(fd)) {
		nk_gl_unlock();
		return 1; /* not ours (any more): caller passes through */
	}
	/* Clear the entry before the real close so the number, once reusable,
	 * never maps to this socket. */
	nk_gl_fd_drop(fd);
	int r = REAL(close)(fd);
	int e = errno;
	nk_gl_unlock();
	return r < 0 ? -e : 0;
}

/* mode: 0 dup, 1 dup2, 2 dup3, 3 F_DUPFD, 4 F_DUPFD_CLOEXEC */
int nk_gl_dup(int oldfd, int newfd, int flags, int mode)
{
	int r;
	nk_gl_lock();
	struct nk_gl_sock *s = nk_gl_fd_peek(oldfd);
	if ((mode == 1 || mode == 2) && oldfd != newfd && nk_gl_is_internal(newfd) &&
	    nk_gl_protect_fd(newfd) < 0) {
		nk_gl_unlock();
		return -EBUSY;
	}
	switch (mode) {
	case 0: r = REAL(dup)(oldfd); break;
	case 1: r = REAL(dup2)(oldfd, newfd); break;
	case 2: r = REAL(dup3)(oldfd, newfd, flags); break;
	case 3: r = REAL(fcntl)(oldfd, F_DUPFD, newfd); break;
	default: r = REAL(fcntl)(oldfd, F_DUPFD_CLOEXEC, newfd); break;
	}
	if (r < 0) {
		int e = errno;
		nk_gl_unlock();
		return -e;
	}
	if (r != oldfd) {
		/* dup2/dup3 closed whatever newfd was: forget its socket. */
		nk_gl_fd_drop(r);
		if (s && nk_gl_fd_set(r, s) < 0) {
			REAL(close)(r);
			nk_gl_unlock();
			return -EMFILE;
		}
		if (s) {
			/* The copy of the reserved fd is close-on-exec too
			 * (see nk_gl_fcntl F_SETFD); the app sees what it asked. */
			(void)REAL(fcntl)(r, F_SETFD, FD_CLOEXEC);
			nk_gl_fd_set_cloexec(r, mode == 4 || (mode == 2 && (flags & O_CLOEXEC)));
		}
	}
	nk_gl_unlock();
	return r;
}
