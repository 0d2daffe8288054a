/* SPDX-License-Identifier: MIT */
/*
 * nk_prefix.h - IPv4 prefix lists ("10.78.0.0/16,192.0.2.0/24"), as the
 * operator gives them with --nk-peers to the CoreEngine and the NSMs.
 */
#ifndef NK_PREFIX_H
#define NK_PREFIX_H

#include <stdbool.h>
#include <stdint.h>

#define NK_PREFIX_MAX 16

struct nk_prefixes {
	uint32_t net[NK_PREFIX_MAX];  /**< host byte order, masked */
	uint32_t mask[NK_PREFIX_MAX];
	uint32_t n;
};

/** Parse a comma-separated list of A.B.C.D[/N]. 0 or -EINVAL (p unchanged
 *  on error). */
int nk_prefixes_parse(struct nk_prefixes *p, const char *list);
/** Does the IPv4 address (network byte order, as in an nk_addr / sin_addr)
 *  fall in one of the prefixes? */
bool nk_prefixes_match(const struct nk_prefixes *p, const uint8_t ip[4]);

#endif /* NK_PREFIX_H */
