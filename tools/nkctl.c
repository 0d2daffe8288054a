/* SPDX-License-Identifier: MIT */
/*
 * nkctl - the operator's command line for a CoreEngine.
 *
 *   nkctl [--ctl PATH] [--json] list vms|nsms|conns
 *   nkctl [--ctl PATH] stats
 *   nkctl [--ctl PATH] switch VM NSM | start NSM | vm-pid VM PID | vm-down VM
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nk_ctl.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: nkctl [--ctl PATH] [--json] list vms|nsms|conns\n"
		   "       nkctl [--ctl PATH] stats\n"
		   "       nkctl [--ctl PATH] switch VM NSM   new connections of VM go to NSM\n"
		   "       nkctl [--ctl PATH] start NSM       start an NSM (a later switch is warm)\n"
		   "       nkctl [--ctl PATH] vm-pid VM PID   VM mode: PID is VM's QEMU; its exit brings VM down\n"
		   "       nkctl [--ctl PATH] vm-down VM      VM mode: drop VM's channels, reset its connections\n");
}

int main(int argc, char **argv)
{
	const char *ctl = NULL;
	char cmd[512] = "";
	size_t len = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--ctl")) {
			if (++i >= argc) {
				fprintf(stderr, "nkctl: --ctl needs a path\n");
				return 2;
			}
			ctl = argv[i];
			continue;
		}
		size_t n = strlen(argv[i]);
		if (len + n + 2 > sizeof(cmd)) {
			fprintf(stderr, "nkctl: command too long\n");
			return 2;
		}
		memcpy(cmd + len, argv[i], n);
		len += n;
		cmd[len++] = ' ';
		cmd[len] = '\0';
	}
	if (!len) {
		usage(stderr);
		return 2;
	}
	if (!ctl)
		ctl = nk_ctl_path();
	int fd = nk_ctl_connect(ctl);
	if (fd < 0) {
		fprintf(stderr, "nkctl: cannot reach CoreEngine at %s: %s\n", ctl, strerror(-fd));
		return 1;
	}
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_COMMAND);
	snprintf(m.text, sizeof(m.text), "%s", cmd);
	if (nk_ctl_send(fd, &m, NULL, 0) < 0) {
		fprintf(stderr, "nkctl: cannot send to %s\n", ctl);
		return 1;
	}
	for (;;) {
		int fds[NK_CTL_MAX_FDS], nfds;
		int rc = nk_ctl_recv(fd, &m, fds, NK_CTL_MAX_FDS, &nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (rc < 0) {
			fprintf(stderr, "nkctl: CoreEngine at %s closed the connection: %s\n", ctl, strerror(-rc));
			return 1;
		}
		if (m.type == NK_CTL_ERROR) {
			fprintf(stderr, "nkctl: %s\n", m.text);
			return 1;
		}
		fputs(m.text, m.status < 0 ? stderr : stdout);
		if (!m.more)
			return m.status < 0 ? 1 : 0;
	}
}
