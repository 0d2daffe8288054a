/* SPDX-License-Identifier: MIT */
/*
 * nk_sl_ctl.c - ServiceLib: the control socket (hello, VM attach/detach) and
 * the producer side of the up ring (posting, backlog, doorbell).
 */
#define _GNU_SOURCE
#include "nk_sl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nk_ctl.h"

void nk_sl_log(struct nk_sl *sl, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "nk-nsm[%s]: %s\n", sl->name ? sl->name : "?", buf);
}

int nk_sl_ctl_hello(struct nk_sl *sl, const char *path, char *err, size_t errlen)
{
	struct nk_ctl_msg msg;
	int fds[NK_CTL_MAX_FDS], nfds = 0;

	int fd = nk_ctl_connect(path);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to CoreEngine control socket %s: %s", path,
			 strerror(-fd));
		return fd;
	}
	sl->ctl = fd;
	nk_ctl_init(&msg, NK_CTL_NSM_HELLO);
	snprintf(msg.name, sizeof(msg.name), "%s", sl->name);
	msg.pid = (uint32_t)getpid();
	int r = nk_ctl_send(fd, &msg, NULL, 0);
	if (r < 0) {
		snprintf(err, errlen, "cannot send hello on %s: %s", path, strerror(-r));
		return r;
	}
	r = nk_ctl_recv(fd, &msg, fds, NK_CTL_MAX_FDS, &nfds);
	if (r < 0) {
		snprintf(err, errlen, "no welcome from CoreEngine on %s: %s", path,
			 r == -ECONNRESET ? "connection closed" : strerror(-r));
		return r;
	}
	if (msg.type == NK_CTL_ERROR || msg.type != NK_CTL_NSM_WELCOME || nfds != 3) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (msg.type == NK_CTL_ERROR)
			snprintf(err, errlen, "CoreEngine refused NSM '%s': %s", sl->name,
				 msg.text[0] ? msg.text : strerror(msg.status < 0 ? -msg.status : EPROTO));
		else
			snprintf(err, errlen, "unexpected reply from CoreEngine (type %u, %d fds)",
				 msg.type, nfds);
		return -EPROTO;
	}
	sl->index = msg.index;
	sl->up_efd = fds[1];
	sl->down_efd = fds[2];
	r = nk_region_map_fd(&sl->nreg, fds[0], NK_REGION_NSM, err, errlen);
	if (r < 0) {
		close(fds[0]);
		return r;
	}
	nk_region_up_ring(&sl->nreg, 0, &sl->up);
	nk_region_down_ring(&sl->nreg, 0, &sl->down);
	/* From now on the control socket is drained from the event loop (and
	 * on demand when a ring NQE names an unknown VM): never block on it. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl on control socket: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static void vm_free(struct nk_sl_vm *v)
{
	nk_region_unmap(&v->reg);
	free(v->stash);
	free(v->in_stash);
	free(v);
}

static void vm_detach(struct nk_sl *sl, uint32_t idx)
{
	if (idx >= NK_SL_MAX_VMS || !sl->vms[idx])
		return;
	/* The CE has already written the VM off: its sockets go silently (no
	 * SEND_DONE/CLOSED for a VM the CE no longer knows), before the unmap
	 * so nothing can touch the region afterwards. */
	nk_sl_drop_vm_socks(sl, (uint16_t)idx);
	vm_free(sl->vms[idx]);
	sl->vms[idx] = NULL;
}

static void vm_attach(struct nk_sl *sl, const struct nk_ctl_msg *msg, int fd)
{
	char err[256];
	if (msg->index >= NK_SL_MAX_VMS) {
		nk_sl_log(sl, "VM_ATTACH with index %u out of range, ignored", msg->index);
		close(fd);
		return;
	}
	if (sl->vms[msg->index]) {
		nk_sl_log(sl, "VM_ATTACH for already attached vm %u: replacing it", msg->index);
		vm_detach(sl, msg->index);
	}
	struct nk_sl_vm *v = calloc(1, sizeof(*v));
	if (!v) {
		close(fd);
		return;
	}
	int r = nk_region_map_fd(&v->reg, fd, NK_REGION_VM, err, sizeof(err));
	if (r < 0) {
		nk_sl_log(sl, "VM_ATTACH vm %u (%s): %s", msg->index, msg->name, err);
		close(fd);
		free(v);
		return;
	}
	v->index = (uint16_t)msg->index;
	snprintf(v->name, sizeof(v->name), "%s", msg->name);
	memcpy(v->ipv4, msg->ipv4, 4);
	v->nchunks = nk_geom_nchunks(&v->reg.g);
	v->chunk_size = v->reg.g.chunk_size;
	v->stash = calloc(v->nchunks ? v->nchunks : 1, sizeof(*v->stash));
	v->in_stash = calloc(v->nchunks ? v->nchunks : 1, 1);
	if (!v->stash || !v->in_stash) {
		nk_sl_log(sl, "VM_ATTACH vm %u: out of memory", msg->index);
		vm_free(v);
		return;
	}
	sl->vms[msg->index] = v;
	nk_sl_sess_listen(sl, v); /* accept resumed legs of this VM's sessions */
}

int nk_sl_ctl_drain(struct nk_sl *sl)
{
	struct nk_ctl_msg msg;
	int fds[NK_CTL_MAX_FDS], nfds;

	while (!sl->stop) {
		int r = nk_ctl_recv(sl->ctl, &msg, fds, NK_CTL_MAX_FDS, &nfds);
		if (r == -EAGAIN || r == -EWOULDBLOCK)
			return 0;
		if (r == -EPROTO) {
			nk_sl_log(sl, "malformed control message ignored");
			continue;
		}
		if (r < 0) {
			/* EOF: the CoreEngine is gone; nothing we hold is useful. */
			if (r != -ECONNRESET)
				nk_sl_log(sl, "control socket: %s", strerror(-r));
			sl->stop = true;
			return r;
		}
		int used = 0;
		switch (msg.type) {
		case NK_CTL_VM_ATTACH:
			if (nfds >= 1) {
				vm_attach(sl, &msg, fds[0]);
				used = 1;
			} else {
				nk_sl_log(sl, "VM_ATTACH without a region fd ignored");
			}
			break;
		case NK_CTL_VM_DETACH:
			vm_detach(sl, msg.index);
			break;
		case NK_CTL_ERROR:
			nk_sl_log(sl, "CoreEngine error: %s", msg.text);
			break;
		default:
			nk_sl_log(sl, "unexpected control message type %u ignored", msg.type);
			break;
		}
		for (int i = used; i < nfds; i++)
			close(fds[i]);
	}
	return 0;
}

struct nk_sl_vm *nk_sl_vm_find(struct nk_sl *sl, uint16_t vm)
{
	if (sl->vms[vm])
		return sl->vms[vm];
	/* The CE sends VM_ATTACH before the first NQE of that VM; AF_UNIX
	 * delivery is synchronous, so the attach is already queued here. */
	nk_sl_ctl_drain(sl);
	return sl->vms[vm];
}

void nk_sl_vm_detach_all(struct nk_sl *sl)
{
	if (!sl->vms)
		return;
	for (uint32_t i = 0; i < NK_SL_MAX_VMS; i++)
		if (sl->vms[i])
			vm_detach(sl, i);
}

/* ---- up ring ---- */

void nk_sl_post(struct nk_sl *sl, const struct nk_nqe *nqe)
{
	if (sl->bl_count == 0 && nk_ring_enqueue(&sl->up, nqe)) {
		sl->kick = true;
		return;
	}
	/* Ring full: keep it, in order. Growth is bounded because the loop
	 * stops consuming requests and producing data while this is non-empty
	 * (beyond NK_SL_BACKLOG_SOFT for requests). */
	if (sl->bl_count == sl->bl_cap) {
		uint32_t ncap = sl->bl_cap ? sl->bl_cap * 2 : 256;
		struct nk_nqe *nb = malloc((size_t)ncap * sizeof(*nb));
		if (!nb) {
			/* Dropping would leak a chunk or hang a guest forever. */
			nk_sl_log(sl, "out of memory for the up-ring backlog");
			abort();
		}
		for (uint32_t i = 0; i < sl->bl_count; i++)
			nb[i] = sl->bl[(sl->bl_head + i) % sl->bl_cap];
		free(sl->bl);
		sl->bl = nb;
		sl->bl_cap = ncap;
		sl->bl_head = 0;
	}
	sl->bl[(sl->bl_head + sl->bl_count) % sl->bl_cap] = *nqe;
	sl->bl_count++;
}

bool nk_sl_can_produce(struct nk_sl *sl)
{
	return sl->bl_count == 0 && nk_ring_free(&sl->up) > 0;
}

int nk_sl_flush_backlog(struct nk_sl *sl)
{
	int moved = 0;
	while (sl->bl_count) {
		uint32_t contig = sl->bl_cap - sl->bl_head;
		if (contig > sl->bl_count)
			contig = sl->bl_count;
		uint32_t n = nk_ring_enqueue_burst(&sl->up, &sl->bl[sl->bl_head], contig);
		if (n == 0)
			break;
		sl->bl_head = (sl->bl_head + n) % sl->bl_cap;
		sl->bl_count -= n;
		moved += (int)n;
		sl->kick = true;
	}
	return moved;
}

void nk_sl_kick(struct nk_sl *sl)
{
	if (!sl->kick)
		return;
	sl->kick = false;
	if (nk_ring_needs_wakeup(&sl->up)) {
		uint64_t one = 1;
		if (write(sl->up_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			nk_sl_log(sl, "up doorbell: %s", strerror(errno));
	}
}

void nk_sl_complete(struct nk_sl *sl, const struct nk_nqe *req, int32_t result)
{
	struct nk_nqe c = *req;
	c.flags |= NK_NQF_COMPLETION;
	c.result = result;
	nk_sl_post(sl, &c);
}
