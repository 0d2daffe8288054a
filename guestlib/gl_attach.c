/* SPDX-License-Identifier: MIT */
/*
 * gl_attach.c - joining the VM: control connection, region, channel.
 *
 * The first AF_INET/AF_INET6 socket() of a process says GUEST_HELLO to the
 * CoreEngine and receives its channel: the VM region fd and the two doorbell
 * eventfds. The control connection then stays open for the life of the
 * process, because its EOF is how the CoreEngine learns the process died and
 * can reclaim the channel.
 */
#include "nk_gl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nk_ctl.h"

struct nk_gl_proc nk_gl = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.ctl_fd = -1, .up_efd = -1, .down_efd = -1,
	.fork_ctl = -1, .fork_up = -1, .fork_down = -1,
};

/* Seconds to wait for the WELCOME: a CoreEngine that accepted but hangs must
 * not hang the application's socket() forever. */
#define NK_GL_WELCOME_TIMEOUT_S 10

/* One line per process, however many socket() calls fail. */
static void nk_gl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void nk_gl_warn(const char *fmt, ...)
{
	if (nk_gl.warned)
		return;
	nk_gl.warned = true;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* write(), not stdio: no buffering surprises, no locks held by a caller */
	ssize_t w = REAL(write)(2, buf, (size_t)n);
	(void)w;
}

bool nk_gl_is_internal(int fd)
{
	return fd >= 0 && (fd == nk_gl.ctl_fd || fd == nk_gl.up_efd || fd == nk_gl.down_efd ||
			   fd == nk_gl.fork_ctl || fd == nk_gl.fork_up || fd == nk_gl.fork_down);
}

/* The application wants this fd number (dup2 onto it): move ours away. */
int nk_gl_protect_fd(int fd)
{
	int nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return -errno;
	if (fd == nk_gl.ctl_fd)
		nk_gl.ctl_fd = nfd;
	else if (fd == nk_gl.up_efd)
		nk_gl.up_efd = nfd;
	else
		nk_gl.down_efd = nfd;
	REAL(close)(fd);
	return 0;
}

static void nk_gl_close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			REAL(close)(fds[i]);
}

/* parent: 0, or the channel + 1 whose sockets a fork child inherits (with
 * that channel's key). Fills fds, *chan and the new channel's key. */
static int nk_gl_hello(int ctl, const char *vm, uint32_t parent, const uint32_t pkey[2],
		       int fds[3], uint32_t *chan, uint32_t key[2])
{
	struct nk_ctl_msg m;
	int nfds = 0;

	nk_ctl_init(&m, NK_CTL_GUEST_HELLO);
	snprintf(m.name, sizeof(m.name), "%s", vm);
	m.pid = (uint32_t)getpid();
	m.index = parent;
	if (pkey)
		memcpy(m.key, pkey, sizeof(m.key));
	int r = nk_ctl_send(ctl, &m, NULL, 0);
	if (r < 0) {
		nk_gl_warn("netkernel: cannot talk to CoreEngine at %s: %s", nk_ctl_path(), strerror(-r));
		return r;
	}
	struct timeval tv = { .tv_sec = NK_GL_WELCOME_TIMEOUT_S };
	(void)REAL(setsockopt)(ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = nk_ctl_recv(ctl, &m, fds, 3, &nfds);
	if (r < 0) {
		if (r == -EAGAIN || r == -EWOULDBLOCK)
			r = -ETIMEDOUT;
		nk_gl_warn("netkernel: no answer from CoreEngine at %s: %s", nk_ctl_path(), strerror(-r));
		return r;
	}
	tv.tv_sec = 0;
	(void)REAL(setsockopt)(ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (m.type == NK_CTL_ERROR) {
		nk_gl_close_fds(fds, nfds);
		/* status is -errno; anything else is a protocol violation */
		int e = (m.status < 0 && m.status > -4096) ? -m.status : EPROTO;
		nk_gl_warn("netkernel: CoreEngine refused VM '%s': %s", vm,
			   m.text[0] ? m.text : strerror(e));
		return -e;
	}
	if (m.type != NK_CTL_GUEST_WELCOME || m.status != 0 || nfds != 3) {
		nk_gl_close_fds(fds, nfds);
		nk_gl_warn("netkernel: unexpected answer from CoreEngine at %s (type %u, %d fds)",
			   nk_ctl_path(), m.type, nfds);
		return -EPROTO;
	}
	*chan = m.index;
	memcpy(key, m.key, sizeof(m.key));
	return 0;
}

/* Take over channel chan of a mapped region: TX pool, rings, fds (process
 * mode: control connection and doorbells; VM mode: all -1). On failure the
 * caller releases what it passed in. */
static int nk_gl_adopt(struct nk_region *reg, uint32_t chan, int ctl, int up, int down,
		       const uint32_t key[2])
{
	if (chan >= reg->g.nchan) {
		nk_gl_warn("netkernel: CoreEngine gave channel %u of %u", chan, reg->g.nchan);
		return -EPROTO;
	}
	struct nk_gl_sock **owner = calloc(reg->g.tx_per_chan, sizeof(*owner));
	if (!owner || nk_pool_init(&nk_gl.pool, nk_geom_tx_first(&reg->g, chan), reg->g.tx_per_chan) < 0) {
		free(owner);
		return -ENOMEM;
	}
	/* We only ever read down_efd after poll() said so, but two threads may
	 * both see it readable: non-blocking keeps the loser from hanging. */
	if (down >= 0) {
		int fl = REAL(fcntl)(down, F_GETFL);
		if (fl >= 0)
			(void)REAL(fcntl)(down, F_SETFL, fl | O_NONBLOCK);
	}
	nk_gl.reg = *reg;
	nk_gl.chan = chan;
	nk_gl.ctl_fd = ctl;
	nk_gl.up_efd = up;
	nk_gl.down_efd = down;
	nk_gl.tx_owner = owner;
	nk_gl.nchunks = nk_geom_nchunks(&reg->g);
	nk_region_up_ring(reg, chan, &nk_gl.up);
	nk_region_down_ring(reg, chan, &nk_gl.down);
	nk_gl.pid = (uint32_t)getpid();
	memcpy(nk_gl.key, key, sizeof(nk_gl.key));
	nk_gl.state = NK_GL_ATTACHED;
	return 0;
}

/* VM mode (NK_DEVICE set, by the guest's /init): the NK device is a PCI BAR;
 * the channel is claimed through its control lines (gl_vm.c). */
static int nk_gl_vm_attach(void)
{
	char err[300];
	struct nk_region reg;
	int r = nk_gl_vm_map(&reg, err, sizeof(err));
	if (r < 0) {
		nk_gl_warn("netkernel: %s", err);
		return r;
	}
	nk_gl_vm_release_mine(&reg);
	uint32_t chan = 0, seq = 0, key[2];
	for (int tries = 0;; tries++) {
		r = nk_gl_vm_claim(&reg, 0, NULL, &chan, &seq, key);
		if (r != -EAGAIN || tries >= 16)
			break;
	}
	if (r < 0) {
		nk_gl_warn("netkernel: no channel on the NK device of VM '%.*s': %s%s", NK_NAME_MAX - 1,
			   nk_region_hdr(&reg)->name, strerror(-r), r == -ETIMEDOUT || r == -ECONNREFUSED ?
			   " (no CoreEngine serves this device)" : "");
		nk_region_unmap(&reg);
		return r == -EAGAIN ? -EUSERS : r;
	}
	nk_gl.vmmode = true;
	nk_gl.vc_seq = seq;
	nk_gl.vc_beat_ms = 0;
	r = nk_gl_adopt(&reg, chan, -1, -1, -1, key);
	if (r < 0) {
		__atomic_store_n(&nk_region_chan(&reg, chan)->ctl.gone, seq, __ATOMIC_RELEASE);
		nk_region_unmap(&reg);
	}
	return r;
}

/* NK_GUEST_SPINS: rounds of 32 pauses before a wait sleeps (gl_chan.c). */
#define NK_GL_SPINS_MAX 100000u

static int nk_gl_spin_config(void)
{
	const char *v = getenv("NK_GUEST_SPINS");
	char *end;
	nk_gl.spins = 0;
	if (!v || !*v)
		return 0;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || v[0] < '0' || v[0] > '9' || n > NK_GL_SPINS_MAX) {
		nk_gl_warn("netkernel: NK_GUEST_SPINS '%s' is not a number 0..%u", v,
			   NK_GL_SPINS_MAX);
		return -EINVAL;
	}
	nk_gl.spins = (uint32_t)n;
	return 0;
}

int nk_gl_attach(void)
{
	if (nk_gl.state == NK_GL_ATTACHED)
		return 0;
	if (nk_gl.state == NK_GL_DEAD) {
		if (nk_gl.vmmode)
			nk_gl_warn("netkernel: lost the CoreEngine behind the NK device");
		else
			nk_gl_warn("netkernel: lost the CoreEngine at %s", nk_ctl_path());
		return -ECONNREFUSED;
	}
	int e = nk_gl_spin_config();
	if (e)
		return e;
	const char *dev = getenv("NK_DEVICE");
	if (dev && *dev)
		return nk_gl_vm_attach();
	const char *vm = getenv("NK_VM");
	if (!vm || !*vm) {
		nk_gl_warn("netkernel: NK_VM is not set; run the program with nkrun "
			   "(or set NK_VM=<vm> and NK_CTL=<control socket>)");
		return -ENETDOWN;
	}
	if (strlen(vm) >= NK_NAME_MAX) {
		nk_gl_warn("netkernel: NK_VM '%s' is longer than %d bytes", vm, NK_NAME_MAX - 1);
		return -ENAMETOOLONG;
	}
	const char *path = nk_ctl_path();
	/* nk_ctl_connect calls socket/connect/close: they reach our interposers
	 * with AF_UNIX / non-NetKernel fds and pass straight through. */
	int ctl = nk_ctl_connect(path);
	if (ctl < 0) {
		nk_gl_warn("netkernel: cannot reach CoreEngine at %s: %s (is nk-coreengine running?)",
			   path, strerror(-ctl));
		return ctl;
	}
	int fds[3] = { -1, -1, -1 };
	uint32_t chan = 0;
	uint32_t key[2];
	int r = nk_gl_hello(ctl, vm, 0, NULL, fds, &chan, key);
	if (r < 0) {
		REAL(close)(ctl);
		return r;
	}
	char err[256];
	struct nk_region reg;
	r = nk_region_map_fd(&reg, fds[0], NK_REGION_VM, err, sizeof(err));
	if (r < 0) {
		nk_gl_warn("netkernel: bad NK device from CoreEngine at %s: %s", path, err);
		nk_gl_close_fds(fds, 3);
		REAL(close)(ctl);
		return r;
	}
	/* The mapping outlives the fd; one fewer internal fd to protect. */
	REAL(close)(reg.fd);
	reg.fd = -1;
	r = nk_gl_adopt(&reg, chan, ctl, fds[1], fds[2], key);
	if (r < 0) {
		nk_region_unmap(&reg);
		nk_gl_close_fds(fds + 1, 2);
		REAL(close)(ctl);
	}
	return r;
}

/* ---- fork ----
 *
 * A child must not share the parent's channel (one producer per ring) and
 * must not keep the parent's control connection open (the CoreEngine would
 * never see the parent die). Before fork() the parent asks for the child's
 * channel on a second control connection (HELLO with its channel + 1 and
 * key): the CoreEngine makes it hold every socket the parent holds. The child
 * adopts that channel; the parent closes its copy of the connection, so the
 * connection's EOF later means the child died (or fork() failed). Because
 * the child's references exist before fork() returns, a parent that closes
 * its copy of a socket right away (the classic accept-fork-close server)
 * cannot close it under the child. */

static void nk_gl_fork_close(void)
{
	int fds[3] = { nk_gl.fork_ctl, nk_gl.fork_up, nk_gl.fork_down };
	nk_gl_close_fds(fds, 3);
	nk_gl.fork_ctl = nk_gl.fork_up = nk_gl.fork_down = -1;
}

static void nk_gl_atfork_prepare(void)
{
	nk_gl_lock();
	nk_gl.fork_ctl = nk_gl.fork_up = nk_gl.fork_down = -1;
	nk_gl.fork_vm = false;
	if (nk_gl.state == NK_GL_ATTACHED && nk_gl.vmmode) {
		/* VM mode: claim the child's channel on the device, fork_of =
		 * our channel with our key; the CoreEngine copies our holdings
		 * before it publishes OPEN. If fork() then fails, the channel
		 * carries our pid and goes when we do. */
		uint32_t chan, seq, key[2];
		if (nk_gl_vm_claim(&nk_gl.reg, nk_gl.chan + 1, nk_gl.key, &chan, &seq, key) == 0) {
			nk_gl.fork_vm = true;
			nk_gl.fork_chan = chan;
			nk_gl.fork_seq = seq;
			memcpy(nk_gl.fork_key, key, sizeof(key));
		}
		return;
	}
	const char *vm = getenv("NK_VM");
	if (nk_gl.state != NK_GL_ATTACHED || !vm)
		return;
	int ctl = nk_ctl_connect(nk_ctl_path());
	if (ctl < 0)
		return; /* the child detaches; its inherited sockets fail with EIO */
	int fds[3] = { -1, -1, -1 };
	uint32_t chan, key[2];
	if (nk_gl_hello(ctl, vm, nk_gl.chan + 1, nk_gl.key, fds, &chan, key) < 0) {
		REAL(close)(ctl);
		return;
	}
	REAL(close)(fds[0]); /* the region: the child keeps the parent's mapping */
	if (chan >= nk_gl.reg.g.nchan) {
		nk_gl_close_fds(fds + 1, 2);
		REAL(close)(ctl);
		return;
	}
	nk_gl.fork_ctl = ctl;
	nk_gl.fork_up = fds[1];
	nk_gl.fork_down = fds[2];
	nk_gl.fork_chan = chan;
	memcpy(nk_gl.fork_key, key, sizeof(key));
}

static void nk_gl_atfork_parent(void)
{
	nk_gl.fork_vm = false;
	nk_gl_fork_close();
	nk_gl_unlock();
}

/* Take over the channel the parent prepared. 0, or -1 to fall back. */
static int nk_gl_fork_adopt(void)
{
	struct nk_gl_sock **owner = calloc(nk_gl.reg.g.tx_per_chan, sizeof(*owner));
	struct nk_pool pool;
	if (!owner || nk_pool_init(&pool, nk_geom_tx_first(&nk_gl.reg.g, nk_gl.fork_chan),
				   nk_gl.reg.g.tx_per_chan) < 0) {
		free(owner);
		return -1;
	}
	int old[3] = { nk_gl.ctl_fd, nk_gl.up_efd, nk_gl.down_efd };
	nk_gl_close_fds(old, 3);
	if (nk_gl.fork_down >= 0) {
		int fl = REAL(fcntl)(nk_gl.fork_down, F_GETFL);
		if (fl >= 0)
			(void)REAL(fcntl)(nk_gl.fork_down, F_SETFL, fl | O_NONBLOCK);
	}
	nk_gl.ctl_fd = nk_gl.fork_ctl;
	nk_gl.up_efd = nk_gl.fork_up;
	nk_gl.down_efd = nk_gl.fork_down;
	nk_gl.fork_ctl = nk_gl.fork_up = nk_gl.fork_down = -1;
	nk_gl.chan = nk_gl.fork_chan;
	memcpy(nk_gl.key, nk_gl.fork_key, sizeof(nk_gl.key));
	nk_region_up_ring(&nk_gl.reg, nk_gl.chan, &nk_gl.up);
	nk_region_down_ring(&nk_gl.reg, nk_gl.chan, &nk_gl.down);
	nk_pool_fini(&nk_gl.pool);
	nk_gl.pool = pool;
	free(nk_gl.tx_owner);
	nk_gl.tx_owner = owner;
	nk_gl.reqs = NULL; /* the parent's requests complete on its channel */
	nk_gl.sleepers = nk_gl.tx_sleepers = 0;
	nk_gl.async_out = 0; /* the parent's complete on its channel */
	nk_gl.pid = (uint32_t)getpid();
	if (nk_gl.vmmode) {
		nk_gl.vc_seq = nk_gl.fork_seq;
		nk_gl.vc_beat_ms = 0;
		nk_gl.fork_vm = false;
		nk_gl_vm_adopt_pid(&nk_gl.reg, nk_gl.chan, nk_gl.vc_seq);
	}
	nk_gl_fd_fork_keep();
	return 0;
}

static void nk_gl_atfork_child(void)
{
	pthread_mutex_init(&nk_gl.lock, NULL);
	if (nk_gl.state == NK_GL_DETACHED)
		return;
	if ((nk_gl.fork_ctl >= 0 || nk_gl.fork_vm) && nk_gl_fork_adopt() == 0)
		return;
	nk_gl.fork_vm = false;
	nk_gl_fork_close();
	/* No channel for the child: it re-attaches on its next socket(), and
	 * the sockets it inherited are stale (no channel of it holds them). */
	int fds[3] = { nk_gl.ctl_fd, nk_gl.up_efd, nk_gl.down_efd };
	nk_gl_close_fds(fds, 3);
	nk_gl.ctl_fd = nk_gl.up_efd = nk_gl.down_efd = -1;
	nk_gl_fd_mark_stale();
	nk_gl.reqs = NULL;
	nk_gl.sleepers = nk_gl.tx_sleepers = 0;
	nk_gl.async_out = 0; /* the parent's complete on its channel */
	nk_gl.tx_owner = NULL;
	memset(&nk_gl.pool, 0, sizeof(nk_gl.pool));
	nk_gl.state = NK_GL_DETACHED;
	nk_gl.warned = false;
}

__attribute__((constructor)) static void nk_gl_attach_init(void)
{
	pthread_atfork(nk_gl_atfork_prepare, nk_gl_atfork_parent, nk_gl_atfork_child);
}
