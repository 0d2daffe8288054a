/* SPDX-License-Identifier: MIT */
#include "nk_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int nk_pool_init(struct nk_pool *p, uint32_t first, uint32_t count)
{
	memset(p, 0, sizeof(*p));
	p->stack = calloc(count ? count : 1, sizeof(*p->stack));
	p->is_free = calloc(count ? count : 1, 1);
	if (!p->stack || !p->is_free) {
		nk_pool_fini(p);
		return -ENOMEM;
	}
	p->first = first;
	p->count = count;
	/* Push in reverse so that the lowest index is handed out first. */
	for (uint32_t i = count; i-- > 0;) {
		p->stack[p->top++] = first + i;
		p->is_free[i] = 1;
	}
	return 0;
}

void nk_pool_fini(struct nk_pool *p)
{
	free(p->stack);
	free(p->is_free);
	memset(p, 0, sizeof(*p));
}
