/* SPDX-License-Identifier: MIT */
/*
 * nk_rpc.c - a micro-RPC request/response benchmark (plain POSIX sockets, so
 * it runs natively and as a NetKernel guest alike). Modelled on the
 * micro-RPC echo benchmark of TAS / Virt-TAS: fixed-size requests, one
 * fixed-size response per request, several connections, several requests
 * outstanding per connection (closed loop).
 *
 *   nk_rpc server [-b ADDR] -p PORT
 *       single-threaded epoll server, any number of connections. A
 *       connection starts with a 4-byte message size S (network order,
 *       8..65536); every complete S-byte request is answered with one S-byte
 *       response (the request echoed, so the client can check it). Responses
 *       to the requests of one read are written together.
 *   nk_rpc client -H HOST -p PORT -s SIZE [-c CONNS] [-w OUTSTANDING]
 *                 [-t SECS] [-W WARMUP_SECS]
 *       single-threaded epoll client: CONNS connections (default 4), each
 *       keeping OUTSTANDING requests in flight (default 8). When responses
 *       arrive, as many new requests are sent (one write). Requests carry a
 *       per-connection sequence number in their first 8 bytes; each response
 *       must carry the next expected one (exit 2 otherwise), so the
 *       benchmark cannot count bytes that never made a round trip.
 *       Completions are counted from WARMUP (default 0.5 s) for SECS
 *       (default 3) seconds; latency is send -> complete response per
 *       request (µs histogram). Prints one JSON line:
 *       {"size","conns","window","secs","requests","rate","gbps",
 *        "lat_p50_us","lat_p99_us","lat_avg_us","requests_total","max_stall_ms"}
 *       (requests_total includes the warm-up: the work done by the whole
 *       process, for CPU-per-request accounting; max_stall_ms is the longest
 *       time any connection went without a response, start to end).
 *       gbps counts request + response payload (2 * S * rate * 8).
 *
 * Exit: 0 ok, 1 setup/connection error, 2 a response failed the check.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RPC_MAX_SIZE 65536u
#define RPC_BUF (256u * 1024u)
#define LAT_BUCKETS 200000u /* 1 µs each; the last one is "200 ms or more" */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "nk_rpc: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: nk_rpc server [-b ADDR] -p PORT\n"
			"       nk_rpc client -H HOST -p PORT -s SIZE [-c CONNS] [-w OUTSTANDING] [-t SECS] [-W WARMUP]\n");
	exit(1);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL, 0);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl O_NONBLOCK");
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* RPC semantics: a response must not wait for Nagle. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------ server */

/* Bytes waiting to be written on a non-blocking connection; EPOLLOUT is
 * asked for only while some are left. */
struct outq {
	uint8_t *out;
	size_t out_off, out_len;
	int want_out;
};

struct sconn {
	int fd;
	uint32_t size; /* 0 until the 4-byte header arrived */
	uint8_t *in;
	size_t in_len;
	struct outq q; /* pending responses (partial write) */
};

static void sconn_free(int ep, struct sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->q.out);
	free(c);
}

/* Move what is still unsent to the front, so new bytes go behind it. */
static void outq_compact(struct outq *q)
{
	if (q->out_off > 0) {
		memmove(q->out, q->out + q->out_off, q->out_len - q->out_off);
		q->out_len -= q->out_off;
		q->out_off = 0;
	}
}

/* Write what is pending; returns -1 on a fatal error. tag is the epoll
 * data of fd. */
static int outq_flush(int ep, int fd, void *tag, struct outq *q)
{
	while (q->out_off < q->out_len) {
		ssize_t n = write(fd, q->out + q->out_off, q->out_len - q->out_off);
		if (n > 0) {
			q->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!q->want_out) {
				struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = tag};
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
				q->want_out = 1;
			}
			return 0;
		}
		return -1;
	}
	q->out_off = q->out_len = 0;
	if (q->want_out) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
		epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
		q->want_out = 0;
	}
	return 0;
}

/* Read what is there, answer every complete request. -1: close the conn. */
static int sconn_read(int ep, struct sconn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->in_len, RPC_BUF - c->in_len);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		c->in_len += (size_t)n;
		size_t off = 0;
		if (c->size == 0) {
			if (c->in_len < 4)
				continue;
			uint32_t s;
			memcpy(&s, c->in, 4);
			s = ntohl(s);
			if (s < 8 || s > RPC_MAX_SIZE) {
				fprintf(stderr, "nk_rpc server: bad message size %u\n", s);
				return -1;
			}
			c->size = s;
			off = 4;
		}
		size_t k = (c->in_len - off) / c->size;
		if (k > 0) {
			size_t bytes = k * c->size;
			/* responses still unsent move to the front, new ones follow */
			outq_compact(&c->q);
			if (c->q.out_len + bytes > RPC_BUF) {
				/* the client's window bounds this; only a client that
				 * never reads gets here */
				fprintf(stderr, "nk_rpc server: client does not read its responses\n");
				return -1;
			}
			/* the response is the request: copy it to the out buffer */
			memcpy(c->q.out + c->q.out_len, c->in + off, bytes);
			c->q.out_len += bytes;
			off += bytes;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
		if (k > 0 && outq_flush(ep, c->fd, c, &c->q) < 0)
			return -1;
	}
}

static int run_server(const char *bind_addr, int port)
{
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "nk_rpc: bad address %s\n", bind_addr);
		return 1;
	}
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(ls, 128) < 0)
		die("listen");
	set_nonblock(ls);
	int ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
		die("epoll_ctl listener");
	printf("nk_rpc server listening on %s:%d\n", bind_addr, port);
	fflush(stdout);
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;
			if (c == NULL) {
				for (;;) {
					int fd = accept(ls, NULL, NULL);
					if (fd < 0)
						break;
					set_nonblock(fd);
					set_nodelay(fd);
					c = calloc(1, sizeof(*c));
					if (c == NULL || (c->in = malloc(RPC_BUF)) == NULL ||
					    (c->q.out = malloc(RPC_BUF)) == NULL)
						die("malloc");
					c->fd = fd;
					struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0)
						die("epoll_ctl conn");
				}
				continue;
			}
			int bad = 0;
			if (evs[i].events & EPOLLOUT)
				bad = outq_flush(ep, c->fd, c, &c->q) < 0;
			if (!bad && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				bad = sconn_read(ep, c) < 0;
			if (bad)
				sconn_free(ep, c);
		}
	}
}

/* ------------------------------------------------------------------ client */

struct cconn {
	int fd;
	uint64_t next_send;   /* sequence number of the next request */
	uint64_t next_expect; /* sequence number of the next response */
	uint8_t *in;
	size_t in_len;
	struct outq q;
	uint64_t *sent_ns; /* ring of window send times, by sequence % window */
	uint64_t last_ns;  /* when this connection last completed a response */
};

static uint32_t g_size, g_window;
static uint32_t *g_hist;
static uint64_t g_lat_sum_ns, g_lat_n;

/* Queue n new requests on c (one write later). */
static void cconn_queue(struct cconn *c, uint32_t n, uint64_t t)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *m = c->q.out + c->q.out_len;
		uint64_t seq = c->next_send++;
		memcpy(m, &seq, 8);
		/* the rest of the message: a byte derived from the sequence */
		m[8 % g_size] = (uint8_t)seq;
		c->sent_ns[seq % g_window] = t;
		c->q.out_len += g_size;
	}
}

static int connect_to(const char *host, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "nk_rpc: bad address %s\n", host);
		exit(1);
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	set_nodelay(fd);
	return fd;
}

static int run_client(const char *host, int port, uint32_t size, uint32_t conns, uint32_t window,
		      double secs, double warmup)
{
	signal(SIGPIPE, SIG_IGN);
	g_size = size;
	g_window = window;
	g_hist = calloc(LAT_BUCKETS, sizeof(*g_hist));
	struct cconn *cs = calloc(conns, sizeof(*cs));
	if (g_hist == NULL || cs == NULL)
		die("calloc");
	int ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	size_t obuf = (size_t)size * window + 4;
	for (uint32_t i = 0; i < conns; i++) {
		struct cconn *c = &cs[i];
		c->fd = connect_to(host, port);
		c->in = malloc(RPC_BUF);
		c->q.out = malloc(obuf);
		c->sent_ns = calloc(window, sizeof(uint64_t));
		if (c->in == NULL || c->q.out == NULL || c->sent_ns == NULL)
			die("malloc");
	}
	uint64_t t0 = now_ns();
	uint64_t t_start = t0 + (uint64_t)(warmup * 1e9);
	uint64_t t_end = t_start + (uint64_t)(secs * 1e9);
	uint64_t counted = 0, total = 0, max_stall = 0;
	for (uint32_t i = 0; i < conns; i++) {
		struct cconn *c = &cs[i];
		uint32_t hs = htonl(size);
		memcpy(c->q.out, &hs, 4);
		c->q.out_len = 4; /* the first window goes out behind the header */
		cconn_queue(c, window, now_ns());
		c->last_ns = now_ns();
		set_nonblock(c->fd);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			die("epoll_ctl");
		if (outq_flush(ep, c->fd, c, &c->q) < 0)
			die("write");
	}
	struct epoll_event evs[64];
	for (;;) {
		uint64_t t = now_ns();
		if (t >= t_end)
			break;
		int timeout_ms = (int)((t_end - t) / 1000000u) + 1;
		int n = epoll_wait(ep, evs, 64, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct cconn *c = evs[i].data.ptr;
			if (evs[i].events & EPOLLOUT) {
				if (outq_flush(ep, c->fd, c, &c->q) < 0)
					die("write");
			}
			if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				continue;
			for (;;) {
				ssize_t r = read(c->fd, c->in + c->in_len, RPC_BUF - c->in_len);
				if (r == 0) {
					fprintf(stderr, "nk_rpc: server closed a connection\n");
					return 1;
				}
				if (r < 0) {
					if (errno == EINTR)
						continue;
					if (errno == EAGAIN || errno == EWOULDBLOCK)
						break;
					die("read");
				}
				c->in_len += (size_t)r;
				size_t k = c->in_len / size;
				if (k == 0)
					continue;
				uint64_t tn = now_ns();
				if (tn - c->last_ns > max_stall)
					max_stall = tn - c->last_ns;
				c->last_ns = tn;
				for (size_t j = 0; j < k; j++) {
					const uint8_t *m = c->in + j * size;
					uint64_t seq;
					memcpy(&seq, m, 8);
					if (seq != c->next_expect || m[8 % size] != (uint8_t)seq) {
						fprintf(stderr, "nk_rpc: response %llu carries sequence %llu: stream corrupted\n",
							(unsigned long long)c->next_expect, (unsigned long long)seq);
						return 2;
					}
					if (tn >= t_start && tn < t_end) {
						uint64_t lat = tn - c->sent_ns[seq % window];
						uint64_t b = lat / 1000u;
						g_hist[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
						g_lat_sum_ns += lat;
						g_lat_n++;
						counted++;
					}
					c->next_expect++;
					total++;
				}
				size_t used = k * size;
				memmove(c->in, c->in + used, c->in_len - used);
				c->in_len -= used;
				/* Closed loop: as many new requests as completed. If a
				 * previous write is still pending, append behind it. */
				outq_compact(&c->q);
				cconn_queue(c, (uint32_t)k, tn);
				if (outq_flush(ep, c->fd, c, &c->q) < 0)
					die("write");
			}
		}
	}
	/* a connection that has been silent until the end stalled too */
	uint64_t t_stop = now_ns();
	for (uint32_t i = 0; i < conns; i++)
		if (t_stop - cs[i].last_ns > max_stall)
			max_stall = t_stop - cs[i].last_ns;
	double p50 = 0, p99 = 0;
	uint64_t acc = 0;
	int have50 = 0;
	for (uint32_t b = 0; b < LAT_BUCKETS && g_lat_n > 0; b++) {
		acc += g_hist[b];
		if (!have50 && acc * 2 >= g_lat_n) {
			p50 = b + 0.5;
			have50 = 1;
		}
		if (acc * 100 >= g_lat_n * 99) {
			p99 = b + 0.5;
			break;
		}
	}
	double rate = (double)counted / secs;
	printf("{\"size\":%u,\"conns\":%u,\"window\":%u,\"secs\":%.3f,\"requests\":%llu,\"rate\":%.1f,"
	       "\"gbps\":%.4f,\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_avg_us\":%.2f,\"requests_total\":%llu,\"max_stall_ms\":%.1f}\n",
	       size, conns, window, secs, (unsigned long long)counted, rate, rate * 2.0 * size * 8 / 1e9, p50,
	       p99, g_lat_n ? (double)g_lat_sum_ns / (double)g_lat_n / 1000.0 : 0.0, (unsigned long long)total,
	       (double)max_stall / 1e6);
	for (uint32_t i = 0; i < conns; i++)
		close(cs[i].fd);
	return counted > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	const char *host = NULL, *bind_addr = "0.0.0.0";
	int port = 0;
	long size = 0, conns = 4, window = 8;
	double secs = 3, warmup = 0.5;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "b:H:p:s:c:w:t:W:")) != -1) {
		switch (opt) {
		case 'b': bind_addr = optarg; break;
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 's': size = atol(optarg); break;
		case 'c': conns = atol(optarg); break;
		case 'w': window = atol(optarg); break;
		case 't': secs = atof(optarg); break;
		case 'W': warmup = atof(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535)
		usage();
	if (strcmp(mode, "server") == 0)
		return run_server(bind_addr, port);
	if (strcmp(mode, "client") != 0 || host == NULL)
		usage();
	if (size < 8 || size > (long)RPC_MAX_SIZE || conns < 1 || conns > 1024 || window < 1 ||
	    (size_t)size * (size_t)window > RPC_BUF / 2 || secs <= 0 || warmup < 0) {
		fprintf(stderr, "nk_rpc: need 8 <= size <= %u, 1 <= conns <= 1024, window >= 1, "
				"size*window <= %u, secs > 0\n", RPC_MAX_SIZE, RPC_BUF / 2);
		return 1;
	}
	return run_client(host, port, (uint32_t)size, (uint32_t)conns, (uint32_t)window, secs, warmup);
}
