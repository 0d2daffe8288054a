/* SPDX-License-Identifier: MIT */
/*
 * ce_vmctl.c - VM mode: channels claimed through the control lines of the NK
 * device, and the VM's power-off.
 *
 * A process inside a QEMU VM has no path to the control socket. It claims a
 * channel in the region (nk_abi.h, struct nk_chan_ctl); this file notices the
 * claim while polling, validates it and publishes WELCOME (state OPEN + key),
 * or REFUSED. A "gone" request (from the in-VM agent) takes the same path as
 * a control socket EOF in process mode (ce_chan_gone). When the VM's QEMU
 * process exits (pidfd registered with `nkctl vm-pid`) or `nkctl vm-down`,
 * every channel of the VM is dropped and its connections are reset.
 *
 * Every field of the claim line is guest-written: each is copied once, with
 * an atomic load, and checked against our private copy of what we published
 * (vc_seq, vc_state). A guest that writes garbage gets refused or ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ce.h"

#define CE_BEAT_NS 100000000ull /* heartbeat period (guests give up after 10 s) */

static struct nk_chan_ctl *vc_line(struct ce_vm *vm, uint32_t c)
{
	return &nk_region_chan(&vm->reg, c)->ctl;
}

/* Publish seq/state (and status/key); state last, with release: a guest that
 * sees the state sees the rest. */
static void vc_publish(struct ce_vm *vm, uint32_t c, uint32_t state, int32_t status, const uint32_t key[2])
{
	struct nk_chan_ctl *l = vc_line(vm, c);
	__atomic_store_n(&l->seq, vm->vc_seq[c], __ATOMIC_RELAXED);
	l->status = status;
	l->key[0] = key ? key[0] : 0;
	l->key[1] = key ? key[1] : 0;
	__atomic_store_n(&l->state, state, __ATOMIC_RELEASE);
}

void ce_vmctl_init(struct ce *ce, struct ce_vm *vm)
{
	(void)ce;
	for (uint32_t c = 0; c < vm->reg.g.nchan; c++) {
		vm->vc_seq[c] = 1;
		vm->vc_state[c] = CE_VC_FREE;
		vc_publish(vm, c, NK_VC_FREE, 0, NULL);
	}
}

bool ce_vmctl_any(const struct ce *ce)
{
	for (uint32_t v = 0; v < ce->nvms; v++)
		if (ce->vms[v].vmmode)
			return true;
	return false;
}

/* A claim of incarnation seq on channel c is complete (ready == seq): check
 * it and open the channel, or refuse it. */
static void vc_claim(struct ce *ce, struct ce_vm *vm, uint32_t c, uint64_t claim)
{
	struct nk_chan_ctl *l = vc_line(vm, c);
	uint32_t fork_of = __atomic_load_n(&l->fork_of, __ATOMIC_RELAXED);
	uint32_t fkey[2] = { __atomic_load_n(&l->fork_key[0], __ATOMIC_RELAXED),
			     __atomic_load_n(&l->fork_key[1], __ATOMIC_RELAXED) };
	pid_t pid = (pid_t)(uint32_t)claim; /* the VM's own pid space: for logs only */
	int rc = 0;
	uint32_t parent = 0;

	if (fork_of) {
		parent = fork_of - 1;
		if (parent >= vm->reg.g.nchan || parent == c || !vm->chan[parent].used ||
		    vm->chan[parent].exiting || vm->vc_state[parent] != CE_VC_OPEN)
			rc = -EINVAL;
		else if (fkey[0] != vm->chan[parent].key[0] || fkey[1] != vm->chan[parent].key[1])
			rc = -EPERM;
	}
	if (rc == 0)
		rc = ce_chan_open_at(ce, vm, c, -1, pid);
	if (rc < 0) {
		/* A guest can claim and give up in a loop: log the 1st, 2nd,
		 * 4th, 8th ... refusal only, so it cannot flood our log. */
		vm->vc_refused++;
		if ((vm->vc_refused & (vm->vc_refused - 1)) == 0)
			ce_log("vm %s: claim of channel %u by pid %d refused: %s (%llu refused so far)", vm->name,
			       c, (int)pid, strerror(-rc), (unsigned long long)vm->vc_refused);
		vm->vc_state[c] = CE_VC_REFUSED;
		vc_publish(vm, c, NK_VC_REFUSED, rc, NULL);
		return;
	}
	if (fork_of)
		ce_chan_fork_holdings(vm, parent, c);
	vm->vc_state[c] = CE_VC_OPEN;
	vc_publish(vm, c, NK_VC_OPEN, 0, vm->chan[c].key);
}

/* Channel c's incarnation is over: say so at once (its process, if any is
 * left, stops using it), and make it claimable once nothing is owed to it. */
static void vc_release(struct ce_vm *vm, uint32_t c)
{
	vm->vc_state[c] = CE_VC_RELEASING;
	vc_publish(vm, c, NK_VC_CLOSED, -ECONNRESET, NULL);
}

/* One look at every control line of a VM-mode VM. */
static int vc_poll_vm(struct ce *ce, struct ce_vm *vm)
{
	int work = 0;
	for (uint32_t c = 0; c < vm->reg.g.nchan; c++) {
		struct nk_chan_ctl *l = vc_line(vm, c);
		uint32_t seq = vm->vc_seq[c];
		uint32_t gone = __atomic_load_n(&l->gone, __ATOMIC_ACQUIRE);
		switch (vm->vc_state[c]) {
		case CE_VC_FREE: {
			uint32_t ready = __atomic_load_n(&l->ready, __ATOMIC_ACQUIRE);
			uint64_t claim = __atomic_load_n(&l->claim, __ATOMIC_ACQUIRE);
			if (gone == seq && (uint32_t)(claim >> 32) == seq) {
				/* claimed, never completed, claimer died */
				vc_release(vm, c);
				work++;
			} else if (ready == seq && (uint32_t)(claim >> 32) == seq) {
				vc_claim(ce, vm, c, claim);
				work++;
			}
			break;
		}
		case CE_VC_OPEN:
			if (gone == seq) {
				ce_chan_gone(ce, vm, c); /* as a control socket EOF */
				vc_release(vm, c);
				work++;
			} else if (!vm->chan[c].used || vm->chan[c].exiting) {
				/* we cut it off (invalid NQEs) */
				vc_release(vm, c);
				work++;
			}
			break;
		case CE_VC_REFUSED:
			if (gone == seq) {
				vc_release(vm, c);
				work++;
			}
			break;
		case CE_VC_RELEASING:
			/* Reusable once nothing is owed to it: then a new seq, so no
			 * claim or gone of the old incarnation can match again. */
			if (ce_chan_free(vm, c)) {
				vm->vc_seq[c] = seq + 1;
				vm->vc_state[c] = CE_VC_FREE;
				vc_publish(vm, c, NK_VC_FREE, 0, NULL);
				work++;
			}
			break;
		}
	}
	return work;
}

int ce_vmctl_poll(struct ce *ce)
{
	static uint64_t next_beat;
	uint64_t now = ce_now_ns();
	bool beat = now >= next_beat;
	int work = 0;

	if (beat)
		next_beat = now + CE_BEAT_NS;
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		if (!vm->vmmode || !vm->reg.base)
			continue;
		work += vc_poll_vm(ce, vm);
		if (beat) {
			vm->beat++;
			for (uint32_t c = 0; c < vm->reg.g.nchan; c++)
				__atomic_store_n(&vc_line(vm, c)->beat, vm->beat, __ATOMIC_RELEASE);
		}
	}
	return work;
}

/* Shutdown: tell every VM-mode guest that nobody serves its device any more
 * (the region file is unlinked, but QEMU keeps it mapped). */
void ce_vmctl_stop(struct ce *ce)
{
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		if (!vm->vmmode || !vm->reg.base)
			continue;
		for (uint32_t c = 0; c < vm->reg.g.nchan; c++)
			vc_publish(vm, c, NK_VC_DOWN, -ENETDOWN, NULL);
		if (vm->qemu_pidfd >= 0) {
			close(vm->qemu_pidfd);
			vm->qemu_pidfd = -1;
		}
	}
}

/* The VM is gone (its QEMU exited, or the operator said so): drop every
 * channel without draining (nobody inside waits for the answers), reset its
 * connections (CLOSE with NK_NQF_ABORT) and reclaim its chunks as the normal
 * paths return them. Channels become claimable again for the next boot. */
void ce_vm_down(struct ce *ce, struct ce_vm *vm, const char *why)
{
	uint32_t n = 0;
	if (vm->qemu_pidfd >= 0) {
		ce_epoll_del(ce, vm->qemu_pidfd);
		close(vm->qemu_pidfd);
		vm->qemu_pidfd = -1;
	}
	vm->down = true; /* ce_sock_release: CLOSE with NK_NQF_ABORT */
	for (uint32_t c = 0; c < vm->reg.g.nchan; c++) {
		if (vm->chan[c].used) {
			ce_chan_finish(ce, vm, c);
			n++;
		}
		if (vm->vc_state[c] != CE_VC_FREE)
			vc_release(vm, c);
	}
	/* Guest-written words of a VM that no longer runs: the only writer is
	 * gone, so the host may clear them for the next boot (a socket lock
	 * held by a pid of the old boot would otherwise never be released). */
	for (uint32_t s = 0; s < vm->reg.g.nsocks; s++)
		__atomic_store_n(&nk_region_slot(&vm->reg, s)->lock, 0, __ATOMIC_RELAXED);
	vm->down = false; /* the CLOSEs are sent: a new boot may claim again */
	ce_log("vm %s: down (%s): %u channels dropped, connections reset", vm->name, why, n);
}

/* `nkctl vm-pid VM PID`: the launcher tells us which QEMU process is the VM,
 * so that its exit, however it happens, brings the VM down. */
int ce_vm_set_pid(struct ce *ce, struct ce_vm *vm, pid_t pid, char *err, size_t errlen)
{
	if (!vm->vmmode) {
		snprintf(err, errlen, "vm %s is not a VM-mode VM (give --vm ...,mode=vm)", vm->name);
		return -EINVAL;
	}
	if (pid <= 0) {
		snprintf(err, errlen, "bad pid %d", (int)pid);
		return -EINVAL;
	}
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		int e = errno;
		if (e == ESRCH) { /* already exited */
			ce_vm_down(ce, vm, "QEMU exited before it was registered");
			snprintf(err, errlen, "pid %d does not exist: vm %s brought down", (int)pid, vm->name);
		} else {
			snprintf(err, errlen, "pidfd_open(%d): %s", (int)pid, strerror(e));
		}
		return -e;
	}
	if (vm->qemu_pidfd >= 0) {
		ce_epoll_del(ce, vm->qemu_pidfd);
		close(vm->qemu_pidfd);
	}
	if (ce_epoll_add(ce, fd, CE_TAG(CE_EV_VMPID, vm->idx, 0)) < 0) {
		int e = errno;
		close(fd);
		vm->qemu_pidfd = -1;
		snprintf(err, errlen, "epoll: %s", strerror(e));
		return -e;
	}
	vm->qemu_pidfd = fd;
	vm->qemu_pid = pid;
	vm->boots++;
	return 0;
}
