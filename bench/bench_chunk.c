/* SPDX-License-Identifier: MIT */
/*
 * bench_chunk.c - what an application byte costs to cross a chunk.
 *
 *   bench_chunk [-r RUNS] [-s SAMPLES] [-m hot|stream] [-c CSV] [-j JSONL]
 *
 * For each size (64 B .. 8 KiB) three operations are timed in the same run,
 * interleaved sample by sample (the order rotates every sample):
 *
 *   native  memcpy(sockbuf, app, n): the one copy a native send() makes
 *           (user buffer -> kernel socket buffer).
 *   nk      the NetKernel path: nk_pool_get() a TX chunk, memcpy(chunk, app, n)
 *           (GuestLib's send), memcpy(sockbuf, chunk, n) (the NSM side: the
 *           kernel copies the chunk into its socket buffer when the NSM calls
 *           sendmsg on it), nk_pool_put() the chunk (SEND_DONE).
 *   nk_in   only GuestLib's copy into the chunk (+ get/put): the copy NetKernel
 *           adds, since the chunk -> socket buffer copy replaces native's.
 *
 * The chunk lives in a real NK region (nk_region_create: MAP_SHARED tmpfs in
 * /dev/shm, 16 KiB chunks), allocated with the real nk_pool. Mode "hot" (the
 * default) gets and puts one chunk per operation, so the LIFO pool hands back
 * the same, cache-hot chunk, as a request/response sender would see. Mode
 * "stream" keeps 32 chunks in flight (GuestLib's per-socket limit) and
 * reuses the oldest, so each operation touches the chunk used 32 operations
 * ago (32 x size bytes cycle through the cache), as a bulk sender's do.
 * Ring and CoreEngine costs are not included (bench_ring measures those).
 *
 * Timing: a sample is K back-to-back operations of one kind (K chosen so a
 * sample lasts about 1-2 us, far above the ~10 ns cost of reading the TSC)
 * bracketed by lfence;rdtsc. The TSC (constant_tsc) is calibrated against
 * CLOCK_MONOTONIC over 3 x 50 ms windows (median). Per-operation time is
 * sample ticks / K / ticks-per-ns; a run reports the median over SAMPLES
 * samples; RUNS runs give the median of run medians plus min and max.
 * Without an x86 TSC, clock_gettime brackets the sample instead.
 *
 * Every copy is checked once per run and size (destination == source), and
 * the source pattern changes each run, so no copy can be optimised away.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkernel/nk_abi.h"
#include "nk_pool.h"
#include "nk_region.h"

#include "bench_util.h"

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t ticks(void)
{
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
}
#define HAVE_TSC 1
#else
static inline uint64_t ticks(void) { return bu_now_ns(); }
#define HAVE_TSC 0
#endif

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#define MAX_RUNS 64
#define INFLIGHT 32

static const size_t sizes[] = { 64, 512, 1024, 2048, 4096, 8192 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static struct nk_region reg;
static struct nk_pool pool;
static uint8_t *app, *sockbuf;
static bool stream_mode;
static uint32_t held[INFLIGHT];
static unsigned held_pos;
static volatile size_t vsize; /* sizes reach memcpy through a volatile: no inlining per size */

static double ticks_per_ns(void)
{
#if HAVE_TSC
	double v[3];
	for (int i = 0; i < 3; i++) {
		uint64_t n0 = bu_now_ns(), t0 = ticks();
		while (bu_now_ns() - n0 < 50000000ull)
			;
		uint64_t n1 = bu_now_ns(), t1 = ticks();
		v[i] = (double)(t1 - t0) / (double)(n1 - n0);
	}
	return bu_median(v, 3);
#else
	return 1.0;
#endif
}

/* One chunk for the next operation: hot = pool get (LIFO: the same one
 * comes back); stream = 32 in flight, the oldest goes back first. */
static inline uint32_t chunk_get(void)
{
	uint32_t c;
	if (!stream_mode) {
		if (!nk_pool_get(&pool, &c))
			abort();
		return c;
	}
	if (!nk_pool_put(&pool, held[held_pos]))
		abort();
	if (!nk_pool_get(&pool, &c))
		abort();
	return c; /* LIFO: the chunk just put back, i.e. the one used 32 ops ago */
}

static inline void chunk_put(uint32_t c)
{
	if (!stream_mode) {
		if (!nk_pool_put(&pool, c))
			abort();
		return;
	}
	held[held_pos] = c;
	held_pos = (held_pos + 1) % INFLIGHT;
}

static inline void op_native(size_t n)
{
	memcpy(sockbuf, app, n);
	BARRIER();
}

static inline void op_nk(size_t n)
{
	uint32_t c = chunk_get();
	uint8_t *p = nk_region_chunk(&reg, c);
	memcpy(p, app, n); /* GuestLib: app -> chunk */
	BARRIER();
	memcpy(sockbuf, p, n); /* NSM: chunk -> socket buffer */
	BARRIER();
	chunk_put(c);
}

static inline void op_nk_in(size_t n)
{
	uint32_t c = chunk_get();
	memcpy(nk_region_chunk(&reg, c), app, n);
	BARRIER();
	chunk_put(c);
}

static uint64_t sample(int kind, size_t n, unsigned k)
{
	uint64_t t0 = ticks();
	switch (kind) {
	case 0:
		for (unsigned i = 0; i < k; i++)
			op_native(n);
		break;
	case 1:
		for (unsigned i = 0; i < k; i++)
			op_nk(n);
		break;
	default:
		for (unsigned i = 0; i < k; i++)
			op_nk_in(n);
		break;
	}
	return ticks() - t0;
}

static int verify(size_t n)
{
	memset(sockbuf, 0, n);
	op_native(n);
	if (memcmp(sockbuf, app, n))
		return -1;
	memset(sockbuf, 0, n);
	op_nk(n);
	if (memcmp(sockbuf, app, n))
		return -1;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_chunk [-r RUNS] [-s SAMPLES] [-m hot|stream] [-c CSV] "
			"[-j JSONL]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int runs = 5, samples = 4001;
	const char *csv = NULL, *jsonl = NULL, *mode = "hot";
	int o;
	while ((o = getopt(argc, argv, "r:s:m:c:j:")) != -1) {
		switch (o) {
		case 'r': runs = atoi(optarg); break;
		case 's': samples = atoi(optarg); break;
		case 'm': mode = optarg; break;
		case 'c': csv = optarg; break;
		case 'j': jsonl = optarg; break;
		default: usage();
		}
	}
	if (runs < 1 || runs > MAX_RUNS || samples < 11)
		usage();
	if (!strcmp(mode, "stream"))
		stream_mode = true;
	else if (strcmp(mode, "hot"))
		usage();

	int pe = bu_pin(0);
	if (pe < 0)
		fprintf(stderr, "bench_chunk: WARNING: pinning to CPU 0 failed: %s\n", strerror(-pe));

	struct nk_geom g;
	nk_geom_default(&g, NK_REGION_VM);
	g.nchan = 1;
	g.nsocks = 1;
	g.tx_per_chan = NK_DEF_TX_PER_CHAN; /* 64 x 16 KiB: GuestLib's per-process window */
	g.nrx = 1;
	char path[128], err[128];
	snprintf(path, sizeof(path), "/dev/shm/nk-bench-chunk-%d", (int)getpid());
	uint8_t ip[4] = { 10, 0, 0, 1 };
	if (nk_region_create(&reg, path, &g, 0, "bench", ip, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_chunk: nk_region_create %s: %s\n", path, err);
		return 1;
	}
	unlink(path);
	if (nk_pool_init(&pool, nk_geom_tx_first(&reg.g, 0), g.tx_per_chan) < 0) {
		fprintf(stderr, "bench_chunk: nk_pool_init failed\n");
		return 1;
	}
	/* fault every TX chunk in before timing */
	for (uint32_t i = 0; i < g.tx_per_chan; i++)
		memset(nk_region_chunk(&reg, nk_geom_tx_first(&reg.g, 0) + i), 0, g.chunk_size);
	if (stream_mode)
		for (int i = 0; i < INFLIGHT; i++)
			if (!nk_pool_get(&pool, &held[i]))
				return 1;
	/* The app buffer sits 256 B and the socket buffer 128 B into a page
	 * (a socket buffer's data starts after some headroom); chunks are page
	 * aligned. No src/dst pair is then congruent mod 4 KiB, which would make
	 * every copy ~30% slower on x86 (4K aliasing) and blur the comparison. */
	uint8_t *abuf = aligned_alloc(4096, 16384 + 4096), *sbuf = aligned_alloc(4096, 16384 + 4096);
	if (!abuf || !sbuf)
		return 1;
	app = abuf + 256;
	sockbuf = sbuf + 128;
	if (!app || !sockbuf)
		return 1;
	memset(sockbuf, 0, 16384);

	double tpn = ticks_per_ns();
	FILE *cf = csv ? fopen(csv, "w") : NULL, *jf = jsonl ? fopen(jsonl, "a") : NULL;
	if ((csv && !cf) || (jsonl && !jf)) {
		perror("bench_chunk: output file");
		return 1;
	}
	if (cf)
		fprintf(cf, "mode,size,run,native_ns,nk_ns,nk_in_ns,ratio,ratio_in\n");

	static double med[3][NSIZES][MAX_RUNS];
	double *sv[3];
	for (int k = 0; k < 3; k++)
		sv[k] = malloc(sizeof(double) * (size_t)samples);
	printf("bench_chunk: mode %s, %s, %.3f ticks/ns, %d samples x %d runs per size\n", mode,
	       HAVE_TSC ? "rdtsc" : "clock_gettime", tpn, samples, runs);

	for (int run = 0; run < runs; run++) {
		for (size_t i = 0; i < 16384; i++)
			app[i] = (uint8_t)(i * 131u + (unsigned)run * 17u + 1u);
		for (size_t si = 0; si < NSIZES; si++) {
			vsize = sizes[si];
			size_t n = vsize;
			if (verify(n)) {
				fprintf(stderr, "bench_chunk: COPY CHECK FAILED at %zu B\n", n);
				return 2;
			}
			unsigned k = (unsigned)(16384 / n);
			if (k < 4)
				k = 4;
			if (k > 64)
				k = 64;
			for (int w = 0; w < 200; w++) /* warm-up */
				for (int kind = 0; kind < 3; kind++)
					(void)sample(kind, n, k);
			for (int s = 0; s < samples; s++) {
				for (int j = 0; j < 3; j++) {
					int kind = (j + s) % 3; /* rotate the order */
					sv[kind][s] = (double)sample(kind, n, k) / (double)k / tpn;
				}
			}
			for (int kind = 0; kind < 3; kind++)
				med[kind][si][run] = bu_median(sv[kind], (size_t)samples);
			if (cf)
				fprintf(cf, "%s,%zu,%d,%.2f,%.2f,%.2f,%.3f,%.3f\n", mode, n, run,
					med[0][si][run], med[1][si][run], med[2][si][run],
					med[1][si][run] / med[0][si][run],
					med[2][si][run] / med[0][si][run]);
		}
	}

	printf("%6s %10s %10s %10s %7s %8s  %s\n", "size", "memcpy ns", "nk ns", "nk_in ns",
	       "nk/mem", "in/mem", "HotNets'17 (prototype)");
	for (size_t si = 0; si < NSIZES; si++) {
		double m[3], lo[3], hi[3];
		for (int kind = 0; kind < 3; kind++) {
			m[kind] = bu_median(med[kind][si], (size_t)runs);
			lo[kind] = med[kind][si][0];
			hi[kind] = med[kind][si][runs - 1];
		}
		const char *ref = sizes[si] == 64 ? "8 ns" : sizes[si] == 8192 ? "809 ns" : "";
		printf("%6zu %10.1f %10.1f %10.1f %7.2f %8.2f  %s\n", sizes[si], m[0], m[1], m[2],
		       m[1] / m[0], m[2] / m[0], ref);
		if (jf)
			fprintf(jf,
				"{\"name\":\"chunk_copy_%s_%zu\",\"unit\":\"ns\",\"better\":\"lower\","
				"\"nk\":%.2f,\"native\":%.2f,\"ratio\":%.3f,\"runs\":%d,"
				"\"nk_min\":%.2f,\"nk_max\":%.2f,\"native_min\":%.2f,\"native_max\":%.2f,"
				"\"nk_in\":%.2f,\"ratio_in\":%.3f,\"size\":%zu,\"mode\":\"%s\","
				"\"goal\":\"ratio <= 1.5\",\"meets_goal\":%s,\"hotnets_ns\":%s,"
				"\"native_is\":\"memcpy app -> socket buffer (native send's one copy)\"}\n",
				mode, sizes[si], m[1], m[0], m[1] / m[0], runs, lo[1], hi[1], lo[0], hi[0],
				m[2], m[2] / m[0], sizes[si], mode, m[1] / m[0] <= 1.5 ? "true" : "false",
				sizes[si] == 64 ? "8" : sizes[si] == 8192 ? "809" : "null");
	}
	printf("nk = app->chunk + chunk->socket buffer (2 copies) + pool get/put; nk_in = the "
	       "app->chunk copy alone (what NetKernel adds); goal nk/mem <= 1.5\n");
	if (cf)
		fclose(cf);
	if (jf)
		fclose(jf);
	nk_region_unmap(&reg);
	return 0;
}
