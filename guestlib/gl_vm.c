/* SPDX-License-Identifier: MIT */
/*
 * gl_vm.c - VM mode: claiming a channel through the NK device.
 *
 * Inside a QEMU VM there is no control socket and no doorbell: the region is
 * a PCI BAR (NK_DEVICE=pci, set by the guest's /init). A process claims a
 * free channel with a CAS on its claim line and waits until the CoreEngine,
 * which polls the lines, publishes OPEN and the channel's key (nk_abi.h,
 * struct nk_chan_ctl). From then on everything is as in process mode, except
 * that both sides poll with back-off instead of ringing eventfds.
 */
#include "nk_gl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nk_vmdev.h"

/* How long a claim may wait for the CoreEngine's answer. */
#define NK_GL_VM_CLAIM_TIMEOUT_MS 10000

static struct nk_chan_ctl *nk_gl_vm_line(const struct nk_region *reg, uint32_t c)
{
	return &nk_region_chan(reg, c)->ctl;
}

static uint64_t nk_gl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Poll back-off: 50 us doubling to 1 ms (an idle waiter must not spin a
 * vCPU, and the CoreEngine itself polls VM-mode channels every <= 1 ms). */
void nk_gl_vm_backoff(uint32_t *us)
{
	struct timespec ts = { 0, (long)*us * 1000L };
	nanosleep(&ts, NULL);
	if (*us < NK_GL_VM_POLL_MAX_US)
		*us = *us * 2 > NK_GL_VM_POLL_MAX_US ? NK_GL_VM_POLL_MAX_US : *us * 2;
}

int nk_gl_vm_map(struct nk_region *reg, char *err, size_t errlen)
{
	const char *spec = getenv("NK_DEVICE");
	return nk_vmdev_map(spec && *spec ? spec : "pci", reg, err, errlen);
}

/* A new program image in a pid that held channels (exec): GuestLib's state
 * did not survive the exec and neither did its reserved fds (close-on-exec),
 * so those channels are dead. Ask the CoreEngine to release them, as the
 * control socket (close-on-exec too) tells it in process mode. */
void nk_gl_vm_release_mine(const struct nk_region *reg)
{
	uint32_t me = (uint32_t)getpid();
	for (uint32_t c = 0; c < reg->g.nchan; c++) {
		struct nk_chan_ctl *l = nk_gl_vm_line(reg, c);
		uint32_t seq = __atomic_load_n(&l->seq, __ATOMIC_ACQUIRE);
		uint64_t claim = __atomic_load_n(&l->claim, __ATOMIC_ACQUIRE);
		if ((uint32_t)(claim >> 32) == seq && (uint32_t)claim == me &&
		    __atomic_load_n(&l->gone, __ATOMIC_RELAXED) != seq)
			__atomic_store_n(&l->gone, seq, __ATOMIC_RELEASE);
	}
}

int nk_gl_vm_claim(const struct nk_region *reg, uint32_t fork_of, const uint32_t pkey[2],
		   uint32_t *chan, uint32_t *seqp, uint32_t key[2])
{
	uint32_t pid = (uint32_t)getpid();
	bool any_free = false, down = true;

	for (uint32_t c = 0; c < reg->g.nchan; c++) {
		struct nk_chan_ctl *l = nk_gl_vm_line(reg, c);
		uint32_t state = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE);
		if (state != NK_VC_DOWN && state != NK_VC_NONE)
			down = false;
		if (state != NK_VC_FREE)
			continue;
		any_free = true;
		uint32_t seq = __atomic_load_n(&l->seq, __ATOMIC_RELAXED);
		uint64_t cur = __atomic_load_n(&l->claim, __ATOMIC_ACQUIRE);
		if ((uint32_t)(cur >> 32) == seq)
			continue; /* another process got this incarnation */
		uint64_t mine = (uint64_t)seq << 32 | pid;
		if (!__atomic_compare_exchange_n(&l->claim, &cur, mine, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			continue;
		l->fork_of = fork_of;
		l->fork_key[0] = pkey ? pkey[0] : 0;
		l->fork_key[1] = pkey ? pkey[1] : 0;
		__atomic_store_n(&l->ready, seq, __ATOMIC_RELEASE);
		/* Wait for the CoreEngine's verdict on this incarnation. */
		uint64_t until = nk_gl_now_ms() + NK_GL_VM_CLAIM_TIMEOUT_MS;
		uint32_t us = 20;
		for (;;) {
			uint32_t st = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE);
			uint32_t s2 = __atomic_load_n(&l->seq, __ATOMIC_RELAXED);
			if (s2 == seq && st == NK_VC_OPEN) {
				key[0] = l->key[0];
				key[1] = l->key[1];
				*chan = c;
				*seqp = seq;
				return 0;
			}
			if ((s2 == seq && st == NK_VC_REFUSED) || s2 != seq || st == NK_VC_DOWN) {
				int32_t status = l->status;
				__atomic_store_n(&l->gone, seq, __ATOMIC_RELEASE);
				if (st == NK_VC_DOWN)
					return -ECONNREFUSED;
				return (status < 0 && status > -4096) ? status : -EPROTO;
			}
			if (nk_gl_now_ms() >= until) {
				__atomic_store_n(&l->gone, seq, __ATOMIC_RELEASE);
				return -ETIMEDOUT;
			}
			nk_gl_vm_backoff(&us);
		}
	}
	if (down)
		return -ECONNREFUSED;
	return any_free ? -EAGAIN : -EUSERS;
}

/* A fork child took over the channel its parent claimed for it: put its own
 * pid into the claim, which the agent watches (we own this incarnation, so a
 * plain atomic store is enough). */
void nk_gl_vm_adopt_pid(const struct nk_region *reg, uint32_t c, uint32_t seq)
{
	struct nk_chan_ctl *l = nk_gl_vm_line(reg, c);
	__atomic_store_n(&l->claim, (uint64_t)seq << 32 | (uint32_t)getpid(), __ATOMIC_RELEASE);
}

/* Is our channel still ours and the CoreEngine alive? The state line must
 * still say OPEN at our incarnation, and the heartbeat must move. */
bool nk_gl_vm_alive(void)
{
	struct nk_chan_ctl *l = nk_gl_vm_line(&nk_gl.reg, nk_gl.chan);
	uint32_t st = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE);
	uint32_t seq = __atomic_load_n(&l->seq, __ATOMIC_RELAXED);
	if (st != NK_VC_OPEN || seq != nk_gl.vc_seq)
		return false;
	uint32_t beat = __atomic_load_n(&l->beat, __ATOMIC_RELAXED);
	uint64_t now = nk_gl_now_ms();
	if (beat != nk_gl.vc_beat || !nk_gl.vc_beat_ms) {
		nk_gl.vc_beat = beat;
		nk_gl.vc_beat_ms = now;
		return true;
	}
	return now - nk_gl.vc_beat_ms < NK_VC_BEAT_DEAD_MS;
}
