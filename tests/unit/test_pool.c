/* SPDX-License-Identifier: MIT */
/*
 * test_pool - the process-private chunk free list (dataplane/nk_pool.h):
 * init, get/put, exhaustion, double free, foreign indices, lowest-first order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_pool.h"

#include "nk_test.h"

static void test_basic(void)
{
	section("init [100, 108): all free, handed out lowest first");
	struct nk_pool p;
	uint32_t idx;
	CHECK(nk_pool_init(&p, 100, 8) == 0, "init failed");
	CHECK(nk_pool_avail(&p) == 8 && nk_pool_used(&p) == 0, "avail %u used %u",
	      nk_pool_avail(&p), nk_pool_used(&p));
	for (uint32_t i = 0; i < 8; i++) {
		CHECK(nk_pool_get(&p, &idx), "get %u failed", i);
		CHECK(idx == 100 + i, "get %u returned %u, want %u (lowest first)", i, idx, 100 + i);
		CHECK(nk_pool_used(&p) == i + 1, "used %u after %u gets", nk_pool_used(&p), i + 1);
	}

	section("exhaustion");
	idx = 0xdeadbeef;
	CHECK(!nk_pool_get(&p, &idx), "get from an empty pool succeeded");
	CHECK(idx == 0xdeadbeef, "failed get wrote %u", idx);
	CHECK(nk_pool_avail(&p) == 0 && nk_pool_used(&p) == 8, "avail %u used %u",
	      nk_pool_avail(&p), nk_pool_used(&p));

	section("foreign indices are rejected");
	static const uint32_t foreign[] = { 0, 99, 108, 1000, UINT32_MAX, UINT32_MAX - 99 };
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		CHECK(!nk_pool_owns(&p, foreign[i]), "owns foreign %u", foreign[i]);
		CHECK(!nk_pool_put(&p, foreign[i]), "put of foreign %u accepted", foreign[i]);
	}
	CHECK(nk_pool_owns(&p, 100) && nk_pool_owns(&p, 107), "does not own its bounds");
	CHECK(nk_pool_used(&p) == 8, "foreign puts changed the count");

	section("put/get and double free");
	CHECK(nk_pool_put(&p, 103), "put 103 refused");
	CHECK(!nk_pool_put(&p, 103), "double free of 103 accepted");
	CHECK(nk_pool_avail(&p) == 1, "avail %u after one put (double free counted?)",
	      nk_pool_avail(&p));
	CHECK(nk_pool_get(&p, &idx) && idx == 103, "get after put returned %u", idx);
	CHECK(!nk_pool_get(&p, &idx), "pool handed out more than it had");
	for (uint32_t i = 100; i < 108; i++)
		CHECK(nk_pool_put(&p, i), "put %u refused", i);
	for (uint32_t i = 100; i < 108; i++)
		CHECK(!nk_pool_put(&p, i), "second put of %u accepted", i);
	CHECK(nk_pool_avail(&p) == 8 && nk_pool_used(&p) == 0, "avail %u used %u after returning all",
	      nk_pool_avail(&p), nk_pool_used(&p));
	/* Every index comes back exactly once. */
	uint32_t seen = 0;
	while (nk_pool_get(&p, &idx)) {
		CHECK(idx >= 100 && idx < 108, "got foreign %u", idx);
		if (idx >= 100 && idx < 108) {
			CHECK(!(seen & (1u << (idx - 100))), "index %u handed out twice", idx);
			seen |= 1u << (idx - 100);
		}
	}
	CHECK(seen == 0xff, "indices missing: seen mask %#x", seen);
	nk_pool_fini(&p);
}

static void test_large(void)
{
	section("pool of 2048 starting at 0: full cycle, random returns");
	struct nk_pool p;
	uint32_t idx;
	enum { N = 2048 };
	static uint32_t held[N];
	CHECK(nk_pool_init(&p, 0, N) == 0, "init failed");
	for (uint32_t i = 0; i < N; i++) {
		CHECK(nk_pool_get(&p, &held[i]) && held[i] == i, "get %u returned %u", i, held[i]);
	}
	CHECK(!nk_pool_get(&p, &idx), "get beyond 2048");
	/* Return in a scrambled order (odd multiplier mod 2^11 is a permutation). */
	for (uint32_t i = 0; i < N; i++)
		CHECK(nk_pool_put(&p, (i * 1237u) % N), "put %u refused", (i * 1237u) % N);
	CHECK(nk_pool_used(&p) == 0, "used %u", nk_pool_used(&p));
	CHECK(!nk_pool_put(&p, N), "put of %u (one past the end) accepted", N);
	uint32_t count = 0;
	while (nk_pool_get(&p, &idx))
		count++;
	CHECK(count == N, "got %u indices back, want %u", count, N);
	nk_pool_fini(&p);
	CHECK(p.stack == NULL && p.count == 0, "fini did not clear the pool");
}

static void test_empty_pool(void)
{
	section("pool of zero indices");
	struct nk_pool p;
	uint32_t idx;
	CHECK(nk_pool_init(&p, 5, 0) == 0, "init of an empty pool failed");
	CHECK(!nk_pool_get(&p, &idx), "get from a zero-size pool");
	CHECK(!nk_pool_owns(&p, 5) && !nk_pool_put(&p, 5), "zero-size pool owns 5");
	nk_pool_fini(&p);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_basic();
	test_large();
	test_empty_pool();
	if (failures) {
		printf("test_pool: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_pool: all checks passed\n");
	return 0;
}
