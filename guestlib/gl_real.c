/* SPDX-License-Identifier: MIT */
/*
 * gl_real.c - the real libc functions behind GuestLib's interposers.
 *
 * Resolution is lazy (an interposer can run before our constructor, e.g.
 * from another library's constructor) and thread-safe without a lock: two
 * threads racing resolve the same address and store it with an atomic store,
 * so the race is benign. The constructor resolves everything up front so the
 * fast path is one atomic load.
 */
#include "nk_gl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const nk_gl_sym_names[NK_GL_SYM_COUNT] = {
#define NK_GL_NAME(fn) [NK_GL_SYM_##fn] = #fn,
	NK_GL_REAL_LIST(NK_GL_NAME)
#undef NK_GL_NAME
};

static void *nk_gl_syms[NK_GL_SYM_COUNT];

void *nk_gl_sym(enum nk_gl_sym idx)
{
	void *p = __atomic_load_n(&nk_gl_syms[idx], __ATOMIC_ACQUIRE);
	if (__builtin_expect(p != NULL, 1))
		return p;
	p = dlsym(RTLD_NEXT, nk_gl_sym_names[idx]);
	if (!p) {
		/* Every symbol in the list exists in glibc >= 2.28; if one is
		 * missing the app cannot work correctly, so say so and stop
		 * rather than jump to NULL. Raw write: stdio may recurse. */
		static const char msg[] = "netkernel: GuestLib cannot resolve a libc symbol: ";
		ssize_t r = syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		r = syscall(SYS_write, 2, nk_gl_sym_names[idx], __builtin_strlen(nk_gl_sym_names[idx]));
		r = syscall(SYS_write, 2, "\n", 1);
		(void)r;
		abort();
	}
	__atomic_store_n(&nk_gl_syms[idx], p, __ATOMIC_RELEASE);
	return p;
}

__attribute__((constructor)) static void nk_gl_real_init(void)
{
	for (int i = 0; i < NK_GL_SYM_COUNT; i++)
		(void)nk_gl_sym((enum nk_gl_sym)i);
}
