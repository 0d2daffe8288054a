/* SPDX-License-Identifier: MIT */
/*
 * nk_io.h - blocking socket I/O loops shared by the test programs (plain
 * POSIX; they run as NetKernel guests and natively alike).
 */
#ifndef NK_IO_H
#define NK_IO_H

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/** Send all of buf (MSG_NOSIGNAL). 0, or -1 with errno. */
static inline int nk_io_send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/** Receive exactly len bytes; returns the bytes read (< len at EOF) or -1. */
static inline ssize_t nk_io_recv_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

#endif /* NK_IO_H */
