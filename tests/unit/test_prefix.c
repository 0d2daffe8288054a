/* SPDX-License-Identifier: MIT */
/*
 * test_prefix - nk_prefixes_parse/match: the --nk-peers lists that decide
 * which connections carry a session (and so move on a live switch).
 */
#include <stdio.h>

#include "nk_prefix.h"

#include "nk_test.h"

static const uint8_t *ip(int a, int b, int c, int d)
{
	static uint8_t v[4];
	v[0] = (uint8_t)a, v[1] = (uint8_t)b, v[2] = (uint8_t)c, v[3] = (uint8_t)d;
	return v;
}

int main(void)
{
	struct nk_prefixes p;
	CHECK(nk_prefixes_parse(&p, "10.78.0.0/16,192.0.2.7") == 0, "two prefixes parse");
	CHECK(p.n == 2, "two entries");
	CHECK(nk_prefixes_match(&p, ip(10, 78, 1, 12)), "10.78.1.12 in 10.78.0.0/16");
	CHECK(!nk_prefixes_match(&p, ip(10, 79, 0, 1)), "10.79.0.1 not in it");
	CHECK(nk_prefixes_match(&p, ip(192, 0, 2, 7)), "host prefix matches itself");
	CHECK(!nk_prefixes_match(&p, ip(192, 0, 2, 8)), "host prefix matches nothing else");
	CHECK(nk_prefixes_parse(&p, "10.1.2.3/8") == 0 && nk_prefixes_match(&p, ip(10, 200, 0, 1)),
	      "host bits below the mask are ignored");
	CHECK(nk_prefixes_parse(&p, "0.0.0.0/0") == 0 && nk_prefixes_match(&p, ip(203, 0, 113, 9)),
	      "/0 matches everything");
	struct nk_prefixes keep = p;
	const char *bad[] = { "", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "10.0.0", "::1/128",
			      "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9,"
			      "1.1.1.10,1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(nk_prefixes_parse(&p, bad[i]) < 0, "%s", bad[i]);
		CHECK(p.n == keep.n && p.net[0] == keep.net[0], "a failed parse leaves the list as it was");
	}
	printf("%s: test_prefix\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
