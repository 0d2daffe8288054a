/* SPDX-License-Identifier: MIT */
/*
 * nk_sl.h - ServiceLib internals: the NSM side of the NetKernel protocol.
 *
 * One thread. The ServiceLib consumes the NSM channel's down ring (requests
 * from the CoreEngine), turns them into nk_stack operations, and produces the
 * up ring (completions, received data, new connections). All state is private
 * memory; shared memory is only read through copied NQEs and written as chunk
 * payload (RX chunks granted to us, GETSOCKOPT result chunks).
 */
#ifndef NK_SL_H
#define NK_SL_H

#include <stdbool.h>
#include <stdint.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_prefix.h"
#include "nk_region.h"
#include "nk_stack.h"

#define NK_SL_MAX_VMS   65536u     /* nqe.vm is 16 bits */
#define NK_SL_MAX_SOCKS (1u << 20) /* socket ids we hand out */
#define NK_SL_TXQ_MAX   4096u      /* queued SEND/SHUTDOWN per socket (CE caps at 32) */
#define NK_SL_BACKLOG_SOFT 4096u   /* stop consuming the down ring beyond this */
#define NK_SL_RX_BURST  16u        /* recvs per socket per event, for fairness */
#define NK_SL_RX_BATCH  8u         /* chunks one stream read may fill */
#define NK_SL_CLOSE_LINGER_NS (30ull * 1000000000ull) /* CLOSE flush limit */

/** One attached VM: its mapped region and the RX chunks granted to us. */
struct nk_sl_vm {
	uint16_t index;
	char name[NK_NAME_MAX];
	uint8_t ipv4[4];           /* network order; 0.0.0.0 = no address */
	struct nk_region reg;
	uint32_t nchunks;          /* TX + RX chunks: every valid index is below */
	uint32_t chunk_size;
	uint32_t *stash;           /* granted, unused RX chunks (LIFO) */
	uint32_t nstash;
	uint8_t *in_stash;         /* per chunk: catches a chunk granted twice */
	bool starved;              /* a socket stopped reading for lack of chunks */
};

enum nk_sl_state {
	NK_SLS_FREE = 0,
	NK_SLS_OPEN,       /* created (maybe bound) */
	NK_SLS_LISTENING,
	NK_SLS_CONNECTING,
	NK_SLS_CONNECTED,
};

enum nk_sl_txkind { NK_TXQ_SEND = 1, NK_TXQ_SHUTDOWN = 2 };

/** A queued SEND (chunk owned by us until SEND_DONE) or an ordered SHUTDOWN. */
struct nk_sl_txq {
	struct nk_nqe req;  /* the request as received (echoed on completion) */
	uint32_t done;      /* SEND: bytes already written */
	uint8_t kind;
};

/* Guest loopback (nk_sl_ops.c): 127.0.0.0/8, ::ffff:127.0.0.0/104 and ::1
 * of a guest are its VM's own address here; a socket bound there is marked
 * `loop` and only talks to the VM's own address. */
struct nk_sl_vm;
bool nk_sl_loop_dest(const struct nk_sl_vm *v, struct nk_addr *a);
bool nk_sl_loop_peer_ok(const struct nk_sl_vm *v, const struct nk_addr *a);
void nk_sl_loop_report(const struct nk_sl_vm *v, struct nk_addr *a);

#define NK_SL_TXP_MAX 64u

struct nk_sl_sock {
	uint32_t id;
	uint16_t vm;
	bool tx_pending;   /* SENDs queued since the last nk_sl_tx_flush */
	uint8_t state;     /* enum nk_sl_state */
	bool stream;       /* SOCK_STREAM (else SOCK_DGRAM) */
	int domain;        /* AF_INET / AF_INET6 */
	bool bound;
	bool rx_stop;      /* FIN/error delivered: never read again */
	bool closing;      /* CLOSE received: flushing, then CLOSED */
	bool abort;        /* CLOSE with NK_NQF_ABORT: reset, drop queued data */
	bool stash_wait;   /* reading stopped for lack of RX chunks */
	int64_t h;         /* stack handle */
	uint32_t rx_out;   /* rx entries posted minus RX_CREDIT */
	bool credit_wait;  /* out of rx credit (counted in nk_sl.credit_waits) */
	uint32_t events;   /* events currently asked from the stack */
	int tx_err;        /* sticky send error (negative), fails later SENDs */
	bool conn_pending; /* a CONNECT waits for its completion */
	struct nk_nqe conn_req;
	struct nk_sl_txq *q; /* ring buffer of queued SEND/SHUTDOWN */
	uint32_t qhead, qcount, qcap;
	uint64_t close_deadline;
	uint32_t next_free;  /* free list link */
	/* Sessions between NetKernel hosts (nk_sl_sess.c) */
	uint64_t sess;        /* session id, 0 = plain connection */
	uint64_t tx_bytes;    /* application bytes written, all legs */
	uint64_t rx_bytes;    /* application bytes read, all legs */
	uint8_t pre[24];      /* hello to write before any data */
	uint8_t pre_len, pre_off;
	uint8_t hin[24];      /* hello to read before any data */
	uint8_t hin_got;
	uint8_t hin_want;     /* NK_SESS_ACK, NK_SESS_NEW (any client hello), 0 */
	bool internal;        /* never reported to the CE: session listener/leg */
	bool sess_listen;     /* the session port listener */
	bool mig_in;          /* new leg of a MIGRATE: complete after the ACK */
	uint64_t mig_first_ns; /* ... and when it first wrote guest bytes (0 = not yet) */
	bool mig_out;         /* MIGRATE_OUT: shut write once the queue drained */
	bool mig_shut;
	bool newconn_pending; /* NEWCONN waits for the client's hello */
	uint32_t listener;    /* its listener (credit reserved at accept) */
	int64_t h_tx;         /* write leg when it differs from h, else -1 */
	uint32_t events_tx;   /* events asked for h_tx */
	uint64_t rx_expect;   /* bytes the old leg must deliver before its EOF */
	struct nk_nqe mig_req; /* the MIGRATE to complete */
	struct nk_addr peer;  /* accepted: the client's address (NEWCONN) */
	bool has_next;        /* a RESUME arrived while the last one drains: */
	uint32_t next_leg;    /* that leg (internal socket) and its offset,  */
	uint64_t next_off;    /* linked when the current swap completes      */
	bool loop;            /* bound to the guest's loopback (nk_sl_loop_*) */
	bool wr_shut;         /* the application shut its write side */
	bool tx_fin_sent;     /* ... and the current write leg carries it */
};

struct nk_sl {
	const struct nk_stack_ops *ops;
	struct nk_stack *st;
	const char *name;
	const char *cc;
	bool mptcp;
	bool allow_guest_cc;
	uint32_t spin_us;
	bool spin_hold;            /* --spin-hold: cpu_relax, not sched_yield */

	int ctl, epfd, sigfd, up_efd, down_efd;
	uint32_t index;            /* our NSM index in the CE */
	struct nk_region nreg;
	struct nk_ring up, down;
	bool kick;                 /* up ring produced since the last doorbell check */

	struct nk_sl_vm **vms;     /* NK_SL_MAX_VMS entries, NULL = not attached */

	struct nk_sl_sock **socks; /* by id; stable pointers */
	uint32_t nsocks_cap, free_head, nused, nclosing;
	/* Sockets that stopped reading for lack of rx credit: while there is
	 * one, RX_CREDIT must wake us (NK_WAKE_ANY); with none we sleep
	 * through it (NK_WAKE_URGENT, nk_abi.h). */
	uint32_t credit_waits;

	/* Sockets with SENDs queued during the current burst of down-ring
	 * NQEs: written once the burst is dispatched, so the chunks of one
	 * application write go out in one sendmsg. An id may repeat (freed
	 * and reused within a burst); its tx_pending flag makes that harmless. */
	uint32_t txp[NK_SL_TXP_MAX];
	uint32_t ntxp;

	/* NQEs that did not fit the up ring, in order. Everything produced goes
	 * behind them, so order towards the CE is kept. */
	struct nk_nqe *bl;
	uint32_t bl_head, bl_count, bl_cap;

	/* --nk-peers: IPv4 prefixes whose hosts run NetKernel (sessions) */
	struct nk_prefixes peers;

	bool stop;                 /* SIGTERM/SIGINT or CE gone */
	uint64_t n_invalid;        /* NQEs that failed validation */
};

/* nk_sl_ctl.c: control socket, VMs, the up ring */
int nk_sl_ctl_hello(struct nk_sl *sl, const char *path, char *err, size_t errlen);
int nk_sl_ctl_drain(struct nk_sl *sl);
struct nk_sl_vm *nk_sl_vm_find(struct nk_sl *sl, uint16_t vm);
void nk_sl_vm_detach_all(struct nk_sl *sl);
void nk_sl_post(struct nk_sl *sl, const struct nk_nqe *nqe);
bool nk_sl_can_produce(struct nk_sl *sl);
int nk_sl_flush_backlog(struct nk_sl *sl);
void nk_sl_kick(struct nk_sl *sl);
void nk_sl_complete(struct nk_sl *sl, const struct nk_nqe *req, int32_t result);
void nk_sl_log(struct nk_sl *sl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* nk_sl_sock.c: socket table and the data path */
struct nk_sl_sock *nk_sl_sock_new(struct nk_sl *sl, uint16_t vm);
struct nk_sl_sock *nk_sl_sock_open(struct nk_sl *sl, uint16_t vm, int domain, int type,
				   int protocol, int *err);
struct nk_sl_sock *nk_sl_sock_get(struct nk_sl *sl, const struct nk_nqe *nqe);
void nk_sl_sock_drop(struct nk_sl *sl, struct nk_sl_sock *s, bool post_closed);
void nk_sl_sock_update(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_sock_send(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req);
void nk_sl_sock_shutdown(struct nk_sl *sl, struct nk_sl_sock *s, const struct nk_nqe *req);
void nk_sl_sock_close(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_sock_event(void *arg, uint32_t id, uint32_t events);
void nk_sl_vm_wake(struct nk_sl *sl, struct nk_sl_vm *v);
void nk_sl_check_closing(struct nk_sl *sl, uint64_t now);
void nk_sl_drop_vm_socks(struct nk_sl *sl, uint16_t vm);
void nk_sl_socks_fini(struct nk_sl *sl);
uint64_t nk_sl_now_ns(void);

void nk_sl_sock_forget(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_tx_run(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_tx_flush(struct nk_sl *sl);

/* nk_sl_sess.c: sessions between NetKernel hosts, live switching */
bool nk_sl_peer_is_nk(const struct nk_sl *sl, const struct sockaddr_storage *ss);
void nk_sl_sess_prefix(struct nk_sl_sock *s, uint8_t kind, uint64_t sess, uint64_t off);
int nk_sl_sess_write_prefix(struct nk_sl *sl, struct nk_sl_sock *s, int64_t th);
int nk_sl_sess_read_hello(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_sess_accepted(struct nk_sl *sl, struct nk_sl_sock *lis, struct nk_sl_sock *ns,
			 const struct sockaddr_storage *peer);
void nk_sl_sess_listen(struct nk_sl *sl, struct nk_sl_vm *v);
bool nk_sl_sess_old_leg_eof(struct nk_sl *sl, struct nk_sl_sock *s, int *err);
size_t nk_sl_sess_rx_room(struct nk_sl *sl, struct nk_sl_sock *s, size_t want);
void nk_sl_op_migrate(struct nk_sl *sl, const struct nk_nqe *req);
void nk_sl_op_migrate_out(struct nk_sl *sl, struct nk_sl_sock *s);
void nk_sl_sess_connected(struct nk_sl *sl, struct nk_sl_sock *s, int r);

/* nk_sl_ops.c: one down-ring NQE */
void nk_sl_dispatch(struct nk_sl *sl, const struct nk_nqe *nqe);
void nk_sl_addr_from_sa(struct nk_addr *a, const struct sockaddr_storage *ss);
int nk_sl_addr_to_sa(const struct nk_addr *a, struct sockaddr_storage *ss, socklen_t *len);
int nk_sl_autobind(struct nk_sl *sl, struct nk_sl_sock *s, bool no_port);

#endif /* NK_SL_H */
