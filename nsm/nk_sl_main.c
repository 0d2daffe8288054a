/* SPDX-License-Identifier: MIT */
/*
 * nk_sl_main.c - nk-nsm: command line, start-up and the event loop.
 *
 *   nk-nsm --ctl PATH --name NAME [--stack kernel|mptcp] [--cc cubic|bbr|reno]
 *          [--spin-us N] [--spin-hold] [--allow-guest-cc]
 *
 * One thread, one epoll set: control socket, down-ring doorbell, signalfd
 * and every stack socket. When there is nothing to do the loop spins for
 * --spin-us (default 20) on the down ring and its sockets, yielding the
 * core on every turn, then announces need_wakeup and sleeps, so an idle NSM
 * makes no syscalls and burns no CPU. The yield matters on small hosts: a
 * spin that kept the core took it from the guest or the CoreEngine that
 * produce the work it waits for (docs/ARCHITECTURE.md, "Spinning").
 * --spin-hold spins without yielding, as an NSM that owns its core polls
 * (the paper's NSMs do; fig-mux measures what that costs per NSM).
 */
#define _GNU_SOURCE
#include "nk_sl.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

#define DOWN_BURST 32u
_Static_assert(DOWN_BURST <= NK_SL_TXP_MAX, "a burst's SENDs must fit sl->txp");
#define DOWN_BUDGET 256u /* NQEs per loop pass, so sockets get their turn */

static void usage(FILE *f)
{
	fprintf(f, "usage: nk-nsm --ctl PATH --name NAME [--stack kernel|mptcp] "
		   "[--cc cubic|bbr|reno] [--spin-us N (default 20)] [--spin-hold]\n"
		   "              [--allow-guest-cc]\n"
		   "              [--nk-peers PREFIX[,PREFIX...]]   hosts that run NetKernel: sessions\n");
}

static int die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "nk-nsm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see --help)\n");
	return 2;
}

static int parse_args(struct nk_sl *sl, int argc, char **argv, const char **ctl)
{
	static const struct option lo[] = {
		{ "ctl", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "stack", required_argument, NULL, 's' },
		{ "cc", required_argument, NULL, 'C' },
		{ "spin-us", required_argument, NULL, 'S' },
		{ "spin-hold", no_argument, NULL, 'H' },
		{ "allow-guest-cc", no_argument, NULL, 'A' },
		{ "nk-peers", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	char *end;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'c': *ctl = optarg; break;
		case 'n': sl->name = optarg; break;
		case 's':
			if (strcmp(optarg, "kernel") && strcmp(optarg, "mptcp"))
				return die_usage("unknown --stack '%s' (kernel or mptcp)", optarg);
			sl->mptcp = strcmp(optarg, "mptcp") == 0;
			break;
		case 'C':
			if (strcmp(optarg, "cubic") && strcmp(optarg, "bbr") && strcmp(optarg, "reno"))
				return die_usage("unknown --cc '%s' (cubic, bbr or reno)", optarg);
			sl->cc = optarg;
			break;
		case 'S': {
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || v > 1000000)
				return die_usage("bad --spin-us '%s' (0..1000000)", optarg);
			sl->spin_us = (uint32_t)v;
			break;
		}
		case 'H': sl->spin_hold = true; break;
		case 'A': sl->allow_guest_cc = true; break;
		case 'P':
			if (nk_prefixes_parse(&sl->peers, optarg) < 0)
				return die_usage("bad --nk-peers '%s' (IPv4 prefixes A.B.C.D/N, comma-separated, at most 16)",
						 optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default:
			return die_usage("bad option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return die_usage("unexpected argument '%s'", argv[optind]);
	if (!*ctl)
		return die_usage("%s", "--ctl PATH is required");
	if (!sl->name || !sl->name[0] || strlen(sl->name) >= NK_NAME_MAX)
		return die_usage("%s", "--name NAME is required (1..31 characters)");
	return 0;
}

static int ep_add(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ee = { .events = EPOLLIN, .data.u64 = tag };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ee) < 0 ? -errno : 0;
}

static void handle_events(struct nk_sl *sl, const struct epoll_event *ev, int n)
{
	for (int i = 0; i < n && !sl->stop; i++) {
		uint64_t tag = ev[i].data.u64 & NK_SL_TAG_MASK;
		uint32_t id = (uint32_t)ev[i].data.u64;
		if (tag == NK_SL_TAG_CTL) {
			nk_sl_ctl_drain(sl);
		} else if (tag == NK_SL_TAG_DOWN) {
			uint64_t v;
			/* Only after EPOLLIN, so this never blocks. */
			if (read(sl->down_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				nk_sl_log(sl, "down doorbell: %s", strerror(errno));
		} else if (tag == NK_SL_TAG_SIG) {
			struct signalfd_siginfo si;
			if (read(sl->sigfd, &si, sizeof(si)) > 0)
				sl->stop = true;
		} else if (tag == NK_SL_TAG_SOCK) {
			nk_sl_sock_event(sl, id, ev[i].events);
		}
	}
}

static uint32_t drain_down(struct nk_sl *sl)
{
	struct nk_nqe b[DOWN_BURST];
	uint32_t total = 0;
	while (total < DOWN_BUDGET && sl->bl_count < NK_SL_BACKLOG_SOFT && !sl->stop) {
		uint32_t n = nk_ring_dequeue_burst(&sl->down, b, DOWN_BURST);
		if (n == 0)
			break;
		for (uint32_t i = 0; i < n; i++)
			nk_sl_dispatch(sl, &b[i]);
		nk_sl_tx_flush(sl);
		total += n;
	}
	return total;
}

/* The up ring is full (or older NQEs wait in the backlog): the CE drains it
 * without telling us, so look again shortly. Sockets stay out of the way
 * meanwhile: their level-triggered readiness would only spin. */
static void wait_blocked(struct nk_sl *sl, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = sl->ctl, .events = POLLIN },
			       { .fd = sl->sigfd, .events = POLLIN } };
	int n = poll(p, 2, timeout_ms);
	if (n <= 0)
		return;
	if (p[0].revents)
		nk_sl_ctl_drain(sl);
	if (p[1].revents) {
		struct signalfd_siginfo si;
		if (read(sl->sigfd, &si, sizeof(si)) > 0)
			sl->stop = true;
	}
}

static void run(struct nk_sl *sl)
{
	struct epoll_event ev[64];
	uint64_t idle_since = 0, next_linger_check = 0;
	const uint64_t spin_ns = (uint64_t)sl->spin_us * 1000u;

	while (!sl->stop) {
		uint32_t work = (uint32_t)nk_sl_flush_backlog(sl);
		work += drain_down(sl);
		if (sl->ops->poll)
			work += (uint32_t)sl->ops->poll(sl->st, nk_sl_sock_event, sl);
		bool blocked = !nk_sl_can_produce(sl);
		if (blocked) {
			wait_blocked(sl, 0);
		} else {
			int n = epoll_wait(sl->epfd, ev, 64, 0);
			if (n > 0) {
				handle_events(sl, ev, n);
				work += (uint32_t)n;
			}
		}
		nk_sl_kick(sl);
		uint64_t now = nk_sl_now_ns();
		if (sl->nclosing && now >= next_linger_check) {
			nk_sl_check_closing(sl, now);
			next_linger_check = now + 100000000ull;
		}
		if (work) {
			idle_since = 0;
			continue;
		}
		if (!idle_since)
			idle_since = now;
		if (sl->ops->poll) {
			cpu_relax(); /* a polling stack owns its core */
			continue;
		}
		if (now - idle_since < spin_ns) {
			/* As the CoreEngine's spin: a runnable guest or CE on
			 * this core gets it; an idle core comes straight back.
			 * --spin-hold keeps it: this NSM owns its core. */
			if (sl->spin_hold)
				cpu_relax();
			else
				sched_yield();
			continue;
		}
		if (blocked) {
			wait_blocked(sl, 1);
			continue;
		}
		/* RX_CREDIT wakes us only when a socket waits for it */
		if (!nk_ring_prepare_sleep_for(&sl->down,
					       sl->credit_waits ? NK_WAKE_ANY : NK_WAKE_URGENT))
			continue;
		int n = epoll_wait(sl->epfd, ev, 64, sl->nclosing ? 1000 : -1);
		nk_ring_awake(&sl->down);
		idle_since = 0;
		if (n > 0)
			handle_events(sl, ev, n);
		else if (n < 0 && errno != EINTR)
			nk_sl_log(sl, "epoll_wait: %s", strerror(errno));
	}
}

int main(int argc, char **argv)
{
	struct nk_sl sl = { .ops = &nk_ks_ops, .cc = "cubic", .spin_us = 20,
			    .ctl = -1, .epfd = -1, .sigfd = -1, .up_efd = -1, .down_efd = -1,
			    .free_head = NK_NO_SOCK, .nreg.fd = -1 };
	const char *ctl = NULL;
	char err[512];
	int r = parse_args(&sl, argc, argv, &ctl);
	if (r)
		return r;

	/* Signals arrive through the epoll set: no handler races with the
	 * single-threaded loop, and SIGPIPE cannot kill us. */
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	sl.sigfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	sl.epfd = epoll_create1(EPOLL_CLOEXEC);
	sl.vms = calloc(NK_SL_MAX_VMS, sizeof(*sl.vms));
	r = 1;
	if (sl.sigfd < 0 || sl.epfd < 0 || !sl.vms) {
		fprintf(stderr, "nk-nsm[%s]: setup failed: %s\n", sl.name, strerror(errno));
		goto out;
	}
	struct nk_stack_cfg cfg = { .cc = sl.cc, .mptcp = sl.mptcp, .epfd = sl.epfd };
	if (sl.ops->init(&sl.st, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nk-nsm[%s]: %s\n", sl.name, err);
		goto out;
	}
	if (nk_sl_ctl_hello(&sl, ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "nk-nsm[%s]: %s\n", sl.name, err);
		goto out;
	}
	if (ep_add(sl.epfd, sl.ctl, NK_SL_TAG_CTL) < 0 ||
	    ep_add(sl.epfd, sl.down_efd, NK_SL_TAG_DOWN) < 0 ||
	    ep_add(sl.epfd, sl.sigfd, NK_SL_TAG_SIG) < 0) {
		fprintf(stderr, "nk-nsm[%s]: epoll: %s\n", sl.name, strerror(errno));
		goto out;
	}
	nk_sl_ctl_drain(&sl); /* VM_ATTACH may already be queued */
	run(&sl);
	r = 0; /* signal or CE gone: both are a clean end */
	if (sl.n_invalid)
		nk_sl_log(&sl, "exiting; %llu invalid NQEs were rejected",
			  (unsigned long long)sl.n_invalid);
out:
	/* Close every socket and mapping, whatever got us here. */
	nk_sl_socks_fini(&sl);
	nk_sl_vm_detach_all(&sl);
	if (sl.st)
		sl.ops->fini(sl.st);
	nk_region_unmap(&sl.nreg);
	free(sl.vms);
	free(sl.bl);
	const int fds[] = { sl.up_efd, sl.down_efd, sl.ctl, sl.epfd, sl.sigfd };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}
