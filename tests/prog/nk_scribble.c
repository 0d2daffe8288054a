/* SPDX-License-Identifier: MIT */
/*
 * nk_scribble - a hostile guest: attaches to the CoreEngine as a guest
 * process of a VM (GUEST_HELLO over the control socket, no GuestLib), then
 * for a while writes garbage over everything its own region lets it write:
 *
 *   - up ring entries (random bytes, and plausible NQEs with bad socket ids,
 *     foreign/out-of-range chunks, off+len beyond the chunk, unknown ops)
 *     and its prod_tail (random values, far ahead, behind cons_head);
 *   - the down ring's consumer words (cons_head, need_wakeup);
 *   - the guest line (rx_head, head_off, lock) of random socket slots;
 *   - random bytes into chunks (its own TX partition, other partitions, RX);
 *
 * and rings up_efd after each step. With --all-words it also scribbles the
 * words the CoreEngine owns (up cons_head/need_wakeup, down prod_tail).
 *
 *   nk_scribble [--ctl PATH] [--vm NAME] [--seconds N] [--seed S] [--all-words]
 *
 * Stops after N seconds (default 10) or on SIGTERM/SIGINT and prints what it
 * did. Exit 0 unless it could not attach (1) or was misused (2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "nk_ctl.h"
#include "nk_region.h"

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}
static uint32_t rnd_below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

static void rnd_bytes(void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		uint64_t v = rnd();
		size_t k = n < 8 ? n : 8;
		memcpy(b, &v, k);
		b += k;
		n -= k;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ring_bell(int efd)
{
	uint64_t one = 1;
	ssize_t w = write(efd, &one, sizeof(one));
	(void)w;
}

struct counts {
	uint64_t garbage_nqes, bad_nqes, tail_writes, slot_writes, chunk_writes, down_writes,
		owner_writes, completions, steps;
};

int main(int argc, char **argv)
{
	const char *ctl_path = NULL, *vm = "vm2";
	double seconds = 10;
	int all_words = 0;
	rng_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	static const struct option opts[] = {
		{ "ctl", required_argument, NULL, 'c' },
		{ "vm", required_argument, NULL, 'v' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'r' },
		{ "all-words", no_argument, NULL, 'a' },
		{ 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'c': ctl_path = optarg; break;
		case 'v': vm = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'r': rng_state = strtoull(optarg, NULL, 0) | 1; break;
		case 'a': all_words = 1; break;
		default:
			fprintf(stderr, "usage: nk_scribble [--ctl PATH] [--vm NAME] [--seconds N] [--seed S] [--all-words]\n");
			return 2;
		}
	}
	if (!ctl_path)
		ctl_path = nk_ctl_path();
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_sig };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* ---- attach like a guest ---- */
	int ctl = nk_ctl_connect(ctl_path);
	if (ctl < 0) {
		fprintf(stderr, "nk_scribble: cannot connect to %s: %s\n", ctl_path, strerror(-ctl));
		return 1;
	}
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_GUEST_HELLO);
	snprintf(m.name, sizeof(m.name), "%s", vm);
	m.pid = (uint32_t)getpid();
	int rc = nk_ctl_send(ctl, &m, NULL, 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int fds[3] = { -1, -1, -1 }, nfds = 0;
	if (rc == 0)
		rc = nk_ctl_recv(ctl, &m, fds, 3, &nfds);
	if (rc < 0 || m.type != NK_CTL_GUEST_WELCOME || nfds != 3) {
		fprintf(stderr, "nk_scribble: no welcome from %s for VM %s: %s%s\n", ctl_path, vm,
			rc < 0 ? strerror(-rc) : "unexpected answer ", rc < 0 ? "" : m.text);
		return 1;
	}
	uint32_t chan = m.index;
	struct nk_region reg;
	char err[256];
	rc = nk_region_map_fd(&reg, fds[0], NK_REGION_VM, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "nk_scribble: %s\n", err);
		return 1;
	}
	if (chan >= reg.g.nchan) {
		fprintf(stderr, "nk_scribble: welcome names channel %u of %u\n", chan, reg.g.nchan);
		return 1;
	}
	int up_efd = fds[1], down_efd = fds[2];
	struct nk_ring up, down;
	nk_region_up_ring(&reg, chan, &up);
	nk_region_down_ring(&reg, chan, &down);
	const struct nk_geom *g = &reg.g;
	uint32_t nchunks = nk_geom_nchunks(g);
	printf("nk_scribble: attached to VM %s channel %u (%u sockets, %u chunks of %u bytes)\n", vm, chan,
	       g->nsocks, nchunks, g->chunk_size);

	/* ---- open a few sockets legitimately, so some slots are live ---- */
	uint32_t socks[8], nsocks = 0;
	for (int i = 0; i < 4; i++) {
		struct nk_nqe q = { .op = NK_OP_SOCKET, .sock = NK_NO_SOCK, .chunk = NK_NO_CHUNK,
				    .cookie = 1000 + (uint64_t)i };
		q.arg.sock = (struct nk_sockargs){ .domain = 2 /* AF_INET */, .type = 1 /* STREAM */ };
		nk_ring_enqueue(&up, &q);
	}
	ring_bell(up_efd);
	double t_end = now_s() + 3;
	while (nsocks < 4 && now_s() < t_end) {
		struct nk_nqe r;
		if (nk_ring_dequeue(&down, &r)) {
			if (r.op == NK_OP_SOCKET && (r.flags & NK_NQF_COMPLETION) && r.result >= 0)
				socks[nsocks++] = (uint32_t)r.result;
			continue;
		}
		struct pollfd p = { .fd = down_efd, .events = POLLIN };
		if (nk_ring_prepare_sleep(&down)) {
			if (poll(&p, 1, 100) > 0) {
				uint64_t v;
				ssize_t n = read(down_efd, &v, sizeof(v));
				(void)n;
			}
		}
		nk_ring_awake(&down);
	}
	printf("nk_scribble: opened %u sockets legitimately; scribbling for %.0f s\n", nsocks, seconds);

	/* ---- scribble ---- */
	struct counts c = { 0 };
	static const uint8_t ops[] = { NK_OP_SOCKET, NK_OP_BIND, NK_OP_LISTEN, NK_OP_CONNECT,
				       NK_OP_SHUTDOWN, NK_OP_SETSOCKOPT, NK_OP_GETSOCKOPT, NK_OP_SEND,
				       NK_OP_SEND_DONE, NK_OP_RX_DONE, NK_OP_CLOSE, NK_OP_RX_DATA,
				       NK_OP_NEWCONN, NK_OP_GRANT, 0, 13, 31, 200 };
	t_end = now_s() + seconds;
	while (!stop && now_s() < t_end) {
		struct nk_nqe q;
		uint32_t k, tail;
		c.steps++;
		switch (rnd_below(10)) {
		case 0: /* random bytes as NQEs */
			k = 1 + rnd_below(16);
			tail = up.hdr->prod_tail;
			for (uint32_t i = 0; i < k; i++)
				rnd_bytes(&up.ents[(tail + i) & up.mask], sizeof(struct nk_nqe));
			__atomic_store_n(&up.hdr->prod_tail, tail + k, __ATOMIC_RELEASE);
			c.garbage_nqes += k;
			break;
		case 1: case 2: /* plausible NQEs with bad fields */
			k = 1 + rnd_below(8);
			/* Usually put them right where the CoreEngine reads next, so they
			 * are parsed as NQEs rather than lost in a garbage stream. */
			tail = up.hdr->prod_tail;
			if (rnd_below(4) != 0)
				tail = __atomic_load_n(&up.hdr->cons_head, __ATOMIC_ACQUIRE);
			for (uint32_t i = 0; i < k; i++) {
				memset(&q, 0, sizeof(q));
				q.op = ops[rnd_below(sizeof(ops))];
				q.flags = (uint8_t)(rnd_below(4) == 0 ? rnd() : 0);
				q.vm = (uint16_t)rnd_below(3);
				switch (rnd_below(4)) {
				case 0: q.sock = nsocks ? socks[rnd_below(nsocks)] : 0; break;
				case 1: q.sock = g->nsocks + rnd_below(1000); break;
				case 2: q.sock = NK_NO_SOCK; break;
				default: q.sock = rnd_below(g->nsocks); break;
				}
				switch (rnd_below(6)) {
				case 0: q.chunk = nk_geom_tx_first(g, chan) + rnd_below(g->tx_per_chan); break;
				case 1: q.chunk = nk_geom_tx_first(g, (chan + 1) % g->nchan); break;
				case 2: q.chunk = nk_geom_rx_first(g) + rnd_below(g->nrx); break;
				case 3: q.chunk = nchunks + rnd_below(100000); break;
				case 4: q.chunk = NK_NO_CHUNK; break;
				default: q.chunk = (uint32_t)rnd(); break;
				}
				q.off = rnd_below(2) ? rnd_below(g->chunk_size) : (uint32_t)rnd();
				q.len = rnd_below(2) ? g->chunk_size - q.off + 1 + rnd_below(64) : (uint32_t)rnd();
				q.cookie = rnd();
				q.result = (int32_t)rnd();
				rnd_bytes(q.arg.raw, sizeof(q.arg.raw));
				if (q.op == NK_OP_BIND || q.op == NK_OP_CONNECT)
					q.arg.addr.family = (uint16_t)(rnd_below(2) ? 2 : rnd());
				up.ents[(tail + i) & up.mask] = q;
			}
			__atomic_store_n(&up.hdr->prod_tail, tail + k, __ATOMIC_RELEASE);
			c.bad_nqes += k;
			break;
		case 3: /* out-of-range prod_tail */
			switch (rnd_below(3)) {
			case 0: tail = (uint32_t)rnd(); break;
			case 1: tail = up.hdr->prod_tail + up.size + 1 + rnd_below(1u << 30); break;
			default: tail = up.hdr->cons_head - 1 - rnd_below(1000); break;
			}
			__atomic_store_n(&up.hdr->prod_tail, tail, __ATOMIC_RELEASE);
			c.tail_writes++;
			break;
		case 4: case 5: { /* guest line of a random socket slot */
			uint32_t s = rnd_below(4) == 0 && nsocks ? socks[rnd_below(nsocks)] : rnd_below(g->nsocks);
			struct nk_sock_slot *sl = nk_region_slot(&reg, s);
			sl->rx_head = (uint32_t)rnd();
			sl->head_off = (uint32_t)rnd();
			sl->lock = (uint32_t)rnd();
			c.slot_writes++;
			break;
		}
		case 6: case 7: { /* chunk contents */
			uint32_t ck = rnd_below(nchunks);
			uint32_t off = rnd_below(g->chunk_size);
			uint32_t len = 1 + rnd_below(g->chunk_size - off);
			if (len > 4096)
				len = 4096;
			rnd_bytes(nk_region_chunk(&reg, ck) + off, len);
			c.chunk_writes++;
			break;
		}
		case 8: /* down ring consumer words (ours), or drain it properly */
			if (rnd_below(2)) {
				__atomic_store_n(&down.hdr->cons_head, (uint32_t)rnd(), __ATOMIC_RELEASE);
				down.hdr->need_wakeup = (uint32_t)rnd();
				c.down_writes++;
			} else {
				struct nk_nqe r[64];
				c.completions += nk_ring_dequeue_burst(&down, r, 64);
			}
			break;
		default: /* words the CoreEngine owns */
			if (all_words) {
				up.hdr->cons_head = (uint32_t)rnd();
				up.hdr->need_wakeup = (uint32_t)rnd();
				down.hdr->prod_tail = (uint32_t)rnd();
				c.owner_writes++;
			}
			break;
		}
		ring_bell(up_efd);
		usleep(100 + rnd_below(900));
	}
	/* Is the control connection still open? (The CE may drop a bad guest.) */
	struct pollfd p = { .fd = ctl, .events = POLLIN };
	const char *conn = "open";
	if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN)))
		conn = "closed or pending by the CoreEngine";
	printf("nk_scribble: %" PRIu64 " steps: %" PRIu64 " garbage NQEs, %" PRIu64 " bad NQEs, %" PRIu64
	       " prod_tail writes, %" PRIu64 " slot guest lines, %" PRIu64 " chunk writes, %" PRIu64
	       " down-ring word writes, %" PRIu64 " CE-owned word writes, %" PRIu64
	       " NQEs drained; control connection %s\n",
	       c.steps, c.garbage_nqes, c.bad_nqes, c.tail_writes, c.slot_writes, c.chunk_writes,
	       c.down_writes, c.owner_writes, c.completions, conn);
	nk_region_unmap(&reg);
	close(up_efd);
	close(down_efd);
	close(ctl);
	return 0;
}
