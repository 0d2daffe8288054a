/* SPDX-License-Identifier: MIT */
/*
 * nk_ks.c - the Linux kernel stack behind the nk_stack ops: real sockets in
 * the NSM's network namespace, TCP with the operator's congestion control or
 * MPTCP. Handles are fds. Readiness goes through the ServiceLib's epoll set,
 * level-triggered; an fd with no wanted events is removed from the set,
 * because epoll reports EPOLLERR/EPOLLHUP even for events == 0 and the
 * ServiceLib would spin on a socket it is not allowed to service yet.
 */
#define _GNU_SOURCE
#include "nk_stack.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

struct nk_stack {
	char cc[16];
	bool mptcp;
	int epfd;
	/* Registered events per fd, so set_events only calls epoll_ctl on a
	 * change. Indexed by fd; 0 = not in the epoll set. Grown on demand. */
	uint32_t *ev;
	size_t nev;
};

static int apply_cc(struct nk_stack *st, int fd)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, st->cc, (socklen_t)strlen(st->cc)) < 0)
		return -errno;
	return 0;
}

static int ks_socket_raw(struct nk_stack *st, int domain, int type, int protocol)
{
	if (type == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
		protocol = st->mptcp ? IPPROTO_MPTCP : IPPROTO_TCP;
	int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		return -errno;
	if (type == SOCK_STREAM) {
		int e = apply_cc(st, fd);
		if (e < 0) {
			close(fd);
			return e;
		}
	}
	if (type == SOCK_DGRAM) {
		/* A guest drains a datagram socket through 64 rx entries, one
		 * datagram each; the kernel buffer is what absorbs a burst
		 * while the guest or this NSM is descheduled (2 shared cores:
		 * 40 ms at 50 Mbit/s is 170 datagrams, the default 208 KiB
		 * holds ~140). 4 MiB, as a busy UDP server would set. */
		int sz = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	if (domain == AF_INET6) {
		/* Guests bind :: and get ::ffff:<VM address> (dual stack), which
		 * needs v4-mapped addresses whatever net.ipv6.bindv6only says. */
		int off = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	}
	return fd;
}

static int ks_init(struct nk_stack **out, const struct nk_stack_cfg *cfg, char *err, size_t errlen)
{
	struct nk_stack *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(st->cc, sizeof(st->cc), "%s", cfg->cc);
	st->mptcp = cfg->mptcp;
	st->epfd = cfg->epfd;
	/* Probe once so a missing cc module or disabled MPTCP is a clear
	 * startup error instead of every SOCKET failing later. */
	int fd = ks_socket_raw(st, AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		if (st->mptcp && (fd == -EPROTONOSUPPORT || fd == -ENOPROTOOPT || fd == -EINVAL))
			snprintf(err, errlen, "MPTCP sockets unavailable (net.mptcp.enabled?): %s",
				 strerror(-fd));
		else
			snprintf(err, errlen, "cannot create a %s socket with congestion control '%s': %s",
				 st->mptcp ? "MPTCP" : "TCP", st->cc, strerror(-fd));
		free(st);
		return fd;
	}
	close(fd);
	*out = st;
	return 0;
}

static void ks_fini(struct nk_stack *st)
{
	if (!st)
		return;
	free(st->ev);
	free(st);
}

static int ks_socket(struct nk_stack *st, uint32_t id, int domain, int type, int protocol,
		     int64_t *h)
{
	(void)id;
	int fd = ks_socket_raw(st, domain, type, protocol);
	if (fd < 0)
		return fd;
	*h = fd;
	return 0;
}

static int ks_bind(struct nk_stack *st, int64_t h, const struct sockaddr *sa, socklen_t len,
		   bool no_port)
{
	(void)st;
	if (no_port) {
		/* Fix only the source address now; connect picks the port with
		 * the full 4-tuple, so many VMs/sockets share ephemeral ports. */
		int one = 1;
		setsockopt((int)h, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	}
	return bind((int)h, sa, len) < 0 ? -errno : 0;
}

static int ks_listen(struct nk_stack *st, int64_t h, int backlog)
{
	(void)st;
	return listen((int)h, backlog) < 0 ? -errno : 0;
}

static int ks_connect(struct nk_stack *st, int64_t h, const struct sockaddr *sa, socklen_t len)
{
	(void)st;
	if (connect((int)h, sa, len) == 0)
		return 0;
	return errno == EINPROGRESS || errno == EALREADY ? -EINPROGRESS : -errno;
}

static int ks_connect_result(struct nk_stack *st, int64_t h)
{
	(void)st;
	int soerr = 0;
	socklen_t l = sizeof(soerr);
	if (getsockopt((int)h, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
		return -errno;
	if (soerr)
		return -soerr;
	/* No error yet: connected only if the peer address is known. */
	struct sockaddr_storage ss;
	l = sizeof(ss);
	if (getpeername((int)h, (struct sockaddr *)&ss, &l) == 0)
		return 0;
	return errno == ENOTCONN ? -EINPROGRESS : -errno;
}

static int ks_accept(struct nk_stack *st, int64_t h, uint32_t new_id, int64_t *nh,
		     struct sockaddr_storage *peer, socklen_t *plen)
{
	(void)new_id;
	*plen = sizeof(*peer);
	int fd = accept4((int)h, (struct sockaddr *)peer, plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* Children normally inherit the listener's cc; set it anyway so the
	 * operator's choice holds whatever the listener was switched to. */
	apply_cc(st, fd);
	*nh = fd;
	return 0;
}

static int ks_shutdown(struct nk_stack *st, int64_t h, int how)
{
	(void)st;
	return shutdown((int)h, how) < 0 ? -errno : 0;
}

static int ks_setsockopt(struct nk_stack *st, int64_t h, int level, int name, const void *v,
			 socklen_t len)
{
	(void)st;
	return setsockopt((int)h, level, name, v, len) < 0 ? -errno : 0;
}

static int ks_getsockopt(struct nk_stack *st, int64_t h, int level, int name, void *v,
			 socklen_t *len)
{
	(void)st;
	return getsockopt((int)h, level, name, v, len) < 0 ? -errno : 0;
}

static int ks_getsockname(struct nk_stack *st, int64_t h, struct sockaddr_storage *sa,
			  socklen_t *len)
{
	(void)st;
	*len = sizeof(*sa);
	return getsockname((int)h, (struct sockaddr *)sa, len) < 0 ? -errno : 0;
}

static ssize_t ks_sendv(struct nk_stack *st, int64_t h, const struct iovec *iov, int iovcnt,
			const struct sockaddr *to, socklen_t tolen)
{
	(void)st;
	struct msghdr mh = {
		.msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
		.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt,
	};
	ssize_t n;
	do
		n = sendmsg((int)h, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t ks_recv(struct nk_stack *st, int64_t h, void *buf, size_t len,
		       struct sockaddr_storage *from, socklen_t *fromlen)
{
	(void)st;
	ssize_t n;
	if (fromlen)
		*fromlen = sizeof(*from);
	do
		n = recvfrom((int)h, buf, len, MSG_DONTWAIT,
			     fromlen ? (struct sockaddr *)from : NULL, fromlen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t ks_recvv(struct nk_stack *st, int64_t h, const struct iovec *iov, int iovcnt)
{
	(void)st;
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n;
	do
		n = recvmsg((int)h, &mh, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static int ks_set_events(struct nk_stack *st, int64_t h, uint32_t id, uint32_t events)
{
	int fd = (int)h;
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= st->nev) {
		size_t n = st->nev ? st->nev : 256;
		while (n <= (size_t)fd)
			n *= 2;
		uint32_t *p = realloc(st->ev, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + st->nev, 0, (n - st->nev) * sizeof(*p));
		st->ev = p;
		st->nev = n;
	}
	uint32_t old = st->ev[fd];
	events &= NK_EV_IN | NK_EV_OUT;
	if (old == events)
		return 0;
	struct epoll_event ee = { .events = events, .data.u64 = NK_SL_TAG_SOCK | id };
	int r;
	if (events == 0)
		r = epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, NULL);
	else
		r = epoll_ctl(st->epfd, old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ee);
	if (r < 0)
		return -errno;
	st->ev[fd] = events;
	return 0;
}

static void ks_close(struct nk_stack *st, int64_t h, bool abort)
{
	int fd = (int)h;
	if (fd < 0)
		return;
	if ((size_t)fd < st->nev && st->ev[fd]) {
		epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, NULL);
		st->ev[fd] = 0;
	}
	if (abort) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
}

const struct nk_stack_ops nk_ks_ops = {
	.name = "kernel",
	.init = ks_init,
	.fini = ks_fini,
	.socket = ks_socket,
	.bind = ks_bind,
	.listen = ks_listen,
	.connect = ks_connect,
	.connect_result = ks_connect_result,
	.accept = ks_accept,
	.shutdown = ks_shutdown,
	.setsockopt = ks_setsockopt,
	.getsockopt = ks_getsockopt,
	.getsockname = ks_getsockname,
	.sendv = ks_sendv,
	.recv = ks_recv,
	.recvv = ks_recvv,
	.set_events = ks_set_events,
	.close = ks_close,
	.poll = NULL,
};
