/* SPDX-License-Identifier: MIT */
#include "nk_region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

void nk_geom_default(struct nk_geom *g, uint32_t kind)
{
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	g->ring_entries = NK_DEF_RING_ENTRIES;
	if (kind == NK_REGION_VM) {
		g->nchan = NK_DEF_NCHAN;
		g->nsocks = NK_DEF_NSOCKS;
		g->chunk_size = NK_DEF_CHUNK_SIZE;
		g->tx_per_chan = NK_DEF_TX_PER_CHAN;
		g->nrx = NK_DEF_NRX;
	} else {
		/* An NSM ring carries data for every VM it serves: make it deeper. */
		g->nchan = 1;
		g->ring_entries = 4096;
	}
}

int nk_geom_layout(struct nk_geom *g)
{
	if (g->kind != NK_REGION_VM && g->kind != NK_REGION_NSM)
		return -EINVAL;
	if (!is_pow2(g->ring_entries) || g->ring_entries < 8 || g->ring_entries > (1u << 20))
		return -EINVAL;
	if (g->nchan == 0 || g->nchan > 1024)
		return -EINVAL;
	if (g->kind == NK_REGION_VM) {
		if (g->nsocks == 0 || g->nsocks > (1u << 20))
			return -EINVAL;
		if (!is_pow2(g->chunk_size) || g->chunk_size < 1024 || g->chunk_size > (1u << 22))
			return -EINVAL;
		if (g->tx_per_chan == 0 || g->nrx == 0)
			return -EINVAL;
		if ((uint64_t)g->nchan * g->tx_per_chan + g->nrx >= NK_NO_CHUNK)
			return -EINVAL;
	} else {
		g->nsocks = g->chunk_size = g->tx_per_chan = g->nrx = 0;
	}
	g->chan_off = NK_REGION_HDR_SIZE;
	g->chan_stride = align_up(nk_chan_stride(g->ring_entries), NK_CACHELINE);
	g->sock_off = align_up(g->chan_off + g->chan_stride * g->nchan, NK_CACHELINE);
	g->chunk_off = align_up(g->sock_off + (uint64_t)g->nsocks * sizeof(struct nk_sock_slot), 4096);
	g->size = align_up(g->chunk_off + (uint64_t)nk_geom_nchunks(g) * g->chunk_size, 4096);
	return 0;
}

static void write_hdr(struct nk_region *r, uint32_t id, const char *name, const uint8_t ipv4[4])
{
	struct nk_region_hdr *h = nk_region_hdr(r);
	memset(h, 0, sizeof(*h));
	h->magic = NK_ABI_MAGIC;
	h->version = NK_ABI_VERSION;
	h->kind = r->g.kind;
	h->id = id;
	h->region_size = r->g.size;
	snprintf(h->name, sizeof(h->name), "%s", name ? name : "");
	if (ipv4)
		memcpy(h->ipv4, ipv4, 4);
	h->nchan = r->g.nchan;
	h->ring_entries = r->g.ring_entries;
	h->chan_stride = (uint32_t)r->g.chan_stride;
	h->chan_off = r->g.chan_off;
	h->nsocks = r->g.nsocks;
	h->sock_stride = sizeof(struct nk_sock_slot);
	h->sock_off = r->g.sock_off;
	h->chunk_size = r->g.chunk_size;
	h->tx_per_chan = r->g.tx_per_chan;
	h->nrx = r->g.nrx;
	h->chunk_off = r->g.chunk_off;
}

static int region_create(struct nk_region *r, const char *path, const struct nk_geom *g,
			 uint32_t id, const char *name, const uint8_t ipv4[4], bool pow2,
			 char *err, size_t errlen);

int nk_region_create(struct nk_region *r, const char *path, const struct nk_geom *g,
		     uint32_t id, const char *name, const uint8_t ipv4[4],
		     char *err, size_t errlen)
{
	return region_create(r, path, g, id, name, ipv4, false, err, errlen);
}

int nk_region_create_pow2(struct nk_region *r, const char *path, const struct nk_geom *g,
			  uint32_t id, const char *name, const uint8_t ipv4[4],
			  char *err, size_t errlen)
{
	return region_create(r, path, g, id, name, ipv4, true, err, errlen);
}

static int region_create(struct nk_region *r, const char *path, const struct nk_geom *g,
			 uint32_t id, const char *name, const uint8_t ipv4[4], bool pow2,
			 char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->g = *g;
	if (nk_geom_layout(&r->g) < 0) {
		snprintf(err, errlen, "invalid region geometry");
		return -EINVAL;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot create region %s: %s", path, strerror(e));
		return -e;
	}
	r->map_len = r->g.size;
	if (pow2)
		while (r->map_len & (r->map_len - 1))
			r->map_len += r->map_len & -r->map_len; /* next power of two */
	if (ftruncate(fd, (off_t)r->map_len) < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot size region %s to %llu bytes: %s", path,
			 (unsigned long long)r->g.size, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	void *p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		snprintf(err, errlen, "cannot map region %s: %s", path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	r->base = p;
	r->fd = fd;
	write_hdr(r, id, name, ipv4);
	for (uint32_t c = 0; c < r->g.nchan; c++) {
		struct nk_ring ring;
		nk_region_up_ring(r, c, &ring);
		nk_ring_reset(&ring);
		nk_region_down_ring(r, c, &ring);
		nk_ring_reset(&ring);
	}
	return 0;
}

int nk_region_map_fd(struct nk_region *r, int fd, uint32_t want_kind, char *err, size_t errlen)
{
	struct stat st;
	struct nk_region_hdr h;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(h)) {
		snprintf(err, errlen, "NK region is missing or smaller than its header");
		return -EINVAL;
	}
	uint64_t len = (uint64_t)st.st_size;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		snprintf(err, errlen, "cannot map NK region: %s", strerror(e));
		return -e;
	}
	memcpy(&h, p, sizeof(h)); /* validated from our copy only */
	if (h.magic != NK_ABI_MAGIC || h.version != NK_ABI_VERSION || h.kind != want_kind) {
		snprintf(err, errlen, "NK region header mismatch (magic %#x version %u kind %u, want version %u kind %u)",
			 h.magic, h.version, h.kind, NK_ABI_VERSION, want_kind);
		munmap(p, len);
		return -EPROTO;
	}
	struct nk_geom g = {
		.kind = h.kind, .nchan = h.nchan, .ring_entries = h.ring_entries,
		.nsocks = h.nsocks, .chunk_size = h.chunk_size,
		.tx_per_chan = h.tx_per_chan, .nrx = h.nrx,
	};
	if (nk_geom_layout(&g) < 0 || g.size != h.region_size || g.chan_off != h.chan_off ||
	    g.sock_off != h.sock_off || g.chunk_off != h.chunk_off || g.size > len) {
		snprintf(err, errlen, "NK region layout is inconsistent with its size");
		munmap(p, len);
		return -EPROTO;
	}
	r->base = p;
	r->g = g;
	r->fd = fd;
	r->map_len = len;
	return 0;
}

void nk_region_unmap(struct nk_region *r)
{
	if (r->base)
		munmap(r->base, r->map_len ? r->map_len : r->g.size);
	if (r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
}
