/* SPDX-License-Identifier: MIT */
/*
 * nk_sl_sock.c - ServiceLib socket table and data path: the per-socket send
 * queue (SEND chunks written in order, SHUTDOWN ordered behind them), receive
 * pushing within the rx credit and the VM's granted chunks, accept pushing,
 * and the readiness the ServiceLib asks of the stack.
 *
 * Readiness is level-triggered and driven by what we are *able* to do: a
 * socket asks for NK_EV_IN only while it has rx credit and a chunk to fill,
 * and for NK_EV_OUT only while sends are blocked or a connect is pending. So
 * an idle or back-pressured socket costs no wake-ups, and TCP's own window
 * pushes back on the sender when the guest stops consuming.
 */
#define _GNU_SOURCE
#include "nk_sl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t nk_sl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- table ---- */

static int table_grow(struct nk_sl *sl)
{
	uint32_t ncap = sl->nsocks_cap ? sl->nsocks_cap * 2 : 64;
	if (ncap > NK_SL_MAX_SOCKS)
		ncap = NK_SL_MAX_SOCKS;
	if (ncap <= sl->nsocks_cap)
		return -EMFILE;
	struct nk_sl_sock **p = realloc(sl->socks, (size_t)ncap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	sl->socks = p;
	/* Link the new ids in ascending order so low ids are used first. */
	for (uint32_t i = ncap; i-- > sl->nsocks_cap;) {
		struct nk_sl_sock *s = calloc(1, sizeof(*s));
		if (!s) {
			/* Keep the ids allocated so far; the rest stays unused. */
			for (uint32_t j = i + 1; j < ncap; j++)
				free(p[j]);
			return -ENOMEM;
		}
		s->id = i;
		s->h = -1;
		s->next_free = sl->free_head;
		sl->free_head = i;
		p[i] = s;
	}
	sl->nsocks_cap = ncap;
	return 0;
}

struct nk_sl_sock *nk_sl_sock_new(struct nk_sl *sl, uint16_t vm)
{
	if (sl->free_head == NK_NO_SOCK && table_grow(sl) < 0)
		return NULL;
	struct nk_sl_sock *s = sl->socks[sl->free_head];
	sl->free_head = s->next_free;
	struct nk_sl_txq *q = s->q;
	uint32_t qcap = s->qcap;
	uint32_t id = s->id;
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->q = q; /* keep the queue buffer across reuse */
	s->qcap = qcap;
	s->vm = vm;
	s->h = -1;
	s->h_tx = -1;
	s->state = NK_SLS_OPEN;
	s->next_free = NK_NO_SOCK;
	sl->nused++;
	return s;
}

/* A new socket of vm together with its stack socket; NULL with *err set
 * and nothing left behind when either cannot be had. */
struct nk_sl_sock *nk_sl_sock_open(struct nk_sl *sl, uint16_t vm, int domain, int type,
				   int protocol, int *err)
{
	struct nk_sl_sock *s = nk_sl_sock_new(sl, vm);
	if (!s) {
		*err = -EMFILE;
		return NULL;
	}
	s->stream = type == SOCK_STREAM;
	s->domain = domain;
	int r = sl->ops->socket(sl->st, s->id, domain, type, protocol, &s->h);
	if (r < 0) {
		s->h = -1;
		nk_sl_sock_drop(sl, s, false);
		*err = r;
		return NULL;
	}
	return s;
}

static void note_credit_wait(struct nk_sl *sl, struct nk_sl_sock *s, bool wait)
{
	if (wait == s->credit_wait)
		return;
	s->credit_wait = wait;
	if (wait)
		sl->credit_waits++;
	else
		sl->credit_waits--;
}

/* Return an id to the free list (its stack socket is already closed). */
static void sock_release(struct nk_sl *sl, struct nk_sl_sock *s)
{
	note_credit_wait(sl, s, false);
	s->state = NK_SLS_FREE;
	s->tx_pending = false;
	s->h = -1;
	s->qcount = 0;
	s->abort = false;
	s->next_free = sl->free_head;
	sl->free_head = s->id;
	sl->nused--;
}

/* Forget a socket whose stack handle now belongs to another one. */
void nk_sl_sock_forget(struct nk_sl *sl, struct nk_sl_sock *s)
{
	sock_release(sl, s);
}

struct nk_sl_sock *nk_sl_sock_get(struct nk_sl *sl, const struct nk_nqe *nqe)
{
	if (nqe->sock >= sl->nsocks_cap)
		return NULL;
	struct nk_sl_sock *s = sl->socks[nqe->sock];
	if (s->state == NK_SLS_FREE || s->vm != nqe->vm || s->internal)
		return NULL;
	return s;
}

/* ---- send queue ---- */

static struct nk_sl_txq *q_at(struct nk_sl_sock *s, uint32_t i)
{
	return &s->q[(s->qhead + i) % s->qcap];
}

static int q_push(struct nk_sl_sock *s, const struct nk_nqe *req, uint8_t kind)
{
	if (s->qcount >= NK_SL_TXQ_MAX)
		return -ENOBUFS;
	if (s->qcount == s->qcap) {
		uint32_t ncap = s->qcap ? s->qcap * 2 : 8;
		struct nk_sl_txq *nq = malloc((size_t)ncap * sizeof(*nq));
		if (!nq)
			return -ENOMEM;
		for (uint32_t i = 0; i < s->qcount; i++)
			nq[i] = *q_at(s, i);
		free(s->q);
		s->q = nq;
		s->qcap = ncap;
		s->qhead = 0;
	}
	struct nk_sl_txq *e = &s->q[(s->qhead + s->qcount) % s->qcap];
	e->req = *req;
	e->done = 0;
	e->kind = kind;
	s->qcount++;
	return 0;
}

static void q_pop(struct nk_sl_sock *s)
{
	s->qhead = (s->qhead + 1) % s->qcap;
	s->qcount--;
}

static void send_done(struct nk_sl *sl, const struct nk_nqe *req, int32_t result)
{
	struct nk_nqe c = *req;
	c.op = NK_OP_SEND_DONE;
	c.flags |= NK_NQF_COMPLETION;
	c.result = result;
	nk_sl_post(sl, &c);
}

/* Complete every queued entry with err (chunks go back), or just forget
 * them when the CE no longer wants to hear (post == false). */
static void q_fail_all(struct nk_sl *sl, struct nk_sl_sock *s, int err, bool post)
{
	while (s->qcount) {
		struct nk_sl_txq *e = q_at(s, 0);
		if (post) {
			if (e->kind == NK_TXQ_SEND)
				send_done(sl, &e->req, err);
			else
				nk_sl_complete(sl, &e->req, err);
		}
		q_pop(s);
	}
}

static bool can_write(const struct nk_sl_sock *s)
{
	return s->state == NK_SLS_CONNECTED || (!s->stream && s->state == NK_SLS_OPEN);
}

/* Write queued SENDs as far as the stack accepts them; run SHUTDOWNs that
 * reach the head. Several stream chunks go out in one sendmsg. */
static void tx_run(struct nk_sl *sl, struct nk_sl_sock *s)
{
	struct iovec iov[64];
	struct nk_sl_vm *v = sl->vms[s->vm];
	int64_t th = s->h_tx >= 0 ? s->h_tx : s->h; /* the write leg */

	/* A session hello goes before any data. */
	if (s->pre_off < s->pre_len && can_write(s)) {
		int r = nk_sl_sess_write_prefix(sl, s, th);
		if (r == 0)
			return;
		if (r < 0) {
			s->tx_err = r;
			q_fail_all(sl, s, r, true);
			return;
		}
	}
	if (s->pre_off < s->pre_len)
		return;
	while (s->qcount) {
		struct nk_sl_txq *e = q_at(s, 0);
		if (e->kind == NK_TXQ_SHUTDOWN) {
			int how = (int)e->req.arg.u32[0];
			if (how != SHUT_RD)
				s->wr_shut = s->tx_fin_sent = true;
			nk_sl_complete(sl, &e->req, sl->ops->shutdown(sl->st, th, how));
			q_pop(s);
			continue;
		}
		if (s->tx_err) {
			q_fail_all(sl, s, s->tx_err, true);
			break;
		}
		if (s->stream && s->state != NK_SLS_CONNECTED && s->state != NK_SLS_CONNECTING) {
			q_fail_all(sl, s, -ENOTCONN, true); /* as send() on such a socket */
			break;
		}
		if (!can_write(s) || !v)
			break;
		int n = 0;
		struct sockaddr_storage to;
		socklen_t tolen = 0;
		for (uint32_t i = 0; i < s->qcount && n < 64; i++) {
			struct nk_sl_txq *x = q_at(s, i);
			if (x->kind != NK_TXQ_SEND)
				break;
			/* chunk/off/len were bounds-checked when queued. */
			iov[n].iov_base = nk_region_chunk(&v->reg, x->req.chunk) + x->req.off + x->done;
			iov[n].iov_len = x->req.len - x->done;
			n++;
			if (!s->stream)
				break; /* one datagram per SEND */
		}
		struct nk_addr dest = e->req.arg.addr;
		if (!s->stream)
			(void)nk_sl_loop_dest(v, &dest); /* the guest's loopback */
		if (!s->stream && dest.family != 0 && nk_sl_addr_to_sa(&dest, &to, &tolen) < 0)
			tolen = 0;
		ssize_t w = sl->ops->sendv(sl->st, th, iov, n,
					   tolen ? (struct sockaddr *)&to : NULL, tolen);
		if (w == -EAGAIN)
			break;
		if (w < 0) {
			s->tx_err = (int)w;
			q_fail_all(sl, s, (int)w, true);
			break;
		}
		s->tx_bytes += (uint64_t)w;
		if (s->mig_in && w > 0 && !s->mig_first_ns)
			s->mig_first_ns = nk_sl_now_ns(); /* the switch gap ends here */
		/* Retire what was fully written; a partial head stays. */
		size_t left = (size_t)w;
		bool progress = false;
		while (s->qcount && q_at(s, 0)->kind == NK_TXQ_SEND) {
			struct nk_sl_txq *x = q_at(s, 0);
			size_t need = x->req.len - x->done;
			if (!s->stream)
				need = left = 0; /* a datagram goes whole or not at all */
			if (left < need) {
				x->done += (uint32_t)left;
				progress |= left > 0;
				break;
			}
			left -= need;
			send_done(sl, &x->req, (int32_t)x->req.len);
			q_pop(s);
			progress = true;
			if (!s->stream)
				break;
		}
		if (!progress)
			break;
	}
	/* Linked a new leg after the application had shut its write side:
	 * the new leg ends the same way, right after our ACK. */
	if (s->wr_shut && !s->tx_fin_sent && s->qcount == 0 && can_write(s)) {
		sl->ops->shutdown(sl->st, th, SHUT_WR);
		s->tx_fin_sent = true;
	}
	/* The old leg of a switched session: once what it held is written,
	 * end it; reading goes on to the peer's EOF. */
	if (s->mig_out && !s->mig_shut && s->qcount == 0 && can_write(s)) {
		sl->ops->shutdown(sl->st, s->h, SHUT_WR);
		s->mig_shut = true;
	}
}

void nk_sl_tx_run(struct nk_sl *sl, struct nk_sl_sock *s)
{
	tx_run(sl, s);
}

/* ---- receive ---- */

static void stash_put(struct nk_sl_vm *v, uint32_t chunk)
{
	v->in_stash[chunk] = 1;
	v->stash[v->nstash++] = chunk;
}

static bool can_read(const struct nk_sl_sock *s)
{
	return s->state == NK_SLS_CONNECTED || (!s->stream && s->bound);
}

static void accept_one(struct nk_sl *sl, struct nk_sl_sock *s, bool *again)
{
	struct sockaddr_storage peer;
	socklen_t plen;
	int64_t nh;

	*again = false;
	struct nk_sl_sock *ns = nk_sl_sock_new(sl, s->vm);
	if (!ns)
		return; /* table full: leave it in the kernel's accept queue */
	int r = sl->ops->accept(sl->st, s->h, ns->id, &nh, &peer, &plen);
	if (r < 0) {
		sock_release(sl, ns);
		if (r == -EINVAL) {
			/* The guest shut the listener down: it accepts no more
			 * (as Linux, whose accept then fails EINVAL). */
			s->rx_stop = true;
			return;
		}
		if (r != -EAGAIN && r != -ECONNABORTED)
			nk_sl_log(sl, "accept on socket %u: %s", s->id, strerror(-r));
		*again = r == -ECONNABORTED;
		return;
	}
	if (s->loop) {
		/* A listener on the guest's loopback: only the VM itself. */
		struct nk_addr pa;
		nk_sl_addr_from_sa(&pa, &peer);
		if (!nk_sl_loop_peer_ok(sl->vms[s->vm], &pa)) {
			sock_release(sl, ns);
			sl->ops->close(sl->st, nh, true);
			*again = true;
			return;
		}
		ns->loop = true;
	}
	ns->h = nh;
	ns->stream = true;
	ns->domain = s->domain;
	ns->bound = true;
	ns->state = NK_SLS_CONNECTED;
	nk_sl_sess_accepted(sl, s, ns, &peer); /* NEWCONN now, or after the hello */
	nk_sl_sock_update(sl, ns);
	*again = true;
}

/* Read a stream into up to NK_SL_RX_BATCH chunks with one call (the chunks
 * on top of the stash, taken only once filled) and post them: one syscall
 * instead of one per chunk. Returns the entries posted; 0 = nothing to
 * read; -1 = batching does not apply here; -2 = the read hit the end of
 * the stream or an error, in *end, which the caller posts (an error is
 * reported once by the kernel: it must not be read twice). */
static int rx_batch(struct nk_sl *sl, struct nk_sl_sock *s, struct nk_sl_vm *v, ssize_t *end)
{
	struct iovec iov[NK_SL_RX_BATCH];
	uint32_t ck[NK_SL_RX_BATCH];
	uint32_t k = NK_SL_RX_BATCH, cs = v->chunk_size;

	if (!sl->ops->recvv)
		return -1;
	if (k > v->nstash)
		k = v->nstash;
	if (k > NK_SOCK_RX_ENTRIES - s->rx_out)
		k = NK_SOCK_RX_ENTRIES - s->rx_out;
	if (k > nk_ring_free(&sl->up))
		k = nk_ring_free(&sl->up);
	/* A switched session's old leg must not be read past its offset. */
	if (k < 2 || nk_sl_sess_rx_room(sl, s, (size_t)k * cs) < (size_t)k * cs)
		return -1;
	for (uint32_t j = 0; j < k; j++) {
		ck[j] = v->stash[v->nstash - 1 - j];
		iov[j] = (struct iovec){ nk_region_chunk(&v->reg, ck[j]), cs };
	}
	ssize_t n = sl->ops->recvv(sl->st, s->h, iov, (int)k);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0) {
		*end = n;
		return -2;
	}
	uint32_t used = (uint32_t)(((size_t)n + cs - 1) / cs);
	v->nstash -= used;
	s->rx_bytes += (uint64_t)n;
	for (uint32_t j = 0; j < used; j++) {
		size_t len = (size_t)n - (size_t)j * cs;
		v->in_stash[ck[j]] = 0;
		struct nk_nqe e = { .op = NK_OP_RX_DATA, .vm = s->vm, .sock = s->id, .chunk = ck[j],
				    .len = (uint32_t)(len < cs ? len : cs) };
		nk_sl_post(sl, &e);
		s->rx_out++;
	}
	return (int)used;
}

/* Returns false when s is gone (dropped, or merged into another socket). */
static bool rx_pump(struct nk_sl *sl, struct nk_sl_sock *s)
{
	struct nk_sl_vm *v = sl->vms[s->vm];

	for (uint32_t i = 0; i < NK_SL_RX_BURST && v; i++) {
		if (s->hin_want && !s->closing) {
			/* A session hello comes first; it needs no credit. */
			int r = nk_sl_sess_read_hello(sl, s);
			if (r == 0)
				return true;
			if (r < 0 || s->state == NK_SLS_FREE)
				return false;
			continue;
		}
		if (s->closing || s->rx_stop || s->rx_out >= NK_SOCK_RX_ENTRIES)
			return true;
		if (!nk_sl_can_produce(sl))
			return true; /* the main loop retries once the CE made room */
		if (s->state == NK_SLS_LISTENING) {
			bool again;
			accept_one(sl, s, &again);
			if (!again)
				return true;
			continue;
		}
		if (!can_read(s) || s->internal)
			return true;
		if (v->nstash == 0) {
			s->stash_wait = true;
			v->starved = true;
			return true;
		}
		/* A datagram goes after a header naming its sender. */
		uint32_t hdr = s->stream ? 0 : NK_DGRAM_HDR;
		size_t room = s->stream ? nk_sl_sess_rx_room(sl, s, v->chunk_size) : v->chunk_size - hdr;
		ssize_t n = 0;
		bool have = false; /* n already holds a read's end (EOF or error) */
		if (s->stream && room == v->chunk_size) {
			int r = rx_batch(sl, s, v, &n);
			if (r == 0)
				return true;
			if (r > 0) {
				i += (uint32_t)r - 1;
				continue;
			}
			have = r == -2;
		}
		uint32_t chunk = v->stash[--v->nstash];
		v->in_stash[chunk] = 0;
		struct sockaddr_storage from;
		socklen_t flen = 0;
		if (!have)
			n = sl->ops->recv(sl->st, s->h, nk_region_chunk(&v->reg, chunk) + hdr, room, &from,
					  s->stream ? NULL : &flen);
		if (n == -EAGAIN) {
			stash_put(v, chunk);
			return true;
		}
		if (n == 0 && s->stream) {
			int err;
			if (nk_sl_sess_old_leg_eof(sl, s, &err)) {
				stash_put(v, chunk); /* the session goes on, new leg */
				continue;
			}
			if (err)
				n = err;
		}
		if (n > 0 && s->stream)
			s->rx_bytes += (uint64_t)n;
		struct nk_nqe e = { .vm = s->vm, .sock = s->id, .chunk = NK_NO_CHUNK };
		if (n > 0 || (n == 0 && !s->stream)) {
			e.op = NK_OP_RX_DATA;
			e.chunk = chunk;
			e.len = (uint32_t)n;
			if (!s->stream) {
				struct nk_addr src = { 0 };
				if (flen)
					nk_sl_addr_from_sa(&src, &from);
				if (s->loop && !nk_sl_loop_peer_ok(v, &src)) {
					stash_put(v, chunk); /* not from the VM itself */
					continue;
				}
				if (s->loop)
					nk_sl_loop_report(v, &src);
				uint8_t *h = nk_region_chunk(&v->reg, chunk);
				memset(h, 0, NK_DGRAM_HDR);
				memcpy(h, &src, sizeof(src));
				e.arg.addr = src;
				e.off = NK_DGRAM_HDR;
			}
		} else {
			/* FIN or error: the last entry of this stream; both count
			 * against the credit like data (the guest consumes them). */
			stash_put(v, chunk);
			e.op = n == 0 ? NK_OP_RX_FIN : NK_OP_RX_ERR;
			e.result = n == 0 ? 0 : (int32_t)n;
			s->rx_stop = true;
		}
		nk_sl_post(sl, &e);
		s->rx_out++;
	}
	return true;
}

/* ---- readiness ---- */

void nk_sl_sock_update(struct nk_sl *sl, struct nk_sl_sock *s)
{
	uint32_t ev = 0;
	struct nk_sl_vm *v = sl->vms[s->vm];

	/* Every change of rx_out is followed by this update (reading is
	 * armed from it), so the count of credit waiters stays exact. */
	note_credit_wait(sl, s, !s->closing && !s->rx_stop && s->rx_out >= NK_SOCK_RX_ENTRIES);
	if (!s->closing && !s->rx_stop && s->rx_out < NK_SOCK_RX_ENTRIES && v) {
		if (s->state == NK_SLS_LISTENING) {
			ev |= NK_EV_IN;
		} else if (can_read(s)) {
			if (v->nstash) {
				ev |= NK_EV_IN;
			} else {
				s->stash_wait = true;
				v->starved = true;
			}
		}
	}
	if (s->hin_want && !s->closing)
		ev |= NK_EV_IN; /* a session hello needs no credit */
	bool tx_work = s->qcount || s->pre_off < s->pre_len || (s->mig_out && !s->mig_shut);
	if (s->state == NK_SLS_CONNECTING || (tx_work && can_write(s)))
		ev |= NK_EV_OUT;
	uint32_t ev_tx = 0;
	if (s->h_tx >= 0) {
		/* Switched session: read the old leg, write the new one. */
		ev_tx = ev & NK_EV_OUT;
		ev &= NK_EV_IN;
		if (ev_tx != s->events_tx && sl->ops->set_events(sl->st, s->h_tx, s->id, ev_tx) == 0)
			s->events_tx = ev_tx;
	}
	if (ev != s->events) {
		int r = sl->ops->set_events(sl->st, s->h, s->id, ev);
		if (r < 0)
			nk_sl_log(sl, "socket %u: set_events: %s", s->id, strerror(-r));
		else
			s->events = ev;
	}
}

void nk_sl_vm_wake(struct nk_sl *sl, struct nk_sl_vm *v)
{
	if (!v->starved || v->nstash == 0)
		return;
	v->starved = false;
	for (uint32_t i = 0; i < sl->nsocks_cap; i++) {
		struct nk_sl_sock *s = sl->socks[i];
		if (s->state != NK_SLS_FREE && s->vm == v->index && s->stash_wait) {
			s->stash_wait = false;
			nk_sl_sock_update(sl, s);
		}
	}
}

/* ---- operations from the dispatcher ---- */

void nk_sl_sock_send(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	if (s->tx_err && s->qcount == 0) {
		send_done(sl, req, s->tx_err);
		return;
	}
	int r = q_push(s, req, NK_TXQ_SEND);
	if (r < 0) {
		send_done(sl, req, r);
		return;
	}
	if (s->tx_pending)
		return;
	/* At most one entry per NQE of a burst: NK_SL_TXP_MAX >= DOWN_BURST. */
	s->tx_pending = true;
	sl->txp[sl->ntxp++] = s->id;
}

/* Write what the last burst queued. Every other operation on a socket runs
 * tx_run first where order matters (shutdown and close queue behind the
 * SENDs or flush them), so deferring the write to the end of the burst
 * changes when bytes leave, never their order. */
void nk_sl_tx_flush(struct nk_sl *sl)
{
	for (uint32_t i = 0; i < sl->ntxp; i++) {
		struct nk_sl_sock *s = sl->socks[sl->txp[i]];
		if (!s->tx_pending)
			continue;
		s->tx_pending = false;
		if (s->state == NK_SLS_FREE)
			continue;
		tx_run(sl, s);
		nk_sl_sock_update(sl, s);
	}
	sl->ntxp = 0;
}

void nk_sl_sock_shutdown(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req)
{
	if (s->qcount == 0 && s->pre_off == s->pre_len) {
		if (req->arg.u32[0] != SHUT_RD)
			s->wr_shut = s->tx_fin_sent = true;
		nk_sl_complete(sl, req, sl->ops->shutdown(sl->st, s->h, (int)req->arg.u32[0]));
		return;
	}
	int r = q_push(s, req, NK_TXQ_SHUTDOWN);
	if (r < 0)
		nk_sl_complete(sl, req, r);
}

void nk_sl_sock_drop(struct nk_sl *sl, struct nk_sl_sock *s, bool post_closed)
{
	if (s->has_next) { /* a queued RESUME leg goes with its session */
		struct nk_sl_sock *x = sl->socks[s->next_leg];
		s->has_next = false;
		if (x->state != NK_SLS_FREE && x->internal)
			nk_sl_sock_drop(sl, x, false);
	}
	if (s->state == NK_SLS_LISTENING) {
		/* Accepted connections still waiting for their session hello
		 * point at this listener; its id may be reused. */
		for (uint32_t i = 0; i < sl->nsocks_cap; i++) {
			struct nk_sl_sock *c = sl->socks[i];
			if (c != s && c->state != NK_SLS_FREE && c->newconn_pending && c->listener == s->id) {
				c->newconn_pending = false;
				nk_sl_sock_drop(sl, c, false);
			}
		}
	}
	/* Unsent data being thrown away: reset, so the peer cannot mistake a
	 * truncated stream for a complete one. */
	bool abort = s->qcount > 0 || s->abort;
	if (post_closed && s->conn_pending)
		nk_sl_complete(sl, &s->conn_req, -ECONNABORTED);
	s->conn_pending = false;
	q_fail_all(sl, s, -ECONNABORTED, post_closed);
	if (s->h >= 0)
		sl->ops->close(sl->st, s->h, abort);
	if (s->h_tx >= 0)
		sl->ops->close(sl->st, s->h_tx, abort);
	s->h_tx = -1;
	if (post_closed && !s->internal) {
		struct nk_nqe c = { .op = NK_OP_CLOSED, .vm = s->vm, .sock = s->id,
				    .chunk = NK_NO_CHUNK };
		nk_sl_post(sl, &c);
	}
	if (s->closing)
		sl->nclosing--;
	sock_release(sl, s);
}

void nk_sl_sock_close(struct nk_sl *sl, struct nk_sl_sock *s)
{
	s->closing = true;
	sl->nclosing++;
	if (s->conn_pending) {
		nk_sl_complete(sl, &s->conn_req, -ECONNABORTED);
		s->conn_pending = false;
		q_fail_all(sl, s, -ECONNABORTED, true);
	}
	tx_run(sl, s);
	if (s->qcount == 0 || !can_write(s)) {
		nk_sl_sock_drop(sl, s, true);
		return;
	}
	/* Data accepted by send() is still delivered (close is asynchronous,
	 * as in the kernel), but not forever: the chunks belong to the guest. */
	s->close_deadline = nk_sl_now_ns() + NK_SL_CLOSE_LINGER_NS;
	nk_sl_sock_update(sl, s);
}

void nk_sl_sock_event(void *arg, uint32_t id, uint32_t events)
{
	struct nk_sl *sl = arg;
	if (id >= sl->nsocks_cap || sl->socks[id]->state == NK_SLS_FREE)
		return;
	struct nk_sl_sock *s = sl->socks[id];

	if (s->state == NK_SLS_CONNECTING) {
		int r = sl->ops->connect_result(sl->st, s->h);
		if (r == -EINPROGRESS)
			return;
		if (s->mig_in) { /* a new leg of a switched session */
			nk_sl_sess_connected(sl, s, r);
			return;
		}
		struct nk_nqe c = s->conn_req;
		s->conn_pending = false;
		s->state = r == 0 ? NK_SLS_CONNECTED : NK_SLS_OPEN;
		if (r == 0) {
			struct sockaddr_storage ss;
			socklen_t l;
			struct nk_addr to = c.arg.addr; /* where the guest connected */
			bool loop = nk_sl_loop_dest(sl->vms[s->vm], &to) || s->loop;
			if (sl->ops->getsockname(sl->st, s->h, &ss, &l) == 0)
				nk_sl_addr_from_sa(&c.arg.addr, &ss);
			if (loop)
				nk_sl_loop_report(sl->vms[s->vm], &c.arg.addr);
		} else if (s->stream) {
			s->tx_err = r;
		}
		nk_sl_complete(sl, &c, r);
	}
	if (s->qcount && (events & (NK_EV_OUT | NK_EV_ERR | NK_EV_HUP)))
		tx_run(sl, s);
	if ((events & (NK_EV_IN | NK_EV_ERR | NK_EV_HUP)) && !rx_pump(sl, s))
		return;
	if (s->state == NK_SLS_FREE)
		return;
	if (s->closing && s->qcount == 0) {
		nk_sl_sock_drop(sl, s, true);
		return;
	}
	nk_sl_sock_update(sl, s);
}

void nk_sl_check_closing(struct nk_sl *sl, uint64_t now)
{
	for (uint32_t i = 0; i < sl->nsocks_cap && sl->nclosing; i++) {
		struct nk_sl_sock *s = sl->socks[i];
		if (s->state != NK_SLS_FREE && s->closing && now >= s->close_deadline) {
			nk_sl_log(sl, "socket %u: peer did not take queued data within the close linger; resetting",
				  s->id);
			q_fail_all(sl, s, -ETIMEDOUT, true);
			/* q is empty now; make sure the close still resets, on
			 * both legs of a switched session. */
			sl->ops->close(sl->st, s->h, true);
			s->h = -1;
			if (s->h_tx >= 0)
				sl->ops->close(sl->st, s->h_tx, true);
			s->h_tx = -1;
			nk_sl_sock_drop(sl, s, true);
		}
	}
}

void nk_sl_drop_vm_socks(struct nk_sl *sl, uint16_t vm)
{
	for (uint32_t i = 0; i < sl->nsocks_cap; i++) {
		struct nk_sl_sock *s = sl->socks[i];
		if (s->state != NK_SLS_FREE && s->vm == vm)
			nk_sl_sock_drop(sl, s, false);
	}
}

void nk_sl_socks_fini(struct nk_sl *sl)
{
	for (uint32_t i = 0; i < sl->nsocks_cap; i++) {
		struct nk_sl_sock *s = sl->socks[i];
		if (s->state != NK_SLS_FREE)
			nk_sl_sock_drop(sl, s, false);
		free(s->q);
		free(s);
	}
	free(sl->socks);
	sl->socks = NULL;
	sl->nsocks_cap = 0;
}
