/* SPDX-License-Identifier: MIT */
/*
 * gl_fake_ce.c - a fake CoreEngine to test GuestLib without CE or NSM (in the
 * spirit of TAS's tests/libtas/harness.c).
 *
 *   gl_fake_ce CLIENT LIBNKGUEST
 *
 * Creates a small VM region itself (in /dev/shm, unlinked at once: the guest
 * gets it by fd), listens on a temporary AF_UNIX SEQPACKET control socket,
 * answers GUEST_HELLO and serves the guest's NQEs with canned behaviour:
 *   SOCKET ok; BIND/SETSOCKOPT ok; GETSOCKOPT returns a pattern (inline or in
 *   the guest's chunk); CONNECT to port 7 = echo peer, port 2 = echo peer that
 *   answers after 30 ms, port 9 = echo then reset, port 1 = refused;
 *   LISTEN pushes one ACCEPT (an echo connection from 10.0.0.99:4242);
 *   SEND = SEND_DONE at once, bytes echoed back as RX_DATA entries from the
 *   harness's own RX chunks within the 64-entry ring; SHUTDOWN(WR) = the
 *   echo peer closes too (FIN after the echoed bytes).
 * Then runs the client under LD_PRELOAD in several modes (with CE, without a
 * CE, without NK_VM), prints PASS/FAIL lines and exits 0 only when every
 * client passed and the NQE accounting holds (no invalid NQE, every socket
 * closed, every RX chunk back, the expected ops seen).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_ctl.h"
#include "nk_pool.h"
#include "nk_region.h"

#define NCHAN 4
#define NSOCKS 64
#define FIRST_ID 5 /* ids start above 0 so an "id = fd" confusion shows */

struct fsock {
	bool used, listening, fin_after, reset_after, fin_sent, got_data;
	int chan;
	uint8_t *pend; /* echo bytes not yet pushed */
	size_t plen;
};

struct fchan {
	bool used;
	int ctl, up_efd, down_efd;
	struct nk_ring up, down;
};

struct delayed {
	bool used;
	int chan;
	uint64_t due_ns;
	struct nk_nqe nqe;
	uint32_t sock;
};

static struct nk_region reg;
static struct nk_pool rxpool;
static int rx_at_guest[NSOCKS]; /* RX chunks posted to each socket, not returned */
static struct fsock socks[NSOCKS];
static struct fchan chans[NCHAN];
static struct delayed delays[8];
static uint64_t nops[NK_OP_MAX], nbad, naccept_claims, nsend_bytes, nrx_done_none;
static int first_op = -1;
static int failures;

#define BAD(...) do { fprintf(stderr, "fake-ce: invalid NQE: " __VA_ARGS__); fputc('\n', stderr); nbad++; } while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wake(struct fchan *c)
{
	if (nk_ring_needs_wakeup(&c->down)) {
		uint64_t one = 1;
		if (write(c->down_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			perror("fake-ce: write down_efd");
	}
}

static void complete(int ch, const struct nk_nqe *req, int32_t result, const struct nk_nqe *tmpl)
{
	struct nk_nqe q = tmpl ? *tmpl : *req;
	q.op = req->op;
	/* an asynchronous SETSOCKOPT's completion says so, as the CE's does */
	q.flags = NK_NQF_COMPLETION | (req->flags & NK_NQF_ASYNC);
	q.cookie = req->cookie;
	q.sock = req->sock;
	q.result = result;
	if (!nk_ring_enqueue(&chans[ch].down, &q))
		BAD("down ring full");
	wake(&chans[ch]);
}

static uint32_t alloc_sock(int ch)
{
	for (uint32_t i = FIRST_ID; i < NSOCKS; i++) {
		if (socks[i].used)
			continue;
		memset(&socks[i], 0, sizeof(socks[i]));
		socks[i].used = true;
		socks[i].chan = ch;
		struct nk_sock_slot *sl = nk_region_slot(&reg, i);
		/* As the CoreEngine does (nk_abi.h, rx_start): the counters are
		 * monotonic across reuse; the new incarnation starts at our own
		 * rx_tail and the guest adopts it by setting rx_head = rx_start. */
		uint32_t head = sl->rx_tail;
		sl->rx_start = head;
		memset(&sl->local, 0, sizeof(sl->local));
		memset(&sl->peer, 0, sizeof(sl->peer));
		sl->flags = 0;
		sl->error = 0;
		sl->gen++;
		__atomic_store_n(&sl->rx_tail, head, __ATOMIC_RELEASE);
		__atomic_store_n(&sl->state, NK_SS_OPEN, __ATOMIC_RELEASE);
		return i;
	}
	return NK_NO_SOCK;
}

static void set_addr(struct nk_addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->family = AF_INET;
	a->port = htons(port);
	inet_pton(AF_INET, ip, a->addr);
}

static bool push_ent(uint32_t s, uint16_t type, uint32_t val, uint32_t off, uint32_t len)
{
	struct nk_sock_slot *sl = nk_region_slot(&reg, s);
	uint32_t tail = sl->rx_tail, head = __atomic_load_n(&sl->rx_head, __ATOMIC_ACQUIRE);
	if (head - sl->rx_start > tail - sl->rx_start) /* not adopted yet */
		head = sl->rx_start;
	if (tail - head >= NK_SOCK_RX_ENTRIES)
		return false;
	sl->rx[tail & (NK_SOCK_RX_ENTRIES - 1)] = (struct nk_rxent){ .type = type, .val = val,
								     .off = off, .len = len };
	__atomic_store_n(&sl->rx_tail, tail + 1, __ATOMIC_RELEASE);
	return true;
}

/* Move pending echo bytes into the socket's rx ring, within its credit. */
static void service(uint32_t s)
{
	struct fsock *f = &socks[s];
	struct nk_sock_slot *sl = nk_region_slot(&reg, s);
	bool pushed = false;
	while (f->plen > 0) {
		uint32_t c;
		if (!nk_pool_get(&rxpool, &c))
			break;
		size_t n = f->plen < reg.g.chunk_size / 2 ? f->plen : reg.g.chunk_size / 2;
		/* off != 0 on purpose: the guest must honour it */
		memcpy(nk_region_chunk(&reg, c) + 100, f->pend, n);
		if (!push_ent(s, NK_RX_DATA, c, 100, (uint32_t)n)) {
			nk_pool_put(&rxpool, c);
			break;
		}
		rx_at_guest[s]++;
		memmove(f->pend, f->pend + n, f->plen - n);
		f->plen -= n;
		pushed = true;
	}
	if (f->plen == 0 && f->reset_after && f->got_data && !f->fin_sent && push_ent(s, NK_RX_ERR, ECONNRESET, 0, 0)) {
		f->fin_sent = true;
		sl->error = ECONNRESET;
		__atomic_fetch_or(&sl->flags, NK_SF_RESET, __ATOMIC_RELEASE);
		__atomic_fetch_add(&sl->err_seq, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&sl->state, NK_SS_CLOSED, __ATOMIC_RELEASE);
		pushed = true;
	}
	if (f->plen == 0 && f->fin_after && !f->fin_sent && push_ent(s, NK_RX_FIN, 0, 0, 0)) {
		f->fin_sent = true;
		__atomic_fetch_or(&sl->flags, NK_SF_RX_FIN, __ATOMIC_RELEASE);
		pushed = true;
	}
	if (pushed)
		wake(&chans[f->chan]);
}

static bool sock_ok(int ch, uint32_t s)
{
	return s < NSOCKS && socks[s].used && socks[s].chan == ch;
}

static void release_sock(uint32_t s)
{
	/* reclaim RX chunks still in the ring (as the CE does on close) */
	struct nk_sock_slot *sl = nk_region_slot(&reg, s);
	for (uint32_t p = sl->rx_head; p != sl->rx_tail; p++) {
		struct nk_rxent e = sl->rx[p & (NK_SOCK_RX_ENTRIES - 1)];
		if (e.type == NK_RX_DATA && nk_pool_put(&rxpool, e.val))
			rx_at_guest[s]--;
	}
	free(socks[s].pend);
	memset(&socks[s], 0, sizeof(socks[s]));
	sl->state = NK_SS_FREE;
}

static void handle(int ch, const struct nk_nqe *q)
{
	if (first_op < 0)
		first_op = q->op;
	if (q->op >= NK_OP_MAX) {
		BAD("op %u", q->op);
		return;
	}
	nops[q->op]++;
	if ((q->flags & NK_NQF_ASYNC) && q->op != NK_OP_SETSOCKOPT)
		BAD("NK_NQF_ASYNC on op %u", q->op);
	if (q->op != NK_OP_SOCKET && !sock_ok(ch, q->sock)) {
		BAD("op %u on socket %u not held by channel %d", q->op, q->sock, ch);
		return;
	}
	struct nk_sock_slot *sl = q->sock < NSOCKS ? nk_region_slot(&reg, q->sock) : NULL;
	struct nk_nqe r;
	switch (q->op) {
	case NK_OP_SOCKET: {
		if (q->arg.sock.domain != AF_INET && q->arg.sock.domain != AF_INET6)
			BAD("socket domain %d", q->arg.sock.domain);
		uint32_t s = alloc_sock(ch);
		complete(ch, q, s == NK_NO_SOCK ? -EMFILE : (int32_t)s, NULL);
		break;
	}
	case NK_OP_BIND:
		sl->local = q->arg.addr;
		__atomic_store_n(&sl->state, NK_SS_BOUND, __ATOMIC_RELEASE);
		complete(ch, q, 0, NULL);
		break;
	case NK_OP_LISTEN: {
		__atomic_store_n(&sl->state, NK_SS_LISTENING, __ATOMIC_RELEASE);
		socks[q->sock].listening = true;
		complete(ch, q, 0, NULL);
		uint32_t c = alloc_sock(ch);
		struct nk_sock_slot *cs = nk_region_slot(&reg, c);
		cs->local = sl->local;
		set_addr(&cs->peer, "10.0.0.99", 4242);
		__atomic_store_n(&cs->state, NK_SS_CONNECTED, __ATOMIC_RELEASE);
		push_ent(q->sock, NK_RX_ACCEPT, c, 0, 0);
		wake(&chans[ch]);
		break;
	}
	case NK_OP_CONNECT: {
		uint16_t port = ntohs(q->arg.addr.port);
		if (q->arg.addr.family != AF_INET)
			BAD("connect family %u", q->arg.addr.family);
		if (port == 1) {
			sl->error = ECONNREFUSED;
			__atomic_fetch_add(&sl->err_seq, 1, __ATOMIC_RELEASE);
			complete(ch, q, -ECONNREFUSED, NULL);
			break;
		}
		set_addr(&sl->local, "10.0.0.2", 40000 + (uint16_t)q->sock);
		sl->peer = q->arg.addr;
		socks[q->sock].reset_after = port == 9;
		if (port == 2) {
			for (int i = 0; i < 8; i++)
				if (!delays[i].used) {
					delays[i] = (struct delayed){ .used = true, .chan = ch,
						.due_ns = now_ns() + 30000000ull, .nqe = *q, .sock = q->sock };
					break;
				}
			__atomic_store_n(&sl->state, NK_SS_CONNECTING, __ATOMIC_RELEASE);
			break;
		}
		__atomic_store_n(&sl->state, NK_SS_CONNECTED, __ATOMIC_RELEASE);
		complete(ch, q, 0, NULL);
		break;
	}
	case NK_OP_SEND: {
		uint32_t first = nk_geom_tx_first(&reg.g, (uint32_t)ch);
		if (q->chunk - first >= reg.g.tx_per_chan || q->off != 0 ||
		    q->len == 0 || q->len > reg.g.chunk_size) {
			BAD("SEND chunk %u off %u len %u", q->chunk, q->off, q->len);
			break;
		}
		struct fsock *f = &socks[q->sock];
		f->pend = realloc(f->pend, f->plen + q->len);
		memcpy(f->pend + f->plen, nk_region_chunk(&reg, q->chunk), q->len);
		f->plen += q->len;
		f->got_data = true;
		nsend_bytes += q->len;
		memset(&r, 0, sizeof(r));
		r.op = NK_OP_SEND_DONE;
		r.flags = NK_NQF_COMPLETION;
		r.sock = q->sock;
		r.chunk = q->chunk;
		r.result = (int32_t)q->len;
		if (!nk_ring_enqueue(&chans[ch].down, &r))
			BAD("down ring full");
		__atomic_fetch_add(&sl->tx_done, 1, __ATOMIC_RELEASE);
		service(q->sock);
		wake(&chans[ch]);
		break;
	}
	case NK_OP_RX_DONE:
		if (q->flags & NK_NQF_ACCEPT) {
			if (!socks[q->sock].listening || !sock_ok(ch, q->arg.u32[0]))
				BAD("accept claim of %u", q->arg.u32[0]);
			naccept_claims++;
		} else if (q->chunk == NK_NO_CHUNK) {
			nrx_done_none++;
		} else if (!nk_pool_put(&rxpool, q->chunk)) {
			BAD("RX_DONE of chunk %u not at the guest", q->chunk);
		} else {
			rx_at_guest[q->sock]--;
			service(q->sock);
		}
		break;
	case NK_OP_SHUTDOWN:
		if (q->arg.u32[0] != SHUT_RD)
			socks[q->sock].fin_after = true;
		complete(ch, q, 0, NULL);
		service(q->sock);
		break;
	case NK_OP_SETSOCKOPT:
		if (q->arg.opt.vlen > NK_OPT_INLINE)
			BAD("setsockopt vlen %u", q->arg.opt.vlen);
		complete(ch, q, 0, NULL);
		break;
	case NK_OP_GETSOCKOPT: {
		uint32_t n = q->arg.opt.vlen;
		memset(&r, 0, sizeof(r));
		r.chunk = q->chunk;
		r.arg.opt = q->arg.opt;
		if (q->chunk != NK_NO_CHUNK) {
			uint32_t first = nk_geom_tx_first(&reg.g, (uint32_t)ch);
			if (q->chunk - first >= reg.g.tx_per_chan || n > reg.g.chunk_size) {
				BAD("getsockopt chunk %u", q->chunk);
				break;
			}
			memset(nk_region_chunk(&reg, q->chunk), 0xab, n);
		} else {
			memset(r.arg.opt.val, 0xcd, n);
		}
		complete(ch, q, (int32_t)n, &r);
		break;
	}
	case NK_OP_CLOSE:
		release_sock(q->sock);
		break;
	default:
		BAD("unexpected op %u from guest", q->op);
	}
}

static void chan_gone(int ch)
{
	for (uint32_t s = 0; s < NSOCKS; s++)
		if (socks[s].used && socks[s].chan == ch) {
			fprintf(stderr, "fake-ce: socket %u still open when its process left\n", s);
			nbad++;
			release_sock(s);
		}
	close(chans[ch].ctl);
	close(chans[ch].up_efd);
	close(chans[ch].down_efd);
	memset(&chans[ch], 0, sizeof(chans[ch]));
}

static void hello(int fd)
{
	struct nk_ctl_msg m;
	int fds[NK_CTL_MAX_FDS], n;
	if (nk_ctl_recv(fd, &m, fds, NK_CTL_MAX_FDS, &n) < 0 || m.type != NK_CTL_GUEST_HELLO) {
		BAD("bad hello");
		close(fd);
		return;
	}
	int ch = 0;
	while (ch < NCHAN && chans[ch].used)
		ch++;
	/* A fork-channel request (index != 0) is refused: this harness keeps
	 * one owner per socket, and the refusal exercises GuestLib's fallback
	 * (the child detaches; inherited sockets fail with EIO). The real
	 * CoreEngine's fork path is tested by tests/sys/test_fork.sh. */
	if (ch == NCHAN || strcmp(m.name, "testvm") != 0 || m.index != 0) {
		int fork_req = m.index != 0;
		nk_ctl_init(&m, NK_CTL_ERROR);
		m.status = fork_req ? -EOPNOTSUPP : -ENOENT;
		snprintf(m.text, sizeof(m.text), fork_req ? "fork channels not supported" : "no such VM");
		nk_ctl_send(fd, &m, NULL, 0);
		close(fd);
		return;
	}
	struct fchan *c = &chans[ch];
	c->used = true;
	c->ctl = fd;
	c->up_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->down_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	nk_region_up_ring(&reg, (uint32_t)ch, &c->up);
	nk_region_down_ring(&reg, (uint32_t)ch, &c->down);
	nk_ring_reset(&c->up);
	nk_ring_reset(&c->down);
	/* We poll slowly and want every post kicked: exercise the doorbell. */
	__atomic_store_n(&c->up.hdr->need_wakeup, 1, __ATOMIC_RELEASE);
	nk_ctl_init(&m, NK_CTL_GUEST_WELCOME);
	m.index = (uint32_t)ch;
	int out[3] = { reg.fd, c->up_efd, c->down_efd };
	if (nk_ctl_send(fd, &m, out, 3) < 0)
		BAD("welcome send failed");
}

/* The client's stderr, read while serving: a client that fills the pipe
 * (a sanitizer report) must not deadlock against us. */
static char *errbuf_;
static size_t errlen_, errgot_;

static void drain_err(int fd)
{
	ssize_t r;
	char junk[512];
	while ((r = read(fd, errgot_ + 1 < errlen_ ? errbuf_ + errgot_ : junk,
			 errgot_ + 1 < errlen_ ? errlen_ - 1 - errgot_ : sizeof(junk))) > 0)
		if (errgot_ + 1 < errlen_)
			errgot_ += (size_t)r;
	errbuf_[errgot_] = '\0';
}

/* Serve until the child exits; returns its wait status. */
static int serve(int lfd, pid_t child, int errfd)
{
	int status = -1;
	uint64_t give_up = now_ns() + 120ull * 1000000000ull;
	for (;;) {
		drain_err(errfd);
		if (status == -1 && now_ns() > give_up) {
			fprintf(stderr, "fake-ce: client still running after 120 s: killing it\n");
			kill(child, SIGKILL);
			give_up = UINT64_MAX;
		}
		struct pollfd pf[1 + 2 * NCHAN];
		int n = 0;
		pf[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < NCHAN; i++)
			if (chans[i].used) {
				pf[n++] = (struct pollfd){ .fd = chans[i].ctl, .events = POLLIN };
				pf[n++] = (struct pollfd){ .fd = chans[i].up_efd, .events = POLLIN };
			}
		poll(pf, (nfds_t)n, 2);
		if (pf[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				hello(fd);
		}
		for (int i = 0; i < NCHAN; i++) {
			if (!chans[i].used)
				continue;
			uint64_t v;
			if (read(chans[i].up_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				perror("fake-ce: read up_efd");
			struct nk_nqe q;
			while (nk_ring_dequeue(&chans[i].up, &q))
				handle(i, &q);
			for (uint32_t s = 0; s < NSOCKS; s++)
				if (socks[s].used && socks[s].chan == i)
					service(s);
			char b;
			struct pollfd cp = { .fd = chans[i].ctl, .events = POLLIN };
			if (poll(&cp, 1, 0) > 0 && recv(chans[i].ctl, &b, 1, MSG_DONTWAIT) <= 0)
				chan_gone(i);
		}
		for (int i = 0; i < 8; i++)
			if (delays[i].used && now_ns() >= delays[i].due_ns) {
				delays[i].used = false;
				if (chans[delays[i].chan].used && sock_ok(delays[i].chan, delays[i].sock)) {
					struct nk_sock_slot *sl = nk_region_slot(&reg, delays[i].sock);
					__atomic_store_n(&sl->state, NK_SS_CONNECTED, __ATOMIC_RELEASE);
					complete(delays[i].chan, &delays[i].nqe, 0, NULL);
				}
			}
		if (status == -1 && waitpid(child, &status, WNOHANG) == child)
			continue; /* one more round to see the control EOF */
		if (status != -1) {
			bool any = false;
			for (int i = 0; i < NCHAN; i++)
				any |= chans[i].used;
			if (!any)
				return status;
		}
	}
}

static void result(bool ok, const char *what)
{
	printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
	fflush(stdout);
	if (!ok)
		failures++;
}

/* Run the client with env; capture its stderr into errbuf. */
static int run_client(const char *client, const char *mode, const char *preload,
		      const char *vm, const char *ctl, int lfd, char *errbuf, size_t errlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		setenv("LD_PRELOAD", preload, 1);
		if (vm)
			setenv("NK_VM", vm, 1);
		else
			unsetenv("NK_VM");
		setenv("NK_CTL", ctl, 1);
		execl(client, client, mode, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	errbuf_ = errbuf;
	errlen_ = errlen;
	errgot_ = 0;
	errbuf[0] = '\0';
	int status;
	if (lfd >= 0) {
		status = serve(lfd, pid, p[0]);
	} else {
		alarm(60);
		while (waitpid(pid, &status, WNOHANG) == 0) {
			drain_err(p[0]);
			usleep(2000);
		}
	}
	drain_err(p[0]);
	close(p[0]);
	return status;
}

static int count_lines(const char *s, const char *needle)
{
	int n = 0;
	for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		n += strncmp(l, needle, strlen(needle)) == 0;
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s CLIENT LIBNKGUEST\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	alarm(300); /* a hang is a failure, not a stuck test run */
	const char *client = argv[1];
	char preload[1024];
	const char *extra = getenv("NK_PRELOAD_EXTRA");
	snprintf(preload, sizeof(preload), "%s%s%s", extra ? extra : "", extra && *extra ? ":" : "", argv[2]);

	char dir[] = "/tmp/nk-gltest.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char ctl[64], shm[128], err[4096];
	snprintf(ctl, sizeof(ctl), "%s/ce.sock", dir);
	snprintf(shm, sizeof(shm), "/dev/shm/nk-gltest-%d", (int)getpid());

	struct nk_geom g;
	nk_geom_default(&g, NK_REGION_VM);
	g.nchan = NCHAN;
	g.nsocks = NSOCKS;
	g.nrx = 256;
	uint8_t ip[4] = { 10, 0, 0, 2 };
	if (nk_region_create(&reg, shm, &g, 0, "testvm", ip, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	unlink(shm); /* the guest gets it by fd: nothing to clean up later */
	nk_pool_init(&rxpool, nk_geom_rx_first(&reg.g), reg.g.nrx);

	int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ctl);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 8) < 0) {
		perror("bind/listen");
		return 1;
	}

	/* 1. the full client against the fake CE */
	int st = run_client(client, "main", preload, "testvm", ctl, lfd, err, sizeof(err));
	fputs(err, stderr);
	result(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client main (socket/connect/send/recv/poll/epoll/accept/...)");
	result(nbad == 0, "no invalid NQE from GuestLib");
	result(first_op == NK_OP_SOCKET, "first NQE is SOCKET");
	bool leaked = false;
	for (uint32_t s = 0; s < NSOCKS; s++)
		leaked |= socks[s].used || rx_at_guest[s] != 0;
	result(!leaked && nk_pool_avail(&rxpool) == reg.g.nrx, "every socket CLOSEd, every RX chunk returned");
	result(nops[NK_OP_CLOSE] == nops[NK_OP_SOCKET] + naccept_claims,
	       "one CLOSE per socket (dup'd fds close once)");
	result(naccept_claims == nops[NK_OP_LISTEN] && naccept_claims > 0, "ACCEPT entries claimed with RX_DONE");
	result(nops[NK_OP_SEND] > 64 && nsend_bytes > (1u << 20), "SENDs span more than the TX window");
	result(nops[NK_OP_CONNECT] >= 5 && nops[NK_OP_SHUTDOWN] >= 1 && nops[NK_OP_GETSOCKOPT] >= 2 &&
	       nops[NK_OP_SETSOCKOPT] >= 1 && nops[NK_OP_BIND] >= 1 && nrx_done_none >= 2,
	       "CONNECT/SHUTDOWN/GETSOCKOPT/SETSOCKOPT/BIND/FIN+ERR RX_DONE seen");
	printf("  ops: SOCKET %llu CONNECT %llu SEND %llu (%llu bytes) RX_DONE %llu CLOSE %llu\n",
	       (unsigned long long)nops[NK_OP_SOCKET], (unsigned long long)nops[NK_OP_CONNECT],
	       (unsigned long long)nops[NK_OP_SEND], (unsigned long long)nsend_bytes,
	       (unsigned long long)nops[NK_OP_RX_DONE], (unsigned long long)nops[NK_OP_CLOSE]);

	/* 2. no CoreEngine: the path does not exist */
	char missing[64];
	snprintf(missing, sizeof(missing), "%s/nonexistent.sock", dir);
	st = run_client(client, "enoent", preload, "testvm", missing, -1, err, sizeof(err));
	result(WIFEXITED(st) && WEXITSTATUS(st) == 0, "no CE (missing path): socket() fails with ENOENT");
	result(count_lines(err, "netkernel: cannot reach CoreEngine at ") == 1 && count_lines(err, "netkernel:") == 1,
	       "no CE (missing path): exactly one stderr line");
	fputs(err, stdout);

	/* 3. no CoreEngine: a socket file nobody listens on */
	char dead[64];
	snprintf(dead, sizeof(dead), "%s/dead.sock", dir);
	int dfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un da = { .sun_family = AF_UNIX };
	snprintf(da.sun_path, sizeof(da.sun_path), "%s", dead);
	if (bind(dfd, (struct sockaddr *)&da, sizeof(da)) < 0)
		perror("bind dead");
	st = run_client(client, "refused", preload, "testvm", dead, -1, err, sizeof(err));
	result(WIFEXITED(st) && WEXITSTATUS(st) == 0 && count_lines(err, "netkernel:") == 1,
	       "no CE (not listening): ECONNREFUSED, one stderr line");
	close(dfd);
	unlink(dead);

	/* 4. NK_VM unset */
	st = run_client(client, "novm", preload, NULL, ctl, -1, err, sizeof(err));
	result(WIFEXITED(st) && WEXITSTATUS(st) == 0 && count_lines(err, "netkernel:") == 1,
	       "NK_VM unset: ENETDOWN, one stderr line");

	close(lfd);
	unlink(ctl);
	rmdir(dir);
	printf("%s\n", failures ? "gl_fake_ce: FAILED" : "gl_fake_ce: all passed");
	return failures ? 1 : 0;
}
