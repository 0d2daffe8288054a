/* SPDX-License-Identifier: MIT */
/*
 * nk-vmagent - the in-VM half of "this process died" (VM mode).
 *
 *   nk-vmagent [--device pci|PATH] [--interval-ms N] [--once] [--verbose]
 *
 * In process mode the CoreEngine learns that a guest process died from the
 * EOF of its control socket. Inside a VM there is no such socket, so this
 * agent (started by the guest's /init) looks at the claim line of every
 * channel of the NK device every N ms (default 100): when the process that
 * claimed the channel's current incarnation no longer exists (or is a
 * zombie), it writes gone = seq. The CoreEngine then runs the same path as a
 * control socket EOF. The agent only ever writes guest-side words.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nk_vmdev.h"

/* Alive = exists and is not a zombie (an unreaped child still "exists"). */
static int pid_alive(uint32_t pid)
{
	char path[64], buf[512];
	if (pid == 0 || pid > 0x3fffffff)
		return 0;
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 0;
	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

static int scan(struct nk_region *r)
{
	int released = 0;
	for (uint32_t c = 0; c < r->g.nchan; c++) {
		struct nk_chan_ctl *l = &nk_region_chan(r, c)->ctl;
		uint32_t state = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE);
		uint32_t seq = __atomic_load_n(&l->seq, __ATOMIC_RELAXED);
		uint64_t claim = __atomic_load_n(&l->claim, __ATOMIC_ACQUIRE);
		if (state == NK_VC_NONE || state == NK_VC_DOWN)
			continue;
		if ((uint32_t)(claim >> 32) != seq || __atomic_load_n(&l->gone, __ATOMIC_RELAXED) == seq)
			continue; /* not claimed at this incarnation, or already released */
		uint32_t pid = (uint32_t)claim;
		if (!pid_alive(pid)) {
			__atomic_store_n(&l->gone, seq, __ATOMIC_RELEASE);
			released++;
		}
	}
	return released;
}

int main(int argc, char **argv)
{
	const char *dev = "pci";
	long interval_ms = 100;
	int once = 0, verbose = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
			interval_ms = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--once"))
			once = 1;
		else if (!strcmp(argv[i], "--verbose"))
			verbose = 1;
		else {
			fprintf(stderr, "usage: nk-vmagent [--device pci|PATH] [--interval-ms N] [--once] [--verbose]\n");
			return 2;
		}
	}
	if (interval_ms < 1 || interval_ms > 60000)
		interval_ms = 100;
	struct nk_region r;
	char err[512];
	int rc = nk_vmdev_map(dev, &r, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "nk-vmagent: %s\n", err);
		return 1;
	}
	/* Never preloaded with GuestLib, and never a channel holder itself. */
	struct timespec ts = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
	for (;;) {
		int n = scan(&r);
		if (n && verbose)
			fprintf(stderr, "nk-vmagent: released %d channel(s) of exited processes\n", n);
		if (once)
			return 0;
		nanosleep(&ts, NULL);
	}
}
