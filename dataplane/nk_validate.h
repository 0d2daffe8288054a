/* SPDX-License-Identifier: MIT */
/*
 * nk_validate.h - stateless checks of NQEs read from shared memory.
 *
 * The CoreEngine copies an NQE out of a ring, runs these checks, and only
 * then looks at its own state (socket held by the channel, chunk owner).
 * Each check names what was wrong so `nkctl stats` and logs can say why.
 */
#ifndef NK_VALIDATE_H
#define NK_VALIDATE_H

#include <stdint.h>

#include "netkernel/nk_abi.h"
#include "nk_region.h"

/** Check an NQE a guest on channel chan posted on its up ring.
 *  0 if it may be processed, -EINVAL with *why set otherwise. */
int nk_validate_guest_nqe(const struct nk_geom *g, uint32_t chan, const struct nk_nqe *n,
			  const char **why);

/** Check an NQE an NSM posted (bounds only: NSMs are host software, but a
 *  bug there must not become memory corruption here). nvms = VM table size,
 *  vg = geometry of the VM it names (NULL if that VM does not exist). */
int nk_validate_nsm_nqe(const struct nk_geom *vg, const struct nk_nqe *n, const char **why);

/** Address family and length sanity for an nk_addr from any peer. */
int nk_validate_addr(const struct nk_addr *a);

#endif /* NK_VALIDATE_H */
