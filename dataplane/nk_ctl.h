/* SPDX-License-Identifier: MIT */
/*
 * nk_ctl.h - control-socket helpers: fixed-size nk_ctl_msg over AF_UNIX
 * SOCK_SEQPACKET, with up to NK_CTL_MAX_FDS descriptors attached.
 */
#ifndef NK_CTL_H
#define NK_CTL_H

#include <stddef.h>
#include <stdio.h>

#include "netkernel/nk_abi.h"

#define NK_CTL_MAX_FDS 4
#define NK_CTL_DEFAULT_PATH "/run/netkernel/ce.sock"

/** Initialise msg with magic and type, everything else zero. */
void nk_ctl_init(struct nk_ctl_msg *msg, uint32_t type);
/** Send msg with nfds descriptors. 0 or -errno. */
int nk_ctl_send(int sock, const struct nk_ctl_msg *msg, const int *fds, int nfds);
/** Receive one message; received descriptors go to fds (up to maxfds, the
 *  rest are closed), *nfds says how many. 0, -errno, or -ECONNRESET on EOF.
 *  A message of the wrong size or magic is -EPROTO (its fds are closed). */
int nk_ctl_recv(int sock, struct nk_ctl_msg *msg, int *fds, int maxfds, int *nfds);
/** Connect a SEQPACKET socket to path (CLOEXEC). fd or -errno. */
int nk_ctl_connect(const char *path);
/** Control socket path: $NK_CTL, else the default. */
const char *nk_ctl_path(void);
/** Run an operator command (as nkctl does): the reply goes to out, or to
 *  err when the command failed. 0 on success, 1 when the CoreEngine refused
 *  the command or could not be reached (a one-line reason is on err). */
int nk_ctl_command(const char *path, const char *text, FILE *out, FILE *err);

#endif /* NK_CTL_H */
