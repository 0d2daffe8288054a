/* SPDX-License-Identifier: MIT */
/*
 * nk_stream - the one application of the fig-switch experiment: a timed bulk
 * stream with end-to-end verification and a throughput time series. Plain
 * POSIX sockets, nothing NetKernel-specific: the same binary runs natively,
 * under `mptcpize run`, and as a NetKernel guest.
 *
 *   nk_stream send [-b SRCADDR] [-C CC] [-s SEED] [-H N] [-N 1] HOST PORT SECONDS
 *   nk_stream recv [-i MS] [-o CSV] [-C CC] [-s SEED] [-H N] [-p MS] [-v N] PORT
 *
 * -C CC sets TCP_CONGESTION on the socket (native runs: a network namespace
 * can only default to a cc the root namespace allows); a failure is reported
 * on stderr and the run goes on with the default cc.
 *
 * send: connects (from SRCADDR if given) and writes a deterministic
 *   pseudo-random byte stream as fast as it can for SECONDS (fractions
 *   allowed), then shutdown(SHUT_WR) and waits for the receiver's 16-byte
 *   answer (bytes, checksum; big-endian u64 each).
 * recv: listens on 0.0.0.0:PORT, accepts one connection (the listener stays
 *   open to the end, for MPTCP's joining subflows), reads until EOF,
 *   compares every byte with the generator, writes `t_s,bytes_interval,mbps`
 *   every MS ms (default 100) measured from the first byte (row t_s is the end
 *   of its interval; the last row is the partial interval up to EOF), answers
 *   with (bytes, checksum) and closes. -p MS leaves the accepted connection
 *   unread MS ms first (its receive window fills, as with a switched
 *   session's new leg at a receiving NSM); -v N reads with readv into N
 *   16 KiB iovecs, as the NSM does (default: recv into one 256 KiB buffer).
 *   -H N (both sides): N zero bytes before the stream, written and read on
 *   their own, as a session hello. send -N 1 writes as a ServiceLib does:
 *   non-blocking sendmsg of up to 32 16 KiB iovecs, poll on EAGAIN.
 *
 * Byte i of the stream is byte (i mod 8) of splitmix64(SEED + (i / 8) * phi),
 * so any offset can be regenerated and a receiver can name the first wrong
 * byte. Both sides use the same default SEED. A corrupt stream is followed
 * further (stderr: "at X came the bytes of offset Y (+D)", up to 12 jumps),
 * so a report tells skipped, repeated and reordered bytes apart. The checksum is over the
 * stream's 8-byte words (the last one zero-padded) and the length, so it does
 * not depend on how send/recv split the stream.
 *
 * Output (stdout, one line each, flushed at once):
 *   pid N                                            both, at start
 *   listening on 0.0.0.0:PORT                        recv
 *   connected LOCAL -> PEER                          both
 *   first byte at EPOCH                              recv (CLOCK_REALTIME, s)
 *   sent BYTES checksum 0x... peer ok|MISMATCH (peer BYTES 0x...) secs S mbps M pid N
 *   received BYTES checksum 0x... ok|CORRUPT at OFFSET secs S mbps M pid N stall_ms G at_s T
 *     (G: the longest time between two arrivals of data, from T s after the
 *     first byte: what the application saw of a pause)
 *
 * Exit status: 0 success; 1 the stream was corrupt or the two sides disagree;
 * 2 usage; 3 network error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "nk_io.h"

#define BUF (256 * 1024)
#define DEFAULT_SEED 0x4e4b53545245414dull /* "NKSTREAM" */
#define PHI 0x9e3779b97f4a7c15ull

/* ---- the stream ---- */

static inline uint64_t word_at(uint64_t seed, uint64_t w)
{
	uint64_t z = seed + (w + 1) * PHI;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fill buf with stream bytes [off, off + len). Little-endian word layout. */
static void gen_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	uint64_t w = off / 8;
	size_t skip = off % 8, done = 0;
	if (skip) {
		uint64_t v = htole64(word_at(seed, w++));
		size_t n = 8 - skip < len ? 8 - skip : len;
		memcpy(buf, (uint8_t *)&v + skip, n);
		done = n;
	}
	for (; done + 8 <= len; done += 8) {
		uint64_t v = htole64(word_at(seed, w++));
		memcpy(buf + done, &v, 8);
	}
	if (done < len) {
		uint64_t v = htole64(word_at(seed, w));
		memcpy(buf + done, &v, len - done);
	}
}

/* Where the bytes got[0..16) belong in the stream, searched within +-32 MiB
 * of `at`: 1 and *from set, or 0 (not stream data there, or too short). */
static int locate(uint64_t seed, uint64_t at, const uint8_t *got, size_t len, uint64_t *from)
{
	const uint64_t win = 32u << 20;
	if (len < 16)
		return 0;
	uint64_t lo = at > win ? at - win : 0, span = 2 * win;
	uint8_t *ref = malloc(span);
	if (!ref)
		return 0;
	gen_fill(seed, lo, ref, span);
	uint8_t *hit = memmem(ref, span, got, 16);
	if (hit)
		*from = lo + (uint64_t)(hit - ref);
	free(ref);
	return hit != NULL;
}

/* Following a corrupt stream: each stretch of received bytes is matched
 * to where it belongs, so a report says "at X came bytes from Y" for up to
 * NK_TRACK jumps (bytes skipped, repeated or reordered) rather than only
 * "wrong from X". */
#define NK_TRACK 12
struct track {
	int jumps;       /* reported so far; NK_TRACK = stopped following */
	int64_t delta;   /* received offset + delta = stream offset */
};

static void track_buf(struct track *t, uint64_t seed, uint64_t off, const uint8_t *buf, size_t n, uint8_t *exp)
{
	size_t pos = 0;
	while (pos < n && t->jumps < NK_TRACK) {
		gen_fill(seed, off + pos + (uint64_t)t->delta, exp, n - pos);
		size_t k = 0;
		while (pos + k < n && buf[pos + k] == exp[k])
			k++;
		pos += k;
		if (pos == n)
			return;
		uint64_t at = off + pos, from = 0;
		char hex[3 * 16 + 1] = "";
		for (size_t i = 0; i < 16 && pos + i < n; i++)
			snprintf(hex + 3 * i, 4, " %02x", buf[pos + i]);
		t->jumps++;
		if (!locate(seed, at, buf + pos, n - pos, &from)) {
			fprintf(stderr, "nk_stream: at %" PRIu64 " received%s: not stream data within 32 MiB; not following further\n",
				at, hex);
			t->jumps = NK_TRACK;
			return;
		}
		t->delta = (int64_t)(from - at);
		fprintf(stderr, "nk_stream: at %" PRIu64 " came the bytes of offset %" PRIu64 " (%+" PRId64 ")\n", at,
			from, t->delta);
	}
}

struct csum {
	uint64_t h, len;
	uint8_t part[8];
	unsigned plen;
};

static inline uint64_t mix(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static void csum_init(struct csum *c)
{
	memset(c, 0, sizeof(*c));
	c->h = 0xcbf29ce484222325ull;
}

static void csum_add(struct csum *c, const uint8_t *p, size_t len)
{
	uint64_t w;
	c->len += len;
	while (c->plen && len) {
		c->part[c->plen++] = *p++;
		len--;
		if (c->plen == 8) {
			memcpy(&w, c->part, 8);
			c->h = mix(c->h, le64toh(w));
			c->plen = 0;
		}
	}
	uint64_t h = c->h;
	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		h = mix(h, le64toh(w));
	}
	c->h = h;
	while (len--)
		c->part[c->plen++] = *p++;
}

static uint64_t csum_final(const struct csum *c)
{
	uint64_t h = c->h, w = 0;
	if (c->plen) {
		uint8_t b[8] = { 0 };
		memcpy(b, c->part, c->plen);
		memcpy(&w, b, 8);
		h = mix(h, le64toh(w));
	}
	return mix(h, c->len);
}

/* ---- helpers ---- */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: nk_stream send [-b SRCADDR] [-C CC] [-s SEED] [-H N] [-N 1] HOST PORT SECONDS\n"
		   "       nk_stream recv [-i MS] [-o CSV] [-C CC] [-s SEED] [-H N] [-p MS] [-v N] PORT\n");
}

static int die_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "nk_stream: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	usage(stderr);
	return 2;
}

static void addr_str(const struct sockaddr_in *a, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
}

static void print_conn(int fd)
{
	struct sockaddr_in l = { 0 }, p = { 0 };
	socklen_t ll = sizeof(l), pl = sizeof(p);
	char a[64] = "?", b[64] = "?";
	if (getsockname(fd, (struct sockaddr *)&l, &ll) == 0 && l.sin_family == AF_INET)
		addr_str(&l, a, sizeof(a));
	if (getpeername(fd, (struct sockaddr *)&p, &pl) == 0 && p.sin_family == AF_INET)
		addr_str(&p, b, sizeof(b));
	printf("connected %s -> %s\n", a, b);
	fflush(stdout);
}

static void set_cc(int fd, const char *cc)
{
	if (cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
		fprintf(stderr, "nk_stream: TCP_CONGESTION %s: %s (default cc kept)\n", cc, strerror(errno));
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_port(const char *s, uint16_t *out)
{
	uint64_t v;
	if (parse_u64(s, &v) < 0 || v == 0 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* ---- send ---- */

/* Non-blocking send of buf[0..len) as a ServiceLib does: sendmsg of up to
 * 32 iovecs of 16 KiB with MSG_DONTWAIT, poll for POLLOUT on EAGAIN. */
static ssize_t send_nb(int fd, const uint8_t *buf, size_t len)
{
	struct iovec iov[32];
	int n = 0;
	for (size_t o = 0; o < len && n < 32; o += 16384, n++)
		iov[n] = (struct iovec){ (void *)(buf + o), len - o < 16384 ? len - o : 16384 };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
	for (;;) {
		ssize_t w = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w >= 0 || (errno != EAGAIN && errno != EINTR))
			return w;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		(void)poll(&p, 1, 1000);
	}
}

static int do_send(int argc, char **argv)
{
	const char *src = NULL, *cc = NULL;
	uint64_t seed = DEFAULT_SEED, pre = 0;
	int i = 0, nb = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (i + 1 >= argc)
			return die_usage("option needs a value", argv[i]);
		if (!strcmp(argv[i], "-b"))
			src = argv[++i];
		else if (!strcmp(argv[i], "-C"))
			cc = argv[++i];
		else if (!strcmp(argv[i], "-N"))
			nb = atoi(argv[++i]) != 0;
		else if (!strcmp(argv[i], "-H")) {
			if (parse_u64(argv[++i], &pre) < 0 || pre > 4096)
				return die_usage("bad preamble (0..4096 bytes)", argv[i]);
		} else if (!strcmp(argv[i], "-s")) {
			if (parse_u64(argv[++i], &seed) < 0)
				return die_usage("bad seed", argv[i]);
		} else
			return die_usage("unknown option", argv[i]);
	}
	if (argc - i != 3)
		return die_usage("send needs HOST PORT SECONDS", NULL);
	const char *host = argv[i], *port = argv[i + 1];
	char *end;
	double secs = strtod(argv[i + 2], &end);
	uint16_t pn;
	if (*end || !(secs > 0) || secs > 86400)
		return die_usage("bad SECONDS", argv[i + 2]);
	if (parse_port(port, &pn) < 0)
		return die_usage("bad PORT", port);

	printf("pid %d\n", (int)getpid());
	fflush(stdout);

	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "nk_stream: %s:%s: %s\n", host, port, gai_strerror(rc));
		return 3;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		fprintf(stderr, "nk_stream: socket: %s\n", strerror(errno));
		freeaddrinfo(res);
		return 3;
	}
	set_cc(fd, cc);
	if (src) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		if (inet_pton(AF_INET, src, &sa.sin_addr) != 1) {
			freeaddrinfo(res);
			return die_usage("bad SRCADDR (IPv4 address)", src);
		}
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			fprintf(stderr, "nk_stream: bind %s: %s\n", src, strerror(errno));
			freeaddrinfo(res);
			return 3;
		}
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		fprintf(stderr, "nk_stream: connect %s:%s: %s\n", host, port, strerror(errno));
		freeaddrinfo(res);
		return 3;
	}
	freeaddrinfo(res);
	print_conn(fd);
	if (pre) {
		/* A preamble outside the stream, in its own write (as a session
		 * hello goes before a resumed leg's data). */
		uint8_t z[4096] = { 0 };
		if (nk_io_send_all(fd, z, (size_t)pre) < 0) {
			fprintf(stderr, "nk_stream: preamble: %s\n", strerror(errno));
			return 3;
		}
	}

	uint8_t *buf = malloc(BUF);
	if (!buf)
		return 3;
	struct csum cs;
	csum_init(&cs);
	uint64_t off = 0;
	double t0 = mono(), deadline = t0 + secs, t;
	do {
		gen_fill(seed, off, buf, BUF);
		size_t pos = 0;
		/* Keep the deadline tight: check it between partial sends too. */
		while (pos < BUF) {
			ssize_t n = nb ? send_nb(fd, buf + pos, BUF - pos) : send(fd, buf + pos, BUF - pos, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "nk_stream: send at offset %" PRIu64 ": %s\n", off + pos,
					strerror(errno));
				return 3;
			}
			csum_add(&cs, buf + pos, (size_t)n);
			pos += (size_t)n;
			if (mono() >= deadline)
				break;
		}
		off += pos;
		t = mono();
	} while (t < deadline);
	double dt = t - t0;
	uint64_t sum = csum_final(&cs);
	if (shutdown(fd, SHUT_WR) < 0) {
		fprintf(stderr, "nk_stream: shutdown: %s\n", strerror(errno));
		return 3;
	}
	uint8_t ans[16];
	ssize_t n = nk_io_recv_full(fd, ans, sizeof(ans));
	if (n != (ssize_t)sizeof(ans)) {
		fprintf(stderr, "nk_stream: no answer from the receiver (%s)\n",
			n < 0 ? strerror(errno) : "short read / EOF");
		printf("sent %" PRIu64 " checksum 0x%016" PRIx64 " peer NO-ANSWER secs %.3f mbps %.1f pid %d\n",
		       off, sum, dt, off * 8 / dt / 1e6, (int)getpid());
		return 3;
	}
	uint64_t pb, ps;
	memcpy(&pb, ans, 8);
	memcpy(&ps, ans + 8, 8);
	pb = be64toh(pb);
	ps = be64toh(ps);
	close(fd);
	free(buf);
	int ok = pb == off && ps == sum;
	if (ok)
		printf("sent %" PRIu64 " checksum 0x%016" PRIx64 " peer ok secs %.3f mbps %.1f pid %d\n", off, sum,
		       dt, off * 8 / dt / 1e6, (int)getpid());
	else
		printf("sent %" PRIu64 " checksum 0x%016" PRIx64 " peer MISMATCH (peer %" PRIu64 " 0x%016" PRIx64
		       ") secs %.3f mbps %.1f pid %d\n",
		       off, sum, pb, ps, dt, off * 8 / dt / 1e6, (int)getpid());
	fflush(stdout);
	return ok ? 0 : 1;
}

/* ---- recv ---- */

struct series {
	FILE *f;
	double t0, iv; /* first byte (monotonic), interval (s) */
	uint64_t k;    /* rows written */
	uint64_t bytes;
};

static void series_row(struct series *s, double t_end, double dur)
{
	if (s->f) {
		fprintf(s->f, "%.3f,%" PRIu64 ",%.2f\n", t_end, s->bytes, dur > 0 ? s->bytes * 8 / dur / 1e6 : 0.0);
		fflush(s->f);
	}
	s->bytes = 0;
}

/* Close every interval that ended before `now`. */
static void series_tick(struct series *s, double now)
{
	while (now >= s->t0 + (double)(s->k + 1) * s->iv) {
		s->k++;
		series_row(s, (double)s->k * s->iv, s->iv);
	}
}

static int do_recv(int argc, char **argv)
{
	const char *csv = NULL, *cc = NULL;
	uint64_t seed = DEFAULT_SEED, ms = 100, pause_ms = 0, pre = 0;
	int i = 0, use_readv = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (i + 1 >= argc)
			return die_usage("option needs a value", argv[i]);
		if (!strcmp(argv[i], "-o"))
			csv = argv[++i];
		else if (!strcmp(argv[i], "-C"))
			cc = argv[++i];
		else if (!strcmp(argv[i], "-i")) {
			if (parse_u64(argv[++i], &ms) < 0 || ms == 0 || ms > 60000)
				return die_usage("bad interval (1..60000 ms)", argv[i]);
		} else if (!strcmp(argv[i], "-s")) {
			if (parse_u64(argv[++i], &seed) < 0)
				return die_usage("bad seed", argv[i]);
		} else if (!strcmp(argv[i], "-v")) {
			use_readv = atoi(argv[++i]);
			if (use_readv < 0 || use_readv > 64)
				return die_usage("bad -v (0..64 iovecs)", argv[i]);
		} else if (!strcmp(argv[i], "-H")) {
			if (parse_u64(argv[++i], &pre) < 0 || pre > 4096)
				return die_usage("bad preamble (0..4096 bytes)", argv[i]);
		} else if (!strcmp(argv[i], "-p")) {
			if (parse_u64(argv[++i], &pause_ms) < 0 || pause_ms > 60000)
				return die_usage("bad pause (0..60000 ms)", argv[i]);
		} else
			return die_usage("unknown option", argv[i]);
	}
	if (argc - i != 1)
		return die_usage("recv needs PORT", NULL);
	uint16_t port;
	if (parse_port(argv[i], &port) < 0)
		return die_usage("bad PORT", argv[i]);

	printf("pid %d\n", (int)getpid());
	fflush(stdout);

	struct series s = { .iv = (double)ms / 1000.0 };
	if (csv) {
		s.f = fopen(csv, "w");
		if (!s.f) {
			fprintf(stderr, "nk_stream: %s: %s\n", csv, strerror(errno));
			return 2;
		}
		fprintf(s.f, "t_s,bytes_interval,mbps\n");
		fflush(s.f);
	}

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0) {
		fprintf(stderr, "nk_stream: socket: %s\n", strerror(errno));
		return 3;
	}
	set_cc(ls, cc);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4) < 0) {
		fprintf(stderr, "nk_stream: listen on port %u: %s\n", port, strerror(errno));
		return 3;
	}
	printf("listening on 0.0.0.0:%u\n", port);
	fflush(stdout);
	int fd;
	do
		fd = accept(ls, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		fprintf(stderr, "nk_stream: accept: %s\n", strerror(errno));
		return 3;
	}
	/* The listener stays open until the end: MPTCP's additional subflows
	 * (MP_JOIN) arrive at it after accept(), and a closed one resets them. */
	print_conn(fd);
	if (pre) {
		uint8_t z[4096];
		if (nk_io_recv_full(fd, z, (size_t)pre) != (ssize_t)pre) {
			fprintf(stderr, "nk_stream: preamble: %s\n", errno ? strerror(errno) : "EOF");
			return 3;
		}
	}
	if (pause_ms) {
		/* Leave the connection unread a while (its receive window fills),
		 * as a receiving NSM does with a switched session's new leg. */
		struct timespec ts = { (time_t)(pause_ms / 1000), (long)(pause_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}

	uint8_t *buf = malloc(BUF), *exp = malloc(BUF);
	if (!buf || !exp)
		return 3;
	struct csum cs;
	csum_init(&cs);
	uint64_t off = 0, bad_at = 0;
	int corrupt = 0;
	struct track trk = { 0, 0 };
	double t_last = 0, t_prev = 0, stall = 0, stall_at = 0;
	for (;;) {
		ssize_t n;
		if (use_readv) {
			/* as the NSM reads: into use_readv 16 KiB iovecs */
			struct iovec iv[64];
			for (int j = 0; j < use_readv; j++)
				iv[j] = (struct iovec){ buf + (size_t)j * 16384, 16384 };
			n = readv(fd, iv, use_readv);
		} else {
			n = recv(fd, buf, BUF, 0);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "nk_stream: recv at offset %" PRIu64 ": %s\n", off, strerror(errno));
			return 3;
		}
		double now = mono();
		if (n == 0) {
			t_last = now;
			break;
		}
		if (off == 0) {
			s.t0 = now;
			printf("first byte at %.6f\n", wall());
			fflush(stdout);
		} else if (now - t_prev > stall) {
			stall = now - t_prev;
			stall_at = t_prev - s.t0;
		}
		t_prev = now;
		series_tick(&s, now);
		s.bytes += (uint64_t)n;
		if (!corrupt) {
			gen_fill(seed, off, exp, (size_t)n);
			if (memcmp(buf, exp, (size_t)n) != 0) {
				size_t k = 0;
				while (buf[k] == exp[k])
					k++;
				corrupt = 1;
				bad_at = off + k;
				fprintf(stderr, "nk_stream: stream corrupt at offset %" PRIu64 " (got 0x%02x, want 0x%02x)\n",
					bad_at, buf[k], exp[k]);
			}
		}
		if (corrupt && trk.jumps < NK_TRACK)
			track_buf(&trk, seed, off, buf, (size_t)n, exp);
		csum_add(&cs, buf, (size_t)n);
		off += (uint64_t)n;
	}
	double dt = 0;
	if (off) {
		series_tick(&s, t_last);
		double t_end = t_last - s.t0, start = (double)s.k * s.iv;
		if (s.bytes || t_end > start)
			series_row(&s, t_end, t_end - start);
		dt = t_end;
	}
	uint64_t sum = csum_final(&cs);
	uint64_t ans[2] = { htobe64(off), htobe64(sum) };
	int sent = nk_io_send_all(fd, (const uint8_t *)ans, sizeof(ans)) == 0;
	if (!sent)
		fprintf(stderr, "nk_stream: sending the answer: %s\n", strerror(errno));
	close(fd);
	close(ls);
	if (s.f)
		fclose(s.f);
	free(buf);
	free(exp);
	if (corrupt)
		printf("received %" PRIu64 " checksum 0x%016" PRIx64 " CORRUPT at %" PRIu64
		       " secs %.3f mbps %.1f pid %d stall_ms %.1f at_s %.3f\n",
		       off, sum, bad_at, dt, dt > 0 ? off * 8 / dt / 1e6 : 0.0, (int)getpid(), stall * 1e3, stall_at);
	else
		printf("received %" PRIu64 " checksum 0x%016" PRIx64 " ok secs %.3f mbps %.1f pid %d stall_ms %.1f at_s %.3f\n",
		       off, sum, dt, dt > 0 ? off * 8 / dt / 1e6 : 0.0, (int)getpid(), stall * 1e3, stall_at);
	fflush(stdout);
	return corrupt ? 1 : sent ? 0 : 3;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "send"))
		return do_send(argc - 2, argv + 2);
	if (!strcmp(argv[1], "recv"))
		return do_recv(argc - 2, argv + 2);
	return die_usage("unknown mode", argv[1]);
}
