/* SPDX-License-Identifier: MIT */
/*
 * ce_switch.c - the switch: guest up rings -> NSM down rings, NSM up rings ->
 * guest down rings and socket rx rings.
 *
 * Every guest NQE is copied (nk_ring_read_at), checked statelessly
 * (nk_validate_guest_nqe), then against private state (socket held by the
 * channel, chunk owned by it). An NQE that needs room we do not have is left
 * in its ring, which stalls that channel only.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ce.h"
#include "nk_validate.h"

#define CE_BURST 64
#define CE_NSM_START_TIMEOUT_NS 5000000000ull

uint32_t ce_pend_alloc(struct ce *ce)
{
	uint32_t i;
	if (!nk_pool_get(&ce->pendfree, &i))
		return UINT32_MAX;
	ce->pend[i].used = true;
	ce->pend[i].counted = false;
	ce->pend[i].async = false;
	ce->pend[i].gen++;
	return i;
}

uint64_t ce_pend_cookie(struct ce *ce, uint32_t i)
{
	return ((uint64_t)ce->pend[i].gen << 32) | i;
}

void ce_guest_complete(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *nqe)
{
	(void)ce;
	struct ce_chan *ch = &vm->chan[c];
	if (!ch->used || ch->exiting)
		return; /* process gone: nobody to tell */
	/* Room is guaranteed: pending ops + TX chunks per channel < ring size.
	 * Staged; published by ce_ring_put or ce_flush_wakes (ce.h). */
	if (!ce_ring_put(&ch->down, nqe)) {
		ce_log("vm %s chan %u: down ring full, completion dropped (bug)", vm->name, c);
		return;
	}
	vm->nqes_out++;
	/* A returned TX chunk matters only to a guest waiting for send room,
	 * which sleeps in NK_WAKE_ANY mode (GuestLib, nk_gl_wait); an
	 * asynchronous setsockopt's completion to nobody. */
	if (nqe->op == NK_OP_SEND_DONE || (nqe->flags & NK_NQF_ASYNC))
		vm->lazy |= 1ull << c;
	else
		vm->wake |= 1ull << c;
}

static void complete_req(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *req,
			 int result)
{
	struct nk_nqe q = { .op = req->op, .flags = NK_NQF_COMPLETION | (req->flags & NK_NQF_ASYNC),
			    .sock = req->sock, .cookie = req->cookie, .result = result,
			    .chunk = NK_NO_CHUNK };
	if (req->op == NK_OP_SEND || req->op == NK_OP_GETSOCKOPT) {
		q.op = req->op == NK_OP_SEND ? NK_OP_SEND_DONE : req->op;
		q.chunk = req->chunk; /* never taken: hand it straight back */
	}
	ce_guest_complete(ce, vm, c, &q);
}

static void bad_nqe(struct ce_vm *vm, uint32_t c, const struct nk_nqe *n, const char *why)
{
	if (vm->bad_nqes++ < 16)
		ce_log("vm %s chan %u: dropped NQE op %u sock %u: %s", vm->name, c, n->op, n->sock, why);
}

/* Is the NSM able to take a request now? Starts it if it is down. -1 =
 * refuse the request (NSM failed to start recently), 0 = not yet, 1 = yes. */
static int nsm_ready(struct ce *ce, struct ce_nsm *n)
{
	if (n->state == CE_NSM_DOWN && ce_nsm_start(ce, n) == -EAGAIN)
		return -1;
	if (n->state == CE_NSM_STARTING && ce_now_ns() - n->start_ns > CE_NSM_START_TIMEOUT_NS) {
		ce_log("nsm %s: did not register within 5 s", n->name);
		n->retry_after_ns = ce_now_ns() + 1000000000ull;
		n->state = CE_NSM_DOWN;
		return -1;
	}
	return ce_nsm_has_room(n) ? 1 : 0;
}

static int fwd_ctl(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n,
		   struct ce_nsm *nsm, uint32_t s, uint32_t nsm_sock)
{
	struct ce_chan *ch = &vm->chan[c];
	if (ch->pending >= CE_CHAN_PENDING_MAX)
		return 0;
	uint32_t pi = ce_pend_alloc(ce);
	if (pi == UINT32_MAX)
		return 0;
	struct ce_pend *p = &ce->pend[pi];
	p->op = n->op;
	p->vm = (uint16_t)vm->idx;
	p->chan = (uint16_t)c;
	p->chan_gen = ch->gen;
	p->nsm = (int8_t)nsm->idx;
	p->sock = s;
	p->chunk = n->chunk;
	p->cookie = n->cookie;
	p->async = n->flags & NK_NQF_ASYNC;
	ch->pending++;
	p->counted = true;
	vm->pending++;
	struct nk_nqe q = *n;
	q.flags = 0;
	q.vm = (uint16_t)vm->idx;
	q.sock = nsm_sock;
	q.cookie = ce_pend_cookie(ce, pi);
	ce_nsm_send(ce, nsm, &q);
	return 1;
}

static int guest_socket(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n)
{
	struct ce_nsm *nsm = &ce->nsms[vm->nsm];
	int r = nsm_ready(ce, nsm);
	if (r < 0) {
		complete_req(ce, vm, c, n, -ENETDOWN);
		return 1;
	}
	if (r == 0 || vm->chan[c].pending >= CE_CHAN_PENDING_MAX || !ce_iso_admit(ce, vm, nsm, true, 0))
		return 0;
	uint32_t s;
	if (ce_sock_alloc(vm, 1ull << c, (int)nsm->idx, &s) < 0) {
		complete_req(ce, vm, c, n, -EMFILE);
		return 1;
	}
	vm->socks[s].state = CE_SK_OPENING;
	vm->socks[s].stream = n->arg.sock.type == SOCK_STREAM;
	if (!fwd_ctl(ce, vm, c, n, nsm, s, NK_NO_SOCK)) {
		ce_sock_free(ce, vm, s);
		return 0;
	}
	ce_iso_charge(ce, vm, nsm, true, 0);
	return 1;
}

static bool held(struct ce_vm *vm, uint32_t s, uint32_t c)
{
	struct ce_sock *sk = &vm->socks[s];
	return sk->state != CE_SK_FREE && sk->state != CE_SK_OPENING && (sk->holders >> c & 1);
}

static int guest_ctl_op(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n)
{
	struct ce_sock *sk = &vm->socks[n->sock];
	if (!held(vm, n->sock, c) || sk->state == CE_SK_CLOSING) {
		complete_req(ce, vm, c, n, -EBADF);
		return 1;
	}
	if (sk->state == CE_SK_DEAD) {
		complete_req(ce, vm, c, n, -ECONNRESET);
		return 1;
	}
	struct ce_nsm *nsm = &ce->nsms[sk->nsm];
	if (!ce_nsm_has_room(nsm) || sk->mig == CE_MIG_OPENING)
		return 0; /* a switch is opening the new leg: wait for it */
	if (!ce_iso_admit(ce, vm, nsm, true, 0))
		return 0;
	if (n->op == NK_OP_GETSOCKOPT && n->chunk != NK_NO_CHUNK) {
		if (vm->ck_state[n->chunk] != CE_CK_GUEST) {
			bad_nqe(vm, c, n, "getsockopt chunk is not the guest's");
			return 1;
		}
	}
	struct nk_nqe m = *n;
	if (n->op == NK_OP_CONNECT) {
		/* off/len carry the session id towards the NSM (0 = none). */
		sk->session = sk->stream ? ce_session_for(ce, &n->arg.addr) : 0;
		m.off = (uint32_t)sk->session;
		m.len = (uint32_t)(sk->session >> 32);
	}
	if (!fwd_ctl(ce, vm, c, &m, nsm, n->sock, sk->nsm_sock))
		return 0;
	ce_iso_charge(ce, vm, nsm, true, 0);
	if (n->op == NK_OP_GETSOCKOPT && n->chunk != NK_NO_CHUNK) {
		vm->ck_state[n->chunk] = CE_CK_HOST;
		vm->ck_nsm[n->chunk] = (int8_t)nsm->idx;
		vm->chan[c].tx_inflight++;
	}
	if (n->op == NK_OP_SHUTDOWN && n->arg.u32[0] != SHUT_RD)
		sk->wr_shut = true; /* a half-closed stream drains where it is */
	if (n->op == NK_OP_CONNECT) {
		sk->connect_to = n->arg.addr;
		__atomic_store_n(&nk_region_slot(&vm->reg, n->sock)->state, NK_SS_CONNECTING,
				 __ATOMIC_RELEASE);
	}
	return 1;
}

static int guest_send(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n)
{
	struct ce_sock *sk = &vm->socks[n->sock];
	if (vm->ck_state[n->chunk] != CE_CK_GUEST) {
		bad_nqe(vm, c, n, "send of a chunk already in flight");
		return 1;
	}
	if (!held(vm, n->sock, c) || sk->state == CE_SK_CLOSING) {
		complete_req(ce, vm, c, n, -EBADF);
		return 1;
	}
	if (sk->state == CE_SK_DEAD) {
		complete_req(ce, vm, c, n, -EPIPE);
		return 1;
	}
	struct ce_nsm *nsm = &ce->nsms[sk->nsm];
	if (!ce_nsm_has_room(nsm) || sk->mig == CE_MIG_OPENING)
		return 0; /* no byte past the switch offset may reach the old NSM */
	if (!ce_iso_admit(ce, vm, nsm, false, n->len))
		return 0;
	ce_iso_charge(ce, vm, nsm, false, n->len);
	sk->tx_bytes += n->len;
	vm->tx_bytes += n->len;
	vm->ck_state[n->chunk] = CE_CK_HOST;
	vm->ck_nsm[n->chunk] = (int8_t)nsm->idx;
	vm->chan[c].tx_inflight++;
	struct nk_nqe q = *n;
	q.flags = 0;
	q.vm = (uint16_t)vm->idx;
	q.sock = sk->nsm_sock;
	ce_nsm_send(ce, nsm, &q);
	return 1;
}

/* Tell the socket's NSM one rx entry is free again. */
static void credit(struct ce *ce, struct ce_vm *vm, uint32_t s)
{
	struct ce_sock *sk = &vm->socks[s];
	if (sk->state != CE_SK_OPEN || sk->nsm < 0)
		return;
	/* While the old leg of a switch drains, the ring's entries are its. */
	bool old = ce_mig_has_old(sk);
	struct ce_nsm *nsm = &ce->nsms[old ? sk->old_nsm : sk->nsm];
	struct nk_nqe q = { .op = NK_OP_RX_CREDIT, .vm = (uint16_t)vm->idx,
			    .sock = old ? sk->old_sock : sk->nsm_sock, .chunk = NK_NO_CHUNK, .len = 1 };
	ce_nsm_send(ce, nsm, &q);
}

static int guest_rx_done(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n)
{
	if (!held(vm, n->sock, c)) {
		bad_nqe(vm, c, n, "rx_done on a socket the channel does not hold");
		return 1;
	}
	if (vm->socks[n->sock].rx_pending)
		vm->socks[n->sock].rx_pending--;
	if (n->flags & NK_NQF_ACCEPT) {
		struct ce_sock *a = &vm->socks[n->arg.u32[0]];
		if (a->state == CE_SK_FREE || !a->unclaimed || a->parent != n->sock) {
			bad_nqe(vm, c, n, "accept claim of a socket not pending on this listener");
			return 1;
		}
		a->unclaimed = false;
		a->holders = 1ull << c;
	} else if (n->chunk != NK_NO_CHUNK) {
		if (vm->ck_state[n->chunk] != CE_CK_AT_GUEST || vm->ck_sock[n->chunk] != n->sock) {
			bad_nqe(vm, c, n, "returned chunk is not at this socket");
			return 1;
		}
		vm->ck_state[n->chunk] = CE_CK_FREE;
		nk_pool_put(&vm->rxfree, n->chunk);
	}
	credit(ce, vm, n->sock);
	struct ce_sock *sk = &vm->socks[n->sock];
	if (sk->nsm >= 0)
		ce_nsm_grant(ce, &ce->nsms[sk->nsm], vm);
	return 1;
}

static int guest_nqe(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *n)
{
	switch (n->op) {
	case NK_OP_SOCKET:
		return guest_socket(ce, vm, c, n);
	case NK_OP_SEND:
		return guest_send(ce, vm, c, n);
	case NK_OP_RX_DONE:
		return guest_rx_done(ce, vm, c, n);
	case NK_OP_CLOSE:
		if (!held(vm, n->sock, c))
			bad_nqe(vm, c, n, "close of a socket the channel does not hold");
		else
			ce_sock_drop_holder(ce, vm, n->sock, c);
		return 1;
	default:
		return guest_ctl_op(ce, vm, c, n);
	}
}

static int chan_round(struct ce *ce, struct ce_vm *vm, uint32_t c)
{
	struct ce_chan *ch = &vm->chan[c];
	struct nk_nqe n;
	const char *why;
	uint32_t k = 0, avail = nk_ring_count(&ch->up);

	/* One look at the producer's index and one release of the slots per
	 * burst: per NQE, both were cache-line round trips to the guest's core. */
	if (avail > CE_BURST)
		avail = CE_BURST;
	while (k < avail) {
		nk_ring_read_at(&ch->up, k, &n);
		if (nk_validate_guest_nqe(&vm->reg.g, c, &n, &why) < 0) {
			bad_nqe(vm, c, &n, why);
			/* A process that keeps writing garbage would make us spend
			 * CPU on it forever: cut it off, as if it had died. */
			if (++ch->bad > CE_CHAN_BAD_MAX) {
				ce_log("vm %s chan %u: pid %d posted %u invalid NQEs; disconnecting it",
				       vm->name, c, (int)ch->pid, ch->bad);
				ce_ctl_close_conn(ce, ch->ctl_fd);
				ce_chan_finish(ce, vm, c); /* drop the rest unread */
				return (int)k;
			}
		} else if (!guest_nqe(ce, vm, c, &n)) {
			ce->stalled = true;
			break; /* no room downstream: leave it for a later round */
		}
		vm->nqes_in++;
		k++;
	}
	if (k)
		nk_ring_skip(&ch->up, k);
	if (ch->exiting && nk_ring_count(&ch->up) == 0)
		ce_chan_finish(ce, vm, c);
	return (int)k;
}

/* ---- NSM -> CE ---- */

static void pend_finish(struct ce *ce, uint32_t pi, const struct nk_nqe *q)
{
	struct ce_pend *p = &ce->pend[pi];
	struct ce_vm *vm = &ce->vms[p->vm];
	struct ce_chan *ch = &vm->chan[p->chan == CE_PEND_NO_CHAN ? 0 : p->chan];
	struct ce_sock *sk = &vm->socks[p->sock];
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, p->sock);
	struct nk_nqe out = { .op = p->op, .flags = NK_NQF_COMPLETION | (p->async ? NK_NQF_ASYNC : 0),
			      .sock = p->sock, .cookie = p->cookie, .result = q->result,
			      .chunk = NK_NO_CHUNK };
	bool tell = ch->used && ch->gen == p->chan_gen;

	if (p->op == NK_OP_MIGRATE) {
		struct nk_nqe r = *q;
		/* The slot may have been freed and reused since: not ours. */
		if (slot->gen != p->sock_gen && r.result >= 0) {
			struct nk_nqe cl = { .op = NK_OP_CLOSE, .vm = p->vm, .sock = (uint32_t)r.result,
					     .chunk = NK_NO_CHUNK };
			ce_nsm_send(ce, &ce->nsms[p->nsm], &cl);
			r.result = -ESTALE;
		}
		p->used = false;
		nk_pool_put(&ce->pendfree, pi);
		if (slot->gen == p->sock_gen)
			ce_mig_done(ce, vm, out.sock, &r, &ce->nsms[p->nsm]);
		return;
	}
	out.arg = q->arg;
	switch (p->op) {
	case NK_OP_SOCKET:
		if (q->result >= 0 && ce_nsm_map_set(&ce->nsms[p->nsm], (uint32_t)q->result,
						      p->vm, p->sock) == 0) {
			sk->state = CE_SK_OPEN;
			sk->nsm_sock = (uint32_t)q->result;
			out.result = (int32_t)p->sock;
			if (!tell) /* the process died meanwhile */
				ce_sock_release(ce, vm, p->sock);
		} else {
			if (q->result >= 0)
				out.result = -EPROTO;
			sk->state = CE_SK_DEAD; /* let ce_sock_free unmap nothing */
			sk->nsm = -1;
			ce_sock_free(ce, vm, p->sock);
		}
		break;
	case NK_OP_BIND:
		if (q->result == 0) {
			slot->local = q->arg.addr;
			__atomic_store_n(&slot->state, NK_SS_BOUND, __ATOMIC_RELEASE);
		}
		break;
	case NK_OP_LISTEN:
		if (q->result == 0)
			__atomic_store_n(&slot->state, NK_SS_LISTENING, __ATOMIC_RELEASE);
		break;
	case NK_OP_CONNECT:
		if (q->result == 0) {
			slot->local = q->arg.addr;
			slot->peer = sk->connect_to;
			sk->peer = sk->connect_to;
			sk->connected = true;
			__atomic_store_n(&slot->state, NK_SS_CONNECTED, __ATOMIC_RELEASE);
			ce_wake_holders(vm, p->sock);
		} else if (sk->state != CE_SK_FREE) {
			__atomic_store_n(&slot->state, NK_SS_OPEN, __ATOMIC_RELEASE);
			ce_sock_set_error(ce, vm, p->sock, -q->result, false);
		}
		break;
	case NK_OP_GETSOCKOPT:
		if (p->chunk != NK_NO_CHUNK && vm->ck_state[p->chunk] == CE_CK_HOST) {
			vm->ck_state[p->chunk] = CE_CK_GUEST;
			ch->tx_inflight--;
			out.chunk = p->chunk;
		}
		break;
	default:
		break;
	}
	if (tell)
		ce_guest_complete(ce, vm, p->chan, &out);
	ch->pending--;
	if (p->counted && vm->pending)
		vm->pending--;
	p->counted = false;
	ce_chan_maybe_free(ce, vm, p->chan);
	p->used = false;
	nk_pool_put(&ce->pendfree, pi);
}

void ce_pend_fail_nsm(struct ce *ce, struct ce_nsm *n, int err)
{
	for (uint32_t i = 0; i < CE_MAX_PEND; i++) {
		if (!ce->pend[i].used || ce->pend[i].nsm != (int8_t)n->idx)
			continue;
		struct nk_nqe q = { .result = -err };
		pend_finish(ce, i, &q);
	}
}

static struct ce_vm *map_sock(struct ce *ce, struct ce_nsm *n, const struct nk_nqe *q, uint32_t *s)
{
	struct ce_nsm_map *m = ce_nsm_map_get(n, q->sock);
	if (!m || m->vm != q->vm)
		return NULL;
	*s = m->sock;
	return &ce->vms[m->vm];
}

static void nsm_send_done(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, const struct nk_nqe *q)
{
	if (vm->ck_state[q->chunk] != CE_CK_HOST || vm->ck_nsm[q->chunk] != (int8_t)n->idx) {
		ce_log("nsm %s: SEND_DONE for chunk %u it does not hold", n->name, q->chunk);
		return;
	}
	uint32_t c = q->chunk / vm->reg.g.tx_per_chan, s = 0;
	struct nk_nqe out = { .op = NK_OP_SEND_DONE, .flags = NK_NQF_COMPLETION, .sock = NK_NO_SOCK,
			      .chunk = q->chunk, .result = q->result };
	vm->ck_state[q->chunk] = CE_CK_GUEST;
	vm->chan[c].tx_inflight--;
	if (q->result > 0)
		ce_nsm_first_byte(ce, n, vm);
	if (map_sock(ce, n, q, &s) == vm) {
		struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
		out.sock = s;
		if (q->result < 0)
			ce_sock_set_error(ce, vm, s, -q->result, false);
		__atomic_store_n(&slot->tx_done, slot->tx_done + 1, __ATOMIC_RELEASE);
	}
	ce_guest_complete(ce, vm, c, &out);
	ce_chan_maybe_free(ce, vm, c);
}

static void nsm_rx(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, const struct nk_nqe *q)
{
	uint32_t s = 0;
	bool ok = false;
	bool chunk = q->op == NK_OP_RX_DATA;

	if (chunk) {
		if (vm->ck_state[q->chunk] != CE_CK_GRANTED || vm->ck_nsm[q->chunk] != (int8_t)n->idx) {
			ce_log("nsm %s: RX_DATA with chunk %u not granted to it", n->name, q->chunk);
			return;
		}
		n->granted[vm->idx]--;
		ce_nsm_first_byte(ce, n, vm);
	}
	if (map_sock(ce, n, q, &s) == vm && vm->socks[s].state == CE_SK_OPEN) {
		struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
		struct ce_sock *sk = &vm->socks[s];
		bool primary = sk->nsm == (int8_t)n->idx && sk->nsm_sock == q->sock;
		bool old_leg = ce_mig_old_leg(vm, s, n, q->sock);
		if (!primary && !old_leg) {
			goto drop; /* a leg that no longer carries this socket */
		}
		if (!chunk && ((sk->mig == CE_MIG_OPENING && primary) ||
			       (sk->mig == CE_MIG_LINKING && old_leg))) {
			/* The peer ends the old leg as soon as it linked the new
			 * one, which can be before our MIGRATE completes: hold the
			 * end until we know whether the move worked. */
			sk->end_held = true;
			sk->end_err = q->op == NK_OP_RX_FIN ? 0 : (q->result < 0 ? -q->result : ECONNRESET);
			return;
		}
		if (!chunk && ce_mig_old_leg(vm, s, n, q->sock)) {
			/* The end of a switched connection's old leg, not of the
			 * stream: the new leg carries on. */
			ce_mig_old_end(ce, vm, s, q->op == NK_OP_RX_FIN ? 0 :
					       (q->result < 0 ? -q->result : ECONNRESET), false);
			return;
		}
		if (chunk) {
			ok = ce_rx_push(vm, s, NK_RX_DATA, q->chunk, q->off, q->len);
			if (ok) {
				vm->ck_state[q->chunk] = CE_CK_AT_GUEST;
				vm->ck_sock[q->chunk] = s;
				vm->socks[s].rx_bytes += q->len;
				vm->rx_bytes += q->len;
			}
		} else if (q->op == NK_OP_RX_FIN) {
			ok = ce_rx_push(vm, s, NK_RX_FIN, 0, 0, 0);
			if (ok)
				__atomic_store_n(&slot->flags, slot->flags | NK_SF_RX_FIN, __ATOMIC_RELEASE);
		} else {
			int e = q->result < 0 ? -q->result : ECONNRESET;
			ok = ce_rx_push(vm, s, NK_RX_ERR, (uint32_t)e, 0, 0);
			ce_sock_set_error(ce, vm, s, e, true);
		}
	}
	if (!ok && chunk && vm->socks[s].state == CE_SK_OPEN && map_sock(ce, n, q, &s) == vm) {
		/* The ring was full: the NSM overran its credit. A hole in a
		 * byte stream must be an error, never silence. */
		ce_log("vm %s sock %u: rx ring full, data dropped; failing the socket", vm->name, s);
		ce_sock_set_error(ce, vm, s, EPROTO, true);
	}
drop:
	if (!ok) {
		/* Socket closing or ring full: drop, and keep the NSM's credit true. */
		if (chunk) {
			vm->ck_state[q->chunk] = CE_CK_FREE;
			nk_pool_put(&vm->rxfree, q->chunk);
		}
		struct nk_nqe cr = { .op = NK_OP_RX_CREDIT, .vm = q->vm, .sock = q->sock,
				     .chunk = NK_NO_CHUNK, .len = 1 };
		ce_nsm_send(ce, n, &cr);
	}
	if (chunk)
		ce_nsm_grant(ce, n, vm);
}

static void nsm_newconn(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, const struct nk_nqe *q)
{
	uint32_t l = 0, s = 0;
	struct ce_sock *ls;

	if (map_sock(ce, n, q, &l) != vm || (ls = &vm->socks[l])->state != CE_SK_OPEN ||
	    ce_sock_alloc(vm, ls->holders, (int)n->idx, &s) < 0)
		goto refuse;
	if (ce_nsm_map_set(n, q->arg.conn.id, q->vm, s) < 0) {
		ce_sock_free(ce, vm, s);
		goto refuse;
	}
	struct ce_sock *sk = &vm->socks[s];
	struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
	sk->state = CE_SK_OPEN;
	sk->nsm_sock = q->arg.conn.id;
	sk->stream = true;
	sk->session = q->off | (uint64_t)q->len << 32;
	sk->unclaimed = true;
	sk->parent = l;
	slot->peer = q->arg.conn.peer;
	sk->peer = q->arg.conn.peer;
	sk->connected = true;
	slot->local = nk_region_slot(&vm->reg, l)->local;
	__atomic_store_n(&slot->state, NK_SS_CONNECTED, __ATOMIC_RELEASE);
	if (ce_rx_push(vm, l, NK_RX_ACCEPT, s, 0, 0))
		return;
	sk->holders = 0;
	sk->unclaimed = false;
	ce_sock_release(ce, vm, s); /* the listener's ring is full: close it again */
	goto credit;
refuse:;
	struct nk_nqe cl = { .op = NK_OP_CLOSE, .vm = q->vm, .sock = q->arg.conn.id,
			     .chunk = NK_NO_CHUNK };
	ce_nsm_send(ce, n, &cl);
credit:;
	struct nk_nqe cr = { .op = NK_OP_RX_CREDIT, .vm = q->vm, .sock = q->sock,
			     .chunk = NK_NO_CHUNK, .len = 1 };
	ce_nsm_send(ce, n, &cr);
}

static void nsm_closed(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, const struct nk_nqe *q)
{
	uint32_t s = 0;
	if (map_sock(ce, n, q, &s) != vm)
		return;
	struct ce_sock *sk = &vm->socks[s];
	if (sk->nsm != (int8_t)n->idx || sk->nsm_sock != q->sock) {
		/* The old leg of a switched connection is gone. */
		if (ce_mig_old_leg(vm, s, n, q->sock))
			ce_mig_old_end(ce, vm, s, ECONNRESET, true); /* its id may be reused now */
		ce_nsm_map_get(n, q->sock)->used = false;
		ce_nsm_maybe_retire(ce, n);
		return;
	}
	if (sk->state == CE_SK_CLOSING) {
		ce_sock_free(ce, vm, s);
		ce_nsm_maybe_retire(ce, n);
		return;
	}
	/* The NSM dropped it on its own. */
	ce_nsm_map_get(n, q->sock)->used = false;
	sk->state = CE_SK_DEAD;
	sk->nsm = -1;
	ce_sock_set_error(ce, vm, s, ECONNRESET, true);
}

static void nsm_nqe(struct ce *ce, struct ce_nsm *n, const struct nk_nqe *q)
{
	struct ce_vm *vm = q->vm < ce->nvms && ce->vms[q->vm].used ? &ce->vms[q->vm] : NULL;
	const char *why;

	if (nk_validate_nsm_nqe(vm ? &vm->reg.g : NULL, q, &why) < 0) {
		ce_log("nsm %s: dropped NQE op %u: %s", n->name, q->op, why);
		return;
	}
	if ((q->flags & NK_NQF_COMPLETION) && q->op != NK_OP_SEND_DONE) {
		uint32_t pi = (uint32_t)q->cookie;
		if (pi >= CE_MAX_PEND || !ce->pend[pi].used || ce->pend[pi].gen != q->cookie >> 32 ||
		    ce->pend[pi].nsm != (int8_t)n->idx || ce->pend[pi].op != q->op) {
			ce_log("nsm %s: completion with unknown cookie %#llx", n->name,
			       (unsigned long long)q->cookie);
			return;
		}
		pend_finish(ce, pi, q);
		return;
	}
	switch (q->op) {
	case NK_OP_SEND_DONE:
		nsm_send_done(ce, n, vm, q);
		break;
	case NK_OP_RX_DATA:
	case NK_OP_RX_FIN:
	case NK_OP_RX_ERR:
		nsm_rx(ce, n, vm, q);
		break;
	case NK_OP_NEWCONN:
		nsm_newconn(ce, n, vm, q);
		break;
	case NK_OP_CLOSED:
		nsm_closed(ce, n, vm, q);
		break;
	case NK_OP_MIGRATE_ACK: {
		uint32_t s = 0;
		if (map_sock(ce, n, q, &s) == vm)
			ce_mig_ack(ce, n, vm, s, q);
		break;
	}
	default:
		break;
	}
}

static int nsm_round(struct ce *ce, struct ce_nsm *n)
{
	struct nk_nqe q[CE_BURST];
	ce_nsm_flush(ce, n);
	uint32_t k = nk_ring_dequeue_burst(&n->up, q, CE_BURST);
	for (uint32_t i = 0; i < k && n->state == CE_NSM_UP; i++)
		nsm_nqe(ce, n, &q[i]);
	return (int)k;
}

void ce_flush_wakes(struct ce *ce)
{
	uint64_t one = 1;
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		uint64_t m = (vm->wake | vm->lazy) & vm->live, urgent = vm->wake;
		vm->wake = vm->lazy = 0;
		while (m) {
			uint32_t c = ce_mask_pop(&m);
			struct ce_chan *ch = &vm->chan[c];
			nk_ring_publish(&ch->down);
			if (ch->down_efd >= 0 &&
			    nk_ring_wants_wakeup(&ch->down, !(urgent >> c & 1)) &&
			    write(ch->down_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
				ce_log("vm %s chan %u: doorbell: %s", vm->name, c, strerror(errno));
		}
	}
	for (uint32_t i = 0; i < ce->nnsms; i++) {
		struct ce_nsm *n = &ce->nsms[i];
		if (!n->wake && !n->lazy)
			continue;
		bool lazy_only = !n->wake;
		n->wake = n->lazy = false;
		nk_ring_publish(&n->down);
		if (n->state == CE_NSM_UP && nk_ring_wants_wakeup(&n->down, lazy_only) &&
		    write(n->down_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			ce_log("nsm %s: doorbell: %s", n->name, strerror(errno));
	}
}

int ce_switch_round(struct ce *ce)
{
	int work = 0;
	ce->stalled = false;
	for (uint32_t i = 0; i < ce->nnsms; i++)
		if (ce->nsms[i].state == CE_NSM_UP)
			work += nsm_round(ce, &ce->nsms[i]);
	/* What the NSMs sent goes out before the guests' turn, not a whole
	 * pass over the VMs later (bench_ce, 1 VM, W = 1: RTT 3.1-3.4 -> 2.5-2.7
	 * us; 2.2 when every NQE is published at once, 2.3-3.1 before staging). */
	if (work)
		ce_flush_wakes(ce);
	/* Passes over the VMs, each a DRR round for VMs of isolated NSMs
	 * (ce_iso.c); without isolation the first pass does everything. The
	 * start rotates so no VM is always first to the NSM rings' room. */
	uint32_t first = ce_iso_begin(ce);
	for (int pass = 0; pass < ce_iso_passes(); pass++) {
		for (uint32_t k = 0; k < ce->nvms; k++) {
			struct ce_vm *vm = &ce->vms[(first + k) % ce->nvms];
			if (!pass && vm->mig_scan)
				ce_mig_scan(ce, vm);
			for (uint64_t m = vm->live; m;) {
				uint32_t c = ce_mask_pop(&m);
				if (vm->chan[c].used) /* a round before may have ended it */
					work += chan_round(ce, vm, c);
			}
		}
		if (!ce_iso_next_round(ce))
			break;
	}
	ce_flush_wakes(ce);
	return work;
}
