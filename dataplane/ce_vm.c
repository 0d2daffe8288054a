/* SPDX-License-Identifier: MIT */
/*
 * ce_vm.c - VMs, their regions, channels and socket slots.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "ce.h"

/* Parse "name=vm1,ip=10.0.0.1,nsm=tcp[,weight=W][,rate=R][,ops=N]". */
int ce_vm_add(struct ce *ce, const char *spec, char *err, size_t errlen)
{
	char buf[256], *save = NULL;
	char name[NK_NAME_MAX] = "", nsm[NK_NAME_MAX] = "";
	struct in_addr ip = { 0 };
	bool have_ip = false, vmmode = false;
	char *iso_kv[3][2];
	int niso = 0;

	if (ce->nvms >= CE_MAX_VMS) {
		snprintf(err, errlen, "too many VMs (max %d)", CE_MAX_VMS);
		return -ENOSPC;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			snprintf(err, errlen, "--vm '%s': expected key=value, got '%s'", spec, kv);
			return -EINVAL;
		}
		*eq++ = '\0';
		if (!strcmp(kv, "name") && strlen(eq) > 0 && strlen(eq) < NK_NAME_MAX)
			snprintf(name, sizeof(name), "%s", eq);
		else if (!strcmp(kv, "nsm") && strlen(eq) > 0 && strlen(eq) < NK_NAME_MAX)
			snprintf(nsm, sizeof(nsm), "%s", eq);
		else if (!strcmp(kv, "ip") && inet_pton(AF_INET, eq, &ip) == 1)
			have_ip = true;
		else if (!strcmp(kv, "mode") && (!strcmp(eq, "vm") || !strcmp(eq, "process")))
			vmmode = !strcmp(eq, "vm");
		else if ((!strcmp(kv, "weight") || !strcmp(kv, "rate") || !strcmp(kv, "ops")) && niso < 3) {
			iso_kv[niso][0] = kv;
			iso_kv[niso++][1] = eq;
		} else {
			snprintf(err, errlen, "--vm '%s': bad or unknown key '%s'", spec, kv);
			return -EINVAL;
		}
	}
	if (!name[0] || !nsm[0] || !have_ip) {
		snprintf(err, errlen, "--vm '%s': needs name=, ip= and nsm=", spec);
		return -EINVAL;
	}
	if (ce_vm_find(ce, name)) {
		snprintf(err, errlen, "--vm '%s': VM %s defined twice", spec, name);
		return -EEXIST;
	}
	struct ce_nsm *n = ce_nsm_find(ce, nsm);
	if (!n) {
		snprintf(err, errlen, "--vm '%s': no NSM named '%s' (define it with --nsm first)", spec, nsm);
		return -ENOENT;
	}
	struct ce_vm *vm = &ce->vms[ce->nvms];
	memset(vm, 0, sizeof(*vm));
	vm->idx = ce->nvms++;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	memcpy(vm->ip, &ip, 4);
	vm->nsm = (int)n->idx;
	vm->switch_from = -1;
	vm->switch_gap_ns = -1;
	vm->switch_chunk_ns = -1;
	vm->vmmode = vmmode;
	vm->qemu_pidfd = -1;
	vm->weight = 1;
	for (int i = 0; i < niso; i++) {
		if (ce_iso_vm_set(vm, iso_kv[i][0], iso_kv[i][1], err, errlen) < 0) {
			ce->nvms--;
			return -EINVAL;
		}
	}
	vm->used = true;
	return 0;
}

struct ce_vm *ce_vm_find(struct ce *ce, const char *name)
{
	for (uint32_t i = 0; i < ce->nvms; i++)
		if (ce->vms[i].used && !strcmp(ce->vms[i].name, name))
			return &ce->vms[i];
	return NULL;
}

int ce_vm_open(struct ce *ce, struct ce_vm *vm, char *err, size_t errlen)
{
	const struct nk_geom *g = &ce->vm_geom;
	uint32_t nck;

	snprintf(vm->path, sizeof(vm->path), "/dev/shm/nk-%s-vm-%s", ce->instance, vm->name);
	/* VM mode: QEMU maps the file as an ivshmem BAR (a power of two). */
	int rc = vm->vmmode ? nk_region_create_pow2(&vm->reg, vm->path, g, vm->idx, vm->name, vm->ip, err, errlen)
			    : nk_region_create(&vm->reg, vm->path, g, vm->idx, vm->name, vm->ip, err, errlen);
	if (rc < 0)
		return rc;
	nck = nk_geom_nchunks(&vm->reg.g);
	vm->socks = calloc(vm->reg.g.nsocks, sizeof(*vm->socks));
	vm->ck_state = calloc(nck, 1);
	vm->ck_nsm = calloc(nck, 1);
	vm->ck_sock = calloc(nck, sizeof(uint32_t));
	if (!vm->socks || !vm->ck_state || !vm->ck_nsm || !vm->ck_sock ||
	    nk_pool_init(&vm->sockfree, 0, vm->reg.g.nsocks) < 0 ||
	    nk_pool_init(&vm->rxfree, nk_geom_rx_first(&vm->reg.g), vm->reg.g.nrx) < 0) {
		snprintf(err, errlen, "out of memory for VM %s", vm->name);
		return -ENOMEM;
	}
	for (uint32_t i = nk_geom_rx_first(&vm->reg.g); i < nck; i++)
		vm->ck_state[i] = CE_CK_FREE;
	for (uint32_t c = 0; c < CE_MAX_CHAN; c++) {
		vm->chan[c].ctl_fd = vm->chan[c].up_efd = vm->chan[c].down_efd = -1;
	}
	if (vm->vmmode)
		ce_vmctl_init(ce, vm);
	return 0;
}

void ce_vm_close(struct ce *ce, struct ce_vm *vm)
{
	(void)ce;
	for (uint32_t c = 0; c < vm->reg.g.nchan && c < CE_MAX_CHAN; c++) {
		struct ce_chan *ch = &vm->chan[c];
		if (ch->up_efd >= 0)
			close(ch->up_efd);
		if (ch->down_efd >= 0)
			close(ch->down_efd);
		ch->up_efd = ch->down_efd = -1;
	}
	if (vm->reg.base) {
		nk_region_unmap(&vm->reg);
		unlink(vm->path);
	}
	free(vm->socks);
	free(vm->ck_state);
	free(vm->ck_nsm);
	free(vm->ck_sock);
	nk_pool_fini(&vm->sockfree);
	nk_pool_fini(&vm->rxfree);
	vm->socks = NULL;
	vm->ck_state = NULL;
	vm->ck_nsm = NULL;
	vm->ck_sock = NULL;
}

/* Can channel c take a new process? Its TX partition must be fully back (no
 * chunk in flight) and no completion may still be owed to it. */
bool ce_chan_free(const struct ce_vm *vm, uint32_t c)
{
	const struct ce_chan *ch = &vm->chan[c];
	return !ch->used && !ch->tx_inflight && !ch->pending;
}

/* Open channel c for a guest process. Process mode gives it two doorbell
 * eventfds (ctl_fd >= 0); VM mode has none (ctl_fd < 0): both sides poll. */
int ce_chan_open_at(struct ce *ce, struct ce_vm *vm, uint32_t c, int ctl_fd, pid_t pid)
{
	struct ce_chan *ch = &vm->chan[c];
	int up = -1, down = -1;
	if (c >= vm->reg.g.nchan || !ce_chan_free(vm, c))
		return -EBUSY;
	if (ctl_fd >= 0) {
		up = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		down = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (up < 0 || down < 0) {
			int e = errno;
			if (up >= 0)
				close(up);
			if (down >= 0)
				close(down);
			return -e;
		}
	}
	ce_chan_set_live(vm, c, true);
	ch->dead = false;
	ch->exiting = false;
	ch->gen++;
	ch->ctl_fd = ctl_fd;
	ch->pid = pid;
	ch->up_efd = up;
	ch->down_efd = down;
	vm->wake &= ~(1ull << c);
	vm->lazy &= ~(1ull << c);
	ch->bad = 0;
	if (getrandom(ch->key, sizeof(ch->key), 0) != sizeof(ch->key)) {
		ch->key[0] = (uint32_t)ce_now_ns() ^ 0x9e3779b9u; /* no entropy: still unique */
		ch->key[1] = (uint32_t)(ce_now_ns() >> 32) ^ (uint32_t)c;
	}
	nk_region_up_ring(&vm->reg, c, &ch->up);
	nk_region_down_ring(&vm->reg, c, &ch->down);
	nk_ring_reset(&ch->up);
	nk_ring_reset(&ch->down);
	/* Every TX chunk of the partition starts with the guest. */
	for (uint32_t i = 0; i < vm->reg.g.tx_per_chan; i++)
		vm->ck_state[nk_geom_tx_first(&vm->reg.g, c) + i] = CE_CK_GUEST;
	if (up >= 0 && ce_epoll_add(ce, up, CE_TAG(CE_EV_CHAN_EFD, vm->idx, c)) < 0) {
		int e = errno;
		close(up);
		close(down);
		ch->up_efd = ch->down_efd = -1;
		ce_chan_set_live(vm, c, false);
		return -e;
	}
	return 0;
}

/* A fresh channel for a guest process (process mode: the first free one). */
int ce_chan_open(struct ce *ce, struct ce_vm *vm, int ctl_fd, pid_t pid, uint32_t *out)
{
	for (uint32_t c = 0; c < vm->reg.g.nchan; c++) {
		if (!ce_chan_free(vm, c))
			continue;
		int rc = ce_chan_open_at(ce, vm, c, ctl_fd, pid);
		if (rc == 0)
			*out = c;
		return rc;
	}
	return -EUSERS;
}

/* A fork child's channel c starts holding every socket its parent holds
 * (before fork() returns, so the parent cannot close one under the child). */
void ce_chan_fork_holdings(struct ce_vm *vm, uint32_t parent, uint32_t c)
{
	for (uint32_t s = 0; s < vm->reg.g.nsocks; s++)
		if (vm->socks[s].state != CE_SK_FREE && (vm->socks[s].holders >> parent & 1))
			vm->socks[s].holders |= 1ull << c;
}

/* The process on channel c is gone. What it posted before dying still
 * counts (the kernel, too, delivers data a process wrote before exit), so
 * the up ring is drained first; ce_chan_finish then drops its references. */
void ce_chan_gone(struct ce *ce, struct ce_vm *vm, uint32_t c)
{
	struct ce_chan *ch = &vm->chan[c];
	if (!ch->used || ch->exiting)
		return;
	ch->exiting = true;
	ch->ctl_fd = -1;
	if (ch->up_efd >= 0)
		ce_epoll_del(ce, ch->up_efd);
	if (nk_ring_count(&ch->up) == 0)
		ce_chan_finish(ce, vm, c);
}

void ce_chan_finish(struct ce *ce, struct ce_vm *vm, uint32_t c)
{
	struct ce_chan *ch = &vm->chan[c];
	if (!ch->used)
		return;
	if (!ch->exiting && ch->up_efd >= 0)
		ce_epoll_del(ce, ch->up_efd);
	if (ch->up_efd >= 0)
		close(ch->up_efd);
	if (ch->down_efd >= 0)
		close(ch->down_efd);
	ch->up_efd = ch->down_efd = -1;
	ch->ctl_fd = -1;
	ce_chan_set_live(vm, c, false);
	ch->exiting = false;
	ch->dead = true;
	for (uint32_t s = 0; s < vm->reg.g.nsocks; s++)
		if (vm->socks[s].state != CE_SK_FREE && (vm->socks[s].holders >> c & 1))
			ce_sock_drop_holder(ce, vm, s, c);
	ce_log("vm %s: process %d left channel %u (%u TX chunks, %u ops still out)",
	       vm->name, (int)ch->pid, c, ch->tx_inflight, ch->pending);
}

/* Drop channel c's reference to socket s; the last holder closes it. */
void ce_sock_drop_holder(struct ce *ce, struct ce_vm *vm, uint32_t s, uint32_t c)
{
	struct ce_sock *sk = &vm->socks[s];
	sk->holders &= ~(1ull << c);
	if (sk->holders == 0)
		ce_sock_release(ce, vm, s);
}

/* Reclaim the RX chunks a socket still has at the guest. */
static void reclaim_rx(struct ce_vm *vm, uint32_t s)
{
	uint32_t first = nk_geom_rx_first(&vm->reg.g), n = nk_geom_nchunks(&vm->reg.g);
	for (uint32_t i = first; i < n; i++) {
		if (vm->ck_state[i] == CE_CK_AT_GUEST && vm->ck_sock[i] == s) {
			vm->ck_state[i] = CE_CK_FREE;
			nk_pool_put(&vm->rxfree, i);
		}
	}
}

/* No holder is left: close towards the NSM (or free at once if none). */
void ce_sock_release(struct ce *ce, struct ce_vm *vm, uint32_t s)
{
	struct ce_sock *sk = &vm->socks[s];

	reclaim_rx(vm, s);
	/* Accepted connections nobody popped go with their listener. */
	for (uint32_t i = 0; i < vm->reg.g.nsocks; i++) {
		struct ce_sock *a = &vm->socks[i];
		if (a->state != CE_SK_FREE && a->unclaimed && a->parent == s) {
			a->unclaimed = false;
			a->holders = 0;
			ce_sock_release(ce, vm, i);
		}
	}
	if (sk->mig == CE_MIG_LINKING) {
		/* The peer may not have linked the new leg yet: an old-leg FIN now
		 * would look like the application's end there, before the bytes
		 * queued on the new leg. Close the old leg once it has (ack). */
		sk->close_owed = true;
	} else if (sk->mig == CE_MIG_DRAINING && ce->nsms[sk->old_nsm].state == CE_NSM_UP) {
		struct nk_nqe q = { .op = NK_OP_CLOSE, .vm = (uint16_t)vm->idx, .sock = sk->old_sock,
				    .chunk = NK_NO_CHUNK };
		ce_nsm_send(ce, &ce->nsms[sk->old_nsm], &q);
	}
	if (sk->state == CE_SK_OPEN && sk->nsm >= 0 && ce->nsms[sk->nsm].state == CE_NSM_UP) {
		/* A powered-off VM cannot finish its streams: reset them, so the
		 * peer never takes a cut stream for a complete one. */
		struct nk_nqe q = { .op = NK_OP_CLOSE, .flags = vm->down ? NK_NQF_ABORT : 0,
				    .vm = (uint16_t)vm->idx, .sock = sk->nsm_sock, .chunk = NK_NO_CHUNK };
		ce_nsm_send(ce, &ce->nsms[sk->nsm], &q);
		sk->state = CE_SK_CLOSING;
	} else if (sk->state == CE_SK_OPENING || sk->state == CE_SK_CLOSING) {
		/* SOCKET still in flight or CLOSE already sent: its completion
		 * (or the NSM's death) finishes the job. */
	} else {
		ce_sock_free(ce, vm, s);
	}
}

void ce_sock_free(struct ce *ce, struct ce_vm *vm, uint32_t s)
{
	struct ce_sock *sk = &vm->socks[s];
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);

	if (sk->state == CE_SK_FREE)
		return;
	if (sk->nsm >= 0) {
		struct ce_nsm_map *m = ce_nsm_map_get(&ce->nsms[sk->nsm], sk->nsm_sock);
		if (m && m->vm == vm->idx && m->sock == s)
			m->used = false;
	}
	if (ce_mig_has_old(sk)) {
		struct ce_nsm_map *m = ce_nsm_map_get(&ce->nsms[sk->old_nsm], sk->old_sock);
		if (m && m->vm == vm->idx && m->sock == s)
			m->used = false;
	}
	reclaim_rx(vm, s);
	uint32_t keep = sk->rx_tail; /* rx counters stay monotonic across reuse */
	memset(sk, 0, sizeof(*sk));
	sk->rx_tail = keep;
	sk->nsm = -1;
	__atomic_store_n(&slot->state, NK_SS_FREE, __ATOMIC_RELEASE);
	nk_pool_put(&vm->sockfree, s);
}

void ce_sock_set_error(struct ce *ce, struct ce_vm *vm, uint32_t s, int err, bool dead)
{
	(void)ce;
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
	slot->error = err;
	if (dead) {
		slot->flags |= NK_SF_RESET;
		__atomic_store_n(&slot->state, NK_SS_CLOSED, __ATOMIC_RELEASE);
	}
	/* err_seq last: a guest that sees the new sequence sees the error. */
	__atomic_store_n(&slot->err_seq, slot->err_seq + 1, __ATOMIC_RELEASE);
	ce_wake_holders(vm, s);
}

void ce_wake_holders(struct ce_vm *vm, uint32_t s)
{
	vm->wake |= vm->socks[s].holders;
}

void ce_chan_set_live(struct ce_vm *vm, uint32_t c, bool used)
{
	vm->chan[c].used = used;
	if (used)
		vm->live |= 1ull << c;
	else
		vm->live &= ~(1ull << c);
}

/* Append one entry to socket s's rx ring. The ring can only be full if the
 * NSM ignored its credit or the guest published a bogus rx_head; either way
 * the entry is refused and the caller frees what it carried. */
bool ce_rx_push(struct ce_vm *vm, uint32_t s, uint16_t type, uint32_t val, uint32_t off, uint32_t len)
{
	struct ce_sock *sk = &vm->socks[s];
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
	uint32_t head = __atomic_load_n(&slot->rx_head, __ATOMIC_ACQUIRE);
	uint32_t start = sk->rx_start; /* our private copy: the slot is guest-writable */

	/* A head outside [start, tail] is stale (slot not adopted yet) or bogus:
	 * count from start, which an honest guest is about to adopt. */
	if (head - start > sk->rx_tail - start)
		head = start;
	uint32_t used = sk->rx_tail - head;

	if (used >= NK_SOCK_RX_ENTRIES)
		return false;
	struct nk_rxent *e = &slot->rx[sk->rx_tail & (NK_SOCK_RX_ENTRIES - 1)];
	e->type = type;
	e->pad = 0;
	e->val = val;
	e->off = off;
	e->len = len;
	sk->rx_tail++;
	sk->rx_pending++;
	if (type == NK_RX_FIN)
		sk->fin_seen = true;
	__atomic_store_n(&slot->rx_tail, sk->rx_tail, __ATOMIC_RELEASE);
	ce_wake_holders(vm, s);
	return true;
}

/* A dead channel becomes reusable when nothing is owed to it. */
void ce_chan_maybe_free(struct ce *ce, struct ce_vm *vm, uint32_t c)
{
	(void)ce;
	struct ce_chan *ch = &vm->chan[c];
	if (ch->dead && !ch->tx_inflight && !ch->pending)
		ch->dead = false;
}

/* Take a free slot for a new socket held by `holders`, served by nsm. */
int ce_sock_alloc(struct ce_vm *vm, uint64_t holders, int nsm, uint32_t *out)
{
	uint32_t s;
	if (!nk_pool_get(&vm->sockfree, &s))
		return -EMFILE;
	struct ce_sock *sk = &vm->socks[s];
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
	uint32_t tail = sk->rx_tail;
	memset(sk, 0, sizeof(*sk));
	sk->rx_tail = tail;
	sk->nsm = (int8_t)nsm;
	sk->holders = holders;
	sk->rx_start = tail;
	slot->rx_start = tail;
	slot->flags = 0;
	slot->error = 0;
	memset(&slot->local, 0, sizeof(slot->local));
	memset(&slot->peer, 0, sizeof(slot->peer));
	slot->gen++;
	__atomic_store_n(&slot->state, NK_SS_OPEN, __ATOMIC_RELEASE);
	*out = s;
	return 0;
}
