/* SPDX-License-Identifier: MIT */
/*
 * gl_io.c - the data path: send (copy into TX chunks, post SEND) and receive
 * (copy out of the socket slot's rx ring, return chunks with RX_DONE).
 *
 * Everything here runs under nk_gl.lock with a reference on the socket. The
 * rx ring lives in shared memory written by the CoreEngine: each entry is
 * copied, then bounds-checked before its chunk is touched; a bad entry marks
 * the socket corrupt (EIO from then on) instead of crashing the app.
 */
#include "nk_gl.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* ---- iovec helpers ---- */

static ssize_t nk_gl_iov_total(const struct iovec *iov, int iovcnt)
{
	size_t t = 0;
	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - t)
			return -EINVAL;
		t += iov[i].iov_len;
	}
	return (ssize_t)t;
}

/* Copy between a flat buffer and the iovec's bytes [pos, pos + n): 0, or
 * -EFAULT for a buffer that cannot be the application's (gl_uacc.c: the
 * data path's cheap check). */
static int nk_gl_iov_copy(const struct iovec *iov, int iovcnt, size_t pos, uint8_t *flat,
			  size_t n, bool to_iov)
{
	for (int i = 0; i < iovcnt && n > 0; i++) {
		if (pos >= iov[i].iov_len) {
			pos -= iov[i].iov_len;
			continue;
		}
		size_t k = iov[i].iov_len - pos;
		if (k > n)
			k = n;
		int e = to_iov ? nk_gl_ucopy_out((uint8_t *)iov[i].iov_base + pos, flat, k)
			       : nk_gl_ucopy_in(flat, (uint8_t *)iov[i].iov_base + pos, k);
		if (e < 0)
			return e;
		flat += k;
		n -= k;
		pos = 0;
	}
	return 0;
}

static int nk_gl_bad_err(struct nk_gl_sock *s)
{
	return (s->corrupt || s->stale) ? -EIO : -ECONNRESET;
}

/* A pending socket error the process has not been told about yet. */
static int nk_gl_take_slot_error(struct nk_gl_sock *s)
{
	uint32_t seq = __atomic_load_n(&s->slot->err_seq, __ATOMIC_ACQUIRE);
	int32_t err = __atomic_load_n(&s->slot->error, __ATOMIC_RELAXED);
	if (seq == s->seen_err_seq)
		return 0;
	s->seen_err_seq = seq;
	return (err > 0 && err < 4096) ? err : 0;
}

/* ---- send ---- */

bool nk_gl_writable(struct nk_gl_sock *s)
{
	return s->tx_inflight < NK_GL_SOCK_TX_MAX && nk_pool_avail(&nk_gl.pool) > 0;
}

/* Wait for TX window room. (It used to share the connect wait's
 * "conn != PENDING" term, which is true on every connected socket: a blocked
 * send then spun instead of sleeping, and in VM mode never noticed a dead
 * channel.) */
static bool nk_gl_send_wakeup(void *arg)
{
	struct nk_gl_sock *s = arg;
	return nk_gl_writable(s) || s->send_err || s->nfds == 0 || s->corrupt ||
	       __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE) == NK_SS_CLOSED;
}

static bool nk_gl_send_needs_tx(void *arg)
{
	(void)arg;
	return true; /* room comes back with SEND_DONE */
}

/* Wait for a pending connect to finish. */
static bool nk_gl_connect_wakeup(void *arg)
{
	struct nk_gl_sock *s = arg;
	return s->send_err || s->nfds == 0 || s->corrupt || s->conn != NK_GL_CONN_PENDING ||
	       __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE) == NK_SS_CLOSED;
}

/* May s send now? 0, or -errno (EPIPE asks the caller for SIGPIPE). Waits
 * for a pending connect when blocking. */
static int nk_gl_send_check(struct nk_gl_sock *s, bool nonblock, const struct timespec *dl)
{
	for (;;) {
		if (nk_gl_slot_bad(s))
			return nk_gl_bad_err(s);
		if (s->nfds == 0)
			return -EBADF;
		if (s->send_err) {
			int e = s->send_err;
			s->send_err = 0;
			return -e;
		}
		if (s->shut_wr || s->listening)
			return -EPIPE;
		uint32_t st = __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE);
		uint32_t fl = __atomic_load_n(&s->slot->flags, __ATOMIC_RELAXED);
		if (st == NK_SS_CLOSED || (fl & NK_SF_RESET)) {
			int e = nk_gl_take_slot_error(s);
			return e ? -e : -EPIPE;
		}
		if (st == NK_SS_CONNECTED || s->conn == NK_GL_CONN_DONE)
			return 0;
		if (s->conn == NK_GL_CONN_FAILED) {
			int e = s->so_error;
			s->so_error = 0;
			return e ? -e : -EPIPE;
		}
		/* Never connected: Linux TCP says EPIPE; UDP without a sendto
		 * address has no peer to send to (EDESTADDRREQ, no SIGPIPE). */
		if (s->type == SOCK_DGRAM && s->tx_dest_set)
			return 0;
		if (s->conn != NK_GL_CONN_PENDING)
			return s->type == SOCK_DGRAM ? -EDESTADDRREQ : -EPIPE;
		if (nonblock)
			return -EAGAIN;
		int w = nk_gl_wait_io(nk_gl_connect_wakeup, NULL, s, dl);
		if (w == 0)
			return -EAGAIN;
		if (w < 0)
			return w;
	}
}

/* Get a free TX chunk within the socket's and the process's window. */
static int nk_gl_tx_get(struct nk_gl_sock *s, bool nonblock, const struct timespec *dl,
			uint32_t *chunk)
{
	for (;;) {
		if (nk_gl_slot_bad(s))
			return nk_gl_bad_err(s);
		if (s->nfds == 0)
			return -EBADF;
		if (s->send_err)
			return -s->send_err; /* left pending: reported by the next send */
		if (nk_gl_writable(s) && nk_pool_get(&nk_gl.pool, chunk))
			return 0;
		if (nonblock)
			return -EAGAIN;
		int w = nk_gl_wait_io(nk_gl_send_wakeup, nk_gl_send_needs_tx, s, dl);
		if (w == 0)
			return -EAGAIN;
		if (w < 0)
			return w;
	}
}

/* Hand chunk (len bytes filled) to the CoreEngine as a SEND. */
static int nk_gl_tx_post(struct nk_gl_sock *s, uint32_t chunk, uint32_t len)
{
	struct nk_nqe q = { .op = NK_OP_SEND, .sock = s->id, .chunk = chunk, .off = 0, .len = len };
	q.cookie = nk_gl_cookie();
	if (s->tx_dest_set)
		q.arg.addr = s->tx_dest; /* sendto: this datagram's destination */
	nk_gl.tx_owner[chunk - nk_gl.pool.first] = s;
	s->refs++;
	s->tx_inflight++;
	int e = nk_gl_post(&q);
	if (e < 0) {
		nk_gl.tx_owner[chunk - nk_gl.pool.first] = NULL;
		(void)nk_pool_put(&nk_gl.pool, chunk);
		s->tx_inflight--;
		s->refs--;
	}
	return e;
}

ssize_t nk_gl_sendv(struct nk_gl_sock *s, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t total = nk_gl_iov_total(iov, iovcnt);
	if (total < 0)
		return total;
	bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
	struct timespec dl;
	const struct timespec *dlp = nk_gl_timeval_deadline(&s->sndtimeo, &dl) ? &dl : NULL;
	int e = nk_gl_send_check(s, nonblock, dlp);
	if (e < 0)
		return e;
	size_t sent = 0, cs = nk_gl.reg.g.chunk_size;
	/* A datagram must leave as one SEND (one chunk): splitting it would
	 * send several datagrams. Larger ones fail explicitly. */
	if (s->type == SOCK_DGRAM && (size_t)total > cs)
		return -EMSGSIZE;
	/* A zero-length datagram is still a datagram: one empty SEND. */
	bool empty_dgram = s->type == SOCK_DGRAM && total == 0;
	while (sent < (size_t)total || empty_dgram) {
		uint32_t c;
		empty_dgram = false;
		e = nk_gl_tx_get(s, nonblock, dlp, &c);
		if (e < 0)
			break;
		size_t n = (size_t)total - sent < cs ? (size_t)total - sent : cs;
		e = nk_gl_iov_copy(iov, iovcnt, sent, nk_region_chunk(&nk_gl.reg, c), n, false);
		if (e < 0) {
			(void)nk_pool_put(&nk_gl.pool, c);
			break;
		}
		e = nk_gl_tx_post(s, c, (uint32_t)n);
		if (e < 0)
			break;
		sent += n;
	}
	/* Partial writes: what was copied is sent; an error then waits for the
	 * next call (still pending in send_err or the slot). Reported now, it
	 * is consumed. */
	if (!sent && s->send_err && e == -s->send_err)
		s->send_err = 0;
	return sent ? (ssize_t)sent : ((total || s->type == SOCK_DGRAM) ? e : 0);
}

ssize_t nk_gl_sendfile(struct nk_gl_sock *s, int in_fd, off_t *off, size_t count)
{
	struct timespec dl;
	const struct timespec *dlp = nk_gl_timeval_deadline(&s->sndtimeo, &dl) ? &dl : NULL;
	int e = nk_gl_send_check(s, s->nonblock, dlp);
	if (e < 0)
		return e;
	size_t sent = 0, cs = nk_gl.reg.g.chunk_size;
	if (count > SSIZE_MAX)
		count = SSIZE_MAX;
	while (sent < count) {
		uint32_t c;
		e = nk_gl_tx_get(s, s->nonblock, dlp, &c);
		if (e < 0)
			break;
		size_t n = count - sent < cs ? count - sent : cs;
		uint8_t *p = nk_region_chunk(&nk_gl.reg, c);
		/* Read the file straight into the chunk: one copy, as sendfile. */
		ssize_t r = off ? pread(in_fd, p, n, *off) : REAL(read)(in_fd, p, n);
		if (r <= 0) {
			e = r < 0 ? -errno : 0;
			(void)nk_pool_put(&nk_gl.pool, c);
			break;
		}
		e = nk_gl_tx_post(s, c, (uint32_t)r);
		if (e < 0)
			break;
		sent += (size_t)r;
		if (off)
			*off += r;
		if ((size_t)r < n)
			break; /* end of file */
	}
	if (!sent && s->send_err && e == -s->send_err)
		s->send_err = 0;
	return sent ? (ssize_t)sent : e;
}

/* ---- receive ---- */

/* Consume rx entries into iov[*got..want). Returns 0 when more data may
 * follow, 1 when the caller must stop here (end of stream or an error entry
 * ahead, left for the next call unless nothing was copied), -errno for an
 * error entry (nothing copied) or a corrupt ring. */
static int nk_gl_rx_take(struct nk_gl_sock *s, const struct iovec *iov, int iovcnt, size_t want,
			 bool peek, size_t *got)
{
	struct nk_sock_slot *sl = s->slot;
	uint32_t done[NK_SOCK_RX_ENTRIES];
	unsigned ndone = 0;
	uint32_t cs = nk_gl.reg.g.chunk_size, rx_first = nk_geom_rx_first(&nk_gl.reg.g);
	int ret = 0;

	nk_gl_slot_lock(sl);
	uint32_t tail = __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE);
	uint32_t pos = __atomic_load_n(&sl->rx_head, __ATOMIC_RELAXED);
	uint32_t off = __atomic_load_n(&sl->head_off, __ATOMIC_RELAXED);
	if (tail - pos > NK_SOCK_RX_ENTRIES) {
		s->corrupt = true;
		nk_gl_slot_unlock(sl);
		return -EIO;
	}
	while (pos != tail) {
		struct nk_rxent e;
		memcpy(&e, &sl->rx[pos & (NK_SOCK_RX_ENTRIES - 1)], sizeof(e));
		if (e.type == NK_RX_DATA) {
			/* A datagram is read even into no room (and dropped). */
			if (*got >= want && s->type != SOCK_DGRAM)
				break;
			if (e.val < rx_first || e.val >= nk_gl.nchunks || e.off > cs ||
			    e.len > cs - e.off || (off >= e.len && e.len != 0)) {
				s->corrupt = true;
				ret = -EIO;
				break;
			}
			size_t n = e.len - off;
			if (n > want - *got)
				n = want - *got;
			if (nk_gl_iov_copy(iov, iovcnt, *got,
					   nk_region_chunk(&nk_gl.reg, e.val) + e.off + off, n,
					   true) < 0) {
				ret = -EFAULT; /* entry left in place */
				break;
			}
			*got += n;
			off += (uint32_t)n;
			if (s->type == SOCK_DGRAM) {
				s->rx_dlen = e.len;
				s->rx_trunc = n < e.len;
				/* The sender sits in the chunk's header (nk_abi.h,
				 * NK_DGRAM_HDR): copied; recvfrom validates it. */
				memset(&s->rx_src, 0, sizeof(s->rx_src));
				if (e.off >= NK_DGRAM_HDR)
					memcpy(&s->rx_src, nk_region_chunk(&nk_gl.reg, e.val),
					       sizeof(s->rx_src));
				/* The NSM reads one datagram per chunk, so one DATA
				 * entry is one datagram: a read returns at most one
				 * and drops what did not fit, as Linux UDP does. */
				if (!peek) {
					done[ndone++] = e.val;
					pos++;
				}
				off = 0;
				ret = 1;
				break;
			}
			if (off < e.len)
				break; /* the caller's buffer is full */
			if (!peek)
				done[ndone++] = e.val;
			pos++;
			off = 0;
			continue;
		}
		if (e.type == NK_RX_FIN) {
			ret = 1;
			if (*got == 0 && !peek) {
				done[ndone++] = NK_NO_CHUNK;
				pos++;
				s->eof = true;
			}
			break;
		}
		if (e.type == NK_RX_ERR) {
			ret = 1;
			if (*got == 0) {
				ret = (e.val > 0 && e.val < 4096) ? -(int)e.val : -EIO;
				if (!peek) {
					done[ndone++] = NK_NO_CHUNK;
					pos++;
				}
			}
			break;
		}
		s->corrupt = true; /* ACCEPT on a stream, or an unknown type */
		ret = -EIO;
		break;
	}
	if (!peek) {
		__atomic_store_n(&sl->head_off, off, __ATOMIC_RELAXED);
		__atomic_store_n(&sl->rx_head, pos, __ATOMIC_RELEASE);
	}
	nk_gl_slot_unlock(sl);
	/* Chunks go back only after the copy, outside the slot lock (posting
	 * may wait for up ring space). */
	for (unsigned i = 0; i < ndone; i++) {
		struct nk_nqe q = { .op = NK_OP_RX_DONE, .sock = s->id, .chunk = done[i] };
		if (nk_gl_post(&q) < 0)
			break;
	}
	if (ret < 0 && ret != -EIO && ret != -EFAULT)
		s->seen_err_seq = __atomic_load_n(&sl->err_seq, __ATOMIC_ACQUIRE);
	return ret;
}

static bool nk_gl_rx_empty(struct nk_gl_sock *s)
{
	return __atomic_load_n(&s->slot->rx_tail, __ATOMIC_ACQUIRE) ==
	       __atomic_load_n(&s->slot->rx_head, __ATOMIC_RELAXED);
}

static bool nk_gl_recv_wakeup(void *arg)
{
	struct nk_gl_sock *s = arg;
	return !nk_gl_rx_empty(s) || s->nfds == 0 || s->shut_rd || s->corrupt ||
	       (__atomic_load_n(&s->slot->flags, __ATOMIC_ACQUIRE) & (NK_SF_RX_FIN | NK_SF_RESET)) ||
	       __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE) == NK_SS_CLOSED;
}

ssize_t nk_gl_recvv(struct nk_gl_sock *s, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t want = nk_gl_iov_total(iov, iovcnt);
	if (want < 0)
		return want;
	if (nk_gl_slot_bad(s))
		return nk_gl_bad_err(s);
	if (s->listening)
		return -ENOTCONN;
	if (want == 0 && s->type != SOCK_DGRAM)
		return 0;
	bool peek = flags & MSG_PEEK;
	bool waitall = (flags & MSG_WAITALL) && !peek;
	bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
	struct timespec dl;
	const struct timespec *dlp = nk_gl_timeval_deadline(&s->rcvtimeo, &dl) ? &dl : NULL;
	size_t got = 0;
	s->rx_dlen = 0;
	s->rx_trunc = false;
	for (;;) {
		int r = nk_gl_rx_take(s, iov, iovcnt, (size_t)want, peek, &got);
		if (r < 0)
			return got ? (ssize_t)got : r;
		/* MSG_TRUNC on a datagram: its real length, as Linux UDP. */
		if (r == 1 && s->type == SOCK_DGRAM && (flags & MSG_TRUNC))
			return (ssize_t)s->rx_dlen;
		if (r == 1 || (got && (!waitall || got == (size_t)want)))
			return (ssize_t)got;
		uint32_t st = __atomic_load_n(&s->slot->state, __ATOMIC_ACQUIRE);
		uint32_t fl = __atomic_load_n(&s->slot->flags, __ATOMIC_ACQUIRE);
		if (s->eof || ((fl & NK_SF_RX_FIN) && nk_gl_rx_empty(s)))
			return (ssize_t)got;
		if (st == NK_SS_CLOSED || (fl & NK_SF_RESET)) {
			int e = got ? 0 : nk_gl_take_slot_error(s);
			return e ? -e : (ssize_t)got;
		}
		if (s->shut_rd)
			return (ssize_t)got;
		/* A datagram socket receives once bound, connected or not (the
		 * NSM starts reading at BIND): it waits, as Linux UDP does. */
		if (s->type == SOCK_STREAM && st != NK_SS_CONNECTED && s->conn == NK_GL_CONN_NONE)
			return got ? (ssize_t)got : -ENOTCONN;
		if (nonblock)
			return got ? (ssize_t)got : -EAGAIN;
		int w = nk_gl_wait_io(nk_gl_recv_wakeup, NULL, s, dlp);
		if (w == 0)
			return got ? (ssize_t)got : -EAGAIN;
		if (w < 0)
			return got ? (ssize_t)got : w;
		if (s->nfds == 0)
			return got ? (ssize_t)got : -EBADF;
		if (nk_gl_slot_bad(s))
			return got ? (ssize_t)got : nk_gl_bad_err(s);
	}
}

/* FIONREAD: bytes waiting in DATA entries (a snapshot; entries are copied
 * and their lengths clamped, so garbage cannot overflow the sum). */
uint32_t nk_gl_rx_bytes(struct nk_gl_sock *s)
{
	struct nk_sock_slot *sl = s->slot;
	uint32_t cs = nk_gl.reg.g.chunk_size;
	uint64_t sum = 0;
	nk_gl_slot_lock(sl);
	uint32_t tail = __atomic_load_n(&sl->rx_tail, __ATOMIC_ACQUIRE);
	uint32_t pos = __atomic_load_n(&sl->rx_head, __ATOMIC_RELAXED);
	uint32_t off = __atomic_load_n(&sl->head_off, __ATOMIC_RELAXED);
	if (tail - pos <= NK_SOCK_RX_ENTRIES) {
		for (; pos != tail; pos++, off = 0) {
			struct nk_rxent e;
			memcpy(&e, &sl->rx[pos & (NK_SOCK_RX_ENTRIES - 1)], sizeof(e));
			if (e.type != NK_RX_DATA)
				break;
			uint32_t len = e.len > cs ? cs : e.len;
			sum += len > off ? len - off : 0;
		}
	}
	nk_gl_slot_unlock(sl);
	return sum > INT32_MAX ? INT32_MAX : (uint32_t)sum;
}
