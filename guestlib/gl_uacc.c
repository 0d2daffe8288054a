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
 *
 * Most control-path pointers point into the caller's stack (nginx passes
 * &local to setsockopt twice per response, which made process_vm_readv 4 %
 * of the whole machine's CPU under wrk). Every address between the stack
 * pointer and the top of the mapping that holds it is mapped and writable,
 * so a pointer there is copied with memcpy: the same answer process_vm_*
 * would give, without a syscall. A thread learns its stack mapping from
 * /proc/self/maps after NK_GL_STK_AFTER slow copies (so a thread that makes
 * one or two control calls never pays for the read).
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define NK_GL_STK_AFTER 4

/* The calling thread's stack mapping [lo, hi), once known; a thread that
 * could not find it stays on the syscall path. */
enum { NK_GL_STK_UNKNOWN, NK_GL_STK_KNOWN, NK_GL_STK_NONE };
static __thread struct {
	uintptr_t lo, hi;
	uint32_t slow;
	uint8_t state; /* NK_GL_STK_* */
} nk_gl_stk;

static int nk_gl_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* One maps line "lo-hi rw.p ...": true when it holds sp and is rw. */
static bool nk_gl_stk_line(const char *l, size_t n, uintptr_t sp)
{
	uintptr_t v[2] = { 0, 0 };
	size_t i = 0;
	for (int k = 0; k < 2; k++) {
		int d, digits = 0;
		while (i < n && (d = nk_gl_hexval(l[i])) >= 0 && digits < 16) {
			v[k] = v[k] << 4 | (uintptr_t)d;
			i++, digits++;
		}
		if (!digits || i >= n || l[i] != (k ? ' ' : '-'))
			return false;
		i++;
	}
	if (sp < v[0] || sp >= v[1] || i + 2 > n || l[i] != 'r' || l[i + 1] != 'w')
		return false;
	nk_gl_stk.lo = v[0];
	nk_gl_stk.hi = v[1];
	return true;
}

/* Raw syscalls: GuestLib interposes read/close, and this must not malloc. */
static void nk_gl_stk_learn(uintptr_t sp)
{
	char buf[4096];
	size_t have = 0;
	nk_gl_stk.state = NK_GL_STK_NONE;
	long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (;;) {
		long r = syscall(SYS_read, (int)fd, buf + have, sizeof(buf) - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t start = 0;
		for (size_t i = 0; i < have; i++) {
			if (buf[i] != '\n')
				continue;
			if (nk_gl_stk_line(buf + start, i - start, sp)) {
				nk_gl_stk.state = NK_GL_STK_KNOWN;
				syscall(SYS_close, (int)fd);
				return;
			}
			start = i + 1;
		}
		/* keep the unfinished line; a line longer than buf is skipped */
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == sizeof(buf))
			have = 0;
	}
	syscall(SYS_close, (int)fd);
}

/* [p, p+n) lies between the stack pointer and the top of its mapping. */
static bool nk_gl_on_live_stack(const void *p, size_t n)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0), a = (uintptr_t)p;
	if (nk_gl_stk.state != NK_GL_STK_KNOWN) {
		if (nk_gl_stk.state != NK_GL_STK_UNKNOWN || ++nk_gl_stk.slow < NK_GL_STK_AFTER)
			return false;
		nk_gl_stk_learn(sp);
		if (nk_gl_stk.state != NK_GL_STK_KNOWN)
			return false;
	}
	return sp >= nk_gl_stk.lo && sp < nk_gl_stk.hi && a >= sp && a < nk_gl_stk.hi &&
	       n <= nk_gl_stk.hi - a;
}

static int nk_gl_vm_copy(void *local, void *remote, size_t n, bool to_remote)
{
	if (n == 0)
		return 0;
	if (nk_gl_on_live_stack(remote, n)) {
		if (to_remote)
			memcpy(remote, local, n);
		else
			memcpy(local, remote, n);
		return 0;
	}
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
