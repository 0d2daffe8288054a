/* SPDX-License-Identifier: MIT */
/*
 * gl_chan.c - this process's channel: posting NQEs, draining completions and
 * the one place where GuestLib sleeps.
 *
 * All functions run under nk_gl.lock (one process mutex serialises the single
 * producer of the up ring and the single consumer of the down ring).
 */
#include "nk_gl.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A waiting thread spins nk_gl.spins rounds of 32 pauses before it sleeps
 * (NK_GUEST_SPINS, read in gl_attach.c; default 0). The default was 32
 * rounds, about 10 us here, until 2026-11-22: on the 2-core reference
 * machine the spin took the core that the CoreEngine and the NSM needed to
 * produce the answer. bench/app.sh, two rounds each: sockperf 64 B p50
 * ratio 2.45 and 2.55 with the spin, 2.03 and 2.11 without; nginx
 * keep-alive 1 KiB 0.23/0.27 vs 0.28/0.24, with less CPU per request.
 * A host with cores to spare may want it back. */
/* With another thread asleep on the same doorbell, a wake-up may be consumed
 * by the sibling: bound the sleep (ARCHITECTURE.md, wake-up protocol). */
#define NK_GL_SHARED_SLEEP_MS 10

static inline void nk_gl_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

uint64_t nk_gl_cookie(void)
{
	return ++nk_gl.next_cookie;
}

/* The control socket became readable: the only thing the CoreEngine ever
 * sends after WELCOME is EOF (it went away). Any other message is ignored. */
static void nk_gl_check_ctl(void)
{
	char buf[64];
	ssize_t r = REAL(recv)(nk_gl.ctl_fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		nk_gl.state = NK_GL_DEAD;
}

static int nk_gl_errno(int32_t result)
{
	return (result < 0 && result > -4096) ? -result : EIO;
}

static void nk_gl_send_done(const struct nk_nqe *q)
{
	uint32_t c = q->chunk;
	if (!nk_pool_owns(&nk_gl.pool, c) || !nk_gl.tx_owner[c - nk_gl.pool.first]) {
		nk_gl.bad_nqes++; /* not one of our chunks in flight: ignore */
		return;
	}
	struct nk_gl_sock *s = nk_gl.tx_owner[c - nk_gl.pool.first];
	nk_gl.tx_owner[c - nk_gl.pool.first] = NULL;
	(void)nk_pool_put(&nk_gl.pool, c);
	s->tx_inflight--;
	if (q->result < 0 && !s->send_err)
		s->send_err = nk_gl_errno(q->result);
	s->ev_seq++;
	nk_gl.tx_seq++;
	nk_gl_sock_unref(s);
}

static void nk_gl_complete(const struct nk_nqe *q)
{
	if (!(q->flags & NK_NQF_COMPLETION)) {
		nk_gl.bad_nqes++;
		return;
	}
	if (q->op == NK_OP_SEND_DONE) {
		nk_gl_send_done(q);
		return;
	}
	if (q->flags & NK_NQF_ASYNC) {
		/* an asynchronous setsockopt (gl_opt.c): nobody waits for it */
		if (q->op != NK_OP_SETSOCKOPT || nk_gl.async_out == 0) {
			nk_gl.bad_nqes++;
			return;
		}
		nk_gl.async_out--;
		if (q->result < 0)
			nk_gl.async_failed++;
		return;
	}
	for (struct nk_gl_req **pp = &nk_gl.reqs; *pp; pp = &(*pp)->next) {
		struct nk_gl_req *r = *pp;
		if (r->cookie != q->cookie || r->op != q->op)
			continue;
		*pp = r->next;
		r->next = NULL;
		r->resp = *q;
		r->done = true;
		if (r->sock) { /* an asynchronous CONNECT */
			struct nk_gl_sock *s = r->sock;
			r->sock = NULL;
			if (q->result < 0) {
				s->conn = NK_GL_CONN_FAILED;
				s->so_error = nk_gl_errno(q->result);
			} else {
				s->conn = NK_GL_CONN_DONE;
			}
			s->ev_seq++;
			nk_gl_sock_unref(s);
		}
		return;
	}
	nk_gl.bad_nqes++; /* unknown cookie */
}

void nk_gl_drain(void)
{
	struct nk_nqe q[16];
	uint32_t n;
	if (nk_gl.state != NK_GL_ATTACHED)
		return;
	while ((n = nk_ring_dequeue_burst(&nk_gl.down, q, 16)) > 0)
		for (uint32_t i = 0; i < n; i++)
			nk_gl_complete(&q[i]);
}

static void nk_gl_kick(void)
{
	/* VM mode has no doorbell: the CoreEngine polls our ring */
	if (nk_gl.up_efd >= 0 && nk_ring_needs_wakeup(&nk_gl.up)) {
		uint64_t one = 1;
		ssize_t w = REAL(write)(nk_gl.up_efd, &one, sizeof(one));
		(void)w; /* EAGAIN = counter saturated = already signalled */
	}
}

int nk_gl_post(struct nk_nqe *q)
{
	for (unsigned tries = 0;; tries++) {
		if (nk_gl.state != NK_GL_ATTACHED)
			return -ECONNRESET;
		if (nk_ring_enqueue(&nk_gl.up, q))
			break;
		/* Full: the CoreEngine is behind (or back-pressuring us because
		 * our down ring is full). Drain completions so it can make
		 * progress, kick it, and back off without holding the lock. The
		 * control socket tells us if it died meanwhile. */
		nk_gl_drain();
		nk_gl_kick();
		nk_gl_unlock();
		if (tries < 64) {
			sched_yield();
		} else if (nk_gl.vmmode) {
			uint32_t us = NK_GL_VM_POLL_MAX_US;
			nk_gl_vm_backoff(&us);
			nk_gl_lock();
			if (!nk_gl_vm_alive())
				nk_gl.state = NK_GL_DEAD;
			continue;
		} else {
			struct pollfd p = { .fd = nk_gl.ctl_fd, .events = POLLIN };
			if (REAL(poll)(&p, 1, 1) > 0) {
				nk_gl_lock();
				nk_gl_check_ctl();
				continue;
			}
		}
		nk_gl_lock();
	}
	nk_gl_kick();
	return 0;
}

static bool nk_gl_req_done(void *arg)
{
	return ((struct nk_gl_req *)arg)->done;
}

static void nk_gl_req_unlink(struct nk_gl_req *r)
{
	for (struct nk_gl_req **pp = &nk_gl.reqs; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

int nk_gl_request(struct nk_nqe *q, struct nk_nqe *resp)
{
	struct nk_gl_req r = { .op = q->op };
	r.cookie = q->cookie = nk_gl_cookie();
	/* Linked before posting: nk_gl_post may drain the completion itself. */
	r.next = nk_gl.reqs;
	nk_gl.reqs = &r;
	int e = nk_gl_post(q);
	while (e == 0 && !r.done) {
		/* Control ops complete quickly and abandoning one would leak
		 * host state (a SOCKET's slot): wait through signals. */
		int w = nk_gl_wait(nk_gl_req_done, NULL, &r, NULL, NULL, 0, NULL);
		if (w == -ECONNRESET)
			e = w;
	}
	if (!r.done) {
		nk_gl_req_unlink(&r);
		return e;
	}
	*resp = r.resp;
	return 0;
}

/* Would Linux restart the interrupted call? Only a handler installed with
 * SA_RESTART restarts it; we cannot tell which signal interrupted us, so we
 * ask whether every handler that could have run (signal not blocked) has
 * SA_RESTART. glibc's own signals (32, 33) are refused by sigaction and so
 * not counted. */
static bool nk_gl_sa_restart(void)
{
	sigset_t blocked;
	bool any = false;
	if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
		return false;
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		/* Fault signals are synchronous: a thread asleep in ppoll
		 * cannot raise them, so their handlers (ASan's, a JIT's) do
		 * not count. */
		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS ||
		    sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS ||
		    sigismember(&blocked, sig) == 1 || sigaction(sig, NULL, &sa) < 0)
			continue;
		/* sa_handler and sa_sigaction share storage: SIG_DFL/SIG_IGN
		 * read the same through either. */
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return false;
		any = true;
	}
	return any;
}

int nk_gl_wait_io(bool (*check)(void *), bool (*needs_tx)(void *), void *arg,
		  const struct timespec *deadline)
{
	for (;;) {
		int w = nk_gl_wait(check, needs_tx, arg, deadline, NULL, 0, NULL);
		/* With a timeout (SO_RCVTIMEO/SO_SNDTIMEO) Linux says EINTR
		 * even for SA_RESTART handlers (sock_intr_errno). */
		if (w != -EINTR || deadline || !nk_gl_sa_restart())
			return w;
	}
}

void nk_gl_deadline(struct timespec *dl, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, dl);
	dl->tv_sec += ms / 1000;
	dl->tv_nsec += (ms % 1000) * 1000000L;
	if (dl->tv_nsec >= 1000000000L) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000L;
	}
}

bool nk_gl_timeval_deadline(const struct timeval *tv, struct timespec *dl)
{
	if (tv->tv_sec == 0 && tv->tv_usec == 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, dl);
	dl->tv_sec += tv->tv_sec;
	dl->tv_nsec += tv->tv_usec * 1000L;
	if (dl->tv_nsec >= 1000000000L) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000L;
	}
	return true;
}

bool nk_gl_slot_bad(struct nk_gl_sock *s)
{
	return s->stale || s->corrupt || nk_gl.state != NK_GL_ATTACHED;
}

/* Remaining time until dl; false when it has passed. */
static bool nk_gl_remaining(const struct timespec *dl, struct timespec *out)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	out->tv_sec = dl->tv_sec - now.tv_sec;
	out->tv_nsec = dl->tv_nsec - now.tv_nsec;
	if (out->tv_nsec < 0) {
		out->tv_sec--;
		out->tv_nsec += 1000000000L;
	}
	return out->tv_sec >= 0;
}

void nk_gl_wake_sleepers(void)
{
	uint64_t one = 1;
	if (nk_gl.sleepers == 0 || nk_gl.down_efd < 0)
		return;
	/* Readable until the last sleeper leaves and drains it (nk_gl_wait);
	 * it can only fail when the count is near 2^64, i.e. already readable. */
	ssize_t r = REAL(write)(nk_gl.down_efd, &one, sizeof(one));
	(void)r;
}

static void nk_gl_leave_sleep(bool tx)
{
	nk_gl.tx_sleepers -= tx;
	/* need_wakeup stays up while any thread of ours still sleeps (in
	 * NK_WAKE_ANY mode if one of them needed it: a spurious doorbell at
	 * worst) */
	if (--nk_gl.sleepers == 0)
		nk_ring_awake(&nk_gl.down);
}

int nk_gl_wait(bool (*check)(void *), bool (*needs_tx)(void *), void *arg,
	       const struct timespec *deadline, struct pollfd *kfds, nfds_t nk,
	       const sigset_t *sigmask)
{
	struct pollfd stackfds[16];
	struct pollfd *pf = stackfds;
	int ret;
	uint32_t vm_us = 50;      /* VM mode poll step */
	uint64_t vm_slept_us = 0; /* VM mode: time slept in this wait */

	if (nk + 2 > 16 && !(pf = malloc((nk + 2) * sizeof(*pf))))
		return -ENOMEM;
	for (;;) {
		if (nk_gl.state != NK_GL_ATTACHED) {
			ret = -ECONNRESET;
			break;
		}
		nk_gl_drain();
		if (check(arg)) {
			ret = 1;
			break;
		}
		bool hit = false;
		for (uint32_t i = 0; i < nk_gl.spins && !hit; i++) {
			nk_gl_unlock();
			for (int j = 0; j < 32; j++)
				nk_gl_relax();
			nk_gl_lock();
			if (nk_gl.state != NK_GL_ATTACHED)
				break;
			nk_gl_drain();
			hit = check(arg);
		}
		if (hit) {
			ret = 1;
			break;
		}
		if (nk_gl.state != NK_GL_ATTACHED)
			continue;
		struct timespec rem, *tsp = NULL;
		if (deadline) {
			if (!nk_gl_remaining(deadline, &rem)) {
				ret = 0;
				break;
			}
			tsp = &rem;
		}
		bool shared = nk_gl.sleepers > 0;
		/* SEND_DONEs wake us only if some sleeper waits for TX room:
		 * a server asleep in epoll_wait for requests sleeps through the
		 * chunks of its last response coming back, and through the
		 * completions of asynchronous setsockopts (ARCHITECTURE.md,
		 * "Lazy NQEs"). The mode covers every sleeper of the process,
		 * so it is decided from the count, under the lock. */
		bool tx = needs_tx && needs_tx(arg);
		nk_gl.tx_sleepers += tx;
		nk_gl.sleepers++;
		/* With completions already queued, prepare_sleep takes the flag
		 * down again: sleeping then would miss every later doorbell (a
		 * server asleep for good with data waiting). Go round again. */
		if (!nk_ring_prepare_sleep_for(&nk_gl.down,
					       nk_gl.tx_sleepers ? NK_WAKE_ANY : NK_WAKE_URGENT)) {
			nk_gl_leave_sleep(tx);
			continue;
		}
		/* Re-check after publishing need_wakeup: anything the CoreEngine
		 * did before seeing the flag is visible now (Dekker). */
		nk_gl_drain();
		if (check(arg)) {
			nk_gl_leave_sleep(tx);
			ret = 1;
			break;
		}
		if (shared && (!tsp || rem.tv_sec > 0 || rem.tv_nsec > NK_GL_SHARED_SLEEP_MS * 1000000L)) {
			rem.tv_sec = 0;
			rem.tv_nsec = NK_GL_SHARED_SLEEP_MS * 1000000L;
			tsp = &rem;
		}
		if (nk_gl.vmmode) {
			/* No doorbell crosses the VM boundary: sleep in short,
			 * growing steps (50 us .. 1 ms) and look again. */
			if (!tsp || rem.tv_sec > 0 || rem.tv_nsec > (long)vm_us * 1000L) {
				rem.tv_sec = 0;
				rem.tv_nsec = (long)vm_us * 1000L;
				tsp = &rem;
			}
			/* Steps of at most 1 ms while the wait is young. A
			 * wait that has lasted 100 ms is an idle one (accept,
			 * a quiet connection), and each wake-up costs a TCG
			 * guest ~1 ms of host CPU: let the step grow to 10 ms,
			 * and to 50 ms after 1 s (measured per idle process:
			 * 37 % of a host core at 1 ms, 15 % at 10 ms). The
			 * first event after such a pause waits up to one step
			 * longer; once traffic flows, waits are short again. */
			uint32_t cap = vm_slept_us >= NK_GL_VM_IDLE2_AFTER_US ? NK_GL_VM_IDLE2_MAX_US :
				       vm_slept_us >= NK_GL_VM_IDLE_AFTER_US ? NK_GL_VM_IDLE_MAX_US
									     : NK_GL_VM_POLL_MAX_US;
			vm_slept_us += vm_us;
			if (vm_us < cap)
				vm_us = vm_us * 2 > cap ? cap : vm_us * 2;
		}
		/* fd -1 entries are ignored by poll (VM mode: no eventfds) */
		pf[0] = (struct pollfd){ .fd = nk_gl.down_efd, .events = POLLIN };
		pf[1] = (struct pollfd){ .fd = nk_gl.ctl_fd, .events = POLLIN };
		for (nfds_t i = 0; i < nk; i++) {
			pf[i + 2] = kfds[i];
			pf[i + 2].revents = 0;
		}
		nk_gl_unlock();
		int n = REAL(ppoll)(pf, nk + 2, tsp, sigmask);
		int e = errno;
		nk_gl_lock();
		nk_gl_leave_sleep(tx);
		if (n < 0) {
			ret = -e;
			break;
		}
		/* Only the last thread out drains the doorbell, so a sibling
		 * still asleep is woken by it too. */
		if ((pf[0].revents & POLLIN) && nk_gl.sleepers == 0) {
			uint64_t v;
			ssize_t r = REAL(read)(nk_gl.down_efd, &v, sizeof(v));
			(void)r;
		}
		if (pf[1].revents)
			nk_gl_check_ctl();
		if (nk_gl.vmmode && n == 0 && !nk_gl_vm_alive())
			nk_gl.state = NK_GL_DEAD;
		bool kready = false;
		for (nfds_t i = 0; i < nk; i++) {
			kfds[i].revents = pf[i + 2].revents;
			kready |= kfds[i].revents != 0;
		}
		if (kready) {
			ret = 2;
			break;
		}
	}
	if (pf != stackfds)
		free(pf);
	return ret;
}
