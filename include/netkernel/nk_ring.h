/* SPDX-License-Identifier: MIT */
/*
 * nk_ring.h - single-producer/single-consumer NQE rings (inline fast path).
 *
 * A struct nk_ring is a process-local view of one ring in shared memory. The
 * geometry (size, mask) lives in the view, never re-read from shared memory,
 * so a peer that scribbles over the ring header can at worst make us read
 * garbage NQEs (which the receiver validates), never index out of bounds.
 *
 * Ordering: the producer writes entries, then publishes prod_tail with a
 * release store; the consumer loads prod_tail with acquire before reading
 * entries. The consumer copies entries out, then publishes cons_head with a
 * release store so the producer may reuse the slots. That is all the ordering
 * SPSC needs; the one full fence is in the need_wakeup handshake.
 */
#ifndef NK_RING_H
#define NK_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "nk_abi.h"

struct nk_ring {
	struct nk_ring_hdr *hdr;  /**< shared header */
	struct nk_nqe *ents;      /**< shared entries */
	uint32_t size;            /**< entries, power of two (local copy) */
	uint32_t mask;            /**< size - 1 */
	uint32_t cached_other;    /**< producer: last cons_head seen (never ahead of the real one) */
	uint32_t staged;          /**< producer: entries written past prod_tail, not yet published */
};

static inline void nk_ring_view(struct nk_ring *r, void *hdr, void *ents, uint32_t size)
{
	r->hdr = (struct nk_ring_hdr *)hdr;
	r->ents = (struct nk_nqe *)ents;
	r->size = size;
	r->mask = size - 1;
	/* a real past cons_head, so the cache never runs ahead of it */
	r->cached_other = __atomic_load_n(&r->hdr->cons_head, __ATOMIC_ACQUIRE);
	r->staged = 0;
}

/** Reset indices; only the creator does this, before handing the ring out. */
static inline void nk_ring_reset(struct nk_ring *r)
{
	__atomic_store_n(&r->hdr->prod_tail, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->hdr->cons_head, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->hdr->need_wakeup, 0, __ATOMIC_RELEASE);
	r->cached_other = 0;
	r->staged = 0;
}

/* ---- producer side ---- */

/* Room behind tail (staged entries included) for a consumer at head; a
 * consumer that published a cons_head beyond prod_tail, or more than size
 * behind it (corrupt peer), leaves no room. */
static inline uint32_t nk_ring__room(const struct nk_ring *r, uint32_t tail, uint32_t head)
{
	uint32_t used = tail - head;
	return used > r->size ? 0 : r->size - used;
}

/** Free slots from the producer's point of view (staged entries count as
 *  used). Always reads the consumer's index. */
static inline uint32_t nk_ring_free(struct nk_ring *r)
{
	uint32_t tail = r->hdr->prod_tail + r->staged; /* our own word */
	r->cached_other = __atomic_load_n(&r->hdr->cons_head, __ATOMIC_ACQUIRE);
	return nk_ring__room(r, tail, r->cached_other);
}

/** Is there room for n more? Reads the consumer's index only when the last
 *  one seen says no: cons_head only grows, so the cached one never promises
 *  room that is not there, and the cache line the consumer keeps writing is
 *  not pulled over on every NQE (as DPDK's rings and Caladan's lrpc do). */
static inline bool nk_ring_room(struct nk_ring *r, uint32_t n)
{
	uint32_t tail = r->hdr->prod_tail + r->staged;
	if (nk_ring__room(r, tail, r->cached_other) >= n)
		return true;
	return nk_ring_free(r) >= n;
}

/** Write one NQE past the published tail without publishing it: the
 *  consumer sees it at the next nk_ring_publish() or enqueue. Batching the
 *  prod_tail store saves a cache-line transfer per NQE. False when full. */
static inline bool nk_ring_stage(struct nk_ring *r, const struct nk_nqe *nqe)
{
	if (!nk_ring_room(r, 1))
		return false;
	r->ents[(r->hdr->prod_tail + r->staged) & r->mask] = *nqe;
	r->staged++;
	return true;
}

/** Make staged NQEs visible (release: entries before the index). */
static inline void nk_ring_publish(struct nk_ring *r)
{
	if (!r->staged)
		return;
	__atomic_store_n(&r->hdr->prod_tail, r->hdr->prod_tail + r->staged, __ATOMIC_RELEASE);
	r->staged = 0;
}

/** Copy up to n NQEs in behind any staged ones and publish them all;
 *  returns how many of the n were enqueued. */
static inline uint32_t nk_ring_enqueue_burst(struct nk_ring *r, const struct nk_nqe *nqe,
					     uint32_t n)
{
	uint32_t tail = r->hdr->prod_tail + r->staged;
	if (!nk_ring_room(r, n)) {
		uint32_t room = nk_ring__room(r, tail, r->cached_other);
		n = n > room ? room : n;
	}
	for (uint32_t i = 0; i < n; i++)
		r->ents[(tail + i) & r->mask] = nqe[i];
	r->staged += n;
	nk_ring_publish(r);
	return n;
}

static inline bool nk_ring_enqueue(struct nk_ring *r, const struct nk_nqe *nqe)
{
	return nk_ring_enqueue_burst(r, nqe, 1) == 1;
}

/** After publishing: does the consumer want a doorbell? lazy_only: what
 *  was published is only lazy NQEs (nk_abi.h, need_wakeup), which ring only
 *  an NK_WAKE_ANY sleeper. Any other value than NK_WAKE_URGENT counts as
 *  "any", so a corrupt word costs a spurious doorbell, never a missed one.
 *  The full fence orders our prod_tail store before the need_wakeup load
 *  (Dekker with the consumer's need_wakeup store / prod_tail load). */
static inline bool nk_ring_wants_wakeup(struct nk_ring *r, bool lazy_only)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint32_t w = __atomic_load_n(&r->hdr->need_wakeup, __ATOMIC_RELAXED);
	return w != 0 && !(lazy_only && w == NK_WAKE_URGENT);
}

/** The same for a producer that does not tell lazy NQEs apart. */
static inline bool nk_ring_needs_wakeup(struct nk_ring *r)
{
	return nk_ring_wants_wakeup(r, false);
}

/* ---- consumer side ---- */

/** Entries ready to read. A producer whose prod_tail runs more than size
 *  ahead (corrupt peer) is clamped to size: we then read garbage NQEs, which
 *  the caller validates, but never stale slots out of bounds. */
static inline uint32_t nk_ring_count(struct nk_ring *r)
{
	uint32_t head = r->hdr->cons_head; /* our own word */
	uint32_t tail = __atomic_load_n(&r->hdr->prod_tail, __ATOMIC_ACQUIRE);
	uint32_t n = tail - head;
	return n > r->size ? r->size : n;
}

/** Copy up to n NQEs out and release their slots. */
static inline uint32_t nk_ring_dequeue_burst(struct nk_ring *r, struct nk_nqe *out, uint32_t n)
{
	uint32_t avail = nk_ring_count(r);
	uint32_t head = r->hdr->cons_head;
	if (n > avail)
		n = avail;
	for (uint32_t i = 0; i < n; i++)
		out[i] = r->ents[(head + i) & r->mask];
	__atomic_store_n(&r->hdr->cons_head, head + n, __ATOMIC_RELEASE);
	return n;
}

static inline bool nk_ring_dequeue(struct nk_ring *r, struct nk_nqe *out)
{
	return nk_ring_dequeue_burst(r, out, 1) == 1;
}

/** Peek at the next NQE (copied) without consuming it. */
static inline bool nk_ring_peek(struct nk_ring *r, struct nk_nqe *out)
{
	if (nk_ring_count(r) == 0)
		return false;
	*out = r->ents[r->hdr->cons_head & r->mask];
	return true;
}

/** Copy out the i-th unread NQE without consuming it; i below a count the
 *  caller got from nk_ring_count, so prod_tail need not be read again. */
static inline void nk_ring_read_at(struct nk_ring *r, uint32_t i, struct nk_nqe *out)
{
	*out = r->ents[(r->hdr->cons_head + i) & r->mask];
}

static inline void nk_ring_skip(struct nk_ring *r, uint32_t n)
{
	__atomic_store_n(&r->hdr->cons_head, r->hdr->cons_head + n, __ATOMIC_RELEASE);
}

/** Consumer about to sleep: announce it (mode NK_WAKE_ANY or NK_WAKE_URGENT),
 *  then re-check. Returns true when the ring is still empty (safe to sleep);
 *  false if work arrived meanwhile, in which case the flag is cleared again. */
static inline bool nk_ring_prepare_sleep_for(struct nk_ring *r, uint32_t mode)
{
	__atomic_store_n(&r->hdr->need_wakeup, mode, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (nk_ring_count(r) != 0) {
		__atomic_store_n(&r->hdr->need_wakeup, 0, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

static inline bool nk_ring_prepare_sleep(struct nk_ring *r)
{
	return nk_ring_prepare_sleep_for(r, NK_WAKE_ANY);
}

static inline void nk_ring_awake(struct nk_ring *r)
{
	__atomic_store_n(&r->hdr->need_wakeup, 0, __ATOMIC_RELAXED);
}

#endif /* NK_RING_H */
