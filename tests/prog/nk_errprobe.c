/* SPDX-License-Identifier: MIT */
/*
 * nk_errprobe - report how a blocked socket call ends, for the fault tests.
 *
 *   nk_errprobe socket              socket(AF_INET, SOCK_STREAM) once; prints
 *                                   "socket: ok" or "socket: errno=NAME (text)"
 *   nk_errprobe recv HOST PORT      connect, then block in recv()
 *   nk_errprobe send HOST PORT      connect, then send() until it blocks (use
 *                                   a peer that does not read: `hold`)
 *   nk_errprobe hold PORT           listen on 0.0.0.0:PORT, accept, never read
 *                                   and never write (small receive buffer)
 *
 * recv/send print "connected" when the connection is up, then, when the call
 * returns:
 *   result op=recv ret=-1 errno=ECONNRESET at_ms=<CLOCK_REALTIME ms> blocked_ms=<ms>
 * (errno=0 when it returned >= 0, e.g. ret=0 for EOF). at_ms lets a test
 * compare with the moment it injected the fault. Exit 0 when the call failed
 * with an errno, 1 when it returned without one, 2 usage, 3 setup error, 4 if
 * nothing happened within the limit (-t SECS, default 30).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int limit_s = 30;

static int64_t ms(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *ename(int e)
{
	if (e == 0)
		return "0";
	const char *n = strerrorname_np(e);
	return n ? n : "UNKNOWN";
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "result TIMEOUT: the call did not return\n";
	ssize_t w = write(1, msg, sizeof(msg) - 1);
	(void)w;
	_exit(4);
}

static int connect_to(const char *host, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "nk_errprobe: %s is not an IPv4 address\n", host);
		exit(2);
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("setup: socket errno=%s (%s)\n", ename(errno), strerror(errno));
		exit(3);
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		printf("setup: connect errno=%s (%s)\n", ename(errno), strerror(errno));
		exit(3);
	}
	return fd;
}

static int report(const char *op, ssize_t ret, int err, int64_t t0)
{
	printf("result op=%s ret=%zd errno=%s at_ms=%lld blocked_ms=%lld\n", op, ret, ename(err),
	       (long long)ms(CLOCK_REALTIME), (long long)(ms(CLOCK_MONOTONIC) - t0));
	fflush(stdout);
	return err ? 0 : 1;
}

static int probe_recv(int fd)
{
	char buf[4096];
	int64_t t0 = ms(CLOCK_MONOTONIC);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0) /* the peer should not send; note it and keep blocking */
			continue;
		return report("recv", n, n < 0 ? errno : 0, t0);
	}
}

static int probe_send(int fd)
{
	static char buf[65536];
	memset(buf, 'x', sizeof(buf));
	long long total = 0;
	int64_t t0 = ms(CLOCK_MONOTONIC);
	for (;;) {
		ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0) {
			total += n;
			/* Time blocked is measured from the last successful send. */
			t0 = ms(CLOCK_MONOTONIC);
			continue;
		}
		printf("sent %lld bytes before the error\n", total);
		return report("send", n, n < 0 ? errno : 0, t0);
	}
}

static int hold(const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1, small = 4096;
	if (lfd < 0) {
		perror("socket");
		return 3;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
		perror("bind/listen");
		return 3;
	}
	printf("holding on port %s\n", port);
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd >= 0) {
			printf("accepted a connection (fd %d), not reading it\n", fd);
			fflush(stdout);
		} else if (errno != EINTR) {
			perror("accept");
			return 3;
		}
	}
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "+t:")) != -1) {
		if (opt == 't')
			limit_s = atoi(optarg);
		else
			return 2;
	}
	argc -= optind;
	argv += optind;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 1 && !strcmp(argv[0], "socket")) {
		alarm((unsigned)limit_s);
		signal(SIGALRM, on_alarm);
		int64_t t0 = ms(CLOCK_MONOTONIC);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int e = errno;
		long long took = (long long)(ms(CLOCK_MONOTONIC) - t0);
		if (fd >= 0)
			printf("socket: ok fd=%d took_ms=%lld\n", fd, took);
		else
			printf("socket: errno=%s (%s) took_ms=%lld\n", ename(e), strerror(e), took);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[0], "hold"))
		return hold(argv[1]);
	if (argc == 3 && (!strcmp(argv[0], "recv") || !strcmp(argv[0], "send"))) {
		signal(SIGALRM, on_alarm);
		int fd = connect_to(argv[1], argv[2]);
		printf("connected\n");
		fflush(stdout);
		alarm((unsigned)limit_s);
		return argv[0][0] == 'r' ? probe_recv(fd) : probe_send(fd);
	}
	fprintf(stderr, "usage: nk_errprobe [-t SECS] socket | recv HOST PORT | send HOST PORT | hold PORT\n");
	return 2;
}
