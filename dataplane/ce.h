/* SPDX-License-Identifier: MIT */
/*
 * ce.h - CoreEngine internals (private to dataplane/ce_*.c).
 *
 * Everything here is host-private memory. Shared memory is only touched via
 * the rings (which copy NQEs out) and the socket slots' host lines, which the
 * CoreEngine alone writes.
 */
#ifndef NK_CE_H
#define NK_CE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_pool.h"
#include "nk_prefix.h"
#include "nk_region.h"

#define CE_MAX_VMS   64
#define CE_MAX_NSMS  16
#define CE_MAX_CHAN  64          /* holders are a 64-bit mask */
#define CE_CHAN_PENDING_MAX 64   /* control ops in flight per channel */
#define CE_MAX_NSM_SOCK (1u << 20)
#define CE_GRANT_TARGET 512      /* RX chunks an NSM keeps per VM */
#define CE_CHAN_BAD_MAX 1024     /* invalid NQEs before a channel is cut off */

/* Private chunk states. */
enum ce_chunk_state {
	CE_CK_GUEST = 0,   /* TX: at its channel's process. RX: never */
	CE_CK_HOST,        /* TX: at the NSM (send or getsockopt) */
	CE_CK_FREE,        /* RX: in the CoreEngine's free pool */
	CE_CK_GRANTED,     /* RX: in an NSM's stash */
	CE_CK_AT_GUEST,    /* RX: in a socket's rx ring / being read */
};

/* Private socket states. */
enum ce_sock_state {
	CE_SK_FREE = 0,
	CE_SK_OPENING,     /* SOCKET sent to the NSM */
	CE_SK_OPEN,        /* mapped to an NSM socket */
	CE_SK_CLOSING,     /* CLOSE sent, waiting for CLOSED */
	CE_SK_DEAD,        /* NSM lost or reset; no NSM socket; guest still holds it */
};

/* A token bucket (ce_iso.c). rate 0 = no limit. */
struct ce_tb {
	uint64_t rate;    /* units per second */
	uint64_t depth;   /* most units it holds */
	int64_t tokens;   /* may go below zero by one admitted cost */
	uint64_t last_ns;
};

struct ce_chan {
	bool used;          /* a live process owns it */
	bool dead;          /* process gone; reusable once drained */
	bool exiting;       /* process gone; still draining its up ring */
	uint32_t gen;       /* bumped on every allocation */
	int ctl_fd;
	pid_t pid;
	int up_efd, down_efd;
	struct nk_ring up, down;
	uint32_t pending;     /* control ops in flight */
	uint32_t tx_inflight; /* its TX chunks at the host */
	uint32_t bad;         /* invalid NQEs seen on it */
	uint32_t key[2];      /* random; proves a fork request comes from a holder */
};

struct ce_sock {
	uint8_t state;      /* enum ce_sock_state */
	bool unclaimed;     /* accepted, not yet popped by a guest */
	int8_t nsm;         /* serving NSM, -1 none */
	uint32_t nsm_sock;
	uint32_t parent;    /* listener of an unclaimed accepted socket */
	uint64_t holders;   /* channels holding it */
	uint32_t rx_tail;   /* private copy of the published rx_tail */
	struct nk_addr connect_to;
	bool stream;
	/* sessions and live switching (ce_mig.c) */
	uint64_t session;   /* 0 = peer not NetKernel-managed: drains on switch */
	uint64_t tx_bytes;  /* bytes handed to NSMs in SENDs */
	uint64_t rx_bytes;  /* bytes pushed into the rx ring */
	uint8_t mig;        /* enum ce_mig */
	bool mig_failed;    /* do not try again */
	int8_t old_nsm;     /* draining leg */
	uint32_t old_sock;
	uint64_t mig_rx_off; /* the peer's offset: old leg delivers this much */
	bool end_held;      /* FIN/error of the old leg seen while OPENING */
	int end_err;        /* its error (0 = FIN) */
	bool close_owed;    /* released in LINKING: close the old leg after the ACK */
	bool wr_shut;       /* the guest shut its write side: never moved */
	bool connected;     /* private copies of what the slot says: the  */
	bool fin_seen;      /* guest can write anything into its slot     */
	struct nk_addr peer;
	uint32_t rx_start;
	uint32_t rx_pending; /* entries pushed, RX_DONE not yet processed */
};

/* OPENING: MIGRATE sent, SENDs wait (microseconds: the new NSM only creates
 * its socket). LINKING: SENDs go to the new leg, which queues them behind
 * its RESUME; the old leg still delivers. DRAINING: the peer linked the new
 * leg (MIGRATE_ACK), the old one was told to end. */
enum ce_mig { CE_MIG_NONE = 0, CE_MIG_OPENING, CE_MIG_LINKING, CE_MIG_DRAINING };

struct ce_vm {
	bool used;
	uint32_t idx;
	char name[NK_NAME_MAX];
	uint8_t ip[4];
	int nsm;            /* current NSM index */
	char path[256];
	struct nk_region reg;
	struct ce_chan chan[CE_MAX_CHAN];
	/* Bit c stands for chan[c]. The switch loop walks these masks, not all
	 * CE_MAX_CHAN channels: with 16 VMs of 32 channels each, bench_ce spent
	 * 14 % of the CoreEngine's time in ce_flush_wakes' scan alone. */
	uint64_t live;           /* chan[c].used (ce_chan_set_live keeps both) */
	uint64_t wake;           /* ring chan[c]'s doorbell at the end of the round */
	uint64_t lazy;           /* chan[c] got only lazy NQEs (SEND_DONE, async completions) this round */
	struct ce_sock *socks;   /* [nsocks] */
	struct nk_pool sockfree; /* free slot ids */
	uint8_t *ck_state;       /* [nchunks] */
	int8_t *ck_nsm;          /* [nchunks]: NSM holding it (HOST/GRANTED) */
	uint32_t *ck_sock;       /* [nchunks]: socket (AT_GUEST) */
	struct nk_pool rxfree;
	uint64_t bad_nqes;
	uint64_t nqes_in, nqes_out;
	/* VM mode (ce_vmctl.c): the guests are a QEMU VM's processes; channels
	 * are claimed through the control lines, not the control socket */
	bool vmmode;
	bool down;               /* powered off: its sockets are being reset */
	int qemu_pidfd;          /* the VM's QEMU process (nkctl vm-pid), -1 none */
	pid_t qemu_pid;
	uint32_t vc_seq[CE_MAX_CHAN];  /* private copies of what we published */
	uint8_t vc_state[CE_MAX_CHAN]; /* enum ce_vc */
	uint32_t beat;
	uint32_t boots;          /* vm-pid registrations */
	uint64_t vc_refused;     /* claims refused */
	/* live switching */
	uint32_t switches;
	uint64_t switch_ns;      /* when the last switch was asked for */
	int switch_from;         /* NSM switched away from (-1 none) */
	int64_t switch_gap_ns;   /* switch -> first byte on the new NSM, -1 = not yet */
	int64_t switch_chunk_ns; /* switch -> first whole chunk there (SEND_DONE/RX_DATA) */
	bool mig_scan;           /* session sockets may need moving */
	uint32_t migrations;     /* session connections moved */
	/* isolation (ce_iso.c) */
	uint32_t weight;         /* DRR weight, 1..1000 */
	struct ce_tb cap_bytes;  /* payload bytes/s cap */
	struct ce_tb cap_ops;    /* operations/s cap */
	int64_t deficit;         /* DRR deficit, bytes */
	bool iso_want;           /* waited for its deficit in this pass */
	uint32_t pending;        /* guest control ops at NSMs */
	uint64_t iso_capped;     /* NQEs held back by its own caps */
	uint64_t tx_bytes;       /* payload handed to NSMs */
	uint64_t rx_bytes;       /* payload pushed to its sockets */
};

struct ce_nsm_map {
	uint16_t vm;
	uint32_t sock;
	bool used;
};

enum ce_nsm_state { CE_NSM_DOWN = 0, CE_NSM_STARTING, CE_NSM_UP };

struct ce_nsm {
	bool used;
	uint32_t idx;
	char name[NK_NAME_MAX];
	char netns[64];
	char stack[16];
	char cc[16];
	int state;
	pid_t pid;
	bool spawned;              /* we forked it: ours to kill and reap */
	uint64_t start_ns;
	uint64_t retry_after_ns;  /* failed start: refuse until then */
	int ctl_fd;
	int up_efd, down_efd;
	char path[256];
	struct nk_region reg;
	struct nk_ring up, down;
	bool wake;                /* ring the doorbell at the end of the round */
	bool lazy;                /* only lazy NQEs (RX_CREDIT) so far */
	bool attached[CE_MAX_VMS];
	uint32_t granted[CE_MAX_VMS];
	struct ce_nsm_map *map;   /* NSM socket id -> guest socket */
	uint32_t map_len;
	struct nk_nqe *ovf;       /* CE-originated NQEs waiting for ring room */
	uint32_t ovf_len, ovf_cap;
	uint32_t starts;
	uint32_t spin_us;          /* --spin-us for nk-nsm when has_spin */
	bool has_spin;             /* spin= given; else nk-nsm's default */
	bool spin_hold;            /* hold=on: nk-nsm --spin-hold */
	bool iso;                  /* weighted-fair admission on (ce_iso.c) */
	struct ce_tb cap;          /* the capacity it is admitted at, bytes/s */
};

/* A pending control request (guest op forwarded to an NSM). */
struct ce_pend {
	bool used;
	uint8_t op;
	uint16_t vm, chan;
	int8_t nsm;
	uint32_t chan_gen;
	uint32_t sock;      /* guest socket id */
	uint32_t chunk;     /* getsockopt chunk or NK_NO_CHUNK */
	uint64_t cookie;    /* the guest's */
	uint32_t gen;
	uint32_t sock_gen;  /* slot generation when sent (MIGRATE) */
	bool counted;       /* counted in the VM's pending (ce_iso.c) */
	bool async;         /* NK_NQF_ASYNC: the completion is a lazy NQE */
};

#define CE_MAX_PEND 8192
#define CE_PEND_NO_CHAN 0xffff /* a CoreEngine-made request: no guest waits */

enum ce_conn_kind { CE_CONN_NEW = 0, CE_CONN_GUEST, CE_CONN_NSM, CE_CONN_CLI };

struct ce_conn {
	int fd;
	int kind;
	uint32_t vm, chan, nsm;
};

struct ce {
	char ctl_path[108];
	char instance[32];
	char nsm_bin[256];
	uint32_t spin_us;
	int listen_fd;
	int epfd;
	int sig_fd;
	volatile int stop;
	struct ce_vm vms[CE_MAX_VMS];
	uint32_t nvms;
	struct ce_nsm nsms[CE_MAX_NSMS];
	uint32_t nnsms;
	struct ce_pend pend[CE_MAX_PEND];
	struct nk_pool pendfree;
	struct ce_conn *conns;   /* indexed by fd */
	int nconns;
	struct nk_geom vm_geom;
	char nk_peers[256];       /* --nk-peers as given, passed to NSMs */
	struct nk_prefixes peers;
	uint32_t iso_next;        /* DRR: the VM the next pass starts with */
	bool iso_stop;            /* an NSM's capacity ran out this round */
	bool stalled;             /* a guest NQE was left for lack of room or credit this round */
	uint64_t iso_wake_ns;     /* when a bucket that held an NQE admits again */
};

/* epoll tags */
#define CE_TAG(kind, a, b) (((uint64_t)(kind) << 56) | ((uint64_t)(a) << 28) | (uint64_t)(b))
#define CE_TAG_KIND(t) ((unsigned)((t) >> 56))
#define CE_TAG_A(t) ((uint32_t)(((t) >> 28) & 0xfffffff))
#define CE_TAG_B(t) ((uint32_t)((t) & 0xfffffff))
enum { CE_EV_LISTEN = 1, CE_EV_CONN, CE_EV_CHAN_EFD, CE_EV_NSM_EFD, CE_EV_SIGNAL, CE_EV_VMPID };

/* VM-mode channel states, private (the published state line follows them). */
enum ce_vc { CE_VC_FREE = 0, CE_VC_OPEN, CE_VC_REFUSED, CE_VC_RELEASING };

/* ce_main.c */
uint64_t ce_now_ns(void);
void ce_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ce_epoll_add(struct ce *ce, int fd, uint64_t tag);
void ce_epoll_del(struct ce *ce, int fd);

/* ce_vm.c */
int ce_vm_add(struct ce *ce, const char *spec, char *err, size_t errlen);
int ce_vm_open(struct ce *ce, struct ce_vm *vm, char *err, size_t errlen);
void ce_vm_close(struct ce *ce, struct ce_vm *vm);
struct ce_vm *ce_vm_find(struct ce *ce, const char *name);
int ce_chan_open(struct ce *ce, struct ce_vm *vm, int ctl_fd, pid_t pid, uint32_t *chan);
int ce_chan_open_at(struct ce *ce, struct ce_vm *vm, uint32_t c, int ctl_fd, pid_t pid);
bool ce_chan_free(const struct ce_vm *vm, uint32_t c);
void ce_chan_fork_holdings(struct ce_vm *vm, uint32_t parent, uint32_t c);
void ce_chan_gone(struct ce *ce, struct ce_vm *vm, uint32_t c);
void ce_chan_finish(struct ce *ce, struct ce_vm *vm, uint32_t c);
void ce_chan_maybe_free(struct ce *ce, struct ce_vm *vm, uint32_t c);
void ce_sock_drop_holder(struct ce *ce, struct ce_vm *vm, uint32_t s, uint32_t c);
void ce_sock_release(struct ce *ce, struct ce_vm *vm, uint32_t s);
void ce_sock_free(struct ce *ce, struct ce_vm *vm, uint32_t s);
int ce_sock_alloc(struct ce_vm *vm, uint64_t holders, int nsm, uint32_t *out);
void ce_sock_set_error(struct ce *ce, struct ce_vm *vm, uint32_t s, int err, bool dead);
void ce_wake_holders(struct ce_vm *vm, uint32_t s);
void ce_chan_set_live(struct ce_vm *vm, uint32_t c, bool used);

/* CE -> guest and CE -> NSM NQEs are staged and their prod_tail published
 * every CE_PUBLISH_BATCH NQEs and in ce_flush_wakes (after the NSM rounds
 * and at the end of the round).
 * Publishing once per round instead made a lone busy VM ping-pong with the
 * CoreEngine in whole rounds (bench_ce, 1 VM: 8-9 -> 4.7 M NQE/s); batches
 * of this size keep both sides working at once. */
#ifndef CE_PUBLISH_BATCH
#define CE_PUBLISH_BATCH 8
#endif

static inline bool ce_ring_put(struct nk_ring *r, const struct nk_nqe *q)
{
	if (!nk_ring_stage(r, q))
		return false;
	if (r->staged >= CE_PUBLISH_BATCH)
		nk_ring_publish(r);
	return true;
}

/* Lowest channel of a mask, removed from it:
 *   for (uint64_t m = vm->live; m;) { uint32_t c = ce_mask_pop(&m); ... } */
static inline uint32_t ce_mask_pop(uint64_t *m)
{
	uint32_t c = (uint32_t)__builtin_ctzll(*m);
	*m &= *m - 1;
	return c;
}
bool ce_rx_push(struct ce_vm *vm, uint32_t s, uint16_t type, uint32_t val, uint32_t off, uint32_t len);

/* ce_nsm.c */
int ce_nsm_add(struct ce *ce, const char *spec, char *err, size_t errlen);
struct ce_nsm *ce_nsm_find(struct ce *ce, const char *name);
int ce_nsm_start(struct ce *ce, struct ce_nsm *n);
int ce_nsm_hello(struct ce *ce, struct ce_nsm *n, int ctl_fd, pid_t pid, char *err, size_t errlen);
void ce_nsm_lost(struct ce *ce, struct ce_nsm *n, const char *why);
void ce_nsm_send(struct ce *ce, struct ce_nsm *n, const struct nk_nqe *nqe);
bool ce_nsm_has_room(struct ce_nsm *n);
void ce_nsm_flush(struct ce *ce, struct ce_nsm *n);
void ce_nsm_grant(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm);
int ce_nsm_attach_vm(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm);
int ce_nsm_map_set(struct ce_nsm *n, uint32_t id, uint16_t vm, uint32_t sock);
struct ce_nsm_map *ce_nsm_map_get(struct ce_nsm *n, uint32_t id);
void ce_nsm_stop_all(struct ce *ce);
int ce_nsm_switch(struct ce *ce, struct ce_vm *vm, struct ce_nsm *to, bool move, char *err, size_t errlen);
void ce_nsm_first_byte(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm);
void ce_nsm_first_write(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, uint64_t at_ns);
void ce_nsm_maybe_retire(struct ce *ce, struct ce_nsm *n);

/* ce_switch.c */
int ce_switch_round(struct ce *ce);
void ce_guest_complete(struct ce *ce, struct ce_vm *vm, uint32_t c, const struct nk_nqe *nqe);
void ce_flush_wakes(struct ce *ce);
uint32_t ce_pend_alloc(struct ce *ce);
uint64_t ce_pend_cookie(struct ce *ce, uint32_t i);
void ce_pend_fail_nsm(struct ce *ce, struct ce_nsm *n, int err);

/* ce_mig.c */
uint64_t ce_session_for(struct ce *ce, const struct nk_addr *dst);
void ce_mig_scan(struct ce *ce, struct ce_vm *vm);
void ce_mig_done(struct ce *ce, struct ce_vm *vm, uint32_t s, const struct nk_nqe *q,
		 struct ce_nsm *n);
bool ce_mig_old_leg(struct ce_vm *vm, uint32_t s, const struct ce_nsm *n, uint32_t nsm_sock);
void ce_mig_old_end(struct ce *ce, struct ce_vm *vm, uint32_t s, int err, bool leg_gone);
void ce_mig_ack(struct ce *ce, struct ce_nsm *n, struct ce_vm *vm, uint32_t s, const struct nk_nqe *q);
bool ce_mig_has_old(const struct ce_sock *sk);

/* ce_iso.c */
void ce_tb_set(struct ce_tb *tb, uint64_t rate, uint64_t min_depth);
bool ce_iso_admit(struct ce *ce, struct ce_vm *vm, struct ce_nsm *n, bool ctl, uint32_t payload);
void ce_iso_charge(struct ce *ce, struct ce_vm *vm, struct ce_nsm *n, bool ctl, uint32_t payload);
uint32_t ce_iso_begin(struct ce *ce);
bool ce_iso_next_round(struct ce *ce);
int ce_iso_passes(void);
int ce_iso_parse_rate(const char *s, uint64_t *out);
int ce_iso_vm_set(struct ce_vm *vm, const char *key, const char *val, char *err, size_t errlen);
int ce_iso_nsm_set(struct ce_nsm *n, const char *key, const char *val, char *err, size_t errlen);

/* ce_vmctl.c */
void ce_vmctl_init(struct ce *ce, struct ce_vm *vm);
int ce_vmctl_poll(struct ce *ce);
bool ce_vmctl_any(const struct ce *ce);
void ce_vmctl_stop(struct ce *ce);
int ce_vm_set_pid(struct ce *ce, struct ce_vm *vm, pid_t pid, char *err, size_t errlen);
void ce_vm_down(struct ce *ce, struct ce_vm *vm, const char *why);

/* ce_ctl.c */
int ce_ctl_listen(struct ce *ce, char *err, size_t errlen);
void ce_ctl_accept(struct ce *ce);
void ce_ctl_readable(struct ce *ce, int fd);
void ce_ctl_close_conn(struct ce *ce, int fd);

#endif /* NK_CE_H */
