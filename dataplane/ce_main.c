/* SPDX-License-Identifier: MIT */
/*
 * ce_main.c - nk-coreengine: arguments, event loop, clean shutdown.
 *
 * One thread. It switches NQEs while there is work, spins --spin-us when
 * there is none, then announces need_wakeup on every ring it consumes and
 * sleeps in epoll_wait on the doorbells, control sockets and a signalfd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ce.h"
#include "nk_ctl.h"

static struct ce g_ce;

uint64_t ce_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ce_log(const char *fmt, ...)
{
	va_list ap;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "nk-coreengine[%ld.%03ld]: ", (long)ts.tv_sec % 100000, ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int ce_epoll_add(struct ce *ce, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	return epoll_ctl(ce->epfd, EPOLL_CTL_ADD, fd, &ev);
}

void ce_epoll_del(struct ce *ce, int fd)
{
	epoll_ctl(ce->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nk-coreengine [--ctl PATH] [--instance ID] [--spin-us N] [--nsm-bin PATH]\n"
		"                     --nsm name=N[,netns=NS][,stack=kernel|mptcp][,cc=cubic|bbr|reno]\n"
		"                           [,spin=US][,hold=on|off][,iso=on|off][,rate=BITS/S] ...\n"
		"                     --vm name=V,ip=A.B.C.D,nsm=N[,mode=process|vm]\n"
		"                           [,weight=1..1000][,rate=BITS/S][,ops=N/S] ...\n"
		"                     (mode=vm: the guests are a QEMU VM's processes, attached through\n"
		"                     the NK device, see scenarios/vm/nkvm.sh; iso/rate of an NSM and\n"
		"                     weight/rate/ops of a VM: docs/ARCHITECTURE.md, \"Multiplexing and\n"
		"                     isolation\"; nkctl set / set-nsm change them live)\n"
		"                     [--nk-peers PREFIX[,PREFIX...]]  hosts that run NetKernel: their\n"
		"                     connections are moved on a switch instead of draining\n"
		"Runs in the foreground; SIGTERM/SIGINT stop it and remove its shm files and socket.\n");
}

static int parse_args(struct ce *ce, int argc, char **argv)
{
	char err[256];
	const char *vms[CE_MAX_VMS];
	int nvms = 0;

	snprintf(ce->ctl_path, sizeof(ce->ctl_path), "%s", NK_CTL_DEFAULT_PATH);
	snprintf(ce->instance, sizeof(ce->instance), "%d", (int)getpid());
	ce->spin_us = 20;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		}
		if (!v) {
			fprintf(stderr, "nk-coreengine: %s needs a value (or unknown option)\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--ctl")) {
			if (strlen(v) >= sizeof(ce->ctl_path)) {
				fprintf(stderr, "nk-coreengine: --ctl path longer than %zu bytes\n", sizeof(ce->ctl_path) - 1);
				return -1;
			}
			snprintf(ce->ctl_path, sizeof(ce->ctl_path), "%s", v);
		} else if (!strcmp(a, "--instance")) {
			if (strlen(v) == 0 || strlen(v) >= sizeof(ce->instance) || strchr(v, '/')) {
				fprintf(stderr, "nk-coreengine: --instance must be 1-31 characters without '/'\n");
				return -1;
			}
			snprintf(ce->instance, sizeof(ce->instance), "%s", v);
		} else if (!strcmp(a, "--spin-us")) {
			char *end;
			unsigned long n = strtoul(v, &end, 10);
			if (*end || n > 1000000) {
				fprintf(stderr, "nk-coreengine: --spin-us wants 0..1000000, got '%s'\n", v);
				return -1;
			}
			ce->spin_us = (uint32_t)n;
		} else if (!strcmp(a, "--nk-peers")) {
			if (strlen(v) >= sizeof(ce->nk_peers) || nk_prefixes_parse(&ce->peers, v) < 0) {
				fprintf(stderr, "nk-coreengine: bad --nk-peers '%s' (IPv4 prefixes A.B.C.D/N, comma-separated, at most 16)\n", v);
				return -1;
			}
			snprintf(ce->nk_peers, sizeof(ce->nk_peers), "%s", v);
		} else if (!strcmp(a, "--nsm-bin")) {
			snprintf(ce->nsm_bin, sizeof(ce->nsm_bin), "%s", v);
		} else if (!strcmp(a, "--nsm")) {
			if (ce_nsm_add(ce, v, err, sizeof(err)) < 0) {
				fprintf(stderr, "nk-coreengine: %s\n", err);
				return -1;
			}
		} else if (!strcmp(a, "--vm")) {
			if (nvms == CE_MAX_VMS) {
				fprintf(stderr, "nk-coreengine: too many --vm (max %d)\n", CE_MAX_VMS);
				return -1;
			}
			vms[nvms++] = v; /* after all --nsm, so order does not matter */
		} else {
			fprintf(stderr, "nk-coreengine: unknown option %s (see --help)\n", a);
			return -1;
		}
	}
	for (int i = 0; i < nvms; i++) {
		if (ce_vm_add(ce, vms[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "nk-coreengine: %s\n", err);
			return -1;
		}
	}
	if (ce->nvms == 0) {
		fprintf(stderr, "nk-coreengine: no --vm given; nothing to serve (see --help)\n");
		return -1;
	}
	if (!ce->nsm_bin[0]) {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0) {
			fprintf(stderr, "nk-coreengine: cannot find own path; give --nsm-bin\n");
			return -1;
		}
		self[n] = '\0';
		snprintf(ce->nsm_bin, sizeof(ce->nsm_bin), "%s/nk-nsm", dirname(self));
	}
	return 0;
}

static void reap_children(struct ce *ce)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (uint32_t i = 0; i < ce->nnsms; i++) {
			struct ce_nsm *n = &ce->nsms[i];
			if (n->pid != pid)
				continue;
			n->pid = -1;
			n->spawned = false;
			char why[64];
			if (WIFSIGNALED(st))
				snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
			else
				snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(st));
			if (n->state != CE_NSM_DOWN)
				ce_nsm_lost(ce, n, why);
			else
				ce_log("nsm %s: %s", n->name, why);
		}
	}
}

static void handle_event(struct ce *ce, const struct epoll_event *ev)
{
	uint64_t t = ev->data.u64, junk;
	switch (CE_TAG_KIND(t)) {
	case CE_EV_LISTEN:
		ce_ctl_accept(ce);
		break;
	case CE_EV_CONN:
		ce_ctl_readable(ce, (int)CE_TAG_B(t));
		break;
	case CE_EV_CHAN_EFD: {
		struct ce_vm *vm = &ce->vms[CE_TAG_A(t)];
		struct ce_chan *ch = &vm->chan[CE_TAG_B(t)];
		if (ch->used && read(ch->up_efd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
			ce_log("vm %s: doorbell read: %s", vm->name, strerror(errno));
		break;
	}
	case CE_EV_NSM_EFD: {
		struct ce_nsm *n = &ce->nsms[CE_TAG_A(t)];
		if (n->up_efd >= 0 && read(n->up_efd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
			ce_log("nsm %s: doorbell read: %s", n->name, strerror(errno));
		break;
	}
	case CE_EV_VMPID: {
		struct ce_vm *vm = &ce->vms[CE_TAG_A(t)];
		ce_vm_down(ce, vm, "its QEMU process exited");
		break;
	}
	case CE_EV_SIGNAL: {
		struct signalfd_siginfo si;
		while (read(ce->sig_fd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGCHLD)
				reap_children(ce);
			else
				ce->stop = 1;
		}
		break;
	}
	}
}

/* Every ring the CoreEngine consumes (the up rings of the NSMs that are up,
 * then every live channel's), in a fixed order, until fn says stop; returns
 * the ring it stopped at, or NULL. */
static struct nk_ring *each_up_ring(struct ce *ce, bool (*fn)(struct nk_ring *, void *), void *arg)
{
	for (uint32_t i = 0; i < ce->nnsms; i++)
		if (ce->nsms[i].state == CE_NSM_UP && !fn(&ce->nsms[i].up, arg))
			return &ce->nsms[i].up;
	for (uint32_t v = 0; v < ce->nvms; v++)
		for (uint64_t m = ce->vms[v].live; m;) {
			struct nk_ring *r = &ce->vms[v].chan[ce_mask_pop(&m)].up;
			if (!fn(r, arg))
				return r;
		}
	return NULL;
}

/* skip_busy: rings that already hold NQEs are left alone (they wait on
 * time: a full NSM ring or a token bucket), so only the idle ones are
 * armed and other guests are not made to wait for the timer too. */
static bool arm_one(struct nk_ring *r, void *skip_busy)
{
	if (*(bool *)skip_busy && nk_ring_count(r))
		return true;
	return nk_ring_prepare_sleep(r);
}

static bool disarm_until(struct nk_ring *r, void *stop)
{
	if (r == stop)
		return false;
	nk_ring_awake(r);
	return true;
}

/* Announce need_wakeup on the rings we consume; false if one has work.
 * Then the rings armed before that one are disarmed again: we stay awake,
 * and a flag left up would make their producers ring a doorbell for every
 * NQE until our next sleep (nginx keep-alive: 1.8 guest doorbells and the
 * CoreEngine's eventfd reads per request while it never slept). */
static bool arm_rings(struct ce *ce, bool skip_busy)
{
	struct nk_ring *busy = each_up_ring(ce, arm_one, &skip_busy);
	if (!busy)
		return true;
	each_up_ring(ce, disarm_until, busy);
	return false;
}

static void awake(struct ce *ce)
{
	each_up_ring(ce, disarm_until, NULL);
}

/* Something waits that no doorbell will announce: an NSM being started, or a
 * channel stalled on a full NSM ring or a token bucket in the last round.
 * Sleep briefly instead of forever. A guest NQE that merely arrived after
 * the round is not a stall: arm_rings() sees it and we go round again.
 * (Taking every non-empty ring for a stall made the CoreEngine sleep 1 ms
 * with a fresh NQE in an unarmed ring: bench_ce W = 1 RTT 2 -> 30-200 us.) */
static bool waiting_on_time(struct ce *ce)
{
	for (uint32_t i = 0; i < ce->nnsms; i++)
		if (ce->nsms[i].state == CE_NSM_STARTING || ce->nsms[i].ovf_len)
			return true;
	return ce->stalled;
}

static void run(struct ce *ce)
{
	struct epoll_event evs[64];
	uint64_t idle_since = 0;
	uint32_t rounds = 0, spins = 0;

	/* VM-mode guests ring no doorbell (nothing crosses the VM boundary but
	 * the shared memory): while any VM-mode VM exists, sleep at most 1 ms,
	 * so their requests and claims wait at most that long. */
	bool vmmode = ce_vmctl_any(ce);

	while (!ce->stop) {
		int work = ce_switch_round(ce);
		if (vmmode && (!work || !(rounds & 63)))
			work += ce_vmctl_poll(ce);
		/* While busy, look at the control plane every 256 rounds. */
		if (work && (++rounds & 255))
			continue;
		/* 0 = poll, -1 = until a doorbell, else ns */
		int64_t tmo = 0;
		bool armed = false;
		if (!work) {
			uint64_t now = ce_now_ns();
			if (!idle_since)
				idle_since = now;
			if (now - idle_since >= (uint64_t)ce->spin_us * 1000) {
				if (waiting_on_time(ce)) {
					/* at most 1 ms; less when a token bucket
					 * (ce_iso.c) admits again sooner */
					tmo = 1000000;
					if (ce->iso_wake_ns > now && ce->iso_wake_ns - now < (uint64_t)tmo)
						tmo = (int64_t)(ce->iso_wake_ns - now);
					armed = arm_rings(ce, true);
					if (!armed)
						tmo = 0;
				} else if (arm_rings(ce, false)) {
					/* VM-mode channels have no doorbells: poll them */
					tmo = vmmode ? 1000000 : -1;
					armed = true;
				}
			}
		} else {
			idle_since = 0;
		}
		/* Spinning (idle, not armed): yield the core instead of asking
		 * epoll every turn. On a machine with fewer cores than busy
		 * processes the spin otherwise takes CPU from the NSM or the
		 * guest; sched_yield() hands it over when one is runnable and
		 * returns at once when none is. The control plane is looked at
		 * every 16th spinning turn. */
		if (!work && !armed && tmo == 0 && (++spins & 15)) {
			sched_yield();
			continue;
		}
		struct timespec ts = { .tv_sec = 0, .tv_nsec = tmo > 0 ? (long)tmo : 0 };
		int n = epoll_pwait2(ce->epfd, evs, 64, tmo < 0 ? NULL : &ts, NULL);
		if (armed)
			awake(ce);
		if (n > 0)
			idle_since = 0;
		for (int i = 0; i < n; i++)
			handle_event(ce, &evs[i]);
	}
}

int main(int argc, char **argv)
{
	struct ce *ce = &g_ce;
	char err[512];
	sigset_t mask;

	ce->listen_fd = ce->sig_fd = -1;
	if (parse_args(ce, argc, argv) < 0)
		return 2;
	nk_geom_default(&ce->vm_geom, NK_REGION_VM);
	if (nk_geom_layout(&ce->vm_geom) < 0 || ce->vm_geom.nchan > CE_MAX_CHAN) {
		fprintf(stderr, "nk-coreengine: bad VM region geometry\n");
		return 2;
	}
	if (nk_pool_init(&ce->pendfree, 0, CE_MAX_PEND) < 0)
		return 1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	ce->epfd = epoll_create1(EPOLL_CLOEXEC);
	ce->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ce->epfd < 0 || ce->sig_fd < 0 || ce_epoll_add(ce, ce->sig_fd, CE_TAG(CE_EV_SIGNAL, 0, 0)) < 0) {
		perror("nk-coreengine: epoll/signalfd");
		return 1;
	}
	int rc = 0;
	for (uint32_t v = 0; v < ce->nvms && rc == 0; v++)
		if ((rc = ce_vm_open(ce, &ce->vms[v], err, sizeof(err))) < 0)
			fprintf(stderr, "nk-coreengine: %s\n", err);
	if (rc == 0 && (rc = ce_ctl_listen(ce, err, sizeof(err))) < 0)
		fprintf(stderr, "nk-coreengine: %s\n", err);
	if (rc == 0) {
		ce_log("listening on %s (instance %s, %u VMs, %u NSMs)", ce->ctl_path, ce->instance, ce->nvms,
		       ce->nnsms);
		/* Warm start: every NSM that serves a VM runs from the beginning. */
		for (uint32_t v = 0; v < ce->nvms; v++)
			ce_nsm_start(ce, &ce->nsms[ce->vms[v].nsm]);
		run(ce);
		ce_log("stopping");
	}
	ce_vmctl_stop(ce);
	ce_nsm_stop_all(ce);
	for (int fd = 0; fd < ce->nconns; fd++)
		if (ce->conns[fd].fd == fd && fd > 0)
			ce_ctl_close_conn(ce, fd);
	for (uint32_t v = 0; v < ce->nvms; v++)
		ce_vm_close(ce, &ce->vms[v]);
	if (ce->listen_fd >= 0) {
		close(ce->listen_fd);
		unlink(ce->ctl_path);
	}
	free(ce->conns);
	nk_pool_fini(&ce->pendfree);
	return rc < 0 ? 1 : 0;
}
