/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - small helpers shared by the dataplane microbenchmarks:
 * clocks, CPU pinning, order statistics, JSON result lines.
 *
 * Benchmarks report; they never fail on speed. They exit non-zero only when
 * the measurement itself is invalid (checksum mismatch, setup error).
 */
#ifndef NK_BENCH_UTIL_H
#define NK_BENCH_UTIL_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void bu_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/** Pin the calling process to cpu. Returns 0, or -errno (the caller reports it). */
static inline int bu_pin(int cpu)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpu < 0 || ncpu <= cpu)
		return -ENODEV;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	return 0;
}

static int bu_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/** Sorts v in place; returns the median. */
static inline double bu_median(double *v, size_t n)
{
	if (n == 0)
		return 0.0;
	qsort(v, n, sizeof(*v), bu_cmp_double);
	return (n & 1) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/** After bu_median (sorted): the q-quantile, nearest rank. */
static inline double bu_quantile_sorted(const double *v, size_t n, double q)
{
	if (n == 0)
		return 0.0;
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

#endif /* NK_BENCH_UTIL_H */
