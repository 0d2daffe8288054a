/* SPDX-License-Identifier: MIT */
#include "nk_ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void nk_ctl_init(struct nk_ctl_msg *msg, uint32_t type)
{
	memset(msg, 0, sizeof(*msg));
	msg->magic = NK_CTL_MAGIC;
	msg->type = type;
}

int nk_ctl_send(int sock, const struct nk_ctl_msg *msg, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * NK_CTL_MAX_FDS)];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds < 0 || nfds > NK_CTL_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof(*msg))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : -EPROTO;
	}
}

int nk_ctl_recv(int sock, struct nk_ctl_msg *msg, int *fds, int maxfds, int *nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * NK_CTL_MAX_FDS)];
	} cbuf;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };
	ssize_t n;
	int got = 0;

	*nfds = 0;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *in = (int *)CMSG_DATA(c);
		for (int i = 0; i < cnt; i++) {
			if (got < maxfds)
				fds[got++] = in[i];
			else
				close(in[i]);
		}
	}
	if (n != (ssize_t)sizeof(*msg) || msg->magic != NK_CTL_MAGIC || (mh.msg_flags & MSG_TRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		return -EPROTO;
	}
	msg->name[NK_NAME_MAX - 1] = '\0';
	msg->text[sizeof(msg->text) - 1] = '\0';
	*nfds = got;
	return 0;
}

int nk_ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

const char *nk_ctl_path(void)
{
	const char *p = getenv("NK_CTL");
	return (p && *p) ? p : NK_CTL_DEFAULT_PATH;
}

int nk_ctl_command(const char *path, const char *text, FILE *out, FILE *err)
{
	int fd = nk_ctl_connect(path);
	if (fd < 0) {
		fprintf(err, "cannot reach CoreEngine at %s: %s\n", path, strerror(-fd));
		return 1;
	}
	struct nk_ctl_msg m;
	nk_ctl_init(&m, NK_CTL_COMMAND);
	snprintf(m.text, sizeof(m.text), "%s", text);
	if (nk_ctl_send(fd, &m, NULL, 0) < 0) {
		fprintf(err, "cannot send to %s\n", path);
		close(fd);
		return 1;
	}
	for (;;) {
		int fds[NK_CTL_MAX_FDS], nfds;
		int rc = nk_ctl_recv(fd, &m, fds, NK_CTL_MAX_FDS, &nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (rc < 0) {
			fprintf(err, "CoreEngine at %s closed the connection: %s\n", path, strerror(-rc));
			break;
		}
		if (m.type == NK_CTL_ERROR) {
			fprintf(err, "%s\n", m.text);
			break;
		}
		fputs(m.text, m.status < 0 ? err : out);
		if (!m.more) {
			close(fd);
			return m.status < 0 ? 1 : 0;
		}
	}
	close(fd);
	return 1;
}
