/* SPDX-License-Identifier: MIT */
/*
 * ce_mig.c - moving session connections to a VM's new NSM (live switching).
 *
 * A connection whose peer is NetKernel-managed (--nk-peers) carries a
 * session id, given by the CoreEngine at CONNECT or learnt from NEWCONN.
 * After `nkctl switch`, each such connection of the VM is moved:
 *
 *   OPENING   MIGRATE sent to the new NSM with the session and the bytes
 *             already handed to the old one. The guest's SENDs and requests
 *             on that socket wait in its ring (a few RTTs at most), so the
 *             old NSM gets no byte past that offset.
 *   DRAINING  The new leg is up (the peer linked it and told its offset):
 *             requests and SENDs go to the new NSM; MIGRATE_OUT tells the old
 *             one to write what it holds and end; its received bytes still
 *             reach the guest and its RX_FIN ends the old leg. Then the new
 *             leg gets the receive credit the ring has left (the "GO").
 *
 * The protocol between the ServiceLibs is in nsm/nk_sl_sess.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ce.h"

/* A fresh session id when dst is NetKernel-managed, else 0. */
uint64_t ce_session_for(struct ce *ce, const struct nk_addr *dst)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *ip;
	if (dst->family == AF_INET)
		ip = dst->addr;
	else if (dst->family == AF_INET6 && !memcmp(dst->addr, mapped, 12))
		ip = dst->addr + 12;
	else
		return 0;
	if (!nk_prefixes_match(&ce->peers, ip))
		return 0;
	uint64_t s = 0;
	while (s == 0)
		if (getrandom(&s, sizeof(s), 0) != sizeof(s))
			s = ce_now_ns() * 0x9e3779b97f4a7c15ull;
	return s;
}

static void send_close(struct ce *ce, struct ce_nsm *n, uint16_t vm, uint32_t nsm_sock)
{
	struct nk_nqe q = { .op = NK_OP_CLOSE, .vm = vm, .sock = nsm_sock, .chunk = NK_NO_CHUNK };
	ce_nsm_send(ce, n, &q);
}

/* Start moving every session socket of the VM that is not on its NSM. */
void ce_mig_scan(struct ce *ce, struct ce_vm *vm)
{
	struct ce_nsm *to = &ce->nsms[vm->nsm];
	vm->mig_scan = false;
	for (uint32_t s = 0; s < vm->reg.g.nsocks; s++) {
		struct ce_sock *sk = &vm->socks[s];
		if (sk->state != CE_SK_OPEN || !sk->stream || !sk->session || sk->mig_failed ||
		    sk->nsm == (int8_t)vm->nsm || sk->unclaimed)
			continue;
		/* A connection already ending (either way) drains where it is.
		 * Private state only: the slot is guest-writable. */
		if (!sk->connected || sk->fin_seen || sk->wr_shut)
			continue;
		if (sk->mig)
			continue; /* ce_mig_old_end rescans when this move is done */
		if (!ce_nsm_has_room(to) || !ce_nsm_has_room(&ce->nsms[sk->nsm])) {
			vm->mig_scan = true; /* cold NSM still starting, or a full ring */
			continue;
		}
		uint32_t pi = ce_pend_alloc(ce);
		if (pi == UINT32_MAX) {
			vm->mig_scan = true;
			continue;
		}
		struct ce_pend *p = &ce->pend[pi];
		p->op = NK_OP_MIGRATE;
		p->vm = (uint16_t)vm->idx;
		p->chan = CE_PEND_NO_CHAN;
		p->nsm = (int8_t)to->idx;
		p->sock = s;
		p->chunk = NK_NO_CHUNK;
		p->cookie = 0;
		p->sock_gen = nk_region_slot(&vm->reg, s)->gen;
		struct nk_nqe q = { .op = NK_OP_MIGRATE, .vm = (uint16_t)vm->idx, .sock = NK_NO_SOCK,
				    .cookie = ce_pend_cookie(ce, pi), .chunk = NK_NO_CHUNK,
				    .off = (uint32_t)sk->session, .len = (uint32_t)(sk->session >> 32) };
		q.arg.mig.family = sk->peer.family;
		q.arg.mig.port = htons(NK_SESS_PORT);
		memcpy(q.arg.mig.ip, sk->peer.addr, 16);
		q.arg.mig.offset = sk->tx_bytes;
		ce_nsm_send(ce, to, &q);
		sk->mig = CE_MIG_OPENING;
	}
}

/* MIGRATE completed (or failed) on the new NSM n. */
void ce_mig_done(struct ce *ce, struct ce_vm *vm, uint32_t s, const struct nk_nqe *q, struct ce_nsm *n)
{
	struct ce_sock *sk = &vm->socks[s];
	bool ok = q->result >= 0 && sk->state == CE_SK_OPEN && sk->mig == CE_MIG_OPENING &&
		  n->state == CE_NSM_UP && ce_nsm_map_set(n, (uint32_t)q->result, (uint16_t)vm->idx, s) == 0;
	if (!ok) {
		if (q->result >= 0 && n->state == CE_NSM_UP)
			send_close(ce, n, (uint16_t)vm->idx, (uint32_t)q->result);
		if (sk->mig == CE_MIG_OPENING) {
			/* The old leg was never told to end: the connection just
			 * stays where it is, and an end seen meanwhile was real. */
			sk->mig = CE_MIG_NONE;
			sk->mig_failed = true;
			if (sk->end_held && sk->state == CE_SK_OPEN) {
				sk->end_held = false;
				if (sk->end_err) {
					ce_rx_push(vm, s, NK_RX_ERR, (uint32_t)sk->end_err, 0, 0);
					ce_sock_set_error(ce, vm, s, sk->end_err, true);
				} else if (ce_rx_push(vm, s, NK_RX_FIN, 0, 0, 0)) {
					struct nk_sock_slot *slot = nk_region_slot(&vm->reg, s);
					__atomic_store_n(&slot->flags, slot->flags | NK_SF_RX_FIN, __ATOMIC_RELEASE);
				}
			}
			ce_log("vm %s sock %u: moving to NSM %s failed (%s); it stays on NSM %s",
			       vm->name, s, n->name, strerror(q->result < 0 ? -q->result : EPROTO),
			       sk->nsm >= 0 ? ce->nsms[sk->nsm].name : "-");
		}
		return;
	}
	sk->old_nsm = sk->nsm;
	sk->old_sock = sk->nsm_sock;
	sk->nsm = (int8_t)n->idx;
	sk->nsm_sock = (uint32_t)q->result;
	sk->mig = CE_MIG_LINKING;
	ce_wake_holders(vm, s); /* SENDs held in the guest ring may go now */
}

/* The peer linked the new leg (or the leg failed). */
void ce_mig_ack(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, uint32_t s, const struct nk_nqe *q)
{
	struct ce_sock *sk = &vm->socks[s];
	if (sk->mig != CE_MIG_LINKING || sk->nsm != (int8_t)n->idx || sk->nsm_sock != q->sock)
		return;
	if (q->result < 0) {
		/* Bytes already handed to the new leg cannot go back: the
		 * connection is broken, and says so. */
		ce_log("vm %s sock %u: new leg on NSM %s failed: %s", vm->name, s, n->name,
		       strerror(-q->result));
		sk->mig = CE_MIG_DRAINING;
		ce_mig_old_end(ce, vm, s, ECONNRESET, false);
		return;
	}
	sk->mig = CE_MIG_DRAINING;
	sk->mig_rx_off = q->arg.mig.offset;
	if (q->cookie)
		ce_nsm_first_write(ce, n, vm, q->cookie);
	/* Released meanwhile: the old leg just flushes and closes (the peer
	 * has linked, so its FIN is the old leg's end there). */
	struct nk_nqe out = { .op = sk->close_owed ? NK_OP_CLOSE : NK_OP_MIGRATE_OUT,
			      .vm = (uint16_t)vm->idx, .sock = sk->old_sock, .chunk = NK_NO_CHUNK };
	sk->close_owed = false;
	ce_nsm_send(ce, &ce->nsms[sk->old_nsm], &out);
	vm->migrations++;
	if (sk->end_held && sk->state == CE_SK_OPEN) {
		sk->end_held = false;
		ce_mig_old_end(ce, vm, s, sk->end_err, false);
	}
}

bool ce_mig_has_old(const struct ce_sock *sk)
{
	return sk->mig == CE_MIG_LINKING || sk->mig == CE_MIG_DRAINING;
}

bool ce_mig_old_leg(struct ce_vm *vm, uint32_t s, const struct ce_nsm *n, uint32_t nsm_sock)
{
	const struct ce_sock *sk = &vm->socks[s];
	return ce_mig_has_old(sk) && sk->old_nsm == (int8_t)n->idx && sk->old_sock == nsm_sock;
}

/* The old leg ended (its FIN: err = 0; or an error). leg_gone: the old NSM
 * already released that socket id (CLOSED, or the NSM died): send it
 * nothing, the id may belong to another connection by now. */
void ce_mig_old_end(struct ce *ce, struct ce_vm *vm, uint32_t s, int err, bool leg_gone)
{
	struct ce_sock *sk = &vm->socks[s];
	struct ce_nsm *old = &ce->nsms[sk->old_nsm];

	sk->mig = CE_MIG_NONE;
	vm->mig_scan = true; /* a switch during this move may want it elsewhere */
	if (!leg_gone && old->state == CE_NSM_UP)
		send_close(ce, old, (uint16_t)vm->idx, sk->old_sock);
	if (!err && sk->rx_bytes != sk->mig_rx_off) {
		ce_log("vm %s sock %u: old leg delivered %llu bytes, the peer said %llu", vm->name, s,
		       (unsigned long long)sk->rx_bytes, (unsigned long long)sk->mig_rx_off);
		err = EPROTO;
	}
	if (err) {
		/* The stream has a hole: fail the socket and drop the new leg
		 * too, so nothing more is sent into a broken stream. */
		if (sk->nsm >= 0 && ce->nsms[sk->nsm].state == CE_NSM_UP) {
			struct ce_nsm_map *m = ce_nsm_map_get(&ce->nsms[sk->nsm], sk->nsm_sock);
			if (m && m->vm == vm->idx && m->sock == s)
				m->used = false;
			send_close(ce, &ce->nsms[sk->nsm], (uint16_t)vm->idx, sk->nsm_sock);
		}
		sk->nsm = -1;
		sk->state = CE_SK_DEAD;
		ce_sock_set_error(ce, vm, s, err, true);
		return;
	}
	/* GO: the new leg may fill what the ring has free. Counted from our own
	 * books (entries pushed minus RX_DONEs processed), not from the guest's
	 * rx_head, which runs ahead of its RX_DONEs: those still to come credit
	 * the new leg, and must not be counted twice. */
	uint32_t used = sk->rx_pending > NK_SOCK_RX_ENTRIES ? NK_SOCK_RX_ENTRIES : sk->rx_pending;
	struct nk_nqe cr = { .op = NK_OP_RX_CREDIT, .vm = (uint16_t)vm->idx, .sock = sk->nsm_sock,
			     .chunk = NK_NO_CHUNK, .len = NK_SOCK_RX_ENTRIES - used };
	if (cr.len)
		ce_nsm_send(ce, &ce->nsms[sk->nsm], &cr);
}
