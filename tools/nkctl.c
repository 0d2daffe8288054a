/* SPDX-License-Identifier: MIT */
/*
 * nkctl - the operator's command line for a CoreEngine.
 *
 *   nkctl [--ctl PATH] [--json] list vms|nsms|conns
 *   nkctl [--ctl PATH] stats
 *   nkctl [--ctl PATH] switch|attach VM NSM, start NSM, vm-pid VM PID, vm-down VM
 *   nkctl [--ctl PATH] set VM weight=W rate=R ops=N, set-nsm NSM iso=on|off rate=R
 */
#include <stdio.h>
#include <string.h>

#include "nk_ctl.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: nkctl [--ctl PATH] [--json] list vms|nsms|conns\n"
		   "       nkctl [--ctl PATH] stats\n"
		   "       nkctl [--ctl PATH] switch VM NSM   new connections of VM go to NSM\n"
		   "       nkctl [--ctl PATH] attach VM NSM   new sockets of VM go to NSM, connections stay\n"
		   "       nkctl [--ctl PATH] start NSM       start an NSM (a later switch is warm)\n"
		   "       nkctl [--ctl PATH] set VM [weight=1..1000] [rate=BITS/S] [ops=N/S]\n"
		   "                                        share and caps of a VM (rate/ops 0 = no cap)\n"
		   "       nkctl [--ctl PATH] set-nsm NSM [iso=on|off] [rate=BITS/S]\n"
		   "                                        weighted-fair admission towards NSM at that rate\n"
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
	return nk_ctl_command(ctl, cmd, stdout, stderr);
}
