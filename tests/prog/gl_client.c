/* SPDX-License-Identifier: MIT */
/*
 * gl_client.c - plain POSIX sockets code run under GuestLib by gl_fake_ce.
 *
 *   gl_client main | enoent | refused | novm
 *
 * "main" expects the fake CoreEngine's canned peers (see gl_fake_ce.c):
 * 10.0.0.1 port 7 echoes, port 2 echoes after a 30 ms connect, port 9 echoes
 * then resets, port 1 refuses; listen() gets one connection from
 * 10.0.0.99:4242 that echoes. Exits 0 when every check passed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failed;
#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		if (!(cond)) {                                                   \
			printf("client FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                                     \
			printf(" (errno %d %s)\n", errno, strerror(errno));      \
			failed++;                                                \
			return;                                                  \
		}                                                                \
	} while (0)
#define OK(name) printf("client ok: %s\n", name)

static struct sockaddr_in peer(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
	return a;
}

static int connected(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = peer(port);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return fd;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void t_passthrough(void)
{
	int sv[2], p[2];
	char b[8] = { 0 };
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	CHECK(write(sv[0], "unix", 4) == 4 && read(sv[1], b, 8) == 4 && !memcmp(b, "unix", 4), "unix io");
	CHECK(send(sv[1], "back", 4, 0) == 4 && recv(sv[0], b, 8, 0) == 4, "unix send/recv");
	struct pollfd pf = { .fd = sv[0], .events = POLLOUT };
	CHECK(poll(&pf, 1, 0) == 1, "poll unix");
	close(sv[0]);
	close(sv[1]);
	CHECK(pipe(p) == 0, "pipe");
	CHECK(write(p[1], "pipe", 4) == 4 && read(p[0], b, 8) == 4 && !memcmp(b, "pipe", 4), "pipe io");
	int d = dup(p[0]);
	CHECK(d >= 0 && close(d) == 0, "dup pipe");
	close(p[0]);
	close(p[1]);
	OK("AF_UNIX socketpair and pipes pass through");
}

static void t_echo_basic(void)
{
	char buf[64] = { 0 };
	int fd = connected(7);
	CHECK(fd >= 0, "connect port 7");
	CHECK(send(fd, "hello", 5, 0) == 5, "send");
	CHECK(recv(fd, buf, sizeof(buf), 0) == 5 && !memcmp(buf, "hello", 5), "echo '%s'", buf);
	/* peek, then FIONREAD, then waitall across two entries */
	CHECK(write(fd, "abcdef", 6) == 6, "write");
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	CHECK(poll(&pf, 1, 2000) == 1 && (pf.revents & POLLIN), "poll POLLIN");
	CHECK(recv(fd, buf, 3, MSG_PEEK) == 3 && !memcmp(buf, "abc", 3), "peek");
	int n = -1;
	CHECK(ioctl(fd, FIONREAD, &n) == 0 && n == 6, "FIONREAD %d", n);
	CHECK(read(fd, buf, 2) == 2 && !memcmp(buf, "ab", 2), "partial read");
	CHECK(send(fd, "XYZ", 3, 0) == 3, "send 2");
	memset(buf, 0, sizeof(buf));
	CHECK(recv(fd, buf, 7, MSG_WAITALL) == 7 && !memcmp(buf, "cdefXYZ", 7), "waitall '%s'", buf);
	struct iovec iov[2] = { { "12", 2 }, { "345", 3 } };
	CHECK(writev(fd, iov, 2) == 5, "writev");
	char a[2], b[3];
	struct iovec riov[2] = { { a, 2 }, { b, 3 } };
	struct msghdr mh = { .msg_iov = riov, .msg_iovlen = 2 };
	CHECK(recvmsg(fd, &mh, MSG_WAITALL) == 5 && !memcmp(a, "12", 2) && !memcmp(b, "345", 3), "recvmsg");
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	CHECK(getpeername(fd, (struct sockaddr *)&sa, &sl) == 0 && sl == sizeof(sa) &&
	      sa.sin_port == htons(7), "getpeername");
	sl = sizeof(sa);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET, "getsockname");
	int v = 0;
	socklen_t vl = sizeof(v);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) == 0 && v == SOCK_STREAM, "SO_TYPE");
	v = 1;
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) == 0, "TCP_NODELAY");
	vl = sizeof(v);
	CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0 && vl == 4, "get inline");
	struct tcp_info ti;
	memset(&ti, 0, sizeof(ti));
	vl = sizeof(ti);
	CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &vl) == 0 && vl == sizeof(ti) &&
	      ((unsigned char *)&ti)[sizeof(ti) - 1] == 0xab, "TCP_INFO via chunk (len %u)", vl);
	/* SO_RCVTIMEO on an idle socket */
	struct timeval tv = { .tv_usec = 100000 };
	CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0, "RCVTIMEO");
	double t0 = now_ms();
	CHECK(recv(fd, buf, 1, 0) == -1 && errno == EAGAIN, "timeout");
	CHECK(now_ms() - t0 >= 90 && now_ms() - t0 < 2000, "timeout length %f", now_ms() - t0);
	CHECK(recv(fd, buf, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN, "DONTWAIT");
	/* shutdown: the echo peer closes too -> EOF, twice */
	CHECK(send(fd, "last", 4, 0) == 4 && shutdown(fd, SHUT_WR) == 0, "shutdown");
	CHECK(recv(fd, buf, sizeof(buf), MSG_WAITALL) == 4, "data before FIN");
	CHECK(recv(fd, buf, sizeof(buf), 0) == 0 && recv(fd, buf, sizeof(buf), 0) == 0, "EOF twice");
	pf.events = POLLIN | POLLRDHUP;
	CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLRDHUP) && (pf.revents & POLLHUP), "RDHUP %x", pf.revents);
	CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "send after SHUT_WR");
	CHECK(close(fd) == 0, "close");
	CHECK(close(fd) == -1 && errno == EBADF, "double close");
	OK("echo: send/recv/peek/waitall/iov/names/options/timeout/shutdown");
}

/* Non-blocking bulk transfer, bigger than every window: exercises partial
 * writes, EAGAIN, POLLOUT after SEND_DONE and rx credit. */
static void t_bulk(void)
{
	const size_t total = 3u << 20;
	unsigned char *out = malloc(total), *in = malloc(total);
	for (size_t i = 0; i < total; i++)
		out[i] = (unsigned char)(i * 7 + (i >> 13));
	int fd = connected(7);
	CHECK(fd >= 0, "connect");
	CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
	CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "F_GETFL");
	size_t sent = 0, got = 0;
	int eagain = 0;
	while (got < total) {
		struct pollfd pf = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };
		CHECK(poll(&pf, 1, 5000) == 1, "poll progress sent %zu got %zu", sent, got);
		if (pf.revents & POLLOUT) {
			ssize_t n = send(fd, out + sent, total - sent, 0);
			if (n < 0)
				CHECK(errno == EAGAIN, "send err");
			else
				sent += (size_t)n;
			eagain += n < 0 || (size_t)n < total;
		}
		if (pf.revents & POLLIN) {
			ssize_t n = recv(fd, in + got, total - got, 0);
			CHECK(n > 0 || errno == EAGAIN, "recv");
			if (n > 0)
				got += (size_t)n;
		}
	}
	CHECK(memcmp(in, out, total) == 0, "bulk data mismatch");
	CHECK(eagain > 0, "never hit the window");
	close(fd);
	free(in);
	free(out);
	OK("non-blocking bulk 3 MiB with poll");
}

static void t_connect_nb(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = peer(2);
	CHECK(fd >= 0, "socket");
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC, "cloexec");
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1 && errno == EINPROGRESS, "EINPROGRESS");
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1 && errno == EALREADY, "EALREADY");
	struct pollfd pf = { .fd = fd, .events = POLLOUT };
	CHECK(poll(&pf, 1, 2000) == 1 && (pf.revents & POLLOUT), "POLLOUT %x", pf.revents);
	int e = -1;
	socklen_t el = sizeof(e);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0, "SO_ERROR %d", e);
	close(fd);
	/* refused, blocking */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a = peer(1);
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1 && errno == ECONNREFUSED, "refused");
	el = sizeof(e);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0, "SO_ERROR after blocking fail %d", e);
	close(fd);
	/* refused, non-blocking: POLLERR, SO_ERROR once */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	int on = 1;
	CHECK(ioctl(fd, FIONBIO, &on) == 0, "FIONBIO");
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	CHECK(r == -1 && (errno == EINPROGRESS || errno == ECONNREFUSED), "nb refused");
	pf = (struct pollfd){ .fd = fd, .events = POLLOUT };
	CHECK(poll(&pf, 1, 2000) == 1 && (pf.revents & POLLERR), "POLLERR %x", pf.revents);
	el = sizeof(e);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == ECONNREFUSED, "SO_ERROR %d", e);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0, "SO_ERROR cleared %d", e);
	close(fd);
	OK("non-blocking connect, refused connect, SO_ERROR");
}

static void t_reset(void)
{
	char buf[16];
	int fd = connected(9);
	CHECK(fd >= 0, "connect 9");
	CHECK(send(fd, "boom", 4, 0) == 4, "send");
	CHECK(recv(fd, buf, sizeof(buf), 0) == 4, "echo before reset");
	CHECK(recv(fd, buf, sizeof(buf), 0) == -1 && errno == ECONNRESET, "ECONNRESET");
	CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "EPIPE");
	static volatile sig_atomic_t got_pipe;
	struct sigaction sa = { .sa_handler = SIG_IGN };
	sigaction(SIGPIPE, &sa, NULL);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	CHECK(write(fd, "x", 1) == -1 && errno == EPIPE, "EPIPE write");
	sigset_t pend;
	sigpending(&pend);
	got_pipe = sigismember(&pend, SIGPIPE);
	int sig;
	if (got_pipe)
		sigwait(&set, &sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	CHECK(got_pipe, "SIGPIPE raised");
	struct pollfd pf = { .fd = fd, .events = 0 };
	CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP), "HUP with events 0: %x", pf.revents);
	close(fd);
	OK("reset: ECONNRESET, EPIPE, SIGPIPE, POLLHUP");
}

static void t_epoll(void)
{
	char buf[64];
	int fd = connected(7), p[2];
	CHECK(fd >= 0 && pipe(p) == 0, "setup");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u32 = 1 }, out[4];
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "add nk");
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1 && errno == EEXIST, "EEXIST");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 2 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add pipe");
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "nothing yet");
	CHECK(write(p[1], "p", 1) == 1, "pipe write");
	CHECK(epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.u32 == 2, "pipe event");
	CHECK(read(p[0], buf, 1) == 1, "pipe read");
	CHECK(send(fd, "edge", 4, 0) == 4, "send");
	int n = epoll_wait(ep, out, 4, 2000);
	CHECK(n == 1 && out[0].data.u32 == 1 && (out[0].events & EPOLLIN), "nk event n=%d", n);
	CHECK(epoll_wait(ep, out, 4, 50) == 0, "ET: no second report");
	CHECK(recv(fd, buf, 2, 0) == 2, "partial");
	CHECK(send(fd, "more", 4, 0) == 4, "send 2");
	CHECK(epoll_wait(ep, out, 4, 2000) == 1, "ET: new data is a new edge");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 3 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0, "mod LT");
	CHECK(epoll_wait(ep, out, 4, 0) == 1 && epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u32 == 3, "LT repeats");
	CHECK(recv(fd, buf, 6, MSG_WAITALL) == 6, "drain");
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "LT drained");
	ev = (struct epoll_event){ .events = EPOLLOUT | EPOLLONESHOT, .data.u32 = 4 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0, "mod oneshot");
	CHECK(epoll_wait(ep, out, 4, 0) == 1 && (out[0].events & EPOLLOUT), "oneshot");
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "oneshot disabled");
	/* select over a mix */
	fd_set r, w;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(fd, &r);
	FD_SET(p[0], &r);
	FD_SET(fd, &w);
	struct timeval tv = { 1, 0 };
	CHECK(select((fd > p[0] ? fd : p[0]) + 1, &r, &w, NULL, &tv) == 1 && FD_ISSET(fd, &w) &&
	      !FD_ISSET(fd, &r), "select writable");
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0, "del");
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == -1 && errno == ENOENT, "del again");
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "re-add");
	close(fd); /* drops it from the interest list */
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "closed fd gone");
	close(ep);
	close(p[0]);
	close(p[1]);
	OK("epoll ET/LT/ONESHOT mixed with a pipe; select");
}

static void t_dup_accept(void)
{
	char buf[16];
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(8080) };
	int on = 1;
	CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0, "reuseaddr");
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 16) == 0, "bind/listen");
	int v = 0;
	socklen_t vl = sizeof(v);
	CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 1, "ACCEPTCONN");
	struct pollfd pf = { .fd = l, .events = POLLIN };
	CHECK(poll(&pf, 1, 2000) == 1, "listener readable");
	struct sockaddr_in p;
	socklen_t pl = sizeof(p);
	int c = accept4(l, (struct sockaddr *)&p, &pl, SOCK_CLOEXEC);
	CHECK(c >= 0 && pl == sizeof(p) && p.sin_port == htons(4242), "accept");
	char ip[32];
	inet_ntop(AF_INET, &p.sin_addr, ip, sizeof(ip));
	CHECK(!strcmp(ip, "10.0.0.99"), "peer %s", ip);
	CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0 && accept(l, NULL, NULL) == -1 && errno == EAGAIN, "EAGAIN");
	int d = dup(c), d2 = fcntl(c, F_DUPFD_CLOEXEC, 100);
	CHECK(d >= 0 && d2 >= 100, "dup");
	CHECK(dup2(d, 200) == 200, "dup2");
	close(c);
	close(d);
	CHECK(send(200, "viadup", 6, 0) == 6 && recv(d2, buf, 6, MSG_WAITALL) == 6, "io via dups");
	close(d2);
	close(200);
	CHECK(send(200, "x", 1, 0) == -1 && errno == EBADF, "all closed");
	close(l);
	OK("listen/accept/dup/dup2/F_DUPFD");
}

static int tfd;
static void *t_sender(void *arg)
{
	(void)arg;
	usleep(50000);
	send(tfd, "thread", 6, 0);
	return NULL;
}

static void t_threads(void)
{
	char buf[16];
	tfd = connected(7);
	CHECK(tfd >= 0, "connect");
	pthread_t th;
	close(tfd);
	tfd = connected(7);
	pthread_create(&th, NULL, t_sender, NULL);
	/* blocks in recv, asleep on the doorbell, until the echo of the other
	 * thread's send comes back */
	ssize_t n = recv(tfd, buf, 6, MSG_WAITALL);
	pthread_join(th, NULL);
	CHECK(n == 6 && !memcmp(buf, "thread", 6), "threaded recv %zd", n);
	close(tfd);
	OK("blocking recv woken by another thread's echo");
}

/* fork against a CoreEngine that refuses fork channels (the fake one): the
 * child gets its own channel on its next socket(); sockets it inherited are
 * not usable there (EIO) but close cleanly. */
static void t_fork(void)
{
	int fd = connected(7);
	CHECK(fd >= 0, "connect");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char buf[8];
		int bad = send(fd, "x", 1, MSG_NOSIGNAL) != -1 || errno != EIO;
		bad |= close(fd) != 0;
		int c = connected(7);
		bad |= c < 0 || send(c, "child", 5, 0) != 5 || recv(c, buf, 5, MSG_WAITALL) != 5 ||
		       memcmp(buf, "child", 5) != 0;
		close(c);
		_exit(bad);
	}
	int st = -1;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %x", st);
	char buf[8];
	CHECK(send(fd, "parent", 6, 0) == 6 && recv(fd, buf, 6, MSG_WAITALL) == 6, "parent still works");
	close(fd);
	OK("fork: child re-attaches, parent keeps its sockets");
}

static int mode_main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_passthrough();
	t_echo_basic();
	t_bulk();
	t_connect_nb();
	t_reset();
	t_epoll();
	t_dup_accept();
	t_threads();
	t_fork();
	t_passthrough(); /* still fine after the NetKernel traffic */
	return failed ? 1 : 0;
}

static int mode_fail(int want_errno)
{
	for (int i = 0; i < 3; i++) {
		errno = 0;
		int fd = socket(i == 1 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
		if (fd != -1 || errno != want_errno) {
			printf("client FAIL: socket() = %d errno %d (%s), want -1 errno %d\n", fd, errno,
			       strerror(errno), want_errno);
			return 1;
		}
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		printf("client FAIL: socketpair after failed socket()\n");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	if (!strcmp(argv[1], "main"))
		return mode_main();
	if (!strcmp(argv[1], "enoent"))
		return mode_fail(ENOENT);
	if (!strcmp(argv[1], "refused"))
		return mode_fail(ECONNREFUSED);
	if (!strcmp(argv[1], "novm"))
		return mode_fail(ENETDOWN);
	return 2;
}
