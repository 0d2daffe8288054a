/* SPDX-License-Identifier: MIT */
/*
 * nk_stack.h - the interface between the ServiceLib (nk_sl_*) and one network
 * stack (nk_ks_* = the Linux kernel stack, later a DPDK userspace stack).
 *
 * The ServiceLib owns everything NetKernel-specific: the control socket, the
 * rings, chunks, credits, the socket table and the order of operations. A
 * stack only moves bytes and connections. It identifies its sockets by an
 * opaque handle (int64_t; the kernel stack uses the fd) and reports readiness
 * for a ServiceLib socket id, so the ServiceLib never sees fds.
 *
 * Readiness: the ServiceLib says which events it wants per socket
 * (set_events). A stack whose sockets are fds registers them in the
 * ServiceLib's epoll set (cfg.epfd) with data.u64 = NK_SL_TAG_SOCK | id, so a
 * single epoll_wait covers the control socket, the doorbell and all sockets.
 * A polling stack (DPDK) instead implements poll() and reports through the
 * callback; the ServiceLib then never sleeps longer than its spin budget.
 * Events use the epoll bit values (NK_EV_*), level-triggered semantics: a
 * stack keeps reporting a condition while it holds and the event is wanted.
 * When no event is wanted the stack must not report anything for the socket,
 * not even errors (the kernel stack removes the fd from epoll).
 *
 * All functions return 0 / a count, or -errno; they never block.
 */
#ifndef NK_STACK_H
#define NK_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define NK_EV_IN  EPOLLIN
#define NK_EV_OUT EPOLLOUT
#define NK_EV_ERR EPOLLERR
#define NK_EV_HUP EPOLLHUP

/** epoll data tags: high 32 bits say what, low 32 bits carry an id. */
#define NK_SL_TAG_CTL  (1ull << 32)
#define NK_SL_TAG_DOWN (2ull << 32)
#define NK_SL_TAG_SIG  (3ull << 32)
#define NK_SL_TAG_SOCK (4ull << 32)
#define NK_SL_TAG_MASK (0xffffffffull << 32)

struct nk_stack; /* stack-private state */

struct nk_stack_cfg {
	const char *cc;  /**< congestion control applied to every stream socket */
	bool mptcp;      /**< stream sockets use IPPROTO_MPTCP */
	int epfd;        /**< the ServiceLib's epoll set (fd-based stacks) */
};

typedef void (*nk_stack_event_cb)(void *arg, uint32_t id, uint32_t events);

struct nk_stack_ops {
	const char *name;
	/** Set up; probe that the configuration works (cc exists, MPTCP on). */
	int (*init)(struct nk_stack **st, const struct nk_stack_cfg *cfg, char *err, size_t errlen);
	void (*fini)(struct nk_stack *st);
	/** New non-blocking socket for ServiceLib socket id; applies the cc. */
	int (*socket)(struct nk_stack *st, uint32_t id, int domain, int type, int protocol,
		      int64_t *h);
	/** no_port: the bind only fixes the source address for a connect
	 *  (IP_BIND_ADDRESS_NO_PORT), the port is picked by connect. */
	int (*bind)(struct nk_stack *st, int64_t h, const struct sockaddr *sa, socklen_t len,
		    bool no_port);
	int (*listen)(struct nk_stack *st, int64_t h, int backlog);
	/** 0 connected, -EINPROGRESS (then wait for NK_EV_OUT), or -errno. */
	int (*connect)(struct nk_stack *st, int64_t h, const struct sockaddr *sa, socklen_t len);
	/** After NK_EV_OUT/ERR on a connecting socket: 0, -EINPROGRESS, -errno. */
	int (*connect_result)(struct nk_stack *st, int64_t h);
	/** -EAGAIN when nothing is pending. New socket gets id new_id and the cc. */
	int (*accept)(struct nk_stack *st, int64_t h, uint32_t new_id, int64_t *nh,
		      struct sockaddr_storage *peer, socklen_t *plen);
	int (*shutdown)(struct nk_stack *st, int64_t h, int how);
	int (*setsockopt)(struct nk_stack *st, int64_t h, int level, int name, const void *v,
			  socklen_t len);
	int (*getsockopt)(struct nk_stack *st, int64_t h, int level, int name, void *v,
			  socklen_t *len);
	int (*getsockname)(struct nk_stack *st, int64_t h, struct sockaddr_storage *sa,
			   socklen_t *len);
	/** Bytes written (maybe partial), -EAGAIN, or -errno. to may be NULL. */
	ssize_t (*sendv)(struct nk_stack *st, int64_t h, const struct iovec *iov, int iovcnt,
			 const struct sockaddr *to, socklen_t tolen);
	/** Bytes read, 0 = end of stream, -EAGAIN, or -errno. */
	ssize_t (*recv)(struct nk_stack *st, int64_t h, void *buf, size_t len,
			struct sockaddr_storage *from, socklen_t *fromlen);
	/** Optional: a stream read scattered over several buffers (one
	 *  syscall for many chunks). Bytes read, 0 = end, -EAGAIN, -errno. */
	ssize_t (*recvv)(struct nk_stack *st, int64_t h, const struct iovec *iov, int iovcnt);
	/** Wanted events (NK_EV_IN/NK_EV_OUT); 0 = report nothing at all. */
	int (*set_events)(struct nk_stack *st, int64_t h, uint32_t id, uint32_t events);
	/** abort: reset instead of an orderly close. */
	void (*close)(struct nk_stack *st, int64_t h, bool abort);
	/** Optional (polling stacks): report ready sockets; returns events seen. */
	int (*poll)(struct nk_stack *st, nk_stack_event_cb cb, void *arg);
};

/** The Linux kernel stack (TCP with a chosen cc, or MPTCP). */
extern const struct nk_stack_ops nk_ks_ops;

#endif /* NK_STACK_H */
