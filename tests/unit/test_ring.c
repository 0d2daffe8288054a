/* SPDX-License-Identifier: MIT */
/*
 * test_ring - the SPSC NQE ring of include/netkernel/nk_ring.h.
 *
 * Single process: empty/full, wrap-around of the 32-bit indices, burst
 * counts, peek/skip, corrupt peer indices (clamped as nk_ring.h documents),
 * the need_wakeup handshake.
 * Two processes: a producer and a consumer on a MAP_SHARED anonymous region
 * move 1,000,000 NQEs with sequence numbers and a checksum, sleeping on
 * eventfds via need_wakeup. Every wait is bounded, so a dead peer turns into a
 * failure, never a hang. No assertion depends on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netkernel/nk_ring.h"

#include "nk_test.h"

/* A ring in private memory: header + entries, cache-line aligned. */
struct test_ring {
	struct nk_ring r;
	void *mem;
};

static void tr_init(struct test_ring *t, uint32_t size)
{
	size_t bytes = sizeof(struct nk_ring_hdr) + (size_t)size * sizeof(struct nk_nqe);
	if (posix_memalign(&t->mem, NK_CACHELINE, bytes) != 0) {
		perror("posix_memalign");
		exit(1);
	}
	memset(t->mem, 0xa5, bytes); /* garbage: reset must establish the state */
	nk_ring_view(&t->r, t->mem, (uint8_t *)t->mem + sizeof(struct nk_ring_hdr), size);
	nk_ring_reset(&t->r);
}

static void tr_free(struct test_ring *t) { free(t->mem); }

static void tr_set(struct test_ring *t, uint32_t prod_tail, uint32_t cons_head)
{
	t->r.hdr->prod_tail = prod_tail;
	t->r.hdr->cons_head = cons_head;
}

static struct nk_nqe mk(uint64_t seq)
{
	struct nk_nqe n;
	memset(&n, 0, sizeof(n));
	n.op = NK_OP_SEND;
	n.sock = (uint32_t)(seq * 2654435761u);
	n.cookie = seq;
	n.len = (uint32_t)(seq >> 7);
	n.arg.u32[7] = (uint32_t)~seq;
	return n;
}

static int is(const struct nk_nqe *n, uint64_t seq)
{
	struct nk_nqe want = mk(seq);
	return memcmp(n, &want, sizeof(want)) == 0;
}

static void test_empty_full(void)
{
	section("empty and full ring (size 8)");
	struct test_ring t;
	struct nk_nqe n, out[16];
	tr_init(&t, 8);
	CHECK(nk_ring_count(&t.r) == 0, "new ring not empty");
	CHECK(nk_ring_free(&t.r) == 8, "free %u", nk_ring_free(&t.r));
	CHECK(!nk_ring_dequeue(&t.r, &n), "dequeue from empty ring succeeded");
	CHECK(!nk_ring_peek(&t.r, &n), "peek at empty ring succeeded");
	CHECK(nk_ring_dequeue_burst(&t.r, out, 16) == 0, "burst from empty ring");
	for (uint64_t i = 0; i < 8; i++) {
		n = mk(i);
		CHECK(nk_ring_enqueue(&t.r, &n), "enqueue %" PRIu64 " of 8 failed", i);
	}
	CHECK(nk_ring_free(&t.r) == 0, "full ring has %u free", nk_ring_free(&t.r));
	CHECK(nk_ring_count(&t.r) == 8, "full ring count %u", nk_ring_count(&t.r));
	n = mk(99);
	CHECK(!nk_ring_enqueue(&t.r, &n), "enqueue into full ring succeeded");
	CHECK(t.r.hdr->prod_tail == 8, "failed enqueue moved prod_tail to %u", t.r.hdr->prod_tail);
	CHECK(nk_ring_peek(&t.r, &n) && is(&n, 0), "peek does not show the oldest NQE");
	CHECK(nk_ring_count(&t.r) == 8, "peek consumed");
	nk_ring_skip(&t.r, 1);
	CHECK(nk_ring_count(&t.r) == 7, "skip did not consume one");
	for (uint64_t i = 1; i < 8; i++)
		CHECK(nk_ring_dequeue(&t.r, &n) && is(&n, i), "NQE %" PRIu64 " out of order", i);
	CHECK(nk_ring_count(&t.r) == 0 && nk_ring_free(&t.r) == 8, "ring not empty after draining");
	tr_free(&t);
}

static void test_wrap(void)
{
	section("wrap-around of the free-running 32-bit indices");
	static const uint32_t starts[] = { UINT32_MAX - 3, UINT32_MAX, UINT32_MAX - 200, 0x7fffffffu };
	for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
		struct test_ring t;
		struct nk_nqe in[64], out[64];
		uint64_t wseq = 0, rseq = 0;
		tr_init(&t, 16);
		tr_set(&t, starts[s], starts[s]);
		CHECK(nk_ring_count(&t.r) == 0 && nk_ring_free(&t.r) == 16,
		      "start %#x: not empty", starts[s]);
		/* Fill completely across the wrap point, then drain. */
		for (int i = 0; i < 16; i++)
			in[i] = mk(wseq++);
		CHECK(nk_ring_enqueue_burst(&t.r, in, 16) == 16, "start %#x: fill", starts[s]);
		CHECK(nk_ring_free(&t.r) == 0 && nk_ring_count(&t.r) == 16,
		      "start %#x: full ring count %u free %u", starts[s], nk_ring_count(&t.r),
		      nk_ring_free(&t.r));
		CHECK(t.r.hdr->prod_tail == starts[s] + 16u, "start %#x: prod_tail %#x", starts[s],
		      t.r.hdr->prod_tail);
		/* Mixed bursts: 500 rounds with varying sizes, order must hold. */
		for (int round = 0; round < 500; round++) {
			uint32_t k = (uint32_t)(round * 7 % 13) + 1;
			uint32_t got = nk_ring_dequeue_burst(&t.r, out, k);
			for (uint32_t i = 0; i < got; i++) {
				CHECK(is(&out[i], rseq), "start %#x: got cookie %" PRIu64 " want %" PRIu64,
				      starts[s], out[i].cookie, rseq);
				rseq++;
			}
			uint32_t m = (uint32_t)(round * 5 % 11) + 1;
			for (uint32_t i = 0; i < m; i++)
				in[i] = mk(wseq + i);
			uint32_t room = nk_ring_free(&t.r);
			uint32_t put = nk_ring_enqueue_burst(&t.r, in, m);
			CHECK(put == (m < room ? m : room), "start %#x: burst put %u of %u, room %u",
			      starts[s], put, m, room);
			wseq += put;
			CHECK(nk_ring_count(&t.r) == wseq - rseq, "start %#x: count %u want %" PRIu64,
			      starts[s], nk_ring_count(&t.r), wseq - rseq);
		}
		while (nk_ring_dequeue(&t.r, &out[0])) {
			CHECK(is(&out[0], rseq), "start %#x: drain order", starts[s]);
			rseq++;
		}
		CHECK(rseq == wseq, "start %#x: lost NQEs (%" PRIu64 " of %" PRIu64 ")", starts[s], rseq,
		      wseq);
		CHECK(t.r.hdr->prod_tail == (uint32_t)(starts[s] + wseq), "start %#x: prod_tail",
		      starts[s]);
		CHECK(t.r.hdr->cons_head == t.r.hdr->prod_tail, "start %#x: indices differ", starts[s]);
		tr_free(&t);
	}
	printf("   indices wrapped past 2^32 from %zu starting points\n",
	       sizeof(starts) / sizeof(starts[0]));
}

static void test_burst(void)
{
	section("burst enqueue/dequeue counts");
	struct test_ring t;
	struct nk_nqe in[64], out[64];
	for (int i = 0; i < 64; i++)
		in[i] = mk((uint64_t)i);
	tr_init(&t, 32);
	CHECK(nk_ring_enqueue_burst(&t.r, in, 0) == 0, "burst of 0");
	CHECK(nk_ring_enqueue_burst(&t.r, in, 20) == 20, "burst of 20 into empty 32");
	CHECK(nk_ring_enqueue_burst(&t.r, in + 20, 20) == 12, "burst of 20 with 12 free");
	CHECK(nk_ring_enqueue_burst(&t.r, in + 32, 5) == 0, "burst into full ring");
	CHECK(nk_ring_dequeue_burst(&t.r, out, 0) == 0, "dequeue burst of 0");
	CHECK(nk_ring_dequeue_burst(&t.r, out, 10) == 10, "dequeue 10 of 32");
	CHECK(nk_ring_dequeue_burst(&t.r, out + 10, 64) == 22, "dequeue 64 with 22 ready");
	for (int i = 0; i < 32; i++)
		CHECK(is(&out[i], (uint64_t)i), "burst order at %d", i);
	CHECK(nk_ring_dequeue_burst(&t.r, out, 64) == 0, "dequeue from drained ring");
	tr_free(&t);
}

static void test_corrupt(void)
{
	section("corrupt peer indices are clamped");
	struct test_ring t;
	struct nk_nqe n, out[64];
	tr_init(&t, 16);

	/* Consumer publishes cons_head beyond prod_tail: producer sees "full". */
	tr_set(&t, 100, 105);
	CHECK(nk_ring_free(&t.r) == 0, "cons_head > prod_tail: free %u, want 0", nk_ring_free(&t.r));
	n = mk(1);
	CHECK(!nk_ring_enqueue(&t.r, &n), "enqueue succeeded with cons_head > prod_tail");
	CHECK(nk_ring_enqueue_burst(&t.r, out, 16) == 0, "burst enqueue with cons_head > prod_tail");
	CHECK(t.r.hdr->prod_tail == 100, "prod_tail moved to %u", t.r.hdr->prod_tail);
	tr_set(&t, UINT32_MAX, 0); /* cons_head one past prod_tail across the wrap */
	CHECK(nk_ring_free(&t.r) == 0, "cons_head = prod_tail+1 across wrap: free %u",
	      nk_ring_free(&t.r));
	tr_set(&t, 100, 100 - 17); /* consumer "lagging" by more than size */
	CHECK(nk_ring_free(&t.r) == 0, "used > size: free %u", nk_ring_free(&t.r));

	/* Producer publishes prod_tail far ahead: consumer clamps to size. */
	static const uint32_t ahead[] = { 17, 1000, 0x80000000u, UINT32_MAX };
	for (size_t i = 0; i < sizeof(ahead) / sizeof(ahead[0]); i++) {
		uint32_t head = UINT32_MAX - 2;
		tr_set(&t, head + ahead[i], head);
		CHECK(nk_ring_count(&t.r) == 16, "prod_tail +%u: count %u, want 16", ahead[i],
		      nk_ring_count(&t.r));
		CHECK(nk_ring_dequeue_burst(&t.r, out, 64) == 16, "prod_tail +%u: burst not clamped",
		      ahead[i]);
		CHECK(t.r.hdr->cons_head == head + 16u, "prod_tail +%u: cons_head %#x", ahead[i],
		      t.r.hdr->cons_head);
	}
	/* Garbage in the header: the view keeps its own size and mask. */
	memset(t.r.hdr, 0xff, sizeof(*t.r.hdr));
	CHECK(t.r.size == 16 && t.r.mask == 15, "view geometry changed");
	CHECK(nk_ring_count(&t.r) <= 16, "count %u beyond size", nk_ring_count(&t.r));
	CHECK(nk_ring_free(&t.r) <= 16, "free %u beyond size", nk_ring_free(&t.r));
	CHECK(nk_ring_dequeue_burst(&t.r, out, 64) <= 16, "dequeue beyond size");
	tr_free(&t);
}

static void test_need_wakeup(void)
{
	section("need_wakeup handshake");
	struct test_ring t;
	struct nk_nqe n = mk(7), out;
	tr_init(&t, 8);
	CHECK(!nk_ring_needs_wakeup(&t.r), "fresh ring asks for a wakeup");
	CHECK(nk_ring_prepare_sleep(&t.r), "empty ring: prepare_sleep refused");
	CHECK(t.r.hdr->need_wakeup == 1, "need_wakeup not published");
	CHECK(nk_ring_enqueue(&t.r, &n), "enqueue");
	CHECK(nk_ring_needs_wakeup(&t.r), "producer does not see the sleeping consumer");
	nk_ring_awake(&t.r);
	CHECK(t.r.hdr->need_wakeup == 0, "awake did not clear need_wakeup");
	CHECK(!nk_ring_needs_wakeup(&t.r), "awake consumer still asks for a wakeup");
	/* Work already queued: prepare_sleep must refuse and clear the flag. */
	CHECK(!nk_ring_prepare_sleep(&t.r), "prepare_sleep with a queued NQE");
	CHECK(t.r.hdr->need_wakeup == 0, "flag left set after refusing to sleep");
	CHECK(nk_ring_dequeue(&t.r, &out) && is(&out, 7), "queued NQE lost");
	CHECK(nk_ring_prepare_sleep(&t.r), "drained ring: prepare_sleep refused");
	nk_ring_awake(&t.r);

	/* Lazy NQEs ring only a consumer that sleeps for everything. */
	CHECK(!nk_ring_wants_wakeup(&t.r, false) && !nk_ring_wants_wakeup(&t.r, true),
	      "awake consumer wants a doorbell");
	CHECK(nk_ring_prepare_sleep_for(&t.r, NK_WAKE_URGENT), "empty ring: urgent sleep refused");
	CHECK(t.r.hdr->need_wakeup == NK_WAKE_URGENT, "NK_WAKE_URGENT not published");
	CHECK(nk_ring_wants_wakeup(&t.r, false), "urgent sleeper not woken for an urgent NQE");
	CHECK(!nk_ring_wants_wakeup(&t.r, true), "urgent sleeper woken for lazy NQEs");
	CHECK(nk_ring_needs_wakeup(&t.r), "an old producer must still see a sleeper");
	nk_ring_awake(&t.r);
	CHECK(nk_ring_prepare_sleep_for(&t.r, NK_WAKE_ANY), "empty ring: sleep refused");
	CHECK(nk_ring_wants_wakeup(&t.r, true), "NK_WAKE_ANY sleeper not woken for lazy NQEs");
	/* A word scribbled by the consumer counts as "wake me": a spurious
	 * doorbell, never a missed one. */
	t.r.hdr->need_wakeup = 77;
	CHECK(nk_ring_wants_wakeup(&t.r, true), "unknown need_wakeup value ignored");
	nk_ring_awake(&t.r);
	CHECK(nk_ring_enqueue(&t.r, &n), "enqueue");
	CHECK(!nk_ring_prepare_sleep_for(&t.r, NK_WAKE_URGENT), "urgent sleep with a queued NQE");
	CHECK(t.r.hdr->need_wakeup == 0, "flag left set after refusing an urgent sleep");
	tr_free(&t);
}

/* ------------------------------------------------------------------ */
/* Two processes                                                       */

#define XP_RING 256u
#define XP_COUNT 1000000ull
#define XP_STALL_MS 30000 /* no progress for this long = peer dead or stuck */

struct xp_shared {
	struct nk_ring_hdr hdr;
	struct nk_nqe ents[XP_RING];
	_Alignas(NK_CACHELINE) uint32_t prod_waiting; /* producer only: wake me on space */
	_Alignas(NK_CACHELINE) uint64_t cons_sum;     /* consumer result */
	uint64_t cons_count;
	uint32_t cons_errors;
	uint32_t cons_done;
	uint64_t cons_sleeps, cons_wakeups;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static struct nk_nqe xp_mk(uint64_t seq)
{
	struct nk_nqe n;
	memset(&n, 0, sizeof(n));
	uint64_t h = mix(seq);
	n.op = NK_OP_RX_DATA;
	n.cookie = seq;
	n.sock = (uint32_t)h;
	n.chunk = (uint32_t)(h >> 32);
	memcpy(n.arg.raw, &h, sizeof(h));
	n.arg.u32[7] = (uint32_t)seq;
	return n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Wait up to ms for fd; drain it. 1 = signalled, 0 = timeout. */
static int efd_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int rc = poll(&p, 1, ms);
	if (rc > 0) {
		uint64_t v;
		if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return 0;
		return 1;
	}
	return 0;
}

static int consumer(struct xp_shared *sh, struct nk_ring *r, int data_efd, int space_efd)
{
	struct nk_nqe out[64];
	uint64_t expect = 0, sum = 0, sleeps = 0, wakeups = 0;
	uint32_t errors = 0;
	uint64_t last_progress = now_ms();
	unsigned burst = 1;

	while (expect < XP_COUNT) {
		uint32_t got = nk_ring_dequeue_burst(r, out, burst);
		burst = burst % 64 + 1;
		if (got) {
			for (uint32_t i = 0; i < got; i++) {
				struct nk_nqe want = xp_mk(expect);
				if (memcmp(&out[i], &want, sizeof(want)) != 0) {
					if (errors++ < 5)
						fprintf(stderr, "consumer: NQE %" PRIu64 " has cookie %" PRIu64 "\n",
							expect, out[i].cookie);
				}
				sum += mix(out[i].cookie);
				expect++;
			}
			/* Dekker with the producer's prod_waiting / free check. */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (__atomic_load_n(&sh->prod_waiting, __ATOMIC_RELAXED))
				efd_signal(space_efd);
			last_progress = now_ms();
			continue;
		}
		if (!nk_ring_prepare_sleep(r))
			continue;
		sleeps++;
		wakeups += (uint64_t)efd_wait(data_efd, 1000);
		nk_ring_awake(r);
		if (now_ms() - last_progress > XP_STALL_MS) {
			fprintf(stderr, "consumer: no NQE for %d ms at %" PRIu64 " (producer dead?)\n",
				XP_STALL_MS, expect);
			errors++;
			break;
		}
	}
	sh->cons_sum = sum;
	sh->cons_count = expect;
	sh->cons_errors = errors;
	sh->cons_sleeps = sleeps;
	sh->cons_wakeups = wakeups;
	__atomic_store_n(&sh->cons_done, 1, __ATOMIC_RELEASE);
	return errors ? 1 : 0;
}

static void test_two_process(void)
{
	section("two processes: 1,000,000 NQEs through a shared ring");
	struct xp_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		failures++;
		return;
	}
	memset(sh, 0, sizeof(*sh));
	struct nk_ring r;
	nk_ring_view(&r, &sh->hdr, sh->ents, XP_RING);
	nk_ring_reset(&r);
	/* Start close to the wrap so it happens under concurrency. */
	sh->hdr.prod_tail = sh->hdr.cons_head = UINT32_MAX - 1000;

	int data_efd = eventfd(0, EFD_CLOEXEC);  /* consumer sleeps on it */
	int space_efd = eventfd(0, EFD_CLOEXEC); /* producer sleeps on it */
	if (data_efd < 0 || space_efd < 0) {
		perror("eventfd");
		failures++;
		return;
	}
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		failures++;
		return;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		_exit(consumer(sh, &r, data_efd, space_efd));
	}

	/* Producer (parent). */
	struct nk_nqe batch[64];
	uint64_t seq = 0, sum = 0, doorbells = 0, sleeps = 0;
	uint64_t last_progress = now_ms();
	unsigned burst = 1;
	int child_dead = 0;
	while (seq < XP_COUNT) {
		uint32_t m = burst;
		burst = burst % 37 + 1;
		if (m > XP_COUNT - seq)
			m = (uint32_t)(XP_COUNT - seq);
		for (uint32_t i = 0; i < m; i++)
			batch[i] = xp_mk(seq + i);
		uint32_t put = nk_ring_enqueue_burst(&r, batch, m);
		if (put) {
			for (uint32_t i = 0; i < put; i++)
				sum += mix(seq + i);
			seq += put;
			if (nk_ring_needs_wakeup(&r)) {
				efd_signal(data_efd);
				doorbells++;
			}
			last_progress = now_ms();
			continue;
		}
		/* Full: announce, re-check, sleep (bounded). */
		__atomic_store_n(&sh->prod_waiting, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (nk_ring_free(&r) == 0) {
			sleeps++;
			efd_wait(space_efd, 1000);
		}
		__atomic_store_n(&sh->prod_waiting, 0, __ATOMIC_RELAXED);
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "producer: consumer died at %" PRIu64 "\n", seq);
			child_dead = 1;
			break;
		}
		if (now_ms() - last_progress > XP_STALL_MS) {
			fprintf(stderr, "producer: ring full for %d ms at %" PRIu64 "\n", XP_STALL_MS, seq);
			break;
		}
	}
	/* Wait for the consumer, bounded. */
	int status = -1;
	if (!child_dead) {
		uint64_t t0 = now_ms();
		for (;;) {
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid)
				break;
			if (now_ms() - t0 > XP_STALL_MS + 5000) {
				fprintf(stderr, "consumer did not finish; killing it\n");
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				status = -1;
				break;
			}
			/* A lost final wakeup would otherwise cost a poll timeout. */
			if (nk_ring_needs_wakeup(&r))
				efd_signal(data_efd);
			usleep(2000);
		}
	}
	CHECK(seq == XP_COUNT, "producer enqueued %" PRIu64 " of %llu", seq, XP_COUNT);
	CHECK(!child_dead && status == 0, "consumer exit status %d", status);
	CHECK(__atomic_load_n(&sh->cons_done, __ATOMIC_ACQUIRE) == 1, "consumer did not report");
	CHECK(sh->cons_count == XP_COUNT, "consumer saw %" PRIu64 " NQEs", sh->cons_count);
	CHECK(sh->cons_errors == 0, "consumer found %u bad/out-of-order NQEs", sh->cons_errors);
	CHECK(sh->cons_sum == sum, "checksum %#" PRIx64 " != producer's %#" PRIx64, sh->cons_sum, sum);
	printf("   %" PRIu64 " NQEs, checksum %#" PRIx64 "; producer rang %" PRIu64
	       " doorbells, slept %" PRIu64 " times; consumer slept %" PRIu64 " times (%" PRIu64
	       " woken by doorbell)\n",
	       sh->cons_count, sh->cons_sum, doorbells, sleeps, sh->cons_sleeps, sh->cons_wakeups);
	close(data_efd);
	close(space_efd);
	munmap(sh, sizeof(*sh));
}

static void test_stage(void)
{
	section("staged NQEs: invisible until published, room counts them");
	struct test_ring t;
	struct nk_nqe n, in[8], out[16];
	tr_init(&t, 8);
	for (uint64_t i = 0; i < 3; i++) {
		n = mk(i);
		CHECK(nk_ring_stage(&t.r, &n), "stage %" PRIu64 " failed", i);
	}
	CHECK(nk_ring_count(&t.r) == 0, "staged NQEs visible before publish: %u", nk_ring_count(&t.r));
	CHECK(t.r.hdr->prod_tail == 0, "stage moved prod_tail to %u", t.r.hdr->prod_tail);
	CHECK(nk_ring_free(&t.r) == 5, "free %u with 3 staged, want 5", nk_ring_free(&t.r));
	CHECK(nk_ring_room(&t.r, 5) && !nk_ring_room(&t.r, 6), "room ignores staged NQEs");
	nk_ring_publish(&t.r);
	CHECK(nk_ring_count(&t.r) == 3 && t.r.staged == 0, "publish: count %u staged %u",
	      nk_ring_count(&t.r), t.r.staged);
	nk_ring_publish(&t.r); /* nothing staged: no-op */
	CHECK(t.r.hdr->prod_tail == 3, "empty publish moved prod_tail to %u", t.r.hdr->prod_tail);
	/* a burst enqueue goes behind staged NQEs and publishes them too */
	n = mk(3);
	CHECK(nk_ring_stage(&t.r, &n), "stage 3 failed");
	for (int i = 0; i < 8; i++)
		in[i] = mk((uint64_t)(4 + i));
	CHECK(nk_ring_enqueue_burst(&t.r, in, 8) == 4, "burst with 4 free (1 staged)");
	CHECK(t.r.staged == 0 && t.r.hdr->prod_tail == 8, "burst left staged %u, prod_tail %u",
	      t.r.staged, t.r.hdr->prod_tail);
	n = mk(99);
	CHECK(!nk_ring_stage(&t.r, &n) && t.r.staged == 0, "stage into a full ring succeeded");
	CHECK(nk_ring_dequeue_burst(&t.r, out, 16) == 8, "drain");
	for (int i = 0; i < 8; i++)
		CHECK(is(&out[i], (uint64_t)i), "staged/burst order at %d", i);
	/* the cached cons_head is refreshed once it says full */
	CHECK(nk_ring_room(&t.r, 8), "drained ring has no room (stale cache)");
	/* A consumer that jumps ahead of prod_tail leaves no room once its index
	 * is read (until then the cache holds a real, older one: writing into
	 * our own slots is all that can happen). */
	tr_set(&t, 8, 20);
	CHECK(nk_ring_free(&t.r) == 0, "free %u with cons_head > prod_tail", nk_ring_free(&t.r));
	CHECK(!nk_ring_room(&t.r, 1) && !nk_ring_stage(&t.r, &n), "room with cons_head > prod_tail");
	tr_free(&t);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_empty_full();
	test_wrap();
	test_burst();
	test_stage();
	test_corrupt();
	test_need_wakeup();
	test_two_process();
	if (failures) {
		printf("test_ring: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_ring: all checks passed\n");
	return 0;
}
