/* SPDX-License-Identifier: MIT */
/*
 * ce_nsm.c - NSM lifecycle: definition, start (cold), registration, VM
 * attachment, RX chunk grants, and cleanup when an NSM dies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ce.h"
#include "nk_ctl.h"

static bool word_ok(const char *v, size_t max)
{
	size_t n = strlen(v);
	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(v[i] == '-' || v[i] == '_' || v[i] == '.' || (v[i] >= '0' && v[i] <= '9') ||
		      (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z')))
			return false;
	return true;
}

static bool spin_ok(const char *v, uint32_t *out)
{
	char *end;
	unsigned long x = strtoul(v, &end, 10);
	if (end == v || *end || x > 1000000)
		return false;
	*out = (uint32_t)x;
	return true;
}

/* Parse "name=tcp,netns=ns1,stack=kernel,cc=cubic[,spin=US][,hold=on][,iso=on][,rate=R]". */
int ce_nsm_add(struct ce *ce, const char *spec, char *err, size_t errlen)
{
	char buf[256], *save = NULL;

	if (ce->nnsms >= CE_MAX_NSMS) {
		snprintf(err, errlen, "too many NSMs (max %d)", CE_MAX_NSMS);
		return -ENOSPC;
	}
	struct ce_nsm *n = &ce->nsms[ce->nnsms];
	memset(n, 0, sizeof(*n));
	snprintf(n->stack, sizeof(n->stack), "kernel");
	snprintf(n->cc, sizeof(n->cc), "cubic");
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			snprintf(err, errlen, "--nsm '%s': expected key=value, got '%s'", spec, kv);
			return -EINVAL;
		}
		*eq++ = '\0';
		if (!strcmp(kv, "name") && word_ok(eq, sizeof(n->name)))
			snprintf(n->name, sizeof(n->name), "%s", eq);
		else if (!strcmp(kv, "netns") && word_ok(eq, sizeof(n->netns)))
			snprintf(n->netns, sizeof(n->netns), "%s", eq);
		else if (!strcmp(kv, "stack") && (!strcmp(eq, "kernel") || !strcmp(eq, "mptcp")))
			snprintf(n->stack, sizeof(n->stack), "%s", eq);
		else if (!strcmp(kv, "cc") && word_ok(eq, sizeof(n->cc)))
			snprintf(n->cc, sizeof(n->cc), "%s", eq);
		else if (!strcmp(kv, "spin") && spin_ok(eq, &n->spin_us))
			n->has_spin = true; /* spin=0 is a choice: sleep at once */
		else if (!strcmp(kv, "hold") && (!strcmp(eq, "on") || !strcmp(eq, "off")))
			n->spin_hold = !strcmp(eq, "on");
		else if (!strcmp(kv, "iso") || !strcmp(kv, "rate")) {
			char e2[128];
			if (ce_iso_nsm_set(n, kv, eq, e2, sizeof(e2)) < 0) {
				snprintf(err, errlen, "--nsm '%s': %s", spec, e2);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen, "--nsm '%s': bad or unknown key '%s' (keys: name, netns, stack=kernel|mptcp, cc, "
				 "spin=US, hold=on|off, iso=on|off, rate=BITS/S)", spec, kv);
			return -EINVAL;
		}
	}
	if (!n->name[0]) {
		snprintf(err, errlen, "--nsm '%s': needs name=", spec);
		return -EINVAL;
	}
	if (ce_nsm_find(ce, n->name)) {
		snprintf(err, errlen, "--nsm '%s': NSM %s defined twice", spec, n->name);
		return -EEXIST;
	}
	n->idx = ce->nnsms++;
	n->used = true;
	n->ctl_fd = n->up_efd = n->down_efd = -1;
	n->pid = -1;
	return 0;
}

struct ce_nsm *ce_nsm_find(struct ce *ce, const char *name)
{
	for (uint32_t i = 0; i < ce->nnsms; i++)
		if (ce->nsms[i].used && !strcmp(ce->nsms[i].name, name))
			return &ce->nsms[i];
	return NULL;
}

/* Fork and exec nk-nsm inside the NSM's network namespace. */
int ce_nsm_start(struct ce *ce, struct ce_nsm *n)
{
	if (n->state != CE_NSM_DOWN)
		return 0;
	if (ce_now_ns() < n->retry_after_ns)
		return -EAGAIN;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (n->netns[0]) {
			char p[128];
			snprintf(p, sizeof(p), "/run/netns/%s", n->netns);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
				fprintf(stderr, "nk-coreengine: cannot enter netns %s for NSM %s: %s\n",
					n->netns, n->name, strerror(errno));
				_exit(127);
			}
			close(fd);
		}
		char spin[16];
		const char *av[16];
		int ac = 0;
		av[ac++] = ce->nsm_bin;
		av[ac++] = "--ctl", av[ac++] = ce->ctl_path;
		av[ac++] = "--name", av[ac++] = n->name;
		av[ac++] = "--stack", av[ac++] = n->stack;
		av[ac++] = "--cc", av[ac++] = n->cc;
		if (ce->nk_peers[0])
			av[ac++] = "--nk-peers", av[ac++] = ce->nk_peers;
		if (n->has_spin) {
			snprintf(spin, sizeof(spin), "%u", n->spin_us);
			av[ac++] = "--spin-us", av[ac++] = spin;
		}
		if (n->spin_hold)
			av[ac++] = "--spin-hold";
		av[ac] = NULL;
		execv(ce->nsm_bin, (char *const *)av);
		fprintf(stderr, "nk-coreengine: cannot exec %s: %s\n", ce->nsm_bin, strerror(errno));
		_exit(127);
	}
	n->pid = pid;
	n->spawned = true;
	n->state = CE_NSM_STARTING;
	n->start_ns = ce_now_ns();
	n->starts++;
	ce_log("nsm %s: started pid %d (netns %s, stack %s, cc %s)", n->name, (int)pid,
	       n->netns[0] ? n->netns : "-", n->stack, n->cc);
	return 0;
}

int ce_nsm_hello(struct ce *ce, struct ce_nsm *n, int ctl_fd, pid_t pid, char *err, size_t errlen)
{
	struct nk_geom g;
	int rc;

	if (n->state == CE_NSM_UP) {
		snprintf(err, errlen, "NSM %s is already registered (pid %d)", n->name, (int)n->pid);
		return -EEXIST;
	}
	nk_geom_default(&g, NK_REGION_NSM);
	snprintf(n->path, sizeof(n->path), "/dev/shm/nk-%s-nsm-%s", ce->instance, n->name);
	unlink(n->path); /* a previous incarnation's region; rings must start empty */
	rc = nk_region_create(&n->reg, n->path, &g, n->idx, n->name, NULL, err, errlen);
	if (rc < 0)
		return rc;
	n->up_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	n->down_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->up_efd < 0 || n->down_efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -errno;
	}
	nk_region_up_ring(&n->reg, 0, &n->up);
	nk_region_down_ring(&n->reg, 0, &n->down);
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_NSM_WELCOME);
	m.index = n->idx;
	snprintf(m.name, sizeof(m.name), "%s", n->name);
	int fds[3] = { n->reg.fd, n->up_efd, n->down_efd };
	rc = nk_ctl_send(ctl_fd, &m, fds, 3);
	if (rc < 0) {
		snprintf(err, errlen, "cannot send welcome: %s", strerror(-rc));
		return rc;
	}
	if (ce_epoll_add(ce, n->up_efd, CE_TAG(CE_EV_NSM_EFD, n->idx, 0)) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -errno;
	}
	n->ctl_fd = ctl_fd;
	if (n->pid <= 0)
		n->pid = pid; /* started by hand, not by us */
	n->state = CE_NSM_UP;
	n->ovf_len = 0;
	memset(n->attached, 0, sizeof(n->attached));
	memset(n->granted, 0, sizeof(n->granted));
	ce_log("nsm %s: up (pid %d) after %.1f ms", n->name, (int)pid,
	       n->start_ns ? (ce_now_ns() - n->start_ns) / 1e6 : 0.0);
	for (uint32_t v = 0; v < ce->nvms; v++)
		if (ce->vms[v].used && ce->vms[v].nsm == (int)n->idx)
			ce_nsm_attach_vm(ce, n, &ce->vms[v]);
	return 0;
}

int ce_nsm_attach_vm(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm)
{
	if (n->state != CE_NSM_UP || n->attached[vm->idx])
		return 0;
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_VM_ATTACH);
	m.index = vm->idx;
	memcpy(m.ipv4, vm->ip, 4);
	snprintf(m.name, sizeof(m.name), "%s", vm->name);
	int fd = vm->reg.fd;
	int rc = nk_ctl_send(n->ctl_fd, &m, &fd, 1);
	if (rc < 0)
		return rc;
	n->attached[vm->idx] = true;
	ce_nsm_grant(ce, n, vm);
	return 0;
}

/* Keep the NSM's stash for this VM near CE_GRANT_TARGET chunks. */
void ce_nsm_grant(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm)
{
	uint32_t target = CE_GRANT_TARGET;
	if (target > vm->reg.g.nrx / 2)
		target = vm->reg.g.nrx / 2;
	if (n->state != CE_NSM_UP || !n->attached[vm->idx] || n->granted[vm->idx] > target / 2)
		return;
	while (n->granted[vm->idx] < target && nk_pool_avail(&vm->rxfree) > 0) {
		struct nk_nqe q = { .op = NK_OP_GRANT, .vm = (uint16_t)vm->idx, .sock = NK_NO_SOCK,
				    .chunk = NK_NO_CHUNK };
		uint32_t k = 0, id;
		while (k < 8 && n->granted[vm->idx] < target && nk_pool_get(&vm->rxfree, &id)) {
			q.arg.u32[k++] = id;
			vm->ck_state[id] = CE_CK_GRANTED;
			vm->ck_nsm[id] = (int8_t)n->idx;
			n->granted[vm->idx]++;
		}
		q.len = k;
		ce_nsm_send(ce, n, &q);
	}
}

bool ce_nsm_has_room(struct ce_nsm *n)
{
	return n->state == CE_NSM_UP && n->ovf_len == 0 && nk_ring_room(&n->down, 1);
}

/* CE->NSM: straight into the ring, or the private overflow queue when the
 * ring is full (CoreEngine-originated NQEs: CLOSE, GRANT, RX_CREDIT; their
 * number is bounded by sockets and chunks). Order is kept. */
void ce_nsm_send(struct ce *ce, struct ce_nsm *n, const struct nk_nqe *nqe)
{
	(void)ce;
	if (n->state != CE_NSM_UP)
		return;
	/* staged; published by ce_ring_put or ce_flush_wakes (ce.h) */
	if (n->ovf_len == 0 && ce_ring_put(&n->down, nqe)) {
		/* RX_CREDIT is lazy (the NSM sleeps in NK_WAKE_ANY mode while
		 * a socket waits for credit); GRANT is not: the NSM does not
		 * track chunk starvation for its sleep mode. */
		if (nqe->op == NK_OP_RX_CREDIT)
			n->lazy = true;
		else
			n->wake = true;
		return;
	}
	/* A full ring may hold only lazy NQEs of an NSM asleep in
	 * NK_WAKE_URGENT mode: wake it, or nothing would drain it. */
	n->wake = true;
	if (n->ovf_len == n->ovf_cap) {
		uint32_t cap = n->ovf_cap ? n->ovf_cap * 2 : 256;
		struct nk_nqe *p = realloc(n->ovf, cap * sizeof(*p));
		if (!p) {
			ce_log("nsm %s: out of memory for its overflow queue", n->name);
			return;
		}
		n->ovf = p;
		n->ovf_cap = cap;
	}
	n->ovf[n->ovf_len++] = *nqe;
}

void ce_nsm_flush(struct ce *ce, struct ce_nsm *n)
{
	(void)ce;
	if (n->state != CE_NSM_UP || n->ovf_len == 0)
		return;
	uint32_t k = nk_ring_enqueue_burst(&n->down, n->ovf, n->ovf_len);
	if (k) {
		memmove(n->ovf, n->ovf + k, (n->ovf_len - k) * sizeof(*n->ovf));
		n->ovf_len -= k;
		n->wake = true;
	}
}

int ce_nsm_map_set(struct ce_nsm *n, uint32_t id, uint16_t vm, uint32_t sock)
{
	if (id >= CE_MAX_NSM_SOCK)
		return -ERANGE;
	if (id >= n->map_len) {
		uint32_t len = n->map_len ? n->map_len : 1024;
		while (len <= id)
			len *= 2;
		struct ce_nsm_map *p = realloc(n->map, len * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + n->map_len, 0, (len - n->map_len) * sizeof(*p));
		n->map = p;
		n->map_len = len;
	}
	if (n->map[id].used)
		return -EEXIST;
	n->map[id] = (struct ce_nsm_map){ .vm = vm, .sock = sock, .used = true };
	return 0;
}

struct ce_nsm_map *ce_nsm_map_get(struct ce_nsm *n, uint32_t id)
{
	if (id >= n->map_len || !n->map[id].used)
		return NULL;
	return &n->map[id];
}

/* The NSM is gone (EOF on its control socket or it exited). Everything it
 * held is failed or taken back; guests see ECONNRESET on its sockets. */
void ce_nsm_lost(struct ce *ce, struct ce_nsm *n, const char *why)
{
	if (n->state == CE_NSM_DOWN)
		return;
	ce_log("nsm %s: lost (%s)", n->name, why);
	if (n->up_efd >= 0) {
		ce_epoll_del(ce, n->up_efd);
		close(n->up_efd);
	}
	if (n->down_efd >= 0)
		close(n->down_efd);
	if (n->ctl_fd >= 0)
		ce_ctl_close_conn(ce, n->ctl_fd);
	n->up_efd = n->down_efd = n->ctl_fd = -1;
	if (n->reg.base) {
		nk_region_unmap(&n->reg);
		unlink(n->path);
	}
	bool was_up = n->state == CE_NSM_UP;
	n->state = CE_NSM_DOWN;
	n->ovf_len = 0;
	if (!was_up) /* died before registering: do not respawn in a tight loop */
		n->retry_after_ns = ce_now_ns() + 1000000000ull;
	ce_pend_fail_nsm(ce, n, ECONNRESET);
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		if (!vm->used)
			continue;
		uint32_t nck = nk_geom_nchunks(&vm->reg.g);
		for (uint32_t i = 0; i < nck; i++) {
			if (vm->ck_nsm[i] != (int8_t)n->idx)
				continue;
			if (vm->ck_state[i] == CE_CK_GRANTED) {
				vm->ck_state[i] = CE_CK_FREE;
				nk_pool_put(&vm->rxfree, i);
			} else if (vm->ck_state[i] == CE_CK_HOST) {
				/* A TX chunk in the dead NSM's send queue. */
				uint32_t c = i / vm->reg.g.tx_per_chan;
				struct nk_nqe q = { .op = NK_OP_SEND_DONE, .flags = NK_NQF_COMPLETION,
						    .sock = NK_NO_SOCK, .chunk = i, .result = -ECONNRESET };
				vm->ck_state[i] = CE_CK_GUEST;
				vm->chan[c].tx_inflight--;
				ce_guest_complete(ce, vm, c, &q);
				ce_chan_maybe_free(ce, vm, c);
			}
		}
		for (uint32_t s = 0; s < vm->reg.g.nsocks; s++) {
			struct ce_sock *sk = &vm->socks[s];
			if (ce_mig_old_leg(vm, s, n, sk->old_sock))
				ce_mig_old_end(ce, vm, s, ECONNRESET, true); /* bytes of the old leg lost */
			if (sk->state == CE_SK_FREE || sk->nsm != (int8_t)n->idx)
				continue;
			if (sk->state == CE_SK_CLOSING || sk->holders == 0) {
				ce_sock_free(ce, vm, s);
				continue;
			}
			sk->state = CE_SK_DEAD;
			sk->nsm = -1;
			ce_sock_set_error(ce, vm, s, ECONNRESET, true);
		}
		n->granted[v] = 0;
		n->attached[v] = false;
	}
	for (uint32_t i = 0; i < n->map_len; i++)
		n->map[i].used = false;
}

void ce_nsm_stop_all(struct ce *ce)
{
	for (uint32_t i = 0; i < ce->nnsms; i++) {
		struct ce_nsm *n = &ce->nsms[i];
		pid_t pid = n->pid;
		if (n->state != CE_NSM_DOWN)
			ce_nsm_lost(ce, n, "CoreEngine stopping");
		if (pid > 0 && n->spawned) {
			kill(pid, SIGTERM);
			for (int t = 0; t < 100 && waitpid(pid, NULL, WNOHANG) == 0; t++)
				usleep(10000);
			if (waitpid(pid, NULL, WNOHANG) == 0) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
			}
		}
		n->pid = -1;
		n->spawned = false;
	}
}

/* ---- live switching ----
 *
 * New sockets of the VM go to `to` at once. Existing connections stay on the
 * NSM that serves them and drain there (ce_nsm_maybe_retire stops an NSM
 * nobody uses any more once its last connection is gone). Switching to an
 * NSM that is down starts it: a cold switch; to a running one: warm. */
/* move: session connections follow (switch); otherwise every existing
 * connection stays where it is and only new sockets go to `to` (attach). */
int ce_nsm_switch(struct ce *ce, struct ce_vm *vm, struct ce_nsm *to, bool move, char *err, size_t errlen)
{
	if (vm->nsm == (int)to->idx) {
		snprintf(err, errlen, "VM %s already uses NSM %s", vm->name, to->name);
		return -EALREADY;
	}
	if (to->state == CE_NSM_DOWN) {
		int rc = ce_nsm_start(ce, to);
		if (rc < 0) {
			snprintf(err, errlen, "cannot start NSM %s: %s", to->name, strerror(-rc));
			return rc;
		}
	}
	struct ce_nsm *from = &ce->nsms[vm->nsm];
	vm->switch_from = vm->nsm;
	vm->nsm = (int)to->idx;
	vm->switches++;
	vm->switch_ns = ce_now_ns();
	vm->switch_gap_ns = -1;
	vm->switch_chunk_ns = -1;
	vm->mig_scan = move; /* session connections move too (ce_mig.c) */
	if (to->state == CE_NSM_UP)
		ce_nsm_attach_vm(ce, to, vm);
	ce_log("vm %s: %s from NSM %s to %s (%s)", vm->name, move ? "switched" : "attached", from->name,
	       to->name, to->state == CE_NSM_UP ? "warm" : "cold");
	ce_nsm_maybe_retire(ce, from);
	return 0;
}

/* The first whole chunk an NSM carries for a VM after the VM switched to it
 * (a SEND it finished writing, or data it received). Unless the NSM told us
 * of an earlier first write (ce_nsm_first_write), its first byte went then. */
void ce_nsm_first_byte(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm)
{
	(void)ce;
	if (vm->switch_chunk_ns < 0 && vm->switch_from >= 0 && vm->nsm == (int)n->idx) {
		vm->switch_chunk_ns = (int64_t)(ce_now_ns() - vm->switch_ns);
		if (vm->switch_gap_ns < 0 || vm->switch_gap_ns > vm->switch_chunk_ns)
			vm->switch_gap_ns = vm->switch_chunk_ns;
		ce_log("vm %s: first chunk on NSM %s %.3f ms after the switch (first byte %.3f ms)", vm->name,
		       n->name, vm->switch_chunk_ns / 1e6, vm->switch_gap_ns / 1e6);
	}
}

/* A new leg on NSM n first wrote guest bytes at at_ns (CLOCK_MONOTONIC, as
 * reported in its MIGRATE_ACK): often a partial chunk, one round trip before
 * the chunk's SEND_DONE, since a fresh connection's send buffer is small.
 * Reported times outside [switch, now] are ignored. */
void ce_nsm_first_write(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, uint64_t at_ns)
{
	(void)ce;
	uint64_t now = ce_now_ns();
	if (vm->switch_from < 0 || vm->nsm != (int)n->idx || at_ns < vm->switch_ns || at_ns > now)
		return;
	int64_t gap = (int64_t)(at_ns - vm->switch_ns);
	if (vm->switch_gap_ns < 0 || gap < vm->switch_gap_ns) {
		vm->switch_gap_ns = gap;
		ce_log("vm %s: first byte on NSM %s %.3f ms after the switch", vm->name, n->name, gap / 1e6);
	}
}

/* Stop an NSM we started once no VM uses it and its last connection closed. */
void ce_nsm_maybe_retire(struct ce *ce, struct ce_nsm *n)
{
	if (n->state != CE_NSM_UP || !n->spawned)
		return;
	for (uint32_t v = 0; v < ce->nvms; v++)
		if (ce->vms[v].used && ce->vms[v].nsm == (int)n->idx)
			return;
	for (uint32_t i = 0; i < n->map_len; i++)
		if (n->map[i].used)
			return;
	ce_log("nsm %s: no VM and no connection left; stopping it", n->name);
	kill(n->pid, SIGTERM);
}
