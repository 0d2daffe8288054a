/* SPDX-License-Identifier: MIT */
/*
 * gl_intercept.c - the exported libc entry points (see exports.map).
 *
 * Each one asks the fd table whether fd is a NetKernel socket (one atomic
 * load); if not, it calls the real libc function untouched. This is also
 * what makes GuestLib's own use of libc safe: nk_ctl.c's AF_UNIX socket,
 * connect, sendmsg, recvmsg and close land here and pass straight through.
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#define NK_RET(r) ((r) < 0 ? (errno = (int)-(r), -1) : (r))

/* Linux raises SIGPIPE for EPIPE on a stream unless MSG_NOSIGNAL. Raised
 * after the lock is dropped: the handler may call back into us. */
static ssize_t nk_gl_send_ret(ssize_t r, int flags)
{
	if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
		raise(SIGPIPE);
	return NK_RET(r);
}

int socket(int domain, int type, int protocol)
{
	if (domain != AF_INET && domain != AF_INET6)
		return REAL(socket)(domain, type, protocol);
	int r = nk_gl_socket(domain, type, protocol);
	return NK_RET(r);
}

#define NK_SOCK_CALL(fd, realcall, nkcall)                                     \
	do {                                                                   \
		struct nk_gl_sock *s_ = nk_gl_get(fd);                         \
		if (!s_)                                                       \
			return realcall;                                       \
		struct nk_gl_sock *s = s_;                                     \
		__typeof__(nkcall) r_ = nkcall;                                \
		nk_gl_put(s_);                                                 \
		return NK_RET(r_);                                             \
	} while (0)

int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	NK_SOCK_CALL(fd, REAL(bind)(fd, addr, len), nk_gl_bind(s, addr.__sockaddr__, len));
}

int listen(int fd, int backlog)
{
	NK_SOCK_CALL(fd, REAL(listen)(fd, backlog), nk_gl_listen(s, backlog));
}

int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	NK_SOCK_CALL(fd, REAL(connect)(fd, addr, len), nk_gl_connect(s, addr.__sockaddr__, len));
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags)
{
	NK_SOCK_CALL(fd, REAL(accept4)(fd, addr, len, flags),
		     nk_gl_accept(s, addr.__sockaddr__, len, flags));
}

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	NK_SOCK_CALL(fd, REAL(accept)(fd, addr, len), nk_gl_accept(s, addr.__sockaddr__, len, 0));
}

int shutdown(int fd, int how)
{
	NK_SOCK_CALL(fd, REAL(shutdown)(fd, how), nk_gl_shutdown(s, how));
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	NK_SOCK_CALL(fd, REAL(setsockopt)(fd, level, name, val, len),
		     nk_gl_setsockopt(s, level, name, val, len));
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	NK_SOCK_CALL(fd, REAL(getsockopt)(fd, level, name, val, len),
		     nk_gl_getsockopt(s, level, name, val, len));
}

int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	NK_SOCK_CALL(fd, REAL(getsockname)(fd, addr, len),
		     nk_gl_getname(s, false, addr.__sockaddr__, len));
}

int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	NK_SOCK_CALL(fd, REAL(getpeername)(fd, addr, len),
		     nk_gl_getname(s, true, addr.__sockaddr__, len));
}

/* ---- data ---- */

static ssize_t nk_gl_send1(int fd, const void *buf, size_t n, int flags, bool *handled)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	*handled = s != NULL;
	if (!s)
		return 0;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
	ssize_t r = nk_gl_sendv(s, &iov, 1, flags);
	nk_gl_put(s);
	return nk_gl_send_ret(r, flags);
}

static ssize_t nk_gl_recv1(int fd, void *buf, size_t n, int flags, bool *handled)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	*handled = s != NULL;
	if (!s)
		return 0;
	struct iovec iov = { .iov_base = buf, .iov_len = n };
	ssize_t r = nk_gl_recvv(s, &iov, 1, flags);
	nk_gl_put(s);
	return NK_RET(r);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	bool h;
	ssize_t r = nk_gl_send1(fd, buf, n, flags, &h);
	return h ? r : REAL(send)(fd, buf, n, flags);
}

/* A destination given to sendto/sendmsg on a datagram socket travels with
 * the datagram (SEND arg.addr); the NSM sends it there. A stream ignores
 * it, as Linux TCP does. */
static int nk_gl_dgram_dest(struct nk_gl_sock *s, const struct sockaddr *to, socklen_t tolen)
{
	s->tx_dest_set = false;
	if (s->type != SOCK_DGRAM || !to || tolen == 0)
		return 0;
	int r = nk_gl_sa_to_addr(s, to, tolen, &s->tx_dest, true);
	if (r < 0)
		return r;
	s->tx_dest_set = true;
	return 0;
}

/* The source of the datagram just read: its sender from the chunk header
 * when valid, else the connected peer. A stream has none, as Linux TCP. */
static void nk_gl_dgram_src(struct nk_gl_sock *s, struct sockaddr *sa, socklen_t *len)
{
	if (!sa || !len)
		return;
	if (s->type == SOCK_DGRAM && (s->rx_src.family == AF_INET || s->rx_src.family == AF_INET6) &&
	    nk_gl_addr_to_sa(s, &s->rx_src, sa, len, true) == 0)
		return;
	if (s->type != SOCK_DGRAM || nk_gl_getname(s, true, sa, len) < 0)
		*len = 0;
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr,
	       socklen_t alen)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return REAL(sendto)(fd, buf, n, flags, addr, alen);
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
	ssize_t r = nk_gl_dgram_dest(s, addr.__sockaddr__, alen);
	if (r == 0)
		r = nk_gl_sendv(s, &iov, 1, flags);
	s->tx_dest_set = false;
	nk_gl_put(s);
	return nk_gl_send_ret(r, flags);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	bool h;
	ssize_t r = nk_gl_send1(fd, buf, n, 0, &h);
	return h ? r : REAL(write)(fd, buf, n);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	bool h;
	ssize_t r = nk_gl_recv1(fd, buf, n, flags, &h);
	return h ? r : REAL(recv)(fd, buf, n, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG addr, socklen_t *alen)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return REAL(recvfrom)(fd, buf, n, flags, addr, alen);
	struct iovec iov = { .iov_base = buf, .iov_len = n };
	ssize_t r = nk_gl_recvv(s, &iov, 1, flags);
	if (r >= 0)
		nk_gl_dgram_src(s, addr.__sockaddr__, alen);
	nk_gl_put(s);
	return NK_RET(r);
}

ssize_t read(int fd, void *buf, size_t n)
{
	bool h;
	ssize_t r = nk_gl_recv1(fd, buf, n, 0, &h);
	return h ? r : REAL(read)(fd, buf, n);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return REAL(sendmsg)(fd, msg, flags);
	ssize_t r = nk_gl_dgram_dest(s, msg->msg_name, msg->msg_namelen);
	if (r == 0)
		r = nk_gl_sendv(s, msg->msg_iov, (int)msg->msg_iovlen, flags);
	s->tx_dest_set = false;
	nk_gl_put(s);
	return nk_gl_send_ret(r, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return REAL(recvmsg)(fd, msg, flags);
	ssize_t r = nk_gl_recvv(s, msg->msg_iov, (int)msg->msg_iovlen, flags);
	bool trunc = s->type == SOCK_DGRAM && s->rx_trunc;
	if (r >= 0)
		nk_gl_dgram_src(s, msg->msg_name, &msg->msg_namelen);
	nk_gl_put(s);
	if (r >= 0) {
		msg->msg_controllen = 0; /* no ancillary data on NetKernel sockets */
		msg->msg_flags = trunc ? MSG_TRUNC : 0;
	}
	return NK_RET(r);
}

/* sendmmsg/recvmmsg: one sendmsg/recvmsg per message, with the kernel's
 * rules: the count of messages done if any, else the first error (the
 * error of a later message is lost, as in Linux); glibc's resolver sends its
 * A and AAAA queries with one sendmmsg. */
#define NK_GL_MMSG_MAX 1024u /* UIO_MAXIOV, the kernel's cap on vlen */

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	if (!nk_gl_fd_peek(fd))
		return REAL(sendmmsg)(fd, vec, vlen, flags);
	if (vlen > NK_GL_MMSG_MAX)
		vlen = NK_GL_MMSG_MAX;
	unsigned int i;
	for (i = 0; i < vlen; i++) {
		ssize_t r = sendmsg(fd, &vec[i].msg_hdr, flags);
		if (r < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo)
{
	if (!nk_gl_fd_peek(fd))
		return REAL(recvmmsg)(fd, vec, vlen, flags, tmo);
	if (vlen > NK_GL_MMSG_MAX)
		vlen = NK_GL_MMSG_MAX;
	struct timespec end = { 0 }, now;
	if (tmo) {
		if (tmo->tv_sec < 0 || tmo->tv_nsec < 0 || tmo->tv_nsec >= 1000000000L)
			return NK_RET(-EINVAL);
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += tmo->tv_sec + (end.tv_nsec + tmo->tv_nsec) / 1000000000L;
		end.tv_nsec = (end.tv_nsec + tmo->tv_nsec) % 1000000000L;
	}
	int fl = flags & ~MSG_WAITFORONE;
	unsigned int i;
	for (i = 0; i < vlen; i++) {
		ssize_t r = recvmsg(fd, &vec[i].msg_hdr, fl);
		if (r < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = (unsigned int)r;
		if (flags & MSG_WAITFORONE)
			fl |= MSG_DONTWAIT;
		/* Linux checks the timeout only after each datagram. */
		if (tmo) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > end.tv_sec ||
			    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
				i++;
				break;
			}
		}
	}
	return (int)i;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return REAL(writev)(fd, iov, iovcnt);
	ssize_t r = nk_gl_sendv(s, iov, iovcnt, 0);
	nk_gl_put(s);
	return nk_gl_send_ret(r, 0);
}

ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	NK_SOCK_CALL(fd, REAL(readv)(fd, iov, iovcnt), nk_gl_recvv(s, iov, iovcnt, 0));
}

static ssize_t nk_gl_sendfile_common(int out, int in, off_t *off, size_t count, bool *handled)
{
	*handled = false;
	if (nk_gl_fd_peek(in)) {
		*handled = true; /* a socket is not a file sendfile can read */
		return NK_RET(-EINVAL);
	}
	struct nk_gl_sock *s = nk_gl_get(out);
	if (!s)
		return 0;
	*handled = true;
	ssize_t r = nk_gl_sendfile(s, in, off, count);
	nk_gl_put(s);
	return nk_gl_send_ret(r, 0);
}

ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	bool h;
	ssize_t r = nk_gl_sendfile_common(out, in, off, count, &h);
	return h ? r : REAL(sendfile)(out, in, off, count);
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	bool h;
	off_t o = off ? (off_t)*off : 0; /* off_t is 64-bit on the targets we build */
	ssize_t r = nk_gl_sendfile_common(out, in, off ? &o : NULL, count, &h);
	if (!h)
		return REAL(sendfile64)(out, in, off, count);
	if (off)
		*off = o;
	return r;
}

/* ---- fortified variants (_FORTIFY_SOURCE builds call these) ---- */

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	bool h;
	ssize_t r = nk_gl_recv1(fd, buf, n, 0, &h);
	return h ? r : REAL(__read_chk)(fd, buf, n, buflen);
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		__chk_fail();
	bool h;
	ssize_t r = nk_gl_recv1(fd, buf, n, flags, &h);
	return h ? r : REAL(__recv_chk)(fd, buf, n, buflen, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       __SOCKADDR_ARG addr, socklen_t *alen)
{
	if (n > buflen)
		__chk_fail();
	/* The bound is checked; the rest is recvfrom (libc's for other fds). */
	return recvfrom(fd, buf, n, flags, addr, alen);
}

/* ---- close, dup, fcntl, ioctl ---- */

int close(int fd)
{
	if (nk_gl_fd_peek(fd)) {
		int r = nk_gl_close(fd);
		if (r <= 0)
			return NK_RET(r);
	}
	/* GuestLib's own control socket and doorbells are invisible to the
	 * app: a daemon closing "all fds" must not cut us off. */
	if (nk_gl_is_internal(fd))
		return NK_RET(-EBADF);
	nk_gl_epoll_close(fd);
	return REAL(close)(fd);
}

int dup(int fd)
{
	if (!nk_gl_fd_peek(fd))
		return REAL(dup)(fd);
	int r = nk_gl_dup(fd, -1, 0, 0);
	return NK_RET(r);
}

int dup2(int oldfd, int newfd)
{
	if (!nk_gl_fd_peek(oldfd) && !nk_gl_fd_peek(newfd) && !nk_gl_is_internal(newfd))
		return REAL(dup2)(oldfd, newfd);
	int r = nk_gl_dup(oldfd, newfd, 0, 1);
	return NK_RET(r);
}

int dup3(int oldfd, int newfd, int flags)
{
	if (!nk_gl_fd_peek(oldfd) && !nk_gl_fd_peek(newfd) && !nk_gl_is_internal(newfd))
		return REAL(dup3)(oldfd, newfd, flags);
	int r = nk_gl_dup(oldfd, newfd, flags, 2);
	return NK_RET(r);
}

static int nk_gl_fcntl_common(int fd, int cmd, unsigned long arg, bool is64)
{
	if (nk_gl_fd_peek(fd) && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
		int r = nk_gl_dup(fd, (int)arg, 0, cmd == F_DUPFD ? 3 : 4);
		return NK_RET(r);
	}
	struct nk_gl_sock *s = nk_gl_get(fd);
	if (!s)
		return is64 ? REAL(fcntl64)(fd, cmd, arg) : REAL(fcntl)(fd, cmd, arg);
	int r = nk_gl_fcntl(s, fd, cmd, arg);
	nk_gl_put(s);
	return NK_RET(r);
}

/* The optional argument is an int or a pointer; reading it as unsigned
 * long is what glibc itself does on the ABIs we support. */
int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	return nk_gl_fcntl_common(fd, cmd, arg, false);
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	return nk_gl_fcntl_common(fd, cmd, arg, true);
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	NK_SOCK_CALL(fd, REAL(ioctl)(fd, req, arg), nk_gl_ioctl(s, req, arg));
}

/* ---- readiness ---- */

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	struct timespec ts = { .tv_sec = timeout / 1000, .tv_nsec = (timeout % 1000) * 1000000L };
	bool h;
	int r = nk_gl_poll(fds, n, timeout < 0 ? NULL : &ts, NULL, &h);
	return h ? NK_RET(r) : REAL(poll)(fds, n, timeout);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	bool h;
	int r = nk_gl_poll(fds, n, ts, mask, &h);
	return h ? NK_RET(r) : REAL(ppoll)(fds, n, ts, mask);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, ts, mask);
}

int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	struct timespec ts;
	if (tv) {
		if (tv->tv_sec < 0 || tv->tv_usec < 0)
			return NK_RET(-EINVAL);
		ts.tv_sec = tv->tv_sec + tv->tv_usec / 1000000;
		ts.tv_nsec = (tv->tv_usec % 1000000) * 1000L;
	}
	bool h;
	int ret = nk_gl_select(nfds, r, w, e, tv ? &ts : NULL, NULL, &h);
	if (!h)
		return REAL(select)(nfds, r, w, e, tv);
	if (tv) {
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return NK_RET(ret);
}

int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
	    const sigset_t *mask)
{
	struct timespec t;
	if (ts)
		t = *ts; /* pselect does not report the time left */
	bool h;
	int ret = nk_gl_select(nfds, r, w, e, ts ? &t : NULL, mask, &h);
	return h ? NK_RET(ret) : REAL(pselect)(nfds, r, w, e, ts, mask);
}

int epoll_create(int size)
{
	return REAL(epoll_create)(size);
}

int epoll_create1(int flags)
{
	return REAL(epoll_create1)(flags);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	bool h;
	int r = nk_gl_epoll_ctl(epfd, op, fd, ev, &h);
	return h ? NK_RET(r) : REAL(epoll_ctl)(epfd, op, fd, ev);
}

int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	bool h;
	int r = nk_gl_epoll_wait(epfd, evs, max, timeout, NULL, &h);
	return h ? NK_RET(r) : REAL(epoll_wait)(epfd, evs, max, timeout);
}

int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	bool h;
	int r = nk_gl_epoll_wait(epfd, evs, max, timeout, mask, &h);
	return h ? NK_RET(r) : REAL(epoll_pwait)(epfd, evs, max, timeout, mask);
}
