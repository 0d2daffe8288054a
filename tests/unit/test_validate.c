/* SPDX-License-Identifier: MIT */
/*
 * test_validate - nk_validate_guest_nqe / nk_validate_nsm_nqe accept what the
 * protocol allows and reject every out-of-range field a guest can write.
 * Also a random-garbage sweep: no garbage NQE may validate with a chunk or
 * socket index outside the region.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nk_validate.h"

#include "nk_test.h"

static struct nk_geom g;

static struct nk_nqe nqe(uint8_t op)
{
	struct nk_nqe n;
	memset(&n, 0, sizeof(n));
	n.op = op;
	n.chunk = NK_NO_CHUNK;
	return n;
}

static int ok(const struct nk_nqe *n, uint32_t chan)
{
	const char *why;
	return nk_validate_guest_nqe(&g, chan, n, &why) == 0;
}

static void test_socket(void)
{
	struct nk_nqe n = nqe(NK_OP_SOCKET);
	n.sock = 0xdeadbeef; /* ignored for SOCKET */
	n.arg.sock.domain = AF_INET;
	n.arg.sock.type = SOCK_STREAM;
	CHECK(ok(&n, 0), "AF_INET stream socket accepted");
	n.arg.sock.domain = AF_INET6;
	CHECK(ok(&n, 0), "AF_INET6 accepted");
	n.arg.sock.domain = AF_UNIX;
	CHECK(!ok(&n, 0), "AF_UNIX rejected");
	n.arg.sock.domain = AF_INET;
	n.arg.sock.type = SOCK_RAW;
	CHECK(!ok(&n, 0), "SOCK_RAW rejected");
}

static void test_send(void)
{
	uint32_t c = 3, first = nk_geom_tx_first(&g, c);
	struct nk_nqe n = nqe(NK_OP_SEND);
	n.sock = 5;
	n.chunk = first;
	n.len = g.chunk_size;
	CHECK(ok(&n, c), "full chunk of own partition accepted");
	n.chunk = first + g.tx_per_chan - 1;
	CHECK(ok(&n, c), "last chunk of own partition accepted");
	n.chunk = first + g.tx_per_chan;
	CHECK(!ok(&n, c), "next channel's chunk rejected");
	n.chunk = first - 1;
	CHECK(!ok(&n, c), "previous channel's chunk rejected");
	n.chunk = nk_geom_rx_first(&g);
	CHECK(!ok(&n, c), "RX chunk rejected for send");
	n.chunk = NK_NO_CHUNK;
	CHECK(!ok(&n, c), "no chunk rejected");
	n.chunk = first;
	n.len = 0;
	CHECK(ok(&n, c), "zero length accepted (an empty datagram)");
	n.len = 1;
	n.off = g.chunk_size;
	CHECK(!ok(&n, c), "offset at chunk end rejected");
	n.off = g.chunk_size - 10;
	n.len = 11;
	CHECK(!ok(&n, c), "span past chunk end rejected");
	n.off = 0xfffffff0u;
	n.len = 0x20;
	CHECK(!ok(&n, c), "wrapping off+len rejected");
	n.off = 0;
	n.len = 1;
	n.sock = g.nsocks;
	CHECK(!ok(&n, c), "socket id == nsocks rejected");
	n.sock = 0;
	CHECK(!ok(&n, g.nchan), "channel out of range rejected");
}

static void test_rx_done(void)
{
	struct nk_nqe n = nqe(NK_OP_RX_DONE);
	n.sock = 1;
	CHECK(ok(&n, 0), "rx_done without chunk accepted");
	n.chunk = nk_geom_rx_first(&g);
	CHECK(ok(&n, 0), "rx_done with first RX chunk accepted");
	n.chunk = nk_geom_nchunks(&g);
	CHECK(!ok(&n, 0), "rx_done past last chunk rejected");
	n.chunk = 0;
	CHECK(!ok(&n, 0), "rx_done of a TX chunk rejected");
	n = nqe(NK_OP_RX_DONE);
	n.flags = NK_NQF_ACCEPT;
	n.arg.u32[0] = g.nsocks - 1;
	CHECK(ok(&n, 0), "accept claim accepted");
	n.arg.u32[0] = g.nsocks;
	CHECK(!ok(&n, 0), "accept claim of out-of-range socket rejected");
}

static void test_misc(void)
{
	struct nk_nqe n = nqe(NK_OP_CONNECT);
	n.arg.addr.family = AF_INET;
	CHECK(ok(&n, 0), "connect AF_INET accepted");
	n.arg.addr.family = 0;
	CHECK(!ok(&n, 0), "connect without family rejected");
	n = nqe(NK_OP_SETSOCKOPT);
	n.arg.opt.vlen = NK_OPT_INLINE;
	CHECK(ok(&n, 0), "setsockopt inline max accepted");
	n.arg.opt.vlen = NK_OPT_INLINE + 1;
	CHECK(!ok(&n, 0), "setsockopt too long rejected");
	n.arg.opt.vlen = 4;
	n.flags = NK_NQF_ASYNC;
	CHECK(ok(&n, 0), "asynchronous setsockopt accepted");
	n = nqe(NK_OP_GETSOCKOPT);
	n.flags = NK_NQF_ASYNC;
	CHECK(!ok(&n, 0), "NK_NQF_ASYNC on getsockopt rejected");
	n = nqe(NK_OP_CLOSE);
	n.flags = NK_NQF_ASYNC;
	CHECK(!ok(&n, 0), "NK_NQF_ASYNC on close rejected");
	n = nqe(NK_OP_GETSOCKOPT);
	n.arg.opt.vlen = 200;
	CHECK(!ok(&n, 0), "getsockopt long inline rejected");
	n.chunk = nk_geom_tx_first(&g, 0);
	CHECK(ok(&n, 0), "getsockopt long value via own chunk accepted");
	n = nqe(NK_OP_BIND);
	n.arg.addr.family = AF_INET;
	n.chunk = 0;
	CHECK(!ok(&n, 0), "bind carrying a chunk rejected");
	n = nqe(NK_OP_SHUTDOWN);
	n.arg.u32[0] = 3;
	CHECK(!ok(&n, 0), "shutdown how=3 rejected");
	n = nqe(NK_OP_RX_DATA);
	CHECK(!ok(&n, 0), "NSM-only op from guest rejected");
	n = nqe(NK_OP_GRANT);
	CHECK(!ok(&n, 0), "CE-only op from guest rejected");
	n = nqe(NK_OP_CLOSE);
	n.flags = NK_NQF_COMPLETION;
	CHECK(!ok(&n, 0), "completion flag from guest rejected");
}

static void test_nsm(void)
{
	const char *why;
	struct nk_nqe n = nqe(NK_OP_RX_DATA);
	n.chunk = nk_geom_rx_first(&g);
	n.len = 100;
	CHECK(nk_validate_nsm_nqe(&g, &n, &why) == 0, "RX_DATA accepted");
	CHECK(nk_validate_nsm_nqe(NULL, &n, &why) != 0, "unknown VM rejected");
	n.chunk = 0;
	CHECK(nk_validate_nsm_nqe(&g, &n, &why) != 0, "RX_DATA in TX chunk rejected");
	n = nqe(NK_OP_SEND_DONE);
	n.chunk = nk_geom_rx_first(&g);
	CHECK(nk_validate_nsm_nqe(&g, &n, &why) != 0, "SEND_DONE of RX chunk rejected");
}

/* Garbage never validates into an out-of-range index. */
static void test_garbage(void)
{
	srand(12345);
	uint32_t accepted = 0;
	for (int i = 0; i < 2000000; i++) {
		struct nk_nqe n;
		uint8_t *p = (uint8_t *)&n;
		for (size_t k = 0; k < sizeof(n); k++)
			p[k] = (uint8_t)rand();
		n.op = (uint8_t)(n.op % NK_OP_MAX); /* hit real ops often */
		if (i & 1)
			n.flags = 0;
		if (i & 2)
			n.sock %= g.nsocks * 2;
		if (i & 4)
			n.chunk %= nk_geom_nchunks(&g) * 2;
		uint32_t chan = (uint32_t)rand() % g.nchan;
		if (!ok(&n, chan))
			continue;
		accepted++;
		if (n.op != NK_OP_SOCKET)
			CHECK(n.sock < g.nsocks, "garbage op %u validated with sock %u", n.op, n.sock);
		if (n.chunk != NK_NO_CHUNK) {
			CHECK(n.chunk < nk_geom_nchunks(&g), "garbage validated with chunk %u", n.chunk);
			if (n.op == NK_OP_SEND)
				CHECK((uint64_t)n.off + n.len <= g.chunk_size, "garbage send span");
		}
	}
	printf("garbage sweep: %u of 2000000 random NQEs passed the stateless checks\n", accepted);
	CHECK(accepted > 0, "sweep reached the accepting paths");
}

int main(void)
{
	nk_geom_default(&g, NK_REGION_VM);
	if (nk_geom_layout(&g) < 0) {
		printf("FAIL default geometry\n");
		return 1;
	}
	test_socket();
	test_send();
	test_rx_done();
	test_misc();
	test_nsm();
	test_garbage();
	printf("%s: test_validate\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
