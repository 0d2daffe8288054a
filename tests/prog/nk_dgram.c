/* SPDX-License-Identifier: MIT */
/*
 * nk_dgram - UDP socket semantics a guest program relies on (regression check
 * for GuestLib's datagram path; tests/compat/run.sh runs it as a guest).
 *
 *   nk_dgram HOST PORT    HOST:PORT is a UDP echo server (each datagram is
 *                         sent back to its sender unchanged)
 *
 * Checks, one line each:
 *   - send() on an unconnected UDP socket fails EDESTADDRREQ (no SIGPIPE);
 *   - message boundaries: datagrams of 100, 1 and 3000 bytes read with a
 *     64 KiB buffer come back as 100, 1 and 3000 bytes;
 *   - truncation: a 300-byte datagram read into 50 bytes gives 50, and the
 *     rest is dropped (the next read is the next datagram);
 *   - recvfrom() names the connected peer as the source;
 *   - sendto() the connected peer works;
 *   - an unconnected socket: sendto() the server works, and recvfrom() names
 *     the server as the sender of the echo (the per-datagram source address);
 *   - a datagram larger than one chunk (20000 bytes) fails EMSGSIZE.
 * Exit 0 when all pass, 1 otherwise, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int failed;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (cond) {                                                    \
			printf("ok   ");                                       \
		} else {                                                       \
			printf("FAIL ");                                       \
			failed = 1;                                            \
		}                                                              \
		printf(__VA_ARGS__);                                           \
		printf("\n");                                                  \
		fflush(stdout);                                                \
	} while (0)

static char buf[65536];

static ssize_t echo(int fd, size_t n, char fill)
{
	memset(buf, fill, n);
	if (send(fd, buf, n, 0) != (ssize_t)n)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: nk_dgram HOST PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a wrong EPIPE shows as an errno, not a death */
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	errno = 0;
	ssize_t r = send(fd, "x", 1, 0);
	CHECK(r < 0 && errno == EDESTADDRREQ, "send unconnected: %zd (%s), want EDESTADDRREQ", r,
	      strerror(errno));

	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		perror("connect");
		return 1;
	}
	static const size_t sizes[] = { 100, 1, 3000 };
	for (int i = 0; i < 3; i++)
		if (echo(fd, sizes[i], (char)('a' + i)) < 0)
			CHECK(0, "send %zu: %s", sizes[i], strerror(errno));
	for (int i = 0; i < 3; i++) {
		r = recv(fd, buf, sizeof(buf), 0);
		CHECK(r == (ssize_t)sizes[i] && buf[0] == (char)('a' + i) && buf[r - 1] == buf[0],
		      "boundary: datagram %d read as %zd bytes, want %zu", i, r, sizes[i]);
	}

	echo(fd, 300, 't');
	echo(fd, 7, 'n');
	r = recv(fd, buf, 50, 0);
	CHECK(r == 50 && buf[0] == 't', "truncation: 300-byte datagram into 50 bytes gave %zd", r);
	r = recv(fd, buf, sizeof(buf), 0);
	CHECK(r == 7 && buf[0] == 'n', "truncation: next read %zd bytes, want the 7-byte datagram", r);

	echo(fd, 10, 's');
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
	struct sockaddr_in *src = (struct sockaddr_in *)&ss;
	char ip[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &src->sin_addr, ip, sizeof(ip));
	CHECK(r == 10 && sl == sizeof(*src) && src->sin_family == AF_INET &&
		      src->sin_addr.s_addr == to.sin_addr.s_addr && src->sin_port == to.sin_port,
	      "recvfrom source %s:%d (len %u), want %s:%s", ip, ntohs(src->sin_port), (unsigned)sl,
	      argv[1], argv[2]);

	r = sendto(fd, "p", 1, 0, (struct sockaddr *)&to, sizeof(to));
	CHECK(r == 1, "sendto the connected peer: %zd", r);
	r = recv(fd, buf, sizeof(buf), 0);
	CHECK(r == 1 && buf[0] == 'p', "its echo: %zd", r);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval utv = { .tv_sec = 5 };
	setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &utv, sizeof(utv));
	r = sendto(u, "unconnected", 11, 0, (struct sockaddr *)&to, sizeof(to));
	CHECK(r == 11, "sendto from an unconnected socket: %zd (%s)", r, strerror(errno));
	memset(&ss, 0, sizeof(ss));
	sl = sizeof(ss);
	memset(buf, 0, 16);
	r = recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
	inet_ntop(AF_INET, &src->sin_addr, ip, sizeof(ip));
	CHECK(r == 11 && !memcmp(buf, "unconnected", 11) && sl == sizeof(*src) &&
		      src->sin_family == AF_INET && src->sin_addr.s_addr == to.sin_addr.s_addr &&
		      src->sin_port == to.sin_port,
	      "unconnected recvfrom: %zd bytes from %s:%d, want the echo from %s:%s", r, ip,
	      ntohs(src->sin_port), argv[1], argv[2]);
	close(u);

	errno = 0;
	r = send(fd, buf, 20000, 0);
	CHECK(r < 0 && errno == EMSGSIZE, "20000-byte datagram: %zd (%s), want EMSGSIZE", r,
	      strerror(errno));
	close(fd);
	printf("%s\n", failed ? "FAILED" : "all passed");
	return failed;
}
