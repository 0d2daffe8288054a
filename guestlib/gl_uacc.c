/* SPDX-License-Identifier: MIT */
/*
 * gl_uacc.c - copying to and from the application's pointers with EFAULT.
 *
 * libc passes the caller's pointers to the kernel, which answers EFAULT for
 * an unmapped one; GuestLib reads and writes them itself, where a bad
 * pointer would be a SIGSEGV inside the library. process_vm_readv/writev on
 * our own pid is the kernel's copy_from_user/copy_to_user: the same check,
 * no signal handler, thread-safe. But it costs 1.3 us for 64 bytes and
 * 4.8 us for 16 KiB (a memcpy: 0.004 / 0.4 us), so only the control path
 * (bind, connect, accept, names, options) pays it. The data path (send and
 * receive buffers, sendto/recvfrom addresses) gets the arithmetic check of
 * nk_gl_ucopy_*: the NULL page, non-user addresses and wrap-around are
 * EFAULT; any other unmapped buffer faults in the application.
 */
#include "nk_gl.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int nk_gl_vm_copy(void *local, void *remote, size_t n, bool to_remote)
{
	if (n == 0)
		return 0;
	struct iovec l = { .iov_base = local, .iov_len = n };
	struct iovec r = { .iov_base = remote, .iov_len = n };
	ssize_t k = to_remote ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
			      : process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (k == (ssize_t)n)
		return 0;
	if (k < 0 && errno != EFAULT) {
		/* No process_vm_* (seccomp, old kernel): plain copy, as
		 * before; a bad pointer then faults in the application. */
		if (to_remote)
			memcpy(remote, local, n);
		else
			memcpy(local, remote, n);
		return 0;
	}
	return -EFAULT;
}

/* Below vm.mmap_min_addr's default (64 KiB) nothing is ever mapped; user
 * space ends at 2^47 on x86-64 with 4-level paging (2^56 with 5-level), so
 * anything at or above 2^56 is never a user address. */
#define NK_GL_UMIN ((uintptr_t)65536)
#define NK_GL_UMAX ((uintptr_t)1 << 56)

static bool nk_gl_urange_ok(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	return n == 0 || (a >= NK_GL_UMIN && a < NK_GL_UMAX && n <= NK_GL_UMAX - a);
}

int nk_gl_ucopy_in(void *dst, const void *usrc, size_t n)
{
	if (!nk_gl_urange_ok(usrc, n))
		return -EFAULT;
	memcpy(dst, usrc, n);
	return 0;
}

int nk_gl_ucopy_out(void *udst, const void *src, size_t n)
{
	if (!nk_gl_urange_ok(udst, n))
		return -EFAULT;
	memcpy(udst, src, n);
	return 0;
}

int nk_gl_copy_in(void *dst, const void *usrc, size_t n)
{
	return nk_gl_vm_copy(dst, (void *)usrc, n, false);
}

int nk_gl_copy_out(void *udst, const void *src, size_t n)
{
	return nk_gl_vm_copy((void *)src, udst, n, true);
}
