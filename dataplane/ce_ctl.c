/* SPDX-License-Identifier: MIT */
/*
 * ce_ctl.c - the CoreEngine control socket: guest and NSM registration, and
 * the operator's commands (nkctl).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ce.h"
#include "nk_ctl.h"

int ce_ctl_listen(struct ce *ce, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(ce->ctl_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", ce->ctl_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, ce->ctl_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A live CoreEngine on the same path must not be displaced. */
	int probe = nk_ctl_connect(ce->ctl_path);
	if (probe >= 0) {
		close(probe);
		close(fd);
		snprintf(err, errlen, "another CoreEngine is already listening on %s", ce->ctl_path);
		return -EADDRINUSE;
	}
	unlink(ce->ctl_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot listen on %s: %s", ce->ctl_path, strerror(e));
		close(fd);
		return -e;
	}
	/* Guests run as root here too; 0600 keeps other users out. */
	chmod(ce->ctl_path, 0600);
	ce->listen_fd = fd;
	return ce_epoll_add(ce, fd, CE_TAG(CE_EV_LISTEN, 0, 0));
}

static struct ce_conn *conn_get(struct ce *ce, int fd)
{
	if (fd >= ce->nconns) {
		int n = ce->nconns ? ce->nconns : 64;
		while (n <= fd)
			n *= 2;
		struct ce_conn *p = realloc(ce->conns, (size_t)n * sizeof(*p));
		if (!p)
			return NULL;
		memset(p + ce->nconns, 0, (size_t)(n - ce->nconns) * sizeof(*p));
		ce->conns = p;
		ce->nconns = n;
	}
	return &ce->conns[fd];
}

void ce_ctl_accept(struct ce *ce)
{
	for (;;) {
		int fd = accept4(ce->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct ce_conn *cn = conn_get(ce, fd);
		if (!cn || ce_epoll_add(ce, fd, CE_TAG(CE_EV_CONN, 0, (uint32_t)fd)) < 0) {
			close(fd);
			continue;
		}
		*cn = (struct ce_conn){ .fd = fd, .kind = CE_CONN_NEW };
	}
}

void ce_ctl_close_conn(struct ce *ce, int fd)
{
	if (fd < 0 || fd >= ce->nconns || ce->conns[fd].fd != fd)
		return;
	ce_epoll_del(ce, fd);
	close(fd);
	ce->conns[fd].fd = -1;
	ce->conns[fd].kind = CE_CONN_NEW;
}

static void send_error(int fd, int status, const char *fmt, ...)
{
	struct nk_ctl_msg m;
	va_list ap;
	nk_ctl_init(&m, NK_CTL_ERROR);
	m.status = status;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	nk_ctl_send(fd, &m, NULL, 0);
}

/* A HELLO with index = parent channel + 1 comes from a process about to
 * fork (GuestLib's atfork prepare handler): the new channel, which the child
 * adopts, starts holding every socket the parent's channel holds. The asker
 * proves it holds the parent channel with that channel's random key, so no
 * process can grab another one's sockets (and grandchildren can fork too). */
static int fork_parent(struct ce_vm *vm, const struct nk_ctl_msg *m, uint32_t *parent)
{
	if (m->index == 0)
		return 0;
	*parent = m->index - 1;
	if (*parent >= vm->reg.g.nchan || !vm->chan[*parent].used || vm->chan[*parent].exiting)
		return -EINVAL;
	if (m->key[0] != vm->chan[*parent].key[0] || m->key[1] != vm->chan[*parent].key[1])
		return -EPERM;
	return 1;
}

static void guest_hello(struct ce *ce, struct ce_conn *cn, const struct nk_ctl_msg *m)
{
	struct ce_vm *vm = ce_vm_find(ce, m->name);
	uint32_t c, parent = 0;
	if (!vm) {
		send_error(cn->fd, -ENOENT, "unknown VM '%s'", m->name);
		return;
	}
	int fork = fork_parent(vm, m, &parent);
	if (fork < 0) {
		send_error(cn->fd, fork, "VM %s: fork channel request for channel %u refused (%s)",
			   vm->name, m->index - 1, strerror(-fork));
		return;
	}
	if (vm->vmmode) {
		send_error(cn->fd, -EPERM, "VM %s runs in VM mode: its guests attach through the NK device", vm->name);
		return;
	}
	int rc = ce_chan_open(ce, vm, cn->fd, (pid_t)m->pid, &c);
	if (rc < 0) {
		send_error(cn->fd, rc, "VM %s: no free channel (%s)", vm->name, strerror(-rc));
		return;
	}
	if (fork)
		ce_chan_fork_holdings(vm, parent, c);
	struct nk_ctl_msg w;
	nk_ctl_init(&w, NK_CTL_GUEST_WELCOME);
	w.index = c;
	memcpy(w.key, vm->chan[c].key, sizeof(w.key));
	memcpy(w.ipv4, vm->ip, 4);
	snprintf(w.name, sizeof(w.name), "%s", vm->name);
	int fds[3] = { vm->reg.fd, vm->chan[c].up_efd, vm->chan[c].down_efd };
	if (nk_ctl_send(cn->fd, &w, fds, 3) < 0) {
		ce_chan_gone(ce, vm, c);
		return;
	}
	cn->kind = CE_CONN_GUEST;
	cn->vm = vm->idx;
	cn->chan = c;
}

static void nsm_hello(struct ce *ce, struct ce_conn *cn, const struct nk_ctl_msg *m)
{
	struct ce_nsm *n = ce_nsm_find(ce, m->name);
	char err[256];
	if (!n) {
		send_error(cn->fd, -ENOENT, "unknown NSM '%s' (the CoreEngine defines NSMs with --nsm)", m->name);
		return;
	}
	int rc = ce_nsm_hello(ce, n, cn->fd, (pid_t)m->pid, err, sizeof(err));
	if (rc < 0) {
		send_error(cn->fd, rc, "%s", err);
		if (n->state != CE_NSM_UP) {
			if (n->reg.base) {
				nk_region_unmap(&n->reg);
				unlink(n->path);
			}
		}
		return;
	}
	cn->kind = CE_CONN_NSM;
	cn->nsm = n->idx;
}

/* ---- operator commands ---- */

struct outbuf {
	char *p;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void out(struct outbuf *o, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		size_t room = o->cap - o->len;
		va_start(ap, fmt);
		int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (o->p && (size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap ? o->cap * 2 : 4096;
		while (cap < o->len + (size_t)n + 1)
			cap *= 2;
		char *q = realloc(o->p, cap);
		if (!q)
			return;
		o->p = q;
		o->cap = cap;
	}
}

static const char *nsm_state_name(int s)
{
	return s == CE_NSM_UP ? "up" : s == CE_NSM_STARTING ? "starting" : "down";
}

static uint32_t vm_rx_used(struct ce_vm *vm) { return vm->reg.g.nrx - nk_pool_avail(&vm->rxfree); }

static void vm_counts(struct ce_vm *vm, uint32_t *socks, uint32_t *chans, uint32_t *tx)
{
	*socks = *chans = *tx = 0;
	for (uint32_t s = 0; s < vm->reg.g.nsocks; s++)
		*socks += vm->socks[s].state != CE_SK_FREE;
	for (uint32_t c = 0; c < vm->reg.g.nchan; c++) {
		*chans += vm->chan[c].used;
		*tx += vm->chan[c].tx_inflight;
	}
}

static void cmd_vms(struct ce *ce, struct outbuf *o, bool json)
{
	if (!json)
		out(o, "%-12s %-15s %-10s %6s %6s %8s %8s %10s\n", "VM", "ADDRESS", "NSM", "PROCS",
		    "SOCKS", "RX_USED", "TX_OUT", "BAD_NQES");
	else
		out(o, "[");
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		char ip[INET_ADDRSTRLEN];
		uint32_t socks, chans, tx;
		char gap[32] = "null", chunk_gap[32] = "null";
		inet_ntop(AF_INET, vm->ip, ip, sizeof(ip));
		vm_counts(vm, &socks, &chans, &tx);
		if (vm->switch_gap_ns >= 0)
			snprintf(gap, sizeof(gap), "%.1f", vm->switch_gap_ns / 1e3);
		if (vm->switch_chunk_ns >= 0)
			snprintf(chunk_gap, sizeof(chunk_gap), "%.1f", vm->switch_chunk_ns / 1e3);
		if (json)
			out(o, "%s{\"name\":\"%s\",\"ip\":\"%s\",\"nsm\":\"%s\",\"procs\":%u,\"sockets\":%u,"
			       "\"rx_used\":%u,\"tx_inflight\":%u,\"bad_nqes\":%llu,\"nqes_in\":%llu,\"nqes_out\":%llu,"
			       "\"switches\":%u,\"migrations\":%u,\"switch_gap_us\":%s,\"switch_chunk_us\":%s,\"mode\":\"%s\",\"boots\":%u,"
			       "\"weight\":%u,\"rate_bps\":%llu,\"ops_rate\":%llu,\"tx_bytes\":%llu,\"rx_bytes\":%llu,"
			       "\"capped_nqes\":%llu}",
			    v ? "," : "", vm->name, ip, ce->nsms[vm->nsm].name, chans, socks, vm_rx_used(vm), tx,
			    (unsigned long long)vm->bad_nqes, (unsigned long long)vm->nqes_in,
			    (unsigned long long)vm->nqes_out, vm->switches, vm->migrations, gap, chunk_gap,
			    vm->vmmode ? "vm" : "process", vm->boots, vm->weight,
			    (unsigned long long)vm->cap_bytes.rate * 8, (unsigned long long)vm->cap_ops.rate,
			    (unsigned long long)vm->tx_bytes, (unsigned long long)vm->rx_bytes,
			    (unsigned long long)vm->iso_capped);
		else
			out(o, "%-12s %-15s %-10s %6u %6u %8u %8u %10llu\n", vm->name, ip,
			    ce->nsms[vm->nsm].name, chans, socks, vm_rx_used(vm), tx,
			    (unsigned long long)vm->bad_nqes);
	}
	if (json)
		out(o, "]\n");
}

static void cmd_nsms(struct ce *ce, struct outbuf *o, bool json)
{
	if (!json)
		out(o, "%-10s %-9s %7s %-8s %-7s %-16s %7s %7s\n", "NSM", "STATE", "PID", "STACK", "CC",
		    "NETNS", "SOCKETS", "STARTS");
	else
		out(o, "[");
	for (uint32_t i = 0; i < ce->nnsms; i++) {
		struct ce_nsm *n = &ce->nsms[i];
		uint32_t socks = 0;
		for (uint32_t k = 0; k < n->map_len; k++)
			socks += n->map[k].used;
		if (json)
			out(o, "%s{\"name\":\"%s\",\"state\":\"%s\",\"pid\":%d,\"stack\":\"%s\",\"cc\":\"%s\","
			       "\"netns\":\"%s\",\"sockets\":%u,\"starts\":%u,\"iso\":%s,\"rate_bps\":%llu}",
			    i ? "," : "", n->name, nsm_state_name(n->state), (int)n->pid, n->stack, n->cc,
			    n->netns, socks, n->starts, n->iso ? "true" : "false",
			    (unsigned long long)n->cap.rate * 8);
		else
			out(o, "%-10s %-9s %7d %-8s %-7s %-16s %7u %7u\n", n->name, nsm_state_name(n->state),
			    (int)n->pid, n->stack, n->cc, n->netns[0] ? n->netns : "-", socks, n->starts);
	}
	if (json)
		out(o, "]\n");
}

static void addr_str(const struct nk_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (a->family == AF_INET)
		inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
	else if (a->family == AF_INET6)
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
	else {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, ntohs(a->port));
}

static const char *slot_state_name(uint32_t s)
{
	static const char *names[] = { "free", "open", "bound", "listen", "connecting", "established", "closed" };
	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void cmd_conns(struct ce *ce, struct outbuf *o, bool json)
{
	bool first = true;
	if (!json)
		out(o, "%-10s %5s %-10s %7s %-12s %-22s %-22s\n", "VM", "SOCK", "NSM", "NSMSOCK", "STATE",
		    "LOCAL", "PEER");
	else
		out(o, "[");
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		for (uint32_t s = 0; s < vm->reg.g.nsocks; s++) {
			struct ce_sock *sk = &vm->socks[s];
			if (sk->state == CE_SK_FREE)
				continue;
			struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
			/* Copied first: the guest can rewrite its slot under us. */
			struct nk_addr la = slot->local, pa = slot->peer;
			uint32_t sstate = slot->state;
			char l[64], p[64];
			addr_str(&la, l, sizeof(l));
			addr_str(&pa, p, sizeof(p));
			const char *st = sk->state == CE_SK_CLOSING ? "closing" :
					 sk->state == CE_SK_DEAD ? "dead" : slot_state_name(sstate);
			const char *nsm = sk->nsm >= 0 ? ce->nsms[sk->nsm].name : "-";
			if (json) {
				out(o, "%s{\"vm\":\"%s\",\"sock\":%u,\"nsm\":\"%s\",\"nsm_sock\":%u,\"state\":\"%s\","
				       "\"local\":\"%s\",\"peer\":\"%s\"}",
				    first ? "" : ",", vm->name, s, nsm, sk->nsm_sock, st, l, p);
				first = false;
			} else {
				out(o, "%-10s %5u %-10s %7u %-12s %-22s %-22s\n", vm->name, s, nsm, sk->nsm_sock, st, l, p);
			}
		}
	}
	if (json)
		out(o, "]\n");
}

static int cmd_switch(struct ce *ce, struct outbuf *o, const char *vmname, const char *nsmname, bool move)
{
	struct ce_vm *vm = ce_vm_find(ce, vmname);
	struct ce_nsm *n = ce_nsm_find(ce, nsmname);
	char err[256];
	if (!vm || !n) {
		out(o, "no %s named '%s'\n", vm ? "NSM" : "VM", vm ? nsmname : vmname);
		return -ENOENT;
	}
	int warm = n->state == CE_NSM_UP;
	if (!move && vm->nsm == (int)n->idx) {
		out(o, "vm %s already uses NSM %s\n", vm->name, n->name);
		return 0;
	}
	int rc = ce_nsm_switch(ce, vm, n, move, err, sizeof(err));
	if (rc < 0) {
		out(o, "%s\n", err);
		return rc;
	}
	if (move)
		out(o, "vm %s now uses NSM %s (%s switch)\n", vm->name, n->name, warm ? "warm" : "cold");
	else
		out(o, "vm %s: new sockets go to NSM %s; existing connections stay\n", vm->name, n->name);
	return 0;
}

/* set VM key=value...  /  set-nsm NSM key=value...: all or nothing. */
static int cmd_set(struct ce *ce, struct outbuf *o, bool nsm, char **argv, int argc)
{
	struct ce_vm *vm = nsm ? NULL : ce_vm_find(ce, argv[0]);
	struct ce_nsm *n = nsm ? ce_nsm_find(ce, argv[0]) : NULL;
	if (!vm && !n) {
		out(o, "no %s named '%s'\n", nsm ? "NSM" : "VM", argv[0]);
		return -ENOENT;
	}
	struct ce_vm vcopy;
	struct ce_nsm ncopy;
	if (vm)
		vcopy = *vm;
	else
		ncopy = *n;
	char err[160];
	for (int i = 1; i < argc; i++) {
		char kv[64];
		snprintf(kv, sizeof(kv), "%s", argv[i]);
		char *eq = strchr(kv, '=');
		int rc = -EINVAL;
		if (!eq)
			snprintf(err, sizeof(err), "expected key=value, got '%s'", argv[i]);
		else {
			*eq++ = '\0';
			rc = vm ? ce_iso_vm_set(&vcopy, kv, eq, err, sizeof(err)) :
				  ce_iso_nsm_set(&ncopy, kv, eq, err, sizeof(err));
		}
		if (rc < 0) {
			out(o, "%s\n", err);
			return rc;
		}
	}
	if (vm) {
		vm->weight = vcopy.weight;
		vm->cap_bytes = vcopy.cap_bytes;
		vm->cap_ops = vcopy.cap_ops;
		out(o, "vm %s: weight %u, rate %llu bit/s, ops %llu/s (0 = no cap)\n", vm->name, vm->weight,
		    (unsigned long long)vm->cap_bytes.rate * 8, (unsigned long long)vm->cap_ops.rate);
		ce_log("vm %s: weight %u rate %llu ops %llu", vm->name, vm->weight,
		       (unsigned long long)vm->cap_bytes.rate * 8, (unsigned long long)vm->cap_ops.rate);
	} else {
		n->iso = ncopy.iso;
		n->cap = ncopy.cap;
		out(o, "NSM %s: isolation %s, rate %llu bit/s (0 = none)\n", n->name, n->iso ? "on" : "off",
		    (unsigned long long)n->cap.rate * 8);
		ce_log("nsm %s: isolation %s rate %llu", n->name, n->iso ? "on" : "off",
		       (unsigned long long)n->cap.rate * 8);
	}
	return 0;
}

static int cmd_start(struct ce *ce, struct outbuf *o, const char *nsmname)
{
	struct ce_nsm *n = ce_nsm_find(ce, nsmname);
	if (!n) {
		out(o, "no NSM named '%s'\n", nsmname);
		return -ENOENT;
	}
	if (n->state != CE_NSM_DOWN) {
		out(o, "NSM %s is already %s\n", n->name, nsm_state_name(n->state));
		return 0;
	}
	n->retry_after_ns = 0;
	int rc = ce_nsm_start(ce, n);
	if (rc < 0) {
		out(o, "cannot start NSM %s: %s\n", n->name, strerror(-rc));
		return rc;
	}
	out(o, "NSM %s starting (pid %d)\n", n->name, (int)n->pid);
	return 0;
}

/* VM mode: the launcher registers the VM's QEMU process; its exit brings
 * the VM down (ce_vm_down), however it exits. */
static int cmd_vm_pid(struct ce *ce, struct outbuf *o, const char *vmname, const char *pidstr)
{
	struct ce_vm *vm = ce_vm_find(ce, vmname);
	char err[256], *end;
	if (!vm) {
		out(o, "no VM named '%s'\n", vmname);
		return -ENOENT;
	}
	long pid = strtol(pidstr, &end, 10);
	if (*end || pid <= 0 || pid > 0x3fffffff) {
		out(o, "bad pid '%s'\n", pidstr);
		return -EINVAL;
	}
	int rc = ce_vm_set_pid(ce, vm, (pid_t)pid, err, sizeof(err));
	if (rc < 0) {
		out(o, "%s\n", err);
		return rc;
	}
	out(o, "vm %s is QEMU pid %ld\n", vm->name, pid);
	return 0;
}

static int cmd_vm_down(struct ce *ce, struct outbuf *o, const char *vmname)
{
	struct ce_vm *vm = ce_vm_find(ce, vmname);
	if (!vm || !vm->vmmode) {
		out(o, "no VM-mode VM named '%s'\n", vmname);
		return -ENOENT;
	}
	ce_vm_down(ce, vm, "nkctl vm-down");
	out(o, "vm %s down: its channels dropped, its connections reset\n", vm->name);
	return 0;
}

static void run_command(struct ce *ce, struct ce_conn *cn, const char *text)
{
	char buf[512], *argv[16], *save = NULL;
	int argc = 0, status = 0;
	bool json = false;
	struct outbuf o = { 0 };

	if (strlen(text) >= sizeof(buf)) {
		out(&o, "command too long\n");
		status = -EINVAL;
		text = "";
	}
	memcpy(buf, text, strlen(text) + 1);
	for (char *t = strtok_r(buf, " \t\n", &save); t && argc < 16; t = strtok_r(NULL, " \t\n", &save)) {
		if (!strcmp(t, "--json"))
			json = true;
		else
			argv[argc++] = t;
	}
	if (argc == 2 && !strcmp(argv[0], "list") && !strcmp(argv[1], "vms"))
		cmd_vms(ce, &o, json);
	else if (argc == 2 && !strcmp(argv[0], "list") && !strcmp(argv[1], "nsms"))
		cmd_nsms(ce, &o, json);
	else if (argc == 2 && !strcmp(argv[0], "list") && !strcmp(argv[1], "conns"))
		cmd_conns(ce, &o, json);
	else if (argc == 1 && !strcmp(argv[0], "stats"))
		cmd_vms(ce, &o, true);
	else if (argc == 3 && !strcmp(argv[0], "switch"))
		status = cmd_switch(ce, &o, argv[1], argv[2], true);
	else if (argc == 3 && !strcmp(argv[0], "attach"))
		status = cmd_switch(ce, &o, argv[1], argv[2], false);
	else if (argc >= 3 && !strcmp(argv[0], "set"))
		status = cmd_set(ce, &o, false, argv + 1, argc - 1);
	else if (argc >= 3 && !strcmp(argv[0], "set-nsm"))
		status = cmd_set(ce, &o, true, argv + 1, argc - 1);
	else if (argc == 2 && !strcmp(argv[0], "start"))
		status = cmd_start(ce, &o, argv[1]);
	else if (argc == 3 && !strcmp(argv[0], "vm-pid"))
		status = cmd_vm_pid(ce, &o, argv[1], argv[2]);
	else if (argc == 2 && !strcmp(argv[0], "vm-down"))
		status = cmd_vm_down(ce, &o, argv[1]);
	else {
		out(&o, "unknown command '%s' (try: list vms|nsms|conns, stats, switch VM NSM, attach VM NSM, "
		       "start NSM, set VM weight=W rate=R ops=N, set-nsm NSM iso=on|off rate=R, "
		       "vm-pid VM PID, vm-down VM)\n", text);
		status = -EINVAL;
	}
	/* Send in parts that fit one message. */
	size_t off = 0, part = sizeof(((struct nk_ctl_msg *)0)->text) - 1;
	do {
		struct nk_ctl_msg m;
		nk_ctl_init(&m, NK_CTL_REPLY);
		size_t n = o.len - off < part ? o.len - off : part;
		if (n)
			memcpy(m.text, o.p + off, n);
		off += n;
		m.more = off < o.len;
		m.status = m.more ? 0 : status;
		if (nk_ctl_send(cn->fd, &m, NULL, 0) < 0)
			break;
	} while (off < o.len);
	free(o.p);
}

void ce_ctl_readable(struct ce *ce, int fd)
{
	struct ce_conn *cn = &ce->conns[fd];
	struct nk_ctl_msg m;
	int fds[NK_CTL_MAX_FDS], nfds;

	for (;;) {
		int rc = nk_ctl_recv(fd, &m, fds, NK_CTL_MAX_FDS, &nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]); /* nobody sends us descriptors */
		if (rc == -EAGAIN)
			return;
		if (rc < 0)
			break;
		if (m.type == NK_CTL_GUEST_HELLO && cn->kind == CE_CONN_NEW)
			guest_hello(ce, cn, &m);
		else if (m.type == NK_CTL_NSM_HELLO && cn->kind == CE_CONN_NEW)
			nsm_hello(ce, cn, &m);
		else if (m.type == NK_CTL_COMMAND && (cn->kind == CE_CONN_NEW || cn->kind == CE_CONN_CLI)) {
			cn->kind = CE_CONN_CLI;
			run_command(ce, cn, m.text);
		} else
			send_error(fd, -EPROTO, "unexpected control message type %u", m.type);
	}
	/* EOF or error: the peer is gone. */
	int kind = cn->kind;
	uint32_t vm = cn->vm, chan = cn->chan, nsm = cn->nsm;
	ce_ctl_close_conn(ce, fd);
	if (kind == CE_CONN_GUEST)
		ce_chan_gone(ce, &ce->vms[vm], chan);
	else if (kind == CE_CONN_NSM && ce->nsms[nsm].ctl_fd == fd) {
		ce->nsms[nsm].ctl_fd = -1;
		ce_nsm_lost(ce, &ce->nsms[nsm], "control connection closed");
	}
}
