/* SPDX-License-Identifier: MIT */
/*
 * nk_region.h - create, map and navigate NK regions (VM and NSM).
 *
 * struct nk_geom is the layout of a region as its creator decided it. The
 * host keeps its own copy and uses only that; a guest builds one from the
 * region header of its device (nk_region_map_fd validates it first).
 */
#ifndef NK_REGION_H
#define NK_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "netkernel/nk_abi.h"
#include "netkernel/nk_ring.h"

struct nk_geom {
	uint32_t kind;
	uint32_t nchan;
	uint32_t ring_entries;
	uint32_t nsocks;
	uint32_t chunk_size;
	uint32_t tx_per_chan;
	uint32_t nrx;
	/* derived by nk_geom_layout() */
	uint64_t chan_off, chan_stride;
	uint64_t sock_off;
	uint64_t chunk_off;
	uint64_t size;
};

/** A mapped region: base address plus the geometry used to navigate it. */
struct nk_region {
	uint8_t *base;
	struct nk_geom g;
	int fd;
	uint64_t map_len; /**< bytes mapped: g.size, or the whole file/BAR */
};

/** Default VM geometry (see docs/ARCHITECTURE.md for the reasoning). */
#define NK_DEF_NCHAN        32u
#define NK_DEF_RING_ENTRIES 256u
#define NK_DEF_NSOCKS       1024u
#define NK_DEF_CHUNK_SIZE   16384u
#define NK_DEF_TX_PER_CHAN  64u
#define NK_DEF_NRX          2048u

/** Fill defaults for kind; VM and NSM regions differ. */
void nk_geom_default(struct nk_geom *g, uint32_t kind);
/** Check the counts and compute offsets and size. 0 or -EINVAL. */
int nk_geom_layout(struct nk_geom *g);

/** Create a new region file at path (O_EXCL, mode 0600), size it, map it and
 *  write the header. On error returns -errno and writes a reason to err. */
int nk_region_create(struct nk_region *r, const char *path, const struct nk_geom *g,
		     uint32_t id, const char *name, const uint8_t ipv4[4],
		     char *err, size_t errlen);
/** The same, with the file rounded up to a power of two (>= g.size): QEMU's
 *  ivshmem exposes the file as a PCI BAR, whose size must be a power of two.
 *  The bytes past g.size are unused. */
int nk_region_create_pow2(struct nk_region *r, const char *path, const struct nk_geom *g,
			  uint32_t id, const char *name, const uint8_t ipv4[4],
			  char *err, size_t errlen);
/** Map a region received as an fd (guest or NSM side) and validate its header
 *  against the file size. The fd is kept. The whole file is mapped and the
 *  header copied out of the mapping (a PCI BAR's sysfs resource file can be
 *  mapped but not read). */
int nk_region_map_fd(struct nk_region *r, int fd, uint32_t want_kind, char *err, size_t errlen);
void nk_region_unmap(struct nk_region *r);

static inline struct nk_region_hdr *nk_region_hdr(const struct nk_region *r)
{
	return (struct nk_region_hdr *)r->base;
}

static inline struct nk_chan_hdr *nk_region_chan(const struct nk_region *r, uint32_t c)
{
	return (struct nk_chan_hdr *)(r->base + r->g.chan_off + (uint64_t)c * r->g.chan_stride);
}

/** Ring views of channel c. */
static inline void nk_region_up_ring(const struct nk_region *r, uint32_t c, struct nk_ring *ring)
{
	struct nk_chan_hdr *ch = nk_region_chan(r, c);
	nk_ring_view(ring, &ch->up, (uint8_t *)ch + nk_chan_up_off(), r->g.ring_entries);
}

static inline void nk_region_down_ring(const struct nk_region *r, uint32_t c, struct nk_ring *ring)
{
	struct nk_chan_hdr *ch = nk_region_chan(r, c);
	nk_ring_view(ring, &ch->down, (uint8_t *)ch + nk_chan_down_off(r->g.ring_entries),
		     r->g.ring_entries);
}

static inline struct nk_sock_slot *nk_region_slot(const struct nk_region *r, uint32_t s)
{
	return (struct nk_sock_slot *)(r->base + r->g.sock_off +
				       (uint64_t)s * sizeof(struct nk_sock_slot));
}

static inline uint32_t nk_geom_nchunks(const struct nk_geom *g)
{
	return g->nchan * g->tx_per_chan + g->nrx;
}

static inline uint8_t *nk_region_chunk(const struct nk_region *r, uint32_t idx)
{
	return r->base + r->g.chunk_off + (uint64_t)idx * r->g.chunk_size;
}

/** First TX chunk of channel c's partition. */
static inline uint32_t nk_geom_tx_first(const struct nk_geom *g, uint32_t c)
{
	return c * g->tx_per_chan;
}

/** First RX chunk index. */
static inline uint32_t nk_geom_rx_first(const struct nk_geom *g)
{
	return g->nchan * g->tx_per_chan;
}

#endif /* NK_REGION_H */
