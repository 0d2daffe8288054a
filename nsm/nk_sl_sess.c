/* SPDX-License-Identifier: MIT */
/*
 * nk_sl_sess.c - sessions between NetKernel hosts and live switching.
 *
 * When both ends of a TCP connection are NetKernel-managed (the operator's
 * --nk-peers prefixes), the ServiceLibs open it with a 24-byte hello (struct
 * nk_sess_hello): the client sends NEW{session, 0}, the server answers
 * ACK{session, 0}. Guests never see these bytes.
 *
 * Switching the client's VM to another NSM (sequence, docs/ARCHITECTURE.md):
 *   1. The CoreEngine stops feeding the old NSM and sends MIGRATE to the new
 *      one with the session and O = bytes it handed to the old NSM.
 *   2. The new NSM connects to the peer's session port and sends
 *      RESUME{session, O}. The peer's ServiceLib links that leg to the
 *      session's socket: it moves its own sending to the new leg, first
 *      ACK{session, P} where P = bytes it wrote on the old leg, and shuts
 *      the old leg's write side. It keeps reading the old leg up to O bytes
 *      and its EOF, then reads the new leg.
 *   3. On the ACK the new NSM completes MIGRATE; the CoreEngine then sends
 *      MIGRATE_OUT to the old NSM, which writes what it still holds (bytes
 *      before O), shuts its write side, and reads the old leg to its EOF
 *      (the peer's bytes before P). Its RX_FIN ends the old leg; the
 *      CoreEngine then gives the new leg its receive credit.
 * No byte is lost, duplicated or reordered, and neither side pauses beyond
 * the new leg's handshake. Only the old leg's end (after the peer linked the
 * new one) is a FIN that is not the application's.
 */
#define _GNU_SOURCE
#include "nk_sl.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- prefixes ---- */

bool nk_sl_peer_is_nk(const struct nk_sl *sl, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return nk_prefixes_match(&sl->peers,
					 (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr);
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
		       nk_prefixes_match(&sl->peers, s6->sin6_addr.s6_addr + 12);
	}
	return false;
}

/* ---- hello bytes ---- */

void nk_sl_sess_prefix(struct nk_sl_sock *s, uint8_t kind, uint64_t sess, uint64_t off)
{
	struct nk_sess_hello h = { .magic = htole32(NK_SESS_MAGIC), .kind = kind,
				   .session = htole64(sess), .offset = htole64(off) };
	memcpy(s->pre, &h, sizeof(h));
	s->pre_len = sizeof(h);
	s->pre_off = 0;
}

/* 1 written, 0 blocked, -errno. */
int nk_sl_sess_write_prefix(struct nk_sl *sl, struct nk_sl_sock *s, int64_t th)
{
	while (s->pre_off < s->pre_len) {
		struct iovec iov = { s->pre + s->pre_off, (size_t)(s->pre_len - s->pre_off) };
		ssize_t w = sl->ops->sendv(sl->st, th, &iov, 1, NULL, 0);
		if (w == -EAGAIN)
			return 0;
		if (w < 0)
			return (int)w;
		s->pre_off += (uint8_t)w;
	}
	return 1;
}

static void post_newconn(struct nk_sl *sl, struct nk_sl_sock *ns)
{
	struct nk_nqe n = { .op = NK_OP_NEWCONN, .vm = ns->vm, .sock = ns->listener,
			    .chunk = NK_NO_CHUNK, .off = (uint32_t)ns->sess,
			    .len = (uint32_t)(ns->sess >> 32) };
	n.arg.conn.peer = ns->peer;
	n.arg.conn.id = ns->id;
	ns->newconn_pending = false;
	nk_sl_post(sl, &n);
}

/* Accepted on a listener: sessions wait for the client's hello first. */
void nk_sl_sess_accepted(struct nk_sl *sl, struct nk_sl_sock *lis, struct nk_sl_sock *ns,
			 const struct sockaddr_storage *peer)
{
	ns->listener = lis->id;
	nk_sl_addr_from_sa(&ns->peer, peer);
	if (ns->loop)
		nk_sl_loop_report(sl->vms[ns->vm], &ns->peer);
	if (lis->sess_listen) {
		ns->internal = true;
		ns->hin_want = NK_SESS_NEW; /* a RESUME, in fact */
		return;
	}
	lis->rx_out++; /* the NEWCONN entry's credit, reserved now */
	if (nk_sl_peer_is_nk(sl, peer)) {
		ns->hin_want = NK_SESS_NEW;
		ns->newconn_pending = true;
		return;
	}
	post_newconn(sl, ns);
}

static struct nk_sl_sock *find_session(struct nk_sl *sl, uint16_t vm, uint64_t sess)
{
	for (uint32_t i = 0; i < sl->nsocks_cap; i++) {
		struct nk_sl_sock *s = sl->socks[i];
		if (s->state == NK_SLS_CONNECTED && !s->internal && s->vm == vm && s->sess == sess &&
		    !s->closing)
			return s;
	}
	return NULL;
}

/* A RESUME arrived on leg x: make x the write leg of the session's socket
 * now, and its read leg once the old leg has delivered `off` bytes. */
static void link_leg(struct nk_sl *sl, struct nk_sl_sock *x, uint64_t sess, uint64_t off)
{
	struct nk_sl_sock *b = find_session(sl, x->vm, sess);
	if (!b || (b->h_tx >= 0 && b->has_next)) {
		nk_sl_log(sl, "RESUME for unknown or busy session %016llx; refusing the leg",
			  (unsigned long long)sess);
		nk_sl_sock_drop(sl, x, false);
		return;
	}
	if (b->h_tx >= 0) {
		/* Still reading the previous old leg: this leg waits (silent,
		 * unread) until that swap completes, then links like this. */
		b->has_next = true;
		b->next_leg = x->id;
		b->next_off = off;
		x->rx_stop = true;
		nk_sl_sock_update(sl, x);
		return;
	}
	sl->ops->set_events(sl->st, x->h, x->id, 0);
	b->h_tx = x->h;
	b->events_tx = 0;
	b->rx_expect = off;
	x->h = -1;
	nk_sl_sock_forget(sl, x);
	/* Our bytes continue on the new leg after the ACK; the old leg ends
	 * with what the kernel already took (a partly written chunk's rest
	 * goes to the new leg: offsets are byte-exact). */
	sl->ops->shutdown(sl->st, b->h, SHUT_WR);
	nk_sl_sess_prefix(b, NK_SESS_ACK, sess, b->tx_bytes);
	b->tx_fin_sent = false; /* tx_run re-sends the app's FIN, if any, after the ACK */
	nk_sl_log(sl, "session %016llx: new leg linked (peer offset %llu, ours %llu)",
		  (unsigned long long)sess, (unsigned long long)off,
		  (unsigned long long)b->tx_bytes);
	nk_sl_tx_run(sl, b);
	nk_sl_sock_update(sl, b);
}

/* Tell the CE whether the peer linked a MIGRATE leg (result 0) or not. */
static void mig_ack(struct nk_sl *sl, struct nk_sl_sock *s, int32_t result, uint64_t off)
{
	struct nk_nqe a = { .op = NK_OP_MIGRATE_ACK, .vm = s->vm, .sock = s->id,
			    .chunk = NK_NO_CHUNK, .result = result };
	if (result == 0)
		a.cookie = s->mig_first_ns;
	a.arg.mig.offset = off;
	nk_sl_post(sl, &a);
}

static void hello_done(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_sess_hello *h)
{
	uint64_t sess = le64toh(h->session), off = le64toh(h->offset);

	if (s->hin_want == NK_SESS_ACK) {
		s->hin_want = 0;
		if (h->kind != NK_SESS_ACK || sess != s->sess)
			goto bad;
		if (s->mig_in) {
			s->mig_in = false;
			mig_ack(sl, s, 0, off);
		}
		return;
	}
	s->hin_want = 0;
	if (h->kind == NK_SESS_NEW && !s->internal && off == 0) {
		s->sess = sess;
		nk_sl_sess_prefix(s, NK_SESS_ACK, sess, 0);
		post_newconn(sl, s);
		nk_sl_tx_run(sl, s);
		return;
	}
	if (h->kind == NK_SESS_RESUME && s->internal) {
		link_leg(sl, s, sess, off);
		return;
	}
bad:
	nk_sl_log(sl, "socket %u: bad session hello (kind %u)", s->id, h->kind);
	s->tx_err = -EPROTO;
	if (s->mig_in) {
		s->mig_in = false;
		mig_ack(sl, s, -EPROTO, 0);
		nk_sl_sock_drop(sl, s, true);
	} else if (s->internal || s->newconn_pending) {
		if (s->newconn_pending)
			sl->socks[s->listener]->rx_out--;
		nk_sl_sock_drop(sl, s, false);
	}
}

/* Read the hello a socket expects. 1 = done (s may be gone), 0 = wait,
 * -1 = s was dropped or failed. */
int nk_sl_sess_read_hello(struct nk_sl *sl, struct nk_sl_sock *s)
{
	while (s->hin_got < sizeof(struct nk_sess_hello)) {
		ssize_t n = sl->ops->recv(sl->st, s->h, s->hin + s->hin_got,
					  sizeof(struct nk_sess_hello) - s->hin_got, NULL, NULL);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			/* The peer went away before saying who it is. */
			bool known = s->mig_in; /* the CE maps it already */
			if (s->mig_in) {
				mig_ack(sl, s, n ? (int32_t)n : -ECONNRESET, 0);
				s->mig_in = false;
			}
			if (s->newconn_pending)
				sl->socks[s->listener]->rx_out--;
			nk_sl_sock_drop(sl, s, known);
			return -1;
		}
		s->hin_got += (uint8_t)n;
	}
	struct nk_sess_hello h;
	memcpy(&h, s->hin, sizeof(h));
	if (le32toh(h.magic) != NK_SESS_MAGIC) {
		h.kind = 0;
		h.session = 0;
	}
	hello_done(sl, s, &h);
	return 1;
}

static void swap_legs(struct nk_sl *sl, struct nk_sl_sock *s)
{
	sl->ops->set_events(sl->st, s->h, s->id, 0);
	sl->ops->close(sl->st, s->h, false);
	s->h = s->h_tx;
	s->h_tx = -1;
	s->events = s->events_tx;
	s->events_tx = 0;
	if (s->has_next) {
		struct nk_sl_sock *x = sl->socks[s->next_leg];
		s->has_next = false;
		if (x->state != NK_SLS_FREE && x->internal) {
			x->rx_stop = false;
			link_leg(sl, x, s->sess, s->next_off);
		}
	}
}

/* How much the read leg may still give: the old leg of a switched session
 * owes exactly rx_expect bytes; once they are in, read the new leg at once
 * (its FIN may come much later, e.g. after a loss at the end). */
size_t nk_sl_sess_rx_room(struct nk_sl *sl, struct nk_sl_sock *s, size_t want)
{
	if (s->h_tx < 0)
		return want;
	if (s->rx_bytes == s->rx_expect) {
		swap_legs(sl, s);
		return want;
	}
	uint64_t left = s->rx_expect > s->rx_bytes ? s->rx_expect - s->rx_bytes : 0;
	return left < want ? (size_t)left : want;
}

/* The old read leg hit EOF. true = the socket continues on its new leg;
 * false = a real end of stream (or *err: the old leg fell short). */
bool nk_sl_sess_old_leg_eof(struct nk_sl *sl, struct nk_sl_sock *s, int *err)
{
	*err = 0;
	if (s->h_tx < 0)
		return false;
	if (s->rx_bytes != s->rx_expect) {
		nk_sl_log(sl, "session %016llx: old leg ended at %llu bytes, RESUME said %llu",
			  (unsigned long long)s->sess, (unsigned long long)s->rx_bytes,
			  (unsigned long long)s->rx_expect);
		*err = -EPROTO;
		return false;
	}
	swap_legs(sl, s);
	return true;
}

/* ---- the session port ---- */

void nk_sl_sess_listen(struct nk_sl *sl, struct nk_sl_vm *v)
{
	if (sl->peers.n == 0 || memcmp(v->ipv4, "\0\0\0\0", 4) == 0)
		return;
	int one = 1, r = 0;
	struct nk_sl_sock *s = nk_sl_sock_open(sl, v->index, AF_INET, SOCK_STREAM, 0, &r);
	if (!s) {
		nk_sl_log(sl, "vm %s: no session port: %s", v->name, strerror(-r));
		return;
	}
	s->internal = true;
	s->sess_listen = true;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(NK_SESS_PORT) };
	memcpy(&sa.sin_addr, v->ipv4, 4);
	if (r == 0)
		r = sl->ops->setsockopt(sl->st, s->h, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (r == 0)
		r = sl->ops->bind(sl->st, s->h, (struct sockaddr *)&sa, sizeof(sa), false);
	if (r == 0)
		r = sl->ops->listen(sl->st, s->h, 64);
	if (r < 0) {
		/* Another NSM of this host serves the VM's session port. */
		nk_sl_log(sl, "vm %s: no session port %d (%s); resumed legs go to the NSM holding it",
			  v->name, NK_SESS_PORT, strerror(-r));
		nk_sl_sock_drop(sl, s, false);
		return;
	}
	s->bound = true;
	s->state = NK_SLS_LISTENING;
	nk_sl_sock_update(sl, s);
}

/* ---- the switching side ---- */

void nk_sl_op_migrate(struct nk_sl *sl, const struct nk_nqe *req)
{
	struct nk_sockaddr_buf { struct sockaddr_storage ss; socklen_t len; } to;
	struct nk_addr a = { .family = req->arg.mig.family, .port = req->arg.mig.port };
	uint64_t sess = req->off | (uint64_t)req->len << 32;
	int r = 0;

	memcpy(a.addr, req->arg.mig.ip, 16);
	struct nk_sl_vm *v = nk_sl_vm_find(sl, req->vm);
	if (!v || sess == 0)
		r = -EINVAL;
	if (r == 0)
		r = nk_sl_addr_to_sa(&a, &to.ss, &to.len);
	if (r < 0) {
		nk_sl_complete(sl, req, r);
		return;
	}
	struct nk_sl_sock *s = nk_sl_sock_open(sl, req->vm, a.family, SOCK_STREAM, 0, &r);
	if (!s) {
		nk_sl_complete(sl, req, r);
		return;
	}
	s->sess = sess;
	s->mig_in = true;
	s->mig_req = *req;
	s->rx_out = NK_SOCK_RX_ENTRIES; /* no receive credit until the old leg ends */
	r = nk_sl_autobind(sl, s, true);
	if (r == 0)
		r = sl->ops->connect(sl->st, s->h, (struct sockaddr *)&to.ss, to.len);
	if (r < 0 && r != -EINPROGRESS) {
		s->mig_in = false;
		nk_sl_sock_drop(sl, s, false);
		nk_sl_complete(sl, req, r);
		return;
	}
	nk_sl_sess_prefix(s, NK_SESS_RESUME, sess, req->arg.mig.offset);
	s->hin_want = NK_SESS_ACK;
	s->state = r == 0 ? NK_SLS_CONNECTED : NK_SLS_CONNECTING;
	/* The socket exists: SENDs may come now and queue behind the RESUME. */
	nk_sl_complete(sl, req, (int32_t)s->id);
	if (r == 0)
		nk_sl_tx_run(sl, s);
	nk_sl_sock_update(sl, s);
}

/* A MIGRATE leg's connect finished (r = 0 or -errno). */
void nk_sl_sess_connected(struct nk_sl *sl, struct nk_sl_sock *s, int r)
{
	if (r < 0) {
		s->mig_in = false;
		mig_ack(sl, s, r, 0);
		nk_sl_sock_drop(sl, s, true);
		return;
	}
	s->state = NK_SLS_CONNECTED;
	nk_sl_tx_run(sl, s);
	nk_sl_sock_update(sl, s);
}

void nk_sl_op_migrate_out(struct nk_sl *sl, struct nk_sl_sock *s)
{
	s->mig_out = true;
	nk_sl_tx_run(sl, s);
	nk_sl_sock_update(sl, s);
}
