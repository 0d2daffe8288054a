/* SPDX-License-Identifier: MIT */
/*
 * nk_pool.h - a process-private free list of chunk indices.
 *
 * Chunk allocation never happens in shared memory: the guest keeps the free
 * list of its channel's TX partition in its own memory, the CoreEngine keeps
 * the RX free list in its own memory. A peer therefore cannot corrupt an
 * allocator; it can only hand back an index, which the owner validates
 * against its private state before pushing it here.
 */
#ifndef NK_POOL_H
#define NK_POOL_H

#include <stdbool.h>
#include <stdint.h>

struct nk_pool {
	uint32_t *stack;   /**< free indices */
	uint32_t top;      /**< entries in stack */
	uint32_t first;    /**< first index managed */
	uint32_t count;    /**< indices managed: [first, first + count) */
	uint8_t *is_free;  /**< one byte per index: catches double free */
};

/** Manage [first, first + count), all free. 0 or -ENOMEM. */
int nk_pool_init(struct nk_pool *p, uint32_t first, uint32_t count);
void nk_pool_fini(struct nk_pool *p);

static inline bool nk_pool_owns(const struct nk_pool *p, uint32_t idx)
{
	return idx - p->first < p->count; /* unsigned: also rejects idx < first */
}

static inline uint32_t nk_pool_avail(const struct nk_pool *p) { return p->top; }
static inline uint32_t nk_pool_used(const struct nk_pool *p) { return p->count - p->top; }

/** Take a free index; false when empty. */
static inline bool nk_pool_get(struct nk_pool *p, uint32_t *idx)
{
	if (p->top == 0)
		return false;
	*idx = p->stack[--p->top];
	p->is_free[*idx - p->first] = 0;
	return true;
}

/** Give an index back. Rejects foreign indices and double frees (false). */
static inline bool nk_pool_put(struct nk_pool *p, uint32_t idx)
{
	if (!nk_pool_owns(p, idx) || p->is_free[idx - p->first])
		return false;
	p->is_free[idx - p->first] = 1;
	p->stack[p->top++] = idx;
	return true;
}

#endif /* NK_POOL_H */
