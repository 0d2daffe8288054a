/* SPDX-License-Identifier: MIT */
/*
 * bench_ring.c - NQE throughput of one nk_ring between two processes.
 *
 *   bench_ring [-n NQES] [-r RUNS] [-b 1,8,32] [-e ENTRIES] [-p PIPE_NQES]
 *              [-F] [-c CSV] [-j JSONL]
 *
 * A real NK region (nk_region_create: a MAP_SHARED file in /dev/shm) holds
 * one channel; the producer (this process, pinned to CPU 0) pushes NQES
 * NQEs through its up ring with nk_ring_enqueue_burst, the consumer (a forked
 * child that maps the region again from its fd, pinned to CPU 1) pulls them
 * with nk_ring_dequeue_burst. Both sides busy-poll (pause on empty/full).
 * After each burst the producer calls nk_ring_needs_wakeup(), as GuestLib,
 * the NSM and the CoreEngine do (it costs a full fence); -F leaves it out.
 *
 * Each NQE carries its sequence number (cookie) and a value derived from it
 * (len); the consumer checks every NQE arrives in order with the right
 * contents and sums the sequence numbers. A mismatch fails the run (exit 2):
 * the benchmark cannot silently measure nothing.
 *
 * Baseline ("native"): the same NQEs between the same two pinned processes
 * through a kernel pipe, B NQEs per write()/read(): what a syscall-based
 * control path would cost. It moves fewer NQEs (-p) because it is slower.
 *
 * Time: CLOCK_MONOTONIC from just before the producer releases the start
 * flag to the consumer's receipt of the last NQE. Rate = NQES / time.
 * -C adds a third kind, a what-if ring with cached peer indices (see
 * wi_enqueue_burst), reported apart from the shipped ring.
 * Runs alternate the kinds per batch size; median, min and max are printed
 * and written to -j as one JSON object per (kind, batch).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_region.h"

#include "bench_util.h"

#define MAX_BATCH 256
#define MAX_RUNS 64

struct ctl {
	uint32_t ready;      /* consumer mapped and waiting */
	uint32_t go;         /* producer: start */
	uint64_t t0, t1;     /* ns: start, consumer saw the last NQE */
	uint64_t count, sum; /* consumer: NQEs seen, sum of sequence numbers */
	uint64_t bad;        /* consumer: NQEs out of order or with wrong contents */
	int pin_err;         /* consumer: bu_pin result */
	int map_err;
};

static uint32_t tag_of(uint64_t seq) { return (uint32_t)(seq * 2654435761u) ^ 0x5a5a5a5au; }

static void fill(struct nk_nqe *q, uint64_t seq)
{
	q->cookie = seq;
	q->len = tag_of(seq);
}

static bool check(const struct nk_nqe *q, uint64_t seq)
{
	return q->cookie == seq && q->len == tag_of(seq) && q->op == NK_OP_SEND;
}

static void wait_flag(uint32_t *f)
{
	while (!__atomic_load_n(f, __ATOMIC_ACQUIRE))
		bu_cpu_relax();
}

/* ---- what-if: the same ring with cached peer indices (-C) ----
 * The shipped producer (nk_ring_enqueue_burst) caches cons_head since
 * 2026-11-22; the shipped consumer (nk_ring_count) still loads prod_tail on
 * every call. These two helpers cache both, as DPDK and Caladan's lrpc do,
 * to show what the consumer side would add: reload the peer's index only
 * when the cached value says full (producer) or empty (consumer). Same
 * layout, same acquire/release ordering. */
static inline uint32_t wi_enqueue_burst(struct nk_ring *r, const struct nk_nqe *nqe, uint32_t n)
{
	uint32_t tail = r->hdr->prod_tail;
	uint32_t room = r->size - (tail - r->cached_other);
	if (room < n) {
		r->cached_other = __atomic_load_n(&r->hdr->cons_head, __ATOMIC_ACQUIRE);
		uint32_t used = tail - r->cached_other;
		room = used > r->size ? 0 : r->size - used;
	}
	if (n > room)
		n = room;
	for (uint32_t i = 0; i < n; i++)
		r->ents[(tail + i) & r->mask] = nqe[i];
	__atomic_store_n(&r->hdr->prod_tail, tail + n, __ATOMIC_RELEASE);
	return n;
}

static inline uint32_t wi_dequeue_burst(struct nk_ring *r, struct nk_nqe *out, uint32_t n)
{
	uint32_t head = r->hdr->cons_head;
	uint32_t avail = r->cached_other - head;
	if (avail < n) {
		r->cached_other = __atomic_load_n(&r->hdr->prod_tail, __ATOMIC_ACQUIRE);
		avail = r->cached_other - head;
		if (avail > r->size)
			avail = r->size;
	}
	if (n > avail)
		n = avail;
	for (uint32_t i = 0; i < n; i++)
		out[i] = r->ents[(head + i) & r->mask];
	__atomic_store_n(&r->hdr->cons_head, head + n, __ATOMIC_RELEASE);
	return n;
}

static bool g_whatif; /* set per run: use the wi_ helpers */

/* ---- ring ---- */

static void ring_consumer(struct ctl *c, int fd, uint64_t n, uint32_t b)
{
	c->pin_err = bu_pin(1);
	struct nk_region reg;
	char err[128];
	int e = nk_region_map_fd(&reg, fd, NK_REGION_VM, err, sizeof(err));
	if (e < 0) {
		c->map_err = e;
		fprintf(stderr, "bench_ring: consumer map: %s\n", err);
		__atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
		_exit(1);
	}
	struct nk_ring r;
	nk_region_up_ring(&reg, 0, &r);
	struct nk_nqe out[MAX_BATCH];
	uint64_t seq = 0, sum = 0, bad = 0;
	__atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
	wait_flag(&c->go);
	while (seq < n) {
		uint32_t k = g_whatif ? wi_dequeue_burst(&r, out, b) : nk_ring_dequeue_burst(&r, out, b);
		if (k == 0) {
			bu_cpu_relax();
			continue;
		}
		for (uint32_t i = 0; i < k; i++, seq++) {
			bad += !check(&out[i], seq);
			sum += out[i].cookie;
		}
	}
	c->t1 = bu_now_ns();
	c->count = seq;
	c->sum = sum;
	c->bad = bad;
	_exit(0);
}

static void ring_producer(struct ctl *c, struct nk_ring *r, uint64_t n, uint32_t b, bool fence)
{
	struct nk_nqe buf[MAX_BATCH];
	memset(buf, 0, sizeof(buf));
	for (uint32_t i = 0; i < b; i++) {
		buf[i].op = NK_OP_SEND;
		buf[i].sock = 1;
		buf[i].chunk = i;
	}
	wait_flag(&c->ready);
	c->t0 = bu_now_ns();
	__atomic_store_n(&c->go, 1, __ATOMIC_RELEASE);
	uint64_t seq = 0;
	unsigned sink = 0;
	while (seq < n) {
		uint32_t want = n - seq < b ? (uint32_t)(n - seq) : b;
		for (uint32_t i = 0; i < want; i++)
			fill(&buf[i], seq + i);
		uint32_t done = 0;
		while (done < want) {
			uint32_t k = g_whatif ? wi_enqueue_burst(r, buf + done, want - done)
					     : nk_ring_enqueue_burst(r, buf + done, want - done);
			if (k == 0) {
				bu_cpu_relax();
				continue;
			}
			done += k;
			if (fence)
				sink += nk_ring_needs_wakeup(r);
		}
		seq += want;
	}
	if (sink)
		fprintf(stderr, "bench_ring: unexpected need_wakeup\n");
}

/* ---- pipe baseline ---- */

static void pipe_consumer(struct ctl *c, int rfd, uint64_t n, uint32_t b)
{
	c->pin_err = bu_pin(1);
	static struct nk_nqe in[MAX_BATCH + 1];
	uint8_t *p = (uint8_t *)in;
	size_t have = 0, want = (size_t)b * sizeof(struct nk_nqe);
	uint64_t seq = 0, sum = 0, bad = 0;
	__atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
	wait_flag(&c->go);
	while (seq < n) {
		ssize_t r = read(rfd, p + have, want); /* have < one NQE: fits */
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		have += (size_t)r;
		size_t whole = have / sizeof(struct nk_nqe);
		for (size_t i = 0; i < whole; i++, seq++) {
			bad += !check(&in[i], seq);
			sum += in[i].cookie;
		}
		size_t rest = have - whole * sizeof(struct nk_nqe);
		memmove(p, p + whole * sizeof(struct nk_nqe), rest);
		have = rest;
	}
	c->t1 = bu_now_ns();
	c->count = seq;
	c->sum = sum;
	c->bad = bad;
	_exit(0);
}

static int pipe_producer(struct ctl *c, int wfd, uint64_t n, uint32_t b)
{
	struct nk_nqe buf[MAX_BATCH];
	memset(buf, 0, sizeof(buf));
	for (uint32_t i = 0; i < b; i++) {
		buf[i].op = NK_OP_SEND;
		buf[i].sock = 1;
		buf[i].chunk = i;
	}
	wait_flag(&c->ready);
	c->t0 = bu_now_ns();
	__atomic_store_n(&c->go, 1, __ATOMIC_RELEASE);
	uint64_t seq = 0;
	while (seq < n) {
		uint32_t want = n - seq < b ? (uint32_t)(n - seq) : b;
		for (uint32_t i = 0; i < want; i++)
			fill(&buf[i], seq + i);
		size_t len = (size_t)want * sizeof(struct nk_nqe), off = 0;
		while (off < len) {
			ssize_t w = write(wfd, (uint8_t *)buf + off, len - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				perror("bench_ring: pipe write");
				return -1;
			}
			off += (size_t)w;
		}
		seq += want;
	}
	return 0;
}

/* One run; returns NQEs/s, or < 0 when the run is invalid. */
static double one_run(bool pipe_mode, struct ctl *c, struct nk_region *reg, uint64_t n, uint32_t b,
		      bool fence, int *child_pin_err)
{
	memset(c, 0, sizeof(*c));
	struct nk_ring r;
	int pfd[2] = { -1, -1 };
	if (pipe_mode) {
		if (pipe(pfd) < 0) {
			perror("pipe");
			return -1;
		}
	} else {
		nk_region_up_ring(reg, 0, &r);
		nk_ring_reset(&r);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0) {
		if (pipe_mode) {
			close(pfd[1]);
			pipe_consumer(c, pfd[0], n, b);
		}
		ring_consumer(c, reg->fd, n, b);
	}
	int perr = 0;
	if (pipe_mode) {
		close(pfd[0]);
		perr = pipe_producer(c, pfd[1], n, b);
		close(pfd[1]);
	} else {
		ring_producer(c, &r, n, b, fence);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	*child_pin_err = c->pin_err;
	if (perr < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	uint64_t want_sum = n * (n - 1) / 2; /* mod 2^64, same as the sum */
	if (c->count != n || c->sum != want_sum || c->bad) {
		fprintf(stderr,
			"bench_ring: CHECKSUM MISMATCH (%s b=%u): count %" PRIu64 "/%" PRIu64
			" sum %" PRIu64 "/%" PRIu64 " bad %" PRIu64 "\n",
			pipe_mode ? "pipe" : "ring", b, c->count, n, c->sum, want_sum, c->bad);
		return -2;
	}
	return (double)n * 1e9 / (double)(c->t1 - c->t0);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_ring [-n NQES] [-r RUNS] [-b 1,8,32] [-e ENTRIES] "
			"[-p PIPE_NQES] [-F] [-C] [-c CSV] [-j JSONL]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t n = 20000000, pn = 1000000;
	int runs = 5;
	uint32_t entries = NK_DEF_RING_ENTRIES;
	uint32_t batches[16];
	int nb = 0;
	bool fence = true, whatif = false;
	const char *csv = NULL, *jsonl = NULL, *blist = "1,8,32";
	int o;
	while ((o = getopt(argc, argv, "n:r:b:e:p:FCc:j:")) != -1) {
		switch (o) {
		case 'n': n = strtoull(optarg, NULL, 0); break;
		case 'r': runs = atoi(optarg); break;
		case 'b': blist = optarg; break;
		case 'e': entries = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'p': pn = strtoull(optarg, NULL, 0); break;
		case 'F': fence = false; break;
		case 'C': whatif = true; break;
		case 'c': csv = optarg; break;
		case 'j': jsonl = optarg; break;
		default: usage();
		}
	}
	for (const char *s = blist; *s && nb < 16;) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > MAX_BATCH)
			usage();
		batches[nb++] = (uint32_t)v;
		s = *end == ',' ? end + 1 : end;
	}
	if (runs < 1 || runs > MAX_RUNS || n < 1 || pn < 1 || nb == 0)
		usage();

	int pin_err = bu_pin(0);
	if (pin_err < 0)
		fprintf(stderr, "bench_ring: WARNING: pinning the producer to CPU 0 failed: %s\n",
			strerror(-pin_err));

	struct nk_geom g;
	nk_geom_default(&g, NK_REGION_VM);
	g.nchan = 1;
	g.ring_entries = entries;
	g.nsocks = 1;
	g.tx_per_chan = 1;
	g.nrx = 1;
	g.chunk_size = 4096;
	char path[128], err[128];
	snprintf(path, sizeof(path), "/dev/shm/nk-bench-ring-%d", (int)getpid());
	struct nk_region reg;
	uint8_t ip[4] = { 10, 0, 0, 1 };
	int e = nk_region_create(&reg, path, &g, 0, "bench", ip, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "bench_ring: nk_region_create %s: %s\n", path, err);
		return 1;
	}
	unlink(path); /* the fd and mappings keep it alive */

	struct ctl *c = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	FILE *cf = csv ? fopen(csv, "a") : NULL, *jf = jsonl ? fopen(jsonl, "a") : NULL;
	if ((csv && !cf) || (jsonl && !jf)) {
		perror("bench_ring: output file");
		return 1;
	}
	if (cf && ftell(cf) == 0) /* appends: run.sh calls us once per batch size */
		fprintf(cf, "kind,batch,run,nqes,seconds,mnqe_per_s,pinned\n");

	/* kinds: 0 = nk_ring, 1 = pipe, 2 = what-if cached ring (-C) */
	static const char *kname[3] = { "ring", "pipe", "cached" };
	static double rate[3][16][MAX_RUNS];
	int nk = whatif ? 3 : 2;
	int child_pin = 0, any_child_pin_err = 0;
	printf("bench_ring: %u-entry ring, %" PRIu64 " NQEs/run (pipe: %" PRIu64 "), %d runs, "
	       "needs_wakeup fence %s, producer CPU 0, consumer CPU 1\n",
	       entries, n, pn, runs, fence ? "on" : "off");
	for (int run = 0; run < runs; run++) {
		for (int bi = 0; bi < nb; bi++) {
			for (int j = 0; j < nk; j++) {
				int k = (j + run) % nk; /* rotate which kind goes first, run by run */
				bool pm = k == 1;
				g_whatif = k == 2;
				uint64_t cnt = pm ? pn : n;
				double v = one_run(pm, c, &reg, cnt, batches[bi], fence, &child_pin);
				if (v < 0)
					return v == -2 ? 2 : 1;
				if (child_pin < 0)
					any_child_pin_err = child_pin;
				rate[k][bi][run] = v;
				if (cf)
					fprintf(cf, "%s,%u,%d,%" PRIu64 ",%.6f,%.3f,%d\n", kname[k],
						batches[bi], run, cnt, (double)cnt / v, v / 1e6,
						pin_err == 0 && child_pin == 0);
			}
		}
	}
	if (any_child_pin_err)
		fprintf(stderr, "bench_ring: WARNING: pinning the consumer to CPU 1 failed: %s\n",
			strerror(-any_child_pin_err));
	bool pinned = pin_err == 0 && any_child_pin_err == 0;
	printf("%-6s %5s %12s %12s %12s   %s\n", "kind", "batch", "median M/s", "min M/s", "max M/s",
	       "vs goal 50 M/s");
	for (int bi = 0; bi < nb; bi++) {
		double med[3], lo[3], hi[3];
		for (int k = 0; k < nk; k++) {
			med[k] = bu_median(rate[k][bi], (size_t)runs) / 1e6;
			lo[k] = rate[k][bi][0] / 1e6;
			hi[k] = rate[k][bi][runs - 1] / 1e6;
			printf("%-6s %5u %12.2f %12.2f %12.2f   %s\n", kname[k], batches[bi], med[k], lo[k],
			       hi[k], k == 1 ? "" : (med[k] >= 50.0 ? "meets" : "below"));
		}
		if (jf)
			fprintf(jf,
				"{\"name\":\"ring_b%u\",\"unit\":\"M NQE/s\",\"better\":\"higher\","
				"\"nk\":%.3f,\"native\":%.3f,\"ratio\":%.3f,\"runs\":%d,"
				"\"nk_min\":%.3f,\"nk_max\":%.3f,\"native_min\":%.3f,\"native_max\":%.3f,"
				"\"goal\":\">= 50 M NQE/s\",\"meets_goal\":%s,\"pinned\":%s,"
				"\"ring_entries\":%u,\"fence\":%s,\"batch\":%u,"
				"\"native_is\":\"kernel pipe between the same pinned processes, %u NQEs per "
				"write/read\"}\n",
				batches[bi], med[0], med[1], med[0] / med[1], runs, lo[0], hi[0], lo[1], hi[1],
				med[0] >= 50.0 ? "true" : "false", pinned ? "true" : "false", entries,
				fence ? "true" : "false", batches[bi], batches[bi]);
		if (jf && whatif)
			fprintf(jf,
				"{\"name\":\"ring_whatif_cached_b%u\",\"unit\":\"M NQE/s\","
				"\"better\":\"higher\",\"nk\":%.3f,\"native\":%.3f,\"ratio\":%.3f,"
				"\"runs\":%d,\"nk_min\":%.3f,\"nk_max\":%.3f,\"native_min\":%.3f,"
				"\"native_max\":%.3f,\"goal\":\">= 50 M NQE/s\",\"meets_goal\":%s,"
				"\"pinned\":%s,\"ring_entries\":%u,\"fence\":%s,\"batch\":%u,"
				"\"native_is\":\"the shipped nk_ring (this row is a what-if: same ring with "
				"cached peer indices, not the shipped code)\"}\n",
				batches[bi], med[2], med[0], med[2] / med[0], runs, lo[2], hi[2], lo[0], hi[0],
				med[2] >= 50.0 ? "true" : "false", pinned ? "true" : "false", entries,
				fence ? "true" : "false", batches[bi]);
	}
	if (!pinned)
		printf("bench_ring: NOTE: not pinned, numbers include scheduler migration\n");
	if (cf)
		fclose(cf);
	if (jf)
		fclose(jf);
	nk_region_unmap(&reg);
	return 0;
}
