/* SPDX-License-Identifier: MIT */
/*
 * gl_dns.c - name resolution for guests: getaddrinfo and gethostbyname*.
 *
 * Why GuestLib resolves names itself: glibc's resolver (libc.so since 2.34)
 * calls its socket, sendmmsg, recvfrom and poll through internal aliases,
 * not through the PLT, so LD_PRELOAD never sees them and its DNS queries
 * would use a socket of the guest kernel (which has only lo). So the entry
 * points are interposed instead: a name that is numeric or NULL goes to
 * glibc untouched (no DNS involved); any other is looked up in /etc/hosts,
 * then sent as A/AAAA queries over a NetKernel UDP socket to the
 * nameservers of /etc/resolv.conf (search, ndots, timeout, attempts
 * honoured), and each address found is expanded by glibc's own numeric
 * getaddrinfo (services, socket types, flags), so freeaddrinfo is glibc's.
 * Limits (ARCHITECTURE.md): no TCP fallback for truncated answers (what fits
 * in 512 bytes is used), no nsswitch.conf (files then dns, always), IPv6
 * answers are returned after IPv4 ones and only when asked for (the VM has
 * no IPv6 route), reverse lookups (getnameinfo) stay glibc's and so fail
 * over to numeric hosts.
 */
#include "nk_gl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#define NK_GL_DNS_MAXADDR 32
#define NK_GL_DNS_MAXNS 3
#define NK_GL_DNS_MAXSEARCH 6

struct nk_gl_dns_conf {
	struct sockaddr_storage ns[NK_GL_DNS_MAXNS];
	socklen_t nslen[NK_GL_DNS_MAXNS];
	int nns;
	char search[NK_GL_DNS_MAXSEARCH][256];
	int nsearch;
	int ndots, timeout, attempts;
};

struct nk_gl_dns_ans {
	int n;
	int family[NK_GL_DNS_MAXADDR];
	uint8_t addr[NK_GL_DNS_MAXADDR][16];
	char canon[256];
};

static void nk_gl_dns_read_conf(struct nk_gl_dns_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->ndots = 1;
	c->timeout = 5;
	c->attempts = 2;
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		char *save = NULL, *k = strtok_r(line, " \t\r\n", &save), *v;
		if (!k || *k == '#' || *k == ';')
			continue;
		if (!strcmp(k, "nameserver") && (v = strtok_r(NULL, " \t\r\n", &save)) &&
		    c->nns < NK_GL_DNS_MAXNS) {
			struct sockaddr_in *in = (struct sockaddr_in *)&c->ns[c->nns];
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c->ns[c->nns];
			if (inet_pton(AF_INET, v, &in->sin_addr) == 1) {
				in->sin_family = AF_INET;
				in->sin_port = htons(53);
				c->nslen[c->nns++] = sizeof(*in);
			} else if (inet_pton(AF_INET6, v, &in6->sin6_addr) == 1) {
				in6->sin6_family = AF_INET6;
				in6->sin6_port = htons(53);
				c->nslen[c->nns++] = sizeof(*in6);
			}
		} else if (!strcmp(k, "search") || !strcmp(k, "domain")) {
			c->nsearch = 0;
			while ((v = strtok_r(NULL, " \t\r\n", &save)) && c->nsearch < NK_GL_DNS_MAXSEARCH)
				snprintf(c->search[c->nsearch++], sizeof(c->search[0]), "%s", v);
		} else if (!strcmp(k, "options")) {
			while ((v = strtok_r(NULL, " \t\r\n", &save))) {
				if (!strncmp(v, "ndots:", 6))
					c->ndots = atoi(v + 6);
				else if (!strncmp(v, "timeout:", 8))
					c->timeout = atoi(v + 8);
				else if (!strncmp(v, "attempts:", 9))
					c->attempts = atoi(v + 9);
			}
		}
	}
	if (f)
		fclose(f);
	if (c->nns == 0) { /* resolv.conf's default: a server on this host */
		struct sockaddr_in *in = (struct sockaddr_in *)&c->ns[0];
		in->sin_family = AF_INET;
		in->sin_port = htons(53);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c->nslen[c->nns++] = sizeof(*in);
	}
	if (c->timeout < 1 || c->timeout > 30)
		c->timeout = 5;
	if (c->attempts < 1 || c->attempts > 5)
		c->attempts = 2;
}

static void nk_gl_dns_add(struct nk_gl_dns_ans *a, int family, const void *addr)
{
	if (a->n >= NK_GL_DNS_MAXADDR)
		return;
	a->family[a->n] = family;
	memcpy(a->addr[a->n], addr, family == AF_INET ? 4 : 16);
	a->n++;
}

/* /etc/hosts: 1 when name was found (addresses of the wanted family added). */
static int nk_gl_dns_hosts(const char *name, int family, struct nk_gl_dns_ans *a)
{
	FILE *f = fopen("/etc/hosts", "re");
	char line[1024];
	int found = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *save = NULL, *ip = strtok_r(line, " \t\r\n", &save), *h;
		if (!ip)
			continue;
		while ((h = strtok_r(NULL, " \t\r\n", &save))) {
			if (strcasecmp(h, name) != 0)
				continue;
			uint8_t buf[16];
			if (inet_pton(AF_INET, ip, buf) == 1 && family != AF_INET6) {
				nk_gl_dns_add(a, AF_INET, buf);
				found = 1;
			} else if (inet_pton(AF_INET6, ip, buf) == 1 && family != AF_INET) {
				nk_gl_dns_add(a, AF_INET6, buf);
				found = 1;
			}
			if (!a->canon[0])
				snprintf(a->canon, sizeof(a->canon), "%s", name);
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* ---- the DNS wire format (RFC 1035) ---- */

static int nk_gl_dns_query(uint8_t *q, size_t room, const char *name, uint16_t id, uint16_t type)
{
	size_t n = 12;
	memset(q, 0, 12);
	q[0] = (uint8_t)(id >> 8);
	q[1] = (uint8_t)id;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || n + l + 1 + 5 > room)
			return -1;
		q[n++] = (uint8_t)l;
		memcpy(q + n, p, l);
		n += l;
		p += l;
		if (*p == '.')
			p++;
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = (uint8_t)type;
	q[n++] = 0;
	q[n++] = 1; /* IN */
	return (int)n;
}

/* Decode (or skip, out NULL) the name at *pos; advances *pos past it. */
static int nk_gl_dns_name(const uint8_t *m, size_t len, size_t *pos, char *out, size_t room)
{
	size_t p = *pos, o = 0;
	bool jumped = false;
	for (int hops = 0; hops < 64; hops++) {
		if (p >= len)
			return -1;
		uint8_t l = m[p];
		if (l == 0) {
			if (!jumped)
				*pos = p + 1;
			if (out)
				out[o ? o - 1 : 0] = 0;
			return 0;
		}
		if ((l & 0xc0) == 0xc0) {
			if (p + 1 >= len)
				return -1;
			if (!jumped)
				*pos = p + 2;
			jumped = true;
			p = ((size_t)(l & 0x3f) << 8) | m[p + 1];
			continue;
		}
		if (p + 1 + l > len)
			return -1;
		if (out) {
			if (o + l + 1 >= room)
				return -1;
			memcpy(out + o, m + p + 1, l);
			o += l;
			out[o++] = '.';
		}
		p += 1 + (size_t)l;
	}
	return -1;
}

/* Parse an answer: 0 ok (addresses added), 1 name does not exist (or has
 * no such record), -1 server failure / garbage (try the next server). */
static int nk_gl_dns_parse(const uint8_t *m, size_t len, uint16_t id, struct nk_gl_dns_ans *a)
{
	if (len < 12 || ((m[0] << 8) | m[1]) != id || !(m[2] & 0x80))
		return -1;
	int rcode = m[3] & 0x0f;
	if (rcode == 3)
		return 1; /* NXDOMAIN */
	if (rcode != 0)
		return -1;
	unsigned qd = (unsigned)(m[4] << 8 | m[5]), an = (unsigned)(m[6] << 8 | m[7]);
	size_t p = 12;
	for (unsigned i = 0; i < qd; i++) {
		if (nk_gl_dns_name(m, len, &p, NULL, 0) < 0 || p + 4 > len)
			return -1;
		p += 4;
	}
	int added = 0;
	for (unsigned i = 0; i < an; i++) {
		if (nk_gl_dns_name(m, len, &p, NULL, 0) < 0 || p + 10 > len)
			return -1;
		uint16_t type = (uint16_t)(m[p] << 8 | m[p + 1]);
		uint16_t rdlen = (uint16_t)(m[p + 8] << 8 | m[p + 9]);
		p += 10;
		if (p + rdlen > len)
			return -1;
		if (type == 1 && rdlen == 4) {
			nk_gl_dns_add(a, AF_INET, m + p);
			added++;
		} else if (type == 28 && rdlen == 16) {
			nk_gl_dns_add(a, AF_INET6, m + p);
			added++;
		} else if (type == 5) { /* CNAME: the canonical name */
			size_t q = p;
			(void)nk_gl_dns_name(m, len, &q, a->canon, sizeof(a->canon));
		}
		p += rdlen;
	}
	return added ? 0 : 1;
}

/* A query id an off-path attacker cannot guess (and the application's own
 * random() sequence is left alone). */
static uint16_t nk_gl_dns_id(void)
{
	uint16_t id;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) == (ssize_t)sizeof(id))
		return id;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint16_t)(ts.tv_nsec ^ (ts.tv_nsec >> 16) ^ getpid());
}

/* Ask the nameservers for fqdn's records of the wanted families, over a
 * NetKernel UDP socket (socket() here is GuestLib's). 0 found, 1 no such
 * name, -1 no server answered. */
static int nk_gl_dns_ask(const struct nk_gl_dns_conf *c, const char *fqdn, int family,
			 struct nk_gl_dns_ans *a)
{
	uint16_t types[2];
	int nt = 0;
	if (family != AF_INET6)
		types[nt++] = 1;
	if (family != AF_INET)
		types[nt++] = 28;
	int result = -1;
	for (int att = 0; att < c->attempts; att++) {
		for (int si = 0; si < c->nns; si++) {
			int fd = socket(c->ns[si].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			if (fd < 0)
				return -1;
			if (connect(fd, (const struct sockaddr *)&c->ns[si], c->nslen[si]) < 0) {
				close(fd);
				continue;
			}
			uint16_t ids[2];
			bool done[2] = { false, false };
			int nx = 0, ok = 0;
			for (int t = 0; t < nt; t++) {
				uint8_t q[512];
				ids[t] = nk_gl_dns_id();
				int ql = nk_gl_dns_query(q, sizeof(q), fqdn, ids[t], types[t]);
				if (ql < 0 || send(fd, q, (size_t)ql, 0) != ql)
					done[t] = true;
			}
			struct timespec end, now;
			clock_gettime(CLOCK_MONOTONIC, &end);
			end.tv_sec += c->timeout;
			for (;;) {
				bool all = true;
				for (int t = 0; t < nt; t++)
					all &= done[t];
				if (all)
					break;
				clock_gettime(CLOCK_MONOTONIC, &now);
				long ms = (end.tv_sec - now.tv_sec) * 1000 +
					  (end.tv_nsec - now.tv_nsec) / 1000000;
				if (ms <= 0)
					break;
				struct pollfd p = { .fd = fd, .events = POLLIN };
				if (poll(&p, 1, (int)ms) <= 0)
					continue;
				uint8_t m[512];
				ssize_t n = recv(fd, m, sizeof(m), 0);
				if (n <= 0)
					break;
				for (int t = 0; t < nt; t++) {
					if (done[t] || n < 2 || ((m[0] << 8) | m[1]) != ids[t])
						continue;
					int r = nk_gl_dns_parse(m, (size_t)n, ids[t], a);
					done[t] = true;
					ok += r == 0;
					nx += r == 1;
				}
			}
			close(fd);
			if (ok)
				return 0;
			if (nx == nt)
				result = 1; /* the server says the name has no such record */
			if (result == 1)
				return 1;
		}
	}
	return result;
}

/* Resolve name (not numeric): hosts, then DNS with the search list. 0 ok,
 * else an EAI_* code. */
static int nk_gl_dns_resolve(const char *name, int family, struct nk_gl_dns_ans *a)
{
	memset(a, 0, sizeof(*a));
	size_t len = strlen(name);
	if (len == 0 || len > 253)
		return EAI_NONAME;
	if (nk_gl_dns_hosts(name, family, a))
		return a->n ? 0 : EAI_NODATA;
	struct nk_gl_dns_conf c;
	nk_gl_dns_read_conf(&c);
	char fqdn[512];
	bool absolute = name[len - 1] == '.';
	int dots = 0, any_fail = 0;
	for (const char *p = name; *p; p++)
		dots += *p == '.';
	/* the order res_search uses */
	for (int step = 0; step < c.nsearch + 2; step++) {
		if (step == 0) {
			if (!absolute && dots < c.ndots)
				continue;
			snprintf(fqdn, sizeof(fqdn), "%.*s", (int)(absolute ? len - 1 : len), name);
		} else if (step <= c.nsearch) {
			if (absolute)
				break;
			snprintf(fqdn, sizeof(fqdn), "%s.%s", name, c.search[step - 1]);
		} else {
			if (absolute || dots >= c.ndots)
				break;
			snprintf(fqdn, sizeof(fqdn), "%s", name);
		}
		int r = nk_gl_dns_ask(&c, fqdn, family, a);
		if (r == 0) {
			if (!a->canon[0])
				snprintf(a->canon, sizeof(a->canon), "%.255s", fqdn);
			return 0;
		}
		any_fail |= r < 0;
	}
	return any_fail ? EAI_AGAIN : EAI_NONAME;
}

static bool nk_gl_dns_numeric(const char *node)
{
	uint8_t buf[16];
	char tmp[INET6_ADDRSTRLEN + 32];
	if (inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1)
		return true;
	/* fe80::1%eth0 and inet_aton forms (10.1, 0x7f.1) are glibc's too */
	const char *pct = strchr(node, '%');
	if (pct && (size_t)(pct - node) < sizeof(tmp)) {
		memcpy(tmp, node, (size_t)(pct - node));
		tmp[pct - node] = 0;
		if (inet_pton(AF_INET6, tmp, buf) == 1)
			return true;
	}
	struct in_addr in;
	return inet_aton(node, &in) != 0;
}

/* Only a NetKernel guest resolves through NetKernel. */
static bool nk_gl_dns_ours(void)
{
	return getenv("NK_VM") != NULL;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	int flags = hints ? hints->ai_flags : 0;
	if (!nk_gl_dns_ours() || !node || (flags & AI_NUMERICHOST) || nk_gl_dns_numeric(node))
		return REAL(getaddrinfo)(node, service, hints, res);
	int family = hints ? hints->ai_family : AF_UNSPEC;
	if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
		return EAI_FAMILY;
	/* AI_ADDRCONFIG: the VM has an IPv4 address, no IPv6 one. */
	int want = family;
	if (family == AF_UNSPEC && (flags & AI_ADDRCONFIG))
		want = AF_INET;
	struct nk_gl_dns_ans a;
	int e = nk_gl_dns_resolve(node, want, &a);
	if (e)
		return e;
	struct addrinfo h = hints ? *hints : (struct addrinfo){ .ai_family = AF_UNSPEC };
	h.ai_flags = (flags | AI_NUMERICHOST) & ~(AI_ADDRCONFIG | AI_CANONNAME);
	struct addrinfo *head = NULL, **tail = &head;
	int last = EAI_NONAME;
	/* IPv4 first: the VM reaches IPv4 only. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < a.n; i++) {
			if ((pass == 0) != (a.family[i] == AF_INET))
				continue;
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(a.family[i], a.addr[i], ip, sizeof(ip));
			struct addrinfo *r = NULL;
			h.ai_family = family == AF_INET6 && a.family[i] == AF_INET ? AF_INET6
										   : a.family[i];
			last = REAL(getaddrinfo)(ip, service, &h, &r);
			if (last != 0 || !r)
				continue;
			*tail = r;
			while (r->ai_next)
				r = r->ai_next;
			tail = &r->ai_next;
		}
	}
	if (!head)
		return last ? last : EAI_NONAME;
	if (flags & AI_CANONNAME) {
		free(head->ai_canonname); /* glibc's freeaddrinfo frees it */
		head->ai_canonname = strdup(a.canon[0] ? a.canon : node);
	}
	*res = head;
	return 0;
}

/* ---- gethostbyname family ---- */

struct nk_gl_hostent_buf {
	char name[256];
	char *aliases[1];
	char *addrs[NK_GL_DNS_MAXADDR + 1];
	uint8_t addr[NK_GL_DNS_MAXADDR][16];
};

/* Fill ret from a resolution into buf (caller-supplied storage). */
static int nk_gl_dns_hostent(const char *name, int family, struct hostent *ret, char *buf,
			     size_t buflen, int *herr)
{
	struct nk_gl_dns_ans a;
	struct nk_gl_hostent_buf *b = (struct nk_gl_hostent_buf *)buf;
	/* align the caller's buffer */
	uintptr_t al = ((uintptr_t)buf + 15) & ~(uintptr_t)15;
	if (buflen < sizeof(*b) + (al - (uintptr_t)buf))
		return ERANGE;
	b = (struct nk_gl_hostent_buf *)al;
	int e = nk_gl_dns_resolve(name, family, &a);
	if (e) {
		*herr = e == EAI_AGAIN ? TRY_AGAIN : HOST_NOT_FOUND;
		return e == EAI_AGAIN ? EAGAIN : ENOENT;
	}
	int n = 0, len = family == AF_INET6 ? 16 : 4;
	for (int i = 0; i < a.n; i++) {
		if (a.family[i] != family)
			continue;
		memcpy(b->addr[n], a.addr[i], (size_t)len);
		b->addrs[n] = (char *)b->addr[n];
		n++;
	}
	if (n == 0) {
		*herr = NO_DATA;
		return ENOENT;
	}
	b->addrs[n] = NULL;
	b->aliases[0] = NULL;
	snprintf(b->name, sizeof(b->name), "%s", a.canon[0] ? a.canon : name);
	*ret = (struct hostent){ .h_name = b->name, .h_aliases = b->aliases,
				 .h_addrtype = family, .h_length = len, .h_addr_list = b->addrs };
	return 0;
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
		     struct hostent **result, int *h_errnop)
{
	if (!nk_gl_dns_ours() || !name || nk_gl_dns_numeric(name) || (af != AF_INET && af != AF_INET6))
		return REAL(gethostbyname2_r)(name, af, ret, buf, buflen, result, h_errnop);
	int herr = 0;
	int e = nk_gl_dns_hostent(name, af, ret, buf, buflen, &herr);
	*result = e ? NULL : ret;
	if (h_errnop)
		*h_errnop = herr;
	return e == ENOENT ? 0 : e; /* not found: 0, result NULL, as glibc */
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
		    struct hostent **result, int *h_errnop)
{
	return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

struct hostent *gethostbyname2(const char *name, int af)
{
	/* Static storage, as glibc's (not thread-safe either). */
	static struct hostent he;
	static char buf[sizeof(struct nk_gl_hostent_buf) + 16];
	if (!nk_gl_dns_ours() || !name || nk_gl_dns_numeric(name) || (af != AF_INET && af != AF_INET6))
		return REAL(gethostbyname2)(name, af);
	struct hostent *r = NULL;
	int herr = 0;
	(void)gethostbyname2_r(name, af, &he, buf, sizeof(buf), &r, &herr);
	if (!r)
		h_errno = herr;
	return r;
}

struct hostent *gethostbyname(const char *name)
{
	return gethostbyname2(name, AF_INET);
}
