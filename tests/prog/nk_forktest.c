/* SPDX-License-Identifier: MIT */
/*
 * nk_forktest - sockets across fork(), as servers use them.
 *
 *   nk_forktest conn HOST PORT     connect; fork; the parent closes its copy
 *                                  at once; the child then sends a line and
 *                                  expects it echoed back (remote echo server)
 *   nk_forktest workers PORT N K   listen; fork N workers that accept on the
 *                                  shared listener and answer "worker PID\n";
 *                                  the parent closes its listener copy, and
 *                                  exits 0 once workers served K connections
 *
 * Prints one line per check; exit 0 on success, 1 on failure, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	return 1;
}

static int child_conn(int fd)
{
	char line[64], buf[64];
	usleep(200 * 1000); /* the parent has closed its copy by now */
	int n = snprintf(line, sizeof(line), "hello from child %d\n", (int)getpid());
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n)
		return fail("child send");
	size_t got = 0;
	while (got < (size_t)n) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (r <= 0)
			return fail("child recv echo");
		got += (size_t)r;
	}
	if (memcmp(buf, line, (size_t)n)) {
		printf("FAIL: echo differs\n");
		return 1;
	}
	printf("ok: child used the connection after the parent closed its copy\n");
	return 0;
}

static int do_conn(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return 2;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail("connect");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0)
		_exit(child_conn(fd));
	close(fd); /* right away: the child's reference must keep it open */
	int st;
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("FAIL: child did not succeed\n");
		return 1;
	}
	/* The parent's socket table still works after fork. */
	int fd2 = socket(AF_INET, SOCK_STREAM, 0);
	if (fd2 < 0 || connect(fd2, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail("parent connect after fork");
	if (send(fd2, "x\n", 2, 0) != 2)
		return fail("parent send after fork");
	char c;
	if (recv(fd2, &c, 1, 0) != 1 || c != 'x')
		return fail("parent recv after fork");
	close(fd2);
	printf("ok: parent connects and echoes after fork\n");
	return 0;
}

static int worker(int lfd, int report)
{
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return fail("worker accept");
		}
		char line[64], buf[64];
		ssize_t r = recv(c, buf, sizeof(buf), 0);
		if (r <= 0)
			return fail("worker recv");
		int n = snprintf(line, sizeof(line), "worker %d\n", (int)getpid());
		if (send(c, line, (size_t)n, MSG_NOSIGNAL) != n)
			return fail("worker send");
		close(c);
		char one = 1;
		if (write(report, &one, 1) != 1)
			return fail("worker report");
	}
}

static int do_workers(int port, int n, int k)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1, p[2];
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)
		return fail("listen");
	if (pipe(p) < 0)
		return fail("pipe");
	pid_t kids[64];
	for (int i = 0; i < n; i++) {
		fflush(stdout);
		kids[i] = fork();
		if (kids[i] < 0)
			return fail("fork");
		if (kids[i] == 0) {
			close(p[0]);
			_exit(worker(lfd, p[1]));
		}
	}
	close(lfd); /* the workers hold the listener now */
	close(p[1]);
	printf("listening with %d workers\n", n);
	fflush(stdout);
	int served = 0;
	char b;
	while (served < k && read(p[0], &b, 1) == 1)
		served++;
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGTERM);
	for (int i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	printf("%s: workers served %d of %d connections\n", served == k ? "ok" : "FAIL", served, k);
	return served == k ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "conn"))
		return do_conn(argv[2], atoi(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "workers")) {
		int n = atoi(argv[3]);
		if (n < 1 || n > 64)
			return 2;
		return do_workers(atoi(argv[2]), n, atoi(argv[4]));
	}
	fprintf(stderr, "usage: nk_forktest conn HOST PORT | workers PORT N K\n");
	return 2;
}
