/* SPDX-License-Identifier: MIT */
/*
 * nk_gl.h - GuestLib internals (never installed, never exported).
 *
 * GuestLib is an LD_PRELOAD library: gl_intercept.c defines the libc socket
 * entry points (exports.map keeps every other symbol local) and forwards
 * NetKernel fds to the nk_gl_* cores below; everything else goes to the real
 * libc function found with dlsym(RTLD_NEXT).
 *
 * Concurrency model
 *   - One process mutex (nk_gl.lock) guards all process-local state: the
 *     channel (up ring production, down ring consumption), the TX pool,
 *     pending requests, socket objects and epoll interest lists. Blocking
 *     calls drop it only inside nk_gl_wait(), while asleep in poll().
 *   - The fd table is read without the lock (one atomic load) so that the
 *     interposers cost non-NetKernel fds, including the AF_UNIX control
 *     socket GuestLib itself uses, a single load; writes happen under the
 *     lock and are re-checked under it by every NetKernel operation.
 *   - The socket slot's guest line is shared by the processes of one VM
 *     (fork): its `lock` word serialises rx ring consumption between them.
 *
 * Error conventions: nk_gl_* cores return >= 0 or -errno; the interposers
 * turn that into -1/errno.
 *
 * Documented decisions
 *   - NK_VM unset: socket(AF_INET*) fails with ENETDOWN ("Network is down")
 *     and one stderr line; it is not a caller error, so not EINVAL.
 *   - Reserved fds are eventfds opened close-on-exec: a program exec'd with
 *     inherited NetKernel sockets sees EBADF on them (its own GuestLib has no
 *     channel holding those sockets).
 *   - fork(): the atfork prepare handler asks the CoreEngine for a channel
 *     holding every socket of ours, which the child adopts (ARCHITECTURE.md,
 *     fork()); if that is refused, the child detaches and its inherited
 *     sockets fail with EIO but can be closed.
 *   - A blocking send/recv/accept/connect interrupted by a signal restarts
 *     when every handler that could have run has SA_RESTART and the socket
 *     has no timeout (Linux's rule; GuestLib cannot tell which signal came,
 *     so a mix of handlers with and without SA_RESTART gives EINTR);
 *     poll/select/epoll_wait always return EINTR, as in Linux. A blocking
 *     connect interrupted keeps connecting.
 *   - The CoreEngine going away (control socket EOF) makes every NetKernel
 *     call fail with ECONNRESET instead of hanging.
 *   - VM mode (NK_DEVICE set by the guest's /init): the region is the NK
 *     device's PCI BAR, the channel is claimed through its control lines
 *     (gl_vm.c), there are no fds (ctl/up/down stay -1) and waits poll with
 *     back-off; a state line that leaves OPEN, or a heartbeat that stops
 *     for 10 s, counts as the control socket's EOF.
 *   - UDP: one rx DATA entry is one datagram (a read returns one, the part
 *     that does not fit is dropped); recvfrom names the sender the NSM wrote
 *     into the chunk's header (NK_DGRAM_HDR), copied and validated, else the
 *     connected peer; sendto/sendmsg pass their destination in the SEND's
 *     arg.addr; send without one on an unconnected UDP socket fails
 *     EDESTADDRREQ; datagrams larger than one chunk (minus the header on
 *     receive) fail EMSGSIZE (one SEND = one datagram); a zero-length
 *     datagram is one empty SEND / DATA entry; MSG_TRUNC as Linux UDP.
 *   - Application pointers are copied through gl_uacc.c: EFAULT for any bad
 *     pointer on the control path, for NULL-page/non-user ones on the data
 *     path (a full check costs more than the copy);
 *     name resolution is GuestLib's (gl_dns.c), since glibc's resolver calls
 *     its socket functions internally, out of LD_PRELOAD's reach.
 */
#ifndef NK_GL_H
#define NK_GL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_pool.h"
#include "nk_region.h"

/* ------------------------------------------------------------------ */
/* Real libc functions (gl_real.c)                                     */

#define NK_GL_REAL_LIST(X)                                                     \
	X(socket) X(bind) X(listen) X(accept) X(accept4) X(connect) X(send)    \
	X(sendto) X(sendmsg) X(recv) X(recvfrom) X(recvmsg) X(read) X(write)   \
	X(readv) X(writev) X(close) X(shutdown) X(setsockopt) X(getsockopt)    \
	X(getsockname) X(getpeername) X(fcntl) X(fcntl64) X(ioctl) X(poll)     \
	X(ppoll) X(select) X(pselect) X(epoll_create) X(epoll_create1)         \
	X(epoll_ctl) X(epoll_wait) X(epoll_pwait) X(dup) X(dup2) X(dup3)       \
	X(sendfile) X(sendfile64) X(__read_chk) X(__recv_chk)                  \
	X(__recvfrom_chk) X(__poll_chk) X(__ppoll_chk) X(eventfd)              \
	X(sendmmsg) X(recvmmsg) X(getaddrinfo) X(gethostbyname)                \
	X(gethostbyname2) X(gethostbyname_r) X(gethostbyname2_r)

enum nk_gl_sym {
#define NK_GL_ENUM(fn) NK_GL_SYM_##fn,
	NK_GL_REAL_LIST(NK_GL_ENUM)
#undef NK_GL_ENUM
	NK_GL_SYM_COUNT
};

void *nk_gl_sym(enum nk_gl_sym idx);
/** REAL(read)(fd, buf, n): the next definition of read after GuestLib. */
#define REAL(fn) ((__typeof__(fn) *)nk_gl_sym(NK_GL_SYM_##fn))

/* glibc's fortify entry points have no public prototypes. */
ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       __SOCKADDR_ARG addr, socklen_t *addrlen);
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *ts,
		const sigset_t *ss, size_t fdslen);
void __chk_fail(void) __attribute__((noreturn));

/* ------------------------------------------------------------------ */
/* Sockets                                                             */

#define NK_GL_SOCK_TX_MAX 32u /* SEND chunks in flight per socket (ARCHITECTURE.md) */
/* Asynchronous SETSOCKOPTs in flight per process (gl_opt.c); beyond that a
 * setsockopt waits. Their completions, with the TX chunks' SEND_DONEs,
 * must fit the down ring while nobody drains it. */
#define NK_GL_ASYNC_MAX 32u

enum nk_gl_conn { NK_GL_CONN_NONE, NK_GL_CONN_PENDING, NK_GL_CONN_DONE, NK_GL_CONN_FAILED };

/** A pending request waiting for its completion on the down ring. */
struct nk_gl_req {
	struct nk_gl_req *next;
	uint64_t cookie;
	uint8_t op;
	bool done;
	struct nk_gl_sock *sock; /* async CONNECT: the socket to update */
	struct nk_nqe resp;      /* the completion, copied */
};

/** One NetKernel socket as this process sees it. Shared by every fd of the
 *  process that refers to it (dup); freed when refs drops to 0. */
struct nk_gl_sock {
	uint32_t id;              /* guest socket id = slot index (< nsocks) */
	struct nk_sock_slot *slot;
	int domain, type, protocol;
	uint32_t nfds;            /* fd table entries pointing here */
	uint32_t refs;            /* nfds + in-flight chunks + requests + callers */
	bool nonblock;            /* O_NONBLOCK is per open file: shared by dups */
	bool listening;
	bool shut_rd, shut_wr;
	bool eof;                 /* this process consumed the FIN entry */
	bool stale;               /* inherited over fork: no channel holds it */
	bool corrupt;             /* shared state failed validation: EIO */
	uint8_t conn;             /* enum nk_gl_conn */
	int so_error;             /* local pending error (failed async connect) */
	int send_err;             /* error of a failed SEND_DONE, for the next send */
	uint32_t seen_err_seq;    /* slot err_seq last reported */
	uint32_t tx_inflight;     /* SEND chunks at the host */
	uint32_t ev_seq;          /* local readiness changes (edge-triggered epoll) */
	struct timeval rcvtimeo, sndtimeo;
	struct nk_gl_req conn_req;
	struct nk_addr rx_src;    /* datagram: sender of the last one read (copied) */
	uint32_t rx_dlen;         /* datagram: full length of the last one read */
	bool rx_trunc;            /* datagram: the last read dropped bytes (MSG_TRUNC) */
	struct nk_addr tx_dest;   /* datagram: destination of the send in progress */
	bool tx_dest_set;
};

/* ------------------------------------------------------------------ */
/* Process state                                                       */

enum nk_gl_state { NK_GL_DETACHED = 0, NK_GL_ATTACHED = 1, NK_GL_DEAD = 2 };

struct nk_gl_proc {
	pthread_mutex_t lock;
	int state;                /* enum nk_gl_state */
	int ctl_fd, up_efd, down_efd;
	uint32_t chan;
	struct nk_region reg;
	struct nk_ring up, down;
	struct nk_pool pool;      /* free chunks of this channel's TX partition */
	struct nk_gl_sock **tx_owner; /* per partition chunk: socket of a SEND */
	uint32_t nchunks;         /* chunks in the region (bounds checks) */
	uint64_t next_cookie;
	struct nk_gl_req *reqs;   /* pending requests */
	int sleepers;             /* threads asleep in nk_gl_wait */
	int tx_sleepers;          /* ... of which wait for TX room (NK_WAKE_ANY) */
	uint32_t spins;           /* NK_GUEST_SPINS: rounds of 32 pauses before sleeping */
	uint32_t tx_seq;          /* SEND_DONEs processed (ET epoll POLLOUT) */
	uint32_t pid;             /* cached for the slot lock */
	bool warned;              /* the one stderr line was printed */
	uint32_t key[2];          /* this channel's key (asks for a fork child) */
	/* Set by the atfork prepare handler: the child's channel, which the
	 * child adopts and the parent closes (-1: none, child detaches). */
	int fork_ctl, fork_up, fork_down;
	uint32_t fork_chan, fork_key[2];
	uint64_t bad_nqes;        /* completions that failed validation */
	uint32_t async_out;       /* asynchronous SETSOCKOPTs not yet completed */
	uint64_t async_failed;    /* ... that the NSM refused after we said 0 */
	/* VM mode (gl_vm.c): the channel came from the NK device's control
	 * lines; no control socket, no doorbells (fds stay -1) */
	bool vmmode;
	uint32_t vc_seq;          /* our channel's incarnation */
	uint32_t vc_beat;         /* last CoreEngine heartbeat seen ... */
	uint64_t vc_beat_ms;      /* ... and when it changed */
	bool fork_vm;             /* prepare handler claimed the child's channel */
	uint32_t fork_seq;
};

extern struct nk_gl_proc nk_gl;

static inline void nk_gl_lock(void) { pthread_mutex_lock(&nk_gl.lock); }
static inline void nk_gl_unlock(void) { pthread_mutex_unlock(&nk_gl.lock); }

/* gl_attach.c */
int nk_gl_attach(void);                 /* under lock; 0 or -errno */
bool nk_gl_is_internal(int fd);         /* control socket or doorbell */
int nk_gl_protect_fd(int fd);           /* move an internal fd off `fd` */

/* gl_vm.c: VM mode */
#define NK_GL_VM_POLL_MAX_US 1000        /* poll step of a young wait */
#define NK_GL_VM_IDLE_AFTER_US 100000    /* a wait this old is idle ... */
#define NK_GL_VM_IDLE_MAX_US 10000       /* ... and polls at most this slowly */
#define NK_GL_VM_IDLE2_AFTER_US 1000000  /* a wait this old ... */
#define NK_GL_VM_IDLE2_MAX_US 50000      /* ... at most this slowly */
int nk_gl_vm_map(struct nk_region *reg, char *err, size_t errlen);
void nk_gl_vm_release_mine(const struct nk_region *reg);
int nk_gl_vm_claim(const struct nk_region *reg, uint32_t fork_of, const uint32_t pkey[2],
		   uint32_t *chan, uint32_t *seq, uint32_t key[2]);
void nk_gl_vm_adopt_pid(const struct nk_region *reg, uint32_t c, uint32_t seq);
bool nk_gl_vm_alive(void);
void nk_gl_vm_backoff(uint32_t *us);

/* gl_fd.c: the fd table */
#define NK_GL_FD_MAX (1 << 20)
struct nk_gl_sock *nk_gl_fd_peek(int fd);        /* lock-free */
int nk_gl_fd_set(int fd, struct nk_gl_sock *s);  /* under lock */
void nk_gl_fd_clear(int fd);                     /* under lock */
/* FD_CLOEXEC as the application sees it (the reserved fd itself is always
 * close-on-exec); under lock. */
bool nk_gl_fd_cloexec(int fd);
void nk_gl_fd_set_cloexec(int fd, bool on);
void nk_gl_fd_mark_stale(void);                  /* fork child, no channel */
void nk_gl_fd_fork_keep(void);                   /* fork child, own channel */
/** Look up fd; if NetKernel: lock taken, reference held, returns it. NULL:
 *  not a NetKernel fd, lock not held. */
struct nk_gl_sock *nk_gl_get(int fd);
void nk_gl_put(struct nk_gl_sock *s);             /* drops ref and lock */
void nk_gl_sock_unref(struct nk_gl_sock *s);      /* under lock */
/** Drop fd's mapping (close/dup2 over it): CLOSE when the last fd goes. */
void nk_gl_fd_drop(int fd);
int nk_gl_reserve_fd(void);                      /* eventfd, or -errno */
int nk_gl_close(int fd);
int nk_gl_dup(int oldfd, int newfd, int flags, int mode);
struct nk_gl_sock *nk_gl_sock_new(uint32_t id, int domain, int type, int protocol);

/* gl_chan.c: the channel */
int nk_gl_post(struct nk_nqe *q);       /* under lock; may drop it briefly */
void nk_gl_drain(void);                  /* under lock */
int nk_gl_request(struct nk_nqe *q, struct nk_nqe *resp); /* sync op */
uint64_t nk_gl_cookie(void);
/** Block until check(arg) is true. Under lock (dropped while asleep).
 *  needs_tx(arg) (NULL = never) says whether returned TX chunks
 *  (SEND_DONE) could make check true: only then is the sleep woken for
 *  them (NK_WAKE_ANY), else it sleeps through them (NK_WAKE_URGENT).
 *  deadline NULL = forever. kfds: kernel fds to watch as well.
 *  Returns 1 check true, 2 a kernel fd is ready, 0 timed out, -EINTR,
 *  -ECONNRESET if the CoreEngine is gone. */
int nk_gl_wait(bool (*check)(void *), bool (*needs_tx)(void *), void *arg,
	       const struct timespec *deadline, struct pollfd *kfds, nfds_t nk,
	       const sigset_t *sigmask);
/* Wake this process's threads asleep in nk_gl_wait: they re-run their checks. */
void nk_gl_wake_sleepers(void);
/** nk_gl_wait for a blocking socket call (no kernel fds): a signal whose
 *  handler has SA_RESTART restarts the wait, as Linux restarts the call. */
int nk_gl_wait_io(bool (*check)(void *), bool (*needs_tx)(void *), void *arg,
		  const struct timespec *deadline);
void nk_gl_deadline(struct timespec *dl, long ms);     /* now + ms */
bool nk_gl_timeval_deadline(const struct timeval *tv, struct timespec *dl);
bool nk_gl_slot_bad(struct nk_gl_sock *s);       /* corrupt/stale checks */

/* gl_uacc.c: the application's pointers, EFAULT instead of SIGSEGV.
 * copy_*: checked by the kernel (control path); ucopy_*: arithmetic check
 * only, memcpy speed (data path). */
int nk_gl_copy_in(void *dst, const void *usrc, size_t n);
int nk_gl_copy_out(void *udst, const void *src, size_t n);
int nk_gl_ucopy_in(void *dst, const void *usrc, size_t n);
int nk_gl_ucopy_out(void *udst, const void *src, size_t n);

/* gl_sock.c: control path */
int nk_gl_socket(int domain, int type, int protocol);
int nk_gl_bind(struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len);
int nk_gl_listen(struct nk_gl_sock *s, int backlog);
int nk_gl_connect(struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len);
int nk_gl_accept(struct nk_gl_sock *s, struct sockaddr *sa, socklen_t *len, int flags);
int nk_gl_shutdown(struct nk_gl_sock *s, int how);
/* hot: a per-datagram address (sendto/recvfrom): cheap pointer check */
int nk_gl_sa_to_addr(const struct nk_gl_sock *s, const struct sockaddr *sa, socklen_t len,
		     struct nk_addr *out, bool hot);
int nk_gl_addr_to_sa(const struct nk_gl_sock *s, const struct nk_addr *a,
		     struct sockaddr *sa, socklen_t *len, bool hot);
void nk_gl_slot_lock(struct nk_sock_slot *sl);
void nk_gl_slot_unlock(struct nk_sock_slot *sl);

/* gl_opt.c: options, names, fcntl, ioctl */
int nk_gl_getsockopt(struct nk_gl_sock *s, int level, int name, void *val, socklen_t *len);
int nk_gl_setsockopt(struct nk_gl_sock *s, int level, int name, const void *val,
		     socklen_t len);
int nk_gl_getname(struct nk_gl_sock *s, bool peer, struct sockaddr *sa, socklen_t *len);
int nk_gl_fcntl(struct nk_gl_sock *s, int fd, int cmd, unsigned long arg);
int nk_gl_ioctl(struct nk_gl_sock *s, unsigned long req, void *arg);

/* gl_io.c: data path */
ssize_t nk_gl_sendv(struct nk_gl_sock *s, const struct iovec *iov, int iovcnt, int flags);
ssize_t nk_gl_recvv(struct nk_gl_sock *s, const struct iovec *iov, int iovcnt, int flags);
ssize_t nk_gl_sendfile(struct nk_gl_sock *s, int in_fd, off_t *off, size_t count);
uint32_t nk_gl_rx_bytes(struct nk_gl_sock *s);

/* gl_poll.c: readiness, poll, select */
uint32_t nk_gl_readiness(struct nk_gl_sock *s);  /* POLL* bits, under lock */
bool nk_gl_writable(struct nk_gl_sock *s);
int nk_gl_poll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
	       const sigset_t *mask, bool *handled);
int nk_gl_select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timespec *ts,
		 const sigset_t *mask, bool *handled);

/* gl_epoll.c */
int nk_gl_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev, bool *handled);
int nk_gl_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout,
		     const sigset_t *mask, bool *handled);
void nk_gl_epoll_forget_fd(int fd);      /* under lock: fd closed */
void nk_gl_epoll_close(int epfd);        /* epfd closed */
extern int nk_gl_nep;                    /* epoll instances with NK entries */

#endif /* NK_GL_H */
