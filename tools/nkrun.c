/* SPDX-License-Identifier: MIT */
/*
 * nkrun - run a command as a guest of a NetKernel VM (process mode).
 *
 *   nkrun --vm NAME [--ctl PATH] [--netns NS] [--nsm NSM] -- CMD [ARGS...]
 *
 * --nsm attaches the VM to that NSM first (as `nkctl attach VM NSM`: the
 * VM's new sockets go there, existing connections stay).
 *
 * Sets LD_PRELOAD to GuestLib (found next to this binary, ../lib), NK_VM and
 * NK_CTL, optionally enters a network namespace, then execs CMD. Any
 * LD_PRELOAD already set is kept after GuestLib; $NK_PRELOAD_EXTRA (e.g. the
 * ASan runtime) goes first. Like `ip netns exec`, a namespace's files in
 * /etc/netns/NS (resolv.conf, hosts) are bind-mounted over /etc in a
 * private mount namespace, so a guest namespace can have its own resolver.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nk_ctl.h"

/* /etc/netns/NS/FILE over /etc/FILE, as iproute2's netns exec does; a
 * failure is reported and fatal (a guest with the host's resolver would
 * silently resolve through the wrong server). 0 when nothing to do. */
static int nkrun_etc_netns(const char *netns)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "/etc/netns/%s", netns);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	if (unshare(CLONE_NEWNS) < 0 || mount("", "/", "none", MS_SLAVE | MS_REC, NULL) < 0) {
		fprintf(stderr, "nkrun: cannot make a mount namespace for %s: %s\n", dir, strerror(errno));
		closedir(d);
		return -1;
	}
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char src[PATH_MAX + 256], dst[300];
		snprintf(src, sizeof(src), "%s/%s", dir, e->d_name);
		snprintf(dst, sizeof(dst), "/etc/%s", e->d_name);
		if (mount(src, dst, "none", MS_BIND, NULL) < 0) {
			fprintf(stderr, "nkrun: bind %s on %s: %s\n", src, dst, strerror(errno));
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: nkrun --vm NAME [--ctl PATH] [--netns NS] [--nsm NSM] [--lib PATH] -- CMD [ARGS...]\n");
}

int main(int argc, char **argv)
{
	const char *vm = NULL, *ctl = NULL, *netns = NULL, *lib = NULL, *nsm = NULL;
	char libbuf[PATH_MAX], self[PATH_MAX];
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "nkrun: %s needs a value\n", argv[i]);
			return 2;
		}
		if (!strcmp(argv[i], "--vm"))
			vm = argv[++i];
		else if (!strcmp(argv[i], "--ctl"))
			ctl = argv[++i];
		else if (!strcmp(argv[i], "--netns"))
			netns = argv[++i];
		else if (!strcmp(argv[i], "--lib"))
			lib = argv[++i];
		else if (!strcmp(argv[i], "--nsm"))
			nsm = argv[++i];
		else {
			fprintf(stderr, "nkrun: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!vm || !*vm || strlen(vm) >= NK_NAME_MAX) {
		fprintf(stderr, "nkrun: --vm NAME is required (1-%d characters)\n", NK_NAME_MAX - 1);
		return 2;
	}
	if (i >= argc) {
		fprintf(stderr, "nkrun: no command given after --\n");
		return 2;
	}
	if (nsm) {
		char cmd[128];
		if (!*nsm || strlen(nsm) >= NK_NAME_MAX || strchr(nsm, ' ')) {
			fprintf(stderr, "nkrun: bad --nsm '%s'\n", nsm);
			return 2;
		}
		snprintf(cmd, sizeof(cmd), "attach %s %s", vm, nsm);
		FILE *devnull = fopen("/dev/null", "w");
		int rc = nk_ctl_command(ctl ? ctl : nk_ctl_path(), cmd, devnull ? devnull : stderr, stderr);
		if (devnull)
			fclose(devnull);
		if (rc) {
			fprintf(stderr, "nkrun: cannot attach VM %s to NSM %s\n", vm, nsm);
			return 2;
		}
	}
	if (!lib) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0) {
			fprintf(stderr, "nkrun: cannot find own path; give --lib\n");
			return 2;
		}
		self[n] = '\0';
		snprintf(libbuf, sizeof(libbuf), "%s/../lib/libnkguest.so", dirname(self));
		lib = libbuf;
	}
	char *real = realpath(lib, NULL);
	if (!real) {
		fprintf(stderr, "nkrun: GuestLib %s: %s (run make first)\n", lib, strerror(errno));
		return 2;
	}
	const char *extra = getenv("NK_PRELOAD_EXTRA"), *old = getenv("LD_PRELOAD");
	size_t len = strlen(real) + (extra ? strlen(extra) : 0) + (old ? strlen(old) : 0) + 3;
	char *pre = malloc(len);
	if (!pre)
		return 1;
	snprintf(pre, len, "%s%s%s%s%s", extra && *extra ? extra : "", extra && *extra ? ":" : "", real,
		 old && *old ? ":" : "", old && *old ? old : "");
	setenv("LD_PRELOAD", pre, 1);
	setenv("NK_VM", vm, 1);
	if (ctl) {
		char *c = realpath(ctl, NULL);
		setenv("NK_CTL", c ? c : ctl, 1);
		free(c);
	}
	if (netns) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "/run/netns/%s", netns);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
			fprintf(stderr, "nkrun: cannot enter network namespace %s: %s\n", netns, strerror(errno));
			return 2;
		}
		close(fd);
		if (nkrun_etc_netns(netns) < 0)
			return 2;
	}
	execvp(argv[i], &argv[i]);
	fprintf(stderr, "nkrun: cannot run %s: %s\n", argv[i], strerror(errno));
	return 127;
}
