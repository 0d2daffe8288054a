/* SPDX-License-Identifier: MIT */
/*
 * nk_bulk - a bulk TCP sender/receiver with end-to-end verification, used by
 * the system tests (inside NetKernel guests and natively).
 *
 *   nk_bulk send HOST PORT BYTES SEED        connect, send BYTES
 *   nk_bulk recv PORT                        listen, accept one, receive
 *   nk_bulk listen-send PORT BYTES SEED      listen, accept one, send
 *   nk_bulk connect-recv HOST PORT           connect, receive
 *   nk_bulk sink PORT                        accept any number, discard (forever)
 *   options (before the mode): -b ADDR  bind address for listening modes
 *                              -q       no progress lines
 *
 * BYTES accepts K/M/G suffixes (powers of 1024). The sender first writes a
 * 24-byte header (magic, seed, length), then a deterministic pseudo-random
 * stream generated from SEED. The receiver regenerates the stream, compares
 * every byte, computes a checksum over the bytes it received, and answers with
 * 16 bytes (length, checksum); the sender compares them with its own. Both
 * print one line:
 *
 *   nk_bulk: sent 1073741824 bytes checksum 0x... in 2.31 s (3716.5 Mbit/s), peer ok
 *   nk_bulk: received 1073741824 bytes checksum 0x... in 2.31 s (...), stream ok
 *
 * Exit status: 0 success, 1 mismatch / short stream / peer disagrees,
 * 2 usage, 3 network error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nk_io.h"

#define BLOCK (64 * 1024)
#define MAGIC 0x31304b4c55424b4eull /* "NKBULK01" */

static int quiet;
static const char *bind_addr = "0.0.0.0";

struct hdr {
	uint64_t magic, seed, bytes;
};

struct ack {
	uint64_t bytes, sum;
};

/* ---- the stream ---- */

struct gen {
	uint64_t s;
};

static void gen_init(struct gen *g, uint64_t seed)
{
	g->s = seed ^ 0x9e3779b97f4a7c15ull;
	if (g->s == 0)
		g->s = 1;
}

/* Fill one BLOCK (a multiple of 8 bytes) with xorshift64* output. */
static void gen_block(struct gen *g, uint8_t *buf)
{
	uint64_t s = g->s;
	for (size_t i = 0; i < BLOCK; i += 8) {
		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		uint64_t v = s * 0x2545f4914f6cdd1dull;
		memcpy(buf + i, &v, 8);
	}
	g->s = s;
}

/* Checksum of len bytes (zero-padded to 8), chained through h. */
static uint64_t csum(uint64_t h, const uint8_t *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = ((h ^ w) * 0x100000001b3ull);
		h ^= h >> 29;
	}
	if (i < len) {
		uint64_t w = 0;
		memcpy(&w, p + i, len - i);
		h = ((h ^ w) * 0x100000001b3ull);
		h ^= h >> 29;
	}
	return h;
}

#define CSUM_INIT 0xcbf29ce484222325ull

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int do_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "nk_bulk: %s:%s: %s\n", host, port, gai_strerror(rc));
		return -1;
	}
	int fd = -1, err = 0;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "nk_bulk: connect %s:%s: %s\n", host, port, strerror(err));
	return fd;
}

static int do_listen(const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "nk_bulk: bad bind address %s\n", bind_addr);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		fprintf(stderr, "nk_bulk: socket: %s\n", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "nk_bulk: bind/listen %s:%s: %s\n", bind_addr, port, strerror(errno));
		close(fd);
		return -1;
	}
	printf("nk_bulk: listening on %s:%s\n", bind_addr, port);
	fflush(stdout);
	return fd;
}

static int do_accept(int lfd)
{
	int fd;
	do
		fd = accept(lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		fprintf(stderr, "nk_bulk: accept: %s\n", strerror(errno));
	return fd;
}

static void rate_line(char *buf, size_t n, uint64_t bytes, double secs)
{
	if (secs <= 0)
		secs = 1e-9;
	snprintf(buf, n, "in %.2f s (%.1f Mbit/s)", secs, (double)bytes * 8 / secs / 1e6);
}

/* ---- send / receive on a connected socket ---- */

static int run_send(int fd, uint64_t bytes, uint64_t seed)
{
	struct hdr h = { MAGIC, seed, bytes };
	uint8_t *buf = malloc(BLOCK);
	struct gen g;
	uint64_t sum = CSUM_INIT, left = bytes, next_report = 256ull << 20;
	double t0 = now_s();
	if (!buf)
		return 3;
	gen_init(&g, seed);
	if (nk_io_send_all(fd, &h, sizeof(h)) < 0) {
		fprintf(stderr, "nk_bulk: send header: %s\n", strerror(errno));
		free(buf);
		return 3;
	}
	while (left) {
		size_t n = left < BLOCK ? (size_t)left : BLOCK;
		gen_block(&g, buf);
		sum = csum(sum, buf, n);
		if (nk_io_send_all(fd, buf, n) < 0) {
			fprintf(stderr, "nk_bulk: send failed after %" PRIu64 " bytes: %s\n",
				bytes - left, strerror(errno));
			free(buf);
			return 3;
		}
		left -= n;
		if (!quiet && bytes - left >= next_report) {
			printf("nk_bulk: sent %" PRIu64 " MiB\n", (bytes - left) >> 20);
			fflush(stdout);
			next_report += 256ull << 20;
		}
	}
	free(buf);
	shutdown(fd, SHUT_WR);
	struct ack a;
	ssize_t r = nk_io_recv_full(fd, &a, sizeof(a));
	double secs = now_s() - t0;
	char rl[96];
	rate_line(rl, sizeof(rl), bytes, secs);
	if (r != (ssize_t)sizeof(a)) {
		printf("nk_bulk: sent %" PRIu64 " bytes checksum %#018" PRIx64 " %s, but no answer from the receiver (%s)\n",
		       bytes, sum, rl, r < 0 ? strerror(errno) : "EOF");
		return r < 0 ? 3 : 1;
	}
	int ok = a.bytes == bytes && a.sum == sum;
	printf("nk_bulk: sent %" PRIu64 " bytes checksum %#018" PRIx64 " %s, peer %s", bytes, sum, rl,
	       ok ? "ok\n" : "DISAGREES: ");
	if (!ok)
		printf("received %" PRIu64 " bytes checksum %#018" PRIx64 "\n", a.bytes, a.sum);
	return ok ? 0 : 1;
}

static int run_recv(int fd)
{
	struct hdr h;
	ssize_t r = nk_io_recv_full(fd, &h, sizeof(h));
	if (r != (ssize_t)sizeof(h) || h.magic != MAGIC) {
		fprintf(stderr, "nk_bulk: bad or missing stream header (%zd bytes)\n", r);
		return 1;
	}
	uint8_t *buf = malloc(BLOCK), *exp = malloc(BLOCK);
	struct gen g;
	uint64_t sum = CSUM_INIT, got = 0, next_report = 256ull << 20;
	int bad = 0;
	double t0 = now_s();
	if (!buf || !exp)
		return 3;
	gen_init(&g, h.seed);
	while (got < h.bytes) {
		size_t want = h.bytes - got < BLOCK ? (size_t)(h.bytes - got) : BLOCK;
		r = nk_io_recv_full(fd, buf, want);
		if (r < 0) {
			fprintf(stderr, "nk_bulk: recv failed after %" PRIu64 " bytes: %s\n", got,
				strerror(errno));
			free(buf);
			free(exp);
			return 3;
		}
		gen_block(&g, exp);
		sum = csum(sum, buf, (size_t)r);
		if (!bad && memcmp(buf, exp, (size_t)r) != 0) {
			size_t i = 0;
			while (buf[i] == exp[i])
				i++;
			fprintf(stderr, "nk_bulk: stream differs at byte %" PRIu64 " (got %#04x want %#04x)\n",
				got + i, buf[i], exp[i]);
			bad = 1;
		}
		got += (uint64_t)r;
		if ((size_t)r < want)
			break;
		if (!quiet && got >= next_report) {
			printf("nk_bulk: received %" PRIu64 " MiB\n", got >> 20);
			fflush(stdout);
			next_report += 256ull << 20;
		}
	}
	/* Anything beyond the announced length is an error too. */
	uint8_t extra;
	if (got == h.bytes) {
		struct ack a = { got, sum };
		if (nk_io_send_all(fd, &a, sizeof(a)) < 0)
			fprintf(stderr, "nk_bulk: cannot send the answer: %s\n", strerror(errno));
		r = nk_io_recv_full(fd, &extra, 1);
		if (r > 0) {
			fprintf(stderr, "nk_bulk: data beyond the announced %" PRIu64 " bytes\n", h.bytes);
			bad = 1;
		}
	}
	double secs = now_s() - t0;
	char rl[96];
	rate_line(rl, sizeof(rl), got, secs);
	int ok = !bad && got == h.bytes;
	printf("nk_bulk: received %" PRIu64 " bytes checksum %#018" PRIx64 " %s, stream %s\n", got, sum, rl,
	       ok ? "ok" : got != h.bytes ? "SHORT" : "MISMATCH");
	if (got != h.bytes)
		printf("nk_bulk: expected %" PRIu64 " bytes\n", h.bytes);
	free(buf);
	free(exp);
	return ok ? 0 : 1;
}

/* ---- sink: accept any number of connections, discard ---- */

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int run_sink(int lfd)
{
	enum { MAXC = 1024 };
	static struct pollfd p[MAXC + 1];
	static uint64_t bytes[MAXC + 1];
	static uint8_t buf[BLOCK];
	int n = 1;
	unsigned long conns = 0, closed = 0;
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	p[0].fd = lfd;
	p[0].events = POLLIN;
	while (!stop) {
		int rc = poll(p, (nfds_t)n, 1000);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 3;
		}
		if ((p[0].revents & POLLIN) && n <= MAXC) {
			int fd = accept(lfd, NULL, NULL);
			if (fd >= 0) {
				p[n].fd = fd;
				p[n].events = POLLIN;
				p[n].revents = 0;
				bytes[n] = 0;
				n++;
				conns++;
			}
		}
		for (int i = 1; i < n; i++) {
			if (!p[i].revents)
				continue;
			ssize_t r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0) {
				bytes[i] += (uint64_t)r;
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (!quiet)
				printf("nk_bulk: sink: connection closed after %" PRIu64 " bytes (%s)\n", bytes[i],
				       r == 0 ? "EOF" : strerror(errno));
			close(p[i].fd);
			closed++;
			p[i] = p[n - 1];
			bytes[i] = bytes[n - 1];
			n--;
			i--;
		}
		fflush(stdout);
	}
	printf("nk_bulk: sink: %lu connections, %lu closed, %d open\n", conns, closed, n - 1);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: nk_bulk [-q] [-b ADDR] send HOST PORT BYTES SEED\n"
		"       nk_bulk [-q] [-b ADDR] recv PORT\n"
		"       nk_bulk [-q] [-b ADDR] listen-send PORT BYTES SEED\n"
		"       nk_bulk [-q] connect-recv HOST PORT\n"
		"       nk_bulk [-q] [-b ADDR] sink PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "+qb:")) != -1) {
		switch (opt) {
		case 'q': quiet = 1; break;
		case 'b': bind_addr = optarg; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	const char *mode = argv[0];
	uint64_t bytes = 0, seed = 0;
	int fd, lfd, rc;

	if (!strcmp(mode, "send") || !strcmp(mode, "listen-send")) {
		int listen_mode = mode[0] == 'l';
		int need = listen_mode ? 4 : 5;
		if (argc != need || parse_bytes(argv[need - 2], &bytes) < 0 ||
		    parse_bytes(argv[need - 1], &seed) < 0)
			usage();
		if (listen_mode) {
			if ((lfd = do_listen(argv[1])) < 0)
				return 3;
			fd = do_accept(lfd);
			close(lfd);
		} else {
			fd = do_connect(argv[1], argv[2]);
		}
		if (fd < 0)
			return 3;
		rc = run_send(fd, bytes, seed);
		close(fd);
		return rc;
	}
	if (!strcmp(mode, "recv") || !strcmp(mode, "connect-recv")) {
		if (mode[0] == 'r') {
			if (argc != 2)
				usage();
			if ((lfd = do_listen(argv[1])) < 0)
				return 3;
			fd = do_accept(lfd);
			close(lfd);
		} else {
			if (argc != 3)
				usage();
			fd = do_connect(argv[1], argv[2]);
		}
		if (fd < 0)
			return 3;
		rc = run_recv(fd);
		close(fd);
		return rc;
	}
	if (!strcmp(mode, "sink")) {
		if (argc != 2)
			usage();
		if ((lfd = do_listen(argv[1])) < 0)
			return 3;
		rc = run_sink(lfd);
		close(lfd);
		return rc;
	}
	usage();
	return 2;
}
