/* SPDX-License-Identifier: MIT */
#include "nk_prefix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int nk_prefixes_parse(struct nk_prefixes *out, const char *list)
{
	struct nk_prefixes p = { .n = 0 };
	char buf[512], *save = NULL;

	if (!*list || strlen(list) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *slash = strchr(t, '/'), *end;
		long bits = 32;
		struct in_addr a;
		if (slash) {
			*slash = '\0';
			bits = strtol(slash + 1, &end, 10);
			if (end == slash + 1 || *end || bits < 0 || bits > 32)
				return -EINVAL;
		}
		if (inet_pton(AF_INET, t, &a) != 1 || p.n == NK_PREFIX_MAX)
			return -EINVAL;
		p.mask[p.n] = bits ? ~0u << (32 - bits) : 0;
		p.net[p.n] = ntohl(a.s_addr) & p.mask[p.n];
		p.n++;
	}
	if (p.n == 0)
		return -EINVAL;
	*out = p;
	return 0;
}

bool nk_prefixes_match(const struct nk_prefixes *p, const uint8_t ip[4])
{
	uint32_t v;
	memcpy(&v, ip, 4);
	v = ntohl(v);
	for (uint32_t i = 0; i < p->n; i++)
		if ((v & p->mask[i]) == p->net[i])
			return true;
	return false;
}
