/* SPDX-License-Identifier: MIT */
/*
 * bench_ce.c - NQE switching rate of the real CoreEngine.
 *
 *   bench_ce [-C nk-coreengine] [-r RUNS] [-t SECONDS] [-w 32,1] [-v 1,4,16]
 *            [-j JSONL] [-l CE_LOG]
 *
 * Starts build/bin/nk-coreengine (pinned to CPU 0) with 16 VMs and one NSM
 * on a private control socket. The CoreEngine starts its NSM by exec'ing
 * --nsm-bin, which is this program: run that way (--ctl/--name arguments and
 * NK_BCE_HANDOFF in the environment) it registers as the NSM (NSM_HELLO,
 * WELCOME, VM_ATTACH), hands its control socket, region and doorbells over
 * to the benchmark process through NK_BCE_HANDOFF and then sleeps. The
 * benchmark process (pinned to CPU 1) then plays both the fake guests (one
 * channel in each VM: GUEST_HELLO/WELCOME) and the fake NSM in one busy loop;
 * with -v 4, guests of 4 VMs post at once (round robin), the others idle:
 *
 *   guest:  SOCKET once, then keeps W SENDs in flight (TX chunks of its
 *           partition, len derived from a sequence number)
 *   NSM:    answers SOCKET, answers every SEND at once with SEND_DONE
 *           (result = len); ignores GRANT/RX_CREDIT
 *
 * so every SEND crosses the CoreEngine twice (guest -> NSM, SEND_DONE NSM ->
 * guest), with its real validation, connection table and chunk tracking.
 * Reported: NQEs switched per second (2 per SEND round trip) with W = 32,
 * per VM, for 1, 4 and 16 VMs, and the SEND round-trip time with W = 1 (one
 * VM). Doorbells are honoured
 * (need_wakeup -> eventfd write), so an idle CoreEngine is woken as a real
 * guest would. Each SEND_DONE is checked against what was sent (chunk in
 * flight, result = len); a mismatch fails the run (exit 2).
 *
 * No native counterpart exists (a native stack has no switch), so the
 * summary's native and ratio are null. The fake peers cost CPU 1 some work
 * per NQE too: the rate is a lower bound on what the CoreEngine can switch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"
#include "nk_ctl.h"
#include "nk_region.h"

#include "bench_util.h"

#define MAX_RUNS 64
#define MAX_W 64
#define MAX_VMS 16

static int die(const char *what)
{
	fprintf(stderr, "bench_ce: %s\n", what);
	return 1;
}

/* ---- NSM mode: register, hand everything to the benchmark, sleep ---- */

static int fake_nsm_main(int argc, char **argv, const char *handoff)
{
	const char *ctl = NULL, *name = NULL;
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "--ctl"))
			ctl = argv[i + 1];
		else if (!strcmp(argv[i], "--name"))
			name = argv[i + 1];
	}
	if (!ctl || !name)
		return die("nsm mode: --ctl and --name needed");
	int fd = nk_ctl_connect(ctl);
	if (fd < 0)
		return die("nsm mode: cannot connect to the CoreEngine");
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_NSM_HELLO);
	m.pid = (uint32_t)getpid();
	snprintf(m.name, sizeof(m.name), "%s", name);
	if (nk_ctl_send(fd, &m, NULL, 0) < 0)
		return die("nsm mode: hello");
	int wfds[NK_CTL_MAX_FDS] = { -1, -1, -1, -1 }, afd = -1;
	uint32_t nsm_idx = 0, vm_idx = 0;
	bool welcome = false, attach = false;
	while (!welcome || !attach) {
		int fds[NK_CTL_MAX_FDS], nf = 0;
		if (nk_ctl_recv(fd, &m, fds, NK_CTL_MAX_FDS, &nf) < 0)
			return die("nsm mode: control socket closed before WELCOME/VM_ATTACH");
		if (m.type == NK_CTL_NSM_WELCOME && nf == 3) {
			memcpy(wfds, fds, sizeof(fds));
			nsm_idx = m.index;
			welcome = true;
		} else if (m.type == NK_CTL_VM_ATTACH && nf == 1) {
			afd = fds[0];
			vm_idx = m.index;
			attach = true;
		} else {
			for (int i = 0; i < nf; i++)
				close(fds[i]);
		}
	}
	close(afd); /* the fake NSM never touches payload */
	int h = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", handoff);
	if (h < 0 || connect(h, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return die("nsm mode: cannot reach the benchmark");
	nk_ctl_init(&m, NK_CTL_NSM_WELCOME);
	m.index = nsm_idx;
	m.pid = vm_idx;
	int out[4] = { fd, wfds[0], wfds[1], wfds[2] };
	if (nk_ctl_send(h, &m, out, 4) < 0)
		return die("nsm mode: handoff");
	for (;;)
		pause(); /* the CoreEngine SIGTERMs us when it stops */
}

/* ---- benchmark process ---- */

struct side {
	struct nk_region reg;
	struct nk_ring up, down;
	int up_efd, down_efd, ctl;
};

static void doorbell(struct side *s)
{
	if (nk_ring_needs_wakeup(&s->up)) {
		uint64_t one = 1;
		if (write(s->up_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			perror("bench_ce: doorbell");
	}
}

/* A fake guest: one channel of one VM. Chunk ids are its VM's. */
struct guest {
	struct side s;
	uint32_t tx_first, tx_count, free_stack[256], nfree;
	uint32_t ck_len[256];
	bool ck_busy[256];
	uint32_t gsock;
	uint64_t posted, done;
};

static struct side N; /* fake NSM */
static struct guest G[MAX_VMS];
static uint64_t seq, posted, done, bad, bytes_posted, bytes_done;
static struct nk_nqe nbacklog[4096];
static uint32_t nb_len;

/* Fake NSM: answer what the CoreEngine sent. */
static void nsm_round(void)
{
	struct nk_nqe in[64];
	uint32_t k = nk_ring_dequeue_burst(&N.down, in, 64);
	for (uint32_t i = 0; i < k && nb_len < 4096; i++) {
		struct nk_nqe *q = &in[i], *o = &nbacklog[nb_len];
		if (q->flags & NK_NQF_COMPLETION)
			continue;
		if (q->op == NK_OP_SOCKET) {
			*o = *q;
			o->flags = NK_NQF_COMPLETION;
			o->result = (int32_t)(7 + q->vm); /* one socket per VM: ids must differ */
			o->chunk = NK_NO_CHUNK;
			nb_len++;
		} else if (q->op == NK_OP_SEND) {
			*o = *q;
			o->op = NK_OP_SEND_DONE;
			o->flags = NK_NQF_COMPLETION;
			o->result = (int32_t)q->len;
			nb_len++;
		} else if (q->op != NK_OP_GRANT && q->op != NK_OP_RX_CREDIT && q->op != NK_OP_CLOSE) {
			*o = *q; /* any other request: succeed */
			o->flags = NK_NQF_COMPLETION;
			o->result = 0;
			o->chunk = NK_NO_CHUNK;
			nb_len++;
		}
	}
	if (nb_len) {
		uint32_t w = nk_ring_enqueue_burst(&N.up, nbacklog, nb_len);
		if (w) {
			memmove(nbacklog, nbacklog + w, (nb_len - w) * sizeof(nbacklog[0]));
			nb_len -= w;
			doorbell(&N);
		}
	}
}

/* Fake guest: collect completions, keep w SENDs in flight (if posting). */
static void guest_round(struct guest *g, uint32_t w, bool post)
{
	struct nk_nqe in[64];
	uint32_t k = nk_ring_dequeue_burst(&g->s.down, in, 64);
	for (uint32_t i = 0; i < k; i++) {
		struct nk_nqe *q = &in[i];
		if (q->op == NK_OP_SOCKET && (q->flags & NK_NQF_COMPLETION)) {
			g->gsock = q->result >= 0 ? (uint32_t)q->result : NK_NO_SOCK - 1;
		} else if (q->op == NK_OP_SEND_DONE) {
			uint32_t c = q->chunk - g->tx_first;
			if (c >= g->tx_count || !g->ck_busy[c] || q->result != (int32_t)g->ck_len[c]) {
				bad++;
				continue;
			}
			g->ck_busy[c] = false;
			g->free_stack[g->nfree++] = q->chunk;
			g->done++;
			done++;
			bytes_done += g->ck_len[c];
		}
	}
	if (!post || g->gsock >= NK_NO_SOCK - 1)
		return;
	struct nk_nqe out[MAX_W];
	uint32_t n = 0;
	while (g->posted - g->done + n < w && g->nfree > n) {
		uint32_t c = g->free_stack[g->nfree - 1 - n];
		uint32_t len = 1 + (uint32_t)(seq + n) % 4096;
		out[n] = (struct nk_nqe){ .op = NK_OP_SEND, .sock = g->gsock, .cookie = seq + n,
					  .chunk = c, .off = 0, .len = len };
		n++;
	}
	if (!n)
		return;
	uint32_t e = nk_ring_enqueue_burst(&g->s.up, out, n);
	for (uint32_t i = 0; i < e; i++) {
		uint32_t c = out[i].chunk - g->tx_first;
		g->ck_busy[c] = true;
		g->ck_len[c] = out[i].len;
		bytes_posted += out[i].len;
	}
	g->nfree -= e;
	g->posted += e;
	posted += e;
	seq += e;
	if (e)
		doorbell(&g->s);
}

/* Every guest of the first nv VMs posts (window w each); the rest only
 * collect completions. */
static void guests_round(uint32_t nv, uint32_t w, bool post)
{
	for (uint32_t v = 0; v < MAX_VMS; v++)
		guest_round(&G[v], w, post && v < nv);
}

static int map_side(struct side *s, int *fds, uint32_t kind, uint32_t chan, const char *who)
{
	char err[160];
	if (nk_region_map_fd(&s->reg, fds[0], kind, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_ce: %s region: %s\n", who, err);
		return -1;
	}
	s->up_efd = fds[1];
	s->down_efd = fds[2];
	nk_region_up_ring(&s->reg, chan, &s->up);
	nk_region_down_ring(&s->reg, chan, &s->down);
	return 0;
}

static int bench_main(int argc, char **argv)
{
	const char *cebin = "build/bin/nk-coreengine", *jsonl = NULL, *celog = NULL;
	const char *wlist = "32,1", *vlist = "1,4,16";
	int runs = 5;
	double secs = 1.0;
	int o;
	while ((o = getopt(argc, argv, "C:r:t:w:v:j:l:")) != -1) {
		switch (o) {
		case 'C': cebin = optarg; break;
		case 'r': runs = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		case 'w': wlist = optarg; break;
		case 'v': vlist = optarg; break;
		case 'j': jsonl = optarg; break;
		case 'l': celog = optarg; break;
		default:
			fprintf(stderr, "usage: bench_ce [-C nk-coreengine] [-r RUNS] [-t SECONDS] "
					"[-w 32,1] [-v 1,4,16] [-j JSONL] [-l CE_LOG]\n");
			return 2;
		}
	}
	uint32_t ws[8];
	int nws = 0;
	for (const char *s = wlist; *s && nws < 8;) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > 32)
			return die("-w: windows 1..32 (GuestLib's per-socket limit)");
		ws[nws++] = (uint32_t)v;
		s = *end == ',' ? end + 1 : end;
	}
	uint32_t vs[8];
	int nvs = 0;
	for (const char *s = vlist; *s && nvs < 8;) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > MAX_VMS)
			return die("-v: VM counts 1..16");
		vs[nvs++] = (uint32_t)v;
		s = *end == ',' ? end + 1 : end;
	}
	if (runs < 1 || runs > MAX_RUNS || secs <= 0)
		return die("bad -r/-t");
	char self[PATH_MAX], cepath[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0 || !realpath(cebin, cepath))
		return die("cannot resolve own path or the CoreEngine binary (-C)");
	self[sl] = 0;

	char dir[] = "/tmp/nk-bench-ce.XXXXXX";
	if (!mkdtemp(dir))
		return die("mkdtemp");
	char ctl[160], hand[160], logp[200];
	snprintf(ctl, sizeof(ctl), "%s/ce.sock", dir);
	snprintf(hand, sizeof(hand), "%s/h.sock", dir);
	snprintf(logp, sizeof(logp), "%s", celog ? celog : "/dev/null");
	int hl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, hand, strlen(hand) + 1); /* < 40 bytes: /tmp/nk-bench-ce.XXXXXX/h.sock */
	if (hl < 0 || bind(hl, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(hl, 4) < 0)
		return die("handoff socket");
	setenv("NK_BCE_HANDOFF", hand, 1);

	char inst[32];
	snprintf(inst, sizeof(inst), "bce%d", (int)getpid());
	pid_t ce = fork();
	if (ce < 0)
		return die("fork");
	if (ce == 0) {
		if (bu_pin(0) < 0)
			fprintf(stderr, "bench_ce: WARNING: cannot pin the CoreEngine to CPU 0\n");
		int lf = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (lf >= 0) {
			dup2(lf, 1);
			dup2(lf, 2);
		}
		char vmspec[MAX_VMS][64];
		const char *av[12 + 2 * MAX_VMS];
		int ac = 0;
		av[ac++] = cepath;
		av[ac++] = "--ctl", av[ac++] = ctl;
		av[ac++] = "--instance", av[ac++] = inst;
		av[ac++] = "--nsm-bin", av[ac++] = self;
		av[ac++] = "--nsm", av[ac++] = "name=fake";
		for (int v = 0; v < MAX_VMS; v++) {
			snprintf(vmspec[v], sizeof(vmspec[v]), "name=bvm%d,ip=10.99.0.%d,nsm=fake", v, v + 2);
			av[ac++] = "--vm", av[ac++] = vmspec[v];
		}
		av[ac] = NULL;
		execv(cepath, (char *const *)av);
		_exit(127);
	}
	int rc = 1;
	int pe = bu_pin(1);
	if (pe < 0)
		fprintf(stderr, "bench_ce: WARNING: cannot pin the benchmark to CPU 1: %s\n",
			strerror(-pe));

	/* the fake NSM hands over its side */
	struct pollfd pf = { .fd = hl, .events = POLLIN };
	if (poll(&pf, 1, 10000) != 1) {
		fprintf(stderr, "bench_ce: the fake NSM did not check in within 10 s (CE log: %s)\n",
			logp);
		goto out;
	}
	int hc = accept4(hl, NULL, NULL, SOCK_CLOEXEC);
	struct nk_ctl_msg m;
	int fds[NK_CTL_MAX_FDS], nf = 0;
	if (hc < 0 || nk_ctl_recv(hc, &m, fds, NK_CTL_MAX_FDS, &nf) < 0 || nf != 4) {
		fprintf(stderr, "bench_ce: handoff failed\n");
		goto out;
	}
	N.ctl = fds[0];
	if (map_side(&N, fds + 1, NK_REGION_NSM, 0, "NSM") < 0)
		goto out;

	/* the fake guests: one channel in each VM, one socket each */
	for (int v = 0; v < MAX_VMS; v++) {
		struct guest *g = &G[v];
		g->gsock = NK_NO_SOCK;
		g->s.ctl = nk_ctl_connect(ctl);
		nk_ctl_init(&m, NK_CTL_GUEST_HELLO);
		m.pid = (uint32_t)getpid();
		snprintf(m.name, sizeof(m.name), "bvm%d", v);
		if (g->s.ctl < 0 || nk_ctl_send(g->s.ctl, &m, NULL, 0) < 0 ||
		    nk_ctl_recv(g->s.ctl, &m, fds, NK_CTL_MAX_FDS, &nf) < 0 ||
		    m.type != NK_CTL_GUEST_WELCOME || nf != 3) {
			fprintf(stderr, "bench_ce: guest hello refused: %s\n", m.text);
			goto out;
		}
		uint32_t chan = m.index;
		if (map_side(&g->s, fds, NK_REGION_VM, chan, "VM") < 0)
			goto out;
		g->tx_first = nk_geom_tx_first(&g->s.reg.g, chan);
		g->tx_count = g->s.reg.g.tx_per_chan;
		if (g->tx_count > 256)
			goto out;
		for (uint32_t i = 0; i < g->tx_count; i++)
			g->free_stack[g->nfree++] = g->tx_first + g->tx_count - 1 - i;
		struct nk_nqe sq = { .op = NK_OP_SOCKET, .sock = NK_NO_SOCK, .cookie = 1,
				     .chunk = NK_NO_CHUNK };
		sq.arg.sock = (struct nk_sockargs){ 2 /* AF_INET */, 1 /* SOCK_STREAM */, 0 };
		if (!nk_ring_enqueue(&g->s.up, &sq)) {
			fprintf(stderr, "bench_ce: guest ring full\n");
			goto out;
		}
		doorbell(&g->s);
		uint64_t t_end = bu_now_ns() + 5000000000ull;
		while (g->gsock == NK_NO_SOCK && bu_now_ns() < t_end) {
			nsm_round();
			guest_round(g, 0, false);
		}
		if (g->gsock >= NK_NO_SOCK - 1) {
			fprintf(stderr, "bench_ce: SOCKET through the CoreEngine failed (VM %d: %s)\n", v,
				g->gsock == NK_NO_SOCK ? "no answer in 5 s" : "refused");
			goto out;
		}
	}

	FILE *jf = jsonl ? fopen(jsonl, "a") : NULL;
	printf("bench_ce: CoreEngine on CPU 0, fake guest + fake NSM on CPU 1, %d runs x %.1f s\n",
	       runs, secs);
	printf("%4s %8s %14s %10s %10s %12s\n", "VMs", "window", "median M NQE/s", "min", "max",
	       "RTT us (med)");
	rc = 0;
	for (int vi = 0; vi < nvs && rc == 0; vi++)
	for (int wi = 0; wi < nws && rc == 0; wi++) {
		uint32_t nv = vs[vi];
		if (ws[wi] == 1 && nv != 1)
			continue; /* the round trip is measured with one VM */
		double rate[MAX_RUNS], rtt[MAX_RUNS];
		for (int r = 0; r < runs; r++) {
			uint64_t w0 = bu_now_ns() + 100000000ull; /* 100 ms warm-up */
			while (bu_now_ns() < w0) {
				guests_round(nv, ws[wi], true);
				nsm_round();
			}
			uint64_t d0 = done, t0 = bu_now_ns(), t1 = t0 + (uint64_t)(secs * 1e9), now;
			do {
				guests_round(nv, ws[wi], true);
				nsm_round();
				now = bu_now_ns();
			} while (now < t1);
			double sec = (double)(now - t0) / 1e9;
			uint64_t trips = done - d0;
			rate[r] = 2.0 * (double)trips / sec / 1e6;
			rtt[r] = trips ? sec * 1e6 * ws[wi] * nv / (double)trips : 0; /* Little's law */
		}
		/* drain and check */
		uint64_t dl = bu_now_ns() + 3000000000ull;
		while (posted != done && bu_now_ns() < dl) {
			guests_round(nv, ws[wi], false);
			nsm_round();
		}
		if (posted != done || bytes_posted != bytes_done || bad) {
			fprintf(stderr,
				"bench_ce: CHECK FAILED: posted %" PRIu64 " done %" PRIu64 " bytes %" PRIu64
				"/%" PRIu64 " bad %" PRIu64 "\n",
				posted, done, bytes_posted, bytes_done, bad);
			rc = 2;
			break;
		}
		double med = bu_median(rate, (size_t)runs), lo = rate[0], hi = rate[runs - 1];
		double mrtt = bu_median(rtt, (size_t)runs);
		printf("%4u %8u %14.3f %10.3f %10.3f %12.2f\n", nv, ws[wi], med, lo, hi, mrtt);
		if (jf) {
			if (ws[wi] == 1)
				fprintf(jf,
					"{\"name\":\"ce_send_rtt_w1\",\"unit\":\"us\",\"better\":\"lower\","
					"\"nk\":%.3f,\"native\":null,\"ratio\":null,\"runs\":%d,"
					"\"nk_min\":%.3f,\"nk_max\":%.3f,\"goal\":null,\"meets_goal\":null,"
					"\"native_is\":\"none: a native stack has no switch\","
					"\"what\":\"guest SEND -> CoreEngine -> NSM -> SEND_DONE -> CoreEngine -> "
					"guest, one in flight, busy-polling peers\"}\n",
					mrtt, runs, rtt[0], rtt[runs - 1]);
			char vsuf[16] = "";
			if (nv != 1)
				snprintf(vsuf, sizeof(vsuf), "_vms%u", nv);
			fprintf(jf,
				"{\"name\":\"ce_switch_w%u%s\",\"unit\":\"M NQE/s\",\"better\":\"higher\","
				"\"nk\":%.3f,\"native\":null,\"ratio\":null,\"runs\":%d,\"nk_min\":%.3f,"
				"\"nk_max\":%.3f,\"goal\":null,\"meets_goal\":null,"
				"\"native_is\":\"none: a native stack has no switch\","
				"\"what\":\"NQEs switched by the real nk-coreengine (SEND + SEND_DONE), %u "
				"SENDs in flight per VM, %u VMs\"}\n",
				ws[wi], vsuf, med, runs, lo, hi, ws[wi], nv);
		}
	}
	if (jf)
		fclose(jf);
out:
	kill(ce, SIGTERM);
	int st;
	uint64_t kdl = bu_now_ns() + 3000000000ull;
	while (waitpid(ce, &st, WNOHANG) == 0) {
		if (bu_now_ns() > kdl) {
			kill(ce, SIGKILL);
			waitpid(ce, &st, 0);
			break;
		}
		usleep(10000);
	}
	/* A CoreEngine that crashed left its regions behind (it removes them
	 * itself when it stops cleanly; then these find nothing). */
	char shm[128];
	for (int v = 0; v < MAX_VMS; v++) {
		snprintf(shm, sizeof(shm), "/dev/shm/nk-%s-vm-bvm%d", inst, v);
		unlink(shm);
	}
	snprintf(shm, sizeof(shm), "/dev/shm/nk-%s-nsm-fake", inst);
	unlink(shm);
	unlink(hand);
	unlink(ctl);
	rmdir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	const char *handoff = getenv("NK_BCE_HANDOFF");
	for (int i = 1; i < argc; i++)
		if (handoff && !strcmp(argv[i], "--name"))
			return fake_nsm_main(argc, argv, handoff);
	return bench_main(argc, argv);
}
