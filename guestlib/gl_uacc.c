/* SPDX-License-Identifier: MIT */
/*
 * gl_uacc.c - copying to and from the application's pointers with EFAULT.
 *
 * libc passes the caller's pointers to the kernel, which answers EFAULT for
 * an unmapped one; GuestLib reads and writes them itself, where a bad
 * pointer would be a SIGSEGV inside the library. process_vm_readv/writev on
 * our own pid is the kernel's copy_from_user/copy_to_user: the same check,
 * no signal handler, thread-safe. It costs one syscall per copied region,
 * which the data path pays once per chunk (16 KiB), next to a ring post.
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

int nk_gl_copy_in(void *dst, const void *usrc, size_t n)
{
	return nk_gl_vm_copy(dst, (void *)usrc, n, false);
}

int nk_gl_copy_out(void *udst, const void *src, size_t n)
{
	return nk_gl_vm_copy((void *)src, udst, n, true);
}
