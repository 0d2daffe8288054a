/* SPDX-License-Identifier: MIT */
/*
 * nk_abi.h - every structure that crosses a process or VM boundary.
 *
 * This header is the NetKernel shared-memory ABI. It holds only data layouts
 * and constants; the helper APIs live in nk_ring.h (inline ring ops),
 * dataplane/ and the modules. Nothing here contains a pointer: a region is
 * mapped at different addresses by the guest, the CoreEngine and the NSMs (and
 * in VM mode through a PCI BAR), so everything is an offset or an index.
 *
 * Two kinds of region exist, both laid out by nk_region_hdr:
 *
 *   VM region (one per VM, "the NK device"), created by the CoreEngine:
 *
 *   0                 +--------------------------------------------------+
 *                     | nk_region_hdr (4 KiB): magic, version, layout    |
 *   chan_off          +--------------------------------------------------+
 *                     | channel 0: up ring   (guest -> CoreEngine)       |
 *                     |            down ring (CoreEngine -> guest)       |
 *                     |            control lines (VM mode: claim, state) |
 *                     | channel 1 ...   (one channel per guest process)  |
 *   sock_off          +--------------------------------------------------+
 *                     | socket slot 0 .. nsocks-1 (nk_sock_slot)         |
 *                     |   host line | addr line | guest line | rx ring   |
 *   chunk_off         +--------------------------------------------------+
 *                     | TX chunks: channel 0 partition, channel 1 ...    |
 *                     |            (guest-allocated, one owner at a time)|
 *                     | RX chunks: host-allocated (CoreEngine pool)      |
 *   region_size       +--------------------------------------------------+
 *
 *   NSM region (one per NSM), created by the CoreEngine: the header and one
 *   channel (up = NSM -> CoreEngine, down = CoreEngine -> NSM), no sockets,
 *   no chunks. NQEs on it reference chunks of VM regions, which the NSM maps
 *   after the CoreEngine attaches the VM to it.
 *
 * Ownership contract
 *   - A ring has one producer and one consumer. The producer alone writes
 *     prod_tail and the entries in [cons_head, prod_tail); the consumer alone
 *     writes cons_head and cons_need_wakeup. No word is written by both sides.
 *   - A socket slot's host line, addr line and rx ring entries are written by
 *     the CoreEngine only; its guest line by guest processes only.
 *   - A chunk has exactly one owner at a time and changes owner only with the
 *     NQE that carries it. TX chunks of channel c start owned by the process
 *     on channel c; RX chunks start owned by the CoreEngine, which grants them
 *     to NSMs (NK_OP_GRANT), which fill them and post them to a socket
 *     (NK_OP_RX_DATA); the guest returns them with NK_OP_RX_DONE.
 *   - Everything the host reads from a VM region is copied, then validated.
 *     The host never reads the layout back from shared memory: it keeps its
 *     own copy of the geometry it created the region with.
 */
#ifndef NK_ABI_H
#define NK_ABI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define NK_ABI_MAGIC      0x4e4b5247u /**< "NKRG" */
#define NK_ABI_VERSION    2u          /**< 2: VM-mode channel control lines */
#define NK_CACHELINE      64
#define NK_REGION_HDR_SIZE 4096
#define NK_NAME_MAX       32          /**< VM/NSM names, NUL included */
#define NK_NO_CHUNK       0xffffffffu
#define NK_NO_SOCK        0xffffffffu

/* ------------------------------------------------------------------ */
/* Addresses: a fixed-size, pointer-free sockaddr (fits sockaddr_in6). */

/** Address as it crosses the boundary. family is AF_INET or AF_INET6 (the
 *  Linux values 2 and 10); port is in network byte order, as in sockaddr_in.
 *  For AF_INET the address is addr[0..3]. */
struct nk_addr {
	uint16_t family;    /**< AF_INET / AF_INET6, 0 = none */
	uint16_t port;      /**< network byte order */
	uint32_t flowinfo;  /**< AF_INET6 only */
	uint8_t  addr[16];  /**< IPv4 in the first 4 bytes, or IPv6 */
	uint32_t scope_id;  /**< AF_INET6 only */
};
static_assert(sizeof(struct nk_addr) == 28, "nk_addr is 28 bytes");

/* ------------------------------------------------------------------ */
/* The NQE: a fixed 64-byte queue element.                             */

/** NQE operations. Guest->CE ops are re-issued by the CE towards the NSM with
 *  sock translated to the NSM's socket id; completions travel back with
 *  NK_NQF_COMPLETION set and the same op. */
enum nk_op {
	NK_OP_NONE = 0,
	/* guest -> CE -> NSM, completed NSM -> CE -> guest */
	NK_OP_SOCKET = 1,     /**< arg.sock; result = socket id (>= 0) */
	NK_OP_BIND = 2,       /**< arg.addr; result 0, arg.addr = bound address */
	NK_OP_LISTEN = 3,     /**< arg.u32[0] = backlog */
	NK_OP_CONNECT = 4,    /**< arg.addr; completes when established or failed,
	                           arg.addr = local address. CE->NSM: off | len << 32
	                           = session id when the peer is NetKernel-managed */
	NK_OP_SHUTDOWN = 5,   /**< arg.u32[0] = SHUT_RD/SHUT_WR/SHUT_RDWR; ordered
	                           after earlier SENDs on the socket */
	NK_OP_SETSOCKOPT = 6, /**< arg.opt (value inline) */
	NK_OP_GETSOCKOPT = 7, /**< arg.opt; result = value length, value inline, or
	                           in chunk (off 0) when chunk != NK_NO_CHUNK; the
	                           completion hands that same chunk back */
	/* data */
	NK_OP_SEND = 8,       /**< chunk/off/len; completion = SEND_DONE. For
	                           datagram sockets arg.addr, when its family is
	                           set, is the destination (sendto) */
	NK_OP_SEND_DONE = 9,  /**< chunk returned; result = bytes or -errno */
	NK_OP_RX_DONE = 10,   /**< guest consumed one rx ring entry; chunk returned
	                           (or NK_NO_CHUNK); for an ACCEPT entry arg.u32[0]
	                           is the accepted socket id (claims it) */
	NK_OP_CLOSE = 11,     /**< guest: drop this channel's reference; no
	                           completion. CE->NSM: close; NSM answers CLOSED */
	/* live switching of a session connection, CE -> NSM (docs/ARCHITECTURE.md) */
	NK_OP_MIGRATE = 12,   /**< new NSM: open a leg for session (off | len << 32)
	                           to arg.mig, sending RESUME at arg.mig.offset;
	                           completes at once: result = new NSM socket id,
	                           which takes SENDs (queued behind the RESUME).
	                           The leg reads nothing until RX_CREDIT */
	NK_OP_MIGRATE_OUT = 13, /**< old NSM: flush queued SENDs, shut the write
	                           side, read to EOF (RX_FIN ends the old leg) */
	/* NSM -> CE only */
	NK_OP_RX_DATA = 16,   /**< chunk/off/len filled for sock; datagram
	                           sockets: the chunk's first NK_DGRAM_HDR bytes
	                           hold the sender (struct nk_addr), the datagram
	                           starts at off = NK_DGRAM_HDR */
	NK_OP_RX_FIN = 17,    /**< orderly end of stream on sock */
	NK_OP_RX_ERR = 18,    /**< result = -errno (connection reset, ...) */
	NK_OP_NEWCONN = 19,   /**< sock = listener; arg.conn = new NSM socket + peer;
	                           off | len << 32 = session id (0 = none) */
	NK_OP_CLOSED = 20,    /**< NSM released sock (after CLOSE or on its own);
	                           not a completion: no NK_NQF_COMPLETION */
	NK_OP_MIGRATE_ACK = 21, /**< the peer linked a MIGRATE leg: result 0 and
	                           arg.mig.offset = bytes the peer sent on the old
	                           leg, cookie = CLOCK_MONOTONIC ns of the leg's
	                           first write of guest bytes (0 = none yet); or
	                           result < 0, the leg failed */
	/* CE -> NSM only */
	NK_OP_GRANT = 24,     /**< vm; len = count; arg.u32[0..len) = RX chunk ids */
	NK_OP_RX_CREDIT = 25, /**< sock; len = rx ring entries given back */
	NK_OP_MAX = 32
};

/** NQE flags */
#define NK_NQF_COMPLETION 0x01u /**< this NQE completes an earlier request */
#define NK_NQF_ACCEPT     0x02u /**< RX_DONE of an ACCEPT entry */
#define NK_NQF_ABORT      0x04u /**< CE -> NSM CLOSE: drop queued data and reset
                                     the connection (its VM was powered off) */
#define NK_NQF_ASYNC      0x08u /**< guest SETSOCKOPT nobody waits for; its
                                     completion carries the flag too and is a
                                     lazy NQE (need_wakeup) */

/** Socket option carried inline. */
struct nk_opt {
	int32_t  level;
	int32_t  name;
	uint32_t vlen;      /**< value length in bytes (<= NK_OPT_INLINE inline) */
	uint8_t  val[20];
};
#define NK_OPT_INLINE 20u

/** socket() arguments (Linux values; type without SOCK_NONBLOCK/CLOEXEC). */
struct nk_sockargs {
	int32_t domain;
	int32_t type;
	int32_t protocol;
};

/** A connection accepted by the NSM: its NSM socket id and peer address. */
struct nk_conn {
	struct nk_addr peer;
	uint32_t       id;  /**< NSM socket id of the new connection */
};

/** Datagram sockets: bytes before the payload in an RX chunk (the sender). */
#define NK_DGRAM_HDR 32u

/** MIGRATE argument: where the peer accepts resumed legs, and the offset. */
struct nk_mig {
	uint16_t family;    /**< AF_INET / AF_INET6 of ip */
	uint16_t port;      /**< the peer's session port, network order */
	uint32_t pad;
	uint8_t  ip[16];    /**< peer address (IPv4 in the first 4 bytes) */
	uint64_t offset;    /**< request: bytes already sent on the old leg;
	                         completion: bytes the peer sent on the old leg */
};

/** The queue element. 64 bytes, one cache line. */
struct nk_nqe {
	uint8_t  op;      /**< enum nk_op */
	uint8_t  flags;   /**< NK_NQF_* */
	uint16_t vm;      /**< VM index on NSM rings (stamped by the CE); 0 on VM rings */
	uint32_t sock;    /**< guest socket id on VM rings, NSM socket id on NSM rings */
	uint64_t cookie;  /**< chosen by the requester, echoed in the completion */
	int32_t  result;  /**< completions: >= 0 value, < 0 -errno */
	uint32_t chunk;   /**< chunk index in the VM region or NK_NO_CHUNK */
	uint32_t off;     /**< byte offset inside the chunk */
	uint32_t len;     /**< byte length (or a count, per op) */
	union {
		uint8_t            raw[32];
		uint32_t           u32[8];
		struct nk_addr     addr;
		struct nk_opt      opt;
		struct nk_sockargs sock;
		struct nk_conn     conn;
		struct nk_mig      mig;
	} arg;
};
static_assert(sizeof(struct nk_nqe) == 64, "NQE is one cache line");
static_assert(offsetof(struct nk_nqe, arg) == 32, "NQE arg at 32");
static_assert(sizeof(struct nk_opt) == 32, "nk_opt fits arg");
static_assert(sizeof(struct nk_conn) == 32, "nk_conn fits arg");
static_assert(sizeof(struct nk_mig) == 32, "nk_mig fits arg");

/* ------------------------------------------------------------------ */
/* Session hello: the first bytes of a connection between two NetKernel */
/* hosts, written and read by the ServiceLibs (never seen by guests).   */

#define NK_SESS_MAGIC 0x4853454eu /**< "NESH" */
#define NK_SESS_PORT  18999       /**< where an NSM accepts resumed legs */

enum nk_sess_kind {
	NK_SESS_NEW = 1,    /**< client -> server: a new session, offset 0 */
	NK_SESS_RESUME = 2, /**< new leg of a session, at the sender's offset */
	NK_SESS_ACK = 3,    /**< server -> client: offset where its bytes continue */
};

/** 24 bytes, little-endian on the wire. */
struct nk_sess_hello {
	uint32_t magic;
	uint8_t  kind;      /**< enum nk_sess_kind */
	uint8_t  pad[3];
	uint64_t session;
	uint64_t offset;    /**< application bytes before this leg's first byte */
};
static_assert(sizeof(struct nk_sess_hello) == 24, "session hello is 24 bytes");

/* ------------------------------------------------------------------ */
/* Rings                                                               */

/**
 * SPSC ring header; the entries (nk_nqe[size]) follow it directly.
 *
 * Indices are free-running unsigned 32-bit counters, masked with size-1 on
 * use. The wrap is safe because size is a power of two <= 2^31 and
 * prod_tail - cons_head (mod 2^32) never exceeds size, so the difference is
 * exact even after either counter wraps.
 *
 * need_wakeup: the consumer sets it (then a full fence, then re-checks the
 * ring) before sleeping on its doorbell; the producer, after publishing
 * prod_tail, reads it and rings the doorbell only when it is set. This is the
 * io_uring SQ_NEED_WAKEUP pattern: no syscall while the consumer is awake.
 * NK_WAKE_ANY asks for a doorbell for every NQE; NK_WAKE_URGENT only for
 * NQEs that are not "lazy" (NK_OP_SEND_DONE and NK_NQF_ASYNC completions
 * towards a guest; NK_OP_RX_CREDIT towards an NSM): a consumer that waits
 * for nothing those could give it sleeps through them and reads them when
 * it next wakes. A producer that knows only 0/1 treats NK_WAKE_URGENT as
 * NK_WAKE_ANY, so the value is a compatible extension of ABI 2.
 */
enum {
	NK_WAKE_ANY = 1,    /**< ring the doorbell for any NQE */
	NK_WAKE_URGENT = 2, /**< ... for any NQE but the lazy ones */
};

struct nk_ring_hdr {
	_Alignas(NK_CACHELINE) uint32_t prod_tail; /**< producer only: next slot to fill */
	uint8_t  pad0[NK_CACHELINE - 4];
	_Alignas(NK_CACHELINE) uint32_t cons_head; /**< consumer only: next slot to read */
	uint32_t need_wakeup;                      /**< consumer only: 0 or NK_WAKE_* */
	uint8_t  pad1[NK_CACHELINE - 8];
};
static_assert(sizeof(struct nk_ring_hdr) == 128, "ring header is 2 lines");
static_assert(offsetof(struct nk_ring_hdr, cons_head) == 64, "indices on separate lines");

/* ------------------------------------------------------------------ */
/* VM mode: the channel control lines (docs/ARCHITECTURE.md, "VM mode")  */
/*                                                                      */
/* A process inside a QEMU VM cannot reach the CoreEngine's control     */
/* socket; it sees only the NK device (this region as an ivshmem BAR).  */
/* So a VM-mode channel is claimed through two lines in its header:     */
/*   claim line (guest processes write, the CoreEngine reads):          */
/*     claim   = seq << 32 | pid, taken with a 64-bit CAS inside the VM */
/*               while the state line says FREE with that seq;          */
/*     fork_of = parent channel + 1 (0 = none) and fork_key = the       */
/*               parent's key, then ready = seq (release);              */
/*     gone    = seq when the process holding incarnation seq is gone   */
/*               (written by the in-VM agent, or by a refused claimer). */
/*   state line (the CoreEngine writes, guests read):                   */
/*     seq, state (enum nk_vc_state), status (-errno if REFUSED), key,  */
/*     beat (bumped while the CoreEngine runs: a guest whose beat stops */
/*     for NK_VC_BEAT_DEAD_MS treats the CoreEngine as gone).           */
/* seq only grows, so a stale claim or gone can never match a later    */
/* incarnation. The CoreEngine copies each field once and validates it; */
/* process-mode regions leave both lines zero (state NK_VC_NONE).       */

#define NK_VMDEV_VENDOR 0x1af4u /**< ivshmem (Red Hat / Qumranet) */
#define NK_VMDEV_DEVICE 0x1110u
#define NK_VMDEV_BAR    2       /**< the shared memory BAR (resource2) */
#define NK_VC_BEAT_DEAD_MS 10000u

enum nk_vc_state {
	NK_VC_NONE = 0,    /**< not a VM-mode region (process mode) */
	NK_VC_FREE = 1,    /**< claimable at this seq */
	NK_VC_OPEN = 2,    /**< claimed and opened: key is valid */
	NK_VC_REFUSED = 3, /**< claim refused: status = -errno */
	NK_VC_DOWN = 4,    /**< the CoreEngine stopped serving this region */
	NK_VC_CLOSED = 5,  /**< this incarnation was dropped (process gone, cut
	                        off, VM down); FREE at seq + 1 once nothing is
	                        owed to the channel any more */
};

struct nk_chan_ctl {
	/* claim line: guest processes write, the CoreEngine reads */
	_Alignas(NK_CACHELINE) uint64_t claim; /**< seq << 32 | pid (CAS) */
	uint32_t ready;       /**< = seq once fork_of/fork_key are written */
	uint32_t gone;        /**< = seq: that incarnation's process is gone */
	uint32_t fork_of;     /**< parent channel + 1, 0 = a fresh process */
	uint32_t fork_key[2]; /**< the parent channel's key */
	uint8_t  pad0[NK_CACHELINE - 28];
	/* state line: the CoreEngine writes, guests read */
	_Alignas(NK_CACHELINE) uint32_t seq; /**< incarnation, from 1, only grows */
	uint32_t state;       /**< enum nk_vc_state, stored last (release) */
	int32_t  status;      /**< REFUSED: -errno */
	uint32_t key[2];      /**< OPEN: the channel's random key */
	uint32_t beat;        /**< heartbeat of the CoreEngine */
	uint8_t  pad1[NK_CACHELINE - 24];
};
static_assert(sizeof(struct nk_chan_ctl) == 128, "control lines are 2 lines");
static_assert(offsetof(struct nk_chan_ctl, seq) == 64, "claim and state on separate lines");

/** A channel: one request/response ring pair of a guest process (VM region)
 *  or of an NSM (NSM region), and the VM-mode control lines. "up" flows
 *  towards the CoreEngine. */
struct nk_chan_hdr {
	struct nk_ring_hdr up;   /**< guest/NSM produces, CE consumes */
	/* up entries: nk_nqe[ring_entries] at up_off */
	struct nk_ring_hdr down; /**< CE produces, guest/NSM consumes */
	/* down entries: nk_nqe[ring_entries] at down_off */
	struct nk_chan_ctl ctl;  /**< VM mode only (NK_VC_NONE otherwise) */
};
static_assert(sizeof(struct nk_chan_hdr) == 384, "channel header");
static_assert(offsetof(struct nk_chan_hdr, ctl) == 256, "control lines after the ring headers");

/* ------------------------------------------------------------------ */
/* Socket slots (VM region only)                                       */

/** Socket states written by the CoreEngine into nk_sock_slot.state. */
enum nk_sock_state {
	NK_SS_FREE = 0,
	NK_SS_OPEN = 1,       /**< created, not connected */
	NK_SS_BOUND = 2,
	NK_SS_LISTENING = 3,
	NK_SS_CONNECTING = 4,
	NK_SS_CONNECTED = 5,
	NK_SS_CLOSED = 6,     /**< NSM side gone (reset, NSM lost); error says why */
};

/** Slot flags (host line). */
#define NK_SF_RX_FIN   0x01u /**< a FIN entry has been pushed */
#define NK_SF_RESET    0x02u /**< connection reset / NSM lost: no more data */

/** rx ring entry types */
enum nk_rx_type {
	NK_RX_DATA = 1,   /**< chunk/off/len */
	NK_RX_FIN = 2,    /**< end of stream */
	NK_RX_ERR = 3,    /**< val = errno (positive) */
	NK_RX_ACCEPT = 4, /**< val = accepted guest socket id */
};

/** One entry of a socket's rx ring (host-written). */
struct nk_rxent {
	uint16_t type;  /**< enum nk_rx_type */
	uint16_t pad;
	uint32_t val;   /**< chunk index (DATA), errno (ERR), socket id (ACCEPT) */
	uint32_t off;   /**< DATA: offset in chunk */
	uint32_t len;   /**< DATA: bytes */
};
static_assert(sizeof(struct nk_rxent) == 16, "rx entry is 16 bytes");

#define NK_SOCK_RX_ENTRIES 64u /**< per-socket rx ring = the receive credit */

/**
 * Per-socket shared state. Readiness lives here, not in a process, so that
 * sockets shared by forked processes look the same from each of them.
 */
struct nk_sock_slot {
	/* host line: CoreEngine writes, guests read */
	_Alignas(NK_CACHELINE) uint32_t rx_tail; /**< rx ring producer index */
	uint32_t gen;      /**< bumped on every allocation of this slot */
	uint32_t state;    /**< enum nk_sock_state */
	uint32_t flags;    /**< NK_SF_* */
	uint32_t err_seq;  /**< bumped each time error is set */
	int32_t  error;    /**< pending socket error (positive errno) */
	uint32_t tx_done;  /**< bumped on every SEND_DONE for this socket */
	uint32_t rx_start; /**< rx index where this incarnation's ring starts:
	                        a guest adopting the socket (SOCKET completion,
	                        ACCEPT entry) sets rx_head = rx_start, head_off = 0.
	                        Until then the host treats any rx_head outside
	                        [rx_start, rx_tail] as rx_start. Counters are
	                        monotonic across slot reuse. */
	uint8_t  pad0[NK_CACHELINE - 32];
	/* addr line: CoreEngine writes, guests read */
	_Alignas(NK_CACHELINE) struct nk_addr local;
	uint32_t pad1;
	struct nk_addr peer;
	uint32_t pad2;
	/* guest line: guests write, the CoreEngine reads rx_head only */
	_Alignas(NK_CACHELINE) uint32_t rx_head; /**< rx ring consumer index */
	uint32_t head_off; /**< bytes of the head DATA entry already read */
	uint32_t lock;     /**< guest-only lock between guest processes: the
	                        holder's pid, 0 = free, so a lock left by a
	                        process that died can be taken over */
	uint8_t  pad3[NK_CACHELINE - 12];
	/* rx ring entries, host-written */
	struct nk_rxent rx[NK_SOCK_RX_ENTRIES];
};
static_assert(sizeof(struct nk_sock_slot) == 3 * 64 + 16 * NK_SOCK_RX_ENTRIES,
	      "socket slot size");
static_assert(offsetof(struct nk_sock_slot, local) == 64, "addr line");
static_assert(offsetof(struct nk_sock_slot, rx_head) == 128, "guest line");

/* ------------------------------------------------------------------ */
/* Region header                                                       */

enum nk_region_kind { NK_REGION_VM = 1, NK_REGION_NSM = 2 };

/** Written once by the CoreEngine before the region is handed out. Guests
 *  trust it (it is their device); the host never reads it back. */
struct nk_region_hdr {
	uint32_t magic;          /**< NK_ABI_MAGIC */
	uint32_t version;        /**< NK_ABI_VERSION */
	uint32_t kind;           /**< enum nk_region_kind */
	uint32_t id;             /**< VM or NSM index in the CoreEngine */
	uint64_t region_size;    /**< bytes */
	char     name[NK_NAME_MAX];
	uint8_t  ipv4[4];        /**< the VM's address (network order) */
	uint32_t nchan;          /**< channels */
	uint32_t ring_entries;   /**< entries per ring, power of two */
	uint32_t chan_stride;    /**< bytes per channel (header + 2 rings) */
	uint64_t chan_off;       /**< offset of channel 0 */
	uint32_t nsocks;         /**< socket slots */
	uint32_t sock_stride;    /**< sizeof(struct nk_sock_slot) */
	uint64_t sock_off;       /**< offset of slot 0 */
	uint32_t chunk_size;     /**< bytes per chunk, power of two */
	uint32_t tx_per_chan;    /**< TX chunks per channel partition */
	uint32_t nrx;            /**< RX chunks, after all TX chunks */
	uint32_t pad;
	uint64_t chunk_off;      /**< offset of chunk 0 (4 KiB aligned) */
	uint8_t  reserved[NK_REGION_HDR_SIZE - 120];
};
static_assert(sizeof(struct nk_region_hdr) == NK_REGION_HDR_SIZE, "header is 4 KiB");

/** Offsets of a channel's rings inside the channel (chan_stride bytes). */
static inline uint64_t nk_chan_up_off(void) { return sizeof(struct nk_chan_hdr); }
static inline uint64_t nk_chan_down_off(uint32_t ring_entries)
{
	return sizeof(struct nk_chan_hdr) + (uint64_t)ring_entries * sizeof(struct nk_nqe);
}
static inline uint64_t nk_chan_stride(uint32_t ring_entries)
{
	return sizeof(struct nk_chan_hdr) + 2ull * ring_entries * sizeof(struct nk_nqe);
}

/* ------------------------------------------------------------------ */
/* Control socket messages (AF_UNIX SOCK_SEQPACKET)                    */

#define NK_CTL_MAGIC 0x4e4b4354u /**< "NKCT" */

enum nk_ctl_type {
	NK_CTL_GUEST_HELLO = 1, /**< guest -> CE: vm name, pid; index = 0, or
	                             parent channel + 1 when a process about to
	                             fork asks for its child's channel (the new
	                             channel holds the parent's sockets; key =
	                             the parent channel's key) */
	NK_CTL_GUEST_WELCOME,   /**< CE -> guest: channel; fds: region, up, down */
	NK_CTL_NSM_HELLO,       /**< NSM -> CE: nsm name, pid */
	NK_CTL_NSM_WELCOME,     /**< CE -> NSM: nsm index; fds: region, up, down */
	NK_CTL_VM_ATTACH,       /**< CE -> NSM: vm index, name, ipv4; fd: VM region */
	NK_CTL_VM_DETACH,       /**< CE -> NSM: vm index */
	NK_CTL_ERROR,           /**< CE -> any: status = -errno, text = why */
	NK_CTL_COMMAND,         /**< nkctl -> CE: text = command line */
	NK_CTL_REPLY,           /**< CE -> nkctl: text (a part); status on last */
};

/** Every control message. Fixed size; text is NUL-terminated. */
struct nk_ctl_msg {
	uint32_t magic;      /**< NK_CTL_MAGIC */
	uint32_t type;       /**< enum nk_ctl_type */
	int32_t  status;     /**< 0 or -errno */
	uint32_t index;      /**< channel / nsm / vm index, per type */
	uint32_t pid;        /**< sender pid (hello) */
	uint32_t more;       /**< REPLY: 1 = more parts follow */
	uint8_t  ipv4[4];    /**< VM_ATTACH: the VM's address */
	uint32_t key[2];     /**< GUEST_WELCOME: the channel's random key;
	                          GUEST_HELLO with index != 0: the parent
	                          channel's key, proving the asker holds it */
	char     name[NK_NAME_MAX];
	char     text[3952]; /**< command / reply text / error text */
};
static_assert(sizeof(struct nk_ctl_msg) == 4020, "control message size");

#endif /* NK_ABI_H */
