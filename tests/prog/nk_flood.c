/* SPDX-License-Identifier: MIT */
/*
 * nk_flood - a guest that floods its NSM with operations, and the sink it
 * floods (plain POSIX: runs as a NetKernel guest or natively).
 *
 *   nk_flood sink PORT                 accept everything, read and discard
 *   nk_flood connect HOST PORT SECS    socket+connect+close as fast as it can
 *   nk_flood tiny HOST PORT SECS       1-byte sends on one connection
 *
 * The flooding modes print "ops N" (operations completed) and exit 0 if at
 * least one succeeded, so a test can check the flood really ran.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SINK_MAX 1024

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int parse_port(const char *s)
{
	char *end;
	long p = strtol(s, &end, 10);
	if (*end || p < 1 || p > 65535) {
		fprintf(stderr, "nk_flood: bad port '%s'\n", s);
		exit(2);
	}
	return (int)p;
}

static struct sockaddr_in addr_of(const char *host, const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)parse_port(port)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "nk_flood: bad IPv4 address '%s'\n", host);
		exit(2);
	}
	return a;
}

static int sink(int port)
{
	static struct pollfd pfd[SINK_MAX];
	char buf[65536];
	int n = 1, one = 1;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4096) < 0) {
		perror("nk_flood sink");
		return 1;
	}
	pfd[0] = (struct pollfd){ .fd = l, .events = POLLIN };
	for (;;) {
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("nk_flood sink: poll");
			return 1;
		}
		if (pfd[0].revents & POLLIN) {
			int c = accept(l, NULL, NULL);
			if (c >= 0 && n < SINK_MAX)
				pfd[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
			else if (c >= 0)
				close(c);
		}
		for (int i = 1; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			ssize_t r = read(pfd[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(pfd[i].fd);
				pfd[i--] = pfd[--n];
			}
		}
	}
}

static int flood_connect(struct sockaddr_in a, double secs)
{
	unsigned long ops = 0, fails = 0;
	double end = now_s() + secs;
	while (now_s() < end) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0) {
			fails++;
			continue;
		}
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			ops++;
		else
			fails++;
		close(s);
	}
	printf("ops %lu failed %lu\n", ops, fails);
	return ops ? 0 : 1;
}

static int flood_tiny(struct sockaddr_in a, double secs)
{
	unsigned long ops = 0;
	int one = 1;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("nk_flood tiny: connect");
		return 1;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	double end = now_s() + secs;
	while (now_s() < end) {
		if (send(s, "x", 1, MSG_NOSIGNAL) == 1)
			ops++;
		else if (errno != EINTR) {
			perror("nk_flood tiny: send");
			break;
		}
	}
	close(s);
	printf("ops %lu\n", ops);
	return ops ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "sink"))
		return sink(parse_port(argv[2]));
	if (argc == 5 && (!strcmp(argv[1], "connect") || !strcmp(argv[1], "tiny"))) {
		char *end;
		double secs = strtod(argv[4], &end);
		if (*end || secs <= 0 || secs > 3600) {
			fprintf(stderr, "nk_flood: bad duration '%s' (seconds, 0..3600)\n", argv[4]);
			return 2;
		}
		struct sockaddr_in a = addr_of(argv[2], argv[3]);
		return !strcmp(argv[1], "connect") ? flood_connect(a, secs) : flood_tiny(a, secs);
	}
	fprintf(stderr, "usage: nk_flood sink PORT | connect HOST PORT SECS | tiny HOST PORT SECS\n");
	return 2;
}
